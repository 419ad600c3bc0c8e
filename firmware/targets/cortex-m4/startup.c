/*
 * Cortex-M4 startup for mps2-an386: vector table, reset handler (FPU on, .data copy, .bss zero,
 * stack painting), semihosting helpers, SysTick cycle counter and stack high-water measurement.
 */
#include <stdint.h>

#include "m4_support.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

#define STACK_PAINT 0xC5C5C5C5u
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

/* Entry 0 is the initial stack pointer, the others handlers: a union keeps both ISO C (-pedantic). */
typedef union {
  uint32_t *sp;
  void (*handler)(void);
} vector_entry;

__attribute__((section(".vectors"), used)) static const vector_entry vectors[16] = {
    {.sp = &_estack}, /* initial SP */
    {.handler = Reset_Handler}, {.handler = Default_Handler}, {.handler = Default_Handler}, /* NMI, HardFault */
    {.handler = Default_Handler}, {.handler = Default_Handler}, /* MemManage, BusFault */
    {.handler = Default_Handler}, {0}, {0}, {0}, {0},           /* UsageFault, reserved x 4 */
    {.handler = Default_Handler}, {.handler = Default_Handler}, /* SVC, DebugMon */
    {0}, {.handler = Default_Handler},                          /* reserved, PendSV */
    {.handler = SysTick_Handler},
};

/* ---- semihosting ------------------------------------------------------ */

int m4_semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void m4_exit(int code) {
  uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)code;
  m4_semihost(0x20, block); /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}

void Default_Handler(void) {
  static const char msg[] = "cortex-m4: unexpected exception\n";
  uint32_t block[3] = {2u, (uint32_t)msg, sizeof msg - 1}; /* fd 2 is opened by initialise_monitor_handles */
  m4_semihost(0x05, block);                                /* SYS_WRITE */
  m4_exit(3);
}

/* ---- cycle counter: SysTick on the core clock, with a wrap counter ------ */

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void m4_cycles_start(void) {
  SYST_CSR = 0;
  SYST_RVR = 0x00FFFFFFu;
  SYST_CVR = 0;
  systick_wraps = 0;
  SYST_CSR = 0x7u; /* enable, interrupt, processor clock */
  while (SYST_CVR == 0u) { /* the counter reads 0 until its first reload from RVR */
  }
  systick_wraps = 0;
}

uint64_t m4_cycles(void) {
  uint32_t w1, v, w2;
  do { /* consistent read across a wrap */
    w1 = systick_wraps;
    v = SYST_CVR;
    w2 = systick_wraps;
  } while (w1 != w2);
  return (uint64_t)w1 * 0x01000000u + (0x00FFFFFFu - v);
}

/* ---- stack high-water ------------------------------------------------- */

__attribute__((noinline)) void m4_stack_paint(void) {
  uint32_t *p = &_sstack;
  uint32_t *limit = (uint32_t *)__builtin_frame_address(0) - 32;
  while (p < limit) *p++ = STACK_PAINT;
}

uint32_t m4_stack_high_water(void) {
  const uint32_t *p = &_sstack;
  while (p < &_estack && *p == STACK_PAINT) p++;
  return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)p);
}

uint32_t m4_stack_size(void) { return (uint32_t)((const uint8_t *)&_estack - (const uint8_t *)&_sstack); }

/* ---- command line (semihosting SYS_GET_CMDLINE: QEMU passes the kernel name and -append) ---- */

static char cmdline[512];
static char *argv_buf[32];

static int split_cmdline(void) {
  uint32_t block[2];
  int argc = 0;
  char *p = cmdline;
  block[0] = (uint32_t)cmdline;
  block[1] = sizeof cmdline - 1;
  if (m4_semihost(0x15, block) != 0) return 0;
  cmdline[block[1]] = '\0';
  while (*p && argc < 31) {
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
  int argc;
  SCB_CPACR |= (0xFu << 20); /* CP10, CP11 full access: the FPU, before any float instruction */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  for (dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  m4_stack_paint();
  initialise_monitor_handles();
  argc = split_cmdline();
  m4_exit(main(argc, argv_buf));
}
