/* Native test driver for rigs/qemu-m3/step_scheduler.c: one command a line on stdin, one answer a
 * line on stdout (tests/rigs/test_step_scheduler_c.py). Numbers are decimal. One scheduler is held
 * between commands, so advances chain and the phase carries.
 *
 *   inc RATE STROKE       -> "ok INCREMENT" | "err STATUS"
 *   eff INCREMENT STROKE  -> "WHOLE FRAC_1024"
 *   init INC PHASE TICK   -> "ok"
 *   set INC               -> "ok"
 *   until TO              -> steps in (tick, TO]
 *   tos K                 -> tick of the K-th step | "none"
 *   adv TO                -> "MADE PHASE TICK STEPS" | "back"
 *   list TO               -> ticks of every step in (tick, TO] by tick_of_step, or "-"
 *   state                 -> "INC PHASE TICK STEPS"
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "step_scheduler.h"

static uint64_t word(char **cursor)
{
    char *end = NULL;
    uint64_t v = strtoull(*cursor, &end, 10);
    if (end == *cursor) {
        fprintf(stderr, "step_driver: a number expected at '%s'\n", *cursor);
        exit(2);
    }
    *cursor = end;
    return v;
}

int main(void)
{
    static char line[4096];
    step_scheduler_t s;
    step_scheduler_init(&s, 0u, 0u, 0u);
    while (fgets(line, sizeof line, stdin) != NULL) {
        char cmd[16] = {0};
        int used = 0;
        if (sscanf(line, "%15s%n", cmd, &used) != 1) {
            continue;
        }
        char *p = line + used;
        if (strcmp(cmd, "inc") == 0) {
            uint64_t rate = word(&p);
            uint32_t stroke = (uint32_t)word(&p);
            uint32_t inc = 0;
            step_status_t st = step_increment_for_rate(rate, stroke, &inc);
            if (st == STEP_OK) {
                printf("ok %" PRIu32 "\n", inc);
            } else {
                printf("err %d\n", (int)st);
            }
        } else if (strcmp(cmd, "eff") == 0) {
            uint32_t inc = (uint32_t)word(&p);
            uint32_t stroke = (uint32_t)word(&p);
            uint64_t whole = 0;
            uint32_t frac = 0;
            step_effective_rate(inc, stroke, &whole, &frac);
            printf("%" PRIu64 " %" PRIu32 "\n", whole, frac);
        } else if (strcmp(cmd, "init") == 0) {
            uint32_t inc = (uint32_t)word(&p);
            uint32_t phase = (uint32_t)word(&p);
            uint64_t tick = word(&p);
            step_scheduler_init(&s, inc, phase, tick);
            printf("ok\n");
        } else if (strcmp(cmd, "set") == 0) {
            step_scheduler_set_increment(&s, (uint32_t)word(&p));
            printf("ok\n");
        } else if (strcmp(cmd, "until") == 0) {
            printf("%" PRIu64 "\n", step_scheduler_steps_until(&s, word(&p)));
        } else if (strcmp(cmd, "tos") == 0) {
            uint64_t t = 0;
            if (step_scheduler_tick_of_step(&s, word(&p), &t)) {
                printf("%" PRIu64 "\n", t);
            } else {
                printf("none\n");
            }
        } else if (strcmp(cmd, "adv") == 0) {
            uint64_t made = 0;
            if (step_scheduler_advance(&s, word(&p), &made)) {
                printf("%" PRIu64 " %" PRIu32 " %" PRIu64 " %" PRIu64 "\n", made, s.phase, s.tick, s.steps);
            } else {
                printf("back\n");
            }
        } else if (strcmp(cmd, "list") == 0) {
            uint64_t n = step_scheduler_steps_until(&s, word(&p));
            if (n == 0u) {
                printf("-");
            }
            for (uint64_t k = 1; k <= n; k++) {
                uint64_t t = 0;
                if (!step_scheduler_tick_of_step(&s, k, &t)) {
                    printf("%snone", k > 1u ? " " : "");
                    break;
                }
                printf("%s%" PRIu64, k > 1u ? " " : "", t);
            }
            printf("\n");
        } else if (strcmp(cmd, "state") == 0) {
            printf("%" PRIu32 " %" PRIu32 " %" PRIu64 " %" PRIu64 "\n", s.increment, s.phase, s.tick, s.steps);
        } else {
            fprintf(stderr, "step_driver: unknown command '%s'\n", cmd);
            return 2;
        }
    }
    return 0;
}
