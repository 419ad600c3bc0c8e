"""The Domain contract, and the registry of the domains installed (entry point group ``tinylarge.domains``).

A domain package (``healthcare``, ``industrial_iot``, ...) exposes one ``DOMAIN`` object of class
:class:`Domain` in its ``__init__`` and names it in its distribution's entry points::

    [project.entry-points."tinylarge.domains"]
    healthcare = "healthcare:DOMAIN"

The object is plain data plus *references* (``"module:attribute"`` strings) to the domain's code, so
that reading the registry (the CLI's ``--help``, the schema registry, the broker's ACL) imports no
TensorFlow or torch. :meth:`Domain.ref` loads a reference when a command needs it.

Everything the platform does alike for every domain (service loop, fleets, firmware fleet, demo
loop, training stamps, report, CLI verbs) reads what differs from here: channels and window
geometry, labels, feature names, streams and their schemas, the models' ids, the baseline the large
model is reported beside, and the result stream the cloud publishes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "tinylarge.domains"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: the verbs every domain gets on the command line, and the module attribute each calls
VERBS = ("demo", "train", "serve", "device")


class DomainError(LookupError):
    """An unknown domain, or a Domain declaration that breaks the contract; the message names it."""


@dataclass(frozen=True)
class Channel:
    """One sensor channel of the device: its name in the firmware's sensor table, unit and rate.

    A channel sampled once per window (temperature, reported shaft speed) has ``fs_hz = 1 / window_s``.
    """

    name: str
    unit: str
    fs_hz: float


@dataclass(frozen=True)
class Stream:
    """One MQTT stream ``tinylarge/<domain>/<device>/<stream>``.

    ``direction``: ``up`` (device or site -> cloud) or ``down`` (cloud -> applications or devices).
    ``writer``: which role publishes it: ``device``, ``cloud`` or a named site role (``ehr``).
    """

    direction: str
    writer: str
    description: str
    retained: bool = False


@dataclass(frozen=True)
class Domain:
    """What one application domain declares; see the module docstring."""

    name: str
    title: str
    package: str
    channels: tuple[Channel, ...]
    window_s: float  #: length of one device window
    window_every_s: float  #: a device publishes one window this often (duty cycle)
    labels: tuple[str, ...]  #: the tiny classifier's classes, in output order
    feature_names: tuple[str, ...]  #: the DSP's outputs, in to_vector order
    streams: Mapping[str, Stream]
    result_stream: str  #: what the cloud publishes per window: ``risk`` or ``action``
    tiny_model: str  #: model id prefix of the device model (``<id>@<version>`` on the wire)
    large_model: str  #: model id prefix of the cloud model
    baseline: str  #: the published rule the large model is reported beside (NEWS2, ISO 10816 zones, ...)
    subject: str = "subject"  #: what one device watches: patient, machine, vehicle, user
    #: "module:attr" references to the domain's code
    refs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise DomainError(f"Domain.name: {self.name!r} must match {_NAME_RE.pattern}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise DomainError(f"Domain {self.name}: labels must be non-empty and unique")
        if not self.feature_names or len(set(self.feature_names)) != len(self.feature_names):
            raise DomainError(f"Domain {self.name}: feature_names must be non-empty and unique")
        for s, st in self.streams.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,31}$", s):
                raise DomainError(f"Domain {self.name}: stream name {s!r} is not a valid stream")
            if st.direction not in ("up", "down"):
                raise DomainError(f"Domain {self.name}: stream {s}: direction must be 'up' or 'down'")
        for required in ("inference", self.result_stream):
            if required not in self.streams:
                raise DomainError(f"Domain {self.name}: streams must include {required!r}")
        if not self.window_s > 0 or not self.window_every_s >= self.window_s:
            raise DomainError(f"Domain {self.name}: need 0 < window_s <= window_every_s")
        for key, ref in self.refs.items():
            if not _REF_RE.match(ref):
                raise DomainError(f"Domain {self.name}: refs[{key!r}] = {ref!r} is not 'module:attribute'")

    # -- derived -------------------------------------------------------------------------------------
    @property
    def schema_dir(self) -> Path:
        """``<package>/schemas``: one ``<stream>.json`` per domain stream."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise DomainError(f"Domain {self.name}: package {self.package!r} is not importable")
        return Path(next(iter(spec.submodule_search_locations))) / "schemas"

    @property
    def models_dir(self) -> Path:
        """Where ``tinylarge train`` writes this domain's models by default."""
        return Path("models") / self.name

    def writers(self, role: str) -> tuple[str, ...]:
        """The streams a role publishes (``device``, ``cloud``, ``ehr`` ...)."""
        return tuple(s for s, st in self.streams.items() if st.writer == role)

    def ref(self, key: str) -> Any:
        """Load the object a reference names (imports its module)."""
        if key not in self.refs:
            raise DomainError(f"domain {self.name} declares no {key!r} (has: {', '.join(sorted(self.refs))})")
        module, _, attr = self.refs[key].partition(":")
        return getattr(importlib.import_module(module), attr)

    def has(self, key: str) -> bool:
        return key in self.refs


@cache
def registry() -> dict[str, Domain]:
    """Every installed domain by name, from the entry points (sorted by name)."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if not isinstance(obj, Domain):
            raise DomainError(f"entry point {ep.name} = {ep.value}: not a shared.domain.Domain")
        if obj.name != ep.name:
            raise DomainError(f"entry point {ep.name} = {ep.value}: declares name {obj.name!r}")
        found[obj.name] = obj
    return dict(sorted(found.items()))


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Domain:
    """The registered domain ``name``; DomainError naming the registered ones otherwise."""
    reg = registry()
    if name not in reg:
        raise DomainError(f"unknown domain {name!r}; registered: {', '.join(reg) or '(none: pip install -e .)'}")
    return reg[name]
