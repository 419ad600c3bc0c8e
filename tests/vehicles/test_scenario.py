"""The vehicles demo's scenario (its clock, --qemu auto, the firmware units) and hooks, without a broker."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from shared.domain import get
from shared.runtime.demo import parse_demo_args
from shared.runtime.scenario import DemoRun


def _scenario(argv: list[str]):
    d = get("vehicles")
    args = parse_demo_args(d, [*argv, "--firmware", "0", "--qemu", "0"])
    scen = d.hooks.scenario(DemoRun(args=args, domain=d, metrics={}))
    return args, scen


def test_quick_clock_is_trips_per_day_over_the_duration():
    args, scen = _scenario(["--quick"])
    assert (args.subjects, args.duration, args.trips_per_day, args.wall_s) == (6, "2d", 4, 8.0)
    assert scen.ticks() == [(i + 1) * 21600.0 for i in range(8)]
    vehicles = scen.population()
    assert len({v.id for v in vehicles}) == 6


@pytest.mark.parametrize(("argv", "allowed"), [(["--quick"], True), (["--quick", "--duration", "5d"], False),
                                               (["--trips-per-day", "2", "--duration", "6d"], True)])
def test_qemu_auto_only_on_short_runs(argv, allowed):
    d = get("vehicles")
    args, _ = _scenario(argv)
    assert d.hooks.scenario.auto_qemu(args) is allowed


def test_trips_per_day_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exc:
        _scenario(["--trips-per-day", "0"])
    assert exc.value.code == 2 and "--trips-per-day" in capsys.readouterr().err


def test_firmware_units_continue_from_their_first_seq_and_report_trips():
    _, scen = _scenario(["--quick"])
    scen.run.ticks = scen.ticks()
    vehicles = scen.population()
    opts = scen.firmware_options(vehicles[:1])
    assert opts["stop_timeout_s"] == 60.0  # no QEMU unit
    (unit,) = opts["subjects"]
    scen.firmware_started(SimpleNamespace(devices=[SimpleNamespace(subject=unit, seq_start=40)]))
    trip = unit.window(2 * 21600.0)  # the second tick: trip seq_start + 1
    assert (trip.vehicle, trip.index) == (vehicles[0].id, 41)
    assert scen.shown["trip"] is trip


def test_extract_gives_one_tiny_model_row_per_candidate_window():
    hooks = get("vehicles").hooks
    trip = next(iter(hooks.simulate(1, 24.0, 5)[0].windows()))
    rows = hooks.to_vector(hooks.extract(trip))
    assert rows.dtype == np.float32 and rows.shape[1] == len(get("vehicles").feature_names) and len(rows) > 0


def test_readers_import_no_simulator():
    code = "import sys, vehicles._readers; sys.exit('vehicles.signals' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
