"""Federated learning on real Flower processes: a TLS SuperLink, one SuperNode per subject, ``flwr run``.

One run (3 clients, 2 rounds, healthcare quick) is shared by the assertions below; in it SuperNode 2 is
SIGKILLed (with its SuperExec and ClientApp) while it holds round 2's train message: the run must end
without waiting past the round timeout, aggregate the two replies that came, and leave a finite global
model no worse than round 1's. A second test interrupts ``tinylarge fl`` with SIGTERM and checks that
no process it (or Flower on its behalf) started is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared.integration.federated.processes import marked_processes

ROOT = Path(__file__).resolve().parents[3]


def _flower_installed() -> bool:
    return (Path(sys.executable).parent / "flower-superlink").exists() or shutil.which("flower-superlink") is not None


pytestmark = pytest.mark.skipif(not _flower_installed() and os.environ.get("TINYLARGE_REQUIRE_ALL") != "1",
                                reason="flower-superlink not installed (make install)")


@pytest.fixture(scope="module")
def fl_run(tmp_path_factory):
    from shared.integration.federated.runner import FLConfig, run_flower

    cfg = FLConfig("healthcare", clients=3, rounds=2, quick=True, min_clients=1, round_timeout_s=45.0,
                   kill_client=(2, 2), out_dir=tmp_path_factory.mktemp("fl"))
    t0 = time.monotonic()
    run = run_flower(cfg)
    return run, time.monotonic() - t0


def test_every_client_trains_its_own_subject_over_tls(fl_run):
    run, _ = fl_run
    assert "Uvicorn running on https://127.0.0.1" in (run.run_dir / "logs" / "superlink.log").read_text()
    rounds = [c for c in run.result["traffic"] if c["type"] == "train"]
    assert len(rounds) == 2
    first = rounds[0]["nodes"]
    assert len(first) == 3 and sorted(e["reply"]["partition_id"] for e in first.values()) == [0, 1, 2]
    n_params = sum(int(np.prod(v.shape)) for v in np.load(run.result["weights"]).values())
    for entry in first.values():
        assert entry["sent"]["array_bytes"] >= 4 * n_params and entry["reply"]["array_bytes"] >= 4 * n_params
        assert entry["sent"]["message_bytes"] > entry["sent"]["array_bytes"]
        assert entry["reply"]["error"] is None


def test_killed_client_neither_hangs_nor_corrupts_the_global_model(fl_run):
    run, seconds = fl_run
    assert run.killed and run.killed["node"] == "supernode2" and run.killed["round"] == 2
    second = [c for c in run.result["traffic"] if c["type"] == "train"][1]
    answered = sorted(e["reply"]["partition_id"] for e in second["nodes"].values()
                      if e["reply"] is not None and e["reply"]["error"] is None)
    assert answered == [0, 1]
    assert second["seconds"] < 45.0 + 15.0  # the round timeout, not forever
    curve = run.result["curve"]
    weights = np.load(run.result["weights"])
    assert all(np.isfinite(weights[k]).all() for k in weights.files)
    assert curve["2"]["accuracy"] >= curve["1"]["accuracy"] - 0.05 and curve["2"]["accuracy"] > curve["0"]["accuracy"]


def test_no_process_is_left_after_a_run(fl_run):
    run, _ = fl_run
    assert marked_processes(run.token) == []


def test_sigterm_stops_every_process(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shared.cli", "fl", "healthcare", "--clients", "2", "--rounds", "50",
                             "--quick", "--out", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    run_dir = tmp_path / "healthcare-fedavg-2c50r-quick"
    try:
        end = time.monotonic() + 240
        while time.monotonic() < end and proc.poll() is None:
            log = run_dir / "logs" / "supernode1.log"
            if log.exists() and "Receiving: train message" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
        token = json.loads((run_dir / "run.json").read_text())["token"]
        assert len(marked_processes(token)) >= 5  # superlink, 2 supernodes, flwr, SuperExecs, apps
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 143, out.decode(errors="replace")[-3000:]
        assert marked_processes(token) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_fl_command_end_to_end_fedprox_int8_and_signed_rollout(tmp_path, capsys):
    from shared.integration.federated.cli import fl_main

    assert fl_main(["healthcare", "--clients", "2", "--rounds", "2", "--strategy", "fedprox", "--quick",
                    "--out", str(tmp_path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["strategy"] == "fl_fedprox" and s["config"]["proximal_mu"] > 0
    assert len(s["client_alone"]) == 2 and s["client_alone_min"] <= s["client_alone_mean"] <= s["client_alone_max"]
    assert 0.0 <= s["federated_accuracy"] <= 1.0 and 0.0 <= s["centralised_accuracy"] <= 1.0
    assert abs(s["int8_accuracy"] - s["federated_accuracy"]) < 0.1
    t = s["traffic"]
    assert t["rounds"] == 2 and t["client_received_bytes_per_round"] > t["client_received_array_bytes_per_round"] > 0
    r = s["rollout"]
    assert r["published"] == 2 and r["accepted"] == 2 and r["model_id"].startswith("hc-tiny-fl@")
    assert Path(r["c_source"]).is_file()
    token = json.loads((tmp_path / "healthcare-fedprox-2c2r-quick" / "run.json").read_text())["token"]
    assert marked_processes(token) == []
