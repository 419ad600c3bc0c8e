"""``make results`` (bench.results) on small JSON files the test writes: one table per file with the command
that wrote it and the file's date, the command to run for each missing file, headline figures that mark
the quick models, markers in README rewritten (unknown ones refused), and a rerun that changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from bench import results
from shared.errors import UserError

WHEN = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)


def _write(root: Path, rel: str, data: object) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.utime(path, (WHEN.timestamp(), WHEN.timestamp()))
    return path


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    _write(tmp_path, "models/healthcare/metrics.json",
           {"risk_auroc": 0.91234, "news2_auroc": 0.7, "test_patients": 12, "horizon_h": 6.0, "quick": False,
            "tiny_int8_recall": {"normal": 0.5}, "tiny_ops": ["FULLY_CONNECTED", "SOFTMAX"],
            "large": {"config": {"d_model": 64}}})
    _write(tmp_path, "out/bench/pipeline.json",
           {"msgs_per_s": 1234.6, "ratio": 0.61, "lost": 0, "duplicated": 0, "messages": 5000})
    _write(tmp_path, "out/bench/faults.json",
           [{"scenario": "broker-restart", "promised": True, "published": 10, "stored": 10, "lost": 0,
             "duplicated": 0, "redelivered": 1, "recovery_s": 1.5, "lost_at": []},
            {"scenario": "broker-kill", "promised": False, "published": 10, "stored": 9, "lost": 1,
             "duplicated": 0, "redelivered": 0, "recovery_s": 2.0, "lost_at": [7]}])
    return tmp_path


def test_a_table_per_file_with_its_command_and_date(root: Path) -> None:
    text = results.build(root, ["healthcare"])
    assert "## healthcare: models\n\n`make train-healthcare` wrote `models/healthcare/metrics.json` on " \
           "2026-03-04 05:06 UTC, full models." in text
    assert "| `risk_auroc` | 0.912 |" in text
    assert "| `tiny_int8_recall.normal` | 0.500 |" in text
    assert "| `tiny_ops` | FULLY_CONNECTED / SOFTMAX |" in text
    assert "Not shown (nested; in the JSON): `large`." in text
    assert "| `msgs_per_s` | 1,235 |" in text
    assert "| broker-kill | no | 10 | 9 | 1 | 0 | 0 | 2.000 |" in text


def test_a_missing_file_names_the_command_instead_of_a_figure(root: Path) -> None:
    text = results.build(root, ["healthcare"])
    assert "## healthcare: demo\n\nNot yet measured on this checkout: run `make demo-healthcare` (it writes " \
           "`out/demo-healthcare/summary.json`), then `make results`." in text
    assert "- [firmware: parity and footprint](#firmware-parity-and-footprint): run `make firmware-report`" in text
    figs = results.read_spans(text)
    assert figs["firmware"] == "not yet measured on this checkout: `make firmware-report`"
    assert figs["healthcare-demo"] == "not yet measured on this checkout: `make demo-healthcare`"


def test_headlines_come_from_the_json(root: Path) -> None:
    figs = results.read_spans(results.build(root, ["healthcare"]))
    assert figs["healthcare"] == "deterioration within 6 h: AUROC 0.912 vs NEWS2 0.700 (12 held-out patients)"
    assert figs["pipeline"] == "1,235 msgs/s through the service, 0.610 of the broker's raw rate; 0 lost, " \
                               "0 duplicated of 5,000"
    assert figs["faults"] == "1 of 1 promised fault scenarios lost and duplicated nothing"
    assert figs == results.figures(root, ["healthcare"])


def test_quick_models_say_so_with_the_command_that_made_them(root: Path) -> None:
    _write(root, "models/healthcare/tiny_metrics.json", {"int8_acc": 0.5})
    _write(root, "models/healthcare/stamp.json", {"key": "k", "quick": True})
    _write(root, "models/healthcare/metrics.json", {"risk_auroc": 0.6, "news2_auroc": 0.5, "test_patients": 2,
                                                    "quick": True})
    text = results.build(root, ["healthcare"])
    assert "`tinylarge train healthcare --quick` wrote `models/healthcare/tiny_metrics.json` on 2026-03-04 05:06 " \
           "UTC, **quick models**" in text  # from the stamp: tiny_metrics.json does not say
    assert results.read_spans(text)["healthcare"].endswith(
        "(2 held-out patients; quick models, `make train-healthcare` for the full ones)")


def test_main_writes_the_page_and_rewrites_the_markers(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = root / "README.md"
    readme.write_text("AUROC: <!-- results:healthcare -->0.5, typed by hand<!-- /results -->.\n"
                      "Plain text stays.\n")
    (root / "docs").mkdir()
    page = root / "docs" / "healthcare.md"
    page.write_text("Speed <!-- results:pipeline -->old<!-- /results -->\n")
    assert results.main(["--root", str(root), "--domains", "healthcare"]) == 0
    page_text = (root / "docs" / "results.md").read_text()
    figs = results.read_spans(page_text)
    assert readme.read_text() == (f"AUROC: {results.span('healthcare', figs['healthcare'])}.\nPlain text stays.\n")
    assert results.read_spans(page.read_text()) == {"pipeline": figs["pipeline"]}
    capsys.readouterr()
    # the same JSON again: nothing changes, the page carries no "generated at" stamp
    assert results.main(["--root", str(root), "--domains", "healthcare"]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert (root / "docs" / "results.md").read_text() == page_text


def test_an_unknown_marker_is_refused(root: Path) -> None:
    (root / "README.md").write_text("<!-- results:nonsense -->1<!-- /results -->\n")
    with pytest.raises(UserError, match="nonsense.*known: .*healthcare"):
        results.main(["--root", str(root), "--domains", "healthcare"])
    assert (root / "README.md").read_text() == "<!-- results:nonsense -->1<!-- /results -->\n"


def test_a_marker_never_swallows_the_next_one() -> None:
    text = "see <!-- results:KEY --> markers; <!-- results:a -->1<!-- /results --> <!-- results:b -->2<!-- /results -->"
    assert results.read_spans(text) == {"a": "1", "b": "2"}


def test_a_broken_json_file_names_itself_and_its_command(root: Path) -> None:
    (root / "out/bench/pipeline.json").write_text("{not json")
    with pytest.raises(UserError, match=r"pipeline\.json: not JSON.*`make bench`"):
        results.build(root, ["healthcare"])
    _write(root, "out/bench/faults.json", {"rows": "not a list"})
    (root / "out/bench/pipeline.json").unlink()
    with pytest.raises(UserError, match=r"faults\.json: not in the shape `make bench-faults` writes"):
        results.build(root, ["healthcare"])


def test_the_firmware_table_is_the_reports_own(root: Path) -> None:
    row = {"model": "m", "macs": 10, "flash_bytes": 100, "ram_bytes": 50, "insns_per_inference": 400,
           "insns_per_mac": 40.0, "tflm_arena_bytes": 200, "ram_vs_tflm_arena": 0.25,
           "parity": {a: {"host_mismatches": 0, "qemu_mismatches": 0, "values": 30} for a in ("litert", "tflm")}}
    _write(root, "out/firmware/report.json", {"models": [row], "parity_inputs": 3,
                                              "goals": {"parity_litert_bit_exact": ["m"],
                                                        "parity_tflm_bit_exact": ["m"]}})
    text = results.build(root, ["healthcare"])
    assert "| `m` | 10 | 100 | 50 | 400 |" in text
    assert results.read_spans(text)["firmware"] == (
        "1 of 1 models bit-exact on the host and the Cortex-M4 with LiteRT's reference kernels "
        "(`--arithmetic litert`, the default) and with TFLite Micro (`--arithmetic tflm`), 3 random inputs each "
        "(LiteRT's default interpreter, XNNPACK, differs from both on rounding ties)")
