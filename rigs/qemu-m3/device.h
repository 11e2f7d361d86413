/* The pump behind the wire: bytes in, answers out, as hil/device.py's EmulatedDevice answers.
 * Pure (no hardware access): main.c feeds it UART bytes; the native tests feed it frames.
 *
 * Link layer (the device half): frames split at 0x00, COBS, the checks of framing.decode_inner in
 * its order (each bad frame whose header could be read answered with its Nak), the payload parse,
 * signatures and roles as protocol.signing.Verifier checks them (HMAC-SHA256 truncated to 8 bytes,
 * timestamps strictly increasing per key and link), and the window of recent commands keyed by
 * (key id, link id, seq) whose answers are sent again, not re-run, for a repeated command. */
#ifndef ITHIL_DEVICE_H
#define ITHIL_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "pump.h"
#include "sha256.h"

#define FIRMWARE_NAME "ithil-qemu-m3 0.1.0"
#define SERIAL_NUMBER 0x174D3301u
#define TICK_HZ 32768u
#define RESERVOIR_CAPACITY_NL 20000000u
#define STROKE_NL 250u
#define BATTERY_MONTHS_NEW 84u          /* the model's months remaining for a new, stopped pump */
#define WINDOW_ENTRIES 16u
#define ANSWER_CAP (FRAME_MAX_ENCODED + 1u)   /* one encoded answer frame and its delimiter */
#define KEY_COUNT 2u
#define TELEMETRY_PERIOD_TICKS (900ull * TICK_HZ) /* one Telemetry frame per 15 min of pump time: QEMU sends
                                                     each UART byte in its own syscall, about 0.3 ms a frame */
#define DEVICE_RETAINED_MAGIC 0x52544E44u         /* "DNTR": the device survived a processor reset */
#define CLINICIAN_TEST_KEY_ID 1u
#define PATIENT_TEST_KEY_ID 2u

/* protocol.enums.NakReason */
enum {
    NAK_BAD_CRC = 1, NAK_UNKNOWN_ID = 2, NAK_UNSUPPORTED_VERSION = 3, NAK_BAD_SIGNATURE = 4, NAK_REPLAY = 5,
    NAK_ROLE_NOT_ALLOWED = 6, NAK_LIMIT_EXCEEDED = 7, NAK_BUSY = 8, NAK_NOT_IN_TEST_MODE = 9, NAK_UNSIGNED = 10,
    NAK_MALFORMED = 11, NAK_NOT_ALLOWED_NOW = 12, NAK_REASONS = 13
};

/* protocol.errors.BadFrame counters */
enum { BAD_COBS, BAD_LENGTH, BAD_CRC, BAD_VERSION, BAD_UNKNOWN_ID, BAD_PAYLOAD, BAD_SIGNATURE, BAD_REASONS };

typedef void (*device_write_fn)(void *ctx, const uint8_t *data, size_t n);
typedef void (*device_reset_fn)(void *ctx);

typedef struct {
    uint8_t key_id;
    uint8_t role;                 /* ACCESS_PATIENT or ACCESS_CLINICIAN */
    uint8_t secret[SECRET_SIZE];
} device_key;

typedef struct {
    uint8_t used, is_signed, key_id, link_id;
    uint16_t seq;
    uint32_t order;               /* insertion order: the oldest is evicted first */
    uint8_t digest[SHA256_DIGEST]; /* SHA-256 of msg_id | payload: what makes two frames one command */
    uint16_t answer_len;
    uint8_t answer[ANSWER_CAP];
} window_entry;

typedef struct {
    uint32_t retained_magic;      /* DEVICE_RETAINED_MAGIC once initialised (main.c: warm or cold boot) */
    uint64_t tick;                /* virtual time (the RTC): only AdvanceTime/FixtureAdvance move it */
    int test_mode;
    device_write_fn write;
    device_reset_fn reset;        /* the board's processor reset (NULL: restart in place, native tests) */
    void *ctx;
    pump_t pump;                  /* the controller: its RAM is rebuilt from `log` after a reset */
    pump_log_t *log;              /* the event log ring in flash */
    uint32_t telemetry_counter;   /* runs on across resets, as the emulator's */
    int reset_pending;            /* InjectReset answered: reset once the answer is out */
    uint64_t wanted[PUMP_FEED_MAX]; /* the stroke ticks the last FixtureReport asked samples for */
    uint8_t n_wanted;
    uint32_t resets;
    /* stream */
    uint8_t rx[FRAME_MAX_ENCODED];
    size_t rx_len;
    int rx_skipping;
    uint8_t inner[FRAME_MAX_ENCODED];
    /* answers */
    uint8_t scratch[FRAME_MAX];
    uint8_t payload[FRAME_MAX_PAYLOAD];
    uint8_t answer[ANSWER_CAP];
    size_t answer_len;
    /* signing */
    device_key keys[KEY_COUNT];
    uint64_t last_ts[KEY_COUNT][256];
    uint8_t ts_valid[KEY_COUNT][256];
    /* the link window */
    window_entry window[WINDOW_ENTRIES];
    uint32_t window_order;
    int hello_seen;
    uint16_t last_hello_seq;
    /* counters (as the decoder and the emulated device count) */
    uint32_t frames_seen, frames_ok, bad[BAD_REASONS], naks[NAK_REASONS], executed, repeats, ignored;
} device_t;

/* A pump just implanted, tick 0, with the emulator's public TEST keys (hil.device.default_test_keys),
 * its event log erased in `log` (flash). */
void device_init(device_t *d, device_write_fn write, void *ctx, int test_mode, pump_log_t *log);

/* After a processor reset: the link (window, timestamps, telemetry counter) and the tick were kept
 * in retained RAM; the controller is rebuilt from the log (pump_power_on). */
void device_restart(device_t *d, device_write_fn write, void *ctx);

/* Bytes from the host, in any chunking; answers go out through write as each frame completes. */
void device_feed(device_t *d, const uint8_t *data, size_t n);


#endif
