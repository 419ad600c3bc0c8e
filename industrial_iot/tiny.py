"""The industrial_iot device models: condition classifier and anomaly autoencoder, both int8 on the sensor.

Input of both: `features.to_vector` of one vibration window (21 standardised features, NaN -> 0,
clipped to +-8), the same vector the firmware computes.

* Classifier (`iot-tiny@<version>`, tiny.tflite): an MLP (ReLU) with a softmax over `signals.LABELS`
  (normal, imbalance, misalignment, looseness, outer_race, inner_race, rolling_element), trained with
  class-balanced cross-entropy.
* Anomaly autoencoder (`iot-anomaly@<version>`, anomaly.tflite): an MLP 21 -> ... -> bottleneck -> ... ->
  21 (ReLU, linear output) trained to reconstruct NORMAL windows only. The anomaly score is computed
  OUTSIDE the model, identically in Python (`anomaly_error`) and in C, from the int8 model's
  dequantized output:

      q_in[j]  = clamp(round(x[j] / s_in) + z_in, -128, 127)          (x: the float to_vector input)
      y[j]     = (q_out[j] - z_out) * s_out                           (after the int8 model)
      score    = (1/21) * sum_{j<21} (y[j] - x[j])^2                  (mean squared error, float)

  against the FLOAT input x (not its quantized copy). The alert threshold is the `anomaly_quantile`
  (99 %) of the int8 score over the normal windows of VALIDATION machines (training machines the
  autoencoder was not fitted on); labels.json carries it.

Both are converted to full int8 (`shared.tiny.int8.to_int8_tflite`, calibrated on training windows)
and checked against the device budget (`budget_check`: weights and arena limits, firmware operator
set: FULLY_CONNECTED and SOFTMAX only). Metrics are measured on machines the models never saw
(split by machine id, never by window), for the float Keras model and the int8 flatbuffer.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from industrial_iot.features import FEATURE_NAMES
from industrial_iot.signals import LABELS
from shared.runtime.metrics import auroc_or_none
from shared.runtime.training import subject_split
from shared.tiny.int8 import Int8Runner, budget_check, to_int8_tflite, unsupported_ops

MODEL_NAME = "iot-tiny"
ANOMALY_NAME = "iot-anomaly"
N_FEATURES = len(FEATURE_NAMES)


@dataclass
class TinyConfig:
    """Tiny model settings (defaults: the trained models)."""

    hidden: tuple[int, ...] = (32, 16)  #: classifier hidden layer widths (ReLU)
    epochs: int = 40  #: classifier training epochs
    ae_hidden: tuple[int, ...] = (16, 6, 16)  #: autoencoder hidden widths (ReLU; the middle one is the bottleneck)
    ae_epochs: int = 60  #: autoencoder training epochs
    batch_size: int = 256  #: samples per step
    lr: float = 3e-3  #: Adam learning rate (cosine decay to 5 % over training)
    anomaly_quantile: float = 0.99  #: threshold = this quantile of the int8 score on validation normal windows
    val_fraction: float = 0.2  #: share of training MACHINES held out (validation accuracy, anomaly threshold)
    representative_n: int = 1000  #: training windows used to calibrate int8 ranges
    weights_max_bytes: int = 32 * 1024  #: flash budget for constant tensors (per model)
    arena_max_bytes: int = 16 * 1024  #: RAM budget for the tensor arena (per model)
    version: str = "1"  #: model version in messages ("iot-tiny@1", "iot-anomaly@1")
    seed: int = 0  #: initialisation, shuffling, split

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.ae_hidden = tuple(int(h) for h in self.ae_hidden)
        checks = {"hidden": len(self.hidden) >= 1 and min(self.hidden) >= 1,
                  "epochs": self.epochs >= 1,
                  "ae_hidden": len(self.ae_hidden) >= 1 and min(self.ae_hidden) >= 1,
                  "ae_epochs": self.ae_epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "anomaly_quantile": 0.5 <= self.anomaly_quantile < 1.0,
                  "val_fraction": 0.0 < self.val_fraction < 1.0, "representative_n": self.representative_n >= 1,
                  "weights_max_bytes": self.weights_max_bytes >= 1, "arena_max_bytes": self.arena_max_bytes >= 1,
                  "version": isinstance(self.version, str) and self.version != ""}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"TinyConfig.{key}: invalid value {getattr(self, key)!r}")


@dataclass
class TinyData:
    """Training and held-out windows; `groups` are machine ids (split by them, never by window).

    x: (n, 21) float32 to_vector; y: (n,) int index into LABELS. `fleet_*` (optional): the held-out
    fleet's windows, reported beside the class-balanced test set.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    groups_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups_test: np.ndarray
    fleet_x_test: np.ndarray | None = None
    fleet_y_test: np.ndarray | None = None
    fleet_groups_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        parts = ["train", "test"] + (["fleet_test"] if self.fleet_x_test is not None else [])
        for part in parts:
            pre, suf = ("fleet_", "_test") if part == "fleet_test" else ("", f"_{part}")
            x, y, g = (getattr(self, f"{pre}{k}{suf}") for k in ("x", "y", "groups"))
            if x.ndim != 2 or x.shape[1] != N_FEATURES or len(x) != len(y) or len(y) != len(g) or len(x) == 0:
                raise ValueError(f"TinyData.{part}: need x (n, {N_FEATURES}), y (n,), groups (n,) with n >= 1; "
                                 f"got {x.shape}, {np.shape(y)}, {np.shape(g)}")
            if not np.all((np.asarray(y) >= 0) & (np.asarray(y) < len(LABELS))):
                raise ValueError(f"TinyData.{part}: labels must index LABELS (0..{len(LABELS) - 1})")
        seen = set(np.unique(self.groups_train))
        for part, g in (("test", self.groups_test), ("fleet_test", self.fleet_groups_test)):
            both = seen & set(np.unique(g)) if g is not None else set()
            if both:
                raise ValueError(f"TinyData: machines in both train and {part}: {sorted(both)[:5]}")
        if not np.any(np.asarray(self.y_train) == 0):
            raise ValueError("TinyData.y_train: the autoencoder needs normal windows (label 0)")


@dataclass
class TinyResult:
    """What `train_tiny` produced: metrics on held-out machines, budgets, both flatbuffers."""

    metrics: dict[str, Any]
    tflite: bytes = field(repr=False)  # classifier
    anomaly_tflite: bytes = field(repr=False)
    anomaly_threshold: float = 0.0
    version: str = "1"


def anomaly_error(reconstruction: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The anomaly score: mean over the 21 dims of (dequantized output - float input)^2, per row."""
    r, x = np.asarray(reconstruction, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return np.mean((r - x) ** 2, axis=1)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 (over labels present in y_true or y_pred), per-class recall, confusion (rows: truth)."""
    k = len(LABELS)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1), 0.0)
    return {"acc": round(float(tp.sum() / max(cm.sum(), 1)), 4), "macro_f1": round(float(f1[present].mean()), 4),
            "recall": {lab: round(float(tp[i] / support[i]), 4) for i, lab in enumerate(LABELS) if support[i]},
            "confusion": cm.tolist()}


def _mlp(widths: tuple[int, ...], n_out: int, name: str) -> Any:
    import keras

    inp = keras.Input((N_FEATURES,), name="features")
    h = inp
    for i, width in enumerate(widths):
        h = keras.layers.Dense(width, activation="relu", name=f"{name}_dense{i}")(h)
    out = keras.layers.Dense(n_out, name=f"{name}_out")(h)
    return keras.Model(inp, out, name=name)


def _adam(cfg: TinyConfig, n: int, epochs: int) -> Any:
    import keras

    steps = epochs * int(np.ceil(n / cfg.batch_size))
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=steps, alpha=0.05))


def _int8(model: Any, representative: np.ndarray, cfg: TinyConfig) -> tuple[bytes, dict[str, Any]]:
    blob = to_int8_tflite(model, representative)
    budget = budget_check(blob, cfg.weights_max_bytes, cfg.arena_max_bytes)
    assert not unsupported_ops(blob), unsupported_ops(blob)
    return blob, budget


def train_tiny(cfg: TinyConfig, data: TinyData, progress: Any = None) -> TinyResult:
    """Classifier and autoencoder -> int8; threshold on validation machines; metrics on held-out machines.

    `progress(stage: str)` is called as each stage starts (for a progress bar).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    def stage(name: str) -> None:
        if progress is not None:
            progress(name)

    keras.utils.set_random_seed(cfg.seed)
    fit, val = subject_split(np.asarray(data.groups_train), cfg.val_fraction, cfg.seed)
    x, y = data.x_train.astype(np.float32), np.asarray(data.y_train, int)
    rep = np.random.default_rng(cfg.seed).permutation(np.flatnonzero(fit))[: cfg.representative_n]

    stage("classifier")
    counts = np.bincount(y[fit], minlength=len(LABELS)).astype(float)
    weights = {i: float(counts.sum() / (len(LABELS) * c)) for i, c in enumerate(counts) if c > 0}
    clf = _mlp(cfg.hidden, len(LABELS), "iot_tiny")
    clf.compile(optimizer=_adam(cfg, int(fit.sum()), cfg.epochs),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clf.fit(x[fit], y[fit], epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True,
            class_weight=weights)
    probs_model = keras.Sequential([clf, keras.layers.Softmax(name="probs")], name="iot_tiny_probs")
    probs_model.build((None, N_FEATURES))

    stage("autoencoder")
    normal_fit = fit & (y == 0)
    ae = _mlp(cfg.ae_hidden, N_FEATURES, "iot_anomaly")
    ae.compile(optimizer=_adam(cfg, int(normal_fit.sum()), cfg.ae_epochs), loss="mse")
    ae.fit(x[normal_fit], x[normal_fit], epochs=cfg.ae_epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True)

    stage("int8")
    blob, budget = _int8(probs_model, x[rep], cfg)
    ae_blob, ae_budget = _int8(ae, x[rep], cfg)
    clf_runner, ae_runner = Int8Runner(blob), Int8Runner(ae_blob)
    normal_val = val & (y == 0)
    val_scores = anomaly_error(ae_runner.predict(x[normal_val]), x[normal_val])
    threshold = float(np.quantile(val_scores, cfg.anomaly_quantile))

    stage("evaluate")

    def predict_float(xs: np.ndarray) -> np.ndarray:
        return probs_model.predict(xs, batch_size=4096, verbose=0)

    def evaluate(xs: np.ndarray, ys: np.ndarray) -> dict[str, Any]:
        xs, ys = xs.astype(np.float32), np.asarray(ys, int)
        p_float, p_int8 = predict_float(xs), clf_runner.predict(xs)
        e_float = anomaly_error(ae.predict(xs, batch_size=4096, verbose=0), xs)
        e_int8 = anomaly_error(ae_runner.predict(xs), xs)
        m_float, m_int8 = classification_metrics(ys, p_float.argmax(1)), classification_metrics(ys, p_int8.argmax(1))
        faulty = ys > 0
        return {"float_acc": m_float["acc"], "int8_acc": m_int8["acc"],
                "float_macro_f1": m_float["macro_f1"], "int8_macro_f1": m_int8["macro_f1"],
                "int8_float_agreement": round(float((p_int8.argmax(1) == p_float.argmax(1)).mean()), 4),
                "float_recall": m_float["recall"], "int8_recall": m_int8["recall"],
                "int8_confusion": m_int8["confusion"],
                "anomaly_auroc": auroc_or_none(faulty, e_int8), "anomaly_float_auroc": auroc_or_none(faulty, e_float),
                "anomaly_normal_alert_rate": round(float((e_int8[~faulty] >= threshold).mean()), 4)
                if (~faulty).any() else None,
                "anomaly_faulty_alert_rate": round(float((e_int8[faulty] >= threshold).mean()), 4)
                if faulty.any() else None,
                "n_windows": len(ys)}

    test = evaluate(data.x_test, data.y_test)
    fleet = None
    if data.fleet_x_test is not None:
        fleet = evaluate(data.fleet_x_test, data.fleet_y_test)
    val_acc = float((predict_float(x[val]).argmax(1) == y[val]).mean())
    metrics = {
        "model_id": f"{MODEL_NAME}@{cfg.version}", "anomaly_model_id": f"{ANOMALY_NAME}@{cfg.version}",
        **{k: test[k] for k in ("float_acc", "int8_acc", "float_macro_f1", "int8_macro_f1", "int8_float_agreement",
                                "anomaly_auroc", "anomaly_float_auroc")},
        "anomaly_threshold": threshold, "anomaly_quantile": cfg.anomaly_quantile,
        "val_acc": round(val_acc, 4), "test": test, "fleet_test": fleet, "labels": list(LABELS),
        "weights_bytes": budget["weights_bytes"], "arena_bytes": budget["arena_bytes_estimate"],
        "anomaly_weights_bytes": ae_budget["weights_bytes"], "anomaly_arena_bytes": ae_budget["arena_bytes_estimate"],
        "ops": sorted(set(budget["ops"])), "anomaly_ops": sorted(set(ae_budget["ops"])),
        "tflite_bytes": len(blob), "anomaly_tflite_bytes": len(ae_blob),
        "n_train_windows": int(fit.sum()), "n_val_windows": int(val.sum()),
        "n_train_machines": len(np.unique(data.groups_train[fit])),
        "n_val_machines": len(np.unique(data.groups_train[val])),
        "n_test_machines": len(np.unique(data.groups_test)),
        "config": asdict(cfg),
    }
    return TinyResult(metrics=metrics, tflite=blob, anomaly_tflite=ae_blob, anomaly_threshold=threshold,
                      version=cfg.version)


def save_tiny(result: TinyResult, models_dir: Path) -> None:
    """Write tiny.tflite (classifier), anomaly.tflite, labels.json and tiny_metrics.json into `models_dir`."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "tiny.tflite").write_bytes(result.tflite)
    (models_dir / "anomaly.tflite").write_bytes(result.anomaly_tflite)
    meta = {"labels": list(LABELS), "anomaly_threshold": result.anomaly_threshold,
            "model_id": f"{MODEL_NAME}@{result.version}", "anomaly_model_id": f"{ANOMALY_NAME}@{result.version}",
            "version": result.version, "feature_names": list(FEATURE_NAMES),
            "anomaly_score": "mean over the 21 inputs of (dequantized output - float input)^2"}
    (models_dir / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    (models_dir / "tiny_metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")


class TinyModels:
    """The two int8 device models (LiteRT reference kernels): what a simulated sensor runs."""

    def __init__(self, tflite: str | Path | bytes, anomaly_tflite: str | Path | bytes, anomaly_threshold: float,
                 labels: tuple[str, ...] = LABELS, version: str = "1"):
        self.runner = Int8Runner(tflite)
        self.anomaly_runner = Int8Runner(anomaly_tflite)
        if self.runner.input_shape != (N_FEATURES,) or self.anomaly_runner.input_shape != (N_FEATURES,):
            raise ValueError(f"tiny models' input must be ({N_FEATURES},), got {self.runner.input_shape} and "
                             f"{self.anomaly_runner.input_shape}")
        if self.runner.output_shape != (len(labels),):
            raise ValueError(f"classifier output shape {self.runner.output_shape} does not fit {len(labels)} labels")
        if self.anomaly_runner.output_shape != (N_FEATURES,):
            raise ValueError(f"autoencoder output must be ({N_FEATURES},), got {self.anomaly_runner.output_shape}")
        self.labels = tuple(labels)
        self.version = version
        self.model_id = f"{MODEL_NAME}@{version}"
        self.anomaly_model_id = f"{ANOMALY_NAME}@{version}"
        self.anomaly_threshold = float(anomaly_threshold)

    @classmethod
    def load(cls, models_dir: str | Path) -> TinyModels:
        """From models_dir/tiny.tflite, anomaly.tflite and labels.json."""
        d = Path(models_dir)
        for name in ("tiny.tflite", "anomaly.tflite", "labels.json"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d / name} not found: train first (tinylarge train industrial_iot)")
        meta = json.loads((d / "labels.json").read_text())
        return cls(d / "tiny.tflite", d / "anomaly.tflite", float(meta["anomaly_threshold"]),
                   tuple(meta.get("labels", LABELS)), str(meta.get("version", "1")))

    @staticmethod
    def _check(vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"vectors: expected shape (n, {N_FEATURES}) from features.to_vector, got {x.shape}")
        return x

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 21) vectors -> (n, n_labels) dequantized int8 probabilities."""
        return self.runner.predict(self._check(vectors))

    def classify(self, vectors: np.ndarray) -> tuple[list[str], list[dict[str, float]]]:
        """(n, 21) vectors -> (labels, score dicts label -> probability)."""
        p = self.scores(vectors)
        names = [self.labels[i] for i in p.argmax(1)]
        return names, [{lab: round(float(v), 4) for lab, v in zip(self.labels, row, strict=True)} for row in p]

    def anomaly(self, vectors: np.ndarray) -> np.ndarray:
        """(n, 21) vectors -> (n,) anomaly scores (`anomaly_error` of the int8 reconstruction)."""
        x = self._check(vectors)
        return anomaly_error(self.anomaly_runner.predict(x), x)
