"""The world's scene messages follow the same key rule as inferences: a redelivery is absorbed, a different
scene under a stored (user, seq) is a seq conflict (dead-lettered by the consumer) and the store keeps the
first."""

from __future__ import annotations

import pytest

from metaverse_eeg.device import scene_message
from metaverse_eeg.signals import SessionConfig, simulate_users
from shared.runtime.service import MessageError
from shared.storage.factory import open_store


def test_a_conflicting_scene_is_a_seq_conflict_and_the_store_keeps_the_first(eeg_models, tmp_path):
    from metaverse_eeg.service import service_factory

    store = open_store(f"sqlite:///{tmp_path / 'svc.db'}")
    svc = service_factory(eeg_models)(store, lambda *a, **k: None)
    user = simulate_users(SessionConfig(n_users=1, duration_h=0.05, seed=3))[0]
    first = scene_message(user, 7, 1_800_000_000_000, "none")
    svc.on_scene(None, first)
    svc.on_scene(None, dict(first))  # a redelivery: stored once, no error
    other = {**first, "applied": "calm" if first["applied"] != "calm" else "none"}
    with pytest.raises(MessageError, match="seq conflict"):
        svc.on_scene(None, other)
    assert store.count("scene") == 1
    assert store.get("scene", user.id, 7).fields["applied"] == first["applied"]
