/* tlsensor text reader (see tl_sensor_text.h). */
#include "tl_sensor_text.h"

#include <math.h>
#include <string.h>

#define TOKEN_MAX 64
#define MAX_CHANNELS 16

int tl_sensor_samples(const tl_sensor_set *set, int ch) {
  float n = set->channels[ch].rate_hz * set->window_s;
  int k = (int)(n + 0.5f);
  return k < 1 ? 1 : k;
}

/* Next token into tok; returns its length, 0 at end of input. */
static int next_token(FILE *f, char *tok) {
  int c, n = 0;
  for (;;) {
    c = getc(f);
    if (c == EOF) return 0;
    if (c == '#') {
      while (c != EOF && c != '\n') c = getc(f);
      continue;
    }
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ',') break;
  }
  while (c != EOF && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ',' && c != '#') {
    if (n < TOKEN_MAX - 1) tok[n++] = (char)c;
    c = getc(f);
  }
  if (c == '#') ungetc(c, f);
  tok[n] = '\0';
  return n;
}

int tl_parse_float(const char *s, float *out) {
  double mant = 0.0, frac = 0.1;
  int sign = 1, esign = 1, ex = 0, digits = 0;
  if (*s == '-' || *s == '+') sign = (*s++ == '-') ? -1 : 1;
  if ((s[0] == 'n' || s[0] == 'N') && (s[1] == 'a' || s[1] == 'A') && (s[2] == 'n' || s[2] == 'N') && !s[3]) {
    *out = NAN;
    return 1;
  }
  for (; *s >= '0' && *s <= '9'; s++, digits++) mant = mant * 10.0 + (*s - '0');
  if (*s == '.') {
    for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
      mant += (*s - '0') * frac;
      frac *= 0.1;
    }
  }
  if (!digits) return 0;
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '-' || *s == '+') esign = (*s++ == '-') ? -1 : 1;
    if (!(*s >= '0' && *s <= '9')) return 0;
    for (; *s >= '0' && *s <= '9'; s++)
      if (ex < 400) ex = ex * 10 + (*s - '0');
  }
  if (*s) return 0;
  while (ex-- > 0) mant = esign > 0 ? mant * 10.0 : mant / 10.0;
  *out = (float)(sign * mant);
  return 1;
}

static int parse_int64(const char *s, int64_t *out) {
  int64_t v = 0;
  if (!*s) return 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > 922337203685477580LL) return 0;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return 1;
}

int tl_sensor_text_read(FILE *f, const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms) {
  char tok[TOKEN_MAX];
  int fill[MAX_CHANNELS];
  int ch = -1, i, complete = 0;
  if (set->n_channels < 1 || set->n_channels > MAX_CHANNELS) return TL_HAL_ERROR;
  for (i = 0; i < set->n_channels; i++) fill[i] = 0;
  *end_ts_ms = -1;
  while (next_token(f, tok)) {
    float v;
    if (tl_parse_float(tok, &v)) {
      if (ch < 0 || fill[ch] >= tl_sensor_samples(set, ch)) return TL_HAL_ERROR;
      bufs[ch][fill[ch]++] = v * set->channels[ch].scale;
      if (fill[ch] == tl_sensor_samples(set, ch)) {
        for (complete = 1, i = 0; i < set->n_channels; i++)
          if (fill[i] < tl_sensor_samples(set, i)) complete = 0;
        if (complete) return TL_HAL_OK;
      }
      continue;
    }
    if (strcmp(tok, "t") == 0) {
      if (!next_token(f, tok) || !parse_int64(tok, end_ts_ms)) return TL_HAL_ERROR;
      ch = -1;
      continue;
    }
    for (ch = -1, i = 0; i < set->n_channels; i++)
      if (strcmp(tok, set->channels[i].name) == 0) ch = i;
    if (ch < 0) return TL_HAL_ERROR;
  }
  return TL_HAL_END;
}
