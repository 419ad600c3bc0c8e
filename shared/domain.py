"""The Domain contract, and the registry of the domains installed (entry point group ``tinylarge.domains``).

A domain package (``healthcare``, ``industrial_iot``, or one in its own distribution) exposes one
``DOMAIN`` object of class :class:`Domain` in its ``__init__`` and names it in its entry points::

    [project.entry-points."tinylarge.domains"]
    healthcare = "healthcare:DOMAIN"

The declaration is plain data (channels and window geometry, labels, feature names, streams, model
ids, the baseline, the subject noun) plus one reference, ``hooks = "module:Class"``, to the domain's
:class:`DomainHooks` subclass. Reading the registry (the CLI's ``--help``, the schema registry, the
broker's ACL) imports no TensorFlow or torch: :attr:`Domain.hooks` loads the class when a command
needs the domain's code.

The rules a domain follows (tests/contract checks each of them for every registered domain):

1. ``name`` is a lowercase identifier and equals the entry point's name; ids, labels, rates and the
   window length are declared here once and read from here.
2. ``<package>/schemas/<stream>.json`` exists for every declared stream and nothing else; messages the
   devices make (``sample_messages``) validate against them; a message missing ``model`` is refused.
3. ``to_vector`` has the width of ``feature_names`` and is the tiny model's input; the tiny model's
   outputs are ``labels`` in order (``labels.json`` beside ``tiny.tflite``).
4. ``train`` writes ``tiny.tflite``, ``labels.json``, ``tiny_metrics.json`` (with ``model_id``),
   ``metrics.json`` (with ``tiny_float_acc`` and ``tiny_int8_acc``) and ``stamp.json``; ``--quick``
   trains small models in well under a minute.
5. The cloud service publishes exactly one ``result_stream`` message per accepted inference, with
   ``source_seq`` the inference's seq, and stores one ``result_stream`` point per inference.
6. The scenario's population has unique ids; each subject has ``window(t_end_s)``; the quick demo
   stores exactly what it published and dead-letters the platform's malformed messages.
7. The firmware app (``<package>/<firmware>/``, C99) defines ``tl_app_domain`` and reads its windows
   through the sensor table ``window_channels`` describes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing only: the registry imports no runtime module
    from shared.runtime.scenario import Scenario

ENTRY_POINT_GROUP = "tinylarge.domains"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
#: the verbs every domain gets on the command line (all of them the platform's: shared.runtime.verbs)
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
    firmware: str = "firmware"  #: the C firmware app's folder, relative to the package (``firmware_dir``)
    #: "module:Class" of the domain's DomainHooks subclass (imported only when a command needs it)
    hooks_ref: str = ""

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
        if not _REF_RE.match(self.hooks_ref):
            raise DomainError(f"Domain {self.name}: hooks_ref = {self.hooks_ref!r} is not 'module:Class'")

    # -- derived -------------------------------------------------------------------------------------
    @property
    def schema_dir(self) -> Path:
        """``<package>/schemas``: one ``<stream>.json`` per domain stream."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise DomainError(f"Domain {self.name}: package {self.package!r} is not importable")
        return Path(next(iter(spec.submodule_search_locations))) / "schemas"

    @property
    def firmware_dir(self) -> Path:
        """``<package>/<firmware>``: the domain's C firmware app (its ``*.c``, one defining ``tl_app_domain``;
        an optional ``app.mk``), built by ``firmware/Makefile`` with ``APP_DIR``."""
        return self.schema_dir.parent / self.firmware

    @property
    def models_dir(self) -> Path:
        """Where ``tinylarge train`` writes this domain's models by default."""
        return Path("models") / self.name

    def writers(self, role: str) -> tuple[str, ...]:
        """The streams a role publishes (``device``, ``cloud``, ``ehr`` ...)."""
        return tuple(s for s, st in self.streams.items() if st.writer == role)

    @property
    def hooks(self) -> DomainHooks:
        """The domain's code (its DomainHooks subclass, instantiated once per process)."""
        return _load_hooks(self)

    @property
    def model_ids(self) -> tuple[str, str]:
        """The wire ids of the two models at version 1: ``(<tiny_model>@1, <large_model>@1)``."""
        return f"{self.tiny_model}@1", f"{self.large_model}@1"


class DomainHooks(ABC):
    """What a domain's code supplies; the platform's verbs call nothing else.

    Subclass it in the domain package and name the subclass in ``Domain(hooks_ref="pkg.module:Class")``.
    Abstract methods are required; the optional capabilities (the integration strategies' adapters)
    are attributes that stay ``None`` when a domain does not offer them. Keep imports of TensorFlow or
    torch inside the methods: the class itself is imported by ``--help``.
    """

    def __init__(self, domain: Domain):
        self.domain = domain

    # -- models ----------------------------------------------------------------------------------------
    @abstractmethod
    def train(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        """Train the tiny and the large model into ``models_dir`` (rule 4); return metrics.json's content."""

    @abstractmethod
    def ensure_trained(self, models_dir: Path, quick: bool = False) -> dict[str, Any]:
        """The metrics of fresh models in ``models_dir``, training first when the stamp is stale. With
        ``quick``, quick models are trained when missing and full ones accepted."""

    # -- the device side ------------------------------------------------------------------------------
    @abstractmethod
    def simulate(self, n_subjects: int, duration_h: float, seed: int) -> Sequence[Any]:
        """A population: subjects with a unique ``id``, ``window(t_end_s)`` and ``windows()``."""

    @abstractmethod
    def extract(self, window: Any) -> Any:
        """The on-device DSP on one window (what the C app computes)."""

    @abstractmethod
    def to_vector(self, features: Any) -> Any:
        """The tiny model's float input row for ``extract``'s output (width ``len(feature_names)``)."""

    @abstractmethod
    def window_channels(self, window: Any) -> dict[str, Any]:
        """The firmware's sensor table for one window: channel name -> samples (or one value)."""

    @abstractmethod
    def device_fleet(self, args: argparse.Namespace | None, mqtt: str, subjects: Sequence[Any], models_dir: Path,
                     start_ms: Mapping[str, int], on_publish: Callable[[str, int], None] | None = None,
                     trusted_key: Path | None = None) -> Any:
        """Simulated devices on ``subjects`` (a :class:`shared.runtime.fleet.DeviceFleet`)."""

    @abstractmethod
    def sample_messages(self, models_dir: Path) -> dict[str, list[dict]]:
        """Messages of each up stream, made the way the devices and sites make them (rule 2)."""

    # -- the cloud side -------------------------------------------------------------------------------
    @abstractmethod
    def service(self, models_dir: Path) -> Callable[..., Any]:
        """``build(store, publish, on_result) -> SubjectService``: the domain's cloud service on the models of
        ``models_dir`` (loaded once, here)."""

    @abstractmethod
    def baseline(self, *args: Any, **kwargs: Any) -> Any:
        """The published rule the large model is reported beside (NEWS2, ISO 10816 zones, ...)."""

    # -- the demo --------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def scenario(self) -> type[Scenario]:
        """The demo's scenario class (:class:`shared.runtime.scenario.Scenario`)."""

    # -- optional capabilities (the integration strategies) -----------------------------------------
    #: ``tiny_task(quick=False) -> shared.integration.task.TinyTask``: the tiny model's windows by subject
    tiny_task: Callable[..., Any] | None = None
    #: ``distill_task(quick=False, models_dir=None) -> shared.integration.distill.DistillTask``
    distill_task: Callable[..., Any] | None = None
    #: ``new_subjects(n_subjects, n_windows, seed) -> TinyTask``: people the model never saw (transfer)
    new_subjects: Callable[..., Any] | None = None


_HOOKS: dict[str, DomainHooks] = {}


def _load_hooks(d: Domain) -> DomainHooks:
    if d.name not in _HOOKS:
        module, _, attr = d.hooks_ref.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise DomainError(f"domain {d.name}: hooks_ref {d.hooks_ref!r} does not load ({exc})") from exc
        if not (isinstance(cls, type) and issubclass(cls, DomainHooks)):
            raise DomainError(f"domain {d.name}: hooks_ref {d.hooks_ref!r} is not a DomainHooks subclass")
        _HOOKS[d.name] = cls(d)
    return _HOOKS[d.name]


@cache
def registry() -> dict[str, Domain]:
    """Every installed domain by name, from the entry points (sorted by name)."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except (ImportError, AttributeError) as exc:  # e.g. a folder of the same name shadows the package
            raise DomainError(f"entry point {ep.name} = {ep.value} does not load ({exc}); is another folder named "
                              f"{ep.value.split(':')[0]!r} in the current directory?") from exc
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
