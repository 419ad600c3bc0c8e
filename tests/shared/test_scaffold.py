"""``tinylarge domain new``: the package it writes (files, names, a valid declaration, working DSP) and what it
refuses. Fast: nothing is installed or trained here, except in the one ``slow`` test, which puts the package
on a subprocess's path (with an entry point, as ``pip install`` would) and runs the package's own tests."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared import cli
from shared.scaffold import ScaffoldError, generate
from shared.scaffold.generator import template_files

PROBE = "tl_scaffold_probe"  #: a name no module has, so the package imports from tmp_path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def probe(tmp_path):
    """The package generated as PROBE, importable for the test (removed from sys.modules after)."""
    root = tmp_path / PROBE
    generate(PROBE, root)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m == PROBE or m.startswith(f"{PROBE}.")]:
            del sys.modules[mod]


def test_it_writes_the_whole_package_with_every_placeholder_filled(tmp_path):
    root = tmp_path / "meters"
    written = generate("water_pump", root)
    assert {str(p) for p in written} == _files(root) and len(written) == len(template_files())
    pkg = {f"water_pump/{m}.py" for m in ("__init__", "signals", "features", "tiny", "large", "baseline", "train",
                                           "device", "service", "scenario", "hooks", "tasks")}
    fw = {f"water_pump/firmware/water_pump_{f}" for f in ("features.c", "features.h", "spec.c")}
    assert pkg | fw | {"pyproject.toml", "README.md", "tests/test_contract.py", "water_pump/schemas/inference.json",
                       "water_pump/schemas/risk.json"} == _files(root)
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"\{\{\s*\w+\s*\}\}", text), path
            if path.suffix == ".py":
                compile(text, str(path), "exec")
    assert 'water_pump = "water_pump:DOMAIN"' in (root / "pyproject.toml").read_text()
    assert "class WaterPumpService(SubjectService)" in (root / "water_pump/service.py").read_text()
    spec = (root / "water_pump/firmware/water_pump_spec.c").read_text()
    assert '.domain = "water_pump"' in spec and "WATER_PUMP_N_FEATURES" in spec
    for stream in ("inference", "risk"):
        schema = json.loads((root / f"water_pump/schemas/{stream}.json").read_text())
        assert schema["$id"].endswith(f"/water_pump.{stream}.json") and schema["allOf"] == [{"$ref": "envelope.json"}]


def test_the_declaration_is_valid_and_the_hooks_are_complete(probe):
    from shared.domain import Domain, DomainHooks

    d = importlib.import_module(PROBE).DOMAIN
    assert isinstance(d, Domain) and d.name == d.package == PROBE and d.hooks_ref == f"{PROBE}.hooks:Hooks"
    assert set(d.streams) == {"inference", "risk"} and d.result_stream == "risk"
    assert d.model_ids == (f"{PROBE}-tiny@1", f"{PROBE}-risk@1")
    assert d.schema_dir == probe / PROBE / "schemas" and d.firmware_dir == probe / PROBE / "firmware"
    hooks_cls = importlib.import_module(f"{PROBE}.hooks").Hooks
    assert issubclass(hooks_cls, DomainHooks) and not hooks_cls.__abstractmethods__
    assert callable(hooks_cls.tiny_task)
    schema = json.loads((d.schema_dir / "inference.json").read_text())
    assert schema["properties"]["class"]["enum"] == list(d.labels)
    assert schema["properties"]["features"]["required"] == list(d.feature_names)


def test_the_simulator_and_the_dsp_work_as_written(probe):
    signals = importlib.import_module(f"{PROBE}.signals")
    features = importlib.import_module(f"{PROBE}.features")
    d = importlib.import_module(PROBE).DOMAIN
    homes = signals.simulate(signals.MeterConfig(n_households=3, duration_h=24.0, seed=4))
    assert len({h.id for h in homes}) == 3
    w = homes[0].window(19 * 3600.0)
    assert w.power_w.shape == (round(d.window_s * d.channels[0].fs_hz),) and w.label in d.labels
    assert np.array_equal(homes[0].window(19 * 3600.0).power_w, w.power_w)  # deterministic
    assert features.to_vector(features.extract(w.power_w)).shape == (len(d.feature_names),)
    gap = w.power_w.copy()
    gap[3] = np.nan
    assert all(v is None or np.isnan(v) for v in features.extract(gap).values())
    labelled = signals.labelled_windows(50, 3)
    assert {w.label for w in labelled} == set(d.labels)


def test_the_generated_python_is_ruff_clean(tmp_path):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    root = tmp_path / "smart_meter"
    generate("smart_meter", root)
    proc = subprocess.run([ruff, "check", "--no-cache", str(root)], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("argv, says", [
    (["Smart"], "is not a domain name"),
    (["9meter"], "is not a domain name"),
    (["smart-meter"], "is not a domain name"),
    (["a" * 33], "is not a domain name"),
    (["class"], "Python keyword"),
    (["json"], "importable already"),
])
def test_a_bad_name_is_refused_with_one_line_and_exit_2(argv, says, tmp_path, capsys):
    assert cli.main(["domain", "new", *argv, "--dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_a_registered_domain_is_refused(tmp_path, capsys):
    from shared.domain import names

    taken = names()[0]
    assert cli.main(["domain", "new", taken, "--dir", str(tmp_path / "x")]) == 2
    assert f"domain {taken!r} is registered already" in capsys.readouterr().err
    with pytest.raises(ScaffoldError, match="registered already"):
        generate(taken, tmp_path / "y")


def test_a_folder_that_holds_something_is_refused_an_empty_one_is_used(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine\n")
    assert cli.main(["domain", "new", "smart_meter", "--dir", str(full)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert _files(full) == {"notes.txt"}
    afile = tmp_path / "afile"
    afile.write_text("")
    assert cli.main(["domain", "new", "smart_meter", "--dir", str(afile)]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["domain", "new", "smart_meter", "--dir", str(empty)]) == 0
    assert (empty / "smart_meter" / "__init__.py").is_file()


def test_the_default_folder_is_the_name_and_the_next_steps_are_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["domain", "new", "smart_meter"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "smart_meter" / "smart_meter" / "hooks.py").is_file()
    assert "pip install -e" in out and "tinylarge demo smart_meter --quick" in out


@pytest.mark.slow
def test_the_generated_package_passes_its_own_tests_once_on_the_path(tmp_path):
    """As after ``pip install -e``: the project on the path and its entry point in a dist-info (no pip, nothing
    installed into the environment); then the package's tests: quick training, contract checks, DSP parity
    with the C port, the quick demo."""
    project = tmp_path / "project"
    generate(PROBE, project)
    site = tmp_path / "site"
    info = site / f"{PROBE}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[tinylarge.domains]\n{PROBE} = {PROBE}:DOMAIN\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(project), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
