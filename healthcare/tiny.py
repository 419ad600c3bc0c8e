"""The healthcare device model: window features -> one of `signals.LABELS`, int8 on the wearable.

Input: `features.to_vector` (8 standardised features, NaN -> 0, clipped to +-8), the same vector the
firmware computes. Training (`train_tiny`):

1. a float TEACHER (a wider MLP) is trained on the hard labels;
2. the tiny STUDENT (a small MLP, logits) is distilled from it: loss = alpha * CE(labels, student)
   + (1 - alpha) * T^2 * CE(softmax(teacher / T), softmax(student / T))  (Hinton et al. 2015);
3. the student with a softmax on top is converted to full int8 (`shared.tiny.int8.to_int8_tflite`,
   calibrated on training windows) and checked against the budget (<= 32 KB weights, <= 16 KB arena)
   and the firmware's operator set (FULLY_CONNECTED, SOFTMAX).

Accuracy, macro-F1 and the confusion matrix are measured on patients the model never saw (split by
patient id, never by window), for the float student and for the int8 flatbuffer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from healthcare.signals import LABELS
from shared.tiny.int8 import Int8Runner, budget_check, to_int8_tflite

MODEL_NAME = "hc-tiny"
N_FEATURES = 8


@dataclass
class TinyConfig:
    """Tiny model and distillation settings (defaults: the trained model)."""

    hidden: tuple[int, ...] = (32, 16)  #: student hidden layer widths (ReLU)
    teacher_hidden: tuple[int, ...] = (128, 128)  #: teacher hidden layer widths (ReLU)
    teacher_epochs: int = 30  #: teacher training epochs
    epochs: int = 40  #: student training epochs
    batch_size: int = 256  #: samples per step
    lr: float = 3e-3  #: Adam learning rate (cosine decay to 5 % over training)
    alpha: float = 0.3  #: weight of the hard-label loss; 1 - alpha goes to the teacher's soft targets
    temperature: float = 3.0  #: distillation temperature T
    val_fraction: float = 0.2  #: share of training PATIENTS held out to report validation accuracy
    representative_n: int = 1000  #: training windows used to calibrate int8 ranges
    weights_max_bytes: int = 32 * 1024  #: flash budget for constant tensors
    arena_max_bytes: int = 16 * 1024  #: RAM budget for the tensor arena
    version: str = "1"  #: model version published in messages ("hc-tiny@1")
    seed: int = 0  #: initialisation, shuffling, split

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.teacher_hidden = tuple(int(h) for h in self.teacher_hidden)
        checks = {"hidden": len(self.hidden) >= 1 and min(self.hidden) >= 1,
                  "teacher_hidden": len(self.teacher_hidden) >= 1 and min(self.teacher_hidden) >= 1,
                  "teacher_epochs": self.teacher_epochs >= 1, "epochs": self.epochs >= 1,
                  "batch_size": self.batch_size >= 1, "lr": self.lr > 0, "alpha": 0.0 <= self.alpha <= 1.0,
                  "temperature": self.temperature > 0, "val_fraction": 0.0 < self.val_fraction < 1.0,
                  "representative_n": self.representative_n >= 1}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"TinyConfig.{key}: invalid value {getattr(self, key)!r}")


@dataclass
class TinyData:
    """Windows for training and a held-out test set; `groups` are patient ids (split by them)."""

    x_train: np.ndarray  # (n, 8) float32, features.to_vector
    y_train: np.ndarray  # (n,) int, index into LABELS
    groups_train: np.ndarray  # (n,) str patient ids
    x_test: np.ndarray
    y_test: np.ndarray
    groups_test: np.ndarray

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y, g = (getattr(self, f"{k}_{part}") for k in ("x", "y", "groups"))
            if x.ndim != 2 or x.shape[1] != N_FEATURES or len(x) != len(y) or len(y) != len(g) or len(x) == 0:
                raise ValueError(f"TinyData.{part}: need x (n, {N_FEATURES}), y (n,), groups (n,) with n >= 1; "
                                 f"got {x.shape}, {y.shape}, {g.shape}")
        both = set(np.unique(self.groups_train)) & set(np.unique(self.groups_test))
        if both:
            raise ValueError(f"TinyData: patients in both train and test: {sorted(both)[:5]}")


@dataclass
class TinyResult:
    """What `train_tiny` produced: metrics on held-out patients, the budget, the models."""

    metrics: dict[str, Any]
    tflite: bytes = field(repr=False)
    keras_model: Any = field(repr=False)  # student with softmax (the model that was converted)


def _mlp(hidden: tuple[int, ...], name: str) -> Any:
    import keras

    inp = keras.Input((N_FEATURES,), name="features")
    h = inp
    for i, width in enumerate(hidden):
        h = keras.layers.Dense(width, activation="relu", name=f"{name}_dense{i}")(h)
    logits = keras.layers.Dense(len(LABELS), name=f"{name}_logits")(h)
    return keras.Model(inp, logits, name=name)


def _schedule(cfg: TinyConfig, n: int, epochs: int) -> Any:
    import keras

    steps = epochs * int(np.ceil(n / cfg.batch_size))
    return keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps, alpha=0.05)


def _distill_loss(alpha: float, temperature: float) -> Any:
    import keras

    k = len(LABELS)

    def loss(y_true: Any, logits: Any) -> Any:
        hard, soft = y_true[:, :k], y_true[:, k:]
        ce = keras.losses.categorical_crossentropy(hard, logits, from_logits=True)
        kd = keras.losses.categorical_crossentropy(soft, logits / temperature, from_logits=True)
        return alpha * ce + (1.0 - alpha) * temperature**2 * kd

    return loss


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 (over labels present in y_true or y_pred) and the confusion matrix (rows: truth)."""
    k = len(LABELS)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return {"acc": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": float(f1[present].mean()),
            "f1": {lab: round(float(v), 4) for lab, v, ok in zip(LABELS, f1, present, strict=True) if ok},
            "confusion": cm.tolist()}


def train_tiny(cfg: TinyConfig, data: TinyData, progress: Any = None) -> TinyResult:
    """Teacher -> distilled student -> int8; metrics on `data`'s held-out patients.

    `progress(stage: str)` is called as each stage starts (for a progress bar).
    """
    from healthcare._dataset import subject_split

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    def stage(name: str) -> None:
        if progress is not None:
            progress(name)

    keras.utils.set_random_seed(cfg.seed)
    fit, val = subject_split(data.groups_train, cfg.val_fraction, cfg.seed)
    x, y = data.x_train.astype(np.float32), np.asarray(data.y_train, int)
    onehot = np.eye(len(LABELS), dtype=np.float32)[y]

    stage("teacher")
    teacher = _mlp(cfg.teacher_hidden, "teacher")
    teacher.compile(optimizer=keras.optimizers.Adam(_schedule(cfg, int(fit.sum()), cfg.teacher_epochs)),
                    loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    teacher.fit(x[fit], onehot[fit], epochs=cfg.teacher_epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True)
    t_logits = teacher.predict(x, batch_size=4096, verbose=0)
    z = t_logits / cfg.temperature
    soft = np.exp(z - z.max(1, keepdims=True))
    soft = (soft / soft.sum(1, keepdims=True)).astype(np.float32)

    stage("student")
    student = _mlp(cfg.hidden, "student")
    student.compile(optimizer=keras.optimizers.Adam(_schedule(cfg, int(fit.sum()), cfg.epochs)),
                    loss=_distill_loss(cfg.alpha, cfg.temperature))
    target = np.concatenate([onehot, soft], axis=1)
    student.fit(x[fit], target[fit], epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True)
    probs_model = keras.Sequential([student, keras.layers.Softmax(name="probs")], name="hc_tiny")
    probs_model.build((None, N_FEATURES))

    stage("int8")
    rep_idx = np.random.default_rng(cfg.seed).permutation(np.flatnonzero(fit))[: cfg.representative_n]
    blob = to_int8_tflite(probs_model, x[rep_idx])
    budget = budget_check(blob, cfg.weights_max_bytes, cfg.arena_max_bytes)

    stage("evaluate")
    runner = Int8Runner(blob)
    xt, yt = data.x_test.astype(np.float32), np.asarray(data.y_test, int)
    p_float = probs_model.predict(xt, batch_size=4096, verbose=0)
    p_int8 = runner.predict(xt)
    p_teacher = teacher.predict(xt, batch_size=4096, verbose=0)
    m_float, m_int8 = classification_metrics(yt, p_float.argmax(1)), classification_metrics(yt, p_int8.argmax(1))
    val_acc = float((probs_model.predict(x[val], batch_size=4096, verbose=0).argmax(1) == y[val]).mean())
    metrics = {
        "model_id": f"{MODEL_NAME}@{cfg.version}",
        "float_acc": m_float["acc"], "int8_acc": m_int8["acc"],
        "float_macro_f1": m_float["macro_f1"], "int8_macro_f1": m_int8["macro_f1"],
        "teacher_acc": float((p_teacher.argmax(1) == yt).mean()),
        "val_acc": val_acc,
        "int8_float_agreement": float((p_int8.argmax(1) == p_float.argmax(1)).mean()),
        "int8_f1": m_int8["f1"], "int8_confusion": m_int8["confusion"], "labels": list(LABELS),
        "weights_bytes": budget["weights_bytes"], "arena_bytes": budget["arena_bytes_estimate"],
        "ops": sorted(set(budget["ops"])), "tflite_bytes": len(blob),
        "n_train_windows": int(fit.sum()), "n_val_windows": int(val.sum()), "n_test_windows": len(yt),
        "n_train_patients": len(np.unique(data.groups_train[fit])),
        "n_test_patients": len(np.unique(data.groups_test)),
        "config": asdict(cfg),
    }
    return TinyResult(metrics=metrics, tflite=blob, keras_model=probs_model)


def save_tiny(result: TinyResult, models_dir: Path) -> None:
    """Write tiny.tflite, tiny.keras, labels.json and tiny_metrics.json into `models_dir`."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "tiny.tflite").write_bytes(result.tflite)
    result.keras_model.save(models_dir / "tiny.keras")
    (models_dir / "labels.json").write_text(json.dumps(list(LABELS)) + "\n")
    (models_dir / "tiny_metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")


class TinyModel:
    """The int8 device model behind `classify`; what a simulated wearable runs."""

    def __init__(self, tflite: str | Path | bytes, labels: tuple[str, ...] = LABELS, version: str = "1"):
        self.runner = Int8Runner(tflite)
        if self.runner.input_shape != (N_FEATURES,):
            raise ValueError(f"tiny model input must be ({N_FEATURES},), got {self.runner.input_shape}")
        if self.runner.output_shape != (len(labels),):
            raise ValueError(f"tiny model output shape {self.runner.output_shape} does not fit {len(labels)} labels")
        self.labels = tuple(labels)
        self.version = version
        self.model_id = f"{MODEL_NAME}@{version}"

    @classmethod
    def load(cls, models_dir: str | Path) -> TinyModel:
        """From models_dir/tiny.tflite (+ labels.json, tiny_metrics.json for the version)."""
        d = Path(models_dir)
        path = d / "tiny.tflite"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: train first (tinylarge train healthcare)")
        labels = tuple(json.loads((d / "labels.json").read_text())) if (d / "labels.json").exists() else LABELS
        version = "1"
        if (d / "tiny_metrics.json").exists():
            version = str(json.loads((d / "tiny_metrics.json").read_text()).get("config", {}).get("version", "1"))
        return cls(path, labels, version)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n, 8) feature vectors -> (n, n_labels) dequantized int8 probabilities."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"features: expected shape (n, {N_FEATURES}) from features.to_vector, got {x.shape}")
        return self.runner.predict(x)

    def classify(self, x: np.ndarray) -> tuple[list[str], list[dict[str, float]]]:
        """(n, 8) feature vectors -> (labels, scores dicts label -> probability)."""
        p = self.scores(x)
        names = [self.labels[i] for i in p.argmax(1)]
        return names, [{lab: round(float(v), 4) for lab, v in zip(self.labels, row, strict=True)} for row in p]
