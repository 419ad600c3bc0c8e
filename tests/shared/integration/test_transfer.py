"""Transfer learning (shared/integration/transfer.py) and the NumPy MLP helper (_mlp.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.integration import _mlp, transfer
from shared.integration.report import check_row
from shared.integration.task import TinyTask


def _blobs(n_subjects: int, per_class: int, n_classes: int = 3, d: int = 6, seed: int = 0,
           shift: float = 0.0) -> TinyTask:
    """Gaussian class blobs; each subject's blobs move by a subject offset of size ``shift``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, (n_classes, d))
    xs, ys, gs = [], [], []
    for s in range(n_subjects):
        off = rng.normal(0, shift, (n_classes, d))
        for c in range(n_classes):
            xs.append(centers[c] + off[c] + rng.normal(0, 1.0, (per_class, d)))
            ys += [c] * per_class
            gs += [f"s{s}"] * per_class
    return TinyTask("synthetic", np.concatenate(xs), np.array(ys), np.array(gs),
                    tuple(f"c{i}" for i in range(n_classes)), (12, 8), "synthetic@1")


def test_mlp_fit_learns_and_is_deterministic():
    t = _blobs(4, 60)
    init = _mlp.init_mlp(t.n_features, (12, 8), t.n_classes, seed=1)
    a = _mlp.fit(init, t.x, t.y, epochs=20, seed=3)
    b = _mlp.fit(init, t.x, t.y, epochs=20, seed=3)
    assert _mlp.accuracy(t.y, a.predict(t.x)) > 0.9
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.macs() == 6 * 12 + 12 * 8 + 8 * 3
    assert a.n_params() == a.macs() + 12 + 8 + 3


def test_head_only_fit_leaves_backbone_unchanged():
    t = _blobs(3, 40)
    pop = _mlp.fit(_mlp.init_mlp(t.n_features, (12, 8), t.n_classes, 0), t.x, t.y, epochs=5)
    adapted = _mlp.fit(pop, t.x[:30], t.y[:30], epochs=30, layers="head")
    for i in range(len(pop.weights) - 1):
        np.testing.assert_array_equal(pop.weights[i], adapted.weights[i])
        np.testing.assert_array_equal(pop.biases[i], adapted.biases[i])
    assert not np.array_equal(pop.weights[-1], adapted.weights[-1])


def test_mlp_bad_input_is_named():
    m = _mlp.init_mlp(4, (3,), 2, 0)
    with pytest.raises(ValueError, match=r"expected \(n, 4\)"):
        m.logits(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        _mlp.fit(m, np.zeros((2, 4)), np.array([0, 2]), epochs=1)
    with pytest.raises(ValueError, match="layers"):
        _mlp.fit(m, np.zeros((2, 4)), np.array([0, 1]), epochs=1, layers="first")  # type: ignore[arg-type]


def test_macro_f1():
    y = np.array([0, 0, 1, 1])
    assert _mlp.macro_f1(y, y) == 1.0
    assert _mlp.macro_f1(y, np.array([0, 0, 0, 0])) == pytest.approx((2 * 2 / 6 + 0.0) / 2)


def test_subject_split_keeps_half_of_each_class_and_nests_k():
    t = _blobs(2, 30)
    t.y[(t.groups == "s0") & (t.y == 2)] = 1  # s0: classes 0 (30) and 1 (60)
    sp = transfer.subject_split(t, "s0", k_max=20, seed=0)
    assert sp is not None and set(sp.pools) == {0, 1}
    assert len(sp.pools[0]) == 15 and len(sp.pools[1]) == 20  # capped at half of 30; 20 of 60
    assert set(sp.adapt_idx(5)) <= set(sp.adapt_idx(10)) <= set(sp.adapt_idx(20))
    assert not set(sp.eval_idx) & set(sp.adapt_idx(20))
    assert len(sp.eval_idx) + len(sp.adapt_idx(20)) == int((t.groups == "s0").sum())
    one = t.take(~((t.groups == "s1") & (t.y != 0)))
    assert transfer.subject_split(one, "s1", 20, 0) is None  # one class: nothing to adapt


def test_last_layer_transfer_beats_population_when_subjects_differ():
    t = _blobs(24, 45, shift=1.5, seed=4)
    cfg = transfer.TransferConfig(pop_samples=10_000, max_subjects=8, scratch_steps=150)
    res = transfer.run_transfer("synthetic", task=t, cfg=cfg, int8=False)
    cur = res["curves"]
    assert res["subjects"] == 8 and res["excluded_one_class"] == 0
    assert cur["population"]["0"] == cur["last_layer"]["0"]
    assert "0" not in cur["scratch"]
    assert [cur["last_layer"][k]["labels_mean"] for k in ("5", "10", "20")] == [15.0, 30.0, 60.0]
    pop = cur["population"]["10"]["acc"]["mean"]
    assert cur["last_layer"]["20"]["acc"]["mean"] > pop + 0.02
    assert cur["scratch"]["20"]["acc"]["mean"] > cur["scratch"]["5"]["acc"]["mean"]
    small = transfer.TransferConfig(ks=(0, 5), int8_k=5, pop_samples=2_000, max_subjects=2, scratch_steps=20)
    runs = [transfer.run_transfer("synthetic", task=t, cfg=small, int8=False)["curves"] for _ in range(2)]
    assert json.dumps(runs[0]) == json.dumps(runs[1])  # deterministic


def test_config_rejects_bad_ks():
    with pytest.raises(ValueError, match="ks"):
        transfer.TransferConfig(ks=(5, 10))
    with pytest.raises(ValueError, match="int8_k"):
        transfer.TransferConfig(int8_k=7)


def test_report_rows_industrial_iot_quick_with_int8(tmp_path):
    rows = transfer.report_rows("industrial_iot", quick=True, out_dir=tmp_path)
    for r in rows:
        check_row(r)
    head = rows[0]
    assert head["strategy"] == "transfer" and head["metric"] == "acc_k10" and head["baseline"] == "population_model"
    # the last layer of a (32|16 -> 7) model as int8: 16 x 7 int8 weights + 7 int32 biases, measured on the flatbuffers
    assert head["bytes_on_wire"] == 16 * 7 + 4 * 7
    assert head["int8"]["subjects"] >= 1 and head["int8"]["int8_float_agreement"]["mean"] > 0.8
    assert head["excluded_one_class"] > 0  # quick fleet: some machines show a single class
    assert (tmp_path / "transfer_industrial_iot.png").stat().st_size > 10_000


@pytest.mark.slow
def test_transfer_improves_held_out_machines_industrial_iot(tmp_path):
    res = transfer.run_transfer("industrial_iot", quick=False, int8=False)
    cur = res["curves"]
    assert res["subjects"] >= 20
    assert cur["last_layer"]["10"]["acc"]["mean"] > cur["population"]["10"]["acc"]["mean"] + 0.02
