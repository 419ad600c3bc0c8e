"""vehicles joins the integration strategies: its tiny_task and distill_task, the event F1 scored from the
tables with a bootstrap over drivers, the logit offsets, the driver-risk ceilings; the verbs end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from vehicles import large as L
from vehicles.signals import LABELS
from vehicles.tiny import tune_offsets, window_event_f1
from vehicles.train import event_counts, event_scores

BRAKE, BUMP = LABELS.index("harsh_brake"), LABELS.index("speed_bump")


class Tables(SimpleNamespace):
    def __len__(self) -> int:
        return len(self.trip)


def tables(n_vehicles: int = 6) -> Tables:
    """Each vehicle: 2 trips; per trip one true harsh brake at 10-11 s (a candidate window at 9.5-11.5 s)
    and one normal candidate at 50-51 s; the rules find the brake on trip 0 only and a false bump."""
    c: dict[str, list] = {k: [] for k in ("vehicle", "trip", "w_row", "w_t", "w_label", "e_row", "e_t", "r_row",
                                          "r_kind", "r_t")}
    for v in range(n_vehicles):
        for k in range(2):
            row = len(c["vehicle"])
            c["vehicle"].append(f"v{v}")
            c["trip"].append(k)
            c["w_row"] += [row, row]
            c["w_t"] += [(9.5, 11.5), (50.0, 51.0)]
            c["w_label"] += [BRAKE, 0]
            c["e_row"].append(row)
            c["e_t"].append((10.0, 11.0))
            c["r_row"].append(row)
            c["r_kind"].append(BRAKE if k == 0 else BUMP)
            c["r_t"].append((10.2, 10.9) if k == 0 else (70.0, 70.5))
    arrays = {k: np.asarray(v) for k, v in c.items()}
    return Tables(**arrays, e_kind=np.full(len(c["e_row"]), BRAKE))


def test_event_f1_from_the_tables_counts_per_vehicle():
    t = tables()
    perfect = t.w_label.copy()
    r = event_scores(t, perfect, n_boot=200)
    assert r["event_f1"] == 1.0 and r["event_precision"] == 1.0 and r["event_recall"] == 1.0
    # rules: 6 of 12 brakes found, 6 false bumps -> precision 0.5, recall 0.5
    assert r["rule_event_precision"] == 0.5 and r["rule_event_recall"] == 0.5
    assert r["event_f1_gain_ci95"][0] > 0 and r["p_tiny_beats_rules"] == 1.0 and r["event_vehicles"] == 6
    # the wrong kind is no match; an event on a normal window is a false one
    wrong = np.where(t.w_label > 0, BUMP, 0)
    assert event_scores(t, wrong, n_boot=20)["event_f1"] == 0.0
    noisy = np.full(len(t.w_label), BRAKE)
    assert event_scores(t, noisy, n_boot=20)["event_precision"] == 0.5
    c = event_counts(t, perfect, only={"v1"})
    assert c["n_true"].tolist() == [0, 2, 0, 0, 0, 0] and c["tiny_tp"].sum() == 2


def test_tune_offsets_moves_the_decision_where_event_f1_pays():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    logits = np.eye(3)[y] * 2.0 + rng.normal(0, 0.8, (2000, 3))
    logits[:, 0] += 2.0  # a model that says "normal" far too often
    before = window_event_f1(y, logits.argmax(1))
    d = tune_offsets(logits, lambda p: window_event_f1(y, p))
    after = window_event_f1(y, (logits - d).argmax(1))
    assert after > before + 0.2 and d[0] > 1.0
    # nothing to gain: the offsets stay 0
    assert not tune_offsets(np.eye(3)[y], lambda p: window_event_f1(y, p)).any()


def test_ceilings_pair_the_oracles_with_the_vendor_score():
    rng = np.random.default_rng(1)
    seqs = []
    for i in range(60):
        risk, aggr = rng.random(), rng.random()
        y = (rng.random(12) < 0.05 + 0.8 * risk).astype(int)
        seqs.append({"vehicle": f"v{i}", "y": y, "vendor": rng.random(12), "risk": risk, "aggression": aggr})
    c = L.ceilings(seqs, n=300)
    assert c["oracle_auroc"] > 0.7 and c["oracle_gain_ci95"][0] > 0
    for s in seqs:  # a vendor score that knows the risk; an aggression unrelated to the label
        s["vendor"] = np.full(12, s["risk"])
    c = L.ceilings(seqs, n=300)
    assert c["aggression_oracle_gain_ci95"][1] < 0 and c["oracle_gain_mean"] == 0.0


@pytest.mark.slow
def test_tiny_task_groups_windows_by_vehicle_never_by_window():
    from shared.integration.task import load_task, split_subjects
    from vehicles.signals import FleetConfig, simulate_fleet
    from vehicles.train import TrainConfig

    task = load_task("vehicles", quick=True)
    cfg = TrainConfig.quick()
    ids = {v.id for fc in (cfg.train_fleet, cfg.test_fleet, cfg.crash_fleet) for v in simulate_fleet(fc)}
    assert set(task.groups) == ids and len(task.groups) > 10 * len(ids)
    assert task.n_features == 16 and task.labels == LABELS and task.hidden == cfg.tiny.hidden
    tr, te = split_subjects(task.groups, 0.3, 0)
    assert set(task.groups[tr]).isdisjoint(task.groups[te])
    assert FleetConfig(n_vehicles=1, seed=cfg.test_fleet.seed) != cfg.test_fleet


@pytest.mark.slow
def test_fl_split_and_loop_run_for_vehicles(tmp_path, capsys):
    """The three verbs end to end on the quick populations (fl: Flower's SuperLink and SuperNodes)."""
    from shared.cli import main

    assert main(["split", "vehicles", "--quick", "--clients", "2", "--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dead"] == [] and 0 <= out["acc"] <= 1
    assert main(["loop", "vehicles", "--quick", "--devices", "2", "--models", str(tmp_path / "m"),
                 "--out", str(tmp_path / "loop")]) == 0
    loop = json.loads((tmp_path / "loop" / "summary.json").read_text())
    assert loop["updates_accepted"] == 2 and loop["model_after"].startswith("veh-risk-tiny@")
    assert main(["fl", "vehicles", "--quick", "--clients", "2", "--rounds", "1", "--insecure",
                 "--out", str(tmp_path / "fl")]) == 0
    (summary,) = (tmp_path / "fl").glob("*/summary.json")
    fl = json.loads(summary.read_text())
    assert fl["domain"] == "vehicles" and 0 <= fl["federated_accuracy"] <= 1


def test_observable_oracle_learns_from_the_incidents_it_sees():
    class Driver:
        def __init__(self, aggression: float, incidents: set[int]):
            self.aggression, self.incidents = aggression, incidents

        def incident(self, k: int) -> str | None:
            return "near_miss" if k in self.incidents else None

    seqs = [{"vehicle": v, "y": np.zeros(6, int)} for v in ("calm", "calm_hit", "wild")]
    drivers = {"calm": Driver(0.1, set()), "calm_hit": Driver(0.1, {2}), "wild": Driver(0.9, set())}
    calm, hit, wild = L.observable_oracle(seqs, drivers, 10)
    assert np.all((calm > 0) & (calm < 1)) and np.all(np.diff(calm) < 0)  # no incident: the posterior calms
    assert hit[2] > hit[1] and np.allclose(hit[:2], calm[:2])  # an incident raises it from then on
    assert np.all(wild > calm)  # aggression is known to the oracle
