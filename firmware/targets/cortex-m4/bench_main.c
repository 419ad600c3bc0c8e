/*
 * Model benchmark for the footprint report (shared/tiny/report.py), run under
 * qemu-system-arm -M mps2-an386 -icount shift=0: one warm-up inference, then `runs` timed ones.
 * Prints one line on semihosting stdout:
 *   TLBENCH model=NAME cal_insns=N cal_ticks=T ticks=T runs=R stack_bytes=S stack_size=Z arena=A
 * cal_*: a loop of known length (2 instructions per iteration) timed the same way, so that the
 * report converts SysTick ticks into instructions without assuming QEMU's clock ratio.
 */
#include <stdio.h>

#include "m4_support.h"
#include TL_MODEL_HEADER

#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)
#define IN_SIZE TL_CAT(TL_MODEL_UPPER, _INPUT_SIZE)
#define OUT_SIZE TL_CAT(TL_MODEL_UPPER, _OUTPUT_SIZE)
#define ARENA TL_CAT(TL_MODEL_UPPER, _ARENA_BYTES)
#define INVOKE TL_CAT(TL_MODEL_NAME, _invoke)
#ifndef TL_BENCH_RUNS
#define TL_BENCH_RUNS 20
#endif
#define STR_(x) #x
#define STR(x) STR_(x)

static int8_t in[IN_SIZE], out[OUT_SIZE];

__attribute__((noinline)) static void calibration_loop(uint32_t n) {
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int main(int argc, char **argv) {
  const uint32_t cal_iters = 1000000u;
  uint64_t t0, cal, ticks;
  uint32_t stack, i, runs = TL_BENCH_RUNS;
  int rc = 0, r;
  (void)argc;
  (void)argv;
  for (i = 0; i < IN_SIZE; i++) in[i] = (int8_t)((i * 37u + 11u) & 0xFFu);
  m4_cycles_start();
  t0 = m4_cycles();
  calibration_loop(cal_iters);
  cal = m4_cycles() - t0;
  m4_stack_paint();
  rc |= INVOKE(in, out); /* warm-up (also the stack high-water run) */
  stack = m4_stack_high_water();
  t0 = m4_cycles();
  for (r = 0; r < (int)runs; r++) rc |= INVOKE(in, out);
  ticks = m4_cycles() - t0;
  printf("TLBENCH model=%s cal_insns=%lu cal_ticks=%lu ticks=%lu runs=%lu stack_bytes=%lu stack_size=%lu "
         "arena=%lu out0=%d rc=%d\n",
         STR(TL_MODEL_NAME), (unsigned long)(2u * cal_iters), (unsigned long)cal, (unsigned long)ticks,
         (unsigned long)runs, (unsigned long)stack, (unsigned long)m4_stack_size(), (unsigned long)ARENA,
         (int)out[0], rc);
  fflush(stdout);
  return rc;
}
