"""The contract suite runs every test once per registered domain (shared.domain.registry)."""

from __future__ import annotations

import pytest

from shared.domain import registry


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "domain" in metafunc.fixturenames:
        metafunc.parametrize("domain", list(registry().values()), ids=list(registry()), scope="session")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, domain):
    """The domain's models trained once per session with its quick config."""
    models = tmp_path_factory.mktemp(f"contract-{domain.name}") / domain.name
    domain.hooks.ensure_trained(models, quick=True)
    return models
