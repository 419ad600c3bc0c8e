/* The generic TinyLarge device loop (see tl_app.h). */
#include "tl_app.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tl_frame.h"

enum { COUNT_WINDOWS, COUNT_PUBLISHED, COUNT_ERRORS, N_COUNTS };
static const char *const count_names[N_COUNTS] = {"windows", "published", "errors"};

static struct {
  const tl_app_spec *spec;
  tl_identity id;
  int64_t seq, status_seq;
  int seq_known; /* 0 until the first seq is provisioned or read from an epoch clock (see boot_seq) */
  uint32_t counts[N_COUNTS];
  long max_windows, interval_ms;
} app;

static char json[TL_APP_JSON_MAX];
static char will[256];
static uint8_t frame[TL_APP_JSON_MAX + 64];

int8_t tl_quantize(float x, float scale, int32_t zero_point) {
  long r = (long)nearbyintf(x / scale) + zero_point; /* half to even, as numpy's round in shared.tiny.int8 */
  return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}

float tl_dequantize(int8_t q, float scale, int32_t zero_point) { return scale * (float)(q - zero_point); }

int tl_model_run(const tl_model *m, const float *input, int8_t *qin, int8_t *qout, float *output) {
  int i, rc;
  for (i = 0; i < m->input_size; i++) qin[i] = tl_quantize(input[i], m->input_scale, m->input_zero_point);
  rc = m->invoke(qin, qout);
  if (rc != 0) return rc;
  for (i = 0; i < m->output_size; i++) output[i] = tl_dequantize(qout[i], m->output_scale, m->output_zero_point);
  return 0;
}

void tl_app_envelope(tl_json_writer *w, const char *device, int64_t seq, int64_t ts_ms, const char *model_id) {
  tl_json_key(w, "v");
  tl_json_int(w, 1);
  tl_json_key(w, "device");
  tl_json_string(w, device);
  tl_json_key(w, "seq");
  tl_json_int(w, seq);
  tl_json_key(w, "ts");
  tl_json_int(w, ts_ms);
  tl_json_key(w, "model");
  tl_json_string(w, model_id);
}

int tl_app_status_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms, const char *model_id,
                       int online, const char *const *names, const uint32_t *counts, int n_counts) {
  tl_json_writer w;
  int i;
  tl_json_init(&w, buf, cap);
  tl_json_begin_object(&w);
  tl_app_envelope(&w, device, seq, ts_ms, model_id);
  tl_json_key(&w, "state");
  tl_json_string(&w, online ? "online" : "offline");
  tl_json_key(&w, "active_model");
  tl_json_string(&w, model_id);
  if (n_counts > 0) {
    tl_json_key(&w, "counts");
    tl_json_begin_object(&w);
    for (i = 0; i < n_counts; i++) {
      tl_json_key(&w, names[i]);
      tl_json_int(&w, counts[i]);
    }
    tl_json_end_object(&w);
  }
  tl_json_end_object(&w);
  return tl_json_finish(&w);
}

static void app_log(const char *what) {
  char line[160];
  snprintf(line, sizeof line, "%s: %s", app.spec ? app.spec->domain : "app", what);
  tl_hal_log(line);
}

/* Publish over the network when the target has one, else as a frame on the serial line. */
static int publish(const char *stream, const char *payload, int n, int retained) {
  int rc, len;
  if (n < 0) return -1;
  rc = tl_hal_net_publish(stream, payload, (size_t)n, retained);
  if (rc != TL_HAL_NO_NET) return rc;
  len = tl_frame_encode_message(stream, payload, (size_t)n, frame, sizeof frame);
  if (len < 0) return -1;
  return tl_hal_write(frame, (size_t)len) == len ? 0 : -1;
}

static const char *opt(int argc, char **argv, const char *key, const char *dflt) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], key) == 0) return argv[i + 1];
  return dflt;
}

static long to_long(const char *s) {
  long v = 0;
  for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (*s - '0');
  return v;
}

/* A non-negative decimal int64 ("0" .. "9007199254740991": JSON's exact integers); -1 if s is not one. */
static int64_t to_seq(const char *s) {
  int64_t v = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (TL_APP_SEQ_MAX - (*s - '0')) / 10) return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

/* The first seq when none is provisioned: the epoch ms of now x TL_APP_SEQ_PER_MS, as
 * shared.protocol.messages.boot_seq, once the clock reads epoch time (else -1: not yet known). */
static int64_t boot_seq(void) {
  int64_t now = tl_hal_now_ms();
  if (now < TL_APP_EPOCH_MIN_MS || now > TL_APP_SEQ_MAX / TL_APP_SEQ_PER_MS) return -1;
  return now * TL_APP_SEQ_PER_MS;
}

static int spec_complete(const tl_app_spec *s) {
  return s && s->domain && s->default_device && s->sensors.channels && s->sensors.n_channels > 0 && s->window &&
         s->input && s->input_size > 0 && s->models && s->n_models > 0 && s->models[0].id && s->dsp &&
         s->infer && s->message;
}

int tl_app_setup(const tl_app_spec *spec, int argc, char **argv) {
  int n;
  memset(&app, 0, sizeof app);
  app.spec = spec;
  if (!spec_complete(spec)) {
    app_log("incomplete tl_app_spec (a field or hook is missing)");
    return 2;
  }
  if (spec->configure && spec->configure(argc, argv) != 0) {
    app_log("invalid device configuration (see the domain's options)");
    return 2;
  }
  app.id.domain = spec->domain;
  app.id.device = opt(argc, argv, "--device", spec->default_device);
  app.id.model_id = spec->models[0].id;
  app.max_windows = to_long(opt(argc, argv, "--max-windows", "0"));
  app.interval_ms = to_long(opt(argc, argv, "--interval-ms", "0"));
  if (opt(argc, argv, "--seq-start", 0)) {
    app.seq = to_seq(opt(argc, argv, "--seq-start", 0));
    if (app.seq < 0) {
      app_log("--seq-start: expected an integer from 0 to 9007199254740991");
      return 2;
    }
  } else {
    app.seq = boot_seq();
  }
  app.seq_known = app.seq >= 0;
  if (!app.seq_known) app.seq = 0;
  app.status_seq = app.seq; /* the status stream counts from the same start */
  n = tl_app_status_json(will, sizeof will, app.id.device, app.status_seq, tl_hal_now_ms(), app.id.model_id, 0, 0, 0, 0);
  app.id.offline_status = will;
  app.id.offline_status_len = n > 0 ? (size_t)n : 0;
  if (tl_hal_init(&app.id, argc, argv) != TL_HAL_OK) {
    app_log("target init failed");
    return 2;
  }
  n = tl_app_status_json(json, sizeof json, app.id.device, app.status_seq++, tl_hal_now_ms(), app.id.model_id, 1,
                         0, 0, 0);
  if (publish("status", json, n, 1) != 0) app_log("status publish failed");
  return 0;
}

int tl_app_loop(void) {
  const tl_app_spec *s = app.spec;
  tl_json_writer w;
  int64_t ts_ms;
  int rc, n;
  if (app.max_windows != 0 && (long)app.counts[COUNT_WINDOWS] >= app.max_windows) return TL_APP_DONE;
  rc = tl_hal_sensor_read(&s->sensors, s->window, &ts_ms);
  if (rc == TL_HAL_END) return TL_APP_DONE;
  if (rc != TL_HAL_OK) {
    app_log("sensor read failed");
    app.counts[COUNT_ERRORS]++;
    return TL_APP_DONE;
  }
  if (ts_ms < 0) ts_ms = tl_hal_now_ms();
  if (!app.seq_known) { /* e.g. a board that learns the epoch from its first window */
    int64_t first = boot_seq();
    app.seq_known = 1;
    if (first >= 0) app.seq = first;
    else app_log("clock not set: seq counts from 0, which repeats after a reset (provision --seq-start)");
  }
  rc = s->dsp(s->window, s->scratch, s->input);
  if (rc == TL_APP_PENDING) return TL_APP_CONTINUE; /* a streaming app's block: its window goes on */
  if (rc != 0) {
    app_log("dsp failed");
    app.counts[COUNT_ERRORS]++;
    return TL_APP_CONTINUE;
  }
  if (s->infer(s->models, s->input) != 0) {
    app_log("model invoke failed");
    app.counts[COUNT_ERRORS]++;
    return TL_APP_CONTINUE;
  }
  tl_json_init(&w, json, sizeof json);
  tl_json_begin_object(&w);
  tl_app_envelope(&w, app.id.device, app.seq, ts_ms, app.id.model_id);
  rc = s->message(&w);
  tl_json_end_object(&w);
  n = tl_json_finish(&w);
  if (rc != 0) n = -1; /* not published: counted as an error below */
  app.counts[COUNT_WINDOWS]++;
  if (publish("inference", json, n, 0) == 0) {
    app.counts[COUNT_PUBLISHED]++;
    app.seq++;
  } else {
    app_log("inference publish failed");
    app.counts[COUNT_ERRORS]++;
  }
  if (app.interval_ms > 0) tl_hal_idle_ms((uint32_t)app.interval_ms);
  return TL_APP_CONTINUE;
}

int tl_app_teardown(void) {
  int n = tl_app_status_json(json, sizeof json, app.id.device, app.status_seq++, tl_hal_now_ms(), app.id.model_id,
                             0, count_names, app.counts, N_COUNTS);
  if (publish("status", json, n, 1) != 0) app_log("status publish failed");
  tl_hal_shutdown();
  return app.counts[COUNT_ERRORS] ? 1 : 0;
}

int tl_app_main(int argc, char **argv) {
  int rc = tl_app_setup(&tl_app_domain, argc, argv);
  if (rc != 0) return rc;
  while (tl_app_loop() == TL_APP_CONTINUE) {
  }
  return tl_app_teardown();
}
