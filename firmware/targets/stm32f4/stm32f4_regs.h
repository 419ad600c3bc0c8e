/*
 * STM32F4 registers the TinyLarge board support touches, from the reference manuals (RM0090 for
 * F405/F407/F415/F417, RM0368 for F401, RM0390 for F446): addresses, offsets and bit positions,
 * nothing else. This is the file to replace by ST's CMSIS device header (stm32f4xx.h from
 * STM32CubeF4, Drivers/CMSIS/Device/ST/STM32F4xx/Include): the names below map one to one onto
 * RCC->CR, RCC->PLLCFGR, USART2->SR ... A project that prefers ST's HAL keeps tl_hal_stm32f4.c's
 * functions and calls HAL_Init / SystemClock_Config / HAL_UART_Transmit from clock.c and usart.c.
 */
#ifndef STM32F4_REGS_H
#define STM32F4_REGS_H

#include <stdint.h>

#define TL_REG(addr) (*(volatile uint32_t *)(addr))

/* ---- Cortex-M4 system control (ARMv7-M ARM) ---- */
#define SCB_CPACR TL_REG(0xE000ED88u)
#define SYST_CSR TL_REG(0xE000E010u)
#define SYST_RVR TL_REG(0xE000E014u)
#define SYST_CVR TL_REG(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1: processor clock (HCLK), 0: HCLK / 8 */

/* ---- RCC (RM0090 section 7.3) ---- */
#define RCC_BASE 0x40023800u
#define RCC_CR TL_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR TL_REG(RCC_BASE + 0x04u)
#define RCC_CFGR TL_REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR TL_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR TL_REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR TL_REG(RCC_BASE + 0x44u)
#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR_PLLSRC_HSE (1u << 22)
#define RCC_CFGR_SW_PLL 0x2u         /* bits 1:0 */
#define RCC_CFGR_SWS_MASK (0x3u << 2) /* bits 3:2 */
#define RCC_CFGR_SWS_PLL (0x2u << 2)
#define RCC_CFGR_PPRE1_SHIFT 10u
#define RCC_CFGR_PPRE2_SHIFT 13u
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_AHB1ENR_GPIOCEN (1u << 2)
#define RCC_APB1ENR_USART2EN (1u << 17)
#define RCC_APB2ENR_USART1EN (1u << 4)
#define RCC_APB2ENR_USART6EN (1u << 5)

/* ---- embedded flash interface (RM0090 section 3.9) ---- */
#define FLASH_ACR TL_REG(0x40023C00u)
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* ---- GPIO (RM0090 section 8.4) ---- */
#define GPIOA_BASE 0x40020000u
#define GPIOC_BASE 0x40020800u
#define GPIO_MODER(base) TL_REG((base) + 0x00u)
#define GPIO_OSPEEDR(base) TL_REG((base) + 0x08u)
#define GPIO_PUPDR(base) TL_REG((base) + 0x0Cu)
#define GPIO_AFR(base, pin) TL_REG((base) + ((pin) < 8 ? 0x20u : 0x24u))

/* ---- USART (RM0090 section 30.6) ---- */
#define USART1_BASE 0x40011000u
#define USART2_BASE 0x40004400u
#define USART6_BASE 0x40011400u
#define USART_SR(base) TL_REG((base) + 0x00u)
#define USART_DR(base) TL_REG((base) + 0x04u)
#define USART_BRR(base) TL_REG((base) + 0x08u)
#define USART_CR1(base) TL_REG((base) + 0x0Cu)
#define USART_CR2(base) TL_REG((base) + 0x10u)
#define USART_CR3(base) TL_REG((base) + 0x14u)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_UE (1u << 13)

#endif /* STM32F4_REGS_H */
