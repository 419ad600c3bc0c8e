"""A small certificate authority for one TinyLarge deployment (broker, cloud service, devices).

``tinylarge pki init --dir DIR`` creates ``ca.crt`` and ``ca.key``; ``tinylarge pki issue NAME --kind
server|client --dir DIR`` writes ``NAME.crt`` and ``NAME.key`` signed by that CA. Server certificates
carry the host names and IP addresses clients dial as subjectAltName entries (hostname verification
reads those, never the CN); client certificates carry the device id (or ``cloud``) as CN, so a broker
configured with ``use_identity_as_username`` can map a certificate to an ACL user. Private keys are
EC P-256 by default (RSA 2048 on request) and written with mode 0600.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")
KeyType = Literal["ec", "rsa"]
Kind = Literal["server", "client"]
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


class PkiError(ValueError):
    """A PKI request that cannot be honoured; the message names what is wrong."""


@dataclass(frozen=True)
class CertFiles:
    """Paths of one issued identity (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class PkiConfig:
    """Defaults for certificates this module issues.

    ca_days: validity of the CA certificate (10 years).
    leaf_days: validity of server and client certificates (825 days, the longest many clients accept).
    key_type: ``ec`` (P-256, small and fast on microcontrollers) or ``rsa`` (2048 bit).
    """

    ca_days: int = 3650
    leaf_days: int = 825
    key_type: KeyType = "ec"


DEFAULTS = PkiConfig()


def _new_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise PkiError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (never world-readable, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_days(days: int, what: str) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise PkiError(f"{what} must be an integer number of days in 1..36500, got {days!r}")


def create_ca(
    dir: str | os.PathLike[str],
    cn: str = "TinyLarge CA",
    days: int = DEFAULTS.ca_days,
    key_type: KeyType = DEFAULTS.key_type,
    overwrite: bool = False,
) -> CertFiles:
    """Create a self-signed CA in ``dir``; keeps an existing one unless ``overwrite``."""
    _check_days(days, "days")
    if not cn or len(cn) > 64:
        raise PkiError("CA common name must be 1..64 characters")
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CA_CERT, out / CA_KEY
    if not overwrite and (cert_path.exists() or key_path.exists()):
        raise PkiError(f"a CA already exists in {out} (pass overwrite=True / --force to replace it)")
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return CertFiles(cert_path, key_path)


def _load_ca(out: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    cert_path, key_path = out / CA_CERT, out / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no CA in {out}: run `tinylarge pki init --dir {out}` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{key_path}: unsupported CA key type {type(key).__name__}")
    return cert, key


def certificate_cn(path: str | os.PathLike[str]) -> str:
    """The subject CN of a PEM certificate: a client's identity when the broker uses it as the user name."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: not a readable PEM certificate ({exc})") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise PkiError(f"{path}: the certificate has no CN")
    return str(names[0].value)


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not _HOST_RE.match(host):
                raise PkiError(f"host {host!r} is neither an IP address nor a DNS name") from None
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue(
    dir: str | os.PathLike[str],
    name: str,
    kind: Kind = "server",
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = DEFAULTS.leaf_days,
    key_type: KeyType = DEFAULTS.key_type,
) -> CertFiles:
    """Issue ``NAME.crt``/``NAME.key`` in ``dir`` signed by its CA.

    ``kind="server"``: CN ``name``, subjectAltName from ``hosts`` (IP addresses and DNS names),
    extended key usage serverAuth. ``kind="client"``: CN ``name`` (the device id, or ``cloud``),
    extended key usage clientAuth; ``hosts`` is ignored.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == "ca":
        raise PkiError(f"invalid certificate name {name!r}: use 1-64 of [A-Za-z0-9_-] (and not 'ca')")
    if kind not in ("server", "client"):
        raise PkiError(f"kind must be 'server' or 'client', got {kind!r}")
    if kind == "server" and not hosts:
        raise PkiError("a server certificate needs at least one host (IP address or DNS name)")
    _check_days(days, "days")
    out = Path(dir)
    ca_cert, ca_key = _load_ca(out)
    key = _new_key(key_type)
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if kind == "server":
        builder = builder.add_extension(_san(hosts), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return CertFiles(cert_path, key_path)


def _parser() -> argparse.ArgumentParser:
    from shared.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="tinylarge pki", description="Certificate authority for a TinyLarge deployment (PEM files).",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create ca.crt and ca.key in --dir", formatter_class=HelpFormatter,
                          description="create a CA: ca.crt and ca.key (mode 0600) in --dir")
    init.add_argument("--dir", required=True, type=Path, help="PKI folder (created if missing)")
    init.add_argument("--cn", default="TinyLarge CA", help="CA common name")
    init.add_argument("--days", type=int, default=DEFAULTS.ca_days, help="validity in days")
    init.add_argument("--key-type", choices=("ec", "rsa"), default=DEFAULTS.key_type,
                      help="ec: P-256; rsa: 2048-bit (for clients without ECDSA)")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    iss = sub.add_parser("issue", help="issue NAME.crt and NAME.key signed by the CA in --dir",
                         formatter_class=HelpFormatter,
                         description="issue NAME.crt and NAME.key (mode 0600) signed by the CA in --dir")
    iss.add_argument("name", help="certificate name: the broker host's name, a device id, or 'cloud'")
    iss.add_argument("--kind", choices=("server", "client"), default="server",
                     help="server: a broker (subjectAltNames from --host); client: a device or a service")
    iss.add_argument(
        "--host", action="append", dest="hosts", metavar="HOST",
        help="server subjectAltName, repeatable (default: 127.0.0.1 and localhost)",
    )
    iss.add_argument("--dir", required=True, type=Path, help="PKI folder holding the CA")
    iss.add_argument("--days", type=int, default=DEFAULTS.leaf_days, help="validity in days")
    iss.add_argument("--key-type", choices=("ec", "rsa"), default=DEFAULTS.key_type,
                     help="ec: P-256; rsa: 2048-bit (for clients without ECDSA)")
    return parser


def pki_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge pki init|issue``; 0 when written; a mistake (a value, an existing CA, CA files that do not
    load) raises UserError (the console script: one line, exit 2)."""
    from shared.errors import UserError

    args = _parser().parse_args(argv)
    try:
        if args.command == "init":
            files = create_ca(
                args.dir, cn=args.cn, days=args.days, key_type=args.key_type, overwrite=args.force
            )
        else:
            hosts = tuple(args.hosts) if args.hosts else DEFAULT_HOSTS
            files = issue(
                args.dir, args.name, kind=args.kind, hosts=hosts, days=args.days, key_type=args.key_type
            )
    except PkiError as exc:
        raise UserError(f"pki: {exc}") from None
    except (ValueError, TypeError) as exc:  # ca.crt / ca.key that are not PEM (cryptography's ValueError)
        raise UserError(f"pki: the CA in {args.dir} does not load (ca.crt or ca.key is not PEM: "
                        f"{type(exc).__name__}); recreate it: tinylarge pki init --dir {args.dir} --force") from None
    print(f"wrote {files.cert} and {files.key} (mode 0600)")
    return 0
