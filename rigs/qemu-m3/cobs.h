/* COBS (Consistent Overhead Byte Stuffing), as the Python `cobs` package encodes and decodes.
 * Pure: no hardware access, builds natively too. */
#ifndef ITHIL_COBS_H
#define ITHIL_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Worst-case encoded size of n bytes (one code byte per 254, plus one). */
#define COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encode n bytes of in into out (room for COBS_MAX_ENCODED(n)); returns the encoded length.
 * No delimiter is written. */
size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out);

/* Decode n bytes (no delimiter) into out (room for cap bytes); returns the decoded length, or
 * -1 when in is not a COBS encoding (a zero byte inside, a code byte that points past the end)
 * or the result does not fit. out may equal in (decoding never writes ahead of reading). */
long cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

#endif
