"""shared.tiny.report (tinylarge firmware report) on the healthcare model (trained one, or the stand-in):
every figure is measured (flash from arm-none-eabi-size, stack high-water and instructions under QEMU, TFLM arena)."""

from __future__ import annotations

import pytest

from tests._tools import require_tool
from tests.firmware import _fw

pytestmark = pytest.mark.firmware


def test_report_row_for_the_healthcare_model(tmp_path):
    for tool in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"):
        require_tool(tool)
    pytest.importorskip("tflite_micro")
    from shared.tiny.report import measure, table

    row = measure("healthcare", _fw.model(), tmp_path)
    assert "error" not in row, row.get("error")
    # SysTick at 25 MHz against 1 instruction per ns (-icount shift=0): the calibration finds 40
    assert 39.0 < row["insns_per_tick"] < 41.0
    assert row["insns_per_inference"] > 100
    assert 0 < row["stack_bytes"] < 4096 and row["arena_bytes"] <= row["bss_bytes"]
    assert row["ram_bytes"] >= row["bss_bytes"] + row["stack_bytes"]
    assert 0 < row["flash_bytes"] <= row["flash_objects_bytes"] + 4096
    assert row["tflm_arena_bytes"] and row["tflm_arena_bytes"] > 0
    assert row["ram_vs_tflm_arena"] == pytest.approx(row["ram_bytes"] / row["tflm_arena_bytes"], abs=1e-3)
    assert "healthcare" in table([row])
    # the per-core columns: the same bench on the Cortex-M7 (AN500) and M33 (AN505) under QEMU -icount
    cores = row["insns_by_core"]
    assert set(cores) == {"cortex-m4", "cortex-m7", "cortex-m33"} and cores["cortex-m4"] == row["insns_per_inference"]
    assert all(100 < v < 20 * row["insns_per_inference"] for v in cores.values())
    assert str(cores["cortex-m33"]) in table([row])


def test_report_parity_entry_for_the_healthcare_model(tmp_path):
    """The report's parity columns: the compiled C on the host and on the M4 under QEMU, in both arithmetics,
    against LiteRT's reference kernels and TFLite Micro, counted in int8 output values over PARITY_INPUTS
    random inputs."""
    for tool in ("make", "gcc", "arm-none-eabi-gcc", "qemu-system-arm"):
        require_tool(tool)
    from shared.tiny.report import PARITY_INPUTS, parity, table

    p = parity("healthcare", _fw.model(), tmp_path)
    assert "error" not in p, p.get("error")
    assert p["inputs"] == PARITY_INPUTS >= 1000
    for arith in ("litert", "tflm"):  # each arithmetic against its own reference interpreter
        assert p[arith]["values"] == PARITY_INPUTS * 6
        assert p[arith]["host_mismatches"] == 0 and p[arith]["qemu_mismatches"] == 0
    assert "0/0" in table([{"model": "healthcare", "parity": p}])
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(_fw.model().read_bytes()[:200])
    assert "error" in parity("broken", broken, tmp_path)


def test_markdown_table_has_both_arithmetics_and_the_goal():
    """The README table (python -m bench.firmware_report --markdown) from a report's rows: parity of both
    arithmetics per model, the speed goal beside the MLPerf rows, errors kept visible."""
    from shared.tiny.report import markdown_table

    par = {a: {"values": 3000, "host_mismatches": 0, "qemu_mismatches": k} for k, a in enumerate(("litert", "tflm"))}
    report = {"goals": {"insns_per_inference_max": {"mlperf_ad_autoencoder": 400_000}},
              "models": [{"model": "mlperf_ad_autoencoder", "macs": 264192, "flash_bytes": 287452, "ram_bytes": 1916,
                          "insns_per_inference": 390230, "insns_per_mac": 1.477, "tflm_arena_bytes": 17360,
                          "ram_vs_tflm_arena": 0.11, "parity": {**par, "xnnpack_vs_litert_ref_mismatches": 0}},
                         {"model": "broken", "error": "CompileError: op 3 (GATHER) is not supported"}]}
    lines = markdown_table(report).splitlines()
    report["models"][0]["insns_by_core"] = {"cortex-m4": 390230, "cortex-m7": 301234, "cortex-m33": 412345}
    report["apps"] = [{"app": "industrial_iot", "board": "netduinoplus2", "fits": True, "flash_used": 58024,
                       "ram_static": 106200, "stack_reserved": 16384, "ccm_used": 32768, "ccm_total": 65536},
                      {"app": "industrial_iot", "board": "nucleo-f401re", "fits": False,
                       "reason": "RAM (96 KB) overflowed by 40000 bytes"}]
    with_apps = markdown_table(report)
    assert "| 301,234 | 412,345 |" in with_apps.splitlines()[2]
    assert "| `industrial_iot` | 56.7 / 119.7 + 32.0 CCM | does not fit: RAM (96 KB) overflowed" in with_apps
    assert len(lines) == 4 and lines[1].count("---") == lines[0].count("|") - 1
    row = lines[2]
    assert "390,230 (goal <= 400,000)" in row and "0 / 0 of 3,000" in row and "0 / 1 of 3,000" in row
    assert "GATHER" in lines[3]


def test_every_app_on_the_board_rows_or_why_not(tmp_path):
    """The report's app x board table: industrial_iot (classifier + autoencoder, the declared APP_MODELS; its
    32 KB window in CCM) fits the STM32F405 row and is refused by the 96 KB F401 with the overflowing region."""
    require_tool("arm-none-eabi-gcc")
    pytest.importorskip("tensorflow")
    from shared.tiny.board_report import app_sizes, apps_table

    rows = app_sizes(tmp_path, ["industrial_iot"], ["netduinoplus2", "nucleo-f401re"])
    f405, f401 = rows
    assert f405["fits"] and len(f405["models"]) == 2 and "anomaly" in f405["models"][1]
    assert 0 < f405["ccm_used"] <= f405["ccm_total"] == 64 * 1024 and f405["ram_free"] >= 0
    assert not f401["fits"] and "error" not in f401 and "overflowed" in f401["reason"], f401
    assert "does not fit" in apps_table(rows)
