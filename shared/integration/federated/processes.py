"""The processes of one federated run: a ``flower-superlink``, one ``flower-supernode`` per client, and ``flwr``.

Every process is started in its own session (process group) with the environment marker
``TINYLARGE_FL_RUN=<token>``, which the processes Flower itself spawns (SuperExec, ServerApp and
ClientApp processes, some of them detached into sessions of their own) inherit. :meth:`Processes.close`
stops the groups (SIGTERM, then SIGKILL after a grace period) and then every process still carrying
the marker, so nothing outlives the run: not on success, not on an exception, not on Ctrl-C/SIGTERM
(the runner turns SIGTERM into an exception so ``finally`` blocks run).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

MARKER = "TINYLARGE_FL_RUN"


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


def bin_path(name: str) -> str:
    """The console script ``name`` next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


class Processes:
    """Named child processes of one run, each in its own process group, logs under ``log_dir``."""

    def __init__(self, token: str, log_dir: Path, grace_s: float = 5.0):
        self.token = token
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
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
                                    env={**self.env, **(env or {})}, start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

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
        return sorted(set(killed))
