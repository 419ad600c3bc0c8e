"""shared.security.model_update: what a device accepts, what it refuses (and why), and that the old model stays."""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.protocol.messages import decode, encode
from shared.security.model_update import (
    ModelSlot,
    ModelUpdateError,
    canonical_bytes,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_update,
)

HEADER = b"\x1c\x00\x00\x00TFL3"  # the first 8 bytes of every .tflite: root offset, then the file identifier
DOMAIN, DEVICE = "healthcare", "ward3-bed07"
#: unsigned by design: the version rule, not the signature, stops a replay
UNSIGNED = {"seq", "ts"}


@functools.cache
def _real(domain: str = "healthcare") -> bytes:
    """A real int8 TFLite model of ``domain`` (the trained one, else a stand-in built once)."""
    from shared.tiny.targets import domain_tflite

    return domain_tflite(domain, Path(tempfile.gettempdir()) / "tinylarge-test-standins").read_bytes()


def _model(n: int = 256, salt: bytes = b"") -> bytes:
    """A model that loads (a real one; bytes after the flatbuffer make each salt's hash differ)."""
    return _real() + hashlib.sha256(salt).digest() * (n // 32) + salt


def _garbage(salt: bytes = b"") -> bytes:
    """Signed-able bytes with the TFLite identifier that LiteRT cannot load."""
    return HEADER + hashlib.sha256(salt).digest() * 8 + salt


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def signed(keys) -> dict:
    return sign_update(DOMAIN, DEVICE, "hc-tiny", 3, _model(salt=b"v3"), keys[0], seq=5, ts_ms=1_700_000_000_000)


def _slot(keys, **kw) -> ModelSlot:
    factory = kw.pop("active", _model(salt=b"factory"))
    return ModelSlot(DOMAIN, DEVICE, keys[1], active=factory, active_version=kw.pop("active_version", 1),
                     active_model_id="hc-tiny", **kw)


def _refused(slot: ModelSlot, msg, needle: str) -> None:
    before = (slot.active_bytes, slot.active_version, slot.active_model_id)
    accepted, reason = slot.offer(msg)
    assert not accepted and needle in reason, reason
    assert (slot.active_bytes, slot.active_version, slot.active_model_id) == before


def test_keypair_files(keys) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_private_key(private).public_key() == load_public_key(public)
    with pytest.raises(ModelUpdateError, match="already exists"):
        generate_keypair(private.parent)


def test_message_is_schema_valid_and_binds_the_canonical_form(signed: dict, keys) -> None:
    wire = encode(DOMAIN, "model", signed)
    assert decode(DOMAIN, "model", wire) == signed
    assert signed["model"] == "hc-tiny@3" and signed["version"] == 3
    assert signed["key_id"] == key_id(load_public_key(keys[1]))
    expected = (
        "tinylarge-model-update-v1\ndomain=healthcare\ndevice=ward3-bed07\nmodel=hc-tiny\nversion=3\n"
        f"size={signed['size']}\nsha256={signed['sha256']}\nkey_id={signed['key_id']}\n"
    ).encode()
    assert canonical_bytes(DOMAIN, DEVICE, "hc-tiny", 3, signed["size"], signed["sha256"], signed["key_id"]) == expected
    load_public_key(keys[1]).verify(base64.b64decode(signed["sig_b64"]), expected)  # raises if not


def test_valid_update_is_installed_and_reported(signed: dict, keys) -> None:
    slot = _slot(keys)
    accepted, reason = slot.offer(encode(DOMAIN, "model", signed))
    assert accepted, reason
    assert slot.active_version == 3 and slot.active_model_id == "hc-tiny" and slot.active_model == "hc-tiny@3"
    assert slot.active_bytes == base64.b64decode(signed["tflite_b64"])
    _refused(slot, signed, "stale version 3 <= active 3")  # the same message again is a replay


def _with(msg: dict, **changes) -> dict:
    out = copy.deepcopy(msg)
    out.update(changes)
    return out


def test_tampered_model_bytes(signed: dict, keys) -> None:
    data = bytearray(base64.b64decode(signed["tflite_b64"]))
    data[40] ^= 0x01
    _refused(_slot(keys), _with(signed, tflite_b64=base64.b64encode(data).decode()), "sha256 mismatch")


def test_tampered_signature(signed: dict, keys) -> None:
    sig = bytearray(base64.b64decode(signed["sig_b64"]))
    sig[0] ^= 0x80
    _refused(_slot(keys), _with(signed, sig_b64=base64.b64encode(sig).decode()), "bad signature")


def test_tampered_signed_fields(signed: dict, keys) -> None:
    slot = _slot(keys)
    _refused(slot, _with(signed, version=4, model="hc-tiny@4"), "bad signature")
    _refused(slot, _with(signed, model="hc-other@3"), "bad signature")
    _refused(slot, _with(signed, model="hc-tiny@9"), "does not name version 3")
    data = _model(salt=b"evil")
    forged = _with(signed, tflite_b64=base64.b64encode(data).decode(), sha256=hashlib.sha256(data).hexdigest(),
                   size=len(data))
    _refused(slot, forged, "bad signature")


def test_wrong_key(keys, tmp_path: Path) -> None:
    attacker = Ed25519PrivateKey.generate()
    msg = sign_update(DOMAIN, DEVICE, "hc-tiny", 5, _model(salt=b"x"), attacker, 1, 1)
    _refused(_slot(keys), msg, "unknown signing key")
    # claiming the trusted key's id does not help: the signature does not verify under it
    msg["key_id"] = key_id(load_public_key(keys[1]))
    _refused(_slot(keys), msg, "bad signature")


def test_wrong_device_and_domain(keys) -> None:
    other = sign_update(DOMAIN, "ward3-bed08", "hc-tiny", 5, _model(salt=b"d"), keys[0], 1, 1)
    _refused(_slot(keys), other, "wrong device")
    vehicle = sign_update("vehicles", DEVICE, "hc-tiny", 5, _model(salt=b"d"), keys[0], 1, 1)
    _refused(_slot(keys), vehicle, "wrong domain")
    # the domain field rewritten to match: the signature bound the original domain
    _refused(_slot(keys), _with(vehicle, domain=DOMAIN), "bad signature")


@pytest.mark.parametrize("active_version", [3, 4])
def test_older_or_equal_version_is_refused(signed: dict, keys, active_version: int) -> None:
    _refused(_slot(keys, active_version=active_version), signed, f"stale version 3 <= active {active_version}")


def test_truncated_base64(signed: dict, keys) -> None:
    b64 = signed["tflite_b64"]
    _refused(_slot(keys), _with(signed, tflite_b64=b64[:-1]), "not valid base64")
    _refused(_slot(keys), _with(signed, tflite_b64=b64[:-8]), "size mismatch")
    _refused(_slot(keys), _with(signed, tflite_b64=b64[:10]), "schema")


def test_schema_and_transport_garbage(signed: dict, keys) -> None:
    slot = _slot(keys)
    _refused(slot, {k: v for k, v in signed.items() if k != "sig_b64"}, "schema")
    _refused(slot, _with(signed, extra=1), "schema")
    _refused(slot, b"", "bad JSON")
    _refused(slot, encode(DOMAIN, "model", signed)[:-20], "bad JSON")


def test_signed_but_not_tflite(keys) -> None:
    msg = sign_update(DOMAIN, DEVICE, "hc-tiny", 5, b"\x00" * 64, keys[0], 1, 1)
    _refused(_slot(keys), msg, "not a TFLite flatbuffer")
    assert _slot(keys, require_tflite=False).offer(msg)[0]


def test_key_rotation(keys, tmp_path: Path) -> None:
    new_private, new_public = generate_keypair(tmp_path)
    during = ModelSlot(DOMAIN, DEVICE, [keys[1], new_public])
    assert during.offer(sign_update(DOMAIN, DEVICE, "hc-tiny", 1, _model(salt=b"a"), keys[0], 1, 1))[0]
    assert during.offer(sign_update(DOMAIN, DEVICE, "hc-tiny", 2, _model(salt=b"b"), new_private, 2, 2))[0]
    after = ModelSlot(DOMAIN, DEVICE, new_public)
    _refused(after, sign_update(DOMAIN, DEVICE, "hc-tiny", 9, _model(salt=b"c"), keys[0], 1, 1), "unknown")


def test_atomic_swap_and_state_survives_reboot(signed: dict, keys, tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    slot = ModelSlot(DOMAIN, DEVICE, keys[1], path=path)
    assert slot.active_version == 0 and slot.active_bytes is None
    assert slot.offer(signed)[0]
    assert path.read_bytes() == slot.active_bytes
    assert json.loads(slot.meta_path.read_text())["version"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite", "model.tflite.json"]  # no temp left
    rebooted = ModelSlot(DOMAIN, DEVICE, keys[1], path=path)
    assert rebooted.active_model == "hc-tiny@3" and rebooted.warning is None
    _refused(rebooted, signed, "stale version")  # the retained message, re-delivered after the reboot
    # a model file that no longer matches its recorded hash is not trusted
    path.write_bytes(b"corrupt")
    damaged = ModelSlot(DOMAIN, DEVICE, keys[1], path=path)
    assert damaged.active_version == 0 and "sha256" in (damaged.warning or "")


def test_failed_write_keeps_old_model(signed: dict, keys, tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "model.tflite"
    slot = _slot(keys, path=path)
    _refused(slot, signed, "storage error")


def test_sign_update_refuses_bad_input(keys) -> None:
    with pytest.raises(ModelUpdateError, match="model id"):
        sign_update(DOMAIN, DEVICE, "hc@tiny", 1, _model(), keys[0], 1, 1)
    with pytest.raises(ModelUpdateError, match="non-empty"):
        sign_update(DOMAIN, DEVICE, "hc-tiny", 1, b"", keys[0], 1, 1)
    with pytest.raises(ModelUpdateError, match="version"):
        sign_update(DOMAIN, DEVICE, "hc-tiny", 0, _model(), keys[0], 1, 1)


@pytest.fixture
def plugin_domain(monkeypatch: pytest.MonkeyPatch) -> str:
    """A domain registered the way a plug-in distribution's entry point registers one, under a name no list
    in TinyLarge could know (the registry is patched; the protocol's schema caches are warmed first)."""
    import dataclasses

    from shared import domain as domains
    from shared.protocol import messages

    messages._schema_files()  # noqa: SLF001 - built from the real registry, as at any other time
    real = domains.registry()
    fake = dataclasses.replace(real["healthcare"], name="orchard_drone2", title="a plug-in domain")
    monkeypatch.setattr(domains, "registry", lambda: {**real, fake.name: fake})
    return fake.name


def test_any_registered_domain_signs_and_verifies(keys, plugin_domain: str) -> None:
    tflite = _model(salt=b"plug-in")
    msg = sign_update(plugin_domain, "drone-7", "od-tiny", 2, tflite, keys[0], seq=1, ts_ms=1_700_000_000_000)
    assert msg["domain"] == plugin_domain
    slot = ModelSlot(plugin_domain, "drone-7", keys[1], active=_model(salt=b"factory"), active_version=1,
                     active_model_id="od-tiny")
    assert slot.offer(encode(plugin_domain, "model", msg)) == (True, f"installed od-tiny@2 ({len(tflite)} bytes, "
                                                                    f"key {msg['key_id']})")
    assert slot.active_bytes == tflite
    # a healthcare device refuses it: the domain is bound by the signature and checked by the slot
    _refused(_slot(keys), msg, "wrong domain")


def test_unregistered_domain_is_refused_by_name(keys) -> None:
    with pytest.raises(ModelUpdateError, match="unknown domain 'orchard_drone2'"):
        sign_update("orchard_drone2", DEVICE, "od-tiny", 1, _model(), keys[0], 1, 1)
    # a device of a domain this installation does not have accepts nothing, and says why
    accepted, reason = ModelSlot("orchard_drone2", DEVICE, keys[1]).offer(b"{}")
    assert not accepted and "unknown domain 'orchard_drone2'" in reason, reason
    with pytest.raises(ModelUpdateError, match="invalid domain 'Orchard'"):
        canonical_bytes("Orchard", DEVICE, "od-tiny", 1, 16, "0" * 64, "0" * 16)


# --- property tests: no mutation of a signed message is ever installed -----------------------------

_json_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=120),
    st.binary(min_size=16, max_size=64).map(lambda b: base64.b64encode(b).decode()),
)


def _semantically_equal(a: dict, b: dict) -> bool:
    keep = set(a) | set(b)
    return all(a.get(k, KeyError) == b.get(k, KeyError) for k in keep - UNSIGNED)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["device", "model", "domain", "version", "sha256", "size", "tflite_b64", "key_id",
                              "sig_b64", "v"]), value=_json_values)
def test_field_mutation_never_accepted(signed: dict, keys, field: str, value) -> None:
    assume(value != signed[field])
    slot = _slot(keys, active_version=0)
    _refused(slot, _with(signed, **{field: value}), "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_mutation_never_accepted(signed: dict, keys, data: st.DataObject) -> None:
    wire = bytearray(encode(DOMAIN, "model", signed))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255).filter(lambda b, old=wire[i]: b != old))
    try:
        parsed = json.loads(bytes(wire))
    except ValueError:
        parsed = None
    # changing only the unsigned seq/ts (or nothing at all, e.g. an escaped character) is not tampering
    assume(not (isinstance(parsed, dict) and _semantically_equal(parsed, signed)))
    _refused(_slot(keys, active_version=0), bytes(wire), "")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(1, 200))
def test_truncation_never_accepted(signed: dict, keys, cut: int) -> None:
    wire = encode(DOMAIN, "model", signed)
    _refused(_slot(keys, active_version=0), wire[: max(0, len(wire) - cut)], "")


def test_random_model_roundtrip_sizes(keys) -> None:
    for n in (16, 1000, 100_000):
        model = _real() + os.urandom(n)
        slot = ModelSlot(DOMAIN, DEVICE, keys[1])
        msg = sign_update(DOMAIN, DEVICE, "hc-tiny", 1, model, keys[0], 1, 1)
        assert slot.offer(encode(DOMAIN, "model", msg))[0] and slot.active_bytes == model


# ---- issue 13 item 8: a signed but unusable model is never installed; the slot survives a restart ----

def _refuse_load(data: bytes) -> object:
    raise ValueError(f"input shape (3,) is not (8,) ({len(data)} bytes)")


def test_signed_model_that_does_not_load_is_not_installed_or_persisted(keys, tmp_path):
    slot = _slot(keys, path=tmp_path / "model.tflite", load=_refuse_load)
    msg = sign_update(DOMAIN, DEVICE, "hc-tiny", 2, _model(salt=b"bad-shape"), keys[0], seq=1, ts_ms=1)
    _refused(slot, msg, "model does not load: input shape")
    assert not (tmp_path / "model.tflite").exists() and slot.loaded is None
    ok, _ = slot.offer(msg, load=lambda data: ("runner", len(data)))  # a loader that succeeds: installed
    assert ok and slot.loaded == ("runner", len(_model(salt=b"bad-shape"))) and slot.active_version == 2


def test_restarted_slot_refuses_an_old_signed_version(keys, tmp_path):
    path = tmp_path / "model.tflite"
    first = _slot(keys, path=path)
    assert first.offer(sign_update(DOMAIN, DEVICE, "hc-tiny", 5, _model(salt=b"v5"), keys[0], seq=1, ts_ms=1))[0]
    again = _slot(keys, path=path)  # the device restarted with its factory model (version 1) as default
    assert again.active_version == 5 and again.active_bytes == _model(salt=b"v5")
    _refused(again, sign_update(DOMAIN, DEVICE, "hc-tiny", 3, _model(salt=b"v3"), keys[0], seq=2, ts_ms=2),
             "stale version 3 <= active 5")


def test_simulated_fleet_slots_persist_under_the_key_dir(keys):
    from shared.runtime.fleet import slot_path

    p = slot_path(None, keys[1], DOMAIN, DEVICE)
    kid = key_id(load_public_key(keys[1]))
    assert p == keys[1].resolve().parent / "device-slots" / kid / DOMAIN / DEVICE / "model.tflite"
    assert p.parent.is_dir()


def test_gateway_ignores_the_devices_claimed_version_and_checks_the_model(keys, tmp_path):
    from shared.tiny.firmware import domain_tflite
    from shared.tiny.gateway import ModelAgent

    tflite = domain_tflite("healthcare", tmp_path / "m").read_bytes()
    agent = ModelAgent(DOMAIN, [keys[1]], tmp_path / "slots", lambda *a: True)
    huge = "9" * 32
    agent.see({"v": 1, "device": DEVICE, "seq": 0, "ts": 1, "model": f"hc-tiny@{huge}"})
    assert agent.slots[DEVICE].active_version == 0

    def offer(version: int, data: bytes) -> str:
        agent.on_model(f"tinylarge/{DOMAIN}/{DEVICE}/model",
                       json.dumps(sign_update(DOMAIN, DEVICE, "hc-tiny", version, data, keys[0], seq=version,
                                              ts_ms=1)).encode())
        return agent.last_reason[DEVICE]

    assert offer(2, _garbage(salt=b"garbage")).startswith("model does not load")  # signed, TFL3, garbage
    assert agent.slots[DEVICE].active_version == 0
    assert offer(3, tflite).startswith("installed")  # not blocked by the device's 32-digit claim
    other = Path(__file__).resolve().parents[3] / "models" / "industrial_iot" / "tiny.tflite"
    if other.exists():  # a valid model with another input/output: refused, v3 stays
        assert "differ from the active model" in offer(4, other.read_bytes())
        assert agent.slots[DEVICE].active_version == 3


def test_wearable_refuses_a_signed_model_that_does_not_load_and_reports_it(keys, tmp_path):
    from healthcare.device import reload, window_message
    from healthcare.signals import CohortConfig, simulate_cohort
    from healthcare.tiny import TinyModel
    from shared.runtime.fleet import DeviceFleet, SimDevice
    from shared.tiny.firmware import domain_tflite

    good = domain_tflite("healthcare", tmp_path / "m").read_bytes()
    patient = simulate_cohort(CohortConfig(n_patients=1, duration_h=0.1, seed=3))[0]
    sent: list[tuple[str, str, dict]] = []
    slot = ModelSlot("healthcare", patient.id, keys[1], path=tmp_path / "slot" / "model.tflite", active_version=1,
                     active_model_id="hc-tiny")
    (tmp_path / "slot").mkdir()
    w = SimDevice(patient.id, patient, TinyModel(good, version="1"), 1_700_000_000_000, lambda *m: sent.append(m),
                  slot=slot)
    # the wearables' fleet with healthcare's loader, holding no client of its own: the device is `w`
    wearables = DeviceFleet("healthcare", None, "mqtt://127.0.0.1:1883", [], w.model, {}, window_message,
                            reload=reload)
    garbage = sign_update("healthcare", patient.id, "hc-tiny", 2, _garbage(salt=b"not a model"), keys[0], seq=1,
                          ts_ms=1)
    ok, reason = wearables.offer_update(w, json.dumps(garbage).encode())
    assert not ok and reason.startswith("model does not load"), reason
    assert w.model.version == "1" and slot.active_version == 1 and not (tmp_path / "slot" / "model.tflite").exists()
    status = sent[-1][2]
    assert sent[-1][1] == "status" and status["counts"]["rejected"] == 1 and status["active_model"].endswith("@1")
    ok, _ = wearables.offer_update(w, json.dumps(sign_update("healthcare", patient.id, "hc-tiny", 2, good, keys[0],
                                                             seq=2, ts_ms=2)).encode())
    assert ok and w.model.version == "2" and sent[-1][2]["active_model"].endswith("@2")


# ---- issue 23 item 9: every slot checks that the model loads with the expected shapes, and keeps its floor ----

def test_bare_slot_refuses_a_signed_model_that_does_not_load_and_keeps_the_old_one(keys) -> None:
    """No domain loader given: the slot itself loads the model in LiteRT; signed bytes that start with TFL3 but
    are no model, and a real model of another interface, are refused; the factory model keeps running."""
    slot = _slot(keys)
    _refused(slot, sign_update(DOMAIN, DEVICE, "hc-tiny", 2, _garbage(b"tfl3"), keys[0], 1, 1), "model does not load")
    other = _real("metaverse_eeg")
    assert other[4:8] == b"TFL3"
    _refused(slot, sign_update(DOMAIN, DEVICE, "hc-tiny", 3, other, keys[0], 2, 2), "expected shapes")
    assert slot.active_bytes == _model(salt=b"factory") and slot.active_version == 1
    ok, reason = slot.offer(sign_update(DOMAIN, DEVICE, "hc-tiny", 4, _model(salt=b"v4"), keys[0], 3, 3))
    assert ok, reason


def test_slot_restarted_from_its_state_directory_refuses_a_replay(keys, tmp_path: Path) -> None:
    state = tmp_path / "state"
    v3, v5 = (sign_update(DOMAIN, DEVICE, "hc-tiny", v, _model(salt=b"v%d" % v), keys[0], v, v) for v in (3, 5))
    first = _slot(keys, state_dir=state)
    assert first.offer(v3)[0] and first.offer(v5)[0]
    restarted = _slot(keys, state_dir=state)  # a new process: factory model v1 by default, state on disk
    assert restarted.active_version == 5 and restarted.warning is None
    _refused(restarted, v3, "stale version 3")
    # the model file lost (or damaged): its model is not trusted, but the floor stays: no replay of v5 or v3
    restarted.path.unlink()
    lost = _slot(keys, state_dir=state)
    assert lost.active_version == 1 and "versions up to 5 stay refused" in (lost.warning or "")
    _refused(lost, v5, "stale version 5 <= 5 installed before")
    _refused(lost, v3, "stale version 3")
    assert lost.offer(sign_update(DOMAIN, DEVICE, "hc-tiny", 6, _model(salt=b"v6"), keys[0], 6, 6))[0]
