/* TinyLarge serial framing (see tl_frame.h). */
#include "tl_frame.h"

enum { S_HUNT, S_KIND, S_LEN_HI, S_LEN_LO, S_PAYLOAD, S_CRC_HI, S_CRC_LO, S_END };

uint16_t tl_crc16(const uint8_t *data, size_t n, uint16_t crc) {
  size_t i;
  int b;
  for (i = 0; i < n; i++) {
    crc ^= (uint16_t)((uint16_t)data[i] << 8);
    for (b = 0; b < 8; b++) crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
  }
  return crc;
}

int tl_frame_encode(uint8_t kind, const uint8_t *payload, size_t n, uint8_t *out, size_t out_size) {
  uint16_t crc;
  size_t i;
  if (n > TL_FRAME_MAX_PAYLOAD || out_size < n + TL_FRAME_OVERHEAD || kind == TL_FRAME_FLAG) return -1;
  out[0] = TL_FRAME_FLAG;
  out[1] = kind;
  out[2] = (uint8_t)(n >> 8);
  out[3] = (uint8_t)(n & 0xFFu);
  for (i = 0; i < n; i++) out[4 + i] = payload[i];
  crc = tl_crc16(out + 1, n + 3, 0xFFFFu);
  out[4 + n] = (uint8_t)(crc >> 8);
  out[5 + n] = (uint8_t)(crc & 0xFFu);
  out[6 + n] = TL_FRAME_FLAG;
  return (int)(n + TL_FRAME_OVERHEAD);
}

int tl_frame_encode_message(const char *stream, const char *json, size_t json_len, uint8_t *out,
                            size_t out_size) {
  size_t s = 0, i, n;
  uint16_t crc;
  while (stream[s]) s++;
  n = s + 1 + json_len;
  if (s == 0 || n > TL_FRAME_MAX_PAYLOAD || out_size < n + TL_FRAME_OVERHEAD) return -1;
  out[0] = TL_FRAME_FLAG;
  out[1] = TL_FRAME_MESSAGE;
  out[2] = (uint8_t)(n >> 8);
  out[3] = (uint8_t)(n & 0xFFu);
  for (i = 0; i < s; i++) out[4 + i] = (uint8_t)stream[i];
  out[4 + s] = 0;
  for (i = 0; i < json_len; i++) out[5 + s + i] = (uint8_t)json[i];
  crc = tl_crc16(out + 1, n + 3, 0xFFFFu);
  out[4 + n] = (uint8_t)(crc >> 8);
  out[5 + n] = (uint8_t)(crc & 0xFFu);
  out[6 + n] = TL_FRAME_FLAG;
  return (int)(n + TL_FRAME_OVERHEAD);
}

void tl_frame_decoder_init(tl_frame_decoder *d) {
  d->state = S_HUNT;
  d->kind = 0;
  d->len = 0;
  d->pos = 0;
  d->crc_rx = 0;
  d->frames_ok = 0;
  d->frames_bad = 0;
}

static void drop(tl_frame_decoder *d, uint8_t byte) {
  d->frames_bad++;
  /* the offending byte may itself open the next frame */
  d->state = (byte == TL_FRAME_FLAG) ? S_KIND : S_HUNT;
}

int tl_frame_decoder_push(tl_frame_decoder *d, uint8_t byte) {
  uint8_t hdr[3];
  uint16_t crc;
  switch (d->state) {
    case S_HUNT:
      if (byte == TL_FRAME_FLAG) d->state = S_KIND;
      return 0;
    case S_KIND:
      if (byte == TL_FRAME_FLAG) return 0; /* idle flags between frames */
      d->kind = byte;
      d->state = S_LEN_HI;
      return 0;
    case S_LEN_HI:
      d->len = (uint16_t)((uint16_t)byte << 8);
      d->state = S_LEN_LO;
      return 0;
    case S_LEN_LO:
      d->len = (uint16_t)(d->len | byte);
      if (d->len > TL_FRAME_MAX_PAYLOAD) {
        drop(d, byte);
        return 0;
      }
      d->pos = 0;
      d->state = d->len ? S_PAYLOAD : S_CRC_HI;
      return 0;
    case S_PAYLOAD:
      d->payload[d->pos++] = byte;
      if (d->pos == d->len) d->state = S_CRC_HI;
      return 0;
    case S_CRC_HI:
      d->crc_rx = (uint16_t)((uint16_t)byte << 8);
      d->state = S_CRC_LO;
      return 0;
    case S_CRC_LO:
      d->crc_rx = (uint16_t)(d->crc_rx | byte);
      d->state = S_END;
      return 0;
    default: /* S_END */
      if (byte != TL_FRAME_FLAG) {
        drop(d, byte);
        return 0;
      }
      hdr[0] = d->kind;
      hdr[1] = (uint8_t)(d->len >> 8);
      hdr[2] = (uint8_t)(d->len & 0xFFu);
      crc = tl_crc16(hdr, 3, 0xFFFFu);
      crc = tl_crc16(d->payload, d->len, crc);
      d->state = S_HUNT;
      if (crc != d->crc_rx) {
        d->frames_bad++;
        return 0;
      }
      d->frames_ok++;
      return 1;
  }
}
