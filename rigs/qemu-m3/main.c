/* ithil-qemu-m3: the pump firmware's main loop on mps2-an385. UART0 bytes go to the device
 * (device.c: framing, signatures, the answer window, the commands); its answers go back out.
 * Virtual time is lockstep: only the host's AdvanceTime moves the tick counter. */
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "uart.h"

static device_t device;

static void write_uart(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    uart_write(data, n);
}

int main(void)
{
    uart_init();
    device_init(&device, write_uart, NULL, 1);
    for (;;) {
        uint8_t b;
        if (uart_try_read(&b)) {
            device_feed(&device, &b, 1);
        }
    }
}
