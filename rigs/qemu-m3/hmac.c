#include "hmac.h"

void hmac_sha256(const uint8_t *key, size_t nkey, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                 uint8_t mac[SHA256_DIGEST])
{
    uint8_t k[SHA256_BLOCK];
    uint8_t pad[SHA256_BLOCK];
    uint8_t inner[SHA256_DIGEST];
    sha256_ctx ctx;

    for (size_t i = 0; i < SHA256_BLOCK; i++) {
        k[i] = 0;
    }
    if (nkey > SHA256_BLOCK) {
        sha256(key, nkey, k);
    } else {
        for (size_t i = 0; i < nkey; i++) {
            k[i] = key[i];
        }
    }
    for (size_t i = 0; i < SHA256_BLOCK; i++) {
        pad[i] = (uint8_t)(k[i] ^ 0x36u);
    }
    sha256_init(&ctx);
    sha256_update(&ctx, pad, SHA256_BLOCK);
    sha256_update(&ctx, a, na);
    if (b != NULL) {
        sha256_update(&ctx, b, nb);
    }
    sha256_final(&ctx, inner);
    for (size_t i = 0; i < SHA256_BLOCK; i++) {
        pad[i] = (uint8_t)(k[i] ^ 0x5Cu);
    }
    sha256_init(&ctx);
    sha256_update(&ctx, pad, SHA256_BLOCK);
    sha256_update(&ctx, inner, SHA256_DIGEST);
    sha256_final(&ctx, mac);
}

int mem_equal_ct(const uint8_t *x, const uint8_t *y, size_t n)
{
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(x[i] ^ y[i]);
    }
    return diff == 0;
}
