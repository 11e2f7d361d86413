/* The pump's engine: firmware_model/controller.py's time, motor, events, alarms, battery, occlusion
 * detector, fluid path, event log and reset rebuild, in C (see pump.h).
 *
 * The run is the model's _run_to: jump from event tick to event tick (never walking ticks), count
 * the two accumulators' steps in O(1), decide what is due at each event in the model's fixed order.
 * Where the model asks its Plant what a stroke did, this firmware uses the samples the bench fixture
 * fed (pump_feed) and the two lines it announced (pump_set_lines); it stops just before the first
 * stroke it has no sample for, which changes nothing: the model's state is settled between events,
 * so where a caller stops never changes what happens.
 *
 * Not kept: the alarm tones' timing (ALARM_TONE is an event the model reports but never logs, and
 * nothing on the wire shows it) and the plant's OUTLET_RELEASE report (the plant's, not the pump's).
 */
#include "pump.h"

#define STROKE PUMP_STROKE_NL
#define DAY PUMP_TICKS_PER_DAY
#define PHASE_ONE (1ull << 32)
#define ERI_THRESHOLD_NC (BATTERY_CAPACITY_NC - BATTERY_ERI_RESERVE_NC)
#define ERI_LATEST_TICKS (BATTERY_MAX_SERVICE_TICKS - BATTERY_ERI_TO_EOS_TICKS)
#define DRAINED_MAX_NC (1ll << 62)
#define LAST_CHUNK 0x8000u

/* alarms.CATALOGUE: priority, latching, stops delivery */
static const struct { uint8_t priority, latching, stops; } SPEC[ALARM_CODES] = {
    [ALARM_NONE] = {0, 0, 0},
    [ALARM_RESERVOIR_LOW] = {PRIORITY_NON_CRITICAL, 0, 0},
    [ALARM_RESERVOIR_EMPTY] = {PRIORITY_CRITICAL, 0, 1},
    [ALARM_ELECTIVE_REPLACEMENT] = {PRIORITY_NON_CRITICAL, 1, 0},
    [ALARM_END_OF_SERVICE] = {PRIORITY_CRITICAL, 1, 1},
    [ALARM_REFILL_DISCREPANCY] = {PRIORITY_CRITICAL, 1, 0},
    [ALARM_OCCLUSION] = {PRIORITY_CRITICAL, 1, 1},
    [ALARM_MOTOR_STALL] = {PRIORITY_CRITICAL, 0, 1},
};

static void zero(void *dst, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++) {
        d[i] = 0;
    }
}

static void copy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) {
        d[i] = s[i];
    }
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int64_t ceil_div(int64_t a, int64_t b) /* a >= 0, b > 0 */
{
    return a / b + (a % b != 0 ? 1 : 0);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* ---- 128-bit arithmetic ----------------------------------------------------------------------- */

pump_u128_t pump_u128_mul(uint64_t a, uint64_t b)
{
    const uint64_t al = a & 0xFFFFFFFFu, ah = a >> 32, bl = b & 0xFFFFFFFFu, bh = b >> 32;
    const uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);
    pump_u128_t r;
    r.lo = (mid << 32) | (ll & 0xFFFFFFFFu);
    r.hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return r;
}

pump_u128_t pump_u128_add(pump_u128_t a, uint64_t b)
{
    pump_u128_t r;
    r.lo = a.lo + b;
    r.hi = a.hi + (r.lo < a.lo ? 1u : 0u);
    return r;
}

int pump_u128_cmp(pump_u128_t a, pump_u128_t b)
{
    if (a.hi != b.hi) {
        return a.hi < b.hi ? -1 : 1;
    }
    if (a.lo != b.lo) {
        return a.lo < b.lo ? -1 : 1;
    }
    return 0;
}

pump_u128_t pump_u128_divmod32(pump_u128_t a, uint32_t d, uint32_t *rem)
{
    uint32_t limb[4] = {(uint32_t)(a.hi >> 32), (uint32_t)a.hi, (uint32_t)(a.lo >> 32), (uint32_t)a.lo};
    uint64_t r = 0;
    for (int i = 0; i < 4; i++) {
        const uint64_t cur = (r << 32) | limb[i];
        limb[i] = (uint32_t)(cur / d);
        r = cur % d;
    }
    if (rem != 0) {
        *rem = (uint32_t)r;
    }
    pump_u128_t q = {((uint64_t)limb[0] << 32) | limb[1], ((uint64_t)limb[2] << 32) | limb[3]};
    return q;
}

uint64_t pump_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
    const pump_u128_t n = pump_u128_mul(a, b);
    /* binary long division of the 128-bit n by c; the quotient fits 64 bits by the caller's bound */
    uint64_t q = 0, r = 0;
    for (int i = 127; i >= 0; i--) {
        const uint64_t bit = i >= 64 ? (n.hi >> (i - 64)) & 1u : (n.lo >> i) & 1u;
        const uint64_t top = r >> 63;
        r = (r << 1) | bit;
        q <<= 1;
        if (top != 0 || r >= c) {
            r -= c;
            q |= 1u;
        }
    }
    return q;
}

/* ---- battery ---------------------------------------------------------------------------------- */

int64_t pump_battery_used_nc(int64_t steps, uint64_t elapsed_ticks)
{
    /* steps * step charge + elapsed * quiescent / day, the product split by whole days (it passes
     * 2^64 within 7 years): q * (t / D) + (t % D) * q / D is the same floor. */
    const uint64_t q = (uint64_t)BATTERY_QUIESCENT_NC_PER_DAY;
    const uint64_t quiet = (elapsed_ticks / DAY) * q + (elapsed_ticks % DAY) * q / DAY;
    return steps * BATTERY_STEP_CHARGE_NC + (int64_t)quiet;
}

int64_t pump_battery_months(int64_t steps, uint64_t elapsed_ticks, int64_t steps_per_day, int64_t drained_nc)
{
    int64_t left = BATTERY_CAPACITY_NC - pump_battery_used_nc(steps, elapsed_ticks) - drained_nc;
    if (left < 0) {
        left = 0;
    }
    const int64_t per_day = steps_per_day * BATTERY_STEP_CHARGE_NC + BATTERY_QUIESCENT_NC_PER_DAY;
    const int64_t by_charge_x48 = left * 48 / per_day;
    const uint64_t life_left = elapsed_ticks < BATTERY_MAX_SERVICE_TICKS ? BATTERY_MAX_SERVICE_TICKS - elapsed_ticks : 0u;
    const int64_t by_life_x48 = (int64_t)(life_left * 48u / DAY);
    return (by_charge_x48 < by_life_x48 ? by_charge_x48 : by_life_x48) / 1461;
}

int pump_months_remaining(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    const int64_t day_nl = pump_program_day_nl(p, st->mode, st->continuous_rate_nl_per_day, st->flex, st->flex_count);
    return (int)pump_battery_months(st->steps_total, st->tick, day_nl / STROKE, st->battery_drained_nc);
}

static int64_t battery_threshold(const pump_state_t *st)
{
    return st->has_eri ? BATTERY_CAPACITY_NC : ERI_THRESHOLD_NC;
}

/* Controller._battery_quiet_until, with its cache (the cache decides where the charge is looked at,
 * so it is kept exactly as the model keeps it) */
static uint64_t quiet_until(pump_t *p)
{
    pump_state_t *st = &p->st;
    const int64_t threshold = battery_threshold(st);
    if (st->has_quiet && st->quiet_threshold_nc == threshold && st->quiet_tick > st->tick) {
        return st->quiet_tick;
    }
    int64_t left = threshold - pump_battery_used_nc(st->steps_total, st->tick) - st->battery_drained_nc;
    if (left < 0) {
        left = 0;
    }
    const uint64_t per_day = (uint64_t)((PUMP_MAX_RATE_NL_PER_DAY / STROKE + 2) * BATTERY_STEP_CHARGE_NC
                                        + BATTERY_QUIESCENT_NC_PER_DAY + 1);
    const uint64_t quiet = add_sat(st->tick, pump_muldiv((uint64_t)left, DAY, per_day));
    st->has_quiet = 1;
    st->quiet_threshold_nc = threshold;
    st->quiet_tick = quiet;
    return quiet;
}

/* ---- alarms ----------------------------------------------------------------------------------- */

static int alarm_find(const pump_state_t *st, uint8_t code)
{
    for (int i = 0; i < st->alarm_count; i++) {
        if (st->alarms[i].code == code) {
            return i;
        }
    }
    return -1;
}

static void alarm_remove(pump_state_t *st, int i)
{
    for (int j = i; j + 1 < st->alarm_count; j++) {
        st->alarms[j] = st->alarms[j + 1];
    }
    st->alarm_count--;
}

bool pump_alarm_active(const pump_t *p, uint8_t code)
{
    return alarm_find(&p->st, code) >= 0;
}

uint8_t pump_sounding(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    int best = -1;
    for (int i = 0; i < st->alarm_count; i++) {
        const pump_alarm_t *a = &st->alarms[i];
        if (a->acknowledged) {
            continue;
        }
        if (best < 0 || SPEC[a->code].priority > SPEC[st->alarms[best].code].priority) {
            best = i;
        }
    }
    return best < 0 ? 0 : st->alarms[best].code;
}

bool pump_alarm_acknowledge(pump_t *p, uint8_t code)
{
    pump_state_t *st = &p->st;
    const int i = alarm_find(st, code);
    if (i < 0) {
        return false;
    }
    st->alarms[i].acknowledged = 1;
    if (!st->alarms[i].condition) {
        alarm_remove(st, i);
        return true;
    }
    return false;
}

bool pump_delivery_stopped(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    if (st->eos || st->drug_index < 0 || st->telemetry_latched) {
        return true;
    }
    for (int i = 0; i < st->alarm_count; i++) {
        if (SPEC[st->alarms[i].code].stops) {
            return true;
        }
    }
    return false;
}

void pump_halt_boluses(pump_t *p)
{
    pump_state_t *st = &p->st;
    if (st->has_active_bolus) {
        const pump_bolus_t *b = &st->active_bolus;
        pump_log(p, LOG_BOLUS_HALTED, b->kind, (int32_t)b->steps_done, (int32_t)(b->steps_total - b->steps_done));
    }
    if (st->has_suspended_bolus) {
        const pump_bolus_t *b = &st->suspended_bolus;
        pump_log(p, LOG_BOLUS_HALTED, b->kind, (int32_t)b->steps_done, (int32_t)(b->steps_total - b->steps_done));
    }
    st->has_active_bolus = st->has_suspended_bolus = 0;
}

void pump_raise(pump_t *p, uint8_t code)
{
    pump_state_t *st = &p->st;
    const bool was_stopped = pump_delivery_stopped(p);
    const int i = alarm_find(st, code);
    if (i >= 0) {
        st->alarms[i].condition = 1;
        return;
    }
    pump_alarm_t *a = &st->alarms[st->alarm_count++];
    a->code = code;
    a->condition = 1;
    a->acknowledged = 0;
    a->raised_tick = st->tick;
    pump_log(p, LOG_ALARM_ON, code, SPEC[code].priority, 0);
    if (SPEC[code].stops) {
        pump_halt_boluses(p);
        if (!was_stopped) {
            pump_log(p, LOG_DELIVERY_STOPPED, code, 0, 0);
        }
    }
    /* the model sounds the tone here: tones are not kept (see the top of this file) */
}

void pump_resume(pump_t *p)
{
    pump_state_t *st = &p->st;
    pump_detector_reset(st);
    st->missed_steps = 0;
    st->steps_since_resume = 0;
    pump_log(p, LOG_DELIVERY_RESUMED, 0, 0, 0);
}

void pump_after_alarm_removed(pump_t *p, bool was_stopped)
{
    if (was_stopped && !pump_delivery_stopped(p)) {
        pump_resume(p);
    }
}

void pump_clear(pump_t *p, uint8_t code)
{
    pump_state_t *st = &p->st;
    const bool was_stopped = pump_delivery_stopped(p);
    const int i = alarm_find(st, code);
    if (i < 0) {
        return;
    }
    st->alarms[i].condition = 0;
    if (!SPEC[code].latching || st->alarms[i].acknowledged) {
        alarm_remove(st, i);
        pump_log(p, LOG_ALARM_OFF, code, 0, 0);
        pump_after_alarm_removed(p, was_stopped);
    }
}

/* ---- the fluid path --------------------------------------------------------------------------- */

static pump_segment_t *seg(pump_state_t *st, uint32_t i)
{
    return &st->path[(st->path_head + i) % PUMP_PATH_SEGMENTS];
}

static const pump_segment_t *cseg(const pump_state_t *st, uint32_t i)
{
    return &st->path[(st->path_head + i) % PUMP_PATH_SEGMENTS];
}

int64_t pump_path_push(pump_state_t *st, int64_t volume_nl, int64_t concentration)
{
    if (volume_nl <= 0) {
        return 0;
    }
    if (st->path_count > 0 && seg(st, st->path_count - 1u)->concentration_ug_per_ml == concentration) {
        seg(st, st->path_count - 1u)->volume_nl += volume_nl;
    } else {
        /* never full: segments are whole strokes and the path holds PUMP_FLUID_PATH_NL (pump.h) */
        pump_segment_t *s = seg(st, st->path_count);
        s->volume_nl = volume_nl;
        s->concentration_ug_per_ml = concentration;
        st->path_count++;
    }
    int64_t out = 0, left = volume_nl;
    while (left > 0) {
        pump_segment_t *tip = seg(st, 0);
        const int64_t take = left < tip->volume_nl ? left : tip->volume_nl;
        out += take * tip->concentration_ug_per_ml;
        left -= take;
        if (take == tip->volume_nl) {
            st->path_head = (uint16_t)((st->path_head + 1u) % PUMP_PATH_SEGMENTS);
            st->path_count--;
        } else {
            tip->volume_nl -= take;
        }
    }
    return out;
}

int64_t pump_path_push_dose(const pump_state_t *st, int64_t volume_nl, int64_t concentration)
{
    /* what push would return, without changing the path: the first volume_nl of (path ++ new fluid) */
    if (volume_nl <= 0) {
        return 0;
    }
    int64_t out = 0, left = volume_nl;
    for (uint32_t i = 0; i < st->path_count && left > 0; i++) {
        const pump_segment_t *s = cseg(st, i);
        const int64_t take = left < s->volume_nl ? left : s->volume_nl;
        out += take * s->concentration_ug_per_ml;
        left -= take;
    }
    return out + left * concentration;
}

int64_t pump_path_old_drug_nl(const pump_state_t *st, int64_t concentration)
{
    int64_t total = 0;
    for (uint32_t i = 0; i < st->path_count; i++) {
        if (cseg(st, i)->concentration_ug_per_ml != concentration) {
            total += cseg(st, i)->volume_nl;
        }
    }
    return total;
}

int64_t pump_path_tip_concentration(const pump_state_t *st, bool *any)
{
    *any = st->path_count > 0;
    return st->path_count > 0 ? cseg(st, 0)->concentration_ug_per_ml : 0;
}

static void path_unprimed(pump_state_t *st)
{
    st->path_head = 0;
    st->path_count = 0;
    if (PUMP_FLUID_PATH_NL > 0) {
        st->path[0].volume_nl = PUMP_FLUID_PATH_NL;
        st->path[0].concentration_ug_per_ml = 0;
        st->path_count = 1;
    }
}

/* ---- the occlusion detector (occlusion.scan_per_step, one sample at a time) -------------------- */

void pump_detector_reset(pump_state_t *st)
{
    st->history_count = 0;
    st->history_head = 0;
    st->cusum_pa = 0;
}

/* The k-th newest sample (k >= 1) of the history followed by extra[0..n_extra). */
static int32_t hist_back(const pump_state_t *st, const pump_sample_t *extra, size_t n_extra, size_t k)
{
    if (k <= n_extra) {
        return extra[n_extra - k].pressure_pa;
    }
    k -= n_extra;
    return st->history_pa[(st->history_head + DETECTOR_HISTORY - k) % DETECTOR_HISTORY];
}

/* The rules on sample p after the history (and extra); *cusum carries S. Returns the rule fired. */
static uint8_t detector_rules(const pump_state_t *st, const pump_sample_t *extra, size_t n_extra, int64_t *cusum,
                              int32_t pressure)
{
    size_t have = st->history_count + n_extra;
    if (have > DETECTOR_HISTORY) {
        have = DETECTOR_HISTORY;
    }
    uint8_t rule = RULE_NONE;
    const int64_t p = pressure;
    int64_t d = have > 0 ? p - hist_back(st, extra, n_extra, 1) : 0;
    if (d > DETECTOR_CUSUM_CLIP_PA) {
        d = DETECTOR_CUSUM_CLIP_PA;
    }
    int64_t s = *cusum + d - DETECTOR_CUSUM_KAPPA_PA;
    *cusum = s > 0 ? s : 0;
    if (*cusum > DETECTOR_CUSUM_H_PA) {
        rule = RULE_CUSUM;
    }
    if (rule == RULE_NONE && have >= DETECTOR_RISE_STEPS && p - hist_back(st, extra, n_extra, DETECTOR_RISE_STEPS) >= DETECTOR_RISE_PA) {
        rule = RULE_RISE;
    }
    if (rule == RULE_NONE && have >= DETECTOR_DEFICIT_STEPS) {
        /* (p - h) * compliance // 1000 >= deficit: the product is a multiple of 1000 here, but the
         * floor is taken as the model takes it all the same */
        const int64_t x = (p - hist_back(st, extra, n_extra, DETECTOR_DEFICIT_STEPS)) * DETECTOR_COMPLIANCE_NL_PER_KPA;
        const int64_t fl = x >= 0 ? x / 1000 : -((-x + 999) / 1000);
        if (fl >= DETECTOR_DEFICIT_NL) {
            rule = RULE_VOLUME_DEFICIT;
        }
    }
    if (rule == RULE_NONE && p >= DETECTOR_THRESHOLD_PA) {
        rule = RULE_THRESHOLD;
    }
    return rule;
}

static void history_push(pump_state_t *st, int32_t pressure)
{
    st->history_pa[st->history_head] = pressure;
    st->history_head = (uint16_t)((st->history_head + 1u) % DETECTOR_HISTORY);
    if (st->history_count < DETECTOR_HISTORY) {
        st->history_count++;
    }
}

uint8_t pump_detector_step(pump_state_t *st, int32_t pressure_pa)
{
    int64_t cusum = st->cusum_pa;
    const uint8_t rule = detector_rules(st, 0, 0, &cusum, pressure_pa);
    st->cusum_pa = cusum;
    history_push(st, pressure_pa);
    return rule;
}

int32_t pump_latest_pressure_pa(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    if (st->history_count == 0) {
        return 0;
    }
    return st->history_pa[(st->history_head + DETECTOR_HISTORY - 1u) % DETECTOR_HISTORY];
}

/* ---- the event log ---------------------------------------------------------------------------- */

static uint16_t crc16(const uint8_t *data, size_t n)
{
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(data[i] << 8);
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
        }
    }
    return crc;
}

static void ring_write(pump_t *p, uint16_t code, uint16_t aux, const uint8_t payload[12])
{
    pump_log_t *l = p->log;
    const uint32_t seq = l->next_seq;
    uint8_t *r = l->ring[seq % LOG_CAPACITY];
    if (seq >= LOG_CAPACITY || l->overwritten > 0) {
        l->overwritten++;
    }
    put32(r, seq);
    put64(r + 4, p->st.tick);
    put16(r + 12, code);
    put16(r + 14, aux);
    copy(r + 16, payload, 12);
    put16(r + 28, 0xFFFFu);
    put16(r + 30, crc16(r, 30));
    l->next_seq = seq + 1u;
}

void pump_log(pump_t *p, uint16_t code, int32_t a0, int32_t a1, int32_t a2)
{
    p->st.records_since_checkpoint++;
    if (p->replaying) {
        return; /* a rebuild replays into a scratch log: the records it would write are already there */
    }
    uint8_t payload[12];
    put32(payload, (uint32_t)a0);
    put32(payload + 4, (uint32_t)a1);
    put32(payload + 8, (uint32_t)a2);
    ring_write(p, code, 0, payload);
}

static size_t put_uvarint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = (uint8_t)(v & 0x7Fu);
        v >>= 7;
        out[n++] = (uint8_t)(v != 0 ? b | 0x80u : b);
    } while (v != 0);
    return n;
}

void pump_log_blob(pump_t *p, uint16_t code, const uint8_t *data, size_t n)
{
    if (p->replaying) {
        return;
    }
    uint8_t pre[10];
    const size_t pl = put_uvarint(pre, n);
    const size_t total = pl + n;
    const size_t chunks = (total + 11u) / 12u;
    for (size_t c = 0; c < chunks; c++) {
        uint8_t payload[12];
        for (size_t j = 0; j < 12u; j++) {
            const size_t at = c * 12u + j;
            payload[j] = at < pl ? pre[at] : (at < total ? data[at - pl] : 0u);
        }
        ring_write(p, code, (uint16_t)(c | (c + 1u == chunks ? LAST_CHUNK : 0u)), payload);
    }
}

void pump_log_command(pump_t *p, uint8_t msg_id, const uint8_t *payload, size_t len, uint32_t model_records)
{
    p->st.records_since_checkpoint += model_records;
    if (p->replaying) {
        return;
    }
    p->scratch[0] = msg_id;
    copy(p->scratch + 1, payload, len);
    pump_log_blob(p, LOG_COMMAND, p->scratch, len + 1u);
}

size_t pump_read_log(const pump_t *p, uint32_t first_seq, uint8_t count, uint8_t *out)
{
    const pump_log_t *l = p->log;
    const uint64_t next = l->next_seq;
    const uint64_t held = (l->overwritten > 0 || next > LOG_CAPACITY) ? LOG_CAPACITY : next;
    const uint64_t oldest = next - held;
    const uint64_t start = first_seq > oldest ? first_seq : oldest;
    uint64_t n = count < 31u ? count : 31u;
    if (start >= next) {
        n = 0;
    } else if (next - start < n) {
        n = next - start;
    }
    put32(out, l->next_seq);
    out[4] = (uint8_t)n;
    for (uint64_t i = 0; i < n; i++) {
        copy(out + 5 + i * LOG_RECORD_SIZE, l->ring[(start + i) % LOG_CAPACITY], LOG_RECORD_SIZE);
    }
    return 5u + (size_t)n * LOG_RECORD_SIZE;
}

/* ---- checkpoints: the state's own bytes (the volatile detector left out) ---------------------- */

typedef struct {
    uint8_t *buf;
    size_t cap, pos;
    bool reading, bad;
} sx_t;

static void sx_bytes(sx_t *s, void *v, size_t n)
{
    if (s->pos + n > s->cap) {
        s->bad = true;
        return;
    }
    if (s->reading) {
        copy(v, s->buf + s->pos, n);
    } else {
        copy(s->buf + s->pos, v, n);
    }
    s->pos += n;
}

/* little-endian integers, the same code both ways */
static void sx_u64(sx_t *s, uint64_t *v)
{
    uint8_t b[8];
    if (!s->reading) {
        put64(b, *v);
    }
    sx_bytes(s, b, 8);
    if (s->reading && !s->bad) {
        *v = get64(b);
    }
}

static void sx_i64(sx_t *s, int64_t *v)
{
    uint64_t u = (uint64_t)*v;
    sx_u64(s, &u);
    *v = (int64_t)u;
}

static void sx_u32(sx_t *s, uint32_t *v)
{
    uint8_t b[4];
    if (!s->reading) {
        put32(b, *v);
    }
    sx_bytes(s, b, 4);
    if (s->reading && !s->bad) {
        *v = get32(b);
    }
}

static void sx_i32(sx_t *s, int32_t *v)
{
    uint32_t u = (uint32_t)*v;
    sx_u32(s, &u);
    *v = (int32_t)u;
}

static void sx_u16(sx_t *s, uint16_t *v)
{
    uint8_t b[2];
    if (!s->reading) {
        put16(b, *v);
    }
    sx_bytes(s, b, 2);
    if (s->reading && !s->bad) {
        *v = get16(b);
    }
}

static void sx_u8(sx_t *s, uint8_t *v)
{
    sx_bytes(s, v, 1);
}

static void sx_sched(sx_t *s, step_scheduler_t *c)
{
    sx_u32(s, &c->increment);
    sx_u32(s, &c->phase);
    sx_u64(s, &c->tick);
    sx_u64(s, &c->steps);
}

static void sx_bolus(sx_t *s, pump_bolus_t *b)
{
    sx_u8(s, &b->kind);
    sx_i64(s, &b->steps_total);
    sx_i64(s, &b->steps_done);
    sx_u32(s, &b->increment);
}

#define CHECKPOINT_VERSION 1u

static void sx_state(sx_t *s, pump_state_t *st)
{
    uint8_t version = CHECKPOINT_VERSION;
    sx_u8(s, &version);
    if (version != CHECKPOINT_VERSION) {
        s->bad = true;
        return;
    }
    sx_u64(s, &st->tick);
    sx_u64(s, &st->clock_offset_ticks);
    sx_u8(s, &st->mode);
    sx_i64(s, &st->continuous_rate_nl_per_day);
    sx_u8(s, &st->flex_count);
    if (st->flex_count > PUMP_MAX_FLEX_STEPS) {
        s->bad = true;
        return;
    }
    for (uint32_t i = 0; i < st->flex_count; i++) {
        sx_u64(s, &st->flex[i].start_tick);
        sx_i64(s, &st->flex[i].rate_nl_per_day);
    }
    uint8_t di = (uint8_t)st->drug_index;
    sx_u8(s, &di);
    st->drug_index = (int8_t)di;
    sx_i64(s, &st->concentration_ug_per_ml);
    sx_i64(s, &st->reservoir_nl);
    sx_i64(s, &st->low_reservoir_nl);
    sx_i64(s, &st->filled_nl);
    sx_i64(s, &st->withdrawn_nl);
    sx_i64(s, &st->delivered_nl);
    sx_i64(s, &st->dose_at_tip_pg);
    /* the path tip first, written from head 0 on reading */
    uint16_t count = st->path_count;
    sx_u16(s, &count);
    if (count > PUMP_PATH_SEGMENTS) {
        s->bad = true;
        return;
    }
    if (s->reading) {
        st->path_head = 0;
        st->path_count = count;
    }
    for (uint32_t i = 0; i < count; i++) {
        sx_i64(s, &seg(st, i)->volume_nl);
        sx_i64(s, &seg(st, i)->concentration_ug_per_ml);
    }
    sx_sched(s, &st->basal);
    sx_sched(s, &st->bolus);
    sx_u8(s, &st->has_active_bolus);
    sx_u8(s, &st->has_suspended_bolus);
    sx_u8(s, &st->has_plan);
    sx_u8(s, &st->has_patient);
    sx_u8(s, &st->has_bridge);
    sx_bolus(s, &st->active_bolus);
    sx_bolus(s, &st->suspended_bolus);
    sx_i64(s, &st->plan.steps);
    sx_u32(s, &st->plan.increment);
    sx_u64(s, &st->plan.period_ticks);
    sx_i64(s, &st->plan.starts_left);
    sx_u64(s, &st->plan.next_start_tick);
    sx_i64(s, &st->patient.steps);
    sx_u32(s, &st->patient.increment);
    sx_u64(s, &st->patient.lockout_ticks);
    sx_i64(s, &st->patient.max_per_day);
    sx_i64(s, &st->bridge.steps_left);
    sx_i64(s, &st->bridge.old_concentration_ug_per_ml);
    sx_u8(s, &st->bolus_run_count);
    if (st->bolus_run_count > PUMP_BOLUS_RUNS) {
        s->bad = true;
        return;
    }
    for (uint32_t i = 0; i < st->bolus_run_count; i++) {
        pump_bolus_run_t *r = &st->bolus_runs[i];
        sx_u64(s, &r->first_tick);
        sx_u64(s, &r->period);
        sx_u32(s, &r->count);
        sx_u8(s, &r->kind);
        sx_i64(s, &r->dose_pg);
    }
    sx_u8(s, &st->alarm_count);
    if (st->alarm_count > ALARM_CODES) {
        s->bad = true;
        return;
    }
    for (uint32_t i = 0; i < st->alarm_count; i++) {
        pump_alarm_t *a = &st->alarms[i];
        sx_u8(s, &a->code);
        sx_u8(s, &a->condition);
        sx_u8(s, &a->acknowledged);
        sx_u64(s, &a->raised_tick);
        if (a->code == 0 || a->code >= ALARM_CODES) {
            s->bad = true;
        }
    }
    sx_i64(s, &st->steps_total);
    sx_u8(s, &st->has_eri);
    sx_u64(s, &st->eri_tick);
    sx_u8(s, &st->eos);
    sx_i64(s, &st->boluses_granted);
    sx_i64(s, &st->boluses_denied);
    sx_u8(s, &st->has_occlusion_found);
    sx_u8(s, &st->occlusion_rule);
    sx_i32(s, &st->occlusion_pressure_pa);
    sx_i64(s, &st->steps_since_resume);
    sx_i64(s, &st->missed_steps);
    sx_u8(s, &st->has_stall);
    sx_u64(s, &st->stall_tick);
    sx_u64(s, &st->stall_retry_tick);
    sx_u8(s, &st->telemetry_mode);
    sx_u8(s, &st->telemetry_latched);
    sx_i64(s, &st->battery_drained_nc);
    sx_u32(s, &st->records_since_checkpoint);
    if (s->reading && !s->bad) { /* what the code relies on (the record CRCs make a bad one unlikely) */
        int64_t path_nl = 0;
        bool segs_ok = true;
        for (uint32_t i = 0; i < st->path_count; i++) {
            segs_ok = segs_ok && seg(st, i)->volume_nl > 0 && seg(st, i)->volume_nl <= PUMP_FLUID_PATH_NL;
            path_nl += seg(st, i)->volume_nl;
        }
        const bool ok = st->mode <= MODE_MINIMUM_RATE && (st->mode != MODE_FLEX || st->flex_count >= 1)
                        && st->drug_index >= -1 && st->drug_index < 8 && segs_ok && path_nl == PUMP_FLUID_PATH_NL
                        && (!st->has_bridge || st->bridge.old_concentration_ug_per_ml > 0)
                        && st->basal.tick == st->tick && st->bolus.tick == st->tick
                        && (!st->has_active_bolus || (st->active_bolus.kind >= BOLUS_CLINICIAN && st->active_bolus.kind <= BOLUS_PRIMING))
                        && (!st->has_suspended_bolus || (st->suspended_bolus.kind >= BOLUS_CLINICIAN && st->suspended_bolus.kind <= BOLUS_PRIMING));
        if (!ok) {
            s->bad = true;
        }
    }
}

static void checkpoint(pump_t *p)
{
    p->st.records_since_checkpoint = 0;
    if (p->replaying) {
        return;
    }
    sx_t s = {p->scratch, sizeof p->scratch, 0, false, false};
    sx_state(&s, &p->st);
    p->checkpoint_seq = p->log->next_seq;
    pump_log_blob(p, LOG_CHECKPOINT, p->scratch, s.pos);
}

void pump_checkpoint_soon(pump_t *p)
{
    p->st.records_since_checkpoint = PUMP_CHECKPOINT_RECORDS;
}

static void maybe_checkpoint(pump_t *p)
{
    /* The model's cadence (records counted as the model counts them), and a safety net of this
     * firmware's own: its COMMAND blobs are wire payloads, larger than the model's varints, so a
     * long run of big commands could otherwise push the newest checkpoint out of the ring. The net
     * is never reached by fewer than about a hundred 24-step flex tables between two checkpoints. */
    const bool net = !p->replaying && p->log->next_seq - p->checkpoint_seq >= LOG_CAPACITY / 2u;
    if (p->st.records_since_checkpoint >= PUMP_CHECKPOINT_RECORDS || net) {
        checkpoint(p);
    }
}

/* ---- boluses ---------------------------------------------------------------------------------- */

void pump_start_bolus(pump_t *p, const pump_bolus_t *b)
{
    pump_state_t *st = &p->st;
    st->active_bolus = *b;
    st->has_active_bolus = 1;
    st->bolus.phase = 0;
    pump_log(p, LOG_BOLUS_STARTED, b->kind, (int32_t)(b->steps_total - b->steps_done), (int32_t)b->increment);
}

/* the runs' starts after `window` (ticks > window) */
static uint32_t run_in_window(const pump_bolus_run_t *r, uint64_t window, bool have_window, uint64_t *first)
{
    if (!have_window || r->first_tick > window) {
        *first = r->first_tick;
        return r->count;
    }
    /* starts at first + i * period <= window are out */
    uint64_t out = r->period == 0 ? r->count : (window - r->first_tick) / r->period + 1u;
    if (out >= r->count) {
        return 0;
    }
    *first = r->first_tick + out * r->period;
    return r->count - (uint32_t)out;
}

static bool window_of(const pump_state_t *st, uint64_t *window)
{
    if (st->tick < DAY) {
        return false; /* tick - D < 0: every start is in */
    }
    *window = st->tick - DAY;
    return true;
}

void pump_note_bolus_start(pump_t *p, uint8_t kind, int64_t dose_pg)
{
    pump_state_t *st = &p->st;
    uint64_t window = 0;
    const bool have = window_of(st, &window);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < st->bolus_run_count; i++) {
        pump_bolus_run_t r = st->bolus_runs[i];
        uint64_t first = 0;
        const uint32_t n = run_in_window(&r, window, have, &first);
        if (n == 0) {
            continue;
        }
        r.first_tick = first;
        r.count = n;
        if (n == 1) {
            r.period = 0;
        }
        st->bolus_runs[kept++] = r;
    }
    st->bolus_run_count = (uint8_t)kept;
    if (kept > 0) {
        pump_bolus_run_t *last = &st->bolus_runs[kept - 1u];
        if (last->kind == kind && last->dose_pg == dose_pg && st->tick > last->first_tick) {
            if (last->count == 1) {
                last->period = st->tick - last->first_tick;
                last->count = 2;
                return;
            }
            if (st->tick == add_sat(last->first_tick, (uint64_t)last->count * last->period)) {
                last->count++;
                return;
            }
        }
    }
    if (kept == PUMP_BOLUS_RUNS) {
        /* Full (more than 90 irregular starts in 24 h, only by command): fold the oldest two
         * non-patient runs into one start at the later one's last start carrying both doses, so no
         * dose leaves the window early (the rolling limits stay safe; the model would let the
         * earlier doses leave sooner). Patient starts are never folded: at most 24 a day. */
        int a = -1, b = -1;
        for (uint32_t i = 0; i < kept && b < 0; i++) {
            if (st->bolus_runs[i].kind != BOLUS_PATIENT) {
                if (a < 0) {
                    a = (int)i;
                } else {
                    b = (int)i;
                }
            }
        }
        if (b < 0) { /* cannot happen (see above); never write past the table */
            a = 0;
            b = 1;
        }
        pump_bolus_run_t *ra = &st->bolus_runs[a], *rb = &st->bolus_runs[b];
        int64_t dose = ra->dose_pg * ra->count + rb->dose_pg * rb->count;
        rb->first_tick = rb->first_tick + (uint64_t)(rb->count - 1u) * rb->period;
        rb->count = 1;
        rb->period = 0;
        rb->dose_pg = dose;
        for (uint32_t i = (uint32_t)a; i + 1u < kept; i++) {
            st->bolus_runs[i] = st->bolus_runs[i + 1u];
        }
        kept--;
    }
    pump_bolus_run_t *r = &st->bolus_runs[kept];
    r->first_tick = st->tick;
    r->period = 0;
    r->count = 1;
    r->kind = kind;
    r->dose_pg = dose_pg;
    st->bolus_run_count = (uint8_t)(kept + 1u);
}

int64_t pump_recent_bolus_pg(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    uint64_t window = 0;
    const bool have = window_of(st, &window);
    int64_t total = 0;
    for (uint32_t i = 0; i < st->bolus_run_count; i++) {
        uint64_t first;
        total += st->bolus_runs[i].dose_pg * (int64_t)run_in_window(&st->bolus_runs[i], window, have, &first);
    }
    return total;
}

uint32_t pump_patient_grants(const pump_t *p, uint64_t *last_tick)
{
    const pump_state_t *st = &p->st;
    uint64_t window = 0;
    const bool have = window_of(st, &window);
    uint32_t total = 0;
    for (uint32_t i = 0; i < st->bolus_run_count; i++) {
        const pump_bolus_run_t *r = &st->bolus_runs[i];
        uint64_t first = 0;
        const uint32_t n = r->kind == BOLUS_PATIENT ? run_in_window(r, window, have, &first) : 0u;
        if (n > 0) {
            total += n;
            *last_tick = first + (uint64_t)(n - 1u) * r->period;
        }
    }
    return total;
}

void pump_start_planned_clinician_bolus(pump_t *p)
{
    pump_state_t *st = &p->st;
    pump_plan_t *plan = &st->plan;
    if (plan->starts_left > 0) {
        plan->starts_left--;
    }
    const int64_t steps = plan->steps;
    const uint32_t increment = plan->increment;
    if (plan->starts_left == 0) {
        st->has_plan = 0;
    } else {
        plan->next_start_tick = add_sat(plan->next_start_tick, plan->period_ticks);
    }
    if (pump_delivery_stopped(p)) {
        return;
    }
    pump_bolus_t bolus = {BOLUS_CLINICIAN, steps, 0, increment};
    pump_note_bolus_start(p, BOLUS_CLINICIAN, steps * STROKE * pump_max_concentration(p));
    if (st->has_active_bolus) {
        if (!st->has_suspended_bolus && st->active_bolus.kind == BOLUS_PATIENT) {
            st->suspended_bolus = bolus; /* SR-6: it starts when the patient bolus ends */
            st->has_suspended_bolus = 1;
        }
        return;
    }
    pump_start_bolus(p, &bolus);
}

/* ---- rates ------------------------------------------------------------------------------------ */

int64_t pump_program_rate(const pump_t *p, uint64_t tick)
{
    const pump_state_t *st = &p->st;
    switch (st->mode) {
    case MODE_CONTINUOUS:
        return st->continuous_rate_nl_per_day;
    case MODE_FLEX: {
        const uint64_t tod = (tick % DAY + st->clock_offset_ticks) % DAY;
        int64_t rate = st->flex[st->flex_count - 1u].rate_nl_per_day;
        for (uint32_t i = 0; i < st->flex_count; i++) {
            if (st->flex[i].start_tick <= tod) {
                rate = st->flex[i].rate_nl_per_day;
            }
        }
        return rate;
    }
    case MODE_MINIMUM_RATE:
        return PUMP_SAFE_RATE_NL_PER_DAY;
    default:
        return 0;
    }
}

int64_t pump_program_day_nl(const pump_t *p, uint8_t mode, int64_t rate, const pump_flex_step_t *flex, size_t n)
{
    (void)p;
    switch (mode) {
    case MODE_CONTINUOUS:
        return rate;
    case MODE_FLEX: {
        int64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            const uint64_t end = i + 1u < n ? flex[i + 1u].start_tick : DAY;
            total += flex[i].rate_nl_per_day * (int64_t)(end - flex[i].start_tick);
        }
        return ceil_div(total, (int64_t)DAY);
    }
    case MODE_MINIMUM_RATE:
        return PUMP_SAFE_RATE_NL_PER_DAY;
    default:
        return 0;
    }
}

static int64_t basal_rate(const pump_t *p, uint64_t tick)
{
    const pump_state_t *st = &p->st;
    int64_t rate = pump_program_rate(p, tick);
    if (st->has_bridge && rate != 0) {
        rate = rate * st->concentration_ug_per_ml / st->bridge.old_concentration_ug_per_ml;
        /* the slowest rate the accumulator can step: ceil(stroke * D / 2^33) */
        const int64_t slowest = ceil_div(STROKE * (int64_t)DAY, (int64_t)(2u * PHASE_ONE));
        if (rate > PUMP_MAX_RATE_NL_PER_DAY) {
            rate = PUMP_MAX_RATE_NL_PER_DAY;
        }
        if (rate < slowest) {
            rate = slowest;
        }
    }
    return rate;
}

static uint32_t increment_for(int64_t rate)
{
    uint32_t inc = 0;
    (void)step_increment_for_rate((uint64_t)rate, STROKE, &inc); /* rates here are always in range */
    return inc;
}

static void apply_rates(pump_t *p)
{
    pump_state_t *st = &p->st;
    if (pump_delivery_stopped(p)) {
        step_scheduler_set_increment(&st->basal, 0);
        step_scheduler_set_increment(&st->bolus, 0);
        return;
    }
    const uint32_t max_inc = increment_for(PUMP_MAX_RATE_NL_PER_DAY);
    const uint32_t basal_inc = increment_for(basal_rate(p, st->tick));
    uint32_t bolus_inc = st->has_active_bolus ? st->active_bolus.increment : 0u;
    const uint32_t room = max_inc > basal_inc ? max_inc - basal_inc : 0u;
    if (bolus_inc > room) {
        bolus_inc = room; /* SR-7: basal plus bolus never pass the motor's maximum; the bolus stretches */
    }
    if (st->has_active_bolus && bolus_inc == 0) {
        bolus_inc = 1;
    }
    step_scheduler_set_increment(&st->basal, basal_inc);
    step_scheduler_set_increment(&st->bolus, bolus_inc);
}

int64_t pump_steps_available(const pump_t *p)
{
    const int64_t available = (p->st.reservoir_nl - PUMP_EMPTY_RESERVOIR_NL) / STROKE;
    return available > 0 ? available : 0;
}

/* ---- the motor's schedule --------------------------------------------------------------------- */

static uint64_t steps_until(const pump_state_t *st, uint64_t t)
{
    return step_scheduler_steps_until(&st->basal, t) + step_scheduler_steps_until(&st->bolus, t);
}

/* step_scheduler.tick_of_combined_step: the first tick by which both channels made k steps, if <= horizon */
static bool tick_of_combined_step(const pump_state_t *st, uint64_t k, uint64_t horizon, uint64_t *out)
{
    if (steps_until(st, horizon) < k) {
        return false;
    }
    uint64_t lo = st->basal.tick, hi = horizon;
    while (hi - lo > 1u) {
        const uint64_t mid = lo + (hi - lo) / 2u;
        if (steps_until(st, mid) >= k) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    *out = hi;
    return true;
}

/* Controller._stroke_ticks: the ticks of both channels' strokes in (now, to], merged, at most `cap`
 * (the caller caps at the steps the reservoir allows). */
static size_t stroke_ticks(const pump_state_t *st, uint64_t to, size_t cap, uint64_t *out)
{
    const uint64_t nb = step_scheduler_steps_until(&st->basal, to), nc = step_scheduler_steps_until(&st->bolus, to);
    uint64_t ib = 0, ic = 0, tb = 0, tc = 0;
    bool hb = false, hc = false;
    size_t n = 0;
    while (n < cap) {
        if (!hb && ib < nb) {
            hb = step_scheduler_tick_of_step(&st->basal, ib + 1u, &tb);
        }
        if (!hc && ic < nc) {
            hc = step_scheduler_tick_of_step(&st->bolus, ic + 1u, &tc);
        }
        if (!hb && !hc) {
            break;
        }
        if (hb && (!hc || tb <= tc)) {
            out[n++] = tb;
            ib++;
            hb = false;
        } else {
            out[n++] = tc;
            ic++;
            hc = false;
        }
    }
    return n;
}

static uint64_t next_flex_boundary(const pump_state_t *st, uint64_t tick)
{
    const uint64_t tod = (tick % DAY + st->clock_offset_ticks) % DAY;
    for (uint32_t i = 0; i < st->flex_count; i++) {
        if (st->flex[i].start_tick > tod) {
            return add_sat(tick, st->flex[i].start_tick - tod);
        }
    }
    return add_sat(tick, DAY - tod + st->flex[0].start_tick);
}

/* battery.used_nc after the steps both channels make by t, plus the drained charge */
static int64_t used_at(const pump_state_t *st, uint64_t t)
{
    return pump_battery_used_nc(st->steps_total + (int64_t)steps_until(st, t), t) + st->battery_drained_nc;
}

static bool charge_crossing_tick(const pump_state_t *st, int64_t threshold, uint64_t horizon, uint64_t *out)
{
    if (used_at(st, horizon) < threshold) {
        return false;
    }
    uint64_t lo = st->tick, hi = horizon;
    if (used_at(st, lo) >= threshold) {
        *out = lo;
        return true;
    }
    while (hi - lo > 1u) {
        const uint64_t mid = lo + (hi - lo) / 2u;
        if (used_at(st, mid) >= threshold) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    *out = hi;
    return true;
}

/* ---- the sensors ------------------------------------------------------------------------------ */

static bool held_at(const pump_t *p, uint64_t t)
{
    uint8_t held = p->sensors.rotor_held;
    for (uint32_t i = 0; i < p->sensors.line_count; i++) {
        if (p->sensors.lines[i].tick <= t) {
            held = p->sensors.lines[i].rotor_held;
        }
    }
    return held != 0;
}

static bool next_line_tick(const pump_t *p, uint64_t after, uint64_t *t)
{
    for (uint32_t i = 0; i < p->sensors.line_count; i++) {
        if (p->sensors.lines[i].tick > after) {
            *t = p->sensors.lines[i].tick;
            return true;
        }
    }
    return false;
}

/* the lines whose tick has come become the present levels */
static void lines_reached(pump_t *p)
{
    pump_sensors_t *s = &p->sensors;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < s->line_count; i++) {
        if (s->lines[i].tick <= p->st.tick) {
            s->rotor_held = s->lines[i].rotor_held;
            s->emi = s->lines[i].emi;
        } else {
            s->lines[kept++] = s->lines[i];
        }
    }
    s->line_count = (uint8_t)kept;
}

void pump_set_lines(pump_t *p, const pump_line_t *lines, size_t n)
{
    pump_sensors_t *s = &p->sensors;
    s->line_count = 0;
    for (size_t i = 0; i < n; i++) {
        if (lines[i].tick <= p->st.tick) {
            s->rotor_held = lines[i].rotor_held != 0;
            s->emi = lines[i].emi != 0;
        } else if (s->line_count < PUMP_LINES_MAX) {
            s->lines[s->line_count] = lines[i];
            s->lines[s->line_count].rotor_held = lines[i].rotor_held != 0;
            s->lines[s->line_count].emi = lines[i].emi != 0;
            s->line_count++;
        }
    }
    /* a change announced inside the span the pump is in (it waits for samples): the model's span
     * would have ended there */
    uint64_t t = 0;
    if (p->span_active && next_line_tick(p, p->st.tick, &t) && t < p->span_end) {
        p->span_end = t;
    }
}

void pump_feed(pump_t *p, const pump_sample_t *samples, size_t n)
{
    pump_sensors_t *s = &p->sensors;
    if (n > PUMP_FEED_MAX) {
        n = PUMP_FEED_MAX;
    }
    copy(s->samples, samples, n * sizeof samples[0]);
    s->count = (uint8_t)n;
    s->next = 0;
    s->used = 0;
}

/* The fed sample for the i-th stroke from now (i >= 0) at tick t; a sample for another tick means
 * the plan changed since the feed: it and every later one are dropped. */
static bool sample_for(pump_t *p, size_t i, uint64_t t)
{
    pump_sensors_t *s = &p->sensors;
    const size_t at = s->next + i;
    if (at >= s->count) {
        return false;
    }
    if (s->samples[at].tick != t) {
        s->count = (uint8_t)at;
        return false;
    }
    return true;
}

static int32_t take_sample(pump_t *p)
{
    pump_sensors_t *s = &p->sensors;
    const int32_t v = s->samples[s->next].pressure_pa;
    s->next++;
    s->used++;
    return v;
}

static bool test_sample_ready(pump_t *p, uint64_t t)
{
    return p->sensors.next < p->sensors.count && p->sensors.samples[p->sensors.next].tick == t;
}

/* Will the stall retry at event tick t try a test stroke (Controller._stall_events)? During a stall
 * delivery is stopped, so nothing else moves before it. */
static bool test_stroke_due(const pump_t *p, uint64_t t)
{
    const pump_state_t *st = &p->st;
    return !p->replaying && st->has_stall && st->stall_retry_tick <= t && !held_at(p, t) && pump_steps_available(p) > 0;
}

/* ---- the run ---------------------------------------------------------------------------------- */

#define SCAN_MAX (PUMP_FEED_MAX + 2)

/* Controller._next_event_tick without its last part: the earliest tick in (now, horizon] at which
 * something must be decided, from the state, the announced lines and a held rotor's stall. The
 * detector's part is span_chunk's: it needs the samples, which may come in several feeds. */
static uint64_t span_base(pump_t *p, uint64_t horizon)
{
    pump_state_t *st = &p->st;
    const uint64_t now = st->tick;
    uint64_t nxt = horizon, t = 0;
    if (st->has_active_bolus && st->bolus.increment != 0) {
        const int64_t k = st->active_bolus.steps_total - st->active_bolus.steps_done;
        if (k > 0 && step_scheduler_tick_of_step(&st->bolus, (uint64_t)k, &t) && now < t && t < nxt) {
            nxt = t;
        }
    }
    if (st->has_bridge && st->basal.increment != 0) {
        const int64_t k = st->bridge.steps_left;
        if (k > 0 && step_scheduler_tick_of_step(&st->basal, (uint64_t)k, &t) && now < t && t < nxt) {
            nxt = t;
        }
    }
    if (st->mode == MODE_FLEX && !pump_delivery_stopped(p)) {
        t = next_flex_boundary(st, now);
        if (t < nxt) {
            nxt = t;
        }
    }
    if (st->has_plan) {
        t = st->plan.next_start_tick;
        if (now < t && t < nxt) {
            nxt = t;
        }
    }
    if (!st->eos) {
        t = st->has_eri ? st->eri_tick + BATTERY_ERI_TO_EOS_TICKS : ERI_LATEST_TICKS;
        if (now < t && t < nxt) {
            nxt = t;
        }
    }
    if (st->has_stall && now < st->stall_retry_tick && st->stall_retry_tick < nxt) {
        nxt = st->stall_retry_tick;
    }
    if (!p->replaying && next_line_tick(p, now, &t) && t < nxt) {
        nxt = t; /* the plant's next change: an announced line */
    }
    const uint64_t made = steps_until(st, nxt);
    if (made != 0) {
        if (st->reservoir_nl > st->low_reservoir_nl && !pump_alarm_active(p, ALARM_RESERVOIR_LOW)) {
            const uint64_t k = (uint64_t)ceil_div(st->reservoir_nl - st->low_reservoir_nl, STROKE);
            if (k <= made && tick_of_combined_step(st, k, nxt, &t)) {
                nxt = t;
            }
        }
        const uint64_t available = (uint64_t)pump_steps_available(p);
        if (available <= made && tick_of_combined_step(st, available > 0 ? available : 1u, nxt, &t)) {
            nxt = t;
        }
    }
    if (!st->eos && nxt > quiet_until(p)) {
        if (charge_crossing_tick(st, battery_threshold(st), nxt, &t) && t > now && t < nxt) {
            nxt = t;
        }
    }
    if (!p->replaying && steps_until(st, nxt) != 0 && held_at(p, now) && !st->has_stall) {
        /* the strokes fail: the stall is declared after a few */
        const int64_t k = PUMP_STALL_DETECT_STEPS - st->missed_steps;
        if (tick_of_combined_step(st, (uint64_t)(k > 1 ? k : 1), nxt, &t)) {
            nxt = t;
        }
    }
    return nxt;
}

/* How far the span (now, p->span_end] can run with the samples fed: the detector scans the fed
 * samples of the strokes ahead (an alarm at a stroke ends the span on its tick, as the model's
 * scan_one does); the chunk stops just before the first stroke with no sample (*starved), or
 * stays where it is when the span ends in a stall retry whose test stroke has no sample yet
 * (*want_test). A chunk that stops short of the span's end does not settle: nothing is decided
 * there, as the model decides nothing inside a span. */
static uint64_t span_chunk(pump_t *p, bool *starved, bool *want_test)
{
    pump_state_t *st = &p->st;
    uint64_t end = p->span_end;
    *starved = false;
    *want_test = false;
    if (!p->replaying && steps_until(st, end) != 0 && !held_at(p, st->tick)) {
        uint64_t ticks[SCAN_MAX];
        const uint64_t cap = (uint64_t)pump_steps_available(p);
        const size_t n = stroke_ticks(st, end, cap < SCAN_MAX ? (size_t)cap : SCAN_MAX, ticks);
        const pump_sample_t *fed = &p->sensors.samples[p->sensors.next];
        int64_t cusum = st->cusum_pa;
        for (size_t j = 0; j < n; j++) {
            if (!sample_for(p, j, ticks[j])) {
                *starved = true;
                return ticks[j] - 1u;
            }
            if (detector_rules(st, fed, j, &cusum, fed[j].pressure_pa) != RULE_NONE) {
                p->span_end = end = ticks[j]; /* the detector alarms here: the span ends on this stroke */
                for (size_t k = j + 1u; k < n && ticks[k] == ticks[j]; k++) {
                    if (!sample_for(p, k, ticks[k])) { /* a stroke on the same tick has no sample yet */
                        *starved = true;
                        return ticks[j] - 1u;
                    }
                }
                break;
            }
        }
    }
    if (test_stroke_due(p, end) && !sample_for(p, 0, end)) {
        *want_test = true;
        *starved = true;
        p->want_test_tick = end;
        return st->tick;
    }
    return end;
}

/* Controller._run_motor */
static void run_motor(pump_t *p, uint64_t to)
{
    pump_state_t *st = &p->st;
    if (!p->replaying) {
        if (held_at(p, st->tick)) {
            uint64_t b = 0, c = 0;
            step_scheduler_advance(&st->basal, to, &b);
            step_scheduler_advance(&st->bolus, to, &c);
            st->missed_steps += (int64_t)(b + c);
            return;
        }
        const uint64_t pending = steps_until(st, to);
        if (pending != 0) {
            const uint64_t available = (uint64_t)pump_steps_available(p);
            const uint64_t n = pending < available ? pending : available;
            if (n != 0) {
                st->steps_since_resume += (int64_t)n;
                st->missed_steps = 0; /* the rotor turns: misses must be consecutive to mean a stall */
                bool alarmed = false;
                for (uint64_t j = 0; j < n; j++) {
                    /* next_event_tick made sure every stroke up to `to` has its sample */
                    if (p->sensors.next >= p->sensors.count) {
                        break;
                    }
                    const int32_t v = take_sample(p);
                    if (alarmed) {
                        continue; /* a stroke on the alarm's tick: the detector keeps its state at the alarm */
                    }
                    const uint8_t rule = pump_detector_step(st, v);
                    if (rule != RULE_NONE) {
                        alarmed = true;
                        st->has_occlusion_found = 1;
                        st->occlusion_rule = rule;
                        st->occlusion_pressure_pa = v;
                    }
                }
            }
        }
    }
    uint64_t basal_steps = 0, bolus_steps = 0;
    step_scheduler_advance(&st->basal, to, &basal_steps);
    step_scheduler_advance(&st->bolus, to, &bolus_steps);
    uint64_t made = basal_steps + bolus_steps;
    if (made == 0) {
        return;
    }
    const uint64_t available = (uint64_t)pump_steps_available(p);
    if (made > available) { /* two channels stepped on the same last tick: the reservoir decides */
        const uint64_t drop = made - available;
        const uint64_t from_bolus = drop < bolus_steps ? drop : bolus_steps;
        bolus_steps -= from_bolus;
        st->bolus.steps -= from_bolus;
        basal_steps -= drop - from_bolus;
        st->basal.steps -= drop - from_bolus;
        made = available;
    }
    const int64_t volume = (int64_t)made * STROKE;
    st->steps_total += (int64_t)made;
    st->reservoir_nl -= volume;
    st->delivered_nl += volume;
    st->dose_at_tip_pg += pump_path_push(st, volume, st->concentration_ug_per_ml);
    if (st->has_active_bolus) {
        st->active_bolus.steps_done += (int64_t)bolus_steps;
    }
    if (st->has_bridge) {
        const int64_t left = st->bridge.steps_left - (int64_t)basal_steps;
        st->bridge.steps_left = left > 0 ? left : 0;
    }
}

/* Controller._test_stroke: the single stroke a stalled pump tries */
static void test_stroke(pump_t *p)
{
    pump_state_t *st = &p->st;
    if (pump_steps_available(p) == 0) {
        return;
    }
    if (test_sample_ready(p, st->tick)) {
        (void)take_sample(p); /* the plant takes the stroke; the detector does not see it */
    } else if (!p->replaying) {
        /* A retry in a command's settle (after a reset the model's retry can be overdue, and then
         * the first settle tries it): no sample here. The stroke is made all the same and its
         * sample is asked for at the next run, so that the fixture's plant takes it too. */
        p->owed = 1;
        p->owed_tick = st->tick;
    }
    st->steps_total += 1;
    st->reservoir_nl -= STROKE;
    st->delivered_nl += STROKE;
    st->dose_at_tip_pg += pump_path_push(st, STROKE, st->concentration_ug_per_ml);
}

/* Controller._stall_events: stall, recovery, and the EMI of a scan */
static void stall_events(pump_t *p)
{
    pump_state_t *st = &p->st;
    const uint64_t t = st->tick;
    const uint8_t emi = p->sensors.emi;
    if (emi != st->telemetry_mode) {
        st->telemetry_mode = emi;
        pump_log(p, LOG_TELEMETRY_MODE, emi, st->telemetry_latched, 0);
        pump_checkpoint_soon(p);
    }
    if (!st->has_stall && st->missed_steps >= PUMP_STALL_DETECT_STEPS) {
        st->has_stall = 1;
        st->stall_tick = t;
        st->stall_retry_tick = add_sat(t, PUMP_STALL_RETRY_TICKS);
        pump_log(p, LOG_STALL, (int32_t)st->missed_steps, 0, 0);
        pump_checkpoint_soon(p);
        pump_raise(p, ALARM_MOTOR_STALL);
    } else if (st->has_stall && st->stall_retry_tick <= t) {
        if (p->sensors.rotor_held) {
            st->stall_retry_tick = add_sat(t, PUMP_STALL_RETRY_TICKS);
            return;
        }
        test_stroke(p);
        pump_log(p, LOG_STALL_RECOVERED, (int32_t)((t - st->stall_tick) / PUMP_TICK_HZ), 0, 0);
        pump_checkpoint_soon(p);
        st->has_stall = 0;
        st->stall_tick = st->stall_retry_tick = 0;
        st->missed_steps = 0;
        pump_clear(p, ALARM_MOTOR_STALL);
    }
}

/* Controller._due_events: everything due at the present tick, in the model's order */
static void due_events(pump_t *p)
{
    pump_state_t *st = &p->st;
    const uint64_t t = st->tick;
    if (st->has_active_bolus && st->active_bolus.steps_done >= st->active_bolus.steps_total) {
        pump_log(p, LOG_BOLUS_COMPLETED, st->active_bolus.kind, (int32_t)st->active_bolus.steps_done, 0);
        st->has_active_bolus = 0;
        if (st->has_suspended_bolus) { /* SR-6: the clinician bolus resumes */
            const pump_bolus_t b = st->suspended_bolus;
            pump_start_bolus(p, &b);
            st->has_suspended_bolus = 0;
        }
    }
    if (st->has_bridge && st->bridge.steps_left == 0) {
        pump_log(p, LOG_BOLUS_COMPLETED, BOLUS_BRIDGE, 0, 0);
        st->has_bridge = 0;
    }
    if (st->has_occlusion_found) { /* SR-16: stop at once, high priority, until acknowledged */
        st->has_occlusion_found = 0;
        pump_log(p, LOG_OCCLUSION_DETECTED, st->occlusion_rule, st->occlusion_pressure_pa,
                 (int32_t)st->steps_since_resume);
        pump_checkpoint_soon(p);
        pump_raise(p, ALARM_OCCLUSION);
        pump_clear(p, ALARM_OCCLUSION); /* latched until acknowledged */
    }
    if (!p->replaying) {
        stall_events(p);
    }
    if (st->reservoir_nl <= st->low_reservoir_nl && st->drug_index >= 0) {
        pump_raise(p, ALARM_RESERVOIR_LOW);
    }
    if (pump_steps_available(p) == 0 && st->drug_index >= 0 && !pump_alarm_active(p, ALARM_RESERVOIR_EMPTY)) {
        pump_raise(p, ALARM_RESERVOIR_EMPTY);
    }
    if (!st->eos) {
        const int64_t used = t >= quiet_until(p) ? pump_battery_used_nc(st->steps_total, t) + st->battery_drained_nc : 0;
        if (!st->has_eri && (used >= ERI_THRESHOLD_NC || t >= ERI_LATEST_TICKS)) {
            st->has_eri = 1;
            st->eri_tick = t;
            pump_raise(p, ALARM_ELECTIVE_REPLACEMENT);
        }
        if (st->has_eri && (t >= st->eri_tick + BATTERY_ERI_TO_EOS_TICKS || used >= BATTERY_CAPACITY_NC)) {
            st->eos = 1;
            st->has_plan = 0;
            pump_raise(p, ALARM_END_OF_SERVICE);
        }
    }
    if (st->has_plan && st->plan.next_start_tick <= t) {
        pump_start_planned_clinician_bolus(p);
    }
    /* the model sounds a due tone here: not kept */
    if (st->telemetry_mode && !st->telemetry_latched && pump_sounding(p) != 0) {
        /* EMI put the pump in telemetry mode while an alarm sounds: no infusion until an
         * interrogation (SR-28) */
        const bool was_stopped = pump_delivery_stopped(p);
        st->telemetry_latched = 1;
        pump_log(p, LOG_TELEMETRY_MODE, 1, 1, 0);
        pump_checkpoint_soon(p);
        if (!was_stopped) {
            pump_log(p, LOG_DELIVERY_STOPPED, 0, 0, 0);
        }
    }
}

void pump_settle(pump_t *p)
{
    due_events(p);
    apply_rates(p);
    maybe_checkpoint(p);
}

/* Controller._run_to, in spans from event to event; false when it stopped inside a span for a
 * sample it has not got (the span goes on at the next call). */
static bool run_to(pump_t *p, uint64_t to, bool *want_test)
{
    pump_state_t *st = &p->st;
    for (;;) {
        if (!p->span_active) {
            if (st->tick >= to) {
                return true;
            }
            p->span_end = span_base(p, to);
            p->span_active = 1;
        } else if (p->span_end > to && to >= st->tick) {
            p->span_end = to; /* a caller that stops earlier than the span's horizon: it ends there */
        }
        bool starved = false;
        const uint64_t chunk = span_chunk(p, &starved, want_test);
        if (chunk > st->tick) {
            run_motor(p, chunk);
            st->tick = chunk;
        }
        if (st->tick == p->span_end) {
            p->span_active = 0;
            if (!p->replaying) {
                lines_reached(p);
            }
            pump_settle(p);
            continue;
        }
        return false;
    }
}

/* A command or a drain inside a span (the fixture gave up feeding): the model would have been run
 * to this tick first, so the span ends here. */
static void close_span(pump_t *p)
{
    if (p->span_active) {
        p->span_end = p->st.tick;
        bool want_test = false;
        (void)run_to(p, p->st.tick, &want_test);
    }
}

void pump_stop_here(pump_t *p)
{
    close_span(p);
}

bool pump_run(pump_t *p, uint64_t to_tick, uint64_t *wanted, size_t *n_wanted)
{
    bool want_test = false;
    *n_wanted = 0;
    if (to_tick < p->st.tick) {
        return true; /* time only moves forward (device.c refuses it first) */
    }
    if (p->owed) { /* a test stroke made in a command's settle: its sample first */
        if (!sample_for(p, 0, p->owed_tick)) {
            wanted[0] = p->owed_tick;
            *n_wanted = 1;
            return false;
        }
        (void)take_sample(p);
        p->owed = 0;
    }
    if (run_to(p, to_tick, &want_test)) {
        return true;
    }
    const pump_state_t *st = &p->st;
    if (want_test) {
        wanted[0] = p->want_test_tick;
        *n_wanted = 1;
        return false;
    }
    uint64_t cap = (uint64_t)pump_steps_available(p);
    *n_wanted = stroke_ticks(st, to_tick, cap < PUMP_FEED_MAX ? (size_t)cap : PUMP_FEED_MAX, wanted);
    return false;
}

/* ---- battery drain, telemetry ----------------------------------------------------------------- */

bool pump_drain_battery(pump_t *p, uint64_t charge_nc, pump_refusal_t *refusal)
{
    if (charge_nc == 0) {
        pump_refuse(refusal, REFUSE_LIMIT_EXCEEDED, "battery_drain.charge_nc", "0", "> 0");
        return false;
    }
    close_span(p);
    pump_state_t *st = &p->st;
    const uint64_t room = (uint64_t)(DRAINED_MAX_NC - st->battery_drained_nc);
    st->battery_drained_nc += (int64_t)(charge_nc < room ? charge_nc : room);
    st->has_quiet = 0;
    const uint64_t mc = charge_nc / 1000000u;
    pump_log(p, LOG_BATTERY_DRAIN, (int32_t)(mc < 0x7FFFFFFFu ? mc : 0x7FFFFFFFu), 0, 0);
    pump_checkpoint_soon(p);
    pump_settle(p);
    return true;
}

size_t pump_telemetry(const pump_t *p, uint32_t counter, uint8_t out[40])
{
    const pump_state_t *st = &p->st;
    uint32_t bits = 0;
    for (int i = 0; i < st->alarm_count; i++) {
        bits |= 1u << st->alarms[i].code;
    }
    put32(out, counter);
    put64(out + 4, st->tick);
    put64(out + 12, (uint64_t)st->steps_total);
    put32(out + 20, (uint32_t)st->reservoir_nl);
    put32(out + 24, (uint32_t)pump_latest_pressure_pa(p));
    put32(out + 28, bits);
    put64(out + 32, (uint64_t)pump_battery_used_nc(st->steps_total, st->tick));
    return 40;
}

/* ---- power on: a new implant, or a reset rebuilt from the log ---------------------------------- */

static void new_implant(pump_t *p, uint64_t tick)
{
    pump_log_t *l = p->log;
    for (uint32_t i = 0; i < LOG_CAPACITY; i++) {
        for (uint32_t j = 0; j < LOG_RECORD_SIZE; j++) {
            l->ring[i][j] = 0xFFu;
        }
    }
    l->next_seq = 0;
    l->overwritten = 0;
    l->magic = LOG_MAGIC;
    pump_state_t *st = &p->st;
    zero(st, sizeof *st);
    st->tick = tick;
    st->drug_index = -1;
    st->low_reservoir_nl = PUMP_LOW_RESERVOIR_NL;
    path_unprimed(st);
    step_scheduler_init(&st->basal, 0, 0, tick);
    step_scheduler_init(&st->bolus, 0, 0, tick);
    pump_log(p, LOG_POWER_ON, 0, 0, 0);
    apply_rates(p);
    checkpoint(p);
}

/* event_log.blobs over the held records, one code: calls back each complete blob (its first
 * record's index and tick, and its bytes without the length prefix) */
typedef struct {
    uint64_t start;     /* index of the blob's first record */
    uint64_t tick;
    size_t len;         /* bytes gathered */
    bool open;
} blob_reader_t;

static const uint8_t *record_at(const pump_log_t *l, uint64_t oldest, uint64_t i)
{
    return l->ring[(oldest + i) % LOG_CAPACITY];
}

static bool record_ok(const uint8_t *r)
{
    return crc16(r, 30) == get16(r + 30);
}

/* feed record i to the reader; true when it completed a blob (in buf[0..len)) */
static bool blob_feed(blob_reader_t *b, uint8_t *buf, size_t cap, const uint8_t *r, uint64_t i, uint16_t code)
{
    if (!record_ok(r) || get16(r + 12) != code) {
        return false; /* a damaged record is skipped as one of another code (the model would refuse) */
    }
    const uint16_t aux = get16(r + 14);
    const uint32_t index = aux & 0x7FFFu;
    if (index == 0) {
        b->open = true;
        b->start = i;
        b->tick = get64(r + 4);
        b->len = 0;
    } else if (!(b->open && index * 12u == b->len)) {
        b->open = false;
        return false;
    }
    if (b->len + 12u > cap) {
        b->open = false;
        return false;
    }
    copy(buf + b->len, r + 16, 12);
    b->len += 12u;
    if ((aux & LAST_CHUNK) && b->open) {
        b->open = false;
        return true;
    }
    return false;
}

/* the blob's bytes after its varint length prefix; false when the prefix does not fit */
static bool strip_prefix(const uint8_t *buf, size_t have, size_t *offset, size_t *len)
{
    uint64_t v = 0;
    size_t i = 0;
    for (int shift = 0; i < have && shift < 63; shift += 7) {
        const uint8_t b = buf[i++];
        v |= (uint64_t)(b & 0x7Fu) << shift;
        if (!(b & 0x80u)) {
            if (v > have - i) {
                return false;
            }
            *offset = i;
            *len = (size_t)v;
            return true;
        }
    }
    return false;
}

static bool rebuild(pump_t *p, uint64_t reset_tick)
{
    const pump_log_t *l = p->log;
    const uint64_t next = l->next_seq;
    const uint64_t held = (l->overwritten > 0 || next > LOG_CAPACITY) ? LOG_CAPACITY : next;
    const uint64_t oldest = next - held;
    /* the newest complete checkpoint */
    blob_reader_t b = {0, 0, 0, false};
    bool found = false;
    uint64_t cp_index = 0;
    for (uint64_t i = 0; i < held; i++) {
        if (blob_feed(&b, p->scratch, sizeof p->scratch, record_at(l, oldest, i), i, LOG_CHECKPOINT)) {
            size_t off, len;
            if (strip_prefix(p->scratch, b.len, &off, &len)) {
                found = true;
                cp_index = b.start;
            }
        }
    }
    if (!found) {
        return false;
    }
    b.open = false;
    for (uint64_t i = cp_index; i < held; i++) {
        if (blob_feed(&b, p->scratch, sizeof p->scratch, record_at(l, oldest, i), i, LOG_CHECKPOINT)) {
            break;
        }
    }
    size_t off = 0, len = 0;
    (void)strip_prefix(p->scratch, b.len, &off, &len);
    zero(&p->st, sizeof p->st); /* the volatile part starts afresh; a bad checkpoint ends as a new implant */
    sx_t s = {p->scratch + off, len, 0, true, false};
    sx_state(&s, &p->st);
    if (s.bad || s.pos != len) {
        return false;
    }
    p->checkpoint_seq = (uint32_t)(oldest + cp_index);
    p->replaying = 1;
    /* the commands logged since, replayed at their ticks through the same handlers */
    blob_reader_t c = {0, 0, 0, false};
    static uint8_t cmd[1 + 1024 + 16];
    for (uint64_t i = cp_index; i < held; i++) {
        if (!blob_feed(&c, cmd, sizeof cmd, record_at(l, oldest, i), i, LOG_COMMAND)) {
            continue;
        }
        size_t co, cl;
        if (!strip_prefix(cmd, c.len, &co, &cl) || cl < 1u) {
            continue;
        }
        bool want_test = false;
        (void)run_to(p, c.tick, &want_test);
        static pump_answer_t answers[PUMP_ANSWERS_MAX];
        pump_refusal_t refusal;
        (void)pump_command(p, cmd[co], cmd + co + 1, cl - 1u, answers, &refusal);
    }
    bool want_test = false;
    (void)run_to(p, reset_tick > p->st.tick ? reset_tick : p->st.tick, &want_test);
    p->replaying = 0;
    pump_detector_reset(&p->st);
    p->st.missed_steps = 0;
    pump_log(p, LOG_POWER_ON, 1, 0, 0);
    return true;
}

void pump_power_on(pump_t *p, pump_log_t *log, uint64_t tick)
{
    p->log = log;
    p->replaying = 0;
    p->span_active = 0;
    p->st.has_quiet = 0;
    /* The fed samples were for the strokes of the run the reset cut short: gone with the RAM. The
     * lines are the world's (the pins read at boot): a reset keeps their levels and the changes
     * announced, and a test stroke still owed to the fixture (it happened); a new implant starts
     * with the rotor free and no EMI. */
    p->sensors.count = p->sensors.next = p->sensors.used = 0;
    if (log->magic != LOG_MAGIC || !rebuild(p, tick)) {
        zero(&p->sensors, sizeof p->sensors);
        p->owed = 0;
        p->replaying = 0;
        new_implant(p, tick);
        p->checkpoint_seq = 0;
    }
}
