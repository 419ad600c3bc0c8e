/*
 * STM32F4 target: the TinyLarge HAL on the console USART, and the newlib system calls under it.
 *
 *   sensor  tlsensor text (hal/tl_sensor_text.h) arriving on the USART's RX, read through stdin;
 *           the byte 0x04 (EOT) ends the input. Built with a sensor file (SENSOR_FILE=...), the text
 *           is a const array in flash instead, for a self-contained demo.
 *   output  framed messages (net/tl_frame.h) on the USART's TX; the gateway bridges them to MQTT
 *   clock   SysTick milliseconds; once a window carries "t <epoch_ms>", the epoch is learnt from it
 *   log     log frames (kind 2) on the same USART, which the gateway shows and never publishes
 *   network none: tl_hal_net_publish returns TL_HAL_NO_NET, so the app frames its messages
 */
#define _POSIX_C_SOURCE 200809L /* fmemopen, for windows kept in flash */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "stm32f4_bsp.h"
#include "tl_frame.h"
#include "tl_hal.h"
#include "tl_sensor_text.h"

#define EOT 0x04

static FILE *input;
static int64_t epoch_offset_ms; /* epoch ms at millis() == 0, once known */

#ifdef TL_SENSOR_FLASH
extern const char tl_sensor_flash_text[];
extern const unsigned long tl_sensor_flash_len;
#endif

int tl_hal_init(const tl_identity *id, int argc, char **argv) {
  (void)id;
  (void)argc;
  (void)argv;
#ifdef TL_SENSOR_FLASH
  input = fmemopen((void *)tl_sensor_flash_text, tl_sensor_flash_len, "r");
#else
  input = stdin;
#endif
  return input ? TL_HAL_OK : TL_HAL_ERROR;
}

int tl_hal_sensor_read(const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms) {
  int rc = tl_sensor_text_read(input, set, bufs, end_ts_ms);
  if (rc == TL_HAL_OK && *end_ts_ms >= 0) epoch_offset_ms = *end_ts_ms - (int64_t)stm32_millis();
  return rc;
}

int64_t tl_hal_now_ms(void) { return epoch_offset_ms + (int64_t)stm32_millis(); }

int tl_hal_write(const uint8_t *data, size_t n) {
  stm32_usart_write(data, n);
  return (int)n;
}

int tl_hal_net_publish(const char *stream, const char *payload, size_t n, int retained) {
  (void)stream;
  (void)payload;
  (void)n;
  (void)retained;
  return TL_HAL_NO_NET;
}

void tl_hal_idle_ms(uint32_t ms) {
  uint64_t until = stm32_millis() + ms;
  while (stm32_millis() < until) __asm__ volatile("wfi");
}

void tl_hal_log(const char *line) {
  static uint8_t frame[256 + TL_FRAME_OVERHEAD];
  size_t n = strlen(line);
  int len = tl_frame_encode(TL_FRAME_LOG, (const uint8_t *)line, n > 256 ? 256 : n, frame, sizeof frame);
  if (len > 0) stm32_usart_write(frame, (size_t)len);
}

void tl_hal_shutdown(void) {
  char line[96];
  snprintf(line, sizeof line, "stm32f4: stack high-water %lu of %lu bytes, sysclk %lu Hz, rx overruns %lu",
           (unsigned long)stm32_stack_high_water(), (unsigned long)stm32_stack_size(),
           (unsigned long)stm32_sysclk_hz(), (unsigned long)stm32_usart_overruns());
  tl_hal_log(line);
#ifdef TL_SENSOR_FLASH
  if (input) fclose(input);
#endif
  input = 0;
}

/* ---- newlib system calls: stdin from the USART, stdout/stderr as log frames, a heap below the stack ---- */

int _read(int fd, char *buf, int n);
int _write(int fd, const char *buf, int n);
int _close(int fd);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
int _lseek(int fd, int off, int whence);
void *_sbrk(ptrdiff_t incr);
int _kill(int pid, int sig);
int _getpid(void);
void _exit(int code);

int _read(int fd, char *buf, int n) {
  int i = 0;
  if (fd != 0) {
    errno = EBADF;
    return -1;
  }
  while (i < n) { /* return a line at a time, so that a window is parsed as soon as it has arrived */
    int c = stm32_usart_getc();
    if (c == EOT) break;
    buf[i++] = (char)c;
    if (c == '\n') break;
  }
  return i;
}

int _write(int fd, const char *buf, int n) {
  char line[129];
  int off = 0;
  if (fd != 1 && fd != 2) {
    errno = EBADF;
    return -1;
  }
  while (off < n) {
    int k = n - off < 128 ? n - off : 128;
    memcpy(line, buf + off, (size_t)k);
    line[k] = '\0';
    tl_hal_log(line);
    off += k;
  }
  return n;
}

int _close(int fd) { return fd <= 2 ? 0 : -1; }

int _fstat(int fd, struct stat *st) {
  (void)fd;
  memset(st, 0, sizeof *st);
  st->st_mode = S_IFCHR;
  return 0;
}

int _isatty(int fd) { return fd <= 2; }

int _lseek(int fd, int off, int whence) {
  (void)fd;
  (void)off;
  (void)whence;
  errno = ESPIPE;
  return -1;
}

extern uint8_t end, _sstack; /* linker script: the heap runs from the end of .bss to the stack */

void *_sbrk(ptrdiff_t incr) {
  static uint8_t *brk = &end;
  uint8_t *prev = brk;
  if (incr > &_sstack - brk) {
    errno = ENOMEM;
    return (void *)-1;
  }
  brk += incr;
  return prev;
}

int _kill(int pid, int sig) {
  (void)pid;
  (void)sig;
  errno = EINVAL;
  return -1;
}

int _getpid(void) { return 1; }

void _exit(int code) { stm32_exit(code); }
