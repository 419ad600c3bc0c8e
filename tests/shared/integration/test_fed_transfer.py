"""Federated transfer learning (shared/integration/fed_transfer.py): frozen backbone, FedAvg over heads."""

from __future__ import annotations

import numpy as np
import pytest

from shared.integration import fed_transfer as ft
from shared.integration.report import check_row
from shared.integration.task import TinyTask


def _label_skewed(n_subjects: int = 26, per_class: int = 40, n_classes: int = 4, seed: int = 0) -> TinyTask:
    """Blobs; every subject shows only 2 of the classes (who has which: by subject index)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.5, (n_classes, 6))
    xs, ys, gs = [], [], []
    for s in range(n_subjects):
        for c in (s % n_classes, (s + 1) % n_classes):
            xs.append(centers[c] + rng.normal(0, 1.0, (per_class, 6)))
            ys += [c] * per_class
            gs += [f"s{s:02d}"] * per_class
    return TinyTask("synthetic", np.concatenate(xs), np.array(ys), np.array(gs),
                    tuple(f"c{i}" for i in range(n_classes)), (12, 8), "synthetic@1")


def test_partition_is_disjoint_and_complete():
    subjects = np.array([f"s{i}" for i in range(30)])
    cfg = ft.FedTransferConfig(n_sites=4)
    p = ft.partition(subjects, cfg)
    parts = [p.source, p.test, *p.sites]
    flat = np.concatenate(parts)
    assert len(flat) == len(set(flat)) == 30
    assert all(len(s) >= 2 for s in p.sites) and len(p.source) == 9 and len(p.test) >= 1
    again = ft.partition(subjects, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(parts, [again.source, again.test, *again.sites], strict=True))
    with pytest.raises(ValueError, match="too few"):
        ft.partition(subjects[:9], cfg)


def test_config_rejects_one_site():
    with pytest.raises(ValueError, match="n_sites"):
        ft.FedTransferConfig(n_sites=1)
    with pytest.raises(ValueError, match="source_fraction"):
        ft.FedTransferConfig(source_fraction=1.0)


def test_fedavg_head_beats_label_skewed_sites_alone():
    t = _label_skewed()
    cfg = ft.FedTransferConfig(n_sites=4, rounds=15, source_samples=20_000)
    res = ft.run_fed_transfer("synthetic", task=t, cfg=cfg, int8=False)
    assert min(res["site_classes"]) < 4  # some site lacks a class: alone it cannot learn it
    assert res["fedavg"]["acc"] > res["site_alone_acc"]["mean"] + 0.05
    assert res["fedavg"]["acc"] >= res["pooled"]["acc"] - 0.05
    assert len(res["round_acc"]) == 15
    d, c = 8, 4
    assert res["bytes_per_site_per_round"] == 2 * 4 * (d * c + c)
    assert res["bytes_per_site_total"] == 15 * res["bytes_per_site_per_round"]
    again = ft.run_fed_transfer("synthetic", task=t, cfg=cfg, int8=False)
    assert again["round_acc"] == res["round_acc"] and again["site_alone"] == res["site_alone"]


def test_report_rows_metaverse_eeg_quick(tmp_path):
    rows = ft.report_rows("metaverse_eeg", quick=True, out_dir=tmp_path)
    for r in rows:
        check_row(r)
        assert "no encryption" in r["privacy"] and "no secure aggregation" in r["privacy"]
    assert [r["metric"] for r in rows] == ["acc", "acc_vs_pooled", "macro_f1"]
    assert rows[0]["baseline"] == "site_alone" and rows[1]["baseline"] == "pooled"
    assert 0.0 <= rows[0]["int8_value"] <= 1.0
    assert rows[0]["bytes_on_wire"] == 2 * 4 * (16 * 4 + 4)  # quick EEG model: hidden (16,), 4 classes
    assert (tmp_path / "fed_transfer_metaverse_eeg.png").stat().st_size > 10_000
