"""What a domain's demo supplies to the platform's demo loop (:mod:`shared.runtime.demo`).

A :class:`Scenario` is data and behaviour only: the population and its clock, what a site publishes
beside the devices, what the domain does around each tick (a virtual world applying actions), how
the results are scored against the simulator's ground truth, the summary's domain rows and a plot.
The platform owns the rest: flags, endpoints, the cloud, the simulated and firmware devices, the
malformed messages, the signed roll-out, waiting for the store, latencies, the summary table,
summary.json and the dashboard.

    class PlantScenario(Scenario):
        full = Defaults(subjects=20, duration="21d", wall_s=60.0)
        quick = Defaults(subjects=6, duration="6d", wall_s=10.0)
        table = ("risk_auroc", "iso_auroc", ...)

        def population(self): return simulate_fleet(...)
        def ticks(self): return [...]
        def evaluate(self, run): return {...}
"""

from __future__ import annotations

import argparse
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from shared.domain import Domain

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"24h"``, ``"21d"``, ``"30m"``, ``"90s"`` -> seconds (> 0); ValueError naming the text otherwise."""
    m = _DURATION_RE.match(str(text))
    if not m or not float(m.group(1)) > 0:
        raise ValueError(f"{text!r} is not a duration: give a positive number with a unit, e.g. 24h, 21d, 30m, 90s")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_S[unit] and (seconds / _UNIT_S[unit]) == round(seconds / _UNIT_S[unit], 3):
            return f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Defaults:
    """A demo size: subjects, simulated duration, and how long the run should take on the wall clock
    (``--speed auto``); ``extra`` sets the domain's own flags."""

    subjects: int
    duration: str
    wall_s: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoRun:
    """One demo run as the scenario's hooks see it (filled in by the platform as it goes)."""

    args: argparse.Namespace
    domain: Domain
    metrics: dict[str, Any]
    subjects: Sequence[Any] = ()
    ticks: Sequence[float] = ()
    day0_ms: int = 0
    start_ms: dict[str, int] = field(default_factory=dict)
    mqtt: str = ""
    store_url: str = ""
    cloud: Any = None  #: shared.runtime.cloud.Cloud while the run is live
    fleet: Any = None  #: the simulated devices (shared.runtime.fleet.DeviceFleet)
    firmware: Any = None  #: the firmware devices (shared.runtime.firmware_fleet.FirmwareFleet) or None
    results: list[dict] = field(default_factory=list)  #: every result message the cloud published
    last_seq: dict[str, int] = field(default_factory=dict)  #: the seq each device published last
    public_key: Path | None = None

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def duration_s(self) -> float:
        return float(self.args.duration_s)


class Scenario(ABC):
    """A domain's demo: subclass it, name it in the domain's hooks (``DomainHooks.scenario``)."""

    #: the demo's size by default, and with ``--quick`` (quick models, about a minute in all)
    full: ClassVar[Defaults]
    quick: ClassVar[Defaults]
    #: the summary's domain rows printed in the table after the platform's rows
    table: ClassVar[tuple[str, ...]] = ()
    #: the fewest subjects the scenario makes sense with
    min_subjects: ClassVar[int] = 2
    #: measurements the service stores beside the streams' own (counted in the summary's store_points)
    measurements: ClassVar[tuple[str, ...]] = ()

    def __init__(self, run: DemoRun):
        self.run = run
        self.args = run.args

    # -- flags ---------------------------------------------------------------------------------------
    @classmethod  # noqa: B027 - optional hook
    def add_arguments(cls, ap: argparse.ArgumentParser) -> None:
        """The domain's own flags (default ``None``: the platform fills them from ``full``/``quick.extra``)."""

    @classmethod
    def check_arguments(cls, args: argparse.Namespace) -> str | None:
        """An error message for a bad combination of the domain's flags, or None."""
        return None

    @classmethod
    def auto_qemu(cls, args: argparse.Namespace) -> bool:
        """Whether ``--qemu auto`` may put a device under QEMU in this run (False: 'auto' means 0, e.g. when
        the run is too long for the emulated Cortex-M4)."""
        return True

    # -- the population and its clock ---------------------------------------------------------------
    @abstractmethod
    def population(self) -> Sequence[Any]:
        """The subjects (unique ``id``; ``window(t_end_s)``), simulated with ``args.seed``."""

    @abstractmethod
    def ticks(self) -> Sequence[float]:
        """Window end times in simulated seconds from t = 0, one device window per subject each."""

    def day0_ms(self) -> int:
        """Epoch ms of t = 0: UTC midnight far enough back that the whole run lies in the past."""
        from shared.runtime.fleet import utc_midnight_ms

        return utc_midnight_ms(days_ago=int(math.ceil(self.run.duration_s / 86400.0)) + 1)

    def start_ms(self, subject: Any, day0_ms: int) -> int:
        """Epoch ms of one subject's t = 0 (healthcare: the admission time)."""
        return day0_ms

    def describe(self) -> str:
        """One line printed before the run."""
        d = self.run.domain
        return (f"{d.name}: {len(self.run.subjects)} {d.subject}s x {format_duration(self.run.duration_s)}, "
                f"{len(self.run.ticks)} windows each (seed {self.args.seed})")

    # -- what else publishes -------------------------------------------------------------------------
    def site_feed(self, subjects: Sequence[Any], start_ms: dict[str, int]) -> Iterable[tuple[float, str, str, dict]]:
        """A site's messages for ``subjects`` in time order, ``(t_s, device, stream, message)``: published
        at the first tick that reaches ``t_s`` (healthcare: the ward's charts). None by default."""
        return ()

    def firmware_options(self, subjects: Sequence[Any]) -> dict[str, Any]:
        """Extra keyword arguments of :class:`shared.runtime.firmware_fleet.FirmwareFleet` (models, their ids,
        provisioning arguments, ``subjects`` to wrap them, ``stop_timeout_s``)."""
        return {}

    def firmware_started(self, firmware: Any) -> None:  # noqa: B027 - optional hook
        """Called once the firmware devices run (e.g. to learn the seq each starts at)."""

    # -- around each tick ----------------------------------------------------------------------------
    def start(self) -> None:  # noqa: B027 - optional hook
        """Before the first tick, the cloud and the devices up (a world client connects here)."""

    def before_tick(self, i: int, t_s: float) -> None:  # noqa: B027 - optional hook
        """Before the devices publish the windows ending at ``t_s``."""

    def after_tick(self, i: int, t_s: float) -> None:  # noqa: B027 - optional hook
        """After they did (a world waits for the actions and applies them here)."""

    def finish(self) -> dict[str, Any]:
        """After the last result is stored, before the cloud stops: read the service's state; the
        returned rows join the summary."""
        return {}

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` took (called even when the run fails)."""

    def on_result(self, msg: dict) -> None:  # noqa: B027 - optional hook
        """Every result message the cloud publishes (from the service's thread)."""

    # -- the live loop (shared.runtime.live_loop) ------------------------------------------------------
    def window_truth(self, device: str, t_s: float) -> int | None:
        """The simulator's truth for the event the cloud's large model scores, on one device window ending at
        ``t_s``: 1 when the event follows within the model's horizon, 0 when not, None when the window does not
        count (after the event) or the scenario knows no truth. The live loop's fleet metric reads it."""
        return None

    def teacher_score(self, msg: dict) -> float | None:
        """The cloud large model's event probability in one of its result messages (default: ``risk``), the
        label the live loop distils from; None when the message carries none."""
        v = msg.get("risk")
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 else None

    # -- the verdict ---------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """The summary's domain rows: results scored against the ground truth, the baseline beside the
        large model, and the training run's held-out figures."""

    def plot(self) -> Path | None:
        """A PNG of the run under ``run.out`` (None when there is nothing to show)."""
        return None
