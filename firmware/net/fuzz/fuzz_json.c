/*
 * libFuzzer harness for the JSON writer: the input is a program of writer calls (one byte opcode,
 * then its operand bytes) run against a small buffer. Whatever the sequence, the writer must stay
 * inside its buffer, NUL-terminate, and either fail (-1) or produce text with balanced brackets,
 * no raw control characters and no "nan"/"inf". -DTL_STANDALONE: run stdin once, print the JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_json.h"

static int run(const uint8_t *data, size_t n, char *out, size_t cap) {
  tl_json_writer w;
  size_t i = 0;
  char s[16];
  int len, depth = 0, in_str = 0, esc = 0;
  tl_json_init(&w, out, cap);
  while (i < n) {
    uint8_t op = data[i++];
    switch (op % 10) {
      case 0: tl_json_begin_object(&w); break;
      case 1: tl_json_end_object(&w); break;
      case 2: tl_json_begin_array(&w); break;
      case 3: tl_json_end_array(&w); break;
      case 4:
      case 5: {
        size_t k = 0;
        while (i < n && k < sizeof s - 1 && data[i] != 0) s[k++] = (char)data[i++];
        s[k] = '\0';
        if (i < n) i++;
        if (op % 10 == 4) tl_json_key(&w, s); else tl_json_string(&w, s);
        break;
      }
      case 6: {
        int64_t v = 0;
        size_t k;
        for (k = 0; k < 8 && i < n; k++) v = (int64_t)((uint64_t)v << 8 | data[i++]);
        tl_json_int(&w, v);
        break;
      }
      case 7: {
        double d = 0.0;
        if (i + sizeof d <= n) memcpy(&d, data + i, sizeof d);
        i += sizeof d;
        tl_json_number(&w, d, op % 8);
        break;
      }
      case 8: tl_json_null(&w); break;
      default: tl_json_bool(&w, op & 1); break;
    }
  }
  len = tl_json_finish(&w);
  if (len < 0) {
    if (out[0] != '\0') abort();
    return len;
  }
  if ((size_t)len >= cap || out[len] != '\0' || strlen(out) != (size_t)len) abort();
  for (i = 0; i < (size_t)len; i++) {
    unsigned char c = (unsigned char)out[i];
    if (in_str) {
      if (c < 0x20) abort();
      if (esc) esc = 0;
      else if (c == '\\') esc = 1;
      else if (c == '"') in_str = 0;
      continue;
    }
    if (c == '"') in_str = 1;
    else if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') depth--;
    else if (c == 'n' && strncmp(out + i, "nan", 3) == 0) abort();
    else if (c == 'i' && strncmp(out + i, "inf", 3) == 0) abort();
    if (depth < 0) abort();
  }
  if (depth != 0 || in_str) abort();
  return len;
}

#ifndef TL_STANDALONE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  char out[256];
  run(data, n, out, sizeof out);
  return 0;
}
#else
int main(void) {
  static uint8_t buf[4096];
  char out[256];
  size_t n = fread(buf, 1, sizeof buf, stdin);
  int len = run(buf, n, out, sizeof out);
  printf("len=%d json=%s\n", len, len >= 0 ? out : "");
  return 0;
}
#endif
