/*
 * Host target (Linux/macOS, gcc or clang): the TinyLarge HAL over POSIX.
 *
 * Options taken from argv (others are left to the app):
 *   --input PATH       tlsensor text file (see hal/tl_sensor_text.h); "-" = stdin (default)
 *   --mqtt URL         mqtt://[user:pass@]host[:port]: publish straight to a broker (MQTT 3.1.1,
 *                      QoS 1 for inference, retained status, last will = retained status offline).
 *                      Without it, messages leave as frames (net/tl_frame.h) on stdout.
 *   --client-id ID     MQTT client id (default: the device id)
 *   --keepalive-s N    MQTT keepalive (default 60)
 *   --retry-ms N       QoS 1 re-send interval (default 2000)
 * Logs go to stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tl_hal.h"
#include "tl_mqtt.h"
#include "tl_sensor_text.h"

static FILE *input;
static int sock = -1;
static tl_mqtt_client mqtt;
static char topic_prefix[160];
static char will_topic[192];

static const char *opt(int argc, char **argv, const char *key, const char *dflt) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], key) == 0) return argv[i + 1];
  return dflt;
}

static uint32_t mono_ms(void *ctx) {
  struct timespec ts;
  (void)ctx;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static int sock_send(void *ctx, const uint8_t *buf, size_t n) {
  size_t off = 0;
  (void)ctx;
  while (off < n) {
    ssize_t k = send(sock, buf + off, n - off, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    off += (size_t)k;
  }
  return (int)n;
}

static int sock_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms) {
  struct pollfd p;
  ssize_t k;
  int rc;
  (void)ctx;
  p.fd = sock;
  p.events = POLLIN;
  rc = poll(&p, 1, (int)timeout_ms);
  if (rc == 0 || (rc < 0 && errno == EINTR)) return 0;
  if (rc < 0) return -1;
  k = recv(sock, buf, cap, 0);
  return k > 0 ? (int)k : -1; /* 0 = peer closed */
}

/* mqtt://[user:pass@]host[:port] -> parts (in place). */
static int parse_url(char *url, char **user, char **pass, char **host, char **port) {
  char *at, *colon;
  if (strncmp(url, "mqtt://", 7) != 0) return -1;
  url += 7;
  *user = *pass = 0;
  at = strrchr(url, '@');
  if (at) {
    *at = '\0';
    *user = url;
    colon = strchr(url, ':');
    if (colon) {
      *colon = '\0';
      *pass = colon + 1;
    }
    url = at + 1;
  }
  *host = url;
  *port = "1883";
  colon = strrchr(url, ':');
  if (colon) {
    *colon = '\0';
    *port = colon + 1;
  }
  if ((*port)[strlen(*port) - 1] == '/') (*port)[strlen(*port) - 1] = '\0';
  return **host ? 0 : -1;
}

static int tcp_connect(const char *host, const char *port) {
  struct addrinfo hints, *res, *ai;
  int fd = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static int mqtt_start(const tl_identity *id, int argc, char **argv, const char *url_arg) {
  static char url[512];
  char *user, *pass, *host, *port;
  tl_mqtt_io io;
  tl_mqtt_connect_opts o;
  int rc;
  if (strlen(url_arg) >= sizeof url) return -1;
  strcpy(url, url_arg);
  if (parse_url(url, &user, &pass, &host, &port) != 0) {
    fprintf(stderr, "host: --mqtt: expected mqtt://[user:pass@]host[:port], got %s\n", url_arg);
    return -1;
  }
  sock = tcp_connect(host, port);
  if (sock < 0) {
    fprintf(stderr, "host: cannot connect to %s:%s\n", host, port);
    return -1;
  }
  io.ctx = 0;
  io.send = sock_send;
  io.recv = sock_recv;
  io.now_ms = mono_ms;
  tl_mqtt_init(&mqtt, &io);
  mqtt.retry_ms = (uint32_t)atol(opt(argc, argv, "--retry-ms", "2000"));
  snprintf(topic_prefix, sizeof topic_prefix, "tinylarge/%s/%s/", id->domain, id->device);
  snprintf(will_topic, sizeof will_topic, "%sstatus", topic_prefix);
  memset(&o, 0, sizeof o);
  o.client_id = opt(argc, argv, "--client-id", id->device);
  o.keepalive_s = (uint16_t)atoi(opt(argc, argv, "--keepalive-s", "60"));
  o.clean_session = 1;
  o.username = user;
  o.password = pass;
  o.will_topic = will_topic;
  o.will_payload = (const uint8_t *)id->offline_status;
  o.will_len = id->offline_status_len;
  o.will_qos = 1;
  o.will_retain = 1;
  rc = tl_mqtt_connect(&mqtt, &o, 10000);
  if (rc != TL_MQTT_OK) {
    fprintf(stderr, "host: MQTT connect failed (%d, CONNACK code %d)\n", rc, mqtt.connack_code);
    return -1;
  }
  fprintf(stderr, "host: connected to %s:%s as %s\n", host, port, o.client_id);
  return 0;
}

int tl_hal_init(const tl_identity *id, int argc, char **argv) {
  const char *path = opt(argc, argv, "--input", "-");
  const char *url = opt(argc, argv, "--mqtt", 0);
  input = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!input) {
    fprintf(stderr, "host: --input: cannot open %s\n", path);
    return TL_HAL_ERROR;
  }
  if (url && mqtt_start(id, argc, argv, url) != 0) return TL_HAL_ERROR;
  return TL_HAL_OK;
}

int tl_hal_sensor_read(const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms) {
  return tl_sensor_text_read(input, set, bufs, end_ts_ms);
}

int64_t tl_hal_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tl_hal_write(const uint8_t *data, size_t n) {
  size_t k = fwrite(data, 1, n, stdout);
  fflush(stdout);
  return (int)k;
}

int tl_hal_net_publish(const char *stream, const char *payload, size_t n, int retained) {
  char topic[256];
  if (sock < 0) return TL_HAL_NO_NET;
  snprintf(topic, sizeof topic, "%s%s", topic_prefix, stream);
  return tl_mqtt_publish(&mqtt, topic, (const uint8_t *)payload, n, 1, retained) == TL_MQTT_OK ? 0 : -1;
}

void tl_hal_idle_ms(uint32_t ms) {
  if (sock >= 0) {
    tl_mqtt_poll(&mqtt, ms);
  } else {
    struct timespec ts;
    ts.tv_sec = ms / 1000u;
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    nanosleep(&ts, 0);
  }
}

void tl_hal_shutdown(void) {
  if (sock >= 0) {
    fprintf(stderr, "host: published %u, acked %u, retransmits %u, pingreq %u, pingresp %u\n",
            (unsigned)mqtt.n_published, (unsigned)mqtt.n_acked, (unsigned)mqtt.n_retransmits,
            (unsigned)mqtt.n_pingreq, (unsigned)mqtt.n_pingresp);
    tl_mqtt_disconnect(&mqtt);
    close(sock);
    sock = -1;
  }
  if (input && input != stdin) fclose(input);
}

void tl_hal_log(const char *line) { fprintf(stderr, "%s\n", line); }
