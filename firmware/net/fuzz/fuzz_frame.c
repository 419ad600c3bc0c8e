/*
 * libFuzzer harness for the frame decoder: arbitrary bytes must never crash it, every frame it
 * returns must re-encode to a frame whose CRC checks, and encode -> decode must round-trip.
 * -DTL_STANDALONE: decode stdin and print "kind len payload" per frame plus the bad count.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tl_frame.h"

static tl_frame_decoder dec;

#ifndef TL_STANDALONE
static uint8_t enc[TL_FRAME_MAX_PAYLOAD + TL_FRAME_OVERHEAD];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  size_t i;
  int len;
  tl_frame_decoder_init(&dec);
  for (i = 0; i < n; i++) {
    if (tl_frame_decoder_push(&dec, data[i])) {
      if (dec.len > TL_FRAME_MAX_PAYLOAD) abort();
      if (tl_frame_encode(dec.kind, dec.payload, dec.len, enc, sizeof enc) != (int)dec.len + TL_FRAME_OVERHEAD)
        abort();
    }
  }
  /* round trip of the input itself as a payload */
  len = tl_frame_encode(0x01, data, n, enc, sizeof enc);
  if (n <= TL_FRAME_MAX_PAYLOAD) {
    int got = 0;
    if (len != (int)n + TL_FRAME_OVERHEAD) abort();
    tl_frame_decoder_init(&dec);
    for (i = 0; i < (size_t)len; i++) got += tl_frame_decoder_push(&dec, enc[i]);
    if (got != 1 || dec.len != n || (n && memcmp(dec.payload, data, n) != 0)) abort();
  } else if (len != -1) {
    abort();
  }
  return 0;
}
#else
int main(void) {
  int c;
  tl_frame_decoder_init(&dec);
  while ((c = getchar()) != EOF) {
    if (tl_frame_decoder_push(&dec, (uint8_t)c)) {
      printf("frame kind=%d len=%u payload=", dec.kind, dec.len);
      fwrite(dec.payload, 1, dec.len, stdout);
      printf("\n");
    }
  }
  printf("ok=%lu bad=%lu\n", (unsigned long)dec.frames_ok, (unsigned long)dec.frames_bad);
  return 0;
}
#endif
