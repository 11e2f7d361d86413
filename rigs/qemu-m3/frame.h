/* Frames as protocol/framing.py builds and checks them (docs/protocol.md, "Frames"):
 *
 *     COBS( header(7) | payload(length) | signature(16, if flags & SIGNED) | CRC-32(4) ) 0x00
 *
 * header: version u8, flags u8, seq u16, msg_id u8, length u16; signature: link_id u8, key_id u8,
 * timestamp u48 (10 us), mac[8] = HMAC-SHA256(secret, header | payload | link_id | key_id |
 * timestamp)[:8]; CRC-32/ISO-HDLC over everything before it. All little-endian. Pure. */
#ifndef ITHIL_FRAME_H
#define ITHIL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "text.h"

#define PROTOCOL_VERSION 1u
#define FRAME_HEADER_SIZE 7u
#define FRAME_SIGNATURE_SIZE 16u
#define FRAME_SIGNED_PREFIX_SIZE 8u   /* link_id, key_id, timestamp: what the MAC covers of the block */
#define FRAME_MAC_SIZE 8u
#define FRAME_CRC_SIZE 4u
#define FRAME_MAX_PAYLOAD 1024u
#define FRAME_MIN (FRAME_HEADER_SIZE + FRAME_CRC_SIZE)
#define FRAME_MAX (FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD + FRAME_SIGNATURE_SIZE + FRAME_CRC_SIZE) /* 1051 */
#define FRAME_MAX_ENCODED (FRAME_MAX + (FRAME_MAX + 253u) / 254u)                                 /* 1056 */
#define FLAG_SIGNED 0x01u
#define FLAG_MORE 0x02u
#define FLAGS_DEFINED (FLAG_SIGNED | FLAG_MORE)
#define SECRET_SIZE 32u

/* Why a frame was dropped: the decoder's counters (protocol.errors.BadFrame), in the order
 * framing.decode_inner checks them. */
typedef enum {
    FRAME_OK = 0,
    FRAME_ERR_COBS,        /* not a COBS encoding: no answer */
    FRAME_ERR_SHORT,       /* too short or too long to hold a header: no answer */
    FRAME_ERR_CRC,         /* Nak BAD_CRC */
    FRAME_ERR_VERSION,     /* a version or a flag not spoken: Nak UNSUPPORTED_VERSION */
    FRAME_ERR_LENGTH,      /* header length disagrees with the frame, or a fixed size is wrong: Nak MALFORMED */
    FRAME_ERR_UNKNOWN_ID,  /* Nak UNKNOWN_ID */
} frame_status;

/* Roles and access levels (protocol.enums.Role, Access). */
enum { ACCESS_OPEN = 0, ACCESS_PATIENT = 1, ACCESS_CLINICIAN = 2 };

/* One message of the catalogue (protocol.messages.CATALOGUE). */
typedef struct {
    uint8_t msg_id;
    int16_t size;       /* the payload's fixed size, or -1 when it varies */
    uint8_t access;     /* ACCESS_* */
    uint8_t test_mode;  /* only for a pump in test mode */
    uint8_t to_pump;    /* host -> pump (else the pump sends it) */
    const char *name;
} msg_spec;

extern const msg_spec CATALOGUE[];
extern const size_t CATALOGUE_COUNT;
const msg_spec *catalogue_find(uint8_t msg_id);

typedef struct {
    uint8_t version, flags, msg_id;
    uint16_t seq, length;
    const uint8_t *payload;
    int is_signed;
    uint8_t link_id, key_id;
    uint64_t timestamp;    /* 48-bit, 10 us units */
    const uint8_t *mac;    /* FRAME_MAC_SIZE bytes */
    const uint8_t *inner;  /* the whole frame after COBS, header to CRC */
    size_t inner_len;
    const msg_spec *spec;
} frame_t;

/* Check and read a frame after COBS decoding, as framing.decode_inner does up to (not including)
 * the payload's own parse. seq and msg_id are set whenever the frame holds a header (n >= FRAME_MIN),
 * even when it is refused, so that the Nak can name them. */
frame_status frame_parse(const uint8_t *inner, size_t n, frame_t *f);

/* The bytes the MAC of a signed frame covers: header, payload, link id, key id, timestamp. */
size_t frame_signed_len(const frame_t *f);

/* Build a frame before COBS (header | payload | signature if secret != NULL | CRC) into out (room
 * for FRAME_MAX); returns its length. The signed flag is set when secret is given, before the MAC. */
size_t frame_build(uint8_t *out, uint8_t version, uint8_t flags, uint16_t seq, uint8_t msg_id,
                   const uint8_t *payload, uint16_t length, const uint8_t *secret, uint8_t link_id,
                   uint8_t key_id, uint64_t timestamp);

/* COBS-encode a built frame and append the 0x00 delimiter; out needs FRAME_MAX_ENCODED + 1 bytes. */
size_t frame_encode(const uint8_t *inner, size_t n, uint8_t *out);

/* Little-endian payload writer; `overflow` is set (and nothing written) past cap. */
typedef struct {
    uint8_t *buf;
    size_t cap, len;
    int overflow;
} pwriter;

void pw_init(pwriter *w, uint8_t *buf, size_t cap);
void pw_u8(pwriter *w, uint8_t v);
void pw_u16(pwriter *w, uint16_t v);
void pw_u32(pwriter *w, uint32_t v);
void pw_u64(pwriter *w, uint64_t v);
void pw_bytes(pwriter *w, const uint8_t *data, size_t n);
/* A str field: u8 length then the UTF-8 bytes, cut to max_bytes as hil.wire_model.fit_text cuts
 * ASCII ("..." marking a cut). */
void pw_str(pwriter *w, const char *text, size_t max_bytes);

uint16_t rd_u16(const uint8_t *p);
uint32_t rd_u32(const uint8_t *p);
uint64_t rd_u64(const uint8_t *p);
uint64_t rd_u48(const uint8_t *p);

#endif
