"""Split learning (clients in turn), SplitFed (clients in parallel) and the centralised baseline.

Data: the domain's :class:`~shared.integration.task.TinyTask`, split BY SUBJECT into training and
held-out subjects; the training subjects are dealt to ``n_clients`` clients (each holds whole subjects,
so the clients' data differ as real sites' would). Inputs are standardised with the training
subjects' mean and spread (the constants a deployed model carries).

The split model: the device runs the first ``cut`` dense+ReLU layers of the domain's deployed MLP
(``task.hidden``); the cloud runs a larger network (:data:`~shared.integration.split.cloud.DEFAULT_WIDTHS`)
from there to the classes. Every configuration trains this same architecture with the same Adam
settings, epochs and batch size; only who holds which data and what crosses the wire differ.

* :func:`train_sl` (vanilla split learning): in each epoch the clients take turns; each starts from
  the client-side weights the previous one left (passed device to device) and trains all its
  batches against the one server-side model.
* :func:`train_splitfed` (SplitFed, Thapa et al. 2022, SFV1): in each round every client trains in
  parallel from the global client-side weights against its own copy of the server-side model; at the
  end of the round the fed server averages the client-side layers and the main server the
  server-side copies (sample-weighted).
* A client that goes silent for ``timeout_s`` is skipped: its partial work is discarded (SL restores
  the server-side model from before its turn and passes on the client-side weights it received; SplitFed
  leaves it out of both averages), so a dead client neither hangs the run nor corrupts the model.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.integration.split.cloud import DEFAULT_WIDTHS, CloudServer
from shared.integration.split.device import DeviceNet, average
from shared.integration.split.link import CloudService, DeviceLink, LinkTimeout, LocalLink
from shared.integration.task import TinyTask, split_subjects


@dataclass
class SplitConfig:
    cut: int = 0  #: device layers (0: all of the deployed MLP's hidden layers)
    cloud_widths: tuple[int, ...] = DEFAULT_WIDTHS
    epochs: int = 5
    batch: int = 64
    lr: float = 1e-3
    wire_dtype: str = "float16"  #: activations and gradients on the wire
    timeout_s: float = 10.0  #: a client silent this long is declared dead for the epoch / round
    test_fraction: float = 0.25
    seed: int = 0
    #: fault injection for tests and demos: client index -> batch after which it dies (first epoch only)
    die_after: dict[int, int] = field(default_factory=dict)
    #: TLS for mqtts:// (``ca``, ``cert``, ``key`` paths), given to the cloud service and every device link
    tls: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.epochs < 1 or self.batch < 1 or self.lr <= 0 or self.timeout_s <= 0:
            raise ValueError(f"split config: epochs, batch, lr and timeout_s must be positive: {self}")
        if self.wire_dtype not in ("float16", "float32"):
            raise ValueError(f"split config: training wire dtype {self.wire_dtype!r}; use float16 or float32")


@dataclass
class SplitData:
    """A task split by subject, standardised, training subjects dealt to clients."""

    task: TinyTask
    x_test: np.ndarray
    y_test: np.ndarray
    clients: list[tuple[np.ndarray, np.ndarray]]
    test_subjects: int
    mean: np.ndarray
    std: np.ndarray

    @property
    def x_train(self) -> np.ndarray:
        return np.concatenate([c[0] for c in self.clients])

    @property
    def y_train(self) -> np.ndarray:
        return np.concatenate([c[1] for c in self.clients])


def prepare(task: TinyTask, n_clients: int, test_fraction: float = 0.25, seed: int = 0) -> SplitData:
    """Hold out subjects for testing; deal the training subjects round-robin to ``n_clients`` clients."""
    train, test = split_subjects(task.groups, test_fraction, seed)
    subjects = np.unique(task.groups[train])
    if not 1 <= n_clients <= len(subjects):
        raise ValueError(f"{task.domain}: {n_clients} clients but {len(subjects)} training subjects "
                         f"(each client needs at least one subject)")
    mean = task.x[train].mean(0)
    std = task.x[train].std(0) + 1e-6
    x = ((task.x - mean) / std).astype(np.float32)
    order = np.random.default_rng(seed + 1).permutation(subjects)
    clients = []
    for i in range(n_clients):
        mask = np.isin(task.groups, order[i::n_clients])
        clients.append((x[mask], task.y[mask]))
    return SplitData(task, x[test], task.y[test], clients, len(np.unique(task.groups[test])), mean, std)


def device_sizes(task: TinyTask, cut: int) -> list[int]:
    """Widths of the device part: input, then the first ``cut`` hidden layers (0: all of them)."""
    hidden = list(task.hidden)
    cut = cut or len(hidden)
    if not 1 <= cut <= len(hidden):
        raise ValueError(f"{task.domain}: cut {cut} outside 1..{len(hidden)} (the deployed MLP's hidden layers "
                         f"{tuple(hidden)})")
    return [task.n_features, *hidden[:cut]]


def tiny_model_params(task: TinyTask) -> int:
    """Parameters of the domain's deployed MLP (input -> hidden -> classes)."""
    sizes = [task.n_features, *task.hidden, task.n_classes]
    return int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)))


def fl_bytes_per_client_round(task: TinyTask) -> int:
    """FedAvg's traffic per client per round for the same tiny MLP: the float32 weights down and up."""
    return 2 * 4 * tiny_model_params(task)


@dataclass
class SplitResult:
    mode: str
    acc: float
    per_epoch_acc: list[float]
    bytes_up: list[int]  #: per client, payload bytes of smashed messages, all epochs
    bytes_down: list[int]  #: per client, payload bytes of cutgrad messages, all epochs
    weight_bytes: list[int]  #: per client, client-side weights moved (hand-over / FedAvg), all epochs
    dead: list[tuple[int, int]] = field(default_factory=list)  #: (epoch, client) skipped
    device: DeviceNet | None = None
    server: CloudServer | None = None
    server_key: str | None = None
    seconds: float = 0.0

    def bytes_per_client_epoch(self, epochs: int) -> float:
        """Mean over clients of (activations + gradients + client-side weights) per epoch."""
        n = len(self.bytes_up)
        total = sum(self.bytes_up) + sum(self.bytes_down) + sum(self.weight_bytes)
        return total / max(n, 1) / epochs

    def summary(self, epochs: int) -> dict[str, Any]:
        return {"mode": self.mode, "acc": round(self.acc, 4),
                "per_epoch_acc": [round(a, 4) for a in self.per_epoch_acc],
                "bytes_per_client_epoch": round(self.bytes_per_client_epoch(epochs)),
                "activation_grad_bytes_per_client_epoch":
                    round((sum(self.bytes_up) + sum(self.bytes_down)) / max(len(self.bytes_up), 1) / epochs),
                "dead": self.dead, "seconds": round(self.seconds, 1)}


def accuracy(device: DeviceNet, server: CloudServer, key: str | None, x: np.ndarray, y: np.ndarray) -> float:
    """Held-out accuracy of device part + server part (evaluated in-process)."""
    return float(np.mean(server.predict(device.forward(x), key=key) == y))


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def _client_epoch(net: DeviceNet, link: Any, x: np.ndarray, y: np.ndarray, rnd: int, batch: int,
                  rng: np.random.Generator, die_after: int | None = None) -> bool:
    """Train one epoch of one client over ``link``; False if it died (fault injection) or lost the cloud."""
    for b, idx in enumerate(_batches(len(x), batch, rng)):
        if die_after is not None and b >= die_after:
            if hasattr(link, "abort"):
                link.abort()
            return False
        acts = net.forward(x[idx], train=True)
        try:
            grad, _ = link.exchange(rnd, b, acts, y[idx])
        except LinkTimeout:
            return False
        net.backward(grad)
    return True


def train_centralised(data: SplitData, cfg: SplitConfig) -> SplitResult:
    """The same split architecture trained on the pooled training data, in one process (no wire)."""
    cfg.check()
    t0 = time.monotonic()
    sizes = device_sizes(data.task, cfg.cut)
    net = DeviceNet(sizes, cfg.seed, cfg.lr)
    server = CloudServer(sizes[-1], data.task.n_classes, cfg.cloud_widths, cfg.seed, cfg.lr)
    link = LocalLink(server, "central")
    rng = np.random.default_rng(cfg.seed)
    x, y = data.x_train, data.y_train
    accs = []
    for epoch in range(cfg.epochs):
        _client_epoch(net, link, x, y, epoch, cfg.batch, rng)
        accs.append(accuracy(net, server, "central", data.x_test, data.y_test))
    return SplitResult("centralised", accs[-1], accs, [0], [0], [0], device=net, server=server, server_key="central",
                       seconds=time.monotonic() - t0)


class _Run:
    """What both distributed modes share: the cloud service, device links, the wait for clients."""

    def __init__(self, data: SplitData, cfg: SplitConfig, url: str, mode: str):
        cfg.check()
        self.data, self.cfg, self.url, self.mode = data, cfg, url, mode
        self.sizes = device_sizes(data.task, cfg.cut)
        self.model = f"{data.task.model_id}-split@cut{len(self.sizes) - 1}"
        self.run_id = uuid.uuid4().hex[:8]
        self.devices = [f"{mode}-{self.run_id}-c{i:02d}" for i in range(len(data.clients))]
        self.server = CloudServer(self.sizes[-1], data.task.n_classes, cfg.cloud_widths, cfg.seed, cfg.lr)
        key_of = (lambda d: "sl") if mode == "sl" else (lambda d: d)
        self.cloud = CloudService(url, data.task.domain, self.server, self.model, f"cloud-{self.run_id}", key_of,
                                  cfg.wire_dtype, **cfg.tls)
        self.links: dict[int, DeviceLink] = {}
        self.rngs = [np.random.default_rng(cfg.seed + 100 + i) for i in range(len(data.clients))]

    def link(self, i: int) -> DeviceLink:
        """Client ``i``'s connection (a new one after it died)."""
        link = self.links.get(i)
        if link is None or not link.client.connected:
            old = link
            link = DeviceLink(self.url, self.data.task.domain, self.devices[i], self.model, self.cfg.wire_dtype,
                              self.cfg.timeout_s, **self.cfg.tls).start()
            if old is not None:  # keep counting the dead connection's bytes for this client
                link.bytes_up, link.bytes_down = old.bytes_up, old.bytes_down
            self.links[i] = link
        return link

    def run_clients(self, clients: list[int], rnd: int, start: dict[int, DeviceNet]) -> dict[int, DeviceNet]:
        """Run an epoch on each client in ``clients`` in parallel threads; those that finish, by index.

        A client counts as dead once the cloud has not heard from it for ``timeout_s``; the run stops
        waiting for it (its thread, if still alive, is left to time out on its own link).
        """
        done: dict[int, DeviceNet] = {}
        lock = threading.Lock()

        def work(i: int) -> None:
            net = start[i]
            die = self.cfg.die_after.get(i) if rnd == 0 else None
            if _client_epoch(net, self.links[i], *self.data.clients[i], rnd, self.cfg.batch, self.rngs[i], die):
                with lock:
                    done[i] = net

        self.cloud.round = rnd
        threads = {}
        for i in clients:
            self.link(i)
            self.cloud.admit(self.devices[i])
            threads[i] = threading.Thread(target=work, args=(i,), name=f"split-client-{i}", daemon=True)
            threads[i].start()
        waiting = set(clients)
        while waiting:  # like a real server, judge only by what arrives: a result, or silence
            with lock:
                waiting -= set(done)
            for i in list(waiting):
                if self.cloud.idle_s(self.devices[i]) > self.cfg.timeout_s:
                    waiting.discard(i)  # silent too long: dead for this epoch
                    self.cloud.evict(self.devices[i])  # its late messages are ignored from now on
            time.sleep(0.01)
        with lock:
            return {i: done[i] for i in clients if i in done}

    def close(self) -> None:
        for link in self.links.values():
            if link.client.connected:
                link.stop()
        self.cloud.stop()

    def result(self, net: DeviceNet, accs: list[float], weight_bytes: list[int], dead: list[tuple[int, int]],
               key: str | None, t0: float) -> SplitResult:
        n = len(self.data.clients)
        up = [self.links[i].bytes_up if i in self.links else 0 for i in range(n)]
        down = [self.links[i].bytes_down if i in self.links else 0 for i in range(n)]
        return SplitResult(self.mode, accs[-1], accs, up, down, weight_bytes, dead, net, self.server, key,
                           time.monotonic() - t0)


def train_sl(data: SplitData, cfg: SplitConfig, url: str) -> SplitResult:
    """Vanilla split learning over MQTT at ``url``: clients in turn, client-side weights handed on."""
    t0 = time.monotonic()
    run = _Run(data, cfg, url, "sl")
    n = len(data.clients)
    wbytes_each = 4 * DeviceNet(run.sizes).n_params()
    current = DeviceNet(run.sizes, cfg.seed, cfg.lr).get_weights()
    nets = [DeviceNet(run.sizes, cfg.seed, cfg.lr) for _ in range(n)]  # each device keeps its Adam moments
    weight_bytes = [0] * n
    dead: list[tuple[int, int]] = []
    accs: list[float] = []
    run.cloud.start()
    try:
        for epoch in range(cfg.epochs):
            for i in range(n):
                nets[i].set_weights(current)
                weight_bytes[i] += wbytes_each  # received from the previous client
                snap = run.server.snapshot("sl")
                if i in run.run_clients([i], epoch, {i: nets[i]}):
                    current = nets[i].get_weights()
                    weight_bytes[i] += wbytes_each  # handed to the next client
                else:
                    run.server.restore("sl", snap)  # undo the dead client's server-side steps
                    dead.append((epoch, i))
            probe = DeviceNet(run.sizes)
            probe.set_weights(current)
            accs.append(accuracy(probe, run.server, "sl", data.x_test, data.y_test))
    finally:
        run.close()
    return run.result(probe, accs, weight_bytes, dead, "sl", t0)


def train_splitfed(data: SplitData, cfg: SplitConfig, url: str) -> SplitResult:
    """SplitFed (SFV1) over MQTT at ``url``: clients in parallel, both sides FedAvg'ed every round."""
    t0 = time.monotonic()
    run = _Run(data, cfg, url, "splitfed")
    n = len(data.clients)
    wbytes_each = 4 * DeviceNet(run.sizes).n_params()
    glob = DeviceNet(run.sizes, cfg.seed, cfg.lr)
    nets = [DeviceNet(run.sizes, cfg.seed, cfg.lr) for _ in range(n)]
    weight_bytes = [0] * n
    dead: list[tuple[int, int]] = []
    accs: list[float] = []
    run.cloud.start()
    try:
        for rnd in range(cfg.epochs):
            for i in range(n):
                nets[i].set_weights(glob.get_weights())
                weight_bytes[i] += wbytes_each  # global client-side weights down
                run.server.use_global(run.devices[i])
            done = run.run_clients(list(range(n)), rnd, {i: nets[i] for i in range(n)})
            ok = sorted(done)
            dead += [(rnd, i) for i in range(n) if i not in done]
            if ok:
                counts = [len(data.clients[i][1]) for i in ok]
                glob.set_weights(average([done[i].get_weights() for i in ok], counts))
                run.server.average([run.devices[i] for i in ok], counts)
                for i in ok:
                    weight_bytes[i] += wbytes_each  # client-side weights up to the fed server
            run.server.drop(run.devices)
            accs.append(accuracy(glob, run.server, None, data.x_test, data.y_test))
    finally:
        run.close()
    return run.result(glob, accs, weight_bytes, dead, None, t0)
