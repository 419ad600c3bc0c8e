"""The demo's live loop without a broker: the student it distils follows the teacher, and a device's second slot
takes only a genuine, signed (d,) -> (2,) model of its own name (the demos themselves: tests/contract)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr


@pytest.fixture(scope="module")
def teacher_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5)).astype(np.float32) * np.array([1, 10, 100, 0.1, 1], np.float32) + 50.0
    z = (x[:, 1] - 50.0) / 10.0 - (x[:, 2] - 50.0) / 100.0
    return x, 1.0 / (1.0 + np.exp(-2.0 * z))


@pytest.fixture(scope="module")
def student(teacher_data: tuple[np.ndarray, np.ndarray]) -> bytes:
    from shared.runtime.live_loop import distil

    x, p = teacher_data
    return distil(x, p, quick=True)


def test_the_int8_student_ranks_windows_as_the_teacher_does(student, teacher_data):
    from shared.tiny.int8 import Int8Runner

    x, p = teacher_data
    runner = Int8Runner(student)
    assert runner.input_shape == (5,) and runner.output_shape == (2,)
    assert runner.input_dtype == np.int8
    got = runner.predict(x)[:, 1]
    assert spearmanr(got, p).statistic > 0.75  # raw inputs of very different scales: standardised inside


def _second_slot(tmp_path, name: str = "hc-risk-tiny"):
    from shared.runtime.fleet import SecondSlot
    from shared.security.model_update import ModelSlot, generate_keypair

    private, public = generate_keypair(tmp_path / "keys")
    (tmp_path / "slot").mkdir()
    slot = ModelSlot("healthcare", "p001", public, active_version=0, active_model_id=name,
                     path=tmp_path / "slot" / "second.tflite")
    return SecondSlot(name, slot), private


def test_second_slot_refuses_a_forged_copy_then_installs_the_genuine_one(student, tmp_path):
    from shared.runtime.fleet import _model_name
    from shared.security.model_update import sign_update

    second, key = _second_slot(tmp_path)
    msg = sign_update("healthcare", "p001", "hc-risk-tiny", 1, student, key, 1, 1_700_000_000_000)
    forged = dict(msg)
    b64 = msg["tflite_b64"]
    forged["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
    import json

    assert _model_name(json.dumps(msg).encode()) == "hc-risk-tiny"
    ok, reason = second.offer(json.dumps(forged).encode())
    assert not ok and second.runner is None, reason
    assert second.p_event(np.zeros((1, 5), np.float32)) is None  # nothing installed: no estimate
    ok, reason = second.offer(json.dumps(msg).encode())
    assert ok, reason
    assert second.model_id == "hc-risk-tiny@1"
    p = second.p_event(np.full((3, 5), 50.0, np.float32))
    assert p is not None and p.shape == (3,) and np.all((p >= 0.0) & (p <= 1.0))
    ok, reason = second.offer(json.dumps(msg).encode())  # the same update again: a replay
    assert not ok and "stale" in reason


def test_second_slot_refuses_a_model_that_is_no_event_estimator(tmp_path):
    """A 3-class model signed under the student's name does not load into the second slot."""
    import json

    from shared.integration import _mlp
    from shared.security.model_update import sign_update

    x = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)
    blob = _mlp.to_int8(_mlp.init_mlp(5, (4,), 3, seed=0), x)
    second, key = _second_slot(tmp_path)
    ok, reason = second.offer(json.dumps(sign_update("healthcare", "p001", "hc-risk-tiny", 1, blob, key, 1,
                                                     1_700_000_000_000)).encode())
    assert not ok and "(2,)" in reason and second.runner is None
