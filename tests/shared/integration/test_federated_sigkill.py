"""Issue 23 item 4: ``tinylarge fl`` killed with SIGKILL leaves no Flower process behind.

A real ``tinylarge fl healthcare --quick`` (2 clients) is started; once its SuperLink, SuperNodes and the
processes Flower spawns for them are up, only the ``tinylarge fl`` process itself gets SIGKILL (no handler,
no ``finally``). Its children die with it (``PR_SET_PDEATHSIG``) and Flower's own children follow their
parents; the test polls (with a deadline) until none of the processes descended from it is left. A second
test leaves a "run" behind on purpose (a pid file whose owner is gone, its child still running) and checks
that the next start sweeps it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from shared.integration.federated.processes import marked_processes

ROOT = Path(__file__).resolve().parents[3]


def _flower_installed() -> bool:
    return (Path(sys.executable).parent / "flower-superlink").exists() or shutil.which("flower-superlink") is not None


def _alive(procs: dict[int, float]) -> list[psutil.Process]:
    """The processes of ``procs`` (pid -> create time) still running (a reused pid is another process)."""
    out = []
    for pid, created in procs.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _descendants(pid: int) -> dict[int, float]:
    try:
        return {c.pid: c.create_time() for c in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def _wait(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.skipif(not _flower_installed() and os.environ.get("TINYLARGE_REQUIRE_ALL") != "1",
                    reason="flower-superlink not installed (make install)")
def test_sigkill_of_tinylarge_fl_leaves_no_flower_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "fl", "healthcare", "--clients", "2", "--rounds", "50",
                             "--quick", "--out", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    run_dir = tmp_path / "healthcare-fedavg-2c50r-quick"
    seen: dict[int, float] = {}
    try:
        def flower_up() -> bool:
            seen.update(_descendants(proc.pid))
            log = run_dir / "logs" / "supernode1.log"
            return log.exists() and "Receiving: train message" in log.read_text(errors="replace")

        assert _wait(flower_up, 240) and proc.poll() is None
        seen.update(_descendants(proc.pid))
        names = " ".join(" ".join(p.cmdline()) for p in _alive(seen))
        assert "flower-superlink" in names and "flower-supernode" in names and "flower-superexec" in names
        token = json.loads((run_dir / "run.json").read_text())["token"]
        proc.kill()  # SIGKILL: tinylarge fl runs no handler and no finally block
        proc.wait()
        assert _wait(lambda: not _alive(seen) and not marked_processes(token), 30), (
            [" ".join(p.cmdline())[:120] for p in _alive(seen)], [p.pid for p in marked_processes(token)])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _alive(seen):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_the_next_start_sweeps_what_a_killed_run_left(tmp_path: Path) -> None:
    """A run killed with its whole process group's parent gone before PR_SET_PDEATHSIG could act (or by an
    older version) leaves a pid file; the next ``Processes`` on the same folder stops what it names."""
    from shared.integration.federated.processes import Processes, sweep_leftovers

    pid_dir = tmp_path / "pids"
    # the owner: a short-lived python that starts a "superlink" (a sleeping child) through Processes, then
    # dies by SIGKILL before it can close them; its child is started without the parent-death signal here
    code = ("import os, signal, sys; from pathlib import Path; "
            "from shared.integration.federated.processes import Processes; "
            f"p = Processes('sweeptest', Path({str(tmp_path / 'logs')!r}), pid_dir=Path({str(pid_dir)!r}), "
            "die_with_parent=False); "
            "c = p.start('superlink', [sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(c.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    owner = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    child = int(owner.stdout.split()[0])
    left = {child: psutil.Process(child).create_time()}
    try:
        assert _alive(left) and list(pid_dir.glob("*.json"))
        swept = sweep_leftovers(pid_dir)
        assert child in swept
        assert _wait(lambda: not _alive(left), 10)
        assert not list(pid_dir.glob("*.json"))
        Processes("next", tmp_path / "logs2", pid_dir=pid_dir)  # nothing left to sweep: starts cleanly
    finally:
        for p in _alive(left):
            p.kill()
