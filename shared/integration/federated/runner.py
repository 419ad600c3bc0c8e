"""One federated run end to end: PKI, partitions, SuperLink + SuperNodes, ``flwr run``, comparison, rollout.

:func:`run_federated` is what ``tinylarge fl`` and the benchmark call. It

1. issues a CA and a server certificate for 127.0.0.1 with :mod:`shared.security.pki` (TLS on the
   SuperLink's Fleet/Control/Runtime API and on every SuperNode's local runtime API);
2. writes one partition per client (one training subject each) and the held-out subjects' windows;
3. starts ``flower-superlink`` and N ``flower-supernode`` processes on free loopback ports (subprocess
   isolation, no Ray, no runtime dependency installation), each node's ``--node-config`` naming its
   partition;
4. submits the app with ``flwr run APP tinylarge --stream`` (a generated Flower config in ``FLWR_HOME``
   points the connection at the SuperLink with the CA as ``root-certificates``) and waits for the
   ServerApp's result file;
5. optionally kills one SuperNode's whole process group while it holds a round's train message
   (``kill_client``: the fault the tests inject); meanwhile it logs each step and, from the ServerApp's
   log that ``flwr run --stream`` writes, one line per round as it completes (logger ``tinylarge.fl``);
6. stops every process (also on exceptions, Ctrl-C and SIGTERM; on SIGKILL the children die with their
   parent and the next run on the same ``--out`` sweeps what is left: :mod:`.processes`), then compares the
   global model with centralised and per-client training and rolls it out
   (:mod:`shared.integration.federated.compare`).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.integration.federated.processes import Processes, bin_path, free_port
from shared.integration.federated.task import load_meta, prepare_partitions

log = logging.getLogger("tinylarge.fl")

APP_NAME = "tinylarge-fl"
CONNECTION = "tinylarge"
#: Flower's own strategy classes the ServerApp can run (see server_app.make_strategy)
STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum")


class FederatedRunError(RuntimeError):
    """The run could not complete; the message names the step and quotes the relevant log."""


@dataclass
class FLConfig:
    """A federated run. ``min_clients``: rounds continue while at least this many nodes answer (default
    half of ``clients``, at least 1); ``round_timeout_s``: how long a round waits for replies."""

    domain: str
    clients: int = 3
    rounds: int = 5
    strategy: str = "fedavg"
    quick: bool = False
    proximal_mu: float = 0.1
    local_epochs: int = 5
    lr: float = 0.01
    batch_size: int = 32
    seed: int = 0
    min_clients: int | None = None
    round_timeout_s: float = 60.0
    connect_timeout_s: float = 120.0
    out_dir: Path = Path("out/integration/fl")
    mqtt: str | None = None
    signing_key: Path | None = None
    rollout: bool = True
    kill_client: tuple[int, int] | None = None  #: (partition id, round): SIGKILL that SuperNode mid-round
    insecure: bool = False  #: plaintext gRPC/HTTP; only for a test that says why
    sites: int | None = None  #: cross-silo: this many sites (clients), Dirichlet(alpha) split (:mod:`.silo`)
    alpha: float = 0.5
    poison: int = 0  #: the last ``poison`` clients attack every round (:mod:`.robust`)
    attack: str = "flip"
    attack_scale: float = -10.0
    dp_noise: float | None = None  #: server-side fixed clipping + Gaussian noise (:mod:`.dp`)
    dp_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.sites is not None:
            if self.sites < 1 or not self.alpha > 0:
                raise ValueError(f"--sites must be >= 1 and --alpha > 0, got {self.sites} and {self.alpha}")
            self.clients = self.sites
        if self.poison < 0 or (self.poison and self.poison >= self.clients):
            raise ValueError(f"--poison must be in 0..{self.clients - 1} (some clients stay honest), got "
                             f"{self.poison}")
        if self.attack not in ("flip", "scale"):
            raise ValueError(f"--attack must be flip or scale, got {self.attack!r}")
        if self.dp_noise is not None:
            if self.dp_noise < 0 or not self.dp_clip > 0:
                raise ValueError(f"--dp-noise must be >= 0 and --dp-clip > 0, got {self.dp_noise} and "
                                 f"{self.dp_clip}")
            if self.strategy != "fedavg":
                raise ValueError("--dp-noise wraps FedAvg only (--strategy fedavg)")
        if self.clients < 1 or self.rounds < 1:
            raise ValueError(f"--clients and --rounds must be >= 1, got {self.clients} and {self.rounds}")
        if self.min_clients is None:
            self.min_clients = max(1, self.clients // 2)
        if not 1 <= self.min_clients <= self.clients:
            raise ValueError(f"--min-clients must be in 1..{self.clients}, got {self.min_clients}")
        if self.local_epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.proximal_mu < 0:
            raise ValueError("local epochs, batch size and lr must be positive, proximal mu >= 0")
        if self.round_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.kill_client is not None:
            pid, rnd = self.kill_client
            if not (0 <= pid < self.clients and 1 <= rnd <= self.rounds):
                raise ValueError(f"kill_client {self.kill_client}: partition must be < {self.clients}, round in "
                                 f"1..{self.rounds}")
        self.out_dir = Path(self.out_dir)

    @property
    def run_dir(self) -> Path:
        tag = "quick" if self.quick else "full"
        extra = "" if self.sites is None else f"-silo{self.alpha:g}"
        if self.poison:
            extra += f"-{self.poison}{self.attack}" + (f"{self.attack_scale:g}" if self.attack == "scale" else "")
        if self.dp_noise is not None:
            extra += f"-dp{self.dp_noise:g}c{self.dp_clip:g}"
        return self.out_dir / f"{self.domain}-{self.strategy}-{self.clients}c{self.rounds}r{extra}-{tag}"


@dataclass
class FLRun:
    """What the Flower part of a run produced (the ServerApp's result and where things are)."""

    config: FLConfig
    run_dir: Path
    result: dict[str, Any]
    meta: dict[str, Any]
    token: str
    killed: dict[str, Any] = field(default_factory=dict)
    leftover_pids: list[int] = field(default_factory=list)


class RunTerminated(Exception):
    """SIGTERM arrived; raised so every ``finally`` runs."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises (like Ctrl-C raises KeyboardInterrupt), so cleanup code runs."""
    def handler(signum: int, frame: Any) -> None:
        raise RunTerminated(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _toml_str(s: str | Path) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string


def write_app(app_dir: Path, cfg: FLConfig, data_dir: Path, out_file: Path) -> None:
    """The Flower app manifest (``pyproject.toml``) whose components are this package's apps."""
    app_dir.mkdir(parents=True, exist_ok=True)
    run_config = {
        "data-dir": _toml_str(data_dir.resolve()), "out-file": _toml_str(out_file.resolve()),
        "strategy": _toml_str(cfg.strategy), "num-rounds": cfg.rounds, "num-clients": cfg.clients,
        "min-clients": cfg.min_clients, "round-timeout": float(cfg.round_timeout_s),
        "connect-timeout": float(cfg.connect_timeout_s), "local-epochs": cfg.local_epochs, "lr": float(cfg.lr),
        "batch-size": cfg.batch_size, "proximal-mu": float(cfg.proximal_mu), "seed": cfg.seed,
        "poison-ids": _toml_str(",".join(str(i) for i in range(cfg.clients - cfg.poison, cfg.clients))),
        "attack": _toml_str(cfg.attack), "attack-scale": float(cfg.attack_scale),
        "dp-noise": float(-1.0 if cfg.dp_noise is None else cfg.dp_noise), "dp-clip": float(cfg.dp_clip),
    }
    lines = [
        "[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
        "[project]", f'name = "{APP_NAME}"', 'version = "1.0.0"',
        'description = "TinyLarge: the tiny model federated over SuperNodes"', 'license = "MIT"',
        "dependencies = []", "",
        "[tool.flwr.app]", 'publisher = "tinylarge"', "",
        "[tool.flwr.app.components]",
        'serverapp = "shared.integration.federated.server_app:app"',
        'clientapp = "shared.integration.federated.client_app:app"', "",
        "[tool.flwr.app.config]", *(f"{k} = {v}" for k, v in run_config.items()), "",
    ]
    (app_dir / "pyproject.toml").write_text("\n".join(lines))


def write_flwr_home(home: Path, port: int, ca: Path | None) -> None:
    """``FLWR_HOME/config.toml``: the SuperLink connection ``flwr run`` uses."""
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
             f'address = "127.0.0.1:{port}"']
    lines.append("insecure = true" if ca is None else f"root-certificates = {_toml_str(ca.resolve())}")
    (home / "config.toml").write_text("\n".join(lines) + "\n")


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROUND = re.compile(r"\[ROUND (\d+)/(\d+)\]")
_REPLIES = re.compile(r"aggregate_train: Received (\d+) results and (\d+) failures")
_TRAIN = re.compile(r"Aggregated MetricRecord: (\{.*\})")
_HELD_OUT = re.compile(r"(?<!Aggregated )MetricRecord: (\{.*\})")
_INITIAL = re.compile(r"Initial global evaluation results: (\{.*\})")


def _record(text: str) -> dict[str, Any]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return value if isinstance(value, dict) else {}


class RoundLog:
    """Follows the ServerApp's log (what ``flwr run --stream`` writes) and reports each round once it is
    scored: ``report(line)`` gets e.g. ``round 2/5: 3 replies, 0 failures; train loss 0.812; held-out accuracy
    0.734 (loss 0.701)``. Only whole lines are read; call :meth:`poll` as often as convenient."""

    def __init__(self, path: Path, report: Any = None):
        self.path = Path(path)
        self.report = report or log.info
        self._offset = 0
        self._round: tuple[int, int] | None = None
        self._replies = ""
        self._train_loss: float | None = None
        self.rounds_done = 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for raw in chunk[: end + 1].decode(errors="replace").splitlines():
            self._line(_ANSI.sub("", raw))

    def _line(self, line: str) -> None:
        if m := _INITIAL.search(line):
            acc = _record(m.group(1)).get("held-out-accuracy")
            if acc is not None:
                self.report(f"round 0 (the initial model): held-out accuracy {acc:.3f}")
        elif m := _ROUND.search(line):
            self._round = (int(m.group(1)), int(m.group(2)))
            self._replies, self._train_loss = "", None
        elif m := _REPLIES.search(line):
            self._replies = f"{m.group(1)} replies, {m.group(2)} failures; "
        elif m := _TRAIN.search(line):
            self._train_loss = _record(m.group(1)).get("train-loss")
        elif (m := _HELD_OUT.search(line)) and self._round is not None:
            rec = _record(m.group(1))
            if "held-out-accuracy" not in rec:
                return
            n, total = self._round
            train = f"train loss {self._train_loss:.3f}; " if self._train_loss is not None else ""
            loss = rec.get("held-out-loss")
            self.report(f"round {n}/{total}: {self._replies}{train}held-out accuracy {rec['held-out-accuracy']:.3f}"
                        + (f" (loss {loss:.3f})" if loss is not None else ""))
            self.rounds_done = n
            self._round = None


def _watch_and_kill(procs: Processes, name: str, rnd: int) -> dict[str, Any] | None:
    """Kill SuperNode ``name`` (its process group) once it has received its ``rnd``-th train message."""
    received = len(re.findall(r"Receiving: train message", procs.log(name)))
    if received >= rnd:
        procs.kill(name)
        return {"node": name, "round": rnd, "at_s": time.monotonic()}
    return None


def _wait_listening(port: int, timeout_s: float, procs: Processes) -> None:
    """Until the SuperLink accepts TCP connections on ``port`` (or it exits, or ``timeout_s`` passes)."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        link = procs.procs["superlink"]
        if link.poll() is not None:
            raise FederatedRunError(f"flower-superlink exited ({link.returncode}):\n{_tail(procs.log('superlink'))}")
        if time.monotonic() > end:
            raise FederatedRunError(f"flower-superlink not listening on {port} within {timeout_s:.0f} s")
        time.sleep(0.3)


def run_flower(cfg: FLConfig) -> FLRun:
    """Steps 1-6 of the module doc up to the ServerApp's result; every process stopped on return or raise."""
    from shared.security import pki

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("result.json", "result.npz"):
        (run_dir / stale).unlink(missing_ok=True)
    data_dir, pki_dir = run_dir / "data", run_dir / "pki"
    if cfg.sites is None:
        log.info(f"{cfg.domain}: {cfg.clients} partitions (one training subject each) and the held-out subjects "
                 f"-> {data_dir}")
        prepare_partitions(cfg.domain, cfg.clients, cfg.quick, data_dir, seed=cfg.seed)
    else:
        from shared.integration.federated.silo import prepare_sites

        site_meta = prepare_sites(cfg.domain, cfg.sites, cfg.alpha, cfg.quick, data_dir, seed=cfg.seed)
        log.info(f"{cfg.domain}: {cfg.sites} sites (Dirichlet alpha {cfg.alpha:g}; windows "
                 f"{site_meta['site_windows']}, label skew {site_meta['label_skew_tv']:.2f}) -> {data_dir}")
    meta = load_meta(data_dir)
    ca: Path | None = None
    tls: list[str] = []
    if not cfg.insecure:
        if not (pki_dir / pki.CA_CERT).exists():
            pki.create_ca(pki_dir, cn="TinyLarge FL CA")
        server = pki.issue(pki_dir, "superlink", "server", hosts=("127.0.0.1", "localhost"))
        ca = pki_dir / pki.CA_CERT
        tls = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(server.cert), "--ssl-keyfile", str(server.key)]
    out_file = run_dir / "result.json"
    write_app(run_dir / "app", cfg, data_dir, out_file)
    port = free_port()
    write_flwr_home(run_dir / "flwr_home", port, ca)
    token = uuid.uuid4().hex
    procs = Processes(token, run_dir / "logs", pid_dir=cfg.out_dir / ".pids")  # sweeps dead runs' leftovers
    (run_dir / "run.json").write_text(json.dumps({"token": token, "port": port, "pid": os.getpid()}) + "\n")
    killed: dict[str, Any] = {}
    leftover: list[int] = []
    try:
        with sigterm_raises():
            procs.start("superlink", [bin_path("flower-superlink"), *(tls or ["--insecure"]), "--host", "127.0.0.1",
                                      "--port", str(port), "--disable-runtime-dependency-installation"])
            for i in range(cfg.clients):
                node_cfg = f"partition-id={i} data-dir={_toml_str(data_dir.resolve())}"
                node_tls = (["--root-certificates", str(ca), *tls] if ca is not None else ["--insecure"])
                procs.start(f"supernode{i}", [bin_path("flower-supernode"), *node_tls, "--superlink",
                                              f"127.0.0.1:{port}", "--node-config", node_cfg,
                                              "--host", "127.0.0.1", "--port", str(free_port())])
            log.info(f"SuperLink on 127.0.0.1:{port} ({'plaintext' if ca is None else 'TLS'}), {cfg.clients} "
                     f"SuperNodes; waiting for it to listen")
            _wait_listening(port, cfg.connect_timeout_s, procs)
            log.info(f"flwr run: {cfg.rounds} rounds of {cfg.strategy}, {cfg.local_epochs} local epochs each "
                     f"(logs: {procs.log_dir})")
            flwr = procs.start("flwr-run", [bin_path("flwr"), "run", str((run_dir / "app").resolve()), CONNECTION,
                                            "--stream"], env={"FLWR_HOME": str((run_dir / "flwr_home").resolve())})
            budget = cfg.connect_timeout_s + cfg.rounds * (cfg.round_timeout_s * 2 + 30) + 60
            end = time.monotonic() + budget
            rounds = RoundLog(procs.log_dir / "flwr-run.log")
            while not out_file.exists():
                rounds.poll()
                if cfg.kill_client is not None and not killed:
                    killed = _watch_and_kill(procs, f"supernode{cfg.kill_client[0]}", cfg.kill_client[1]) or {}
                if flwr.poll() is not None and not out_file.exists():
                    time.sleep(1.0)  # the result may land just after the stream closes
                    if not out_file.exists():
                        raise FederatedRunError(
                            f"flwr run exited ({flwr.returncode}) without a result\n--- flwr run:\n"
                            f"{_tail(procs.log('flwr-run'))}\n--- superlink:\n{_tail(procs.log('superlink'))}")
                if time.monotonic() > end:
                    raise FederatedRunError(f"no result within {budget:.0f} s\n--- superlink:\n"
                                            f"{_tail(procs.log('superlink'))}")
                time.sleep(0.2)
            try:
                flwr.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            rounds.poll()
    finally:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:  # a second Ctrl-C/SIGTERM waits until every process is stopped, then takes effect
            leftover = procs.close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    result = json.loads(out_file.read_text())
    if killed:
        killed["at_s"] = None
    return FLRun(cfg, run_dir, result, meta, token, killed, leftover)


def config_dict(cfg: FLConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["out_dir"] = str(cfg.out_dir)
    d["signing_key"] = None if cfg.signing_key is None else str(cfg.signing_key)
    return d
