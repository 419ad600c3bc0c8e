/*
 * Cortex-M4 target (mps2-an386 under qemu-system-arm): the TinyLarge HAL.
 *
 *   sensor  tlsensor text read over semihosting: --input PATH (a host path, opened by QEMU)
 *   output  CMSDK APB UART0 at TL_UART0_BASE (0x40004000): framed messages (net/tl_frame.h); QEMU maps it to
 *           -serial (stdout with -nographic)
 *   clock   semihosting SYS_TIME (seconds) * 1000
 *   log     semihosting stderr
 *   network none: tl_hal_net_publish returns TL_HAL_NO_NET, so the app frames its messages
 */
#include <stdio.h>
#include <string.h>

#include "m4_support.h"
#include "tl_hal.h"
#include "tl_sensor_text.h"

/* UART0: 0x40004000 on AN386 (M4) and AN500 (M7); the MPS2 rows pass -DTL_UART0_BASE (AN505, M33, in the
 * Secure state: 0x50200000, the Secure alias of the SSE-200's UART0, firmware/PORTING.md) */
#ifndef TL_UART0_BASE
#define TL_UART0_BASE 0x40004000u
#endif
#define UART0_BASE TL_UART0_BASE
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10u))

static FILE *input;

static const char *opt(int argc, char **argv, const char *key, const char *dflt) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], key) == 0) return argv[i + 1];
  return dflt;
}

int tl_hal_init(const tl_identity *id, int argc, char **argv) {
  const char *path = opt(argc, argv, "--input", 0);
  (void)id;
  UART_BAUDDIV = 16u;  /* 25 MHz / 16; QEMU only checks that it is >= 16 */
  UART_CTRL = 0x1u;    /* TX enable */
  if (!path) {
    tl_hal_log("cortex-m4: --input PATH is required (pass it with qemu -append)");
    return TL_HAL_ERROR;
  }
  input = fopen(path, "r");
  if (!input) {
    tl_hal_log("cortex-m4: cannot open --input over semihosting");
    return TL_HAL_ERROR;
  }
  return TL_HAL_OK;
}

int tl_hal_sensor_read(const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms) {
  return tl_sensor_text_read(input, set, bufs, end_ts_ms);
}

int64_t tl_hal_now_ms(void) { return (int64_t)m4_semihost(0x11, 0) * 1000; /* SYS_TIME */ }

int tl_hal_write(const uint8_t *data, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    while (UART_STATE & 0x1u) { /* TX buffer full */
    }
    UART_DATA = data[i];
  }
  return (int)n;
}

int tl_hal_net_publish(const char *stream, const char *payload, size_t n, int retained) {
  (void)stream;
  (void)payload;
  (void)n;
  (void)retained;
  return TL_HAL_NO_NET;
}

void tl_hal_idle_ms(uint32_t ms) { (void)ms; }

void tl_hal_shutdown(void) {
  if (input) fclose(input);
  input = 0;
}

void tl_hal_log(const char *line) {
  fputs(line, stderr);
  fputc('\n', stderr);
}
