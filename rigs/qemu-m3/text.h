/* UTF-8 text as the protocol carries it (protocol.fields.Text): validated as Python's strict
 * decoder validates it, and cut to a byte limit as hil.wire_model.fit_text cuts it. Pure. */
#ifndef ITHIL_TEXT_H
#define ITHIL_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* 1 when s[0..n) is valid UTF-8 as Python's strict decoder sees it: no overlongs, no surrogates,
 * nothing past U+10FFFF, no sequence cut short. */
int utf8_valid(const uint8_t *s, size_t n);

/* How many of the n bytes of s to keep under max_bytes (>= 3): all of them when they fit, else
 * as many as leave room for "..." without cutting a character in two (the caller adds the "..."). */
size_t text_keep(const char *s, size_t n, size_t max_bytes);

/* The bytes of a NUL-terminated text. */
size_t text_len(const char *s);

#endif
