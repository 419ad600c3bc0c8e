"""Top-level pytest configuration: real-server fixtures live in tests/fixtures/ as plugins."""

import pytest
from hypothesis import HealthCheck, settings

# property tests assert behaviour, never speed: no per-example deadline on a loaded 2-core CI machine
settings.register_profile("tinylarge", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tinylarge")

pytest_plugins = ["tests.fixtures.mqtt", "tests.fixtures.influx", "tests.fixtures.nats", "tests.fixtures.postgres"]


@pytest.fixture(scope="session")
def quick_models(tmp_path_factory):
    """Healthcare models trained once per session with the quick config (small cohorts, ~30 s)."""
    from healthcare.train import ensure_trained

    models = tmp_path_factory.mktemp("quick-models") / "healthcare"
    ensure_trained(models, quick=True)
    return models
