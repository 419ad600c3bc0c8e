"""Edge Impulse data acquisition export (HS256 signing per the spec) and the SDK entry points'
behaviour without an API key (no network in tests)."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pytest

from shared.tiny import edge_impulse as ei
from tests.firmware import _fw


def _doc():
    return ei.export_window({"acc_x": [0.1, 0.2, 0.3], "acc_y": [1.0, 1.0, 0.9], "temp": 36.6},
                            {"acc_x": "g", "acc_y": "g", "temp": "degC"}, 40.0, "TEST_DEVICE", "dev-1",
                            hmac_key="secret", iat=1_700_000_000)


def test_layout_follows_the_spec():
    doc = json.loads(_doc())
    assert doc["protected"] == {"ver": "v1", "alg": "HS256", "iat": 1_700_000_000}
    p = doc["payload"]
    assert p["device_name"] == "dev-1" and p["device_type"] == "TEST_DEVICE" and p["interval_ms"] == 40.0
    assert p["sensors"] == [{"name": "acc_x", "units": "g"}, {"name": "acc_y", "units": "g"},
                            {"name": "temp", "units": "degC"}]
    assert p["values"] == [[0.1, 1.0, 36.6], [0.2, 1.0, 36.6], [0.3, 0.9, 36.6]]  # temp repeated per row


def test_hs256_signature_is_hmac_over_the_zero_filled_document():
    data = _doc()
    doc = json.loads(data)
    zeroed = data.decode().replace(doc["signature"], "0" * 64)
    assert json.loads(zeroed)["signature"] == "0" * 64
    assert doc["signature"] == hmac.new(b"secret", zeroed.encode(), hashlib.sha256).hexdigest()
    assert ei.verify(data, "secret") and not ei.verify(data, "other")
    tampered = data.replace(b"0.3,", b"0.4,")
    assert not ei.verify(tampered, "secret")


def test_unsigned_export_and_bad_input():
    doc = json.loads(ei.export_window({"a": [1, 2]}, {"a": "u"}, 10, "T"))
    assert doc["protected"]["alg"] == "none" and doc["signature"] == "0" * 64 and "device_name" not in doc["payload"]
    with pytest.raises(ValueError, match="units"):
        ei.export_window({"a": [1, 2]}, {}, 10, "T")
    with pytest.raises(ValueError, match="samples"):
        ei.export_window({"a": [1, 2], "b": [1, 2, 3]}, {"a": "u", "b": "u"}, 10, "T")
    with pytest.raises(ValueError, match="NaN"):
        ei.export_window({"a": [1, float("nan")]}, {"a": "u"}, 10, "T")


def test_healthcare_windows_export(tmp_path):
    ws = _fw.windows()[:2]
    paths = ei.export_windows("healthcare", ws, tmp_path, hmac_key="k")
    assert len(paths) == 2 and all(ei.verify(p.read_bytes(), "k") for p in paths)
    doc = json.loads(paths[0].read_bytes())
    assert doc["payload"]["interval_ms"] == pytest.approx(1000 / ws[0].fs_hz)
    vals = np.array(doc["payload"]["values"])
    assert vals.shape == (len(ws[0].ppg_ir), 6)
    np.testing.assert_allclose(vals[:, 1], ws[0].ppg_ir, rtol=1e-6)
    assert paths[0].name.startswith(ws[0].truth.label + ".")


def test_sdk_commands_need_an_api_key(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(ei.API_KEY_ENV, raising=False)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    from shared.errors import UserError

    with pytest.raises(UserError, match=ei.API_KEY_ENV):  # the console script prints it as one line, exit 2
        ei.ei_main(["profile", str(model)])
    with pytest.raises(ei.EdgeImpulseError, match=ei.API_KEY_ENV):
        ei.deploy(model, ["a", "b"], tmp_path / "out")
