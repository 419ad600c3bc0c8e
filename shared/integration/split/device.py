"""The device side of the cut, in NumPy: the first dense+ReLU layers of the domain's tiny MLP.

:class:`DeviceNet` runs forward to the cut, keeps what backpropagation needs, and given the gradient
at the cut (from the cloud) finishes backpropagation through its own layers with Adam.
:func:`quantize` turns it into :class:`Int8Device`, the integer arithmetic a microcontroller runs
(TFLite's full-int8 scheme: per-tensor asymmetric activations, per-output-channel symmetric int8
weights, int32 biases and accumulators, ReLU fused into the requantization), whose int8 output goes
over the wire as it is, with its scale and zero point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


class DeviceNet:
    """Dense+ReLU layers of widths ``sizes`` (``sizes[0]`` the input); every layer ends in ReLU."""

    def __init__(self, sizes: list[int] | tuple[int, ...], seed: int = 0, lr: float = 1e-3):
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise ValueError(f"DeviceNet needs an input width and at least one layer width >= 1, got {sizes}")
        rng = np.random.default_rng(seed)
        self.sizes = tuple(int(s) for s in sizes)
        self.w = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
                  for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        self.b = [np.zeros(b, np.float32) for b in self.sizes[1:]]
        self.lr = lr
        self._reset_adam()
        self._cache: list[np.ndarray] = []

    def _reset_adam(self) -> None:
        self._m = [np.zeros_like(p) for p in self.params()]
        self._v = [np.zeros_like(p) for p in self.params()]
        self._t = 0

    def params(self) -> list[np.ndarray]:
        return [p for pair in zip(self.w, self.b, strict=True) for p in pair]

    def get_weights(self) -> list[np.ndarray]:
        return [p.copy() for p in self.params()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        shapes = [p.shape for p in self.params()]
        if [np.shape(w) for w in weights] != shapes:
            raise ValueError(f"device weights of shapes {[np.shape(w) for w in weights]}, expected {shapes}")
        for i, w in enumerate(weights):
            (self.w if i % 2 == 0 else self.b)[i // 2] = np.asarray(w, np.float32).copy()

    @property
    def out_width(self) -> int:
        return self.sizes[-1]

    def macs(self) -> int:
        """Multiply-accumulates per sample of the forward pass to the cut."""
        return int(sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)))

    def n_params(self) -> int:
        return int(sum(p.size for p in self.params()))

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        a = np.asarray(x, np.float32)
        cache = [a]
        for w, b in zip(self.w, self.b, strict=True):
            a = np.maximum(a @ w + b, 0.0)
            cache.append(a)
        if train:
            self._cache = cache
        return a

    def backward(self, grad: np.ndarray) -> None:
        """Backpropagate ``grad`` (d loss / d output of the last :meth:`forward` with ``train=True``); Adam step."""
        grads = self.gradients(grad)
        self._t += 1
        for k, (p, dp) in enumerate(zip(self.params(), grads, strict=True)):
            self._m[k] = BETA1 * self._m[k] + (1 - BETA1) * dp
            self._v[k] = BETA2 * self._v[k] + (1 - BETA2) * dp * dp
            mh = self._m[k] / (1 - BETA1 ** self._t)
            vh = self._v[k] / (1 - BETA2 ** self._t)
            p -= (self.lr * mh / (np.sqrt(vh) + EPS)).astype(np.float32)

    def gradients(self, grad: np.ndarray) -> list[np.ndarray]:
        """d loss / d :meth:`params` given ``grad`` at the cut, for the last ``forward(train=True)``."""
        if not self._cache:
            raise RuntimeError("backward() without a forward(train=True) before it")
        g = np.asarray(grad, np.float32)
        if g.shape != self._cache[-1].shape:
            raise ValueError(f"gradient of shape {g.shape} for activations of shape {self._cache[-1].shape}")
        grads: list[np.ndarray] = []
        for i in range(len(self.w) - 1, -1, -1):
            g = g * (self._cache[i + 1] > 0)
            grads = [self._cache[i].T @ g, g.sum(0)] + grads
            if i:
                g = g @ self.w[i].T
        self._cache = []
        return grads


def average(weight_sets: list[list[np.ndarray]], counts: list[int]) -> list[np.ndarray]:
    """Sample-weighted mean of several models' weight lists (FedAvg over the client-side layers)."""
    if not weight_sets or len(weight_sets) != len(counts) or sum(counts) <= 0:
        raise ValueError(f"average: need >= 1 weight sets with positive counts, got {len(weight_sets)}, {counts}")
    total = float(sum(counts))
    return [sum(ws[i] * (c / total) for ws, c in zip(weight_sets, counts, strict=True)).astype(np.float32)
            for i in range(len(weight_sets[0]))]


@dataclass
class _QLayer:
    wq: np.ndarray  # (in, out) int8
    w_scale: np.ndarray  # (out,)
    bias_q: np.ndarray  # (out,) int32, scale in_scale * w_scale
    out_scale: float
    out_zp: int


class Int8Device:
    """A :class:`DeviceNet` in int8: ``forward(x float) -> (int8 activations, scale, zero_point)``."""

    def __init__(self, in_scale: float, in_zp: int, layers: list[_QLayer], macs: int):
        self.in_scale, self.in_zp, self.layers, self._macs = in_scale, in_zp, layers, macs

    def macs(self) -> int:
        return self._macs

    def weight_bytes(self) -> int:
        """Flash for the constants: int8 weights, int32 biases, float32 per-channel scales."""
        return int(sum(q.wq.size + 4 * q.bias_q.size + 4 * q.w_scale.size for q in self.layers))

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, float, int]:
        q = np.clip(np.round(np.asarray(x, np.float32) / self.in_scale) + self.in_zp, -128, 127).astype(np.int32)
        scale, zp = self.in_scale, self.in_zp
        for layer in self.layers:
            acc = (q - zp) @ layer.wq.astype(np.int32) + layer.bias_q  # int32 accumulators
            mult = scale * layer.w_scale / layer.out_scale  # per channel; the firmware uses fixed point
            q = np.round(acc * mult).astype(np.int64) + layer.out_zp
            q = np.clip(q, layer.out_zp, 127).astype(np.int32)  # ReLU fused: nothing below the zero point
            scale, zp = layer.out_scale, layer.out_zp
        return q.astype(np.int8), float(scale), int(zp)

    def dequantized(self, x: np.ndarray) -> np.ndarray:
        q, scale, zp = self.forward(x)
        return (q.astype(np.float32) - zp) * scale


def quantize(net: DeviceNet, calibration: np.ndarray) -> Int8Device:
    """Post-training int8 quantization of ``net``, activation ranges from ``calibration`` inputs."""
    calibration = np.asarray(calibration, np.float32)
    if calibration.ndim != 2 or len(calibration) == 0:
        raise ValueError(f"calibration must be a non-empty (n, d) batch, got shape {calibration.shape}")
    lo, hi = min(float(calibration.min()), 0.0), max(float(calibration.max()), 0.0)
    in_scale = (hi - lo) / 255.0 or 1.0
    in_zp = int(np.clip(round(-128 - lo / in_scale), -128, 127))
    layers: list[_QLayer] = []
    a, scale = calibration, in_scale
    for w, b in zip(net.w, net.b, strict=True):
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        wq = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        bias_q = np.round(b / (scale * w_scale)).astype(np.int32)
        a = np.maximum(a @ w + b, 0.0)
        out_scale = max(float(a.max()), 1e-6) / 255.0  # [0, max] onto [-128, 127]
        layers.append(_QLayer(wq, w_scale.astype(np.float32), bias_q, out_scale, -128))
        scale = out_scale
    return Int8Device(in_scale, in_zp, layers, net.macs())
