"""``tinylarge compile``: labels from labels.json beside the model (both forms ``tinylarge train`` writes),
``--labels`` over the file, a label file that does not fit is one line naming it; table or ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import UserError
from shared.tiny.compiler import main_compile


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    from tests.firmware import _models

    d = tmp_path_factory.mktemp("compile-cli")
    (d / "tiny.tflite").write_bytes(_models.build_all(["dense_mlp"])["dense_mlp"])
    return d


def _compile(model_dir: Path, out: Path, capsys, *extra: str) -> dict:
    assert main_compile([str(model_dir / "tiny.tflite"), "--name", "m", "--out", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_labels_come_from_labels_json_beside_the_model(model_dir, tmp_path, capsys):
    (model_dir / "labels.json").unlink(missing_ok=True)
    bare = _compile(model_dir, tmp_path / "a", capsys)
    assert bare["labels"] is None and bare["labels_from"] is None
    names = [f"class_{i}" for i in range(bare["output_size"])]

    (model_dir / "labels.json").write_text(json.dumps(names))  # healthcare's form: a list
    listed = _compile(model_dir, tmp_path / "b", capsys)
    assert listed["labels"] == names and listed["labels_from"] == str(model_dir / "labels.json")
    assert f'"{names[-1]}"' in (tmp_path / "b" / "m_metadata.h").read_text()

    (model_dir / "labels.json").write_text(json.dumps({"labels": names[::-1], "model_id": "x@1"}))  # vehicles'
    assert _compile(model_dir, tmp_path / "c", capsys)["labels"] == names[::-1]

    given = [f"g{i}" for i in range(bare["output_size"])]
    flagged = _compile(model_dir, tmp_path / "d", capsys, "--labels", ",".join(given))
    assert flagged["labels"] == given and flagged["labels_from"] == "--labels"


@pytest.mark.parametrize("content, needle", [("{not json", "not a JSON label file"),
                                             ('{"classes": ["a"]}', "expected a list of label strings"),
                                             ('["only-one"]', "labels given for an output of")])
def test_a_label_file_that_does_not_fit_is_named(model_dir, tmp_path, content, needle):
    (model_dir / "labels.json").write_text(content)
    try:
        with pytest.raises(UserError, match=needle) as exc:
            main_compile([str(model_dir / "tiny.tflite"), "--name", "m", "--out", str(tmp_path)])
        assert "labels.json" in str(exc.value)
    finally:
        (model_dir / "labels.json").unlink()


def test_the_default_output_is_the_summary_table(model_dir, tmp_path, capsys):
    assert main_compile([str(model_dir / "tiny.tflite"), "--name", "m", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "compiled tiny.tflite" in out and "arena_bytes" in out and not out.lstrip().startswith("{")
