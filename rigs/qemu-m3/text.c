/* UTF-8 text: validation and cutting (text.h). */
#include "text.h"

int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t more;
        uint32_t cp, min;
        if (c < 0x80u) {
            i++;
            continue;
        } else if ((c & 0xE0u) == 0xC0u) {
            more = 1; cp = c & 0x1Fu; min = 0x80u;
        } else if ((c & 0xF0u) == 0xE0u) {
            more = 2; cp = c & 0x0Fu; min = 0x800u;
        } else if ((c & 0xF8u) == 0xF0u) {
            more = 3; cp = c & 0x07u; min = 0x10000u;
        } else {
            return 0;
        }
        if (more > n - i - 1u) {
            return 0;
        }
        for (size_t k = 1; k <= more; k++) {
            uint8_t t = s[i + k];
            if ((t & 0xC0u) != 0x80u) {
                return 0;
            }
            cp = cp << 6 | (t & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu)) {
            return 0;
        }
        i += more + 1u;
    }
    return 1;
}

size_t text_keep(const char *s, size_t n, size_t max_bytes)
{
    if (n <= max_bytes) {
        return n;
    }
    size_t keep = max_bytes - 3u;
    while (keep > 0 && ((uint8_t)s[keep] & 0xC0u) == 0x80u) {
        keep--; /* never cut inside a UTF-8 character */
    }
    return keep;
}

size_t text_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}
