"""Every registered domain's C firmware app lives in its own package (``Domain.firmware_dir``), so a domain
in a distribution of its own brings its app along; the build finds it there and nowhere else."""

from __future__ import annotations

import re

import pytest

from shared.domain import Domain


def test_firmware_app_is_in_the_domain_package(domain: Domain):
    app = domain.firmware_dir
    assert app.is_dir(), f"{domain.name}: no firmware app folder {app} (Domain.firmware = {domain.firmware!r})"
    assert app.parent == domain.schema_dir.parent, f"{domain.name}: {app} is outside package {domain.package}"
    sources = sorted(app.glob("*.c"))
    specs = [p for p in sources if re.search(r"\btl_app_spec\s+tl_app_domain\s*=", p.read_text())]
    assert len(specs) == 1, f"{domain.name}: exactly one of {[p.name for p in sources]} defines tl_app_domain"
    assert re.search(rf'\.domain\s*=\s*"{domain.name}"', specs[0].read_text()), f"{specs[0]}: .domain"


def test_the_build_resolves_the_app_through_the_registry(domain: Domain):
    from shared.tiny.targets import app_dir

    assert app_dir(domain.name) == domain.firmware_dir
    with pytest.raises(LookupError, match="unknown domain 'no_such_domain'"):
        app_dir("no_such_domain")
