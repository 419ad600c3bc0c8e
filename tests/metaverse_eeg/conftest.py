"""metaverse_eeg models trained once per session with the quick config (shared with tests/firmware/test_eeg_app.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def eeg_models(tmp_path_factory):
    from metaverse_eeg.train import ensure_trained

    models = tmp_path_factory.getbasetemp() / "metaverse_eeg-quick"
    ensure_trained(models, quick=True)  # a no-op when another test of this session trained them
    return models
