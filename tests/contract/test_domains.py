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

from shared.domain import VERBS, Domain
from shared.protocol import messages


def test_declaration_is_complete(domain: Domain):
    for key in (*VERBS, "simulate", "extract", "to_vector", "window_channels", "baseline", "ensure_trained",
                "quick_demo", "sample_messages"):
        assert domain.has(key), f"{domain.name} declares no {key!r}"
        assert callable(domain.ref(key)), (domain.name, key)
    assert domain.result_stream in ("risk", "action")
    assert {c.name for c in domain.channels}, domain.name


def test_every_stream_has_a_valid_schema_in_the_domain_package(domain: Domain):
    files = {p.stem for p in domain.schema_dir.glob("*.json")}
    assert files == set(domain.streams), f"{domain.name}: schemas {sorted(files)} vs streams {sorted(domain.streams)}"
    for stream in domain.streams:
        schema = json.loads(messages.schema_path(domain.name, stream).read_text())
        assert schema["$id"].endswith(f"/{domain.name}.{stream}.json")


def test_sample_messages_validate_and_bad_ones_are_named(domain: Domain, trained):
    samples = domain.ref("sample_messages")(trained)
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

    sim = domain.ref("simulate")
    assert sim is not None
    runner = Int8Runner(trained / "tiny.tflite")
    x = np.zeros((1, len(domain.feature_names)), dtype=np.float32)
    assert runner.predict(x).shape == (1, len(domain.labels))
    labels = json.loads((trained / "labels.json").read_text())
    got = labels["labels"] if isinstance(labels, dict) else labels
    assert tuple(got) == domain.labels


def test_quick_demo_stores_exactly_what_it_published(domain: Domain, trained, tmp_path):
    """The domain's quick demo through its CLI entry, Python devices only (firmware: tests/firmware)."""
    out = tmp_path / "demo"
    db = tmp_path / "demo.db"
    argv = [*domain.ref("quick_demo")(), "--models", str(trained), "--out", str(out), "--store",
            f"sqlite:///{db}", "--firmware", "0", "--qemu", "0"]
    assert domain.ref("demo")(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["published"] > 0 and summary["stored"] == summary["published"]
    assert summary["deadletters"] >= 1
    with sqlite3.connect(db) as con:
        (n,) = con.execute("select count(*) from points where measurement='inference'").fetchone()
        (results,) = con.execute("select count(*) from points where measurement=?",
                                 (domain.result_stream,)).fetchone()
    assert n == summary["published"]
    assert results == summary["published"]  # one cloud result per window
