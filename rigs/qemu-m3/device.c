#include "device.h"

#include "cobs.h"
#include "hmac.h"

/* ---- small helpers ------------------------------------------------------------------------- */

static void copy_bytes(uint8_t *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[i] = src[i];
    }
}

static void append_text(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    while (dst[n] != '\0') {
        n++;
    }
    while (*src != '\0' && n + 1u < cap) {
        dst[n++] = *src++;
    }
    dst[n] = '\0';
}

/* ---- answers ------------------------------------------------------------------------------- */

/* Append one answer frame (unsigned, as every message the pump sends) to d->answer. */
static void answer_frame(device_t *d, uint16_t seq, uint8_t msg_id, const uint8_t *payload, size_t length, int more)
{
    size_t n = frame_build(d->scratch, PROTOCOL_VERSION, more ? FLAG_MORE : 0u, seq, msg_id, payload,
                           (uint16_t)length, NULL, 0, 0, 0);
    if (d->answer_len + COBS_MAX_ENCODED(n) + 1u > ANSWER_CAP) {
        return; /* cannot happen for the answers this firmware builds (one frame each) */
    }
    d->answer_len += frame_encode(d->scratch, n, d->answer + d->answer_len);
}

static void answer_nak(device_t *d, uint16_t seq, uint8_t command_id, uint8_t reason, const char *field,
                       const char *value, const char *expected)
{
    pwriter w;
    pw_init(&w, d->payload, sizeof d->payload);
    pw_u8(&w, command_id);
    pw_u8(&w, reason);
    pw_str(&w, field, 64);
    pw_str(&w, value, 64);
    pw_str(&w, expected, 255);
    answer_frame(d, seq, 0x42, d->payload, w.len, 0);
    if (reason < NAK_REASONS) {
        d->naks[reason]++;
    }
}

static void send_answer(device_t *d)
{
    if (d->answer_len > 0) {
        d->write(d->ctx, d->answer, d->answer_len);
    }
}

/* A frame dropped by the link layer: counted, answered with its Nak (if any), never kept in the window. */
static void reject(device_t *d, int bad, const frame_t *f, uint8_t reason, const char *detail)
{
    d->bad[bad]++;
    if (reason == 0) {
        return;
    }
    d->answer_len = 0;
    answer_nak(d, f->seq, f->msg_id, reason, "", "", detail);
    send_answer(d);
}

/* ---- the window ---------------------------------------------------------------------------- */

static void command_digest(const frame_t *f, uint8_t digest[SHA256_DIGEST])
{
    sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, &f->msg_id, 1);
    sha256_update(&ctx, f->payload, f->length);
    sha256_final(&ctx, digest);
}

static window_entry *window_find(device_t *d, const frame_t *f)
{
    for (size_t i = 0; i < WINDOW_ENTRIES; i++) {
        window_entry *e = &d->window[i];
        if (e->used && e->seq == f->seq && e->is_signed == (uint8_t)f->is_signed &&
            (!f->is_signed || (e->key_id == f->key_id && e->link_id == f->link_id))) {
            return e;
        }
    }
    return NULL;
}

/* The stored answer of this very command (same sender, seq, message id and payload), or NULL. */
static window_entry *window_lookup(device_t *d, const frame_t *f, const uint8_t digest[SHA256_DIGEST])
{
    window_entry *e = window_find(d, f);
    return e != NULL && mem_equal_ct(e->digest, digest, SHA256_DIGEST) ? e : NULL;
}

static void window_store(device_t *d, const frame_t *f, const uint8_t digest[SHA256_DIGEST])
{
    window_entry *e = window_find(d, f);
    if (e == NULL) {
        e = &d->window[0];
        for (size_t i = 0; i < WINDOW_ENTRIES; i++) {
            if (!d->window[i].used) {
                e = &d->window[i];
                break;
            }
            if (d->window[i].order < e->order) {
                e = &d->window[i];
            }
        }
    }
    e->used = 1;
    e->is_signed = (uint8_t)f->is_signed;
    e->key_id = f->is_signed ? f->key_id : 0;
    e->link_id = f->is_signed ? f->link_id : 0;
    e->seq = f->seq;
    e->order = ++d->window_order;
    copy_bytes(e->digest, digest, SHA256_DIGEST);
    e->answer_len = (uint16_t)d->answer_len;
    copy_bytes(e->answer, d->answer, d->answer_len);
}

static void window_clear(device_t *d)
{
    for (size_t i = 0; i < WINDOW_ENTRIES; i++) {
        d->window[i].used = 0;
    }
}

/* ---- signatures and roles (protocol.signing.Verifier, made repeat-aware as hil/device.py) ---- */

/* 0 when the frame may pass, else the Nak reason. */
static uint8_t verify(device_t *d, const frame_t *f, const uint8_t digest[SHA256_DIGEST], const char **detail)
{
    const msg_spec *spec = f->spec;
    if (!f->is_signed) {
        if (spec->access == ACCESS_OPEN) {
            return 0;
        }
        *detail = spec->access == ACCESS_PATIENT ? "a signature by a patient or clinician key"
                                                 : "a signature by a clinician key";
        return NAK_UNSIGNED;
    }
    const device_key *key = NULL;
    size_t k = 0;
    for (; k < KEY_COUNT; k++) {
        if (d->keys[k].key_id == f->key_id) {
            key = &d->keys[k];
            break;
        }
    }
    if (key == NULL) {
        *detail = "a frame signed with key id 1 or 2";
        return NAK_BAD_SIGNATURE;
    }
    uint8_t mac[SHA256_DIGEST];
    hmac_sha256(key->secret, SECRET_SIZE, f->inner, frame_signed_len(f), NULL, 0, mac);
    if (!mem_equal_ct(mac, f->mac, FRAME_MAC_SIZE)) {
        *detail = "a MAC that verifies with the key named";
        return NAK_BAD_SIGNATURE;
    }
    if (d->ts_valid[k][f->link_id] && f->timestamp <= d->last_ts[k][f->link_id]) {
        if (window_lookup(d, f, digest) != NULL) {
            return 0; /* an exact copy of a command answered: answered again from the window */
        }
        *detail = "a timestamp newer than the last accepted for this key and link";
        return NAK_REPLAY;
    }
    d->ts_valid[k][f->link_id] = 1;
    d->last_ts[k][f->link_id] = f->timestamp;
    if (key->role < spec->access) {
        *detail = "a clinician key";
        return NAK_ROLE_NOT_ALLOWED;
    }
    return 0;
}

/* ---- payloads this firmware parses ---------------------------------------------------------- */

/* 1 when the payload parses as its message (enum ranges, texts, nothing left over). */
static int payload_ok(const frame_t *f)
{
    const uint8_t *p = f->payload;
    size_t n = f->length;
    switch (f->msg_id) {
    case 0x01: /* Hello: min u8, max u8, client str <= 64 */
        return n >= 3u && p[2] <= 64u && (size_t)p[2] + 3u == n && utf8_valid(p + 3, p[2]);
    case 0x76: { /* FixtureAdvance: to_tick u64, lines (u8 count <= 8) of 10 bytes, pressures (u8 count <= 120) of i32 */
        if (n < 10u || p[8] > PUMP_LINES_MAX) {
            return 0;
        }
        size_t at = 9u + (size_t)p[8] * 10u;
        if (n < at + 1u || p[at] > PUMP_FEED_MAX || n != at + 1u + (size_t)p[at] * 4u) {
            return 0;
        }
        for (size_t i = 0; i < p[8]; i++) { /* Flag: 0 or 1 */
            if (p[9u + i * 10u + 8u] > 1u || p[9u + i * 10u + 9u] > 1u) {
                return 0;
            }
        }
        return 1;
    }
    default:
        return 1; /* fixed-size integer payloads (checked by size); the others: next session */
    }
}

/* ---- commands ------------------------------------------------------------------------------- */

static void run_hello(device_t *d, const frame_t *f)
{
    uint8_t min = f->payload[0], max = f->payload[1];
    if (!(min <= PROTOCOL_VERSION && PROTOCOL_VERSION <= max)) {
        char value[8] = "";
        char num[21];
        append_text(value, sizeof value, pump_fmt_u64(num, min));
        append_text(value, sizeof value, "..");
        append_text(value, sizeof value, pump_fmt_u64(num, max));
        answer_nak(d, f->seq, 0x01, NAK_UNSUPPORTED_VERSION, "min_version..max_version", value,
                   "a range that includes one of [1]");
        return;
    }
    if (!d->hello_seen || f->seq != d->last_hello_seq) { /* a new session: the old answers must not be reused */
        window_clear(d);
        d->hello_seen = 1;
        d->last_hello_seq = f->seq;
    }
    pwriter w;
    pw_init(&w, d->payload, sizeof d->payload);
    pw_u8(&w, PROTOCOL_VERSION);
    pw_str(&w, FIRMWARE_NAME, 64);
    pw_u32(&w, SERIAL_NUMBER);
    pw_u8(&w, (uint8_t)(d->test_mode != 0));
    pw_u32(&w, TICK_HZ);
    pw_u32(&w, RESERVOIR_CAPACITY_NL);
    pw_u32(&w, STROKE_NL);
    answer_frame(d, f->seq, 0x02, d->payload, w.len, 0);
}

static void answer_ack(device_t *d, const frame_t *f)
{
    uint8_t id = f->msg_id;
    answer_frame(d, f->seq, 0x40, &id, 1, 0);
}

static void answer_refusal(device_t *d, const frame_t *f, const pump_refusal_t *r)
{
    answer_nak(d, f->seq, f->msg_id, r->reason, r->field, r->value, r->expected);
}

/* One Telemetry frame now (seq 0, its own counter), straight out: telemetry is never kept in the window. */
static void send_telemetry(device_t *d)
{
    uint8_t payload[40];
    size_t len = pump_telemetry(&d->pump, d->telemetry_counter, payload);
    d->telemetry_counter++;
    size_t n = frame_build(d->scratch, PROTOCOL_VERSION, 0u, 0u, 0x50, payload, (uint16_t)len, NULL, 0, 0, 0);
    uint8_t out[COBS_MAX_ENCODED(FRAME_MIN + 40u + FRAME_CRC_SIZE) + 1u];
    d->write(d->ctx, out, frame_encode(d->scratch, n, out));
}

/* Run the pump to to_tick with a Telemetry frame at each multiple of the period on the way (as
 * hil/device.py's _run_to). false when it stopped before a stroke it has no sample for. */
static bool run_with_telemetry(device_t *d, uint64_t to_tick, uint64_t *wanted, size_t *n_wanted)
{
    for (;;) {
        uint64_t due = (d->pump.st.tick / TELEMETRY_PERIOD_TICKS + 1u) * TELEMETRY_PERIOD_TICKS;
        uint64_t target = due < to_tick ? due : to_tick;
        bool there = pump_run(&d->pump, target, wanted, n_wanted);
        d->tick = d->pump.st.tick;
        if (!there) {
            if (target < to_tick) { /* ask for the strokes up to to_tick, not only to the next telemetry */
                (void)pump_run(&d->pump, to_tick, wanted, n_wanted); /* stops at once: no sample for the next */
                d->tick = d->pump.st.tick;
            }
            return false;
        }
        if (target == due) {
            send_telemetry(d);
        }
        if (target == to_tick) {
            return true;
        }
    }
}

static int refuse_past(device_t *d, const frame_t *f, const char *field, uint64_t tick, const char *what)
{
    if (tick >= d->tick && (what == NULL || tick == d->tick)) {
        return 0;
    }
    char value[21], num[21], expected[160] = "";
    append_text(expected, sizeof expected, what == NULL ? ">= the present tick " : "the present tick ");
    append_text(expected, sizeof expected, pump_fmt_u64(num, d->tick));
    append_text(expected, sizeof expected, what == NULL ? " (time only moves forward)" : what);
    answer_nak(d, f->seq, f->msg_id, NAK_LIMIT_EXCEEDED, field, pump_fmt_u64(value, tick), expected);
    return 1;
}

static void run_advance_time(device_t *d, const frame_t *f)
{
    uint64_t to_tick = rd_u64(f->payload);
    if (refuse_past(d, f, "to_tick", to_tick, NULL)) {
        return;
    }
    size_t n_wanted = 0;
    bool there = run_with_telemetry(d, to_tick, d->wanted, &n_wanted);
    d->n_wanted = there ? 0u : (uint8_t)n_wanted;
    if (!there) {
        char value[21];
        answer_nak(d, f->seq, f->msg_id, NAK_NOT_ALLOWED_NOW, "to_tick", pump_fmt_u64(value, d->tick),
                   "FixtureAdvance: this pump has no plant; it ran to the tick named and needs the pressure "
                   "sample of its next stroke from a bench fixture");
        return;
    }
    answer_ack(d, f);
}

static void run_fixture_advance(device_t *d, const frame_t *f)
{
    const uint8_t *p = f->payload;
    uint64_t to_tick = rd_u64(p);
    if (refuse_past(d, f, "to_tick", to_tick, NULL)) {
        return;
    }
    pump_line_t lines[PUMP_LINES_MAX];
    size_t n_lines = p[8];
    for (size_t i = 0; i < n_lines; i++) {
        const uint8_t *q = p + 9u + i * 10u;
        lines[i].tick = rd_u64(q);
        lines[i].rotor_held = q[8];
        lines[i].emi = q[9];
    }
    const uint8_t *q = p + 9u + n_lines * 10u;
    size_t n_samples = q[0];
    if (n_samples > d->n_wanted) { /* the pressures answer the strokes the last report wanted, in its order */
        char value[21], num[21], expected[120] = "at most the ";
        append_text(expected, sizeof expected, pump_fmt_u64(num, d->n_wanted));
        append_text(expected, sizeof expected, " strokes the last FixtureReport wanted");
        answer_nak(d, f->seq, f->msg_id, NAK_LIMIT_EXCEEDED, "pressures_pa", pump_fmt_u64(value, n_samples), expected);
        return;
    }
    pump_sample_t samples[PUMP_FEED_MAX];
    for (size_t i = 0; i < n_samples; i++) {
        samples[i].tick = d->wanted[i];
        samples[i].pressure_pa = (int32_t)rd_u32(q + 1u + i * 4u);
    }
    pump_set_lines(&d->pump, lines, n_lines);
    pump_feed(&d->pump, samples, n_samples);
    size_t n_wanted = 0;
    bool there = run_with_telemetry(d, to_tick, d->wanted, &n_wanted);
    d->n_wanted = there ? 0u : (uint8_t)n_wanted;
    pwriter w;
    pw_init(&w, d->payload, sizeof d->payload);
    pw_u64(&w, d->tick);
    pw_u8(&w, d->pump.sensors.used);
    pw_u8(&w, d->n_wanted);
    for (size_t i = 0; i < d->n_wanted; i++) {
        pw_u64(&w, d->wanted[i]);
    }
    answer_frame(d, f->seq, 0x51, d->payload, w.len, 0);
}

static void run_battery_drain(device_t *d, const frame_t *f)
{
    uint64_t at_tick = rd_u64(f->payload);
    if (refuse_past(d, f, "at_tick", at_tick, ": a pump fed by a bench fixture is run to a fault's tick first")) {
        return;
    }
    uint64_t charge = rd_u64(f->payload + 8);
    pump_refusal_t refusal;
    if (!pump_drain_battery(&d->pump, charge, &refusal)) {
        answer_refusal(d, f, &refusal);
        return;
    }
    answer_ack(d, f);
}

static void run_reset(device_t *d, const frame_t *f)
{
    uint64_t at_tick = rd_u64(f->payload);
    if (refuse_past(d, f, "at_tick", at_tick, ": a pump fed by a bench fixture is run to a fault's tick first")) {
        return;
    }
    answer_ack(d, f);
    d->reset_pending = 1; /* after the answer is out (handle_frame) */
}

static void run_read_log(device_t *d, const frame_t *f)
{
    size_t n = pump_read_log(&d->pump, rd_u32(f->payload), f->payload[4], d->payload);
    answer_frame(d, f->seq, 0x46, d->payload, n, 0);
}

/* The pump's own commands; 0 when the payload did not parse (a bad frame, never kept). */
static int run_pump_command(device_t *d, const frame_t *f)
{
    static pump_answer_t answers[PUMP_ANSWERS_MAX];
    pump_refusal_t refusal;
    size_t n = pump_command(&d->pump, f->msg_id, f->payload, f->length, answers, &refusal);
    if (n == 0) {
        if (refusal.reason == REFUSE_MALFORMED) {
            return 0;
        }
        answer_refusal(d, f, &refusal);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        answer_frame(d, f->seq, answers[i].msg_id, answers[i].payload, answers[i].len, i + 1u < n);
    }
    return 1;
}

/* 0 when the payload turned out malformed (answered by the caller as a bad frame). */
static int run_command(device_t *d, const frame_t *f)
{
    if (f->spec->test_mode && !d->test_mode) {
        answer_nak(d, f->seq, f->msg_id, NAK_NOT_IN_TEST_MODE, "", "",
                   "a pump started in test mode (an emulated rig: ithil emulate --test-mode)");
        return 1;
    }
    switch (f->msg_id) {
    case 0x01:
        run_hello(d, f);
        break;
    case 0x20:
        run_read_log(d, f);
        break;
    case 0x70:
        run_advance_time(d, f);
        break;
    case 0x73:
        run_battery_drain(d, f);
        break;
    case 0x75:
        run_reset(d, f);
        break;
    case 0x76:
        run_fixture_advance(d, f);
        break;
    case 0x71: /* InjectOcclusion */
    case 0x72: /* InjectMri */
    case 0x74: /* InjectStall */
        answer_nak(d, f->seq, f->msg_id, NAK_NOT_ALLOWED_NOW, "", "",
                   "the bench fixture: this pump has no plant; its fixture clamps the catheter, holds or jams "
                   "the rotor (rig fault method \"fixture\")");
        break;
    default:
        if (!run_pump_command(d, f)) {
            return 0;
        }
        break;
    }
    d->executed++;
    return 1;
}

/* ---- frames --------------------------------------------------------------------------------- */

static void handle_frame(device_t *d, const uint8_t *encoded, size_t n)
{
    frame_t f;
    f.seq = 0;
    f.msg_id = 0;
    d->frames_seen++;
    long m = cobs_decode(encoded, n, d->inner, sizeof d->inner);
    if (m < 0) {
        reject(d, BAD_COBS, &f, 0, "");
        return;
    }
    switch (frame_parse(d->inner, (size_t)m, &f)) {
    case FRAME_OK:
        break;
    case FRAME_ERR_COBS:
        reject(d, BAD_COBS, &f, 0, "");
        return;
    case FRAME_ERR_SHORT:
        reject(d, BAD_LENGTH, &f, 0, "");
        return;
    case FRAME_ERR_CRC:
        reject(d, BAD_CRC, &f, NAK_BAD_CRC, "a CRC-32/ISO-HDLC over header, payload and signature that matches");
        return;
    case FRAME_ERR_VERSION:
        reject(d, BAD_VERSION, &f, NAK_UNSUPPORTED_VERSION, "protocol version 1 and flags within 0x03");
        return;
    case FRAME_ERR_LENGTH:
        reject(d, BAD_LENGTH, &f, NAK_MALFORMED, "a header length that matches the frame and the message");
        return;
    case FRAME_ERR_UNKNOWN_ID:
        reject(d, BAD_UNKNOWN_ID, &f, NAK_UNKNOWN_ID, "a message id in the catalogue of version 1");
        return;
    }
    if (!payload_ok(&f)) {
        reject(d, BAD_PAYLOAD, &f, NAK_MALFORMED, "a payload that parses as the message");
        return;
    }
    uint8_t digest[SHA256_DIGEST];
    command_digest(&f, digest);
    const char *detail = "";
    uint8_t refused = verify(d, &f, digest, &detail);
    if (refused != 0) {
        reject(d, BAD_SIGNATURE, &f, refused, detail);
        return;
    }
    d->frames_ok++;
    if (!f.spec->to_pump) {
        d->ignored++; /* what a pump sends is never answered: two devices never ping-pong */
        return;
    }
    window_entry *stored = window_lookup(d, &f, digest);
    if (stored != NULL) {
        d->repeats++;
        d->write(d->ctx, stored->answer, stored->answer_len);
        return;
    }
    d->answer_len = 0;
    if (!run_command(d, &f)) {
        reject(d, BAD_PAYLOAD, &f, NAK_MALFORMED, "a payload that parses as the message");
        return;
    }
    window_store(d, &f, digest);
    send_answer(d);
    if (d->reset_pending) { /* InjectReset: the answer is out; now the processor resets */
        if (d->reset != NULL) {
            d->reset(d->ctx); /* the board's: never returns; main() calls device_restart */
        }
        device_restart(d, d->write, d->ctx);
    }
}

void device_feed(device_t *d, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = data[i];
        if (b != 0) {
            if (d->rx_skipping) {
                continue;
            }
            if (d->rx_len == sizeof d->rx) { /* no delimiter within the longest frame: drop it, count once */
                d->frames_seen++;
                d->bad[BAD_LENGTH]++;
                d->rx_len = 0;
                d->rx_skipping = 1;
                continue;
            }
            d->rx[d->rx_len++] = b;
            continue;
        }
        if (d->rx_skipping) {
            d->rx_skipping = 0;
        } else if (d->rx_len > 0) {
            handle_frame(d, d->rx, d->rx_len);
        }
        d->rx_len = 0; /* two delimiters in a row: an empty frame, ignored */
    }
}

static void derive_key(device_key *key, uint8_t key_id, uint8_t role, const char *label)
{
    size_t n = 0;
    while (label[n] != '\0') {
        n++;
    }
    key->key_id = key_id;
    key->role = role;
    sha256((const uint8_t *)label, n, key->secret);
}

void device_init(device_t *d, device_write_fn write, void *ctx, int test_mode, pump_log_t *log)
{
    uint8_t *raw = (uint8_t *)d;
    for (size_t i = 0; i < sizeof *d; i++) {
        raw[i] = 0;
    }
    d->write = write;
    d->ctx = ctx;
    d->test_mode = test_mode;
    /* hil.device.default_test_keys: public TEST secrets, SHA-256 of a label. Never on a real pump. */
    derive_key(&d->keys[0], CLINICIAN_TEST_KEY_ID, ACCESS_CLINICIAN, "ithil test key: clinician");
    derive_key(&d->keys[1], PATIENT_TEST_KEY_ID, ACCESS_PATIENT, "ithil test key: patient");
    d->log = log;
    log->magic = 0u; /* a new implant: the ring is erased by pump_power_on */
    pump_power_on(&d->pump, log, 0u);
    d->retained_magic = DEVICE_RETAINED_MAGIC;
}

void device_restart(device_t *d, device_write_fn write, void *ctx)
{
    d->write = write;
    d->ctx = ctx;
    d->rx_len = 0;
    d->rx_skipping = 0;
    d->answer_len = 0;
    d->reset_pending = 0;
    d->n_wanted = 0;
    d->resets++;
    pump_power_on(&d->pump, d->log, d->tick); /* RAM state is rebuilt from the log in flash */
}
