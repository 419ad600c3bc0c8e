/*
 * TinyLarge JSON writer: compact JSON into a caller-owned buffer, no heap, no printf.
 *
 * Usage: tl_json_init(&w, buf, size); tl_json_begin_object(&w); tl_json_key(&w, "seq");
 * tl_json_int(&w, 7); ... tl_json_end_object(&w); then tl_json_finish(&w) returns the length
 * (excluding the terminating NUL it writes) or -1 if anything overflowed or was malformed.
 * Commas are inserted automatically. Non-finite floats are written as null (JSON has no NaN).
 */
#ifndef TL_JSON_H
#define TL_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_JSON_MAX_DEPTH 8

typedef struct {
  char *buf;
  size_t size;
  size_t len;
  int depth;
  int error;                       /* sticky: overflow, depth, or misuse */
  uint8_t need_comma[TL_JSON_MAX_DEPTH + 1];
  uint8_t after_key;               /* a key was just written: next value takes no comma */
} tl_json_writer;

void tl_json_init(tl_json_writer *w, char *buf, size_t size);
void tl_json_begin_object(tl_json_writer *w);
void tl_json_end_object(tl_json_writer *w);
void tl_json_begin_array(tl_json_writer *w);
void tl_json_end_array(tl_json_writer *w);
void tl_json_key(tl_json_writer *w, const char *key);
void tl_json_string(tl_json_writer *w, const char *s);
void tl_json_int(tl_json_writer *w, int64_t v);
/* Fixed-point decimal with `decimals` digits after the point (0..6), trailing zeros trimmed. */
void tl_json_number(tl_json_writer *w, double v, int decimals);
void tl_json_bool(tl_json_writer *w, int v);
void tl_json_null(tl_json_writer *w);
/* Length written, or -1 on any error (the buffer then holds an empty string). */
int tl_json_finish(tl_json_writer *w);

#ifdef __cplusplus
}
#endif

#endif /* TL_JSON_H */
