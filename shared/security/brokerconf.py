"""Mosquitto 2 configuration for one TinyLarge deployment: TLS, passwords, per-device ACL, persistence.

``tinylarge broker config --pki DIR --out DIR --device ID ...`` writes into ``--out``:

- ``mosquitto.conf``: a TLS listener (``cafile``/``certfile``/``keyfile`` from the PKI folder, TLS >= 1.2,
  client certificates optional or required), an optional plain listener bound to 127.0.0.1 only,
  ``allow_anonymous false``, persistence on (``data/``), ``max_packet_size`` sized for signed models;
- ``passwd``: Mosquitto's PBKDF2-SHA512 hashes (``user:$7$<iterations>$<salt b64>$<hash b64>``),
  computed here so that no password ever appears on a command line (``mosquitto_passwd -b`` would);
- ``acl``: a device belongs to one domain (``--device DOMAIN:ID``, or ``--domain DOMAIN`` for the ids given
  without one) and writes only ``tinylarge/<domain>/<own id>/{inference,status,smashed}`` and its domain's
  dead letters, and reads only ``tinylarge/<domain>/<own id>/{model,cutgrad,splitpred}`` (``smashed``,
  ``cutgrad``, ``splitpred``: split learning, :mod:`shared.integration.split`); the cloud user reads every
  registered domain's upward streams (inference, chart, ...), status and ``smashed``, and writes the downward
  ones (risk, action, ...), model, ``cutgrad``, ``splitpred`` and deadletter (``--service-user``: more users
  with the cloud's rights, one per service process);
  application users read the downward streams and status; operators (``--operator-user``, the
  dashboard) read every stream, status and ``tinylarge/_deadletter/#`` and write nothing; site users
  (``--ehr-user``, ``--site-user ROLE:NAME``) write the streams their role publishes (healthcare ``chart``,
  metaverse_eeg ``scene``);
- broker-wide delivery settings (:func:`delivery_lines`): ``use_username_as_clientid`` (a client's
  id is its user name, so no user can take another's persistent session) and queue limits large
  enough that a burst of QoS 1 messages is queued for a slow subscriber, not dropped (Mosquitto's
  default ``max_queued_messages 1000`` drops acknowledged messages);
- ``secrets.env`` (mode 0600): ``TINYLARGE_MQTT_PASSWORD_<USER>=...`` for every user. A password comes
  from that environment variable when set, else from an existing ``secrets.env`` (so re-running keeps
  it), else it is generated. Passwords are never printed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.protocol.messages import DEADLETTER_ROOT, TOPIC_ROOT, MessageError, check_id
from shared.security.pki import CA_CERT

PASSWORD_ENV_PREFIX = "TINYLARGE_MQTT_PASSWORD_"
#: QoS 1 messages the broker sends a client ahead of its PUBACKs (delivery_lines): the consumer's largest batch
MAX_INFLIGHT = 256
#: PBKDF2 iterations written into ``passwd`` (Mosquitto 2.0 reads the count from each line)
PBKDF2_ITERATIONS = 10_000
_SALT_BYTES = 12  # what mosquitto_passwd uses
CONF_NAME, PASSWD_NAME, ACL_NAME = "mosquitto.conf", "passwd", "acl"
SECRETS_NAME, DATA_DIR = "secrets.env", "data"
#: split learning's streams (shared.integration.split.wire): device -> cloud, and cloud -> device
SPLIT_UP, SPLIT_DOWN = ("smashed",), ("cutgrad", "splitpred")


class BrokerConfigError(ValueError):
    """A broker configuration that cannot be written; the message names the option that is wrong."""


@dataclass(frozen=True)
class BrokerConfig:
    """Everything ``write_broker_config`` needs; defaults suit a single-host deployment.

    pki_dir: folder made by ``tinylarge pki`` holding ``ca.crt`` and ``<server_cert>.crt/.key``.
    out_dir: where the configuration, password, ACL and secrets files and ``data/`` are written.
    devices: device ids (each one MQTT user with its own ACL block), ``DOMAIN:ID`` or ``ID``; a device publishes
        and reads only in its own domain.
    device_domain: the domain of the devices given without one (None: each must name its domain).
    cloud_user: the cloud service's MQTT user.
    app_users: read-only consumers of risk/action/status (dashboards, EHR bridges).
    operator_users: read-only operators (the dashboard): every stream, status and dead letters.
    service_users: more users with the cloud user's rights (each service process or tool its own: with
        ``username_as_clientid`` one user holds one connection).
    ehr_users: writers of healthcare ``chart`` observations.
    port: TLS listener port (8883 is MQTT over TLS).
    bind_address: TLS listener address; ``None`` listens on every interface.
    plain_port: if set, an unencrypted listener on 127.0.0.1 only (same passwords and ACL).
    server_cert: basename of the broker's certificate and key in ``pki_dir``.
    require_certificate: clients must present a certificate signed by the CA (mutual TLS).
    identity_as_username: with ``require_certificate``, the certificate CN is the username and no password
        is checked (Mosquitto's ``use_identity_as_username``).
    device_write_streams: the streams a device may publish under its own id.
    persistence: keep retained messages, sessions and queued QoS 1 messages in ``data/mosquitto.db``.
    autosave_interval_s: seconds between database saves (also saved on clean shutdown).
    max_packet_bytes: the largest MQTT packet accepted (a 512 KiB model message plus headroom).
    run_as_user: Mosquitto's ``user`` option; started as root it otherwise switches to ``mosquitto``, which
        must then be able to read these files.
    username_as_clientid: Mosquitto's ``use_username_as_clientid``: the client id is the user name
        (with ``identity_as_username``, the certificate CN), whatever id the client sent.
    max_queued_messages: QoS 1 messages queued per client beyond those in flight (online or offline);
        Mosquitto drops what exceeds it (its default, 1000, loses a burst).
    max_queued_bytes: the same limit in payload bytes (0: none); whichever is reached first applies.
    """

    pki_dir: Path
    out_dir: Path
    devices: tuple[str, ...]
    device_domain: str | None = None
    cloud_user: str = "cloud"
    app_users: tuple[str, ...] = ()
    operator_users: tuple[str, ...] = ()
    service_users: tuple[str, ...] = ()
    ehr_users: tuple[str, ...] = ()
    site_users: tuple[tuple[str, str], ...] = ()  #: (role, user): writers of the streams a site role publishes
    port: int = 8883
    bind_address: str | None = None
    plain_port: int | None = None
    server_cert: str = "broker"
    require_certificate: bool = False
    identity_as_username: bool = False
    device_write_streams: tuple[str, ...] = ("inference", "status")
    persistence: bool = True
    autosave_interval_s: int = 60
    max_packet_bytes: int = 1024 * 1024
    run_as_user: str | None = None
    username_as_clientid: bool = True
    max_queued_messages: int = 1_000_000
    max_queued_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class BrokerFiles:
    """Paths written by :func:`write_broker_config`; ``passwords`` maps user -> password (keep it secret)."""

    conf: Path
    passwd: Path
    acl: Path
    secrets: Path
    data_dir: Path
    passwords: Mapping[str, str] = field(repr=False)


def password_env(user: str) -> str:
    """The environment variable holding ``user``'s password: TINYLARGE_MQTT_PASSWORD_<USER, '-' -> '_'>."""
    return PASSWORD_ENV_PREFIX + user.upper().replace("-", "_")


def password_hash(password: str, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """Mosquitto 2 password-file hash: ``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>``."""
    if not password:
        raise BrokerConfigError("empty password")
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` line value (the check Mosquitto performs)."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        raise BrokerConfigError("not a Mosquitto $7$ (PBKDF2-SHA512) hash")
    salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    computed = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return secrets.compare_digest(computed, digest)


def read_secrets(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse a ``secrets.env`` into {env var: password}; missing file -> {}."""
    p = Path(path)
    if not p.exists():
        return {}
    out: dict[str, str] = {}
    for line in p.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def _write_file(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def device_domains(cfg: BrokerConfig) -> list[tuple[str, str]]:
    """(domain, device id) of every device; BrokerConfigError names a device without a registered domain."""
    from shared.domain import names

    known = names()
    out: list[tuple[str, str]] = []
    for entry in cfg.devices:
        domain, sep, device = entry.rpartition(":")
        if not sep:
            domain = cfg.device_domain or ""
        if not domain:
            raise BrokerConfigError(
                f"device {entry!r}: a device belongs to one domain; give it as DOMAIN:ID (--device "
                f"healthcare:{entry}) or name the domain of the ids given without one (--domain healthcare)")
        if domain not in known:
            raise BrokerConfigError(f"device {entry!r}: unknown domain {domain!r}; registered: {', '.join(known)}")
        out.append((domain, device))
    return out


def _check(cfg: BrokerConfig) -> list[str]:
    """Validate ``cfg``; return every user name (devices first)."""
    if not cfg.devices:
        raise BrokerConfigError("devices: give at least one device id (--device DOMAIN:ID)")
    users = [*(d for _, d in device_domains(cfg)), cfg.cloud_user, *cfg.service_users, *cfg.app_users,
             *cfg.operator_users, *cfg.ehr_users, *(u for _, u in cfg.site_users)]
    roles = _site_roles()
    for role, _ in cfg.site_users:
        if role not in roles:
            raise BrokerConfigError(f"site role {role!r}: no registered domain has a stream written by it; "
                                    f"site roles: {', '.join(sorted(roles)) or '(none)'}")
    for user in users:
        try:
            check_id(user, "user")
        except MessageError as exc:
            raise BrokerConfigError(str(exc)) from None
    dupes = sorted({u for u in users if users.count(u) > 1})
    if dupes:
        raise BrokerConfigError(f"user names must be unique across devices/cloud/service/app/operator/ehr "
                                f"users: {dupes}")
    for name, port in (("port", cfg.port), ("plain_port", cfg.plain_port)):
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            raise BrokerConfigError(f"{name} must be in 1..65535, got {port!r}")
    if cfg.plain_port is not None and cfg.plain_port == cfg.port:
        raise BrokerConfigError("plain_port must differ from port")
    if cfg.identity_as_username and not cfg.require_certificate:
        raise BrokerConfigError("identity_as_username needs require_certificate")
    if cfg.autosave_interval_s < 0:
        raise BrokerConfigError("autosave_interval_s must be >= 0")
    if cfg.max_queued_messages < 1000:
        raise BrokerConfigError("max_queued_messages must be >= 1000 (a burst beyond it is dropped)")
    if cfg.max_queued_bytes < 0:
        raise BrokerConfigError("max_queued_bytes must be >= 0 (0: no byte limit)")
    if cfg.max_packet_bytes < 1024:
        raise BrokerConfigError("max_packet_bytes must be >= 1024")
    for stream in cfg.device_write_streams:
        if not re.match(r"^[a-z][a-z0-9_]{0,31}$", stream) or stream in ("model", "risk", "action"):
            raise BrokerConfigError(f"device_write_streams: {stream!r} is not a device -> cloud stream")
    for path in (cfg.pki_dir / CA_CERT, cfg.pki_dir / f"{cfg.server_cert}.crt",
                 cfg.pki_dir / f"{cfg.server_cert}.key"):
        if not path.is_file():
            raise BrokerConfigError(
                f"missing {path}: run `tinylarge pki init --dir {cfg.pki_dir}` and "
                f"`tinylarge pki issue {cfg.server_cert} --kind server --dir {cfg.pki_dir}`"
            )
    return users


def acl_text(cfg: BrokerConfig) -> str:
    """The ACL file. Patterns apply to every user; ``%u`` must be a whole topic level (Mosquitto rule)."""
    root = TOPIC_ROOT
    lines = [
        "# TinyLarge ACL (generated by `tinylarge broker config`). Anything not granted here is denied.",
        "# Devices: each user may publish only under its own id in its own domain (and report invalid frames",
        "# to that domain's dead letters), and read only its own model and split-learning answers.",
        "# (one block per device, not a `pattern`: a pattern would also let operators and apps publish",
        "# under their own names)",
    ]
    for domain, device in device_domains(cfg):
        base = f"{root}/{domain}/{device}"
        lines += [f"user {device}", *[f"topic write {base}/{stream}" for stream in (*cfg.device_write_streams,
                                                                                      *SPLIT_UP)],
                  f"topic write {DEADLETTER_ROOT}/{domain}",
                  *[f"topic read {base}/{stream}" for stream in ("model", *SPLIT_DOWN)]]
    up, down = _streams_by_direction()
    lines.append("")
    lines.append("# Cloud service(s): consume device streams, publish results, models and dead letters.")
    for user in (cfg.cloud_user, *cfg.service_users):
        lines += [f"user {user}", f"topic readwrite {root}/+/+/status", f"topic readwrite {root}/+/+/model",
                  f"topic write {DEADLETTER_ROOT}/#"]
        lines += [f"topic read {root}/+/+/{stream}" for stream in (*up, *SPLIT_UP)]
        lines += [f"topic write {root}/+/+/{stream}" for stream in (*down, *SPLIT_DOWN)]
        lines.append("")
    for user in cfg.operator_users:
        lines += [f"# operator {user}: reads everything a dashboard shows, dead letters included; writes nothing",
                  f"user {user}", *[f"topic read {root}/+/+/{stream}" for stream in (*up, *down)],
                  f"topic read {root}/+/+/status", f"topic read {DEADLETTER_ROOT}/#", ""]
    for user in cfg.app_users:
        lines += ["", f"user {user}", *[f"topic read {root}/+/+/{stream}" for stream in down],
                  f"topic read {root}/+/+/status"]
    for role, user in [*(("ehr", u) for u in cfg.ehr_users), *cfg.site_users]:
        lines += ["", f"user {user}", *[f"topic write {root}/{d}/+/{stream}" for d, stream in _site_streams(role)]]
    return "\n".join(lines) + "\n"


def _streams_by_direction() -> tuple[list[str], list[str]]:
    """(streams into the cloud, streams out of it) over every registered domain, each name once."""
    from shared.domain import registry

    up: list[str] = []
    down: list[str] = []
    for d in registry().values():
        for name, st in d.streams.items():
            target = up if st.direction == "up" else down
            if name not in target:
                target.append(name)
    return up, down


def _site_roles() -> set[str]:
    """Writer roles of upward streams other than the devices' (``ehr``, ``world``, ...)."""
    from shared.domain import registry

    return {st.writer for d in registry().values() for st in d.streams.values()
            if st.direction == "up" and st.writer not in ("device", "cloud")}


def _site_role_user(text: str) -> tuple[str, str]:
    role, sep, user = text.partition(":")
    if not sep or not role or not user:
        raise argparse.ArgumentTypeError(f"expected ROLE:NAME (e.g. world:world-1), got {text!r}")
    return role, user


def _site_streams(role: str) -> list[tuple[str, str]]:
    """(domain, stream) pairs that a site role (``ehr``: a ward's health record system) publishes."""
    from shared.domain import registry

    return [(d.name, s) for d in registry().values() for s in d.writers(role)]


def delivery_lines(cfg: BrokerConfig | None = None) -> list[str]:
    """Broker-wide delivery settings of the generated configuration (also used by the test and benchmark
    brokers, tests/fixtures/mqtt.py, so that what is measured is what users get)."""
    cfg = cfg or BrokerConfig(Path(), Path(), ())
    # set_tcp_nodelay: each PUBLISH to a client leaves at once, instead of waiting (Nagle) for the client's
    # ACK of the previous one, which its delayed ACK can hold back (bench.pipeline: paced p50 -12 ms)
    # max_inflight_messages: QoS 1 messages sent to a client before its PUBACKs (Mosquitto's default 20). The
    # cloud consumer acknowledges a batch after its store commit, so this window is its largest batch: 256 (the
    # consumer's max_batch) lets one SQLite transaction take what queued up, a third of the worker's CPU per
    # message at 256 against 20 (issue 21); a redelivery after a crash is absorbed on (device, seq) as before
    return [f"max_queued_messages {cfg.max_queued_messages}", f"max_queued_bytes {cfg.max_queued_bytes}",
            f"max_packet_size {cfg.max_packet_bytes}", "set_tcp_nodelay true", f"max_inflight_messages {MAX_INFLIGHT}"]


def _identity_lines(cfg: BrokerConfig) -> list[str]:
    """Per-listener identity settings (Mosquitto reads these after each ``listener`` line)."""
    return ["use_username_as_clientid true"] if cfg.username_as_clientid else []


def conf_text(cfg: BrokerConfig, out: Path) -> str:
    """The mosquitto.conf text; every path is absolute so the broker can be started from anywhere."""
    pki = cfg.pki_dir.resolve()
    lines = ["# TinyLarge Mosquitto configuration (generated by `tinylarge broker config`)."]
    if cfg.run_as_user:
        lines.append(f"user {cfg.run_as_user}")
    lines += [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out / PASSWD_NAME}",
        f"acl_file {out / ACL_NAME}",
        *delivery_lines(cfg),
        f"persistence {'true' if cfg.persistence else 'false'}",
    ]
    if cfg.persistence:
        lines += [f"persistence_location {out / DATA_DIR}", f"autosave_interval {cfg.autosave_interval_s}"]
    lines += ["log_dest stderr", "log_type error", "log_type warning", "log_type notice",
              "log_type information", "connection_messages true", ""]
    listen = f"listener {cfg.port}" + (f" {cfg.bind_address}" if cfg.bind_address else "")
    lines += [
        "# MQTT over TLS",
        listen,
        f"cafile {pki / CA_CERT}",
        f"certfile {pki / (cfg.server_cert + '.crt')}",
        f"keyfile {pki / (cfg.server_cert + '.key')}",
        "tls_version tlsv1.2",
        f"require_certificate {'true' if cfg.require_certificate else 'false'}",
    ]
    if cfg.identity_as_username:
        lines.append("use_identity_as_username true")
    lines += _identity_lines(cfg)
    if cfg.plain_port is not None:
        lines += ["", "# plain MQTT, loopback only (local tools); same users and ACL",
                  f"listener {cfg.plain_port} 127.0.0.1", *_identity_lines(cfg)]
    return "\n".join(lines) + "\n"


def write_broker_config(cfg: BrokerConfig, env: Mapping[str, str] | None = None) -> BrokerFiles:
    """Write mosquitto.conf, passwd, acl, secrets.env and data/ into ``cfg.out_dir``."""
    users = _check(cfg)
    env = os.environ if env is None else env
    out = cfg.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA_DIR).mkdir(exist_ok=True)
    previous = read_secrets(out / SECRETS_NAME)
    passwords: dict[str, str] = {}
    for user in users:
        key = password_env(user)
        passwords[user] = env.get(key) or previous.get(key) or secrets.token_urlsafe(24)
    secrets_lines = ["# MQTT passwords for this deployment. Keep secret; mode 0600."]
    secrets_lines += [f"{password_env(u)}={passwords[u]}" for u in users]
    _write_file(out / SECRETS_NAME, "\n".join(secrets_lines) + "\n", 0o600)
    _write_file(out / PASSWD_NAME, "".join(f"{u}:{password_hash(passwords[u])}\n" for u in users), 0o600)
    _write_file(out / ACL_NAME, acl_text(cfg), 0o600)
    _write_file(out / CONF_NAME, conf_text(cfg, out), 0o644)
    return BrokerFiles(out / CONF_NAME, out / PASSWD_NAME, out / ACL_NAME, out / SECRETS_NAME,
                       out / DATA_DIR, passwords)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinylarge broker config",
        description="Write a Mosquitto 2 configuration (TLS, passwords, per-device ACL, persistence).",
    )
    d = BrokerConfig(Path(), Path(), ())
    parser.add_argument("--pki", required=True, type=Path, help="PKI folder (tinylarge pki init/issue)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--device", action="append", default=[], metavar="[DOMAIN:]ID",
                        help="a device and its domain (healthcare:ward3-bed07), repeatable; a device publishes and "
                             "reads only in its own domain")
    parser.add_argument("--domain", default=None,
                        help="the domain of every --device given without one (e.g. --domain healthcare --device p001)")
    parser.add_argument("--cloud-user", default=d.cloud_user, help="(default: %(default)s)")
    parser.add_argument("--app-user", action="append", default=[], metavar="NAME",
                        help="read-only user for risk/action/status, repeatable")
    parser.add_argument("--service-user", action="append", default=[], metavar="NAME",
                        help="another user with the cloud user's rights (one per service process), repeatable")
    parser.add_argument("--operator-user", action="append", default=[], metavar="NAME",
                        help="read-only operator (dashboard): every stream, status and dead letters, repeatable")
    parser.add_argument("--ehr-user", action="append", default=[], metavar="NAME",
                        help="user allowed to publish healthcare chart observations, repeatable")
    parser.add_argument("--site-user", action="append", default=[], metavar="ROLE:NAME", type=_site_role_user,
                        help="user allowed to publish the streams a site role writes (e.g. world:world-1 for "
                             "metaverse_eeg's scene), repeatable")
    parser.add_argument("--port", type=int, default=d.port, help="TLS port (default: %(default)s)")
    parser.add_argument("--bind", default=None, help="TLS listener address (default: all interfaces)")
    parser.add_argument("--plain-port", type=int, default=None, help="also listen unencrypted on 127.0.0.1")
    parser.add_argument("--server-cert", default=d.server_cert, help="cert basename in --pki (%(default)s)")
    parser.add_argument("--require-certificate", action="store_true", help="clients must present a CA cert")
    parser.add_argument("--identity-as-username", action="store_true",
                        help="with --require-certificate: the cert CN is the username, no password")
    parser.add_argument("--no-persistence", action="store_true", help="keep nothing across restarts")
    parser.add_argument("--autosave-s", type=int, default=d.autosave_interval_s, help="(%(default)s)")
    parser.add_argument("--run-as", default=None, metavar="USER", help="Mosquitto `user` option")
    return parser


def _check_pki_files(cfg: BrokerConfig) -> None:
    """The CA and the broker's certificate and key load as PEM, and the CA signed the certificate: checked here
    because Mosquitto would only refuse them when it starts. Missing files are left to :func:`_check`."""
    import ssl

    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    ca, crt, key = (cfg.pki_dir / CA_CERT, cfg.pki_dir / f"{cfg.server_cert}.crt",
                    cfg.pki_dir / f"{cfg.server_cert}.key")
    if not all(path.is_file() for path in (ca, crt, key)):
        return
    redo = f"recreate it: tinylarge pki init --dir {cfg.pki_dir} --force"
    try:
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    except ValueError:
        raise BrokerConfigError(f"{ca} is not a PEM certificate; {redo}") from None
    reissue = f"reissue it: tinylarge pki issue {cfg.server_cert} --kind server --dir {cfg.pki_dir}"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(crt), str(key))
        x509.load_pem_x509_certificate(crt.read_bytes()).verify_directly_issued_by(ca_cert)
    except (ssl.SSLError, ValueError, TypeError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else type(exc).__name__
        raise BrokerConfigError(f"{crt} and {key} are not a certificate signed by {ca} and its key ({reason}); "
                                f"{reissue}") from None
    except InvalidSignature:
        raise BrokerConfigError(f"{crt} was not signed by {ca}; {reissue}") from None


def broker_config_main(argv: Sequence[str] | None = None) -> int:
    """``tinylarge broker config``; 0 when written; a mistake (options, PKI files) raises UserError (the
    console script: one line, exit 2)."""
    from shared.errors import UserError

    args = _parser().parse_args(argv)
    cfg = BrokerConfig(
        pki_dir=args.pki, out_dir=args.out, devices=tuple(args.device), device_domain=args.domain,
        cloud_user=args.cloud_user,
        app_users=tuple(args.app_user), operator_users=tuple(args.operator_user),
        service_users=tuple(args.service_user), ehr_users=tuple(args.ehr_user),
        site_users=tuple(args.site_user), port=args.port,
        bind_address=args.bind, plain_port=args.plain_port, server_cert=args.server_cert,
        require_certificate=args.require_certificate, identity_as_username=args.identity_as_username,
        persistence=not args.no_persistence, autosave_interval_s=args.autosave_s, run_as_user=args.run_as,
    )
    try:
        _check_pki_files(cfg)
        files = write_broker_config(cfg)
    except BrokerConfigError as exc:
        raise UserError(f"broker config: {exc}") from None
    print(f"wrote {files.conf}, {files.passwd}, {files.acl}")
    print(f"passwords for {len(files.passwords)} users in {files.secrets} (mode 0600; not shown)")
    print(f"start the broker with: mosquitto -c {files.conf}")
    return 0
