/*
 * STM32F4 startup: vector table (Cortex-M4 system exceptions + the console USART's IRQ), reset
 * handler (FPU on, .data copied from flash, .bss zeroed, stack painted, clocks, SysTick, USART),
 * main() with the options baked in at build time (TL_FW_ARGS, "--device w1 --max-windows 0"), and
 * what happens when main returns: QEMU rows exit through semihosting, boards sleep in WFI.
 * ST's startup_stm32f4xx.s + system_stm32f4xx.c (CMSIS) would replace this file and clock.c.
 */
#include <stdint.h>

#include "stm32f4_bsp.h"
#include "stm32f4_regs.h"

#ifndef TL_FW_ARGS
#define TL_FW_ARGS ""
#endif

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sccm, _eccm, _sstack, _estack;
extern int main(int argc, char **argv);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
void stm32_usart_irq(void);

#define STACK_PAINT 0xC5C5C5C5u
#define N_VECTORS (16 + 82) /* system exceptions + the F405/F407 peripheral IRQs (RM0090 table 61) */
#if TL_BOARD_USART == 1
#define CON_VECTOR (16 + 37)
#elif TL_BOARD_USART == 2
#define CON_VECTOR (16 + 38)
#else
#define CON_VECTOR (16 + 71)
#endif

typedef union { /* entry 0 is the initial stack pointer, the others handlers */
  uint32_t *sp;
  void (*handler)(void);
} vector_entry;

/* IRQs that no driver enables stay 0: the NVIC never takes them. */
__attribute__((section(".vectors"), used)) static const vector_entry vectors[N_VECTORS] = {
    [0] = {.sp = &_estack},
    [1] = {.handler = Reset_Handler},
    [2] = {.handler = Default_Handler},  /* NMI */
    [3] = {.handler = Default_Handler},  /* HardFault */
    [4] = {.handler = Default_Handler},  /* MemManage */
    [5] = {.handler = Default_Handler},  /* BusFault */
    [6] = {.handler = Default_Handler},  /* UsageFault */
    [11] = {.handler = Default_Handler}, /* SVCall */
    [12] = {.handler = Default_Handler}, /* DebugMon */
    [14] = {.handler = Default_Handler}, /* PendSV */
    [15] = {.handler = SysTick_Handler},
    [CON_VECTOR] = {.handler = stm32_usart_irq},
};

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void stm32_exit(int code) {
#if TL_BOARD_QEMU
  uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)code;
  semihost(0x20, block); /* SYS_EXIT_EXTENDED: only QEMU rows, a bkpt without a debugger faults */
#else
  (void)code;
  (void)semihost;
#endif
  for (;;) __asm__ volatile("wfi");
}

void Default_Handler(void) { stm32_exit(3); }

uint32_t stm32_stack_high_water(void) {
  const uint32_t *p = &_sstack;
  while (p < &_estack && *p == STACK_PAINT) p++;
  return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}

uint32_t stm32_stack_size(void) { return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)&_sstack); }

__attribute__((noinline)) static void stack_paint(void) {
  uint32_t *p = &_sstack;
  uint32_t *limit = (uint32_t *)__builtin_frame_address(0) - 32;
  while (p < limit) *p++ = STACK_PAINT;
}

static char args[] = TL_FW_ARGS;
static char *argv_buf[24];

static int split_args(void) {
  int argc = 0;
  char *p = args;
  argv_buf[argc++] = (char *)"tinylarge";
  while (*p && argc < 23) {
    while (*p == ' ') *p++ = '\0';
    if (!*p) break;
    argv_buf[argc++] = p;
    while (*p && *p != ' ') p++;
  }
  argv_buf[argc] = 0;
  return argc;
}

void Reset_Handler(void) {
  uint32_t *src = &_sidata, *dst;
  uint32_t hz;
  SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access: the FPU, before any float instruction */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  for (dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  for (dst = &_sccm; dst < &_eccm;) *dst++ = 0; /* CCM: the app's APP_CCM sections */
  stack_paint();
  hz = stm32_clock_init();
  stm32_systick_init(hz);
  stm32_usart_init(hz);
  __asm__ volatile("cpsie i" ::: "memory");
  stm32_exit(main(split_args(), argv_buf));
}
