"""Boards as data: one row per development board the firmware builds for (``tinylarge firmware build --board``).

A row names the core and its FPU/DSP extension, the memory map (flash and RAM origin and size, CCM where the
part has it), the clock tree the startup code programs (source, PLL factors, bus dividers, flash wait
states), the console USART the framed messages leave on, the pins to wire to a USB-serial adapter, and the
debug probe's target names for openocd, pyocd and st-flash. The code lives in one folder per *family*
(``firmware/targets/stm32f4/`` for every STM32F4 row, ``firmware/targets/mps2/`` for the MPS2 FPGA images);
a row becomes ``make`` variables and ``-D`` flags (:meth:`Board.make_vars`), never a copied folder.

Facts are from the parts' datasheets and reference manuals (RM0090 for F405/F407, RM0368 for F401), the
boards' user manuals (UM1472 Discovery, UM1724 Nucleo-64) and Arm's MPS2 application notes (AN500, AN505).
"""

from __future__ import annotations

from dataclasses import dataclass

#: -mcpu/-mfpu/-mfloat-abi per core, and whether it has the DSP (SIMD) extension (__ARM_FEATURE_DSP)
CORES = {
    "cortex-m4": {"cpu": "cortex-m4", "fpu": "fpv4-sp-d16", "float_abi": "hard", "dsp": True},
    "cortex-m7": {"cpu": "cortex-m7", "fpu": "fpv5-d16", "float_abi": "hard", "dsp": True},
    "cortex-m33": {"cpu": "cortex-m33", "fpu": "fpv5-sp-d16", "float_abi": "hard", "dsp": True},
}
#: the console USARTs the STM32F4 target drives: bus, TX/RX pins and their alternate function (RM0090 / DS8626)
STM32_USARTS = {1: ("APB2", "PA9", "PA10", 7), 2: ("APB1", "PA2", "PA3", 7), 6: ("APB2", "PC6", "PC7", 8)}


@dataclass(frozen=True)
class Board:
    name: str
    family: str  #: stm32f4 | mps2 (the folder under firmware/targets/)
    part: str  #: the MCU or FPGA image
    core: str  #: a key of CORES
    flash_origin: int
    flash_kb: int
    ram_origin: int
    ram_kb: int
    ccm_kb: int = 0  #: core-coupled RAM (F405/F407), not DMA-reachable
    ccm_origin: int = 0x1000_0000  #: where it is (netduinoplus2: where QEMU, which has no CCM, has RAM instead)
    clock_hz: int = 0  #: SYSCLK the startup code sets
    hse_hz: int = 0  #: external crystal (or ST-LINK MCO bypass); 0 = the 16 MHz HSI drives the PLL
    hse_bypass: bool = False  #: HSE from an external clock signal (Nucleo: the ST-LINK's 8 MHz MCO)
    pll: tuple[int, int, int, int] = (0, 0, 0, 0)  #: M, N, P, Q (RCC_PLLCFGR); all 0 = no PLL
    apb1_div: int = 1
    apb2_div: int = 1
    flash_ws: int = 0  #: FLASH_ACR LATENCY for clock_hz at 3.3 V
    console: str = ""  #: "USART2" (STM32) / "UART0" (MPS2)
    console_pins: str = ""  #: what to wire to a USB-serial adapter (or "ST-LINK VCP")
    baud: int = 115200
    stack_kb: int = 8  #: stack reserved at the top of RAM (the size report's headroom is measured against it)
    qemu_machine: str = ""  #: qemu-system-arm -M, when QEMU emulates the board
    openocd: str = ""  #: openocd -f arguments, e.g. "board/stm32f4discovery.cfg"
    pyocd: str = ""  #: pyocd --target name
    st_flash: bool = False  #: the board has an ST-LINK that st-flash drives
    notes: str = ""
    uart_base: int = 0  #: MPS2 rows: the console UART0's address (CMSDK APB UART; AN505: its Secure alias)

    @property
    def fpu(self) -> str:
        return CORES[self.core]["fpu"]

    @property
    def dsp(self) -> bool:
        return bool(CORES[self.core]["dsp"])

    @property
    def usart(self) -> int:
        """The console USART's number (STM32 rows)."""
        return int(self.console.removeprefix("USART")) if self.console.startswith("USART") else 0

    def pll_hz(self) -> int:
        """SYSCLK the PLL factors give: (HSE or HSI) / M * N / P."""
        m, n, p, _ = self.pll
        src = self.hse_hz or 16_000_000
        return src * n // (m * p) if m else src

    def validate(self) -> None:
        """ValueError naming the field when a row is inconsistent (the build refuses such a row)."""
        if self.core not in CORES:
            raise ValueError(f"board {self.name}: core {self.core!r} is not one of {', '.join(CORES)}")
        if self.family == "stm32f4":
            m, n, p, q = self.pll
            if not (2 <= m <= 63 and 50 <= n <= 432 and p in (2, 4, 6, 8) and 2 <= q <= 15):
                raise ValueError(f"board {self.name}: pll {self.pll} outside RM0090's ranges "
                                 "(M 2..63, N 50..432, P 2/4/6/8, Q 2..15)")
            vco_in = (self.hse_hz or 16_000_000) / m
            if not 1e6 <= vco_in <= 2e6 or not 100e6 <= vco_in * n <= 432e6:
                raise ValueError(f"board {self.name}: PLL input {vco_in / 1e6:.2f} MHz / VCO "
                                 f"{vco_in * n / 1e6:.0f} MHz out of range (1-2 MHz / 100-432 MHz)")
            if self.pll_hz() != self.clock_hz:
                raise ValueError(f"board {self.name}: pll {self.pll} gives {self.pll_hz()} Hz, clock_hz says "
                                 f"{self.clock_hz}")
            if self.usart not in STM32_USARTS:
                raise ValueError(f"board {self.name}: console {self.console!r}: the stm32f4 target drives "
                                 f"{', '.join(f'USART{u}' for u in STM32_USARTS)}")
            if self.clock_hz // self.apb1_div > 42_000_000 or self.clock_hz // self.apb2_div > 84_000_000:
                raise ValueError(f"board {self.name}: APB1 <= 42 MHz and APB2 <= 84 MHz (dividers "
                                 f"{self.apb1_div}, {self.apb2_div})")
        if self.family == "mps2" and not self.uart_base:
            raise ValueError(f"board {self.name}: an MPS2 row names its console UART0's address (uart_base)")
        if self.stack_kb * 1024 >= self.ram_kb * 1024:
            raise ValueError(f"board {self.name}: stack_kb {self.stack_kb} does not fit ram_kb {self.ram_kb}")

    def arch_flags(self) -> list[str]:
        c = CORES[self.core]
        return [f"-mcpu={c['cpu']}", "-mthumb", f"-mfloat-abi={c['float_abi']}", f"-mfpu={c['fpu']}"]

    def make_vars(self) -> dict[str, str]:
        """The row as firmware/Makefile variables (``TARGET=<family>``; BOARD_DEFS reach the C code)."""
        self.validate()
        m, n, p, q = self.pll
        defs = [f"-DTL_BOARD_NAME=\\\"{self.name}\\\"", f"-DTL_BOARD_CLOCK_HZ={self.clock_hz}u",
                f"-DTL_BOARD_BAUD={self.baud}u"]
        if self.family == "stm32f4":
            defs += [f"-DTL_BOARD_HSE_HZ={self.hse_hz}u", f"-DTL_BOARD_HSE_BYPASS={int(self.hse_bypass)}",
                     f"-DTL_BOARD_PLL_M={m}u", f"-DTL_BOARD_PLL_N={n}u", f"-DTL_BOARD_PLL_P={p}u",
                     f"-DTL_BOARD_PLL_Q={q}u", f"-DTL_BOARD_APB1_DIV={self.apb1_div}u",
                     f"-DTL_BOARD_APB2_DIV={self.apb2_div}u", f"-DTL_BOARD_FLASH_WS={self.flash_ws}u",
                     f"-DTL_BOARD_USART={self.usart}"]
        if self.family == "mps2":
            defs.append(f"-DTL_UART0_BASE={self.uart_base:#x}u")
        if self.qemu_machine:
            defs.append("-DTL_BOARD_QEMU=1")  # exit through semihosting at the end of input (QEMU rows only)
        return {"BOARD_ARCH": " ".join(self.arch_flags()), "BOARD_DEFS": " ".join(defs),
                "FLASH_ORIGIN": hex(self.flash_origin), "FLASH_KB": str(self.flash_kb),
                "RAM_ORIGIN": hex(self.ram_origin), "RAM_KB": str(self.ram_kb), "CCM_KB": str(self.ccm_kb),
                "CCM_ORIGIN": hex(self.ccm_origin),
                "STACK_KB": str(self.stack_kb)}


_F4 = {"family": "stm32f4", "core": "cortex-m4", "flash_origin": 0x0800_0000, "ram_origin": 0x2000_0000}
_MPS2 = {"family": "mps2", "hse_hz": 0, "console": "UART0", "console_pins": "MPS2 USB serial (UART0)",
         "clock_hz": 25_000_000, "stack_kb": 64}
_F4["stack_kb"] = 16  # the healthcare app peaks at 7.5 KB (measured under QEMU, see firmware/README.md)

BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("netduinoplus2", part="STM32F405RG", **_F4, flash_kb=1024, ram_kb=128, ccm_kb=64, clock_hz=168_000_000,
          hse_hz=25_000_000, pll=(25, 336, 2, 7), apb1_div=4, apb2_div=2, flash_ws=5, console="USART1",
          console_pins="PA9 TX, PA10 RX (QEMU: -serial)", qemu_machine="netduinoplus2",
          openocd="interface/stlink.cfg target/stm32f4x.cfg", pyocd="stm32f405rg", ccm_origin=0x2002_0000,
          notes="what qemu-system-arm -M netduinoplus2 emulates (USART1 = QEMU's first -serial). QEMU's STM32F405 "
                "has no CCM at 0x10000000 but 192 KB of SRAM at 0x20000000, so this row's 64 KB 'CCM' is that "
                "SRAM's last 64 KB (0x20020000): an app using CCM runs under QEMU; for the silicon build "
                "stm32f4-discovery (same memory, CCM at 0x10000000)"),
    Board("stm32f4-discovery", part="STM32F407VG", **_F4, flash_kb=1024, ram_kb=128, ccm_kb=64,
          clock_hz=168_000_000, hse_hz=8_000_000, pll=(8, 336, 2, 7), apb1_div=4, apb2_div=2, flash_ws=5,
          console="USART2", console_pins="PA2 TX -> adapter RX, PA3 RX <- adapter TX, GND",
          openocd="board/stm32f4discovery.cfg", pyocd="stm32f407vg", st_flash=True,
          notes="STM32F407G-DISC1 (UM1472); its ST-LINK/V2-A has no VCP, so USART2 goes to a 3.3 V adapter"),
    Board("nucleo-f401re", part="STM32F401RE", **_F4, flash_kb=512, ram_kb=96, clock_hz=84_000_000,
          hse_hz=0, pll=(16, 336, 4, 7), apb1_div=2, apb2_div=1, flash_ws=2, console="USART2",
          console_pins="ST-LINK VCP (/dev/ttyACM0; PA2/PA3 via SB13/SB14)",
          openocd="board/st_nucleo_f4.cfg", pyocd="stm32f401retx", st_flash=True,
          notes="Nucleo-64 (UM1724): the console reaches the host over the ST-LINK's virtual COM port"),
    Board("nucleo-f446re", part="STM32F446RE", **_F4, flash_kb=512, ram_kb=128, clock_hz=168_000_000,
          hse_hz=0, pll=(16, 336, 2, 7), apb1_div=4, apb2_div=2, flash_ws=5, console="USART2",
          console_pins="ST-LINK VCP (/dev/ttyACM0; PA2/PA3)",
          openocd="board/st_nucleo_f4.cfg", pyocd="stm32f446retx", st_flash=True,
          notes="run at 168 MHz (the part allows 180 with over-drive, which this startup does not enable)"),
    Board("mps2-an500", part="MPS2 AN500 (Cortex-M7)", core="cortex-m7", flash_origin=0x0000_0000, flash_kb=4096,
          ram_origin=0x2000_0000, ram_kb=4096, qemu_machine="mps2-an500", uart_base=0x4000_4000, **_MPS2,
          notes="FPGA image: images load from the board's microSD (images.txt), no SWD flashing"),
    Board("mps2-an505", part="MPS2+ AN505 (Cortex-M33, secure)", core="cortex-m33", flash_origin=0x1000_0000,
          flash_kb=4096, ram_origin=0x3800_0000, ram_kb=2048, qemu_machine="mps2-an505", uart_base=0x5020_0000,
          **_MPS2,
          notes="runs in the Secure state from the secure aliases of SSRAM1 (code) and SSRAM2 (data)"),
)}


def get(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"board: expected one of {', '.join(BOARDS)}, got {name!r}") from None


def table() -> str:
    """The board table as text (``tinylarge firmware boards``)."""
    rows = [("board", "part", "core", "fpu", "dsp", "flash", "ram", "clock", "console", "probe")]
    for b in BOARDS.values():
        probe = b.pyocd or ("none (microSD)" if b.family == "mps2" else "")
        rows.append((b.name, b.part, b.core, b.fpu, "yes" if b.dsp else "no", f"{b.flash_kb} KB",
                     f"{b.ram_kb} KB" + (f" + {b.ccm_kb} CCM" if b.ccm_kb else ""), f"{b.clock_hz / 1e6:g} MHz",
                     b.console, probe))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
