"""`--firmware auto` shrinks with a small fleet (a 2-wearable demo starts); explicit counts are checked."""

from __future__ import annotations

import shutil

import pytest

from shared.runtime.demo import firmware_counts


@pytest.mark.parametrize("devices", [2, 3, 20])
def test_auto_firmware_leaves_a_simulated_device(devices):
    n_fw, n_qemu = firmware_counts("demo", "auto", "auto", devices)
    has_cc = bool(shutil.which("cc") or shutil.which("gcc"))
    assert n_fw == (min(2, devices - 1) if has_cc else 0)
    assert 0 <= n_qemu <= n_fw < devices


def test_explicit_counts_that_leave_no_simulated_device_are_refused():
    with pytest.raises(SystemExit, match="leaves no simulated device of 2"):
        firmware_counts("demo", "2", "0", 2)
    with pytest.raises(SystemExit, match="exceeds --firmware"):
        firmware_counts("demo", "1", "2", 5)
    with pytest.raises(SystemExit, match="must be 'auto' or a number"):
        firmware_counts("demo", "two", "0", 5)
