"""Top-level pytest configuration: real-server fixtures live in tests/fixtures/ as plugins."""

import pytest

pytest_plugins = ["tests.fixtures.mqtt", "tests.fixtures.influx"]


@pytest.fixture(scope="session")
def quick_models(tmp_path_factory):
    """Healthcare models trained once per session with the quick config (small cohorts, ~30 s)."""
    from healthcare.train import ensure_trained

    models = tmp_path_factory.mktemp("quick-models") / "healthcare"
    ensure_trained(models, quick=True)
    return models
