"""shared.security.brokerconf: the files written, their modes, the password hashes and the ACL rules."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from shared.security.brokerconf import (
    BrokerConfig,
    BrokerConfigError,
    broker_config_main,
    check_password,
    password_env,
    password_hash,
    read_secrets,
    write_broker_config,
)
from shared.security.pki import create_ca, issue
from tests._tools import require_tool


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    create_ca(d)
    issue(d, "broker")
    return d


def _cfg(pki: Path, out: Path, **kw) -> BrokerConfig:
    return BrokerConfig(pki_dir=pki, out_dir=out, devices=("healthcare:dev1", "dev-2"), device_domain="vehicles", **kw)


def _conf(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if line and line[0] != "#"]


def test_files_and_modes(pki: Path, tmp_path: Path) -> None:
    files = write_broker_config(_cfg(pki, tmp_path), env={})
    for secret in (files.passwd, files.secrets, files.acl):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert files.data_dir.is_dir()
    conf = dict(_conf(files.conf))
    assert conf["allow_anonymous"] == "false"
    assert conf["persistence"] == "true" and conf["persistence_location"] == str(files.data_dir)
    assert conf["listener"] == "8883"
    assert conf["cafile"] == str((pki / "ca.crt").resolve())
    assert conf["tls_version"] == "tlsv1.2" and conf["require_certificate"] == "false"
    assert "use_identity_as_username" not in conf


def test_plain_listener_only_on_request_and_only_on_loopback(pki: Path, tmp_path: Path) -> None:
    plain = write_broker_config(_cfg(pki, tmp_path / "a", port=18883, plain_port=11883), env={})
    listeners = [v for k, v in _conf(plain.conf) if k == "listener"]
    assert listeners == ["18883", "11883 127.0.0.1"]
    tls_only = write_broker_config(_cfg(pki, tmp_path / "b", bind_address="10.1.2.3"), env={})
    assert [v for k, v in _conf(tls_only.conf) if k == "listener"] == ["8883 10.1.2.3"]


def test_passwords_hashed_from_env_or_generated_and_kept_on_rerun(pki: Path, tmp_path: Path) -> None:
    env = {password_env("dev1"): "from-the-environment"}
    files = write_broker_config(_cfg(pki, tmp_path), env=env)
    assert files.passwords["dev1"] == "from-the-environment"
    assert len(files.passwords["dev-2"]) >= 24 and files.passwords["dev-2"] != files.passwords["cloud"]
    hashes = dict(line.split(":", 1) for line in files.passwd.read_text().splitlines())
    assert set(hashes) == {"dev1", "dev-2", "cloud"}
    for user, password in files.passwords.items():
        assert check_password(password, hashes[user])
        assert password not in files.passwd.read_text()
    assert not check_password("from-the-environment", hashes["dev-2"])
    assert read_secrets(files.secrets)["TINYLARGE_MQTT_PASSWORD_DEV_2"] == files.passwords["dev-2"]
    again = write_broker_config(_cfg(pki, tmp_path), env={})
    assert again.passwords == files.passwords


def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """A hash from the real mosquitto_passwd verifies with our check, i.e. we share the format."""
    tool = require_tool("mosquitto_passwd")
    pw = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(pw), "alice", "s3cret pass"], check=True, capture_output=True)
    hashed = pw.read_text().strip().split(":", 1)[1]
    assert hashed.startswith("$7$")
    assert check_password("s3cret pass", hashed)
    assert not check_password("s3cret pasS", hashed)
    ours = password_hash("s3cret pass", iterations=101, salt=b"0123456789ab")
    assert ours.split("$")[1:4] == ["7", "101", "MDEyMzQ1Njc4OWFi"]


def test_acl_grants(pki: Path, tmp_path: Path) -> None:
    files = write_broker_config(_cfg(pki, tmp_path, app_users=("dash",), ehr_users=("ehr",)), env={})
    rules = _conf(files.acl)
    patterns = [v for k, v in rules if k == "pattern"]
    assert patterns == []  # a pattern applies to every user: operators and apps would publish as devices
    sections: dict[str, list[str]] = {}
    user = None
    for k, v in rules:
        if k == "user":
            user = v
            sections[user] = []
        elif k == "topic":
            sections[user].append(v)
    assert "write tinylarge/+/+/model" in sections["cloud"] or "readwrite tinylarge/+/+/model" in sections["cloud"]
    assert "read tinylarge/+/+/inference" in sections["cloud"]
    assert "write tinylarge/_deadletter/#" in sections["cloud"]
    assert all(rule.startswith("read ") for rule in sections["dash"])
    assert sections["ehr"] == ["write tinylarge/healthcare/+/chart"]
    # a device is bound to its domain: its own upward streams, split learning's smashed, its domain's dead
    # letters; it reads its own model and split answers (issue 23 items 5 and 7)
    assert sections["dev1"] == ["write tinylarge/healthcare/dev1/inference", "write tinylarge/healthcare/dev1/status",
                                "write tinylarge/healthcare/dev1/smashed", "write tinylarge/_deadletter/healthcare",
                                "read tinylarge/healthcare/dev1/model", "read tinylarge/healthcare/dev1/cutgrad",
                                "read tinylarge/healthcare/dev1/splitpred"]
    assert sections["dev-2"][0] == "write tinylarge/vehicles/dev-2/inference"  # --domain for ids without one
    assert not any("+" in rule for rule in sections["dev1"] + sections["dev-2"])
    assert "read tinylarge/+/+/smashed" in sections["cloud"]
    assert {"write tinylarge/+/+/cutgrad", "write tinylarge/+/+/splitpred"} <= set(sections["cloud"])
    assert not any("%c" in p for p in patterns)


def test_split_stream_names_are_the_wires() -> None:
    from shared.integration.split import wire
    from shared.security.brokerconf import SPLIT_DOWN, SPLIT_UP

    assert (SPLIT_UP, SPLIT_DOWN) == ((wire.SMASHED,), (wire.CUTGRAD, wire.SPLITPRED))


def test_site_users_write_only_their_roles_streams(pki: Path, tmp_path: Path) -> None:
    """A site role comes from the registry (metaverse_eeg's world writes ``scene``); an unknown role is refused."""
    from shared.domain import registry

    files = write_broker_config(_cfg(pki, tmp_path, site_users=(("world", "world-1"),)), env={})
    rules = _conf(files.acl)
    start = rules.index(("user", "world-1")) + 1
    end = next((i for i in range(start, len(rules)) if rules[i][0] == "user"), len(rules))
    mine = [v for k, v in rules[start:end] if k == "topic"]
    expected = [f"write tinylarge/{d.name}/+/{s}" for d in registry().values() for s in d.writers("world")]
    assert expected and mine == expected
    with pytest.raises(BrokerConfigError, match="site role 'pilot'"):
        write_broker_config(_cfg(pki, tmp_path / "x", site_users=(("pilot", "p1"),)), env={})


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"devices": ()}, "at least one device"),
        ({"devices": ("dev/1",)}, "invalid user id"),
        ({"devices": ("cloud",)}, "unique"),
        ({"devices": ("healthcare:d1", "vehicles:d1")}, "unique"),  # one identity, one domain
        ({"devices": ("d1",), "device_domain": None}, "--device healthcare:d1"),
        ({"devices": ("nosuch:d1",)}, "unknown domain 'nosuch'"),
        ({"port": 70000}, "port"),
        ({"plain_port": 8883}, "plain_port must differ"),
        ({"identity_as_username": True}, "require_certificate"),
        ({"device_write_streams": ("model",)}, "device_write_streams"),
        ({"server_cert": "nosuch"}, "nosuch.crt"),
    ],
)
def test_bad_config_names_the_option(pki: Path, tmp_path: Path, kw: dict, needle: str) -> None:
    base = {"pki_dir": pki, "out_dir": tmp_path, "devices": ("dev1",), "device_domain": "healthcare"}
    with pytest.raises(BrokerConfigError, match=needle):
        write_broker_config(BrokerConfig(**{**base, **kw}), env={})


def test_cli_never_prints_passwords(pki: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(password_env("cloud"), "cloud-secret-value")
    out = tmp_path / "b"
    code = broker_config_main(["--pki", str(pki), "--out", str(out), "--domain", "healthcare", "--device", "dev1",
                               "--device", "vehicles:car1", "--port", "18883"])
    assert code == 0
    printed = capsys.readouterr()
    secrets = read_secrets(out / "secrets.env")
    assert secrets[password_env("cloud")] == "cloud-secret-value"
    for value in secrets.values():
        assert value not in printed.out and value not in printed.err
    assert "user car1\ntopic write tinylarge/vehicles/car1/inference" in (out / "acl").read_text()
    from shared import cli  # a mistake: one line on stderr, exit 2

    assert cli.main(["broker", "config", "--pki", str(tmp_path / "none"), "--out", str(out), "--device",
                     "healthcare:d"]) == 2
    assert "pki init" in capsys.readouterr().err
    assert cli.main(["broker", "config", "--pki", str(pki), "--out", str(out), "--device", "d"]) == 2
    assert "healthcare:d" in capsys.readouterr().err
