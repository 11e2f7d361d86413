/* The pump's payloads: commands in, answers out, as docs/protocol.md lays them out (generated from
 * protocol/messages.py); hil/wire_model.py maps the model's answers onto them: Accepted -> Ack
 * (0x40) or AckSoftLimits (0x41) when flagged, BolusGranted 0x43, BolusDenied 0x44, StatusReport
 * 0x45 (refill_due_tick none = 0xFFFFFFFFFFFFFFFF; bolus_active and sounding 0 = none). A payload
 * that does not parse as its message (wrong size, an enum out of range, bad UTF-8, a text or list
 * over its limit) is refused MALFORMED, as protocol/ refuses it. */
#include "pump.h"
#include "text.h"

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* a payload writer (every answer fits its buffer: the largest is an AckSoftLimits of 806 bytes) */
typedef struct {
    uint8_t *buf;
    size_t len;
} out_t;

static void w8(out_t *o, uint8_t v)
{
    o->buf[o->len++] = v;
}

static void w16(out_t *o, uint16_t v)
{
    w8(o, (uint8_t)v);
    w8(o, (uint8_t)(v >> 8));
}

static void w32(out_t *o, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        w8(o, (uint8_t)(v >> (8 * i)));
    }
}

static void w64(out_t *o, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        w8(o, (uint8_t)(v >> (8 * i)));
    }
}


/* src cut to max_bytes as hil.wire_model.fit_text cuts it, into dst (room for max_bytes and the NUL) */
static void fit_text(char *dst, const char *src, size_t max_bytes)
{
    const size_t n = text_len(src), keep = text_keep(src, n, max_bytes), dots = keep < n ? 3u : 0u;
    for (size_t i = 0; i < keep; i++) {
        dst[i] = src[i];
    }
    for (size_t i = 0; i < dots; i++) {
        dst[keep + i] = '.';
    }
    dst[keep + dots] = '\0';
}

static void wstr(out_t *o, const char *s, size_t max_bytes)
{
    const size_t n = text_len(s), keep = text_keep(s, n, max_bytes), dots = keep < n ? 3u : 0u;
    w8(o, (uint8_t)(keep + dots));
    for (size_t i = 0; i < keep; i++) {
        w8(o, (uint8_t)s[i]);
    }
    for (size_t i = 0; i < dots; i++) {
        w8(o, '.');
    }
}

void pump_refuse(pump_refusal_t *r, uint8_t reason, const char *field, const char *value, const char *expected)
{
    r->refused = 1;
    r->reason = reason;
    fit_text(r->field, field, sizeof r->field - 1u);
    fit_text(r->value, value, sizeof r->value - 1u);
    fit_text(r->expected, expected, sizeof r->expected - 1u);
}

/* ---- commands in ------------------------------------------------------------------------------ */

static bool malformed(pump_refusal_t *r, const char *what)
{
    pump_refuse(r, REFUSE_MALFORMED, "", "", what);
    return false;
}

bool pump_decode_command(uint8_t msg_id, const uint8_t *p, size_t len, pump_cmd_t *c, pump_refusal_t *r)
{
    c->msg_id = msg_id;
    c->flex_count = 0;
    c->drug_len = 0;
    c->drug[0] = '\0';
    c->has_measured_after = 0;
    c->measured_after_nl = 0;
    c->bridge = 0;
    switch (msg_id) {
    case MSG_GET_STATUS:
    case MSG_PROGRAM_STOPPED:
    case MSG_PROGRAM_MINIMUM:
    case MSG_PATIENT_REQUEST:
    case MSG_INTERROGATE:
        return len == 0 ? true : malformed(r, "an empty payload");
    case MSG_PROGRAM_CONTINUOUS:
        if (len != 4) {
            return malformed(r, "a 4-byte payload");
        }
        c->rate_nl_per_day = get32(p);
        return true;
    case MSG_PROGRAM_FLEX:
        if (len < 1 || p[0] > PUMP_WIRE_FLEX_MAX || len != 1u + 12u * p[0]) {
            return malformed(r, "a count (at most 48) and that many 12-byte steps");
        }
        c->flex_count = p[0];
        for (uint32_t i = 0; i < c->flex_count; i++) {
            c->flex[i].start_tick = get64(p + 1 + 12 * i);
            c->flex[i].rate_nl_per_day = get32(p + 9 + 12 * i);
        }
        return true;
    case MSG_CLINICIAN_BOLUS:
        if (len != 24) {
            return malformed(r, "a 24-byte payload");
        }
        c->volume_nl = get32(p);
        c->duration_ticks = get64(p + 4);
        c->period_ticks = get64(p + 12);
        c->count = get32(p + 20);
        return true;
    case MSG_PRIMING_BOLUS:
        if (len != 12) {
            return malformed(r, "a 12-byte payload");
        }
        c->volume_nl = get32(p);
        c->duration_ticks = get64(p + 4);
        return true;
    case MSG_CONFIGURE_PATIENT:
        if (len != 21) {
            return malformed(r, "a 21-byte payload");
        }
        c->volume_nl = get32(p);
        c->duration_ticks = get64(p + 4);
        c->lockout_ticks = get64(p + 12);
        c->max_per_day = p[20];
        return true;
    case MSG_REFILL: {
        if (len < 9) {
            return malformed(r, "a Refill payload");
        }
        const size_t n = p[8];
        if (n > 32 || len != 9u + n + 9u || !utf8_valid(p + 9, n)) {
            return malformed(r, "a Refill payload (drug name of at most 32 UTF-8 bytes)");
        }
        c->measured_residual_nl = get32(p);
        c->injected_nl = get32(p + 4);
        c->drug_len = (uint8_t)n;
        for (size_t i = 0; i < n; i++) {
            c->drug[i] = (char)p[9 + i];
        }
        c->drug[n] = '\0';
        c->concentration_ug_per_ml = get32(p + 9 + n);
        c->measured_after_nl = get32(p + 13 + n);
        c->has_measured_after = c->measured_after_nl != 0xFFFFFFFFu;
        c->bridge = p[17 + n] != 0; /* construct's Flag: any byte but 0 is true */
        return true;
    }
    case MSG_LOW_ALARM:
        if (len != 4) {
            return malformed(r, "a 4-byte payload");
        }
        c->threshold_nl = get32(p);
        return true;
    case MSG_ACK_ALARM:
        if (len != 1 || p[0] < ALARM_RESERVOIR_LOW || p[0] >= ALARM_CODES) {
            return malformed(r, "an AlarmCode (1..7)");
        }
        c->alarm = p[0];
        return true;
    case MSG_SET_CLOCK:
        if (len != 8) {
            return malformed(r, "an 8-byte payload");
        }
        c->time_of_day_ticks = get64(p);
        return true;
    default:
        pump_refuse(r, REFUSE_NOT_ALLOWED_NOW, "", "", "a command of the pump controller (GetStatus .. Interrogate)");
        return false;
    }
}

/* ---- the model's COMMAND blob (its size sets the model's checkpoint cadence) ------------------- */

static uint32_t uvarint_size(uint64_t v)
{
    uint32_t n = 1;
    while (v >= 0x80u) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint32_t zigzag_size(uint64_t v) /* a non-negative int in codec's zigzag varint */
{
    return v >= (1ull << 63) ? 10u : uvarint_size(v << 1);
}

uint32_t pump_model_command_records(const pump_cmd_t *c)
{
    /* bytes([COMMAND_IDS[type]]) + codec.encode(command), behind its varint length, in 12-byte records */
    uint32_t n = 1;
    switch (c->msg_id) {
    case MSG_PROGRAM_CONTINUOUS:
        n += zigzag_size(c->rate_nl_per_day);
        break;
    case MSG_PROGRAM_FLEX:
        n += uvarint_size(c->flex_count);
        for (uint32_t i = 0; i < c->flex_count; i++) {
            n += zigzag_size(c->flex[i].start_tick) + zigzag_size(c->flex[i].rate_nl_per_day);
        }
        break;
    case MSG_CLINICIAN_BOLUS:
        n += zigzag_size(c->volume_nl) + zigzag_size(c->duration_ticks) + zigzag_size(c->period_ticks) + zigzag_size(c->count);
        break;
    case MSG_PRIMING_BOLUS:
        n += zigzag_size(c->volume_nl) + zigzag_size(c->duration_ticks);
        break;
    case MSG_CONFIGURE_PATIENT:
        n += zigzag_size(c->volume_nl) + zigzag_size(c->duration_ticks) + zigzag_size(c->lockout_ticks)
             + zigzag_size(c->max_per_day);
        break;
    case MSG_REFILL:
        n += zigzag_size(c->measured_residual_nl) + zigzag_size(c->injected_nl) + uvarint_size(c->drug_len) + c->drug_len
             + zigzag_size(c->concentration_ug_per_ml) + 1u + (c->has_measured_after ? zigzag_size(c->measured_after_nl) : 0u)
             + 1u;
        break;
    case MSG_LOW_ALARM:
        n += zigzag_size(c->threshold_nl);
        break;
    case MSG_ACK_ALARM:
        n += uvarint_size(c->alarm);
        break;
    case MSG_SET_CLOCK:
        n += zigzag_size(c->time_of_day_ticks);
        break;
    default: /* ProgramStopped, ProgramMinimumRate, PatientBolusRequest, Interrogate: no fields */
        break;
    }
    return (uvarint_size(n) + n + 11u) / 12u;
}

/* ---- answers out ------------------------------------------------------------------------------ */

void pump_answer_ack(pump_answer_t *a, uint8_t command_id, const char *const *flags, size_t n_flags)
{
    out_t o = {a->payload, 0};
    w8(&o, command_id);
    if (n_flags == 0) {
        a->msg_id = MSG_ACK;
    } else {
        a->msg_id = MSG_ACK_SOFT_LIMITS;
        w8(&o, (uint8_t)n_flags); /* at most one: the daily dose is the only soft limit */
        for (size_t i = 0; i < n_flags; i++) {
            wstr(&o, flags[i], 200);
        }
    }
    a->len = (uint16_t)o.len;
}

void pump_answer_granted(pump_answer_t *a, uint8_t kind, int64_t steps)
{
    out_t o = {a->payload, 0};
    w8(&o, kind);
    w32(&o, (uint32_t)steps);
    w32(&o, (uint32_t)(steps * PUMP_STROKE_NL));
    a->msg_id = MSG_BOLUS_GRANTED;
    a->len = (uint16_t)o.len;
}

void pump_answer_denied(pump_answer_t *a, uint8_t reason, const char *detail)
{
    out_t o = {a->payload, 0};
    w8(&o, reason);
    wstr(&o, detail, 255);
    a->msg_id = MSG_BOLUS_DENIED;
    a->len = (uint16_t)o.len;
}

size_t pump_encode_status(const pump_t *p, uint8_t *out)
{
    const pump_state_t *st = &p->st;
    out_t o = {out, 0};
    uint64_t whole = 0;
    uint32_t frac = 0;
    step_effective_rate(st->basal.increment, PUMP_STROKE_NL, &whole, &frac);
    if (frac > 512u || (frac == 512u && (whole & 1u))) { /* round(Fraction): half to even */
        whole++;
    }
    w64(&o, st->tick);
    w8(&o, st->mode);
    wstr(&o, pump_drug_name(st->drug_index), 32);
    w32(&o, (uint32_t)st->concentration_ug_per_ml);
    w32(&o, (uint32_t)pump_program_rate(p, st->tick));
    w32(&o, (uint32_t)whole);
    w32(&o, (uint32_t)st->reservoir_nl);
    w64(&o, (uint64_t)st->delivered_nl);
    w64(&o, (uint64_t)(st->dose_at_tip_pg / 1000));
    w64(&o, (uint64_t)st->steps_total);
    w8(&o, st->has_active_bolus ? st->active_bolus.kind : (st->has_bridge ? BOLUS_BRIDGE : 0u));
    w8(&o, st->alarm_count);
    for (int i = 0; i < st->alarm_count; i++) {
        w8(&o, st->alarms[i].code);
    }
    w8(&o, pump_sounding(p));
    w8(&o, pump_delivery_stopped(p) ? 1u : 0u);
    w8(&o, st->has_stall);
    w8(&o, st->telemetry_latched);
    w16(&o, (uint16_t)pump_months_remaining(p));
    w8(&o, st->has_eri);
    w8(&o, st->eos);
    uint64_t due = 0;
    w64(&o, pump_refill_due_tick(p, &due) ? due : UINT64_MAX);
    return o.len;
}

char *pump_fmt_u64(char *buf, uint64_t v)
{
    char tmp[21];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1u - i];
    }
    buf[n] = '\0';
    return buf;
}
