/* TinyLarge JSON writer (see tl_json.h). */
#include "tl_json.h"

static void put(tl_json_writer *w, char c) {
  if (w->error) return;
  if (w->len + 1 >= w->size) { /* keep room for the NUL */
    w->error = 1;
    return;
  }
  w->buf[w->len++] = c;
}

static void put_str(tl_json_writer *w, const char *s) {
  while (*s) put(w, *s++);
}

/* Called before every value or key: the comma between siblings. */
static void before_item(tl_json_writer *w, int is_key) {
  if (w->after_key) {
    if (is_key) w->error = 1; /* key after key */
    w->after_key = 0;
    return;
  }
  if (w->need_comma[w->depth]) put(w, ',');
  w->need_comma[w->depth] = 1;
}

void tl_json_init(tl_json_writer *w, char *buf, size_t size) {
  int i;
  w->buf = buf;
  w->size = size;
  w->len = 0;
  w->depth = 0;
  w->error = (buf == 0 || size == 0);
  w->after_key = 0;
  for (i = 0; i <= TL_JSON_MAX_DEPTH; i++) w->need_comma[i] = 0;
  if (!w->error) buf[0] = '\0';
}

static void open_container(tl_json_writer *w, char c) {
  before_item(w, 0);
  if (w->depth >= TL_JSON_MAX_DEPTH) {
    w->error = 1;
    return;
  }
  put(w, c);
  w->depth++;
  w->need_comma[w->depth] = 0;
}

static void close_container(tl_json_writer *w, char c) {
  if (w->depth <= 0 || w->after_key) {
    w->error = 1;
    return;
  }
  w->depth--;
  put(w, c);
}

void tl_json_begin_object(tl_json_writer *w) { open_container(w, '{'); }
void tl_json_end_object(tl_json_writer *w) { close_container(w, '}'); }
void tl_json_begin_array(tl_json_writer *w) { open_container(w, '['); }
void tl_json_end_array(tl_json_writer *w) { close_container(w, ']'); }

static void put_escaped(tl_json_writer *w, const char *s) {
  static const char hex[] = "0123456789abcdef";
  put(w, '"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
      case '"': put_str(w, "\\\""); break;
      case '\\': put_str(w, "\\\\"); break;
      case '\n': put_str(w, "\\n"); break;
      case '\r': put_str(w, "\\r"); break;
      case '\t': put_str(w, "\\t"); break;
      default:
        if (c < 0x20) {
          put_str(w, "\\u00");
          put(w, hex[c >> 4]);
          put(w, hex[c & 15]);
        } else {
          put(w, (char)c); /* UTF-8 passes through unchanged */
        }
    }
  }
  put(w, '"');
}

void tl_json_key(tl_json_writer *w, const char *key) {
  before_item(w, 1);
  put_escaped(w, key);
  put(w, ':');
  w->after_key = 1;
}

void tl_json_string(tl_json_writer *w, const char *s) {
  before_item(w, 0);
  put_escaped(w, s ? s : "");
}

static void put_uint(tl_json_writer *w, uint64_t v) {
  char tmp[21];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v);
  while (n) put(w, tmp[--n]);
}

void tl_json_int(tl_json_writer *w, int64_t v) {
  before_item(w, 0);
  if (v < 0) {
    put(w, '-');
    put_uint(w, (uint64_t)(-(v + 1)) + 1u);
  } else {
    put_uint(w, (uint64_t)v);
  }
}

void tl_json_null(tl_json_writer *w) {
  before_item(w, 0);
  put_str(w, "null");
}

void tl_json_bool(tl_json_writer *w, int v) {
  before_item(w, 0);
  put_str(w, v ? "true" : "false");
}

void tl_json_number(tl_json_writer *w, double v, int decimals) {
  static const uint32_t pow10[] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u};
  uint64_t scaled, ip;
  uint32_t fp, p;
  int d;
  /* NaN compares unequal to itself; +-inf and anything too large for the fixed-point path -> null */
  if (v != v || v > 9.0e12 || v < -9.0e12) {
    tl_json_null(w);
    return;
  }
  if (decimals < 0) decimals = 0;
  if (decimals > 6) decimals = 6;
  before_item(w, 0);
  p = pow10[decimals];
  if (v < 0) {
    double mag = -v * (double)p + 0.5;
    scaled = (uint64_t)mag;
    if (scaled != 0u) put(w, '-'); /* no "-0" */
  } else {
    scaled = (uint64_t)(v * (double)p + 0.5);
  }
  ip = scaled / p;
  fp = (uint32_t)(scaled % p);
  put_uint(w, ip);
  if (fp != 0u) {
    char tmp[7];
    d = decimals;
    while (fp % 10u == 0u) { /* trim trailing zeros */
      fp /= 10u;
      d--;
    }
    put(w, '.');
    tmp[d] = '\0';
    for (; d > 0; d--) {
      tmp[d - 1] = (char)('0' + (int)(fp % 10u));
      fp /= 10u;
    }
    put_str(w, tmp);
  }
}

int tl_json_finish(tl_json_writer *w) {
  if (w->error || w->depth != 0 || w->after_key) {
    if (w->buf && w->size) w->buf[0] = '\0';
    return -1;
  }
  w->buf[w->len] = '\0';
  return (int)w->len;
}
