/* The motor's phase accumulator in closed form (see step_scheduler.h), exact in 64-bit arithmetic.
 *
 * Where the model's formula needs more than 64 bits, the operand is split so each piece fits:
 *   - increment_for_rate: rate * 2^32 / (stroke * 86400 * 2^15) reduces by 2^15 to
 *     (rate * 2^18 + D) / 2D with D = stroke * 86400 < 2^48.4; rate * 2^18 is divided by long
 *     division in chunks of 2^14 and 2^4, each remainder shifted staying below 2^64;
 *   - steps_until / advance: span * increment (up to 2^96) is split at span's 32-bit halves; the
 *     high half only adds whole steps (sh * increment) and never touches the phase;
 *   - tick_of_step: (k - 1) = a * increment + b, so ceil((k * 2^32 - phase) / increment)
 *     = a * 2^32 + ceil((b * 2^32 + 2^32 - phase) / increment) with b < increment, under 2^64;
 *   - effective rate: ticks/day / 2^32 = 675 / 1024, and increment * stroke < 2^64 is split
 *     at 2^10.
 */
#include "step_scheduler.h"

#define PHASE_ONE (1ull << STEP_PHASE_BITS)
#define PHASE_MASK (PHASE_ONE - 1u)
#define SECONDS_PER_DAY 86400ull

step_status_t step_increment_for_rate(uint64_t rate_nl_per_day, uint32_t stroke_nl, uint32_t *increment)
{
    if (stroke_nl == 0u) {
        return STEP_BAD_STROKE;
    }
    /* increment = floor((2 * rate * 2^32 + den) / (2 * den)), den = stroke * 86400 * 2^15;
     * numerator and denominator share 2^15: = floor((rate * 2^18 + d) / (2 * d)), d = stroke * 86400 */
    const uint64_t d = (uint64_t)stroke_nl * SECONDS_PER_DAY; /* < 2^48.4 */
    const uint64_t d2 = 2u * d;                               /* < 2^49.4 */
    const uint64_t q0 = rate_nl_per_day / d2;
    uint64_t r = rate_nl_per_day % d2;
    if (q0 >= (1ull << 14)) { /* the increment is at least q0 * 2^18 >= 2^32 */
        return STEP_RATE_TOO_HIGH;
    }
    r <<= 14; /* < 2^63.4 */
    const uint64_t q1 = r / d2;
    r = ((r % d2) << 4) + d; /* < 2^53.4 + 2^48.4 */
    const uint64_t q2 = r / d2;
    const uint64_t inc = (q0 << 18) + (q1 << 4) + q2;
    if (inc >= PHASE_ONE) {
        return STEP_RATE_TOO_HIGH;
    }
    if (rate_nl_per_day > 0u && inc == 0u) {
        return STEP_RATE_TOO_LOW;
    }
    *increment = (uint32_t)inc;
    return STEP_OK;
}

void step_effective_rate(uint32_t increment, uint32_t stroke_nl, uint64_t *whole, uint32_t *frac_1024)
{
    /* increment * stroke * (86400 * 2^15) / 2^32 = p * 675 / 2^10, p = increment * stroke < 2^64 */
    const uint64_t p = (uint64_t)increment * stroke_nl;
    const uint64_t low = (p & 1023u) * 675u;
    *whole = (p >> 10) * 675u + (low >> 10);
    *frac_1024 = (uint32_t)(low & 1023u);
}

void step_scheduler_init(step_scheduler_t *s, uint32_t increment, uint32_t phase, uint64_t tick)
{
    s->increment = increment;
    s->phase = phase;
    s->tick = tick;
    s->steps = 0u;
}

void step_scheduler_set_increment(step_scheduler_t *s, uint32_t increment)
{
    s->increment = increment;
}

/* phase + span * increment = steps * 2^32 + new phase, for any uint64 span (span * inc < 2^96). */
static uint64_t accumulate(uint32_t phase, uint32_t increment, uint64_t span, uint32_t *new_phase)
{
    const uint64_t sh = span >> STEP_PHASE_BITS;
    const uint64_t sl = span & PHASE_MASK;
    const uint64_t low = (uint64_t)phase + sl * increment; /* <= 2^64 - 2^32 */
    *new_phase = (uint32_t)(low & PHASE_MASK);
    return sh * increment + (low >> STEP_PHASE_BITS); /* < span + 1: at most a step per tick */
}

uint64_t step_scheduler_steps_until(const step_scheduler_t *s, uint64_t to_tick)
{
    if (to_tick <= s->tick || s->increment == 0u) {
        return 0u;
    }
    uint32_t unused;
    return accumulate(s->phase, s->increment, to_tick - s->tick, &unused);
}

bool step_scheduler_tick_of_step(const step_scheduler_t *s, uint64_t k, uint64_t *tick)
{
    if (s->increment == 0u || k == 0u) {
        return false;
    }
    const uint64_t inc = s->increment;
    /* k * 2^32 - phase = (k - 1) * 2^32 + (2^32 - phase), (k - 1) = a * inc + b */
    const uint64_t a = (k - 1u) / inc;
    const uint64_t b = (k - 1u) % inc;
    const uint64_t n = (b << STEP_PHASE_BITS) + (PHASE_ONE - s->phase); /* <= 2^64 - 2^32 */
    const uint64_t c = n / inc + (n % inc != 0u ? 1u : 0u);
    if (a >= PHASE_ONE) {
        return false;
    }
    const uint64_t whole = a << STEP_PHASE_BITS;
    const uint64_t max = UINT64_MAX;
    if (c > max - whole || whole + c > max - s->tick) {
        return false;
    }
    *tick = s->tick + whole + c;
    return true;
}

bool step_scheduler_advance(step_scheduler_t *s, uint64_t to_tick, uint64_t *made)
{
    if (to_tick < s->tick) {
        return false;
    }
    uint32_t phase = s->phase;
    const uint64_t n = accumulate(s->phase, s->increment, to_tick - s->tick, &phase);
    s->phase = phase;
    s->tick = to_tick;
    s->steps += n;
    if (made != 0) {
        *made = n;
    }
    return true;
}
