/* HMAC-SHA256 (RFC 2104), with the message given in two parts (header+payload, signature prefix).
 * Pure. */
#ifndef ITHIL_HMAC_H
#define ITHIL_HMAC_H

#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

/* HMAC-SHA256(key, a | b) into mac (32 bytes); b may be NULL with nb 0. */
void hmac_sha256(const uint8_t *key, size_t nkey, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                 uint8_t mac[SHA256_DIGEST]);

/* Compare n bytes in time that does not depend on where they differ; 1 when equal. */
int mem_equal_ct(const uint8_t *x, const uint8_t *y, size_t n);

#endif
