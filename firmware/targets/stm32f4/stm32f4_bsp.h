/*
 * STM32F4 board support for TinyLarge: clock tree, SysTick time base, console USART, stack
 * high-water. Which board is built comes from the board table (shared/tiny/boards.py) as -D flags:
 *   TL_BOARD_CLOCK_HZ, TL_BOARD_HSE_HZ (0 = HSI), TL_BOARD_HSE_BYPASS, TL_BOARD_PLL_M/N/P/Q,
 *   TL_BOARD_APB1_DIV, TL_BOARD_APB2_DIV, TL_BOARD_FLASH_WS, TL_BOARD_USART (1, 2 or 6), TL_BOARD_BAUD,
 *   TL_BOARD_QEMU (the row is emulated: exit through semihosting when main returns).
 */
#ifndef STM32F4_BSP_H
#define STM32F4_BSP_H

#include <stddef.h>
#include <stdint.h>

/* Program flash wait states, the PLL and the bus dividers from the TL_BOARD_* values; returns the
 * SYSCLK in Hz. Without an RCC that answers (QEMU models none: every register reads 0) it leaves
 * the clock alone and returns TL_BOARD_CLOCK_HZ, the frequency the emulator runs the core at. */
uint32_t stm32_clock_init(void);
uint32_t stm32_sysclk_hz(void);
/* 1 kHz SysTick from the processor clock; stm32_millis counts since it started. */
void stm32_systick_init(uint32_t sysclk_hz);
uint64_t stm32_millis(void);

/* Console USART: 8N1 at TL_BOARD_BAUD, TX polled, RX by interrupt into a ring buffer (when it is
 * full the NVIC masks the IRQ and the byte waits in DR: the line is flow-controlled, not dropped). */
void stm32_usart_init(uint32_t sysclk_hz);
void stm32_usart_write(const uint8_t *data, size_t n);
int stm32_usart_getc(void); /* blocks; returns the byte (0..255) */
uint32_t stm32_usart_overruns(void);

uint32_t stm32_stack_high_water(void);
uint32_t stm32_stack_size(void);
void stm32_exit(int code) __attribute__((noreturn));

#endif /* STM32F4_BSP_H */
