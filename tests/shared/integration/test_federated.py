"""Federated learning pieces that need no processes: arrays, FedProx's pull, the app manifest, traffic sums."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from shared.integration._mlp import init_mlp
from shared.integration.federated import compare, task
from shared.integration.federated.runner import FLConfig, write_app, write_flwr_home


def test_arrays_roundtrip_and_bad_keys():
    m = init_mlp(8, (16, 8), 6, seed=1)
    named = task.to_named_arrays(m)
    assert list(named) == ["dense0.w", "dense0.b", "dense1.w", "dense1.b", "dense2.w", "dense2.b"]
    back = task.from_named_arrays(named)
    for a, b in zip(m.weights + m.biases, back.weights + back.biases, strict=True):
        np.testing.assert_array_equal(a, b)
    named.pop("dense1.b")
    named["dense9.b"] = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="dense1.b"):
        task.from_named_arrays(named)


def test_fedprox_term_keeps_client_near_global_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    start = init_mlp(8, (16,), 2, seed=0)

    def drift(mu: float) -> float:
        m = task.local_train(start, x, y, task.TrainParams(local_epochs=10, lr=0.02, mu=mu))
        return float(sum(np.sum((a - b) ** 2) for a, b in zip(m.weights, start.weights, strict=True)))

    assert drift(5.0) < 0.5 * drift(0.0)


def test_app_manifest_is_a_valid_flower_app(tmp_path):
    from flwr.common.config import validate_config

    cfg = FLConfig("healthcare", clients=4, rounds=3, strategy="fedprox", out_dir=tmp_path)
    write_app(tmp_path / "app", cfg, tmp_path / "data dir", tmp_path / "result.json")
    doc = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(doc, check_module=True, project_dir=tmp_path / "app")
    assert ok, errors
    run_cfg = doc["tool"]["flwr"]["app"]["config"]
    assert run_cfg["strategy"] == "fedprox" and run_cfg["num-rounds"] == 3 and run_cfg["min-clients"] == 2
    assert run_cfg["data-dir"].endswith("data dir")
    write_flwr_home(tmp_path / "home", 4242, tmp_path / "ca.crt")
    conn = tomllib.loads((tmp_path / "home" / "config.toml").read_text())["superlink"]
    assert conn["default"] == "tinylarge" and conn["tinylarge"]["address"] == "127.0.0.1:4242"
    assert conn["tinylarge"]["root-certificates"].endswith("ca.crt") and "insecure" not in conn["tinylarge"]


@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "fedsgd"}, "fedavg, fedprox"),
    ({"clients": 0}, "clients"),
    ({"clients": 3, "min_clients": 4}, "min-clients"),
    ({"clients": 2, "rounds": 2, "kill_client": (2, 1)}, "kill_client"),
])
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FLConfig("healthcare", **kwargs)


def test_partitions_one_subject_per_client_and_disjoint_from_held_out(tmp_path):
    meta = task.prepare_partitions("healthcare", 3, quick=True, data_dir=tmp_path)
    assert len(set(meta["clients"])) == 3 and not set(meta["clients"]) & set(meta["held_out"])
    for i, subject in enumerate(meta["clients"]):
        x, y, s = task.load_partition(tmp_path, i)
        assert s == subject and len(x) == len(y) > 0 and x.shape[1] == meta["n_in"]
    _, _, groups = task.load_test(tmp_path)
    assert set(groups) == set(meta["held_out"])
    with pytest.raises(ValueError, match="training subjects"):
        task.prepare_partitions("healthcare", 500, quick=True, data_dir=tmp_path / "x")


def _node(sent: int, reply: int | None, error: str | None = None) -> dict:
    return {"sent": {"message_bytes": sent, "array_bytes": sent - 100},
            "reply": None if reply is None else {"message_bytes": reply, "array_bytes": reply - 200, "error": error}}


def test_traffic_counts_per_client_per_round_and_missing_replies():
    result = {"traffic": [
        {"type": "train", "seconds": 1.0, "nodes": {"1": _node(1000, 1100), "2": _node(1000, 1300)}},
        {"type": "train", "seconds": 2.0, "nodes": {"1": _node(1000, 1100), "2": _node(1000, None)}},
        {"type": "evaluate", "seconds": 1.0, "nodes": {"1": _node(5, 5)}},
    ]}
    t = compare.traffic(result)
    assert t["rounds"] == 2
    assert t["client_received_bytes_per_round"] == 1000
    assert t["client_sent_bytes_per_round"] == pytest.approx((1100 + 1300 + 1100) / 3)
    assert t["missing_replies"] == [{"round": 2, "node": "2", "error": None}]
    assert t["total_bytes"] == 4000 + 3500


def test_rounds_to_within_one_point():
    curve = {"0": {"accuracy": 0.1}, "1": {"accuracy": 0.6}, "2": {"accuracy": 0.695}, "3": {"accuracy": 0.71}}
    assert compare.rounds_to_within(curve, 0.70) == 2
    assert compare.rounds_to_within(curve, 0.80) is None
    assert compare.device_id("s11/p002") == "s11-p002"


def test_message_bytes_count_the_arrays_flower_ships():
    from flwr.app import Array, ArrayRecord, RecordDict

    from shared.integration.federated.server_app import message_bytes

    m = init_mlp(8, (16, 8), 6, seed=0)
    rec = ArrayRecord({k: Array(v) for k, v in task.to_named_arrays(m).items()})
    content = RecordDict({"arrays": rec})  # a Message needs a live run; its content is the bulk of its tree
    assert rec.count_bytes() >= 4 * m.n_params()
    assert rec.count_bytes() < message_bytes(content) < rec.count_bytes() + 4096
