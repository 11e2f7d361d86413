/* ithil-qemu-m3: the pump firmware's main loop on mps2-an385. UART0 bytes go to the device
 * (device.c: framing, signatures, the answer window, the commands); its answers go back out.
 * Virtual time is lockstep: only the host moves the tick counter.
 *
 * The event log ring and the device's link state live in .noinit RAM, which neither the startup
 * code nor QEMU's reset touches: the log stands for the pump's flash, the link state for the
 * retained RAM an implant's RTC and radio keep. A cold boot (no DEVICE_RETAINED_MAGIC) is a new
 * implant; InjectReset answers, then resets the processor through the NVIC (SCB AIRCR), and the
 * warm boot rebuilds the controller from the log. */
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "uart.h"

static device_t device __attribute__((section(".noinit")));
static pump_log_t flash_log __attribute__((section(".noinit")));

#define SCB_AIRCR (*(volatile uint32_t *)0xE000ED0Cu)
#define AIRCR_VECTKEY_SYSRESETREQ 0x05FA0004u

static void write_uart(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    uart_write(data, n);
}

static void reset_processor(void *ctx)
{
    (void)ctx;
    uart_flush();                                   /* the Ack is out before the reset */
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = AIRCR_VECTKEY_SYSRESETREQ;
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
    }
}

int main(void)
{
    uart_init();
    if (device.retained_magic == DEVICE_RETAINED_MAGIC && device.reset_pending && device.log == &flash_log) {
        device_restart(&device, write_uart, NULL);   /* warm boot after InjectReset */
    } else {
        device_init(&device, write_uart, NULL, 1, &flash_log);
    }
    device.reset = reset_processor;
    for (;;) {
        uint8_t b;
        while (uart_try_read(&b)) {
            device_feed(&device, &b, 1);
        }
        uart_wait_rx();
    }
}
