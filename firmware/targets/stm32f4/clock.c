/*
 * STM32F4 clock tree (RM0090 section 6/7): HSE (crystal or bypass) or HSI -> PLL -> SYSCLK, AHB /1,
 * APB1 and APB2 dividers, flash wait states; then a 1 kHz SysTick from the processor clock.
 * Where ST's HAL is used instead, SystemClock_Config() from a CubeMX project replaces
 * stm32_clock_init() and HAL_InitTick() the SysTick part (keep stm32_millis on HAL_GetTick()).
 */
#include "stm32f4_bsp.h"
#include "stm32f4_regs.h"

#define READY_SPINS 200000u /* bounded waits: a missing crystal leaves the part on HSI, not hung */

static uint32_t sysclk_hz = 16000000u; /* HSI after reset */
static volatile uint64_t millis;

static int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t value) {
  uint32_t i;
  for (i = 0; i < READY_SPINS; i++)
    if ((*reg & mask) == value) return 1;
  return 0;
}

static uint32_t ppre(uint32_t div) { /* APB prescaler field: /1 -> 0, /2 -> 4, /4 -> 5, /8 -> 6, /16 -> 7 */
  uint32_t code = 4u;
  if (div <= 1u) return 0u;
  while (div > 2u) {
    div >>= 1;
    code++;
  }
  return code;
}

uint32_t stm32_clock_init(void) {
  uint32_t src = 0u;
  if (!(RCC_CR & RCC_CR_HSIRDY)) { /* HSI is on and ready out of reset on silicon */
    sysclk_hz = TL_BOARD_CLOCK_HZ;
    return sysclk_hz;
  }
  FLASH_ACR = FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN | TL_BOARD_FLASH_WS; /* before speeding up */
#if TL_BOARD_HSE_HZ
  if (TL_BOARD_HSE_BYPASS) RCC_CR |= RCC_CR_HSEBYP;
  RCC_CR |= RCC_CR_HSEON;
  if (!wait_set(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY)) return sysclk_hz; /* no crystal: stay on HSI */
  src = RCC_PLLCFGR_PLLSRC_HSE;
#endif
  RCC_CFGR = (ppre(TL_BOARD_APB1_DIV) << RCC_CFGR_PPRE1_SHIFT) | (ppre(TL_BOARD_APB2_DIV) << RCC_CFGR_PPRE2_SHIFT);
  RCC_PLLCFGR = TL_BOARD_PLL_M | (TL_BOARD_PLL_N << 6) | (((TL_BOARD_PLL_P / 2u) - 1u) << 16) | src |
                (TL_BOARD_PLL_Q << 24);
  RCC_CR |= RCC_CR_PLLON;
  if (!wait_set(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) return sysclk_hz;
  RCC_CFGR |= RCC_CFGR_SW_PLL;
  if (!wait_set(&RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL)) return sysclk_hz;
  sysclk_hz = TL_BOARD_CLOCK_HZ;
  return sysclk_hz;
}

uint32_t stm32_sysclk_hz(void) { return sysclk_hz; }

void SysTick_Handler(void);
void SysTick_Handler(void) { millis++; }

void stm32_systick_init(uint32_t hz) {
  SYST_CSR = 0u;
  SYST_RVR = hz / 1000u - 1u;
  SYST_CVR = 0u;
  SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
}

uint64_t stm32_millis(void) {
  uint64_t a, b;
  do { /* a 64-bit read is two loads: retry if the tick landed between them */
    a = millis;
    b = millis;
  } while (a != b);
  return a;
}
