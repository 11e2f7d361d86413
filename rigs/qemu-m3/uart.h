/* CMSDK APB UART0 of mps2-an385 (0x40004000), polled: no interrupts. */
#ifndef ITHIL_UART_H
#define ITHIL_UART_H

#include <stddef.h>
#include <stdint.h>

#define UART0_BASE 0x40004000u
#define SYSTEM_CLOCK_HZ 25000000u   /* the AN385 APB clock */
#define UART_BAUD 115200u

void uart_init(void);
/* 1 and the byte in *b when one has arrived, else 0 (never blocks). */
int uart_try_read(uint8_t *b);
void uart_write_byte(uint8_t b);
void uart_write(const uint8_t *data, size_t n);
/* Sleep (WFI) until a byte has arrived: an idle implant sleeps, and QEMU serves the line at once
 * instead of when a spinning core lets it. */
void uart_wait_rx(void);
/* Wait until the last byte written has left the transmit register. */
void uart_flush(void);

#endif
