"""A small NumPy MLP shaped like the domains' deployed tiny models, for the integration strategies.

Why NumPy and not Keras for training: the transfer-learning experiments fit hundreds of tiny models
(one per held-out subject, per k, per method) and federated rounds exchange weight arrays; plain
NumPy with a fixed seed is fast, bit-for-bit deterministic, and makes "train only the last layer"
literal. The trained weights go through Keras only to be converted to a full-int8 TFLite flatbuffer
(``shared.tiny.int8.to_int8_tflite``), which ``Int8Runner`` runs, so int8 figures are the real thing.

Other strategies may import it:

* :class:`MLP` (``weights[i]`` of shape (in, out), ``biases[i]`` (out,); ReLU between layers, logits out),
  :func:`init_mlp`, :meth:`MLP.logits`, :meth:`MLP.features` (the last layer's input),
  :meth:`MLP.macs` (multiply-accumulates per inference);
* :func:`fit` (Adam, softmax cross-entropy, optional per-sample weights, optional L2 pull towards an
  anchor model: ``anchor_l2``), with ``layers="all"`` or ``"head"`` (only the last layer changes);
* :func:`fit_head` (the last layer alone, on precomputed :meth:`MLP.features`);
* :func:`to_int8` (flatbuffer bytes) and :func:`int8_probs` (probabilities from the int8 model);
* :func:`changed_weight_bytes` (bytes of the constant buffers that differ between two flatbuffers:
  what an update that keeps the rest of the model has to ship);
* :func:`accuracy`, :func:`macro_f1`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


@dataclass
class MLP:
    """Dense layers with ReLU between them; the last layer gives logits."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    def __post_init__(self) -> None:
        if not self.weights or len(self.weights) != len(self.biases):
            raise ValueError(f"MLP: need one bias per weight matrix, got {len(self.weights)} and {len(self.biases)}")
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise ValueError(f"MLP layer {i}: weight {w.shape} and bias {b.shape} do not match")
            if i and self.weights[i - 1].shape[1] != w.shape[0]:
                raise ValueError(f"MLP layer {i}: input {w.shape[0]} != previous output {self.weights[i - 1].shape[1]}")

    @property
    def n_in(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def n_out(self) -> int:
        return int(self.weights[-1].shape[1])

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(w.shape[1]) for w in self.weights[:-1])

    def copy(self) -> MLP:
        return MLP([w.copy() for w in self.weights], [b.copy() for b in self.biases])

    def macs(self) -> int:
        """Multiply-accumulates of one inference (the dense layers)."""
        return int(sum(w.shape[0] * w.shape[1] for w in self.weights))

    def n_params(self) -> int:
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases, strict=True)))

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"MLP input: expected (n, {self.n_in}), got {x.shape}")
        return x

    def features(self, x: np.ndarray) -> np.ndarray:
        """The last layer's input (the backbone's output) for inputs ``x`` (n, n_in)."""
        h = self._check_x(x)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        return h

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.features(x) @ self.weights[-1] + self.biases[-1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(1)

    def with_head(self, w: np.ndarray, b: np.ndarray) -> MLP:
        """This backbone with last layer (``w``, ``b``)."""
        if w.shape != self.weights[-1].shape or b.shape != self.biases[-1].shape:
            raise ValueError(f"with_head: expected {self.weights[-1].shape}/{self.biases[-1].shape}, got "
                             f"{w.shape}/{b.shape}")
        return MLP([*self.weights[:-1], w.astype(np.float32)], [*self.biases[:-1], b.astype(np.float32)])


def init_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, seed: int) -> MLP:
    """He-initialised weights, zero biases."""
    if n_in < 1 or n_out < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"init_mlp: widths must be >= 1, got n_in={n_in} hidden={hidden} n_out={n_out}")
    rng = np.random.default_rng(seed)
    sizes = [n_in, *hidden, n_out]
    ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
          for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return MLP(ws, [np.zeros(b, np.float32) for b in sizes[1:]])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _check_xy(x: np.ndarray, y: np.ndarray, n_out: int, sample_weight: np.ndarray | None) -> np.ndarray:
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"fit: need as many labels as inputs (>= 1), got {len(x)} inputs and {len(y)} labels")
    if y.min() < 0 or y.max() >= n_out:
        raise ValueError(f"fit: labels must be in 0..{n_out - 1}")
    if sample_weight is None:
        return np.ones(len(y), np.float32)
    sw = np.asarray(sample_weight, np.float32)
    if sw.shape != (len(y),) or np.any(sw < 0) or not np.isfinite(sw).all():
        raise ValueError("fit: sample_weight must be (n,), finite and >= 0")
    return sw


def fit(model: MLP, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float = 3e-3, batch_size: int = 64,
        seed: int = 0, layers: Literal["all", "head"] = "all", weight_decay: float = 0.0,
        anchor_l2: float = 0.0, sample_weight: np.ndarray | None = None) -> MLP:
    """A trained copy of ``model``: Adam on mean (weighted) softmax cross-entropy, cosine-decayed lr.

    ``layers="head"`` changes only the last layer. ``anchor_l2`` adds ``anchor_l2 * ||theta - theta_0||^2``
    (theta_0: ``model``'s weights; L2-SP, keeps a few-shot fit near where it started); ``weight_decay``
    adds ``weight_decay * ||theta||^2``.
    """
    if layers not in ("all", "head"):
        raise ValueError(f"fit: layers must be 'all' or 'head', got {layers!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"fit: epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    x = model._check_x(x)
    y = np.asarray(y, np.int64)
    sw = _check_xy(x, y, model.n_out, sample_weight)
    if layers == "head":
        w, b = fit_head(model.weights[-1], model.biases[-1], model.features(x), y, epochs=epochs, lr=lr,
                        batch_size=batch_size, seed=seed, weight_decay=weight_decay, anchor_l2=anchor_l2,
                        sample_weight=sw)
        return model.with_head(w, b)
    params = [p.astype(np.float64) for pair in zip(model.weights, model.biases, strict=True) for p in pair]
    anchor = [p.copy() for p in params]
    n_layers = len(model.weights)

    def grads(idx: np.ndarray) -> list[np.ndarray]:
        acts = [x[idx].astype(np.float64)]
        for i in range(n_layers):
            z = acts[-1] @ params[2 * i] + params[2 * i + 1]
            acts.append(np.maximum(z, 0.0) if i < n_layers - 1 else z)
        wts = sw[idx] / max(float(sw[idx].sum()), 1e-12)
        d = _softmax(acts[-1])
        d[np.arange(len(idx)), y[idx]] -= 1.0
        d *= wts[:, None]
        out: list[np.ndarray] = [np.empty(0)] * len(params)
        for i in range(n_layers - 1, -1, -1):
            out[2 * i] = acts[i].T @ d
            out[2 * i + 1] = d.sum(0)
            if i:
                d = (d @ params[2 * i].T) * (acts[i] > 0)
        return out

    params = _adam(params, anchor, grads, len(x), epochs, lr, batch_size, seed, weight_decay, anchor_l2)
    return MLP([params[2 * i].astype(np.float32) for i in range(n_layers)],
               [params[2 * i + 1].astype(np.float32) for i in range(n_layers)])


def fit_head(w0: np.ndarray, b0: np.ndarray, h: np.ndarray, y: np.ndarray, *, epochs: int, lr: float = 3e-3,
             batch_size: int = 64, seed: int = 0, weight_decay: float = 0.0, anchor_l2: float = 0.0,
             sample_weight: np.ndarray | None = None, optimizer: Literal["adam", "sgd"] = "adam"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Train a last layer (``w0`` (d, c), ``b0`` (c,)) on backbone features ``h`` (n, d); see :func:`fit`
    (``optimizer="sgd"``: plain minibatch SGD, the textbook FedAvg client)."""
    h = np.asarray(h, np.float64)
    y = np.asarray(y, np.int64)
    if h.ndim != 2 or h.shape[1] != w0.shape[0]:
        raise ValueError(f"fit_head: features must be (n, {w0.shape[0]}), got {h.shape}")
    sw = _check_xy(h, y, w0.shape[1], sample_weight)
    params = [w0.astype(np.float64), b0.astype(np.float64)]
    anchor = [p.copy() for p in params]

    def grads(idx: np.ndarray) -> list[np.ndarray]:
        hb = h[idx]
        wts = sw[idx] / max(float(sw[idx].sum()), 1e-12)
        d = _softmax(hb @ params[0] + params[1])
        d[np.arange(len(idx)), y[idx]] -= 1.0
        d *= wts[:, None]
        return [hb.T @ d, d.sum(0)]

    w, b = _adam(params, anchor, grads, len(h), epochs, lr, batch_size, seed, weight_decay, anchor_l2, optimizer)
    return w.astype(np.float32), b.astype(np.float32)


def _adam(params: list[np.ndarray], anchor: list[np.ndarray], grads: Any, n: int, epochs: int, lr: float,
          batch_size: int, seed: int, weight_decay: float, anchor_l2: float, optimizer: str = "adam"
          ) -> list[np.ndarray]:
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    rng = np.random.default_rng(seed)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    steps_per_epoch = int(np.ceil(n / batch_size))
    total = epochs * steps_per_epoch
    t = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            g = grads(idx)
            t += 1
            rate = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * (t - 1) / total)))
            for i, p in enumerate(params):
                gi = g[i] + 2 * weight_decay * p + 2 * anchor_l2 * (p - anchor[i])
                if optimizer == "sgd":
                    p -= rate * gi
                    continue
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                p -= rate * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
    return params


def to_keras(model: MLP, name: str = "tiny_mlp") -> Any:
    """A Keras model (Dense+ReLU ..., Dense, Softmax) holding ``model``'s weights; outputs probabilities."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    inp = keras.Input((model.n_in,), name="features")
    h = inp
    n = len(model.weights)
    for i in range(n):
        h = keras.layers.Dense(model.weights[i].shape[1], activation="relu" if i < n - 1 else None,
                               name=f"{name}_dense{i}")(h)
    out = keras.layers.Softmax(name="probs")(h)
    km = keras.Model(inp, out, name=name)
    dense = [layer for layer in km.layers if isinstance(layer, keras.layers.Dense)]
    for layer, w, b in zip(dense, model.weights, model.biases, strict=True):
        layer.set_weights([w, b])
    return km


def to_int8(model: MLP, representative: np.ndarray) -> bytes:
    """Full-int8 TFLite flatbuffer of ``model`` (probabilities out), calibrated on ``representative``."""
    from shared.tiny.int8 import to_int8_tflite

    return to_int8_tflite(to_keras(model), np.asarray(representative, np.float32))


def int8_probs(blob: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities from the int8 flatbuffer (reference kernels, as the firmware)."""
    from shared.tiny.int8 import Int8Runner

    return Int8Runner(blob).predict(np.asarray(x, np.float32))


def changed_weight_bytes(blob_a: bytes, blob_b: bytes) -> int:
    """Bytes of the constant buffers of ``blob_b`` whose contents differ from ``blob_a``'s (same graph)."""
    from ai_edge_litert.schema_py_generated import ModelT

    a, b = (ModelT.InitFromPackedBuf(bytearray(blob), 0) for blob in (blob_a, blob_b))
    if len(a.buffers) != len(b.buffers):
        raise ValueError(f"changed_weight_bytes: different graphs ({len(a.buffers)} vs {len(b.buffers)} buffers)")
    total = 0
    for ba, bb in zip(a.buffers, b.buffers, strict=True):
        da = bytes(ba.data) if ba.data is not None else b""
        db = bytes(bb.data) if bb.data is not None else b""
        if da != db:
            total += len(db)
    return total


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    if len(y) == 0 or len(y) != len(pred):
        raise ValueError(f"accuracy: need equal, non-empty arrays, got {len(y)} and {len(pred)}")
    return float((y == pred).mean())


def macro_f1(y: np.ndarray, pred: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Mean F1 over ``classes`` (default: the classes present in ``y``)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if len(y) == 0 or len(y) != len(pred):
        raise ValueError(f"macro_f1: need equal, non-empty arrays, got {len(y)} and {len(pred)}")
    cls = np.unique(y) if classes is None else np.asarray(classes)
    f1 = []
    for c in cls:
        tp = float(((pred == c) & (y == c)).sum())
        denom = float((pred == c).sum() + (y == c).sum())
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))
