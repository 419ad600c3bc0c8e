"""shared.security.pki: a CA, server and client certificates that verify, with the right names, usages and modes."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.security.pki import PkiError, create_ca, issue, pki_main


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    create_ca(d)
    return d


def test_ca_is_self_signed_ca_with_private_key_0600(pki: Path) -> None:
    ca = _cert(pki / "ca.crt")
    assert _cn(ca) == "TinyLarge CA"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca.verify_directly_issued_by(ca)
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    key = load_pem_private_key((pki / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_server_cert_names_the_hosts_clients_dial(pki: Path) -> None:
    files = issue(pki, "broker", kind="server")
    cert = _cert(files.cert)
    cert.verify_directly_issued_by(_cert(pki / "ca.crt"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH not in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    # the key file holds the private half of the certificate's public key
    key = load_pem_private_key(files.key.read_bytes(), None)
    assert key.public_key() == cert.public_key()


def test_client_cert_carries_the_device_id_as_cn(pki: Path) -> None:
    files = issue(pki, "ward3-bed07", kind="client", key_type="rsa")
    cert = _cert(files.cert)
    assert _cn(cert) == "ward3-bed07"
    cert.verify_directly_issued_by(_cert(pki / "ca.crt"))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert isinstance(load_pem_private_key(files.key.read_bytes(), None), rsa.RSAPrivateKey)


def test_custom_hosts_mix_ips_and_names(pki: Path) -> None:
    cert = _cert(issue(pki, "edge", hosts=["10.0.0.5", "::1", "mqtt.example.org"]).cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(map(str, san.get_values_for_type(x509.IPAddress))) == {"10.0.0.5", "::1"}
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.example.org"]


def test_a_foreign_ca_does_not_verify(pki: Path, tmp_path: Path) -> None:
    create_ca(tmp_path)  # same CN as the deployment's CA, different key: only the signature tells them apart
    with pytest.raises(InvalidSignature):
        _cert(issue(pki, "dev9", kind="client").cert).verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("../evil", {}, "invalid certificate name"),
        ("ca", {}, "invalid certificate name"),
        ("dev1", {"kind": "router"}, "kind must be"),
        ("dev1", {"hosts": ["bad host!"]}, "neither an IP address nor a DNS name"),
        ("dev1", {"hosts": []}, "at least one host"),
        ("dev1", {"days": 0}, "days"),
    ],
)
def test_bad_requests_name_what_is_wrong(pki: Path, name: str, kwargs: dict, needle: str) -> None:
    with pytest.raises(PkiError, match=needle):
        issue(pki, name, **kwargs)


def test_existing_ca_is_kept_and_missing_ca_is_explained(pki: Path, tmp_path: Path) -> None:
    before = (pki / "ca.crt").read_bytes()
    with pytest.raises(PkiError, match="already exists"):
        create_ca(pki)
    assert (pki / "ca.crt").read_bytes() == before
    with pytest.raises(PkiError, match="pki init"):
        issue(tmp_path / "empty", "dev1")


def test_cli_init_issue_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "pki"
    assert pki_main(["init", "--dir", str(d), "--cn", "Ward CA"]) == 0
    assert pki_main(["issue", "broker", "--dir", str(d), "--host", "192.168.1.2"]) == 0
    assert pki_main(["issue", "dev1", "--kind", "client", "--dir", str(d)]) == 0
    assert _cn(_cert(d / "ca.crt")) == "Ward CA"
    san = _cert(d / "broker.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(map(str, san.get_values_for_type(x509.IPAddress))) == ["192.168.1.2"]
    from shared import cli  # a mistake: one line on stderr, exit 2

    assert cli.main(["pki", "init", "--dir", str(d)]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        pki_main(["--help"])
    assert exc.value.code == 0
    assert "init" in capsys.readouterr().out
