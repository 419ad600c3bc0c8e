/*
 * TinyLarge serial framing: how a device without a network stack hands messages to a gateway.
 *
 *   0x7E | kind (1) | length (2, big endian) | payload (length bytes) | crc16 (2, big endian) | 0x7E
 *
 * crc16 is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
 * xor; check value 0x29B1 for "123456789") over kind, length and payload. No byte stuffing: the
 * length field says where the frame ends, the CRC and the closing flag confirm it, and a decoder
 * that meets anything unexpected drops the partial frame and hunts for the next 0x7E. Lengths above
 * TL_FRAME_MAX_PAYLOAD are refused. Kinds:
 *   TL_FRAME_MESSAGE  payload = stream name (ASCII), 0x00, JSON message (UTF-8)
 *   TL_FRAME_LOG      payload = human-readable text (never forwarded)
 */
#ifndef TL_FRAME_H
#define TL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_FRAME_FLAG 0x7E
#define TL_FRAME_MAX_PAYLOAD 4096
#define TL_FRAME_OVERHEAD 7
#define TL_FRAME_MESSAGE 0x01
#define TL_FRAME_LOG 0x02

uint16_t tl_crc16(const uint8_t *data, size_t n, uint16_t crc);

/* Encode one frame into out (capacity out_size); returns its length or -1 if it does not fit. */
int tl_frame_encode(uint8_t kind, const uint8_t *payload, size_t n, uint8_t *out, size_t out_size);

/* Encode a message frame from stream name + JSON; returns length or -1. */
int tl_frame_encode_message(const char *stream, const char *json, size_t json_len, uint8_t *out,
                            size_t out_size);

typedef struct {
  int state;
  uint8_t kind;
  uint16_t len;
  uint16_t pos;
  uint16_t crc_rx;
  uint32_t frames_ok;
  uint32_t frames_bad;   /* CRC mismatch, oversize, missing closing flag */
  uint8_t payload[TL_FRAME_MAX_PAYLOAD];
} tl_frame_decoder;

void tl_frame_decoder_init(tl_frame_decoder *d);
/* Feed one byte; returns 1 when a complete, valid frame is available in d->kind / d->payload /
 * d->len (valid until the next call), 0 otherwise. */
int tl_frame_decoder_push(tl_frame_decoder *d, uint8_t byte);

#ifdef __cplusplus
}
#endif

#endif /* TL_FRAME_H */
