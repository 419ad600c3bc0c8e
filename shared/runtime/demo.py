"""What every ``make demo-<domain>`` does alike: firmware counts, rolling out a signed update, waiting
until everything published is stored, latencies, the summary table and summary.json.

A domain's demo module keeps its scenario (its fleet, its scoring against ground truth, its plot) and
calls these for the rest.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def firmware_counts(prog: str, firmware: str, qemu: str, devices: int) -> tuple[int, int]:
    """Resolve ``--firmware``/``--qemu`` ('auto' or a number) against the installed toolchains."""

    def number(name: str, value: str, auto: int) -> int:
        if value == "auto":
            return auto
        if not value.isdigit():
            raise SystemExit(f"{prog}: --{name} must be 'auto' or a number, got {value!r}")
        return int(value)

    has_arm = bool(shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"))
    n_fw = number("firmware", firmware, 2 if shutil.which("cc") or shutil.which("gcc") else 0)
    n_qemu = number("qemu", qemu, 1 if has_arm and n_fw > 0 else 0)
    if n_qemu > n_fw:
        raise SystemExit(f"{prog}: --qemu {n_qemu} exceeds --firmware {n_fw}")
    if n_fw >= devices:
        raise SystemExit(f"{prog}: --firmware {n_fw} leaves no simulated device of {devices}")
    return n_fw, n_qemu


def roll_out_update(publish: Callable[[str, str, dict], None], domain: str, devices: Sequence[str],
                    model_name: str, version: int, tflite: bytes, private_key: Path) -> None:
    """Cloud -> devices: a signed model on each device's retained ``model`` topic.

    One extra copy, sent first to the first device, has one base64 character changed on the way: the
    device must reject it (hash and signature no longer match) and keep its model.
    """
    from shared.security.model_update import sign_update

    now_ms = int(time.time() * 1000)
    forged = sign_update(domain, devices[0], model_name, version, tflite, private_key, 0, now_ms)
    b64 = forged["tflite_b64"]
    forged["tflite_b64"] = b64[:40] + ("A" if b64[40] != "A" else "B") + b64[41:]
    publish(devices[0], "model", forged)
    for seq, device in enumerate(devices, start=1):
        publish(device, "model", sign_update(domain, device, model_name, version, tflite, private_key, seq, now_ms))


def wait_stored(cloud: Any, published: int, bad: int, timeout_s: float = 60.0) -> int:
    """Wait until the service has stored every published inference and dead-lettered the bad ones."""
    deadline = time.monotonic() + timeout_s
    stored = 0
    while time.monotonic() < deadline:
        stored = cloud.store.count("inference")
        dead = cloud.consumer.counts.get("deadletters", 0)
        if stored >= published and dead >= bad and cloud.service.idle:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # let the last batch's results go out
    return stored


def percentiles_ms(sent_at: dict, done_at: dict) -> dict[str, float | None]:
    """p50 and p99 of done - sent (seconds -> ms) over the keys both have."""
    lat = [1000 * (done_at[k] - sent_at[k]) for k in done_at if k in sent_at]
    if not lat:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def print_table(title: str, summary: dict, keys: Sequence[str]) -> None:
    width = max(len(k) for k in keys)
    print("\n" + "-" * (width + 16))
    print(f"{title:<{width}}  {'value':>12}")
    print("-" * (width + 16))
    for k in keys:
        v = summary.get(k)
        text = "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        print(f"{k:<{width}}  {text:>12}")
    print("-" * (width + 16), flush=True)


def write_summary(out: Path, summary: dict) -> Path:
    path = Path(out) / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return path
