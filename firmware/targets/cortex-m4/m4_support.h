/* Cortex-M4 (mps2-an386 under QEMU) support: semihosting, cycle counter, stack high-water. */
#ifndef M4_SUPPORT_H
#define M4_SUPPORT_H

#include <stdint.h>

int m4_semihost(int op, void *arg);
void m4_exit(int code) __attribute__((noreturn));
/* SysTick on the core clock (25 MHz on mps2-an386): 64-bit count since m4_cycles_start. Under
 * qemu -icount shift=0 one instruction is 1 ns of virtual time, so one tick = 40 instructions. */
void m4_cycles_start(void);
uint64_t m4_cycles(void);
/* Paint the unused stack below the caller's frame (done at reset; call again to measure a part). */
void m4_stack_paint(void);
/* Bytes of the stack ever used (first word that lost its paint, measured from the top). */
uint32_t m4_stack_high_water(void);
uint32_t m4_stack_size(void);

#endif /* M4_SUPPORT_H */
