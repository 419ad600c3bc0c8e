"""The domain contract (shared.domain), checked for every registered domain the same way.

What a domain declares must agree with what its code does: schemas validate the messages its devices
make, ``to_vector`` has the tiny model's input width, the labels are the model's outputs, the C
firmware app builds for it and its DSP agrees with Python, and the quick demo stores what it published.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from shared.domain import VERBS, Domain, DomainHooks
from shared.protocol import messages


def test_declaration_is_complete(domain: Domain):
    from shared.runtime.scenario import Scenario

    hooks = domain.hooks
    assert isinstance(hooks, DomainHooks) and hooks.domain is domain
    assert not getattr(type(hooks), "__abstractmethods__", None), f"{domain.name}: hooks leave abstract methods"
    scen = hooks.scenario
    assert issubclass(scen, Scenario) and not scen.__abstractmethods__, domain.name
    assert scen.quick.subjects >= scen.min_subjects and scen.full.subjects >= scen.min_subjects
    for opt in ("tiny_task", "distill_task", "new_subjects"):
        assert getattr(hooks, opt) is None or callable(getattr(hooks, opt)), (domain.name, opt)
    assert domain.result_stream in ("risk", "action")
    assert {c.name for c in domain.channels}, domain.name


def test_every_verb_takes_the_same_platform_flags(domain: Domain, capsys):
    """The four verbs are the platform's: one vocabulary, no abbreviations."""
    from shared.runtime.verbs import MAINS

    assert set(MAINS) == set(VERBS)
    for verb in VERBS:
        with pytest.raises(SystemExit) as exc:
            MAINS[verb](domain.name, ["--help"])
        assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--subjects", "--duration", "--speed", "--seed", "--models", "--out", "--mqtt", "--store",
                 "--firmware", "--qemu", "--dashboard-port", "--no-dashboard", "--quick"):
        assert flag in out, (domain.name, flag)
    with pytest.raises(SystemExit) as exc:  # a prefix of --quick is refused, not taken as another flag
        MAINS["demo"](domain.name, ["--qui"])
    assert exc.value.code == 2


def test_population_has_unique_ids_and_windows(domain: Domain):
    subjects = domain.hooks.simulate(3, 2.0, 5)
    assert len(subjects) == 3 and len({s.id for s in subjects}) == 3
    w = next(iter(subjects[0].windows()))
    vec = domain.hooks.to_vector(domain.hooks.extract(w))
    assert np.asarray(vec).shape[-1] == len(domain.feature_names)
    table = domain.hooks.window_channels(w)
    assert isinstance(table, dict) and table, domain.name


def test_every_stream_has_a_valid_schema_in_the_domain_package(domain: Domain):
    files = {p.stem for p in domain.schema_dir.glob("*.json")}
    assert files == set(domain.streams), f"{domain.name}: schemas {sorted(files)} vs streams {sorted(domain.streams)}"
    for stream in domain.streams:
        schema = json.loads(messages.schema_path(domain.name, stream).read_text())
        assert schema["$id"].endswith(f"/{domain.name}.{stream}.json")


def test_sample_messages_validate_and_bad_ones_are_named(domain: Domain, trained):
    samples = domain.hooks.sample_messages(trained)
    assert samples.get("inference"), domain.name
    for stream, msgs in samples.items():
        assert stream in domain.streams and domain.streams[stream].direction == "up"
        for msg in msgs:
            assert messages.decode(domain.name, stream, messages.encode(domain.name, stream, msg)) == msg
    bad = dict(samples["inference"][0])
    bad.pop("model")
    with pytest.raises(messages.MessageError, match="model"):
        messages.validate(domain.name, "inference", bad)


def test_to_vector_is_the_tiny_models_input_and_labels_its_outputs(domain: Domain, trained):
    from shared.tiny.int8 import Int8Runner

    runner = Int8Runner(trained / "tiny.tflite")
    x = np.zeros((1, len(domain.feature_names)), dtype=np.float32)
    assert runner.predict(x).shape == (1, len(domain.labels))
    labels = json.loads((trained / "labels.json").read_text())
    got = labels["labels"] if isinstance(labels, dict) else labels
    assert tuple(got) == domain.labels


def test_quick_demo_stores_exactly_what_it_published(domain: Domain, trained, tmp_path):
    """The domain's quick demo through the CLI, Python devices only (firmware: tests/firmware)."""
    from shared.cli import main

    out = tmp_path / "demo"
    db = tmp_path / "demo.db"
    argv = ["demo", domain.name, "--quick", "--models", str(trained), "--out", str(out), "--store",
            f"sqlite:///{db}", "--firmware", "0", "--qemu", "0", "--no-dashboard"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["published"] > 0 and summary["stored"] == summary["published"]
    assert summary["deadletters"] >= summary["deadletters_injected"] == 3
    assert summary["quick_models"] is True and summary["devices"] == domain.hooks.scenario.quick.subjects
    assert summary[f"{domain.result_stream}_messages"] == summary["published"]
    with sqlite3.connect(db) as con:
        (n,) = con.execute("select count(*) from points where measurement='inference'").fetchone()
        (results,) = con.execute("select count(*) from points where measurement=?",
                                 (domain.result_stream,)).fetchone()
    assert n == summary["published"]
    assert results == summary["published"]  # one cloud result per window
    # the live loop, closed once mid-run: a distilled student in every device's second slot, the forged copy refused
    for key in ("live_loop", "model_before", "model_after", "fleet_metric_before", "fleet_metric_after"):
        assert key in summary, (domain.name, key)
    if domain.hooks.distill_task is None:
        assert summary["live_loop"] == "skipped (no distill_task)"
    else:
        assert summary["live_loop"] == "closed", summary["live_loop"]
        assert summary["model_after"] != summary["model_before"]
        assert summary["model_after"].startswith(f"{domain.tiny_model.removesuffix('-tiny')}-risk-tiny@1 sha256:")
        assert summary["fleet_metric"] and summary["fleet_metric_windows"] > 0
        assert summary["fleet_metric_before"] is not None and summary["fleet_metric_after"] is not None
    assert summary["model_updates_accepted"] == summary["devices"]  # every device of the fleet installed it
    assert summary["model_updates_rejected"] == 1  # the forged copy
