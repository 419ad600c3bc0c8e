"""The vehicle unit's int8 event-window classifier (``veh-tiny@<version>``, tiny.tflite).

Input: `features.to_vector` of one candidate window (16 vehicle-frame features of 2.56 s around a
peak). Output: softmax over `signals.LABELS` (normal, harsh_brake, harsh_accel, harsh_corner, pothole,
speed_bump, crash). An MLP (ReLU) trained with cross-entropy on candidate windows of training
vehicles; per-class logit offsets, chosen on validation vehicles (drivers the fit did not see) to
maximise event F1, are folded into the output bias (the unit takes the argmax).
Converted to full int8 (`shared.tiny.int8.to_int8_tflite`), checked against the device budget
(FULLY_CONNECTED and SOFTMAX only). Metrics on windows of vehicles it never saw (split by vehicle),
float beside int8.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.runtime.training import subject_split
from shared.tiny.int8 import Int8Runner, budget_check, to_int8_tflite, unsupported_ops
from vehicles.features import FEATURE_NAMES
from vehicles.signals import LABELS

MODEL_NAME = "veh-tiny"
N_FEATURES = len(FEATURE_NAMES)


@dataclass
class TinyConfig:
    hidden: tuple[int, ...] = (32, 16)  #: hidden widths (ReLU)
    epochs: int = 60
    batch_size: int = 128
    lr: float = 3e-3
    val_fraction: float = 0.2  #: share of training vehicles held out for validation accuracy
    representative_n: int = 1000  #: windows calibrating the int8 ranges
    weights_max_bytes: int = 16 * 1024
    arena_max_bytes: int = 8 * 1024
    #: "none" (plain cross-entropy) or "sqrt" (weights sqrt(class balance)): weighting rare classes up buys
    #: recall with many false events; the normal offset below sets that trade-off where it pays
    class_weight: str = "none"
    #: choose per-class logit offsets on the validation vehicles (event F1, `train_tiny`'s ``objective``) and
    #: fold them into the output bias, so the unit's argmax decides at that operating point
    tune_offsets: bool = True
    version: str = "1"
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or min(self.hidden) < 1 or self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"TinyConfig: invalid {self!r}")
        if self.class_weight not in ("none", "sqrt"):
            raise ValueError(f"TinyConfig.class_weight: 'none' or 'sqrt', got {self.class_weight!r}")


@dataclass
class TinyResult:
    metrics: dict[str, Any]
    tflite: bytes = field(repr=False)
    version: str = "1"


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over the labels present, per-class recall, confusion (rows: truth)."""
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


def window_event_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the event windows: a window predicted as an event class counts as found, and as a true positive
    when that class is its true one; true events are the windows whose label is not normal."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    tp = float(((y_pred == y_true) & (y_true > 0)).sum())
    den = float((y_pred > 0).sum() + (y_true > 0).sum())
    return 2.0 * tp / den if den else 0.0


def tune_offsets(logits: np.ndarray, score: Callable[[np.ndarray], float], passes: int = 2,
                 grid: np.ndarray | None = None) -> np.ndarray:
    """Per-class offsets d (subtracted from the logits) that maximise ``score(argmax(logits - d))``, by
    coordinate ascent over ``grid`` (ties keep the smaller |d|); d[0] stays 0 only if nothing beats it."""
    grid = np.round(np.arange(-2.0, 3.01, 0.25), 2) if grid is None else grid
    logits = np.asarray(logits, dtype=np.float64)
    d = np.zeros(logits.shape[1])
    best = score((logits - d).argmax(1))
    for _ in range(passes):
        for k in range(logits.shape[1]):
            for v in sorted(grid, key=abs):
                trial = d.copy()
                trial[k] = v
                f = score((logits - trial).argmax(1))
                if f > best + 1e-9:
                    best, d = f, trial
    return d


def train_tiny(cfg: TinyConfig, x: np.ndarray, y: np.ndarray, groups: np.ndarray, x_test: np.ndarray,
               y_test: np.ndarray, objective: Callable[[np.ndarray, np.ndarray], float] | None = None
               ) -> TinyResult:
    """Train on (x, y) (groups: vehicle ids), int8, evaluate float and int8 on the test windows.

    ``objective(rows, pred)``: the score of predicting ``pred`` for the windows ``rows`` (indices into x,
    those of the validation vehicles) that the logit offsets maximise (default: `window_event_f1`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(x) != len(y) or len(y) != len(groups):
        raise ValueError(f"train_tiny: need x (n, {N_FEATURES}), y (n,), groups (n,); got {x.shape}, {y.shape}, "
                         f"{groups.shape}")
    keras.utils.set_random_seed(cfg.seed)
    fit, val = subject_split(np.asarray(groups), cfg.val_fraction, cfg.seed)
    x, y = x.astype(np.float32), np.asarray(y, int)
    counts = np.bincount(y[fit], minlength=len(LABELS)).astype(float)
    weights = None
    if cfg.class_weight == "sqrt":  # rare classes count more, without drowning the many normal windows
        weights = {i: float(np.sqrt(counts.sum() / (len(LABELS) * c))) for i, c in enumerate(counts) if c > 0}
    inp = keras.Input((N_FEATURES,), name="features")
    h = inp
    for i, w in enumerate(cfg.hidden):
        h = keras.layers.Dense(w, activation="relu", name=f"veh_dense{i}")(h)
    clf = keras.Model(inp, keras.layers.Dense(len(LABELS), name="veh_out")(h))
    steps = cfg.epochs * int(np.ceil(fit.sum() / cfg.batch_size))
    clf.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(cfg.lr, steps, alpha=0.05)),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clf.fit(x[fit], y[fit], epochs=cfg.epochs, batch_size=cfg.batch_size, verbose=0, shuffle=True,
            class_weight=weights)
    offsets = np.zeros(len(LABELS))
    if cfg.tune_offsets and val.any():
        rows = np.flatnonzero(val)
        objective = objective or (lambda r, p: window_event_f1(y[r], p))
        offsets = tune_offsets(clf.predict(x[rows], batch_size=4096, verbose=0), lambda p: objective(rows, p))
        out = clf.get_layer("veh_out")
        kernel, bias = out.get_weights()
        out.set_weights([kernel, (bias - offsets).astype(bias.dtype)])
    probs = keras.Sequential([clf, keras.layers.Softmax(name="probs")], name="veh_tiny_probs")
    probs.build((None, N_FEATURES))
    rep = np.random.default_rng(cfg.seed).permutation(np.flatnonzero(fit))[: cfg.representative_n]
    blob = to_int8_tflite(probs, x[rep])
    budget = budget_check(blob, cfg.weights_max_bytes, cfg.arena_max_bytes)
    assert not unsupported_ops(blob), unsupported_ops(blob)
    runner = Int8Runner(blob)
    xt, yt = x_test.astype(np.float32), np.asarray(y_test, int)
    p_float, p_int8 = probs.predict(xt, batch_size=4096, verbose=0), runner.predict(xt)
    mf, mi = classification_metrics(yt, p_float.argmax(1)), classification_metrics(yt, p_int8.argmax(1))
    val_acc = float((probs.predict(x[val], verbose=0).argmax(1) == y[val]).mean())
    metrics = {"model_id": f"{MODEL_NAME}@{cfg.version}", "float_acc": mf["acc"], "int8_acc": mi["acc"],
               "float_macro_f1": mf["macro_f1"], "int8_macro_f1": mi["macro_f1"],
               "int8_float_agreement": round(float((p_int8.argmax(1) == p_float.argmax(1)).mean()), 4),
               "int8_recall": mi["recall"], "logit_offsets": [round(float(v), 2) for v in offsets],
               "int8_confusion": mi["confusion"], "val_acc": round(val_acc, 4),
               "weights_bytes": budget["weights_bytes"], "arena_bytes": budget["arena_bytes_estimate"],
               "ops": sorted(set(budget["ops"])), "tflite_bytes": len(blob), "n_train_windows": int(fit.sum()),
               "n_test_windows": len(yt), "labels": list(LABELS), "config": asdict(cfg)}
    return TinyResult(metrics, blob, cfg.version)


def save_tiny(result: TinyResult, models_dir: Path) -> None:
    d = Path(models_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.tflite").write_bytes(result.tflite)
    meta = {"labels": list(LABELS), "model_id": f"{MODEL_NAME}@{result.version}", "version": result.version,
            "feature_names": list(FEATURE_NAMES)}
    (d / "labels.json").write_text(json.dumps(meta, indent=1) + "\n")
    (d / "tiny_metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")


class TinyModel:
    """The int8 classifier a simulated unit runs (LiteRT reference kernels)."""

    def __init__(self, tflite: str | Path | bytes, labels: tuple[str, ...] = LABELS, version: str = "1"):
        self.runner = Int8Runner(tflite)
        if self.runner.input_shape != (N_FEATURES,) or self.runner.output_shape != (len(labels),):
            raise ValueError(f"tiny model shapes {self.runner.input_shape} -> {self.runner.output_shape} do not fit "
                             f"{N_FEATURES} features and {len(labels)} labels")
        self.labels, self.version = tuple(labels), version
        self.model_id = f"{MODEL_NAME}@{version}"

    @classmethod
    def load(cls, models_dir: str | Path) -> TinyModel:
        d = Path(models_dir)
        for name in ("tiny.tflite", "labels.json"):
            if not (d / name).exists():
                raise FileNotFoundError(f"{d / name} not found: train first (tinylarge train vehicles)")
        meta = json.loads((d / "labels.json").read_text())
        return cls(d / "tiny.tflite", tuple(meta.get("labels", LABELS)), str(meta.get("version", "1")))

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32).reshape(-1, N_FEATURES)
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.runner.predict(x)
