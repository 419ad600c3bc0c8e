"""Users, permissions and TLS of a secured cluster (``tinylarge cluster config --pki DIR --device DOMAIN:ID``).

The same identities and rules as the Mosquitto configuration (:mod:`shared.security.brokerconf`), written as
nats-server users with subject permissions. NATS's MQTT listener turns a topic into a subject (``/`` -> ``.``,
``+`` -> ``*``, ``#`` -> ``>``) and checks a user's permissions on that subject, before the account's subject
mapping moves it onto a partition; so the rules are written on ``tinylarge.<domain>.<device>.<stream>``:

- a device (``--device DOMAIN:ID``; MQTT connections only) publishes only
  ``tinylarge.<domain>.<id>.{inference,status,smashed}`` and its domain's dead letters, and subscribes only to
  ``tinylarge.<domain>.<id>.{model,cutgrad,splitpred}``;
- the cloud user and every ``--service-user`` (the scoring workers, one user each) read every upward stream,
  status and ``smashed``, write the downward streams, model, ``cutgrad``, ``splitpred``, status and dead letters,
  and use the account's JetStream API, acknowledgements and the lease and layout buckets;
- operators (the dashboard) read every stream, status and dead letters and write nothing; application users
  read the downward streams and status; site users (``--site-user ROLE:NAME``, ``--ehr-user``) write the
  streams their role publishes.

Measured on nats-server 2.9.10 (tests/shared/cluster/test_auth.py): a publish is checked on the subject
after the mapping (``tinylarge.part.<p>...``), so a device's partitioned streams are allowed on its own
partition only; a QoS 1 PUBLISH a user may not make is PUBACKed all the same and dropped (logged as a
"Publish Violation"; MQTT 3.1.1 lets a server acknowledge or disconnect), never stored nor delivered; a
QoS 1 subscription needs subscribe rights on ``$MQTT.sub.>`` (NATS's internal delivery inboxes), and a
device that subscribes there receives nothing of another session's. Mapped upward streams reach MQTT
subscribers (operators) only under ``tinylarge/part/+/<domain>/<device>/<stream>``.

Every user lives in one account (``TINYLARGE``, JetStream enabled) that also holds the partition mapping, so
an authenticated device's message lands on its partition as in the plain form. Passwords come from
``TINYLARGE_MQTT_PASSWORD_<USER>`` when set, else from an existing ``secrets.env``, else they are generated;
they are written to ``secrets.env`` and to the ``accounts.conf`` the nodes include, both mode 0600 (nats-server
2.9 checks a plain password or a bcrypt hash; no bcrypt implementation is installed here, so the file is
plain and kept private). They are never printed. The client and MQTT listeners serve TLS with the broker
certificate ``tinylarge pki`` issued (clients check it with the project's CA); routes stay plain on loopback.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path

from shared.protocol.messages import DEADLETTER_ROOT, TOPIC_ROOT
from shared.security.brokerconf import (
    SECRETS_NAME,
    SPLIT_DOWN,
    SPLIT_UP,
    BrokerConfig,
    BrokerConfigError,
    _check,
    _check_pki_files,
    _site_streams,
    _streams_by_direction,
    _write_file,
    device_domains,
    password_env,
    read_secrets,
)
from shared.security.pki import CA_CERT

ACCOUNT = "TINYLARGE"
ACCOUNTS_NAME = "accounts.conf"
#: what the workers need of JetStream: the API, acknowledgements, the lease and layout buckets, reply inboxes
JS_PUBLISH = ("$JS.API.>", "$JS.ACK.>", "$KV.tl_leases.>", "$KV.tl_layout.>")
MQTT_SUB = "$MQTT.sub.>"


def subject(topic: str) -> str:
    """An MQTT topic filter as the NATS subject NATS's MQTT listener checks (ids hold no ``.``)."""
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


def _t(domain: str, device: str, stream: str) -> str:
    return subject(f"{TOPIC_ROOT}/{domain}/{device}/{stream}")


def _up(domain: str, device: str, stream: str, partitions: int) -> str:
    """The subject a publish on an upward stream is checked on: NATS checks publish permissions after the
    account's mapping, so a partitioned stream is checked on ``tinylarge.part.<p>.<domain>.<device>.<stream>``
    (one exact partition for a known device; ``*`` for a wildcard one)."""
    from shared.cluster import PART_ROOT
    from shared.cluster._js import device_partition
    from shared.cluster.config import upward_streams

    if stream not in upward_streams():
        return _t(domain, device, stream)
    p = "*" if "*" in (domain, device) else str(device_partition(domain, device, partitions))
    return f"{PART_ROOT}.{p}.{domain}.{device}.{stream}"


def permissions(cfg: BrokerConfig, partitions: int) -> list[tuple[str, dict, list[str] | None]]:
    """(user, {"publish": [...], "subscribe": [...]}, allowed connection types or None) for every user.
    ``$MQTT.sub.>``: NATS 2.9 delivers an MQTT QoS 1 subscription through an internal subscription there,
    checked against the user's own subscribe permissions."""
    up, down = _streams_by_direction()
    dead = subject(DEADLETTER_ROOT)
    out: list[tuple[str, dict, list[str] | None]] = []
    for domain, device in device_domains(cfg):
        out.append((device, {
            "publish": [*(_up(domain, device, s, partitions) for s in (*cfg.device_write_streams, *SPLIT_UP)),
                        f"{dead}.{domain}"],
            "subscribe": [*(_t(domain, device, s) for s in ("model", *SPLIT_DOWN)), MQTT_SUB],
        }, ["MQTT"]))
    every_up = [_up("*", "*", s, partitions) for s in (*up, *SPLIT_UP)]
    for user in (cfg.cloud_user, *cfg.service_users):
        out.append((user, {
            "publish": [*(_t("*", "*", s) for s in ("status", "model", *down, *SPLIT_DOWN)), f"{dead}.>",
                        *JS_PUBLISH],
            "subscribe": [*(_t("*", "*", s) for s in ("status", "model")), *every_up, "_INBOX.>", MQTT_SUB],
        }, None))
    for user in cfg.operator_users:
        out.append((user, {"publish": [], "subscribe": [*every_up, *(_t("*", "*", s) for s in (*down, "status")),
                                                         f"{dead}.>", MQTT_SUB]}, None))
    for user in cfg.app_users:
        out.append((user, {"publish": [], "subscribe": [*(_t("*", "*", s) for s in (*down, "status")), MQTT_SUB]},
                    None))
    for role, user in [*(("ehr", u) for u in cfg.ehr_users), *cfg.site_users]:
        out.append((user, {"publish": [_up(d, "*", s, partitions) for d, s in _site_streams(role)],
                           "subscribe": []}, None))
    return out


def _perm_text(perms: dict) -> str:
    """A permissions map; an empty list becomes a deny of everything (NATS reads a missing key as allow-all)."""
    parts = []
    for kind in ("publish", "subscribe"):
        subjects = perms[kind]
        rule = {"allow": subjects} if subjects else {"deny": [">"]}
        parts.append(f"{kind}: {json.dumps(rule)}")
    return "{" + ", ".join(parts) + "}"


def accounts_text(cfg: BrokerConfig, passwords: Mapping[str, str], mappings: list[str], partitions: int) -> str:
    """The ``accounts {}`` block every node includes: one account with JetStream, the mapping and the users."""
    lines = ["# TinyLarge users and permissions (generated by `tinylarge cluster config --pki`). Mode 0600.",
             "accounts {", f"  {ACCOUNT}: {{", "    jetstream: enabled", "    mappings {",
             *(f"  {m}" for m in mappings), "    }", "    users: ["]
    for user, perms, kinds in permissions(cfg, partitions):
        entry = f"user: {json.dumps(user)}, password: {json.dumps(passwords[user])}, permissions: {_perm_text(perms)}"
        if kinds:
            entry += f", allowed_connection_types: {json.dumps(kinds)}"
        lines.append(f"      {{{entry}}}")
    lines += ["    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def tls_lines(cfg: BrokerConfig, indent: str = "  ") -> list[str]:
    """A ``tls {}`` block (client or MQTT listener) with the broker certificate from the PKI folder."""
    pki = cfg.pki_dir.resolve()
    return [f"{indent}tls {{", f'{indent}  cert_file: "{pki / (cfg.server_cert + ".crt")}"',
            f'{indent}  key_file: "{pki / (cfg.server_cert + ".key")}"', f'{indent}  ca_file: "{pki / CA_CERT}"',
            f"{indent}  verify: {'true' if cfg.require_certificate else 'false'}", f"{indent}  timeout: 5",
            f"{indent}}}"]


def write_auth(cfg: BrokerConfig, out: Path, partitions: int, env: Mapping[str, str]) -> dict[str, str]:
    """Check users and PKI files, then write ``secrets.env`` and ``accounts.conf`` (both 0600) into ``out``;
    returns user -> password (keep it secret)."""
    users = _check(cfg)
    _check_pki_files(cfg)
    previous = read_secrets(out / SECRETS_NAME)
    passwords: dict[str, str] = {}
    for user in users:
        key = password_env(user)
        passwords[user] = env.get(key) or previous.get(key) or secrets.token_urlsafe(24)
    lines = ["# NATS/MQTT passwords of this cluster. Keep secret; mode 0600.",
             *(f"{password_env(u)}={passwords[u]}" for u in users)]
    _write_file(out / SECRETS_NAME, "\n".join(lines) + "\n", 0o600)
    from shared.cluster.config import mapping_lines

    _write_file(out / ACCOUNTS_NAME, accounts_text(cfg, passwords, mapping_lines(partitions), partitions), 0o600)
    return passwords


__all__ = ["ACCOUNT", "ACCOUNTS_NAME", "BrokerConfigError", "accounts_text", "permissions", "subject",
           "tls_lines", "write_auth"]
