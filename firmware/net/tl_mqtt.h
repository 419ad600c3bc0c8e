/*
 * TinyLarge MQTT 3.1.1 client for devices: packet codec plus a small blocking client.
 *
 * The codec (tl_mqtt_build_*, tl_mqtt_parse) is pure: bytes in, bytes out, no I/O, so it can be
 * unit-tested and fuzzed alone. The client drives it over a transport given as three callbacks
 * (send, recv with timeout, clock), so the same code runs over POSIX sockets on the host or over a
 * modem/Wi-Fi driver on a board. Supported: CONNECT (client id, clean session, keepalive, optional
 * user/password, last will with QoS and retain), PUBLISH QoS 0 and 1 (one message in flight; a
 * QoS 1 message is re-sent with DUP=1 every retry_ms until its PUBACK arrives, up to max_retries),
 * PINGREQ when the link has been quiet for 3/4 of the keepalive, incoming PUBLISH QoS 0/1 (acked,
 * handed to a callback), DISCONNECT. Packets longer than TL_MQTT_MAX_PACKET are refused.
 */
#ifndef TL_MQTT_H
#define TL_MQTT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef TL_MQTT_MAX_PACKET
#define TL_MQTT_MAX_PACKET 4096
#endif

enum {
  TL_MQTT_CONNECT = 1, TL_MQTT_CONNACK = 2, TL_MQTT_PUBLISH = 3, TL_MQTT_PUBACK = 4,
  TL_MQTT_SUBSCRIBE = 8, TL_MQTT_SUBACK = 9, TL_MQTT_PINGREQ = 12, TL_MQTT_PINGRESP = 13,
  TL_MQTT_DISCONNECT = 14
};

/* Error codes (negative) returned by the parser and the client. */
enum {
  TL_MQTT_OK = 0,
  TL_MQTT_E_MALFORMED = -1,    /* bad remaining length, bad flags, bad lengths inside */
  TL_MQTT_E_OVERSIZE = -2,     /* packet larger than TL_MQTT_MAX_PACKET or the buffer */
  TL_MQTT_E_IO = -3,           /* transport failed or closed */
  TL_MQTT_E_TIMEOUT = -4,      /* no CONNACK / PUBACK in time */
  TL_MQTT_E_REFUSED = -5,      /* CONNACK return code != 0 (see client.connack_code) */
  TL_MQTT_E_PROTOCOL = -6,     /* unexpected packet for the state */
  TL_MQTT_E_ARG = -7
};

/* Remaining length: 1..4 bytes, 7 bits each, continuation bit 0x80. */
int tl_mqtt_encode_remaining_length(uint32_t value, uint8_t out[4]);
/* 1: decoded (value, *used set); 0: need more bytes; TL_MQTT_E_MALFORMED: a 5th length byte. */
int tl_mqtt_decode_remaining_length(const uint8_t *buf, size_t n, uint32_t *value, size_t *used);

typedef struct {
  const char *client_id;
  uint16_t keepalive_s;
  int clean_session;
  const char *username;   /* NULL: none */
  const char *password;   /* NULL: none */
  const char *will_topic; /* NULL: no will */
  const uint8_t *will_payload;
  size_t will_len;
  int will_qos;
  int will_retain;
} tl_mqtt_connect_opts;

int tl_mqtt_build_connect(uint8_t *buf, size_t cap, const tl_mqtt_connect_opts *o);
int tl_mqtt_build_publish(uint8_t *buf, size_t cap, const char *topic, const uint8_t *payload, size_t n,
                          int qos, int retain, int dup, uint16_t packet_id);
int tl_mqtt_build_puback(uint8_t *buf, size_t cap, uint16_t packet_id);
int tl_mqtt_build_pingreq(uint8_t *buf, size_t cap);
int tl_mqtt_build_disconnect(uint8_t *buf, size_t cap);

typedef struct {
  uint8_t type, flags;
  uint32_t remaining;
  /* CONNACK */
  uint8_t session_present, return_code;
  /* PUBACK / PUBLISH (qos 1) */
  uint16_t packet_id;
  /* PUBLISH: pointers into the parsed buffer */
  const uint8_t *topic;
  uint16_t topic_len;
  const uint8_t *payload;
  uint32_t payload_len;
  uint8_t qos, retain, dup;
} tl_mqtt_packet;

/* Parse one server->client packet from buf[0..n). Returns bytes consumed (>0), 0 if more bytes are
 * needed, or a negative error. Only packets a client may receive are accepted. */
int tl_mqtt_parse(const uint8_t *buf, size_t n, tl_mqtt_packet *p);

typedef struct {
  void *ctx;
  int (*send)(void *ctx, const uint8_t *buf, size_t n);                       /* n, or <0 */
  int (*recv)(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms);     /* >0, 0 timeout, <0 */
  uint32_t (*now_ms)(void *ctx);
} tl_mqtt_io;

typedef void (*tl_mqtt_on_message)(void *user, const tl_mqtt_packet *p);

typedef struct {
  tl_mqtt_io io;
  tl_mqtt_on_message on_message;
  void *user;
  uint32_t retry_ms;        /* QoS 1 re-send interval (default 2000) */
  int max_retries;          /* re-sends before giving up (default 5) */
  uint16_t keepalive_s;
  uint16_t next_id;
  int connected;
  int ping_outstanding;
  uint32_t last_tx_ms;
  uint8_t connack_code;
  /* counters, for the status message and tests */
  uint32_t n_published, n_acked, n_retransmits, n_pingreq, n_pingresp;
  size_t rx_len;
  uint8_t tx[TL_MQTT_MAX_PACKET];
  uint8_t rx[TL_MQTT_MAX_PACKET];
} tl_mqtt_client;

void tl_mqtt_init(tl_mqtt_client *c, const tl_mqtt_io *io);
int tl_mqtt_connect(tl_mqtt_client *c, const tl_mqtt_connect_opts *o, uint32_t timeout_ms);
/* QoS 0: returns after sending. QoS 1: returns TL_MQTT_OK once PUBACK arrived. */
int tl_mqtt_publish(tl_mqtt_client *c, const char *topic, const uint8_t *payload, size_t n, int qos,
                    int retain);
/* Service the link for up to timeout_ms: read packets, answer PUBLISH, send PINGREQ when due. */
int tl_mqtt_poll(tl_mqtt_client *c, uint32_t timeout_ms);
int tl_mqtt_disconnect(tl_mqtt_client *c);

#ifdef __cplusplus
}
#endif

#endif /* TL_MQTT_H */
