/* Native test driver for the pump controller in C (rigs/qemu-m3/pump_engine.c, pump_commands.c,
 * pump_wire.c). One command a line on stdin, one answer a line on stdout
 * (tests/rigs/test_pump_c.py). Numbers are decimal; bytes and texts hex ("-" when empty).
 *
 * The pump, driven as device.c and the bench fixture drive it:
 *   init TICK                 -> "ok"       a new implant (an erased log ring)
 *   reset TICK                -> "ok"       a processor reset: power on over the log kept
 *   lines N [TICK HELD EMI]*  -> "ok"       pump_set_lines
 *   feed N [TICK PRESSURE]*   -> "ok"       pump_feed
 *   run TO                    -> "done TICK USED" | "want TICK USED N T1 .. TN"
 *   cmd ID HEX                -> "ans N [ID HEX]*" | "ref REASON FIELDHEX VALUEHEX EXPECTEDHEX"
 *   drain CHARGE              -> "ok" | "ref REASON FIELDHEX VALUEHEX EXPECTEDHEX"
 *   tele COUNTER              -> Telemetry payload HEX
 *   status                    -> StatusReport payload HEX, read without settling (the model's status())
 *   log FIRST COUNT           -> LogRecords payload HEX
 *   state                     -> "TICK NEXT_SEQ RECORDS_SINCE_CHECKPOINT CHECKPOINT_SEQ MISSED SINCE_RESUME"
 * Leaves, on a second pump of their own:
 *   det_reset                 -> "ok"       a fresh detector
 *   det P                     -> RULE       occlusion.scan_per_step on one sample
 *   det_state                 -> "CUSUM H1 H2 .."  the CUSUM and the history, oldest first
 *   used STEPS TICKS          -> BatterySpec.used_nc
 *   months STEPS TICKS SPD DRAINED -> BatterySpec.months_remaining
 *   path_reset                -> "ok"       FluidPath.unprimed
 *   push VOLUME CONC          -> pg         FluidPath.push
 *   push_dose VOLUME CONC     -> pg         the same, the path unchanged
 *   path                      -> "V:C V:C .."  segments, tip first ("-": none)
 *   old CONC                  -> FluidPath.old_drug_nl
 *   rec TICK CODE A0 A1 A2    -> the record's 32 bytes HEX (written to the leaf's log)
 *   blob TICK CODE HEX        -> the records' bytes HEX
 *   muldiv A B C              -> floor(A * B / C)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pump.h"

static pump_t pump, leaf;
static pump_log_t flash, leaf_flash;

static uint64_t num(char **cursor)
{
    char *end = NULL;
    while (**cursor == ' ') {
        (*cursor)++;
    }
    int neg = **cursor == '-';
    uint64_t v = strtoull(*cursor + neg, &end, 10);
    if (end == *cursor + neg) {
        fprintf(stderr, "pump_driver: a number expected at '%s'\n", *cursor);
        exit(2);
    }
    *cursor = end;
    return neg ? (uint64_t)0 - v : v;
}

static char *word(char **cursor)
{
    while (**cursor == ' ') {
        (*cursor)++;
    }
    char *start = *cursor;
    while (**cursor != ' ' && **cursor != '\0' && **cursor != '\n') {
        (*cursor)++;
    }
    if (**cursor != '\0') {
        **cursor = '\0';
        (*cursor)++;
    }
    return start;
}

static size_t from_hex(const char *s, uint8_t *out, size_t cap)
{
    if (strcmp(s, "-") == 0) {
        return 0;
    }
    size_t n = strlen(s) / 2;
    if (n > cap) {
        fprintf(stderr, "pump_driver: hex too long\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            fprintf(stderr, "pump_driver: bad hex '%s'\n", s);
            exit(2);
        }
        out[i] = (uint8_t)v;
    }
    return n;
}

static void put_hex(const uint8_t *data, size_t n)
{
    if (n == 0) {
        fputs("-", stdout);
    }
    for (size_t i = 0; i < n; i++) {
        printf("%02x", data[i]);
    }
}

static void put_text_hex(const char *s)
{
    put_hex((const uint8_t *)s, strlen(s));
}

static void put_refusal(const pump_refusal_t *r)
{
    printf("ref %u ", r->reason);
    put_text_hex(r->field);
    putchar(' ');
    put_text_hex(r->value);
    putchar(' ');
    put_text_hex(r->expected);
    putchar('\n');
}

int main(void)
{
    static char line[1 << 16];
    static uint8_t bytes[1 << 15];
    static pump_answer_t answers[PUMP_ANSWERS_MAX];
    pump_power_on(&leaf, &leaf_flash, 0);
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *p = line;
        const char *cmd = word(&p);
        if (cmd[0] == '\0') {
            continue;
        }
        if (strcmp(cmd, "init") == 0) {
            flash.magic = 0;
            pump_power_on(&pump, &flash, num(&p));
            puts("ok");
        } else if (strcmp(cmd, "reset") == 0) {
            pump_power_on(&pump, &flash, num(&p));
            puts("ok");
        } else if (strcmp(cmd, "lines") == 0) {
            pump_line_t lines[PUMP_LINES_MAX];
            size_t n = (size_t)num(&p);
            for (size_t i = 0; i < n; i++) {
                pump_line_t l; /* one at a time: an initializer list's order is unspecified */
                l.tick = num(&p);
                l.rotor_held = (uint8_t)num(&p);
                l.emi = (uint8_t)num(&p);
                if (i < PUMP_LINES_MAX) {
                    lines[i] = l;
                }
            }
            pump_set_lines(&pump, lines, n < PUMP_LINES_MAX ? n : PUMP_LINES_MAX);
            puts("ok");
        } else if (strcmp(cmd, "feed") == 0) {
            pump_sample_t samples[PUMP_FEED_MAX];
            size_t n = (size_t)num(&p);
            for (size_t i = 0; i < n; i++) {
                pump_sample_t s;
                s.tick = num(&p);
                s.pressure_pa = (int32_t)(int64_t)num(&p);
                if (i < PUMP_FEED_MAX) {
                    samples[i] = s;
                }
            }
            pump_feed(&pump, samples, n < PUMP_FEED_MAX ? n : PUMP_FEED_MAX);
            puts("ok");
        } else if (strcmp(cmd, "run") == 0) {
            uint64_t wanted[PUMP_FEED_MAX];
            size_t n = 0;
            const bool done = pump_run(&pump, num(&p), wanted, &n);
            if (done) {
                printf("done %" PRIu64 " %u\n", pump.st.tick, pump.sensors.used);
            } else {
                printf("want %" PRIu64 " %u %zu", pump.st.tick, pump.sensors.used, n);
                for (size_t i = 0; i < n; i++) {
                    printf(" %" PRIu64, wanted[i]);
                }
                putchar('\n');
            }
        } else if (strcmp(cmd, "cmd") == 0) {
            const uint8_t id = (uint8_t)num(&p);
            const size_t n = from_hex(word(&p), bytes, sizeof bytes);
            pump_refusal_t refusal;
            const size_t k = pump_command(&pump, id, bytes, n, answers, &refusal);
            if (k == 0) {
                put_refusal(&refusal);
            } else {
                printf("ans %zu", k);
                for (size_t i = 0; i < k; i++) {
                    printf(" %u ", answers[i].msg_id);
                    put_hex(answers[i].payload, answers[i].len);
                }
                putchar('\n');
            }
        } else if (strcmp(cmd, "drain") == 0) {
            pump_refusal_t refusal;
            if (pump_drain_battery(&pump, num(&p), &refusal)) {
                puts("ok");
            } else {
                put_refusal(&refusal);
            }
        } else if (strcmp(cmd, "tele") == 0) {
            uint8_t out[40];
            put_hex(out, pump_telemetry(&pump, (uint32_t)num(&p), out));
            putchar('\n');
        } else if (strcmp(cmd, "status") == 0) {
            put_hex(bytes, pump_encode_status(&pump, bytes));
            putchar('\n');
        } else if (strcmp(cmd, "log") == 0) {
            const uint32_t first = (uint32_t)num(&p);
            const uint8_t count = (uint8_t)num(&p);
            put_hex(bytes, pump_read_log(&pump, first, count, bytes));
            putchar('\n');
        } else if (strcmp(cmd, "state") == 0) {
            printf("%" PRIu64 " %u %u %u %" PRId64 " %" PRId64 "\n", pump.st.tick, pump.log->next_seq,
                   pump.st.records_since_checkpoint, pump.checkpoint_seq, pump.st.missed_steps,
                   pump.st.steps_since_resume);
        } else if (strcmp(cmd, "det_reset") == 0) {
            pump_detector_reset(&leaf.st);
            puts("ok");
        } else if (strcmp(cmd, "det") == 0) {
            printf("%u\n", pump_detector_step(&leaf.st, (int32_t)(int64_t)num(&p)));
        } else if (strcmp(cmd, "det_state") == 0) {
            printf("%" PRId64, leaf.st.cusum_pa);
            for (unsigned i = 0; i < leaf.st.history_count; i++) {
                unsigned at = (leaf.st.history_head + DETECTOR_HISTORY - leaf.st.history_count + i) % DETECTOR_HISTORY;
                printf(" %d", leaf.st.history_pa[at]);
            }
            putchar('\n');
        } else if (strcmp(cmd, "used") == 0) {
            const int64_t steps = (int64_t)num(&p);
            printf("%" PRId64 "\n", pump_battery_used_nc(steps, num(&p)));
        } else if (strcmp(cmd, "months") == 0) {
            const int64_t steps = (int64_t)num(&p);
            const uint64_t ticks = num(&p);
            const int64_t spd = (int64_t)num(&p);
            printf("%" PRId64 "\n", pump_battery_months(steps, ticks, spd, (int64_t)num(&p)));
        } else if (strcmp(cmd, "path_reset") == 0) {
            leaf.st.path_head = 7; /* anywhere in the ring */
            leaf.st.path[7].volume_nl = PUMP_FLUID_PATH_NL;
            leaf.st.path[7].concentration_ug_per_ml = 0;
            leaf.st.path_count = 1;
            puts("ok");
        } else if (strcmp(cmd, "push") == 0) {
            const int64_t v = (int64_t)num(&p);
            printf("%" PRId64 "\n", pump_path_push(&leaf.st, v, (int64_t)num(&p)));
        } else if (strcmp(cmd, "push_dose") == 0) {
            const int64_t v = (int64_t)num(&p);
            printf("%" PRId64 "\n", pump_path_push_dose(&leaf.st, v, (int64_t)num(&p)));
        } else if (strcmp(cmd, "path") == 0) {
            if (leaf.st.path_count == 0) {
                fputs("-", stdout);
            }
            for (unsigned i = 0; i < leaf.st.path_count; i++) {
                const pump_segment_t *s = &leaf.st.path[(leaf.st.path_head + i) % PUMP_PATH_SEGMENTS];
                printf("%s%" PRId64 ":%" PRId64, i ? " " : "", s->volume_nl, s->concentration_ug_per_ml);
            }
            putchar('\n');
        } else if (strcmp(cmd, "old") == 0) {
            printf("%" PRId64 "\n", pump_path_old_drug_nl(&leaf.st, (int64_t)num(&p)));
        } else if (strcmp(cmd, "rec") == 0) {
            leaf.st.tick = num(&p);
            const uint16_t code = (uint16_t)num(&p);
            const int32_t a0 = (int32_t)(int64_t)num(&p);
            const int32_t a1 = (int32_t)(int64_t)num(&p);
            const int32_t a2 = (int32_t)(int64_t)num(&p);
            const uint32_t seq = leaf.log->next_seq;
            pump_log(&leaf, code, a0, a1, a2);
            put_hex(leaf.log->ring[seq % LOG_CAPACITY], LOG_RECORD_SIZE);
            putchar('\n');
        } else if (strcmp(cmd, "blob") == 0) {
            leaf.st.tick = num(&p);
            const uint16_t code = (uint16_t)num(&p);
            const size_t n = from_hex(word(&p), bytes, sizeof bytes);
            const uint32_t first = leaf.log->next_seq;
            pump_log_blob(&leaf, code, bytes, n);
            for (uint32_t s = first; s != leaf.log->next_seq; s++) {
                put_hex(leaf.log->ring[s % LOG_CAPACITY], LOG_RECORD_SIZE);
            }
            putchar('\n');
        } else if (strcmp(cmd, "muldiv") == 0) {
            const uint64_t a = num(&p), b = num(&p);
            printf("%" PRIu64 "\n", pump_muldiv(a, b, num(&p)));
        } else {
            fprintf(stderr, "pump_driver: unknown command '%s'\n", cmd);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
