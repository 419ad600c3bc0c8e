/* TinyLarge MQTT 3.1.1 client (see tl_mqtt.h). Section numbers refer to the OASIS MQTT 3.1.1 spec. */
#include "tl_mqtt.h"

#include <string.h>

/* ---- codec ------------------------------------------------------------ */

int tl_mqtt_encode_remaining_length(uint32_t value, uint8_t out[4]) {
  int n = 0;
  if (value > 268435455u) return TL_MQTT_E_OVERSIZE; /* 2.2.3: at most four bytes */
  do {
    uint8_t b = (uint8_t)(value % 128u);
    value /= 128u;
    if (value) b |= 0x80u;
    out[n++] = b;
  } while (value);
  return n;
}

int tl_mqtt_decode_remaining_length(const uint8_t *buf, size_t n, uint32_t *value, size_t *used) {
  uint32_t v = 0, mul = 1;
  size_t i;
  for (i = 0; i < 4; i++) {
    if (i >= n) return 0;
    v += (uint32_t)(buf[i] & 0x7Fu) * mul;
    if (!(buf[i] & 0x80u)) {
      *value = v;
      *used = i + 1;
      return 1;
    }
    mul *= 128u;
  }
  return TL_MQTT_E_MALFORMED;
}

typedef struct {
  uint8_t *buf;
  size_t cap, len;
  int error;
} wbuf;

static void w_u8(wbuf *w, uint8_t b) {
  if (w->len >= w->cap) {
    w->error = 1;
    return;
  }
  w->buf[w->len++] = b;
}

static void w_u16(wbuf *w, uint16_t v) {
  w_u8(w, (uint8_t)(v >> 8));
  w_u8(w, (uint8_t)(v & 0xFFu));
}

static void w_bytes(wbuf *w, const uint8_t *p, size_t n) {
  if (n > w->cap - w->len || w->len > w->cap) {
    w->error = 1;
    return;
  }
  if (n) memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void w_str(wbuf *w, const char *s) { /* 1.5.3 UTF-8 string: 2-byte length prefix */
  size_t n = strlen(s);
  if (n > 65535u) {
    w->error = 1;
    return;
  }
  w_u16(w, (uint16_t)n);
  w_bytes(w, (const uint8_t *)s, n);
}

/* Write the fixed header for a body of `body` bytes; returns 0 or an error. */
static int w_header(wbuf *w, uint8_t first, size_t body) {
  uint8_t rl[4];
  int n;
  if (body + 5 > TL_MQTT_MAX_PACKET) return TL_MQTT_E_OVERSIZE;
  n = tl_mqtt_encode_remaining_length((uint32_t)body, rl);
  if (n < 0) return n;
  w_u8(w, first);
  w_bytes(w, rl, (size_t)n);
  return w->error ? TL_MQTT_E_OVERSIZE : 0;
}

static int w_done(const wbuf *w) { return w->error ? TL_MQTT_E_OVERSIZE : (int)w->len; }

int tl_mqtt_build_connect(uint8_t *buf, size_t cap, const tl_mqtt_connect_opts *o) {
  wbuf w = {buf, cap, 0, 0};
  size_t body;
  uint8_t flags = 0;
  int rc;
  if (!o || !o->client_id) return TL_MQTT_E_ARG;
  if (o->password && !o->username) return TL_MQTT_E_ARG; /* 3.1.2.9 */
  if (o->will_topic && (o->will_qos < 0 || o->will_qos > 2 || o->will_len > 65535u)) return TL_MQTT_E_ARG;
  body = 10 + 2 + strlen(o->client_id);
  if (o->clean_session) flags |= 0x02;
  if (o->will_topic) {
    flags |= 0x04 | (uint8_t)(o->will_qos << 3) | (o->will_retain ? 0x20 : 0);
    body += 2 + strlen(o->will_topic) + 2 + o->will_len;
  }
  if (o->username) {
    flags |= 0x80;
    body += 2 + strlen(o->username);
  }
  if (o->password) {
    flags |= 0x40;
    body += 2 + strlen(o->password);
  }
  rc = w_header(&w, TL_MQTT_CONNECT << 4, body);
  if (rc) return rc;
  w_str(&w, "MQTT"); /* 3.1.2.1 protocol name */
  w_u8(&w, 4);       /* 3.1.2.2 protocol level 4 = 3.1.1 */
  w_u8(&w, flags);
  w_u16(&w, o->keepalive_s);
  w_str(&w, o->client_id);
  if (o->will_topic) {
    w_str(&w, o->will_topic);
    w_u16(&w, (uint16_t)o->will_len);
    w_bytes(&w, o->will_payload, o->will_len);
  }
  if (o->username) w_str(&w, o->username);
  if (o->password) w_str(&w, o->password);
  return w_done(&w);
}

int tl_mqtt_build_publish(uint8_t *buf, size_t cap, const char *topic, const uint8_t *payload, size_t n,
                          int qos, int retain, int dup, uint16_t packet_id) {
  wbuf w = {buf, cap, 0, 0};
  size_t body;
  int rc;
  if (!topic || !*topic || qos < 0 || qos > 1 || (qos && !packet_id)) return TL_MQTT_E_ARG;
  body = 2 + strlen(topic) + (qos ? 2u : 0u) + n;
  rc = w_header(&w, (uint8_t)((TL_MQTT_PUBLISH << 4) | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0)),
                body);
  if (rc) return rc;
  w_str(&w, topic);
  if (qos) w_u16(&w, packet_id);
  w_bytes(&w, payload, n);
  return w_done(&w);
}

int tl_mqtt_build_puback(uint8_t *buf, size_t cap, uint16_t packet_id) {
  wbuf w = {buf, cap, 0, 0};
  w_u8(&w, TL_MQTT_PUBACK << 4);
  w_u8(&w, 2);
  w_u16(&w, packet_id);
  return w_done(&w);
}

int tl_mqtt_build_pingreq(uint8_t *buf, size_t cap) {
  wbuf w = {buf, cap, 0, 0};
  w_u8(&w, TL_MQTT_PINGREQ << 4);
  w_u8(&w, 0);
  return w_done(&w);
}

int tl_mqtt_build_disconnect(uint8_t *buf, size_t cap) {
  wbuf w = {buf, cap, 0, 0};
  w_u8(&w, TL_MQTT_DISCONNECT << 4);
  w_u8(&w, 0);
  return w_done(&w);
}

int tl_mqtt_parse(const uint8_t *buf, size_t n, tl_mqtt_packet *p) {
  uint32_t rem;
  size_t used, total;
  const uint8_t *body;
  int rc;
  if (n < 2) return 0;
  rc = tl_mqtt_decode_remaining_length(buf + 1, n - 1, &rem, &used);
  if (rc <= 0) return rc;
  total = 1 + used + (size_t)rem;
  if (total > TL_MQTT_MAX_PACKET) return TL_MQTT_E_OVERSIZE;
  if (n < total) return 0;
  memset(p, 0, sizeof(*p));
  p->type = (uint8_t)(buf[0] >> 4);
  p->flags = (uint8_t)(buf[0] & 0x0Fu);
  p->remaining = rem;
  body = buf + 1 + used;
  switch (p->type) {
    case TL_MQTT_CONNACK: /* 3.2: flags 0, length 2, ack flags bits 7-1 reserved, codes 0..5 */
      if (p->flags || rem != 2 || (body[0] & 0xFEu) || body[1] > 5) return TL_MQTT_E_MALFORMED;
      p->session_present = body[0];
      p->return_code = body[1];
      break;
    case TL_MQTT_PUBACK: /* 3.4 */
      if (p->flags || rem != 2) return TL_MQTT_E_MALFORMED;
      p->packet_id = (uint16_t)((body[0] << 8) | body[1]);
      break;
    case TL_MQTT_SUBACK: /* 3.9 */
      if (p->flags || rem < 3) return TL_MQTT_E_MALFORMED;
      p->packet_id = (uint16_t)((body[0] << 8) | body[1]);
      break;
    case TL_MQTT_PINGRESP: /* 3.13 */
      if (p->flags || rem != 0) return TL_MQTT_E_MALFORMED;
      break;
    case TL_MQTT_PUBLISH: { /* 3.3 */
      size_t off;
      p->dup = (uint8_t)((p->flags >> 3) & 1u);
      p->qos = (uint8_t)((p->flags >> 1) & 3u);
      p->retain = (uint8_t)(p->flags & 1u);
      if (p->qos == 3 || rem < 2) return TL_MQTT_E_MALFORMED;
      p->topic_len = (uint16_t)((body[0] << 8) | body[1]);
      if (p->topic_len == 0) return TL_MQTT_E_MALFORMED;
      off = 2u + p->topic_len;
      if (p->qos) off += 2;
      if (off > rem) return TL_MQTT_E_MALFORMED;
      p->topic = body + 2;
      if (p->qos) {
        p->packet_id = (uint16_t)((body[2 + p->topic_len] << 8) | body[3 + p->topic_len]);
        if (!p->packet_id) return TL_MQTT_E_MALFORMED;
      }
      p->payload = body + off;
      p->payload_len = (uint32_t)(rem - off);
      break;
    }
    default:
      return TL_MQTT_E_PROTOCOL; /* not a packet a server sends to a client */
  }
  return (int)total;
}

/* ---- client ----------------------------------------------------------- */

void tl_mqtt_init(tl_mqtt_client *c, const tl_mqtt_io *io) {
  memset(c, 0, sizeof(*c));
  c->io = *io;
  c->retry_ms = 2000;
  c->max_retries = 5;
  c->next_id = 1;
}

static int send_all(tl_mqtt_client *c, const uint8_t *buf, int n) {
  if (n < 0) return n;
  if (c->io.send(c->io.ctx, buf, (size_t)n) != n) {
    c->connected = 0;
    return TL_MQTT_E_IO;
  }
  c->last_tx_ms = c->io.now_ms(c->io.ctx);
  return TL_MQTT_OK;
}

/* Handle a packet that needs no caller: PUBLISH from the server, PINGRESP. */
static int handle_async(tl_mqtt_client *c, const tl_mqtt_packet *p) {
  uint8_t ack[4];
  if (p->type == TL_MQTT_PINGRESP) {
    c->ping_outstanding = 0;
    c->n_pingresp++;
  } else if (p->type == TL_MQTT_PUBLISH) {
    if (c->on_message) c->on_message(c->user, p);
    if (p->qos == 1) return send_all(c, ack, tl_mqtt_build_puback(ack, sizeof ack, p->packet_id));
  }
  return TL_MQTT_OK;
}

/* Read until a packet of `type` (and `id` for PUBACK) arrives or timeout_ms passes. */
static int wait_for(tl_mqtt_client *c, uint8_t type, uint16_t id, uint32_t timeout_ms, tl_mqtt_packet *out) {
  uint32_t start = c->io.now_ms(c->io.ctx);
  for (;;) {
    tl_mqtt_packet p;
    int rc = tl_mqtt_parse(c->rx, c->rx_len, &p);
    if (rc < 0) {
      c->connected = 0;
      return rc;
    }
    if (rc > 0) {
      int match = (p.type == type) && (type != TL_MQTT_PUBACK || p.packet_id == id);
      int hrc = TL_MQTT_OK;
      if (match && out) *out = p; /* CONNACK has no pointers into rx */
      if (!match) hrc = handle_async(c, &p);
      memmove(c->rx, c->rx + rc, c->rx_len - (size_t)rc);
      c->rx_len -= (size_t)rc;
      if (hrc) return hrc;
      if (match) return TL_MQTT_OK;
      continue;
    }
    {
      uint32_t elapsed = c->io.now_ms(c->io.ctx) - start;
      int got;
      if (c->rx_len >= sizeof c->rx) return TL_MQTT_E_OVERSIZE;
      if (elapsed >= timeout_ms) return TL_MQTT_E_TIMEOUT;
      got = c->io.recv(c->io.ctx, c->rx + c->rx_len, sizeof c->rx - c->rx_len, timeout_ms - elapsed);
      if (got < 0) {
        c->connected = 0;
        return TL_MQTT_E_IO;
      }
      c->rx_len += (size_t)got;
    }
  }
}

int tl_mqtt_connect(tl_mqtt_client *c, const tl_mqtt_connect_opts *o, uint32_t timeout_ms) {
  tl_mqtt_packet p;
  int rc = send_all(c, c->tx, tl_mqtt_build_connect(c->tx, sizeof c->tx, o));
  if (rc) return rc;
  c->keepalive_s = o->keepalive_s;
  rc = wait_for(c, TL_MQTT_CONNACK, 0, timeout_ms, &p);
  if (rc) return rc;
  c->connack_code = p.return_code;
  if (p.return_code != 0) return TL_MQTT_E_REFUSED;
  c->connected = 1;
  c->ping_outstanding = 0;
  return TL_MQTT_OK;
}

int tl_mqtt_publish(tl_mqtt_client *c, const char *topic, const uint8_t *payload, size_t n, int qos,
                    int retain) {
  uint16_t id = 0;
  int len, rc, attempt;
  if (!c->connected) return TL_MQTT_E_IO;
  if (qos) {
    id = c->next_id++;
    if (c->next_id == 0) c->next_id = 1;
  }
  len = tl_mqtt_build_publish(c->tx, sizeof c->tx, topic, payload, n, qos, retain, 0, id);
  rc = send_all(c, c->tx, len);
  if (rc) return rc;
  c->n_published++;
  if (!qos) return TL_MQTT_OK;
  for (attempt = 0;; attempt++) {
    rc = wait_for(c, TL_MQTT_PUBACK, id, c->retry_ms, 0);
    if (rc == TL_MQTT_OK) {
      c->n_acked++;
      return TL_MQTT_OK;
    }
    if (rc != TL_MQTT_E_TIMEOUT || attempt >= c->max_retries) return rc;
    c->tx[0] |= 0x08; /* 3.3.1.1: DUP=1 on a re-delivery */
    c->n_retransmits++;
    rc = send_all(c, c->tx, len);
    if (rc) return rc;
  }
}

int tl_mqtt_poll(tl_mqtt_client *c, uint32_t timeout_ms) {
  uint32_t start = c->io.now_ms(c->io.ctx);
  if (!c->connected) return TL_MQTT_E_IO;
  for (;;) {
    uint32_t now = c->io.now_ms(c->io.ctx);
    uint32_t elapsed = now - start, wait;
    int rc;
    if (c->keepalive_s) {
      uint32_t ka_ms = (uint32_t)c->keepalive_s * 1000u;
      uint32_t idle = now - c->last_tx_ms;
      if (c->ping_outstanding && idle >= ka_ms) { /* 3.1.2.10: no PINGRESP within a keepalive */
        c->connected = 0;
        return TL_MQTT_E_TIMEOUT;
      }
      if (!c->ping_outstanding && idle >= ka_ms * 3u / 4u) {
        uint8_t ping[2];
        rc = send_all(c, ping, tl_mqtt_build_pingreq(ping, sizeof ping));
        if (rc) return rc;
        c->ping_outstanding = 1;
        c->n_pingreq++;
      }
    }
    if (elapsed >= timeout_ms) return TL_MQTT_OK;
    wait = timeout_ms - elapsed;
    if (wait > 100u) wait = 100u; /* wake up to check the keepalive */
    rc = wait_for(c, 0xFF, 0, wait, 0);     /* type 0xFF never matches: handles async packets */
    if (rc != TL_MQTT_E_TIMEOUT && rc != TL_MQTT_OK) return rc;
  }
}

int tl_mqtt_disconnect(tl_mqtt_client *c) {
  uint8_t d[2];
  int rc;
  if (!c->connected) return TL_MQTT_E_IO;
  rc = send_all(c, d, tl_mqtt_build_disconnect(d, sizeof d));
  c->connected = 0;
  return rc;
}
