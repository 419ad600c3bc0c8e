"""The cloud side of the cut, in PyTorch: a larger network from the cut activations to the classes.

:class:`CloudServer` holds one server-side model per key: one shared key for vanilla split learning and
the centralised baseline, one key per client in SplitFed (SFV1: the copies train in parallel and
:meth:`CloudServer.average` merges them at the end of each round). :meth:`CloudServer.step` is one
training step on a batch of activations and returns the gradient at the cut; :meth:`snapshot` and
:meth:`restore` let a run undo the updates of a client that died before finishing its turn.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch
from torch import nn

DEFAULT_WIDTHS = (128, 128)


def cloud_net(in_width: int, n_classes: int, widths: tuple[int, ...] = DEFAULT_WIDTHS, seed: int = 0) -> nn.Module:
    """Linear+ReLU layers of ``widths`` then a linear head: the larger model after the cut."""
    if in_width < 1 or n_classes < 2 or any(w < 1 for w in widths):
        raise ValueError(f"cloud_net: bad widths in={in_width} hidden={widths} classes={n_classes}")
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    prev = in_width
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


def n_params(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


class CloudServer:
    """Server-side models by key, each with its Adam optimizer; thread-safe (one lock for all)."""

    def __init__(self, in_width: int, n_classes: int, widths: tuple[int, ...] = DEFAULT_WIDTHS, seed: int = 0,
                 lr: float = 1e-3):
        torch.set_num_threads(1)  # small matrices: threads cost more than they give on a shared machine
        self.in_width, self.n_classes, self.lr = in_width, n_classes, lr
        self._global = cloud_net(in_width, n_classes, widths, seed)
        self._models: dict[str, tuple[nn.Module, torch.optim.Optimizer]] = {}
        self._lock = threading.Lock()
        self._loss = nn.CrossEntropyLoss()
        self.steps = 0

    def _get(self, key: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        if key not in self._models:
            net = copy.deepcopy(self._global)
            self._models[key] = (net, torch.optim.Adam(net.parameters(), lr=self.lr))
        return self._models[key]

    def step(self, key: str, acts: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """One Adam step of model ``key`` on (activations, labels); returns (d mean loss / d acts, loss)."""
        acts = np.asarray(acts, np.float32)
        labels = np.asarray(labels, np.int64)
        if acts.ndim != 2 or acts.shape[1] != self.in_width or len(labels) != len(acts):
            raise ValueError(f"cloud step: activations {acts.shape} / labels {labels.shape}, expected "
                             f"(n, {self.in_width}) and (n,)")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"cloud step: labels outside 0..{self.n_classes - 1}")
        with self._lock:
            net, opt = self._get(key)
            x = torch.from_numpy(acts).requires_grad_(True)
            loss = self._loss(net(x), torch.from_numpy(labels))
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.steps += 1
            assert x.grad is not None
            return x.grad.numpy().copy(), float(loss.item())

    def predict(self, acts: np.ndarray, key: str | None = None) -> np.ndarray:
        """Classes from activations with model ``key`` (default: the global model)."""
        with self._lock, torch.no_grad():
            net = self._global if key is None else self._get(key)[0]
            return net(torch.from_numpy(np.asarray(acts, np.float32))).argmax(1).numpy()

    # ------------------------------------------------------------------ model management
    def use_global(self, key: str) -> None:
        """(Re)start model ``key`` from the global weights with a fresh optimizer."""
        with self._lock:
            net = copy.deepcopy(self._global)
            self._models[key] = (net, torch.optim.Adam(net.parameters(), lr=self.lr))

    def commit(self, key: str) -> None:
        """Make model ``key`` the global model (vanilla SL: the one server-side model after each turn)."""
        with self._lock:
            self._global.load_state_dict(self._get(key)[0].state_dict())

    def snapshot(self, key: str) -> dict:
        with self._lock:
            net, opt = self._get(key)
            return {"net": copy.deepcopy(net.state_dict()), "opt": copy.deepcopy(opt.state_dict())}

    def restore(self, key: str, snap: dict) -> None:
        with self._lock:
            net, opt = self._get(key)
            net.load_state_dict(snap["net"])
            opt.load_state_dict(snap["opt"])

    def average(self, keys: list[str], counts: list[int]) -> None:
        """Global model := the sample-weighted mean of models ``keys`` (SplitFed's server-side FedAvg)."""
        if not keys or len(keys) != len(counts) or sum(counts) <= 0:
            raise ValueError(f"average: need >= 1 keys with positive counts, got {keys}, {counts}")
        total = float(sum(counts))
        with self._lock:
            states = [self._models[k][0].state_dict() for k in keys]
            merged = {name: sum(s[name] * (c / total) for s, c in zip(states, counts, strict=True))
                      for name in states[0]}
            self._global.load_state_dict(merged)

    def drop(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._models.pop(k, None)

    def global_params(self) -> int:
        return n_params(self._global)
