"""Issue 23 item 10, as a table: each mistake a user can make at the command line, run through the real
``tinylarge`` console script (the installed entry point, in a subprocess), gives exit code 2, exactly one
line on stderr that names the problem, and no traceback; and it is caught before any work starts (no
training, no output folder, no broker session).

Cases that need no server run in the default suite; those that need a real Mosquitto (a wrong password,
a TLS listener without ``--ca``) carry the ``broker`` marker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TIMEOUT_S = 120


def _script() -> str:
    local = Path(sys.executable).parent / "tinylarge"
    found = str(local) if local.exists() else shutil.which("tinylarge")
    if not found:
        pytest.fail("the tinylarge console script is not installed (pip install -e .)")
    return found


def run_tinylarge(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TINYLARGE_MQTT", "TINYLARGE_STORE", "EI_HMAC_KEY")}
    env["TINYLARGE_DEBUG"] = "0"
    return subprocess.run([_script(), *argv], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The single error line; deprecation warnings (a hidden alias was used) are allowed beside it."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is deprecated; use" not in ln]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("tinylarge: "), lines
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pki(root: Path) -> Path:
    from shared.security import pki

    d = root / "pki"
    if not (d / pki.CA_CERT).exists():
        pki.create_ca(d)
        pki.issue(d, "broker", "server")
        pki.issue(d, "dev1", "client")
    return d


def _garbage(root: Path, name: str = "garbage.pem") -> Path:
    path = root / name
    path.write_text("this is not PEM\n")
    return path


def _garbage_pki(root: Path) -> Path:
    d = root / "badpki"
    d.mkdir(exist_ok=True)
    for name in ("ca.crt", "ca.key", "broker.crt", "broker.key"):
        _garbage(d, name)
    return d


def _foreign_broker_cert(root: Path) -> Path:
    """A PKI folder whose broker certificate another CA signed."""
    from shared.security import pki

    other, d = root / "other", root / "mixed"
    pki.create_ca(other)
    pki.issue(other, "broker", "server")
    pki.create_ca(d)
    for suffix in (".crt", ".key"):
        shutil.copy(other / f"broker{suffix}", d / f"broker{suffix}")
    return d


def _signing_key_without_pub(root: Path) -> Path:
    from shared.security.model_update import PRIVATE_NAME, PUBLIC_NAME, generate_keypair

    generate_keypair(root / "keys")
    (root / "keys" / PUBLIC_NAME).unlink()
    return root / "keys" / PRIVATE_NAME


def _model_with_bad_labels(root: Path) -> Path:
    d = root / "m"
    d.mkdir()
    (d / "tiny.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    (d / "labels.json").write_text("{not json")
    return d / "tiny.tflite"


#: (id, argv builder given tmp_path, words the one line must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    # the domain and its capabilities
    # (every registered domain now offers a tiny_task; metaverse_eeg has no teacher per window)
    ("loop-no-distill-task", lambda t: ["loop", "metaverse_eeg"], ("metaverse_eeg", "distill_task")),
    ("ei-export-unknown-domain", lambda t: ["ei", "export", "spaceships"], ("unknown domain 'spaceships'",)),
    ("ei-export-no-domain", lambda t: ["ei", "export"], ("give a DOMAIN",)),
    ("firmware-build-unknown-domain", lambda t: ["firmware", "build", "spaceships"], ("unknown domain",)),
    # numbers
    ("ei-export-patients-0", lambda t: ["ei", "export", "healthcare", "--patients", "0", "--out", str(t / "o")],
     ("--subjects", ">= 1")),
    ("ei-export-hours-negative", lambda t: ["ei", "export", "healthcare", "--hours", "-1", "--out", str(t / "o")],
     ("--hours", "> 0")),
    ("fl-clients-0", lambda t: ["fl", "healthcare", "--clients", "0", "--out", str(t / "o")], ("--clients",)),
    ("fl-timeout-0", lambda t: ["fl", "healthcare", "--timeout-s", "0", "--out", str(t / "o")], ("--timeout-s",)),
    ("fl-kill-client", lambda t: ["fl", "healthcare", "--kill-client", "9", "--out", str(t / "o")],
     ("--kill-client", "ID@ROUND")),
    ("split-batch-0", lambda t: ["split", "healthcare", "--batch-size", "0"], ("--batch-size",)),
    ("split-old-batch-0", lambda t: ["split", "healthcare", "--batch", "0"], ("--batch-size",)),
    ("loop-devices-0", lambda t: ["loop", "healthcare", "--devices", "0", "--out", str(t / "o")], ("--devices",)),
    # URLs and brokers: checked before the training that precedes their use
    ("fl-mqtt-url", lambda t: ["fl", "healthcare", "--mqtt", "mqtt:/x", "--out", str(t / "o")],
     ("--mqtt", "'//' missing")),
    ("fl-mqtt-refused", lambda t: ["fl", "healthcare", "--mqtt", f"mqtt://127.0.0.1:{_free_port()}", "--out",
                                   str(t / "o")], ("unreachable", "start the broker")),
    ("split-mqtt-url", lambda t: ["split", "healthcare", "--mqtt", "mqtt:/x"], ("--mqtt", "'//' missing")),
    ("split-mqtt-refused", lambda t: ["split", "healthcare", "--mqtt", f"mqtt://127.0.0.1:{_free_port()}"],
     ("unreachable",)),
    ("loop-mqtt-refused", lambda t: ["loop", "healthcare", "--mqtt", f"mqtt://127.0.0.1:{_free_port()}", "--out",
                                     str(t / "o")], ("unreachable",)),
    # key and certificate files
    ("fl-signing-key-missing", lambda t: ["fl", "healthcare", "--signing-key", str(t / "none.key"), "--out",
                                          str(t / "o")], ("--signing-key", "no such file")),
    ("fl-signing-key-garbage", lambda t: ["fl", "healthcare", "--signing-key", str(_garbage(t)), "--out",
                                          str(t / "o")], ("--signing-key", "Ed25519")),
    ("fl-signing-key-no-pub", lambda t: ["fl", "healthcare", "--signing-key", str(_signing_key_without_pub(t)),
                                         "--out", str(t / "o")], ("model_signing.pub",)),
    ("serve-ca-not-a-certificate", lambda t: ["serve", "healthcare", "--mqtt", "mqtts://127.0.0.1:8883", "--ca",
                                              str(_garbage(t)), "--models", str(t / "m")], ("--ca", "no PEM")),
    ("serve-cert-key-mismatch", lambda t: ["serve", "healthcare", "--mqtt", "mqtts://127.0.0.1:8883", "--ca",
                                           str(_pki(t) / "ca.crt"), "--cert", str(_pki(t) / "dev1.crt"), "--key",
                                           str(_pki(t) / "broker.key"), "--models", str(t / "m")],
     ("--cert/--key",)),
    ("loop-ca-not-a-certificate", lambda t: ["loop", "healthcare", "--mqtt", "mqtts://127.0.0.1:8883", "--ca",
                                             str(_garbage(t)), "--out", str(t / "o")], ("--ca",)),
    ("broker-config-garbage-ca", lambda t: ["broker", "config", "--pki", str(_garbage_pki(t)), "--out",
                                            str(t / "o"), "--device", "healthcare:d1"],
     ("ca.crt", "not a PEM certificate")),
    ("broker-config-foreign-cert", lambda t: ["broker", "config", "--pki", str(_foreign_broker_cert(t)), "--out",
                                              str(t / "o"), "--device", "healthcare:d1"], ("not signed by",)),
    ("pki-issue-garbage-ca", lambda t: ["pki", "issue", "dev1", "--dir", str(_garbage_pki(t))],
     ("does not load", "pki init")),
    ("pki-init-existing", lambda t: ["pki", "init", "--dir", str(_pki(t))], ("already exists",)),
    # stores, models, files
    ("serve-store-not-a-database", lambda t: ["serve", "healthcare", "--store", f"sqlite:///{_garbage(t, 'x.db')}",
                                              "--models", str(t / "m")], ("--store", "not a SQLite database")),
    ("serve-models-missing", lambda t: ["serve", "healthcare", "--models", str(t / "none")],
     ("tinylarge train healthcare",)),
    ("device-models-empty", lambda t: ["device", "healthcare", "--mqtt", "mqtt://127.0.0.1:1883", "--models",
                                       str(t)], ("tinylarge train healthcare",)),
    ("compile-missing-model", lambda t: ["compile", str(t / "none.tflite"), "--name", "x", "--out", str(t / "o")],
     ("not found",)),
    ("compile-not-a-model", lambda t: ["compile", str(_garbage(t)), "--name", "x", "--out", str(t / "o")],
     ("not a TFLite model",)),
    ("compile-bad-labels-json", lambda t: ["compile", str(_model_with_bad_labels(t)), "--name", "x", "--out",
                                           str(t / "o")], ("labels.json",)),
    ("firmware-run-missing-image", lambda t: ["firmware", "run", str(t / "none.elf"), "--input", str(t / "x")],
     ("no such file",)),
    ("gateway-missing-serial-port", lambda t: ["firmware", "gateway", "--domain", "healthcare", "--serial",
                                               "/dev/ttyTINYLARGE-NONE", "--mqtt", "mqtt://127.0.0.1:1"],
     ("serial port", "/dev/ttyTINYLARGE-NONE")),
]


@pytest.mark.parametrize("build, words", [pytest.param(b, w, id=i) for i, b, w in CASES])
def test_a_mistake_is_one_line_and_exit_2_before_any_work(build, words, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    line = one_line(run_tinylarge(*build(work)))
    for word in words:
        assert word in line, line
    assert not (work / "o").exists(), "work started before the mistake was caught"
    assert not (work / "none").exists(), "training started before the mistake was caught"


def test_the_old_spellings_still_work_and_say_what_to_use(tmp_path):
    proc = run_tinylarge("ei", "export", "--domain", "healthcare", "--patients", "1", "--hours", "0.02", "--out",
                         str(tmp_path / "ei"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--domain is deprecated; use the positional DOMAIN" in proc.stderr
    assert "--patients is deprecated; use --subjects" in proc.stderr
    assert list((tmp_path / "ei").glob("*.json"))


@pytest.mark.broker
def test_a_wrong_password_is_one_line_naming_the_fix(mosquitto_factory, tmp_path):
    passwd = tmp_path / "passwd"
    mosquitto_passwd = shutil.which("mosquitto_passwd") or pytest.skip("mosquitto_passwd not installed")
    subprocess.run([mosquitto_passwd, "-b", "-c", str(passwd), "alice", "right"], check=True, capture_output=True)
    passwd.chmod(0o644)
    server = mosquitto_factory(persistence=False, conf_extra=f"allow_anonymous false\npassword_file {passwd}")
    line = one_line(run_tinylarge("loop", "healthcare", "--mqtt", f"mqtt://alice:wrong@127.0.0.1:{server.port}",
                                  "--out", str(tmp_path / "o")))
    assert "Not authorized" in line and "password" in line and "wrong" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.broker
def test_mqtts_without_ca_says_to_give_ca(mosquitto_factory, tmp_path):
    d = _pki(tmp_path)
    tls_port = _free_port()
    server = mosquitto_factory(persistence=False, conf_extra=(
        f"listener {tls_port} 127.0.0.1\ncafile {d / 'ca.crt'}\ncertfile {d / 'broker.crt'}\n"
        f"keyfile {d / 'broker.key'}\n"))
    assert server.running
    line = one_line(run_tinylarge("fl", "healthcare", "--mqtt", f"mqtts://127.0.0.1:{tls_port}", "--out",
                                  str(tmp_path / "o")))
    assert "--ca" in line and "not trusted" in line
    assert not (tmp_path / "o").exists()
