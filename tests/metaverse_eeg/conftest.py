"""metaverse_eeg models trained once per session with the quick config."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def eeg_models(tmp_path_factory):
    from metaverse_eeg.train import ensure_trained

    models = tmp_path_factory.mktemp("eeg-quick") / "metaverse_eeg"
    ensure_trained(models, quick=True)
    return models
