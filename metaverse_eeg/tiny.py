"""The headset's int8 affect model: the 85 features of one window -> the four valence x arousal quadrants.

An MLP (ReLU) with a softmax over ``LABELS`` (lv_la, lv_ha, hv_la, hv_ha), converted to full int8
(``shared.tiny.int8.to_int8_tflite``, calibrated on training windows), checked against the headset
budget (FULLY_CONNECTED and SOFTMAX only). High valence = P(hv_la) + P(hv_ha), high arousal =
P(lv_ha) + P(hv_ha).

Accuracy is measured across people: the model is trained on some simulated people and tested on
others (leave-subjects-out, split by user id, never by window), for the float model and the int8
flatbuffer, with chance level (the most frequent quadrant of the test set) beside it and the spread of
per-user accuracy.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metaverse_eeg import DOMAIN, FEATURE_NAMES, LABELS
from shared.tiny.int8 import Int8Runner, budget_check, to_int8_tflite, unsupported_ops

MODEL_NAME = DOMAIN.tiny_model
N_FEATURES = len(FEATURE_NAMES)


@dataclass
class TinyConfig:
    hidden: tuple[int, ...] = (32, 16)  #: hidden layer widths (ReLU)
    epochs: int = 60
    batch_size: int = 128
    lr: float = 3e-3  #: Adam, cosine decay to 5 %
    dropout: float = 0.2  #: between hidden layers (training only)
    representative_n: int = 1000
    weights_max_bytes: int = 32 * 1024
    arena_max_bytes: int = 16 * 1024
    version: str = "1"
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1 or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"TinyConfig: invalid {self!r}")


@dataclass
class TinyResult:
    metrics: dict[str, Any]
    tflite: bytes = field(repr=False)
    version: str = "1"


def quadrant_metrics(y: np.ndarray, pred: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Quadrant, valence and arousal accuracy, chance level, per-user accuracy spread."""
    y, pred, groups = np.asarray(y, int), np.asarray(pred, int), np.asarray(groups)
    per_user = [float((pred[groups == g] == y[groups == g]).mean()) for g in np.unique(groups)]
    counts = np.bincount(y, minlength=len(LABELS))
    return {"acc": round(float((pred == y).mean()), 4),
            "valence_acc": round(float(((pred >= 2) == (y >= 2)).mean()), 4),
            "arousal_acc": round(float(((pred % 2) == (y % 2)).mean()), 4),
            "chance_acc": round(float(counts.max() / counts.sum()), 4),
            "chance_binary_acc": round(float(max(np.mean(y >= 2), np.mean(y < 2), np.mean(y % 2 == 1),
                                                 np.mean(y % 2 == 0))), 4),
            "per_user_acc_p10_p50_p90": [round(float(q), 4) for q in np.percentile(per_user, [10, 50, 90])],
            "n_windows": len(y), "n_users": len(per_user)}


def train_tiny(cfg: TinyConfig, x_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray,
               x_test: np.ndarray, y_test: np.ndarray, g_test: np.ndarray) -> TinyResult:
    """Fit on the training users, convert to int8, evaluate float and int8 on the held-out users."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if set(np.unique(g_train)) & set(np.unique(g_test)):
        raise ValueError("train_tiny: a user is in both the training and the test set")
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"{name}: expected (n, {N_FEATURES}) to_vector rows, got {x.shape}")
    keras.utils.set_random_seed(cfg.seed)
    inp = keras.Input((N_FEATURES,), name="features")
    h = inp
    for i, w in enumerate(cfg.hidden):
        h = keras.layers.Dense(w, activation="relu", name=f"eeg_dense{i}")(h)
        if cfg.dropout > 0:
            h = keras.layers.Dropout(cfg.dropout)(h)
    out = keras.layers.Dense(len(LABELS), name="eeg_out")(h)
    model = keras.Model(inp, out, name="eeg_tiny")
    steps = cfg.epochs * int(np.ceil(len(x_train) / cfg.batch_size))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, steps, alpha=0.05)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train.astype(np.float32), np.asarray(y_train, int), epochs=cfg.epochs, batch_size=cfg.batch_size,
              verbose=0, shuffle=True)
    probs = keras.Sequential([model, keras.layers.Softmax(name="probs")], name="eeg_tiny_probs")
    probs.build((None, N_FEATURES))
    rep = np.random.default_rng(cfg.seed).permutation(len(x_train))[: cfg.representative_n]
    blob = to_int8_tflite(probs, x_train[rep].astype(np.float32))
    budget = budget_check(blob, cfg.weights_max_bytes, cfg.arena_max_bytes)
    assert not unsupported_ops(blob), unsupported_ops(blob)
    p_float = probs.predict(x_test.astype(np.float32), batch_size=4096, verbose=0)
    p_int8 = Int8Runner(blob).predict(x_test.astype(np.float32))
    m_float = quadrant_metrics(y_test, p_float.argmax(1), g_test)
    m_int8 = quadrant_metrics(y_test, p_int8.argmax(1), g_test)
    metrics = {"model_id": f"{MODEL_NAME}@{cfg.version}", "float_acc": m_float["acc"], "int8_acc": m_int8["acc"],
               "valence_acc": m_int8["valence_acc"], "arousal_acc": m_int8["arousal_acc"],
               "float_valence_acc": m_float["valence_acc"], "float_arousal_acc": m_float["arousal_acc"],
               "chance_acc": m_int8["chance_acc"], "chance_binary_acc": m_int8["chance_binary_acc"],
               "int8_float_agreement": round(float((p_int8.argmax(1) == p_float.argmax(1)).mean()), 4),
               "per_user_int8_acc_p10_p50_p90": m_int8["per_user_acc_p10_p50_p90"],
               "n_train_windows": len(x_train), "n_test_windows": len(x_test),
               "n_train_users": len(np.unique(g_train)), "n_test_users": len(np.unique(g_test)),
               "weights_bytes": budget["weights_bytes"], "arena_bytes": budget["arena_bytes_estimate"],
               "ops": sorted(set(budget["ops"])), "tflite_bytes": len(blob), "labels": list(LABELS),
               "config": asdict(cfg)}
    return TinyResult(metrics, blob, cfg.version)


def save_tiny(result: TinyResult, models_dir: Path) -> None:
    """tiny.tflite, labels.json and tiny_metrics.json into models_dir."""
    d = Path(models_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.tflite").write_bytes(result.tflite)
    meta = {"labels": list(LABELS), "model_id": f"{MODEL_NAME}@{result.version}", "version": result.version,
            "feature_names": list(FEATURE_NAMES)}
    (d / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    (d / "tiny_metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")


class TinyModel:
    """The int8 affect model as the headset runs it (LiteRT reference kernels)."""

    def __init__(self, tflite: str | Path | bytes, labels: tuple[str, ...] = LABELS, version: str = "1"):
        self.runner = Int8Runner(tflite)
        if self.runner.input_shape != (N_FEATURES,) or self.runner.output_shape != (len(labels),):
            raise ValueError(f"tiny model: expected ({N_FEATURES},) -> ({len(labels)},), got "
                             f"{self.runner.input_shape} -> {self.runner.output_shape}")
        self.labels = tuple(labels)
        self.version = version
        self.model_id = f"{MODEL_NAME}@{version}"

    @classmethod
    def load(cls, models_dir: str | Path) -> TinyModel:
        d = Path(models_dir)
        for name in ("tiny.tflite", "labels.json"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d / name} not found: train first (tinylarge train metaverse_eeg)")
        meta = json.loads((d / "labels.json").read_text())
        return cls(d / "tiny.tflite", tuple(meta.get("labels", LABELS)), str(meta.get("version", "1")))

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"vectors: expected (n, {N_FEATURES}) from features.to_vector, got {x.shape}")
        return self.runner.predict(x)


def valence_arousal(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(high valence), P(high arousal) from quadrant scores (n, 4) in LABELS order."""
    s = np.asarray(scores, dtype=np.float64)
    return s[:, 2] + s[:, 3], s[:, 1] + s[:, 3]
