"""Cross-silo sites, poisoned clients and differential privacy for the federated runs.

The pure parts (the Dirichlet site split, the attacks, the privacy accounting, the configuration checks)
are tested directly; one real Flower run (healthcare quick, 3 sites x 2 rounds, FedAvg inside Flower's
server-side DP wrapper, one site sending a scaled update) checks that the parts meet in the ServerApp and
the ClientApp: sites hold whole subjects disjoint from the held-out ones, the poisoned site is the one the
run config names, and the summary states epsilon at delta.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.integration.federated import dp
from shared.integration.federated.robust import flip_labels, poison_ids, scale_update
from shared.integration.federated.runner import FLConfig
from shared.integration.federated.silo import assign_sites, conditions, label_skew


def _flower_installed() -> bool:
    return (Path(sys.executable).parent / "flower-superlink").exists() or shutil.which("flower-superlink") is not None


def test_conditions_skip_the_common_label():
    y = np.array([0, 0, 0, 2, 0, 0, 0, 0, 1, 1])
    g = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c", "c"])
    assert conditions(y, g, 3) == {"a": 2, "b": 0, "c": 1}


def test_small_alpha_puts_each_condition_at_one_site_large_alpha_spreads_it():
    cond = {f"s{i:03d}": i % 3 for i in range(90)}

    def modal_share(alpha: float) -> float:
        site = assign_sites(cond, 3, alpha, seed=0)
        shares = []
        for c in range(3):
            at = np.bincount([site[s] for s in cond if cond[s] == c], minlength=3)
            shares.append(at.max() / at.sum())
        return float(np.mean(shares))

    assert modal_share(0.01) > 0.9
    assert modal_share(1000.0) < 0.6


def test_every_site_gets_a_subject_and_subjects_stay_whole():
    cond = {f"s{i}": 0 for i in range(5)}  # one condition: Dirichlet(0.01) would leave sites empty
    site = assign_sites(cond, 4, 0.01, seed=3)
    assert sorted(set(site.values())) == [0, 1, 2, 3] and set(site) == set(cond)
    with pytest.raises(ValueError, match="only 5 training subjects"):
        assign_sites(cond, 6, 0.5, seed=0)


def test_label_skew_is_zero_for_identical_sites_and_high_for_disjoint_ones():
    same = [np.array([0, 1, 2]), np.array([2, 1, 0])]
    assert label_skew(same, 3) == pytest.approx(0.0)
    assert label_skew([np.array([0, 0]), np.array([1, 1])], 2) == pytest.approx(0.5)


def test_attacks():
    y = np.array([0, 1, 6], dtype=np.int64)
    assert flip_labels(y, 7).tolist() == [6, 5, 0]
    got = scale_update({"w": np.array([2.0, 1.0], np.float32)}, {"w": np.array([1.0, 1.0], np.float32)}, -10.0)
    assert got["w"].tolist() == [-9.0, 1.0]
    assert poison_ids(5, 2) == [3, 4]


def test_epsilon_falls_as_noise_rises_and_exact_is_tighter_than_rdp():
    eps = [dp.exact_epsilon(z, 20) for z in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(eps, eps[1:], strict=False))
    for z in (0.5, 1.0, 2.0):
        assert dp.exact_epsilon(z, 20) <= dp.rdp_epsilon(z, 20)
        assert dp.exact_epsilon(z, 5) < dp.exact_epsilon(z, 20)  # more rounds spend more
    assert math.isinf(dp.exact_epsilon(0.0, 3)) and math.isinf(dp.rdp_epsilon(0.0, 3))
    z, t = 1.0, 10
    e = dp.exact_epsilon(z, t)
    assert dp.gdp_delta(e, math.sqrt(t) / z) == pytest.approx(dp.DELTA, rel=1e-3)  # the curve it inverted
    # one release, z = 1: mu = 1; delta(eps) of 1-GDP at eps=0 is 2*Phi(1/2)-1 = 0.3829
    assert dp.gdp_delta(0.0, 1.0) == pytest.approx(0.38292, abs=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"strategy": "bulyan"}, "--strategy"),
    ({"sites": 0}, "--sites"),
    ({"sites": 3, "alpha": 0.0}, "--alpha"),
    ({"clients": 3, "poison": 3}, "--poison"),
    ({"attack": "noise"}, "--attack"),
    ({"dp_noise": -1.0}, "--dp-noise"),
    ({"dp_noise": 1.0, "strategy": "krum"}, "FedAvg only"),
])
def test_bad_silo_robust_dp_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FLConfig("healthcare", **kwargs)


def test_sites_set_the_client_count_and_name_the_run_folder():
    cfg = FLConfig("healthcare", clients=9, sites=4, alpha=0.3, poison=1, attack="scale", dp_noise=None)
    assert cfg.clients == 4 and "silo0.3" in cfg.run_dir.name and "1scale-10" in cfg.run_dir.name


@pytest.mark.skipif(not _flower_installed() and os.environ.get("TINYLARGE_REQUIRE_ALL") != "1",
                    reason="flower-superlink not installed (make install)")
def test_silo_run_with_a_poisoned_site_under_dp_on_flower(tmp_path):
    from shared.integration.federated.cli import run_federated
    from shared.integration.federated.dp import row

    cfg = FLConfig("healthcare", rounds=2, quick=True, sites=3, alpha=0.5, poison=1, attack="scale",
                   dp_noise=1.0, dp_clip=1.0, rollout=False, insecure=True, out_dir=tmp_path)
    s = run_federated(cfg)
    held_out = set(s["held_out"])
    members = [set(v) for v in s["sites"].values()]
    assert len(members) == 3 and all(members) and not any(m & held_out for m in members)
    assert sum(len(m) for m in members) == len(set().union(*members))  # a subject is at one site only
    assert s["site_windows"] == [sum(c) for c in s["site_labels"]]
    assert sorted(int(k) for k in s["curve"]) == [0, 1, 2]
    assert 'poison-ids = "2"' in (cfg.run_dir / "app" / "pyproject.toml").read_text()
    assert s["traffic"]["rounds"] == 2 and not s["traffic"]["missing_replies"]
    assert s["privacy"]["epsilon"] == pytest.approx(dp.exact_epsilon(1.0, 2))
    assert np.isfinite(s["federated_accuracy"])
    r = row(s)
    assert r["strategy"] == "fl_dp_z1" and r["epsilon"] < r["epsilon_rdp"] and r["sites"] == 3
    server_log = (cfg.run_dir / "logs" / "flwr-run.log").read_text()
    assert server_log.count("central DP noise with 0.3333 stdev added") == 2  # z * C / K, once per round


@pytest.mark.slow
@pytest.mark.skipif(not _flower_installed() and os.environ.get("TINYLARGE_REQUIRE_ALL") != "1",
                    reason="flower-superlink not installed (make install)")
def test_a_scaled_update_ruins_fedavg_but_not_fedmedian(tmp_path):
    """The fl_robust quick rows: 4 sites, the last sends -10x its update; same sites and seed for both."""
    from shared.integration.federated.robust import report_rows

    avg, med = report_rows("healthcare", True, tmp_path)
    assert (avg["strategy"], med["strategy"]) == ("fl_robust_fedavg", "fl_robust_fedmedian")
    assert avg["poisoned_sites"] == med["poisoned_sites"] == 1 and avg["attack"] == "scale"
    assert med["value"] > avg["value"] + 0.2
    assert med["value"] > med["baseline_value"] - 0.3  # the median still learns
