#include "uart.h"

typedef struct {
    volatile uint32_t data;      /* 0x00 */
    volatile uint32_t state;     /* 0x04: bit 0 TX full, bit 1 RX full, bit 2 TX overrun, bit 3 RX overrun */
    volatile uint32_t ctrl;      /* 0x08: bit 0 TX enable, bit 1 RX enable */
    volatile uint32_t intstatus; /* 0x0C (write 1 to clear) */
    volatile uint32_t bauddiv;   /* 0x10: at least 16 */
} cmsdk_uart;

#define UART0 ((cmsdk_uart *)UART0_BASE)
#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define STATE_OVERRUNS 0xCu
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u
#define CTRL_RX_INT_EN 0x8u
#define INT_RX 0x2u
#define UART0_RX_IRQ 0u                                 /* mps2-an385: UART0 RX is IRQ 0 (TX is 1) */
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ICPR0 (*(volatile uint32_t *)0xE000E280u)

void uart_init(void)
{
    UART0->ctrl = 0;
    UART0->bauddiv = SYSTEM_CLOCK_HZ / UART_BAUD;
    UART0->state = STATE_OVERRUNS; /* clear any overrun */
    UART0->ctrl = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    /* The RX interrupt only wakes the core from WFI: interrupts stay masked (PRIMASK), no handler runs. */
    __asm__ volatile("cpsid i" ::: "memory");
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
}

void uart_wait_rx(void)
{
    for (;;) {
        UART0->intstatus = INT_RX;          /* clear the UART's request, then the NVIC's pending bit */
        NVIC_ICPR0 = 1u << UART0_RX_IRQ;
        if (UART0->state & STATE_RX_FULL) {
            return;
        }
        __asm__ volatile("wfi" ::: "memory"); /* a byte arriving after the check leaves the IRQ pending: wakes */
    }
}

int uart_try_read(uint8_t *b)
{
    uint32_t state = UART0->state;
    if (state & STATE_OVERRUNS) {
        UART0->state = state & STATE_OVERRUNS;
    }
    if (!(state & STATE_RX_FULL)) {
        return 0;
    }
    *b = (uint8_t)UART0->data;
    return 1;
}

void uart_write_byte(uint8_t b)
{
    while (UART0->state & STATE_TX_FULL) {
    }
    UART0->data = b;
}

void uart_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uart_write_byte(data[i]);
    }
}

void uart_flush(void)
{
    while (UART0->state & STATE_TX_FULL) {
    }
}
