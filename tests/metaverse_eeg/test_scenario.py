"""The demo's world on the platform's verbs: its sizes and own flag, and users that advance the same way
whether the world or the headset moves them (no extra random draws)."""

from __future__ import annotations

import pytest

from shared.domain import get


def test_quick_and_full_sizes_and_the_action_timeout_flag(capsys):
    from shared.runtime.demo import parse_demo_args

    d = get("metaverse_eeg")
    quick = parse_demo_args(d, ["--quick", "--firmware", "0", "--qemu", "0"])
    assert (quick.subjects, quick.duration, quick.action_timeout_s) == (3, "5m", 30.0)
    full = parse_demo_args(d, ["--firmware", "0", "--qemu", "0", "--action-timeout-s", "5"])
    assert (full.subjects, full.duration, full.action_timeout_s) == (8, "30m", 5.0)
    assert quick.wall_s == full.wall_s == 0.0  # the closed loop sets the pace: the platform never sleeps
    with pytest.raises(SystemExit) as exc:
        parse_demo_args(d, ["--quick", "--firmware", "0", "--qemu", "0", "--action-timeout-s", "0"])
    assert exc.value.code == 2 and "--action-timeout-s" in capsys.readouterr().err


def test_ticks_are_the_session_windows():
    import argparse

    from shared.runtime.scenario import DemoRun

    d = get("metaverse_eeg")
    args = argparse.Namespace(subjects=3, duration_s=300.0, seed=2026, action_timeout_s=30.0)
    scen = d.hooks.scenario(DemoRun(args=args, domain=d, metrics={}))
    users = scen.population()
    assert [u.id for u in users] == [u.id for u in d.hooks.simulate(3, 300.0 / 3600.0, 2026)]
    ticks = scen.ticks()
    assert len(ticks) == 30 and ticks[0] == 4.0 and ticks[-1] == 294.0


def test_windows_advance_the_user_and_advancing_twice_draws_nothing():
    d = get("metaverse_eeg")
    a, b = d.hooks.simulate(1, 0.05, 9)[0], d.hooks.simulate(1, 0.05, 9)[0]
    got = list(a.windows())
    assert len(got) == len(a.cfg.times_s) and a.t_s == pytest.approx(float(a.cfg.times_s[-1]))
    for t, w in zip(a.cfg.times_s, got, strict=True):
        b.advance(float(t))
        state = (b.v, b.a, b.t_s)
        b.advance(float(t))  # the headset after the world: a no-op
        assert (b.v, b.a, b.t_s) == state and (b.window(float(t)).eeg == w.eeg).all()
    assert (a.v, a.a) == (b.v, b.a)
