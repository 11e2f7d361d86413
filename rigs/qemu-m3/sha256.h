/* SHA-256 (FIPS 180-4), small and allocation-free. Pure. */
#ifndef ITHIL_SHA256_H
#define ITHIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK 64u
#define SHA256_DIGEST 32u

typedef struct {
    uint32_t state[8];
    uint64_t bytes;                 /* message bytes so far */
    uint8_t buf[SHA256_BLOCK];
    size_t used;                    /* bytes waiting in buf */
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const uint8_t *data, size_t n);
void sha256_final(sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST]);
void sha256(const uint8_t *data, size_t n, uint8_t digest[SHA256_DIGEST]);

#endif
