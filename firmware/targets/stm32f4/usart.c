/*
 * STM32F4 console USART (RM0090 section 30): GPIO alternate function, baud rate, 8N1, polled TX and
 * interrupt-driven RX into a ring buffer. USART1 (PA9/PA10, APB2), USART2 (PA2/PA3, APB1) and USART6
 * (PC6/PC7, APB2) are wired; TL_BOARD_USART picks one. With ST's HAL: HAL_UART_Init +
 * HAL_UART_Transmit for stm32_usart_write and HAL_UART_Receive_IT feeding the same ring.
 */
#include "stm32f4_bsp.h"
#include "stm32f4_regs.h"

#if TL_BOARD_USART == 1
#define CON_BASE USART1_BASE
#define CON_IRQ 37
#define CON_GPIO GPIOA_BASE
#define CON_TX 9u
#define CON_RX 10u
#define CON_AF 7u
#define CON_APB_DIV TL_BOARD_APB2_DIV
#define CON_CLOCKS() (RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN, RCC_APB2ENR |= RCC_APB2ENR_USART1EN)
#elif TL_BOARD_USART == 2
#define CON_BASE USART2_BASE
#define CON_IRQ 38
#define CON_GPIO GPIOA_BASE
#define CON_TX 2u
#define CON_RX 3u
#define CON_AF 7u
#define CON_APB_DIV TL_BOARD_APB1_DIV
#define CON_CLOCKS() (RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN, RCC_APB1ENR |= RCC_APB1ENR_USART2EN)
#elif TL_BOARD_USART == 6
#define CON_BASE USART6_BASE
#define CON_IRQ 71
#define CON_GPIO GPIOC_BASE
#define CON_TX 6u
#define CON_RX 7u
#define CON_AF 8u
#define CON_APB_DIV TL_BOARD_APB2_DIV
#define CON_CLOCKS() (RCC_AHB1ENR |= RCC_AHB1ENR_GPIOCEN, RCC_APB2ENR |= RCC_APB2ENR_USART6EN)
#else
#error "TL_BOARD_USART must be 1, 2 or 6 (see shared/tiny/boards.py)"
#endif

#define USART_CR1_RXNEIE (1u << 5)
#define NVIC_ISER(n) TL_REG(0xE000E100u + 4u * (n))
#define NVIC_ICER(n) TL_REG(0xE000E180u + 4u * (n))
#define IRQ_ON() (NVIC_ISER(CON_IRQ / 32) = 1u << (CON_IRQ % 32))
#define IRQ_OFF() (NVIC_ICER(CON_IRQ / 32) = 1u << (CON_IRQ % 32))
#define RX_RING 2048u /* a power of two */

static volatile uint8_t ring[RX_RING];
static volatile uint32_t head, tail; /* the IRQ writes head, the reader advances tail */
static volatile uint32_t overruns;

void stm32_usart_irq(void);
void stm32_usart_irq(void) {
  uint32_t sr = USART_SR(CON_BASE);
  if (sr & USART_SR_ORE) overruns++;
  if (!(sr & (USART_SR_RXNE | USART_SR_ORE))) return;
  if (head - tail >= RX_RING) { /* full: mask the IRQ at the NVIC, the byte waits in DR for the reader */
    IRQ_OFF();
    return;
  }
  ring[head % RX_RING] = (uint8_t)USART_DR(CON_BASE); /* reading DR clears RXNE and ORE */
  head++;
}

static void pin_af(uint32_t gpio, uint32_t pin, uint32_t af) {
  GPIO_MODER(gpio) = (GPIO_MODER(gpio) & ~(3u << (2u * pin))) | (2u << (2u * pin));
  GPIO_OSPEEDR(gpio) = (GPIO_OSPEEDR(gpio) & ~(3u << (2u * pin))) | (2u << (2u * pin));
  GPIO_AFR(gpio, pin) = (GPIO_AFR(gpio, pin) & ~(0xFu << (4u * (pin % 8u)))) | (af << (4u * (pin % 8u)));
}

void stm32_usart_init(uint32_t sysclk_hz) {
  uint32_t pclk = sysclk_hz / CON_APB_DIV;
  CON_CLOCKS();
  pin_af(CON_GPIO, CON_TX, CON_AF);
  pin_af(CON_GPIO, CON_RX, CON_AF);
  GPIO_PUPDR(CON_GPIO) = (GPIO_PUPDR(CON_GPIO) & ~(3u << (2u * CON_RX))) | (1u << (2u * CON_RX)); /* RX pull-up */
  USART_CR1(CON_BASE) = 0u;
  USART_CR2(CON_BASE) = 0u; /* 1 stop bit */
  USART_CR3(CON_BASE) = 0u;
  USART_BRR(CON_BASE) = (pclk + TL_BOARD_BAUD / 2u) / TL_BOARD_BAUD; /* OVER8 = 0: mantissa.fraction = pclk/baud */
  USART_CR1(CON_BASE) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
  IRQ_ON();
}

void stm32_usart_write(const uint8_t *data, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    while (!(USART_SR(CON_BASE) & USART_SR_TXE)) {
    }
    USART_DR(CON_BASE) = data[i];
  }
  while (!(USART_SR(CON_BASE) & USART_SR_TC)) { /* the last byte has left the shifter */
  }
}

int stm32_usart_getc(void) {
  uint8_t c;
  while (head == tail) __asm__ volatile("wfi");
  c = ring[tail % RX_RING];
  tail++;
  IRQ_ON(); /* room again: a held byte comes in */
  return c;
}

uint32_t stm32_usart_overruns(void) { return overruns; }
