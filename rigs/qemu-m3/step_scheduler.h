/* The motor's step generator: a 32-bit phase accumulator (NCO), as firmware_model/step_scheduler.py.
 *
 * Every tick of the 32,768 Hz clock adds `increment` to a 32-bit phase; each overflow of 2^32 is
 * one motor step. Everything here is the closed form of that loop (no loop over ticks), integer
 * only, no heap, no float, 64-bit arithmetic only (no __int128): products that pass 2^64 are split
 * per 2^32 (or per 2^10 / 2^14 chunks) into quotient and remainder, so every result is exact over
 * the whole uint64 tick range. Where the model's answer does not fit a uint64 (a step tick past
 * 2^64 - 1) the function says so instead of wrapping. Pure: builds natively and for the target.
 */
#ifndef ITHIL_STEP_SCHEDULER_H
#define ITHIL_STEP_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#define STEP_TICK_HZ 32768u
#define STEP_TICKS_PER_DAY (86400ull * STEP_TICK_HZ) /* 2,831,155,200 */
#define STEP_PHASE_BITS 32u

typedef enum {
    STEP_OK = 0,
    STEP_RATE_TOO_HIGH = 1, /* the increment would be >= 2^32: more than one step per tick */
    STEP_RATE_TOO_LOW = 2,  /* a rate > 0 below half an accumulator quantum (increment rounds to 0) */
    STEP_BAD_STROKE = 3,    /* stroke_nl == 0 */
} step_status_t;

/* One accumulator: its increment, its phase after `tick`, the steps it has made since created. */
typedef struct {
    uint32_t increment; /* 0 = stopped */
    uint32_t phase;     /* phase after `tick`, in units of 2^-32 step */
    uint64_t tick;
    uint64_t steps;
} step_scheduler_t;

/* The increment nearest to a flow: round-half-up of rate * 2^32 / (stroke * ticks/day), as the
 * model's increment_for_rate, exact for every uint64 rate and uint32 stroke. *increment is written
 * only on STEP_OK (rate 0 gives increment 0). */
step_status_t step_increment_for_rate(uint64_t rate_nl_per_day, uint32_t stroke_nl, uint32_t *increment);

/* The flow an increment really delivers, exactly: increment * stroke * ticks/day / 2^32 nL/day
 * = *whole + *frac_1024 / 1024 (ticks/day / 2^32 = 675 / 1024; the whole part always fits). */
void step_effective_rate(uint32_t increment, uint32_t stroke_nl, uint64_t *whole, uint32_t *frac_1024);

/* A scheduler at `tick` with `phase`, running at `increment`, no steps made yet. */
void step_scheduler_init(step_scheduler_t *s, uint32_t increment, uint32_t phase, uint64_t tick);

/* Change the rate now; the phase carries over, so no step is lost or doubled. */
void step_scheduler_set_increment(step_scheduler_t *s, uint32_t increment);

/* Steps in the ticks (s->tick, to_tick]; 0 when to_tick <= s->tick or stopped. Always fits:
 * at most one step per tick. */
uint64_t step_scheduler_steps_until(const step_scheduler_t *s, uint64_t to_tick);

/* The tick of the k-th step after s->tick (k >= 1): s->tick + ceil((k * 2^32 - phase) / increment).
 * false (and *tick untouched) when stopped, when k == 0, or when that tick is past 2^64 - 1. */
bool step_scheduler_tick_of_step(const step_scheduler_t *s, uint64_t k, uint64_t *tick);

/* Move to to_tick; *made (may be NULL) gets the steps on the way, the phase keeps the remainder.
 * false (nothing changes) when to_tick < s->tick: time never runs backwards. */
bool step_scheduler_advance(step_scheduler_t *s, uint64_t to_tick, uint64_t *made);

#endif
