/*
 * libFuzzer harness for the MQTT packet decoder (tl_mqtt_parse) and the remaining-length codec.
 * Build: clang -fsanitize=fuzzer,address,undefined (firmware/Makefile `make fuzz`). With
 * -DTL_STANDALONE it is instead a tool that parses stdin once and prints the result, which the
 * deterministic malformed-packet tests use.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tl_mqtt.h"

static int check(const uint8_t *data, size_t n, tl_mqtt_packet *p) {
  int rc = tl_mqtt_parse(data, n, p);
  if (rc > 0) {
    if ((size_t)rc > n) abort(); /* consumed more than given */
    if (p->type == TL_MQTT_PUBLISH) {
      /* every pointer must stay inside the packet */
      if (p->topic < data || p->topic + p->topic_len > data + rc) abort();
      if (p->payload < data || p->payload + p->payload_len > data + rc) abort();
    }
  }
  if (n >= 1) { /* remaining-length round trip */
    uint32_t v;
    size_t used;
    uint8_t enc[4];
    if (tl_mqtt_decode_remaining_length(data, n, &v, &used) == 1) {
      int k = tl_mqtt_encode_remaining_length(v, enc);
      uint32_t v2;
      size_t used2;
      if (k < 1 || tl_mqtt_decode_remaining_length(enc, (size_t)k, &v2, &used2) != 1 || v2 != v) abort();
    }
  }
  return rc;
}

#ifndef TL_STANDALONE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  tl_mqtt_packet p;
  check(data, n, &p);
  return 0;
}
#else
int main(void) {
  static uint8_t buf[1 << 16];
  tl_mqtt_packet p;
  size_t n = fread(buf, 1, sizeof buf, stdin);
  int rc = check(buf, n, &p);
  if (rc > 0)
    printf("rc=%d type=%d remaining=%lu return_code=%d packet_id=%d qos=%d topic_len=%d payload_len=%lu\n", rc,
           p.type, (unsigned long)p.remaining, p.return_code, p.packet_id, p.qos, p.topic_len,
           (unsigned long)p.payload_len);
  else
    printf("rc=%d\n", rc);
  return 0;
}
#endif
