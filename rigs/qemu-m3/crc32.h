/* CRC-32/ISO-HDLC (zlib's crc32): poly 0x04C11DB7 reflected, init and xorout 0xFFFFFFFF. Pure. */
#ifndef ITHIL_CRC32_H
#define ITHIL_CRC32_H

#include <stddef.h>
#include <stdint.h>

#define CRC32_CHECK 0xCBF43926u      /* of the ASCII bytes "123456789" */
#define CRC32_GOOD_FRAME 0x2144DF1Cu /* of a whole good frame, its little-endian CRC included */

/* Continue a CRC: crc32_update(0, data, n) is the CRC of data; pass a result back in to extend it. */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t n);

#endif
