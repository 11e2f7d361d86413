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

char *fmt_u64(char *buf, uint64_t v)
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
        append_text(value, sizeof value, fmt_u64(num, min));
        append_text(value, sizeof value, "..");
        append_text(value, sizeof value, fmt_u64(num, max));
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

static void run_status(device_t *d, const frame_t *f)
{
    /* A pump implanted and never filled: stopped, no drug, nothing delivered, no alarm. */
    pwriter w;
    pw_init(&w, d->payload, sizeof d->payload);
    pw_u64(&w, d->tick);
    pw_u8(&w, 0);                  /* mode STOPPED */
    pw_str(&w, "", 32);            /* drug */
    pw_u32(&w, 0);                 /* concentration_ug_per_ml */
    pw_u32(&w, 0);                 /* programmed_rate_nl_per_day */
    pw_u32(&w, 0);                 /* effective_rate_nl_per_day */
    pw_u32(&w, 0);                 /* reservoir_nl */
    pw_u64(&w, 0);                 /* delivered_nl */
    pw_u64(&w, 0);                 /* dose_at_tip_ng */
    pw_u64(&w, 0);                 /* steps */
    pw_u8(&w, 0);                  /* bolus_active: none */
    pw_u8(&w, 0);                  /* alarms: none */
    pw_u8(&w, 0);                  /* sounding: none */
    pw_u8(&w, 1);                  /* delivery_stopped: no drug */
    pw_u8(&w, 0);                  /* stalled */
    pw_u8(&w, 0);                  /* telemetry_latched */
    pw_u16(&w, BATTERY_MONTHS_NEW);
    pw_u8(&w, 0);                  /* eri */
    pw_u8(&w, 0);                  /* eos */
    pw_u64(&w, UINT64_MAX);        /* refill_due_tick: none */
    answer_frame(d, f->seq, 0x45, d->payload, w.len, 0);
}

static void answer_ack(device_t *d, const frame_t *f)
{
    uint8_t id = f->msg_id;
    answer_frame(d, f->seq, 0x40, &id, 1, 0);
}

static void run_advance_time(device_t *d, const frame_t *f)
{
    uint64_t to_tick = rd_u64(f->payload);
    if (to_tick < d->tick) {
        char value[21], num[21], expected[80] = ">= the present tick ";
        append_text(expected, sizeof expected, fmt_u64(num, d->tick));
        append_text(expected, sizeof expected, " (time only moves forward)");
        answer_nak(d, f->seq, f->msg_id, NAK_LIMIT_EXCEEDED, "to_tick", fmt_u64(value, to_tick), expected);
        return;
    }
    d->tick = to_tick;
    answer_ack(d, f);
}

static void run_command(device_t *d, const frame_t *f)
{
    if (f->spec->test_mode && !d->test_mode) {
        answer_nak(d, f->seq, f->msg_id, NAK_NOT_IN_TEST_MODE, "", "",
                   "a pump started in test mode (an emulated rig: ithil emulate --test-mode)");
        return;
    }
    d->executed++;
    switch (f->msg_id) {
    case 0x01:
        run_hello(d, f);
        break;
    case 0x10: /* GetStatus */
    case 0x1d: /* Interrogate: no telemetry latch to release in this firmware yet */
        run_status(d, f);
        break;
    case 0x70:
        run_advance_time(d, f);
        break;
    default:
        answer_nak(d, f->seq, f->msg_id, NAK_NOT_ALLOWED_NOW, "", "",
                   "a command this firmware implements (" FIRMWARE_NAME " does not yet)");
        break;
    }
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
    run_command(d, &f);
    window_store(d, &f, digest);
    send_answer(d);
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

void device_init(device_t *d, device_write_fn write, void *ctx, int test_mode)
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
}
