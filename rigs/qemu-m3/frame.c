#include "frame.h"

#include "cobs.h"
#include "crc32.h"
#include "hmac.h"

/* protocol.messages.CATALOGUE: id, fixed payload size (-1: varies), access, test mode, direction. */
const msg_spec CATALOGUE[] = {
    {0x01, -1, ACCESS_OPEN, 0, 1, "Hello"},
    {0x02, -1, ACCESS_OPEN, 0, 0, "HelloReply"},
    {0x10, 0, ACCESS_PATIENT, 0, 1, "GetStatus"},
    {0x11, 0, ACCESS_CLINICIAN, 0, 1, "ProgramStopped"},
    {0x12, 4, ACCESS_CLINICIAN, 0, 1, "ProgramContinuous"},
    {0x13, -1, ACCESS_CLINICIAN, 0, 1, "ProgramFlex"},
    {0x14, 0, ACCESS_CLINICIAN, 0, 1, "ProgramMinimumRate"},
    {0x15, 24, ACCESS_CLINICIAN, 0, 1, "ClinicianBolus"},
    {0x16, 12, ACCESS_CLINICIAN, 0, 1, "PrimingBolus"},
    {0x17, 21, ACCESS_CLINICIAN, 0, 1, "ConfigurePatientBolus"},
    {0x18, 0, ACCESS_PATIENT, 0, 1, "PatientBolusRequest"},
    {0x19, -1, ACCESS_CLINICIAN, 0, 1, "Refill"},
    {0x1a, 4, ACCESS_CLINICIAN, 0, 1, "SetLowReservoirAlarm"},
    {0x1b, 1, ACCESS_CLINICIAN, 0, 1, "AcknowledgeAlarm"},
    {0x1c, 8, ACCESS_CLINICIAN, 0, 1, "SetClock"},
    {0x1d, 0, ACCESS_PATIENT, 0, 1, "Interrogate"},
    {0x20, 5, ACCESS_CLINICIAN, 0, 1, "ReadLog"},
    {0x40, 1, ACCESS_OPEN, 0, 0, "Ack"},
    {0x41, -1, ACCESS_OPEN, 0, 0, "AckSoftLimits"},
    {0x42, -1, ACCESS_OPEN, 0, 0, "Nak"},
    {0x43, 9, ACCESS_OPEN, 0, 0, "BolusGranted"},
    {0x44, -1, ACCESS_OPEN, 0, 0, "BolusDenied"},
    {0x45, -1, ACCESS_OPEN, 0, 0, "StatusReport"},
    {0x46, -1, ACCESS_OPEN, 0, 0, "LogRecords"},
    {0x50, 40, ACCESS_OPEN, 0, 0, "Telemetry"},
    {0x51, -1, ACCESS_OPEN, 0, 0, "FixtureReport"},
    {0x70, 8, ACCESS_CLINICIAN, 1, 1, "AdvanceTime"},
    {0x71, 18, ACCESS_CLINICIAN, 1, 1, "InjectOcclusion"},
    {0x72, 16, ACCESS_CLINICIAN, 1, 1, "InjectMri"},
    {0x73, 16, ACCESS_CLINICIAN, 1, 1, "InjectBatteryDrain"},
    {0x74, 16, ACCESS_CLINICIAN, 1, 1, "InjectStall"},
    {0x75, 8, ACCESS_CLINICIAN, 1, 1, "InjectReset"},
    {0x76, -1, ACCESS_CLINICIAN, 1, 1, "FixtureAdvance"},
};
const size_t CATALOGUE_COUNT = sizeof CATALOGUE / sizeof CATALOGUE[0];

const msg_spec *catalogue_find(uint8_t msg_id)
{
    for (size_t i = 0; i < CATALOGUE_COUNT; i++) {
        if (CATALOGUE[i].msg_id == msg_id) {
            return &CATALOGUE[i];
        }
    }
    return NULL;
}

uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)p[1] << 8); }

uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

uint64_t rd_u48(const uint8_t *p) { return (uint64_t)rd_u32(p) | (uint64_t)rd_u16(p + 4) << 32; }

frame_status frame_parse(const uint8_t *inner, size_t n, frame_t *f)
{
    f->inner = inner;
    f->inner_len = n;
    f->spec = NULL;
    f->is_signed = 0;
    f->payload = NULL;
    f->mac = NULL;
    f->seq = 0;
    f->msg_id = 0;
    if (n < FRAME_MIN || n > FRAME_MAX) {
        return FRAME_ERR_SHORT;
    }
    f->version = inner[0];
    f->flags = inner[1];
    f->seq = rd_u16(inner + 2);
    f->msg_id = inner[4];
    f->length = rd_u16(inner + 5);
    if (crc32_update(0, inner, n) != CRC32_GOOD_FRAME) {
        return FRAME_ERR_CRC;
    }
    if (f->version != PROTOCOL_VERSION || (f->flags & (uint8_t)~FLAGS_DEFINED) != 0) {
        return FRAME_ERR_VERSION;
    }
    f->is_signed = (f->flags & FLAG_SIGNED) != 0;
    long expected = (long)n - (long)FRAME_HEADER_SIZE - (long)FRAME_CRC_SIZE -
                    (f->is_signed ? (long)FRAME_SIGNATURE_SIZE : 0L);
    if ((long)f->length != expected) {
        return FRAME_ERR_LENGTH;
    }
    f->spec = catalogue_find(f->msg_id);
    if (f->spec == NULL) {
        return FRAME_ERR_UNKNOWN_ID;
    }
    if (f->spec->size >= 0 && f->length != (uint16_t)f->spec->size) {
        return FRAME_ERR_LENGTH;
    }
    f->payload = inner + FRAME_HEADER_SIZE;
    if (f->is_signed) {
        const uint8_t *sig = f->payload + f->length;
        f->link_id = sig[0];
        f->key_id = sig[1];
        f->timestamp = rd_u48(sig + 2);
        f->mac = sig + FRAME_SIGNED_PREFIX_SIZE;
    }
    return FRAME_OK;
}

size_t frame_signed_len(const frame_t *f)
{
    return f->inner_len - FRAME_CRC_SIZE - FRAME_MAC_SIZE;
}

size_t frame_build(uint8_t *out, uint8_t version, uint8_t flags, uint16_t seq, uint8_t msg_id,
                   const uint8_t *payload, uint16_t length, const uint8_t *secret, uint8_t link_id,
                   uint8_t key_id, uint64_t timestamp)
{
    size_t n = 0;
    if (secret != NULL) {
        flags |= FLAG_SIGNED;
    }
    out[n++] = version;
    out[n++] = flags;
    out[n++] = (uint8_t)seq;
    out[n++] = (uint8_t)(seq >> 8);
    out[n++] = msg_id;
    out[n++] = (uint8_t)length;
    out[n++] = (uint8_t)(length >> 8);
    for (uint16_t i = 0; i < length; i++) {
        out[n++] = payload[i];
    }
    if (secret != NULL) {
        uint8_t mac[SHA256_DIGEST];
        out[n++] = link_id;
        out[n++] = key_id;
        for (unsigned i = 0; i < 6; i++) {
            out[n++] = (uint8_t)(timestamp >> (8u * i));
        }
        hmac_sha256(secret, SECRET_SIZE, out, n, NULL, 0, mac);
        for (unsigned i = 0; i < FRAME_MAC_SIZE; i++) {
            out[n++] = mac[i];
        }
    }
    uint32_t crc = crc32_update(0, out, n);
    for (unsigned i = 0; i < 4; i++) {
        out[n++] = (uint8_t)(crc >> (8u * i));
    }
    return n;
}

size_t frame_encode(const uint8_t *inner, size_t n, uint8_t *out)
{
    size_t m = cobs_encode(inner, n, out);
    out[m++] = 0;
    return m;
}

void pw_init(pwriter *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

void pw_bytes(pwriter *w, const uint8_t *data, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        w->buf[w->len++] = data[i];
    }
}

void pw_u8(pwriter *w, uint8_t v) { pw_bytes(w, &v, 1); }

void pw_u16(pwriter *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    pw_bytes(w, b, 2);
}

void pw_u32(pwriter *w, uint32_t v)
{
    uint8_t b[4];
    for (unsigned i = 0; i < 4; i++) {
        b[i] = (uint8_t)(v >> (8u * i));
    }
    pw_bytes(w, b, 4);
}

void pw_u64(pwriter *w, uint64_t v)
{
    pw_u32(w, (uint32_t)v);
    pw_u32(w, (uint32_t)(v >> 32));
}

void pw_str(pwriter *w, const char *text, size_t max_bytes)
{
    const size_t n = text_len(text), keep = text_keep(text, n, max_bytes), dots = keep < n ? 3u : 0u;
    pw_u8(w, (uint8_t)(keep + dots));
    pw_bytes(w, (const uint8_t *)text, keep);
    pw_bytes(w, (const uint8_t *)"...", dots);
}
