"""The processes of one federated run: a ``flower-superlink``, one ``flower-supernode`` per client, and ``flwr``.

Every process is started in its own session (process group) with the environment marker
``TINYLARGE_FL_RUN=<token>``, which the processes Flower itself spawns (SuperExec, ServerApp and
ClientApp processes, some of them detached into sessions of their own) inherit. :meth:`Processes.close`
stops the groups (SIGTERM, then SIGKILL after a grace period) and then every process still carrying
the marker, so nothing outlives the run: not on success, not on an exception, not on Ctrl-C/SIGTERM
(the runner turns SIGTERM into an exception so ``finally`` blocks run).

A parent killed outright (SIGKILL, the OOM killer) runs none of that, so two more guards:

- each child asks the kernel for ``SIGKILL`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``, set between
  fork and exec); Flower's own children (SuperExec, ServerApp, ClientApp) watch their parent's pid and
  exit when it is gone, so the whole tree follows. The signal fires when the *thread* that started the
  child ends: start the processes from a thread that lives as long as the run (the runner uses the main
  thread);
- a pid file ``<pid_dir>/<token>.json`` names the run's owner and children (pid and start time, so a reused
  pid is never taken for one of them); :func:`sweep_leftovers`, called when the next ``Processes`` is made
  on the same folder, stops the process groups and marked processes of every run whose owner is gone.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

MARKER = "TINYLARGE_FL_RUN"
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

logger = logging.getLogger("tinylarge.integration.fl")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def marked_processes(token: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``TINYLARGE_FL_RUN=token`` (this process excluded)."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(MARKER) == token and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies (Linux; None elsewhere).
    libc is looked up here, before the fork: the child only makes two system calls."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _created(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def _same(pid: int, created: float) -> psutil.Process | None:
    """The live process ``pid`` if it is the one started at ``created`` (not a reuse of its pid)."""
    try:
        p = psutil.Process(pid)
        return p if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return None


def sweep_leftovers(pid_dir: Path) -> list[int]:
    """Stop what earlier runs whose owner is gone left behind (see the module docstring); returns their pids."""
    swept: list[int] = []
    for path in sorted(Path(pid_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            owner_pid, owner_created = record["owner"]
            children = [(int(pid), float(created)) for pid, created in record["children"].values()]
            token = str(record["token"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # unreadable: nothing it names can be trusted
            continue
        if _same(int(owner_pid), float(owner_created)) is not None:
            continue  # that run is still going
        victims = [p for p in (_same(pid, created) for pid, created in children) if p is not None]
        for p in list(victims):
            try:
                victims += p.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        victims += marked_processes(token)
        for p in victims:
            try:
                p.kill()
                swept.append(p.pid)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=5.0)
        path.unlink(missing_ok=True)
    if swept:
        logger.warning("stopped %d processes an earlier federated run left behind: %s", len(set(swept)),
                    sorted(set(swept)))
    return sorted(set(swept))


def bin_path(name: str) -> str:
    """The console script ``name`` next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


class Processes:
    """Named child processes of one run, each in its own process group, logs under ``log_dir``."""

    def __init__(self, token: str, log_dir: Path, grace_s: float = 5.0, pid_dir: Path | None = None,
                 die_with_parent: bool = True):
        """``pid_dir``: where the run's pid file goes (leftovers of dead runs there are swept first);
        ``die_with_parent=False`` leaves out PR_SET_PDEATHSIG (only a test that needs an orphan wants it)."""
        self.token = token
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pid_file = None if pid_dir is None else Path(pid_dir) / f"{token}.json"
        if pid_dir is not None:
            Path(pid_dir).mkdir(parents=True, exist_ok=True)
            sweep_leftovers(Path(pid_dir))
        self._preexec = _die_with_parent() if die_with_parent else None
        self.env = dict(os.environ)
        self.env[MARKER] = token
        venv_bin = str(Path(sys.executable).parent)
        self.env["PATH"] = venv_bin + os.pathsep + self.env.get("PATH", "")
        self.env.setdefault("PYTHONUNBUFFERED", "1")

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        if name in self.procs:
            raise ValueError(f"process {name!r} already started")
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it open
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**self.env, **(env or {})}, start_new_session=True,
                                    preexec_fn=self._preexec)
        finally:
            log.close()
        self.procs[name] = proc
        self._write_pid_file()
        return proc

    def _write_pid_file(self) -> None:
        if self.pid_file is None:
            return
        children = {name: [p.pid, _created(p.pid)] for name, p in self.procs.items()}
        record = {"token": self.token, "owner": [os.getpid(), _created(os.getpid())],
                  "children": {k: v for k, v in children.items() if v[1] is not None}}
        tmp = self.pid_file.with_name(self.pid_file.name + ".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, self.pid_file)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to process ``name``'s whole group (a client that dies mid-round)."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def close(self) -> list[int]:
        """Stop every process of the run; returns the pids that were still alive and needed SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in marked_processes(self.token):
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        end = time.monotonic() + self.grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        _, alive = psutil.wait_procs(marked_processes(self.token), timeout=max(0.1, end - time.monotonic()))
        killed = []
        for proc in self.procs.values():
            if proc.poll() is None:
                killed.append(proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for p in [*alive, *marked_processes(self.token)]:
            try:
                killed.append(p.pid)
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(marked_processes(self.token), timeout=2.0)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        return sorted(set(killed))
