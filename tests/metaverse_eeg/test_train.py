"""Quick training run and the cloud service on its models: honest splits, figures present, one action per
window, a restarted service rebuilds each user's history from the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.protocol import messages
from shared.protocol.messages import Topic

pytestmark = pytest.mark.usefixtures("eeg_models")


def test_quick_metrics_are_cross_person_and_beside_baselines(eeg_models):
    m = json.loads((eeg_models / "metrics.json").read_text())
    assert m["tiny_train_users"] == 12 and m["tiny_test_users"] == 6
    assert abs(m["tiny_float_acc"] - m["tiny_int8_acc"]) <= 0.05
    assert m["arousal_acc"] > m["chance_binary_acc"] and m["tiny_int8_acc"] > m["chance_acc"]
    for arm in ("none", "rule", "agent"):
        assert 0.0 <= m[f"{arm}_time_in_zone"] <= 1.0 and m[f"{arm}_users"] == 4
    assert m["none_actions_per_hour"] == 0.0
    assert (eeg_models / "large" / "config.json").exists()


def test_training_refuses_a_user_on_both_sides():
    from metaverse_eeg.tiny import N_FEATURES, TinyConfig, train_tiny

    x, y = np.zeros((4, N_FEATURES), np.float32), np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="both the training and the test set"):
        train_tiny(TinyConfig(epochs=1), x, y, np.array([1, 1, 2, 2]), x, y, np.array([2, 2, 3, 3]))


def test_service_answers_every_window_and_rebuilds_after_restart(eeg_models, tmp_path):
    from metaverse_eeg.agent import AgentPredictor
    from metaverse_eeg.device import inference_message, scene_message
    from metaverse_eeg.service import DistressPredictor, EegService
    from metaverse_eeg.signals import SessionConfig, simulate_users
    from metaverse_eeg.tiny import TinyModel
    from shared.runtime.service import ServiceConfig
    from shared.storage.factory import open_store

    tiny = TinyModel.load(eeg_models)
    predictor = DistressPredictor(AgentPredictor.load(eeg_models / "large"))
    out: list[tuple[str, str, dict]] = []
    url = f"sqlite:///{tmp_path / 'eeg.db'}"
    store = open_store(url)
    svc = EegService(store, predictor, lambda d, s, m: out.append((d, s, m)), ServiceConfig(history_steps=12))
    users = simulate_users(SessionConfig(n_users=2, seed=61))
    n = 6
    for k in range(n):
        t = 4.0 + 10.0 * k
        for u in users:
            u.advance(t)
            ts = 1_700_000_000_000 + int(t * 1000)
            svc.on_scene(Topic("metaverse_eeg", u.id, "scene"), scene_message(u, k, ts, "none"))
            svc.on_inference(Topic("metaverse_eeg", u.id, "inference"), inference_message(u.id, k, ts, u.window(t),
                                                                                        tiny))
        assert svc.score_due() == len(users)
    assert len(out) == n * len(users) and {s for _, s, _ in out} == {"action"}
    for _, _, msg in out:
        messages.validate("metaverse_eeg", "action", msg)
        assert msg["reason"].startswith("agent: ")
    assert svc.counts["scenes"] == n * len(users) and store.count("action") == n * len(users)
    store.close()
    again = EegService(open_store(url), predictor, lambda *a: None, ServiceConfig(history_steps=12))
    assert again.rebuild() == n * len(users)
    s = again.subjects[users[0].id]
    assert s.last_seq == n - 1 and len(s.steps) == n
    np.testing.assert_allclose(s.steps[-1], svc.subjects[users[0].id].steps[-1], atol=1e-4)
