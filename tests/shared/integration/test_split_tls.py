"""`tinylarge split` reaches a broker with the project's own CA: --ca (and --cert/--key) like every other
networked verb, given to the cloud service and every device link (issue 23 item 5)."""

from __future__ import annotations

import json

import pytest

from tests.shared.test_cli_mistakes import _free_port, _pki, run_tinylarge


@pytest.mark.broker
def test_split_inference_over_mqtts_with_the_projects_ca(mosquitto_factory, tmp_path):
    d = _pki(tmp_path)
    port = _free_port()
    server = mosquitto_factory(persistence=False, conf_extra=(
        f"listener {port} 127.0.0.1\ncafile {d / 'ca.crt'}\ncertfile {d / 'broker.crt'}\n"
        f"keyfile {d / 'broker.key'}\nallow_anonymous true\n"))
    assert server.running
    proc = run_tinylarge("split", "healthcare", "--quick", "--mode", "inference", "--clients", "2", "--mqtt",
                         f"mqtts://127.0.0.1:{port}", "--ca", str(d / "ca.crt"), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["mode"] == "inference" and summary["clients"] == 2
    assert 0.3 <= summary["acc_int8"] <= 1.0, summary  # windows went device -> broker (TLS) -> cloud and back
    assert summary["bytes_per_window_batched"] > 0, summary
