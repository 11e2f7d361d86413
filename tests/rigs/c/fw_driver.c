/* Native test driver for the firmware's pure parts (rigs/qemu-m3: cobs, crc32, sha256, hmac,
 * frame, device). Reads commands from stdin, one per line, and prints one answer line each;
 * tests/rigs/test_firmware_units.py writes the commands and checks the answers against the
 * Python reference (protocol/, hil/device.py). Hex everywhere; "-" is empty.
 *
 *   cobs_enc HEX            -> encoded HEX
 *   cobs_dec HEX            -> decoded HEX, or "error"
 *   crc HEX                 -> crc as 8 hex digits
 *   sha HEX                 -> digest HEX
 *   hmac KEYHEX MSGHEX      -> mac HEX
 *   build VER FLAGS SEQ ID PAYLOADHEX [SECRETHEX LINK KEY TS]   (decimal numbers)
 *                           -> the wire bytes (COBS and delimiter) HEX
 *   parse HEX               -> status seq msg_id length signed link key ts payloadHEX macHEX
 *   feed HEX                -> what the device answers, HEX ("-" when nothing)
 *   state                   -> tick frames_seen frames_ok executed repeats ignored bad0..bad6 naks1..naks12
 *   catalogue               -> one line per message: id size access test_mode to_pump name; then "end"
 *   reset [TESTMODE]        -> a fresh device ("ok")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cobs.h"
#include "crc32.h"
#include "device.h"
#include "frame.h"
#include "hmac.h"
#include "sha256.h"

#define MAX_BYTES 8192

static device_t dev;
static pump_log_t flash_log; /* the event log "flash" (survives device_restart) */
static uint8_t out_buf[65536];
static size_t out_len;

static void collect(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    if (out_len + n <= sizeof out_buf) {
        memcpy(out_buf + out_len, data, n);
        out_len += n;
    }
}

static long from_hex(const char *s, uint8_t *out, size_t cap)
{
    if (s == NULL) {
        return -1;
    }
    if (strcmp(s, "-") == 0) {
        return 0;
    }
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > cap) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (uint8_t)v;
    }
    return (long)(n / 2);
}

static void print_hex(const uint8_t *data, size_t n)
{
    if (n == 0) {
        fputs("-", stdout);
    }
    for (size_t i = 0; i < n; i++) {
        printf("%02x", data[i]);
    }
}

int main(void)
{
    static char line[4 * MAX_BYTES];
    static uint8_t a[MAX_BYTES], b[MAX_BYTES], c[2 * MAX_BYTES];
    device_init(&dev, collect, NULL, 1, &flash_log);
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *cmd = strtok(line, " ");
        if (cmd == NULL) {
            continue;
        }
        char *arg1 = strtok(NULL, " ");
        char *arg2 = strtok(NULL, " ");
        if (strcmp(cmd, "cobs_enc") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            print_hex(c, cobs_encode(a, (size_t)n, c));
        } else if (strcmp(cmd, "cobs_dec") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            long m = cobs_decode(a, (size_t)n, c, sizeof c);
            if (m < 0) {
                fputs("error", stdout);
            } else {
                print_hex(c, (size_t)m);
            }
        } else if (strcmp(cmd, "crc") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            printf("%08x", crc32_update(0, a, (size_t)n));
        } else if (strcmp(cmd, "sha") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            uint8_t d[SHA256_DIGEST];
            sha256(a, (size_t)n, d);
            print_hex(d, sizeof d);
        } else if (strcmp(cmd, "hmac") == 0) {
            long nk = from_hex(arg1, a, sizeof a);
            long nm = from_hex(arg2, b, sizeof b);
            uint8_t d[SHA256_DIGEST];
            hmac_sha256(a, (size_t)nk, b, (size_t)nm, NULL, 0, d);
            print_hex(d, sizeof d);
        } else if (strcmp(cmd, "build") == 0) {
            unsigned version = (unsigned)atoi(arg1), flags = (unsigned)atoi(arg2);
            unsigned seq = (unsigned)atoi(strtok(NULL, " "));
            unsigned msg_id = (unsigned)atoi(strtok(NULL, " "));
            long n = from_hex(strtok(NULL, " "), a, sizeof a);
            char *secret_hex = strtok(NULL, " ");
            uint8_t secret[SECRET_SIZE];
            unsigned link = 0, key = 0;
            unsigned long long ts = 0;
            const uint8_t *sp = NULL;
            if (secret_hex != NULL) {
                from_hex(secret_hex, secret, sizeof secret);
                sp = secret;
                link = (unsigned)atoi(strtok(NULL, " "));
                key = (unsigned)atoi(strtok(NULL, " "));
                ts = strtoull(strtok(NULL, " "), NULL, 10);
            }
            size_t m = frame_build(b, (uint8_t)version, (uint8_t)flags, (uint16_t)seq, (uint8_t)msg_id, a,
                                   (uint16_t)n, sp, (uint8_t)link, (uint8_t)key, ts);
            print_hex(c, frame_encode(b, m, c));
        } else if (strcmp(cmd, "parse") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            long m = cobs_decode(a, (size_t)n, b, sizeof b);
            frame_t f;
            if (m < 0) {
                fputs("cobs", stdout);
            } else {
                frame_status st = frame_parse(b, (size_t)m, &f);
                printf("%d %u %u %u %d %u %u %llu ", (int)st, f.seq, f.msg_id, st == FRAME_OK ? f.length : 0u,
                       f.is_signed, f.is_signed ? f.link_id : 0u, f.is_signed ? f.key_id : 0u,
                       f.is_signed ? (unsigned long long)f.timestamp : 0ull);
                print_hex(f.payload, st == FRAME_OK ? f.length : 0u);
                fputs(" ", stdout);
                print_hex(f.mac, f.mac != NULL && st == FRAME_OK ? FRAME_MAC_SIZE : 0u);
            }
        } else if (strcmp(cmd, "feed") == 0) {
            long n = from_hex(arg1, a, sizeof a);
            out_len = 0;
            device_feed(&dev, a, (size_t)n);
            print_hex(out_buf, out_len);
        } else if (strcmp(cmd, "state") == 0) {
            printf("%llu %u %u %u %u %u", (unsigned long long)dev.tick, dev.frames_seen, dev.frames_ok, dev.executed,
                   dev.repeats, dev.ignored);
            for (int i = 0; i < BAD_REASONS; i++) {
                printf(" %u", dev.bad[i]);
            }
            for (int i = 1; i < NAK_REASONS; i++) {
                printf(" %u", dev.naks[i]);
            }
        } else if (strcmp(cmd, "catalogue") == 0) {
            for (size_t i = 0; i < CATALOGUE_COUNT; i++) {
                const msg_spec *s = &CATALOGUE[i];
                printf("%u %d %u %u %u %s\n", s->msg_id, s->size, s->access, s->test_mode, s->to_pump, s->name);
            }
            fputs("end", stdout);
        } else if (strcmp(cmd, "reset") == 0) {
            device_init(&dev, collect, NULL, arg1 == NULL ? 1 : atoi(arg1), &flash_log);
            fputs("ok", stdout);
        } else {
            printf("unknown command %s", cmd);
        }
        fputs("\n", stdout);
        fflush(stdout);
    }
    return 0;
}
