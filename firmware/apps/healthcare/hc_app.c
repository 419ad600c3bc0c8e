/* The healthcare firmware app (see hc_app.h). */
#include "hc_app.h"

#include <math.h>
#include <string.h>

#include "tl_frame.h"
#include "tl_hal.h"
#include "tl_json.h"

#ifdef TL_MODEL_HEADER
#include TL_MODEL_HEADER
#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)
#define MODEL_INPUT_SIZE TL_CAT(TL_MODEL_UPPER, _INPUT_SIZE)
#define MODEL_OUTPUT_SIZE TL_CAT(TL_MODEL_UPPER, _OUTPUT_SIZE)
#define MODEL_INPUT_SCALE TL_CAT(TL_MODEL_UPPER, _INPUT_SCALE)
#define MODEL_INPUT_ZERO_POINT TL_CAT(TL_MODEL_UPPER, _INPUT_ZERO_POINT)
#define MODEL_OUTPUT_SCALE TL_CAT(TL_MODEL_UPPER, _OUTPUT_SCALE)
#define MODEL_OUTPUT_ZERO_POINT TL_CAT(TL_MODEL_UPPER, _OUTPUT_ZERO_POINT)
#define MODEL_INVOKE TL_CAT(TL_MODEL_NAME, _invoke)
#else
#error "define TL_MODEL_HEADER, TL_MODEL_NAME and TL_MODEL_UPPER (a model compiled by shared.tiny.compiler)"
#endif

#ifndef TL_MODEL_ID
#define TL_MODEL_ID "healthcare-tiny@1"
#endif

#if MODEL_INPUT_SIZE != HC_N_FEATURES
#error "the model input must be the HC_N_FEATURES feature vector"
#endif
#if MODEL_OUTPUT_SIZE != HC_N_LABELS
#error "the model output must have one score per healthcare label"
#endif

const char *const hc_labels[HC_N_LABELS] = {"normal", "tachycardia", "bradycardia",
                                            "desaturation", "irregular", "unreliable"};

/* The sensors of the wrist device, as data. */
enum { CH_RED, CH_IR, CH_AX, CH_AY, CH_AZ, CH_TEMP, N_CH };
static const tl_channel hc_channels[N_CH] = {
    {"ppg_red", "counts", (float)HC_FS_HZ, 1.0f}, {"ppg_ir", "counts", (float)HC_FS_HZ, 1.0f},
    {"acc_x", "g", (float)HC_FS_HZ, 1.0f},        {"acc_y", "g", (float)HC_FS_HZ, 1.0f},
    {"acc_z", "g", (float)HC_FS_HZ, 1.0f},        {"temp", "degC", 1.0f / (float)HC_WINDOW_S, 1.0f},
};
static const tl_sensor_set hc_sensors = {hc_channels, N_CH, (float)HC_WINDOW_S};

static float buf_red[HC_WINDOW_SAMPLES], buf_ir[HC_WINDOW_SAMPLES], buf_ax[HC_WINDOW_SAMPLES],
    buf_ay[HC_WINDOW_SAMPLES], buf_az[HC_WINDOW_SAMPLES], buf_temp[1];
static float scratch[HC_SCRATCH_FLOATS(HC_WINDOW_SAMPLES)];
static char json[HC_JSON_MAX];
static char will[256];
static uint8_t frame[HC_JSON_MAX + 64];

static void vital(tl_json_writer *w, const char *key, float v, int decimals) {
  tl_json_key(w, key);
  tl_json_number(w, v, decimals); /* NaN -> null */
}

static void envelope(tl_json_writer *w, const char *device, int64_t seq, int64_t ts_ms, const char *model_id) {
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

int hc_inference_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms,
                      const char *model_id, double window_s, const hc_features *f,
                      const float scores[HC_N_LABELS]) {
  tl_json_writer w;
  int i, best = 0;
  for (i = 1; i < HC_N_LABELS; i++)
    if (scores[i] > scores[best]) best = i;
  tl_json_init(&w, buf, cap);
  tl_json_begin_object(&w);
  envelope(&w, device, seq, ts_ms, model_id);
  tl_json_key(&w, "window_s");
  tl_json_number(&w, window_s, 3);
  tl_json_key(&w, "vitals");
  tl_json_begin_object(&w);
  vital(&w, "hr_bpm", f->hr_bpm, 2);
  vital(&w, "hrv_rmssd_ms", f->hrv_rmssd_ms, 2);
  vital(&w, "hrv_sdnn_ms", f->hrv_sdnn_ms, 2);
  vital(&w, "spo2_pct", f->spo2_pct, 2);
  vital(&w, "rr_bpm", f->rr_bpm, 2);
  vital(&w, "temp_c", f->temp_c, 2);
  vital(&w, "motion_g", f->motion_g, 2);
  vital(&w, "quality", isfinite(f->quality) ? f->quality : 0.0f, 4); /* required number */
  tl_json_end_object(&w);
  tl_json_key(&w, "class");
  tl_json_string(&w, hc_labels[best]);
  tl_json_key(&w, "scores");
  tl_json_begin_object(&w);
  for (i = 0; i < HC_N_LABELS; i++) {
    float p = scores[i] < 0.0f ? 0.0f : (scores[i] > 1.0f ? 1.0f : scores[i]);
    tl_json_key(&w, hc_labels[i]);
    tl_json_number(&w, p, 4);
  }
  tl_json_end_object(&w);
  tl_json_end_object(&w);
  return tl_json_finish(&w);
}

int hc_status_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms, const char *model_id,
                   int online, const char *const *count_names, const uint32_t *counts, int n_counts) {
  tl_json_writer w;
  int i;
  tl_json_init(&w, buf, cap);
  tl_json_begin_object(&w);
  envelope(&w, device, seq, ts_ms, model_id);
  tl_json_key(&w, "state");
  tl_json_string(&w, online ? "online" : "offline");
  tl_json_key(&w, "active_model");
  tl_json_string(&w, model_id);
  if (n_counts > 0) {
    tl_json_key(&w, "counts");
    tl_json_begin_object(&w);
    for (i = 0; i < n_counts; i++) {
      tl_json_key(&w, count_names[i]);
      tl_json_int(&w, counts[i]);
    }
    tl_json_end_object(&w);
  }
  tl_json_end_object(&w);
  return tl_json_finish(&w);
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

static int8_t quantize(float x, float scale, int zp) {
  long r = (long)nearbyintf(x / scale) + zp; /* half to even, as numpy's round in shared.tiny.int8 */
  return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}

int hc_app_main(int argc, char **argv) {
  static const char *const count_names[] = {"windows", "published", "errors"};
  tl_identity id;
  float *bufs[N_CH];
  int64_t seq = 0, status_seq = 0, ts_ms;
  uint32_t counts[3] = {0, 0, 0};
  long max_windows, interval_ms;
  int n;
  bufs[CH_RED] = buf_red;
  bufs[CH_IR] = buf_ir;
  bufs[CH_AX] = buf_ax;
  bufs[CH_AY] = buf_ay;
  bufs[CH_AZ] = buf_az;
  bufs[CH_TEMP] = buf_temp;
  id.domain = "healthcare";
  id.device = opt(argc, argv, "--device", "wearable-1");
  id.model_id = TL_MODEL_ID;
  max_windows = to_long(opt(argc, argv, "--max-windows", "0"));
  interval_ms = to_long(opt(argc, argv, "--interval-ms", "0"));
  n = hc_status_json(will, sizeof will, id.device, 0, tl_hal_now_ms(), id.model_id, 0, 0, 0, 0);
  id.offline_status = will;
  id.offline_status_len = n > 0 ? (size_t)n : 0;
  if (tl_hal_init(&id, argc, argv) != TL_HAL_OK) {
    tl_hal_log("healthcare: target init failed");
    return 2;
  }
  n = hc_status_json(json, sizeof json, id.device, status_seq++, tl_hal_now_ms(), id.model_id, 1, 0, 0, 0);
  if (publish("status", json, n, 1) != 0) tl_hal_log("healthcare: status publish failed");
  while (max_windows == 0 || (long)counts[0] < max_windows) {
    hc_features f;
    float v[HC_N_FEATURES], scores[HC_N_LABELS];
    int8_t qin[HC_N_FEATURES], qout[HC_N_LABELS];
    int i, rc = tl_hal_sensor_read(&hc_sensors, bufs, &ts_ms);
    if (rc == TL_HAL_END) break;
    if (rc != TL_HAL_OK) {
      tl_hal_log("healthcare: sensor read failed");
      counts[2]++;
      break;
    }
    if (ts_ms < 0) ts_ms = tl_hal_now_ms();
    hc_extract(buf_red, buf_ir, buf_ax, buf_ay, buf_az, HC_WINDOW_SAMPLES, buf_temp[0], (float)HC_FS_HZ,
               scratch, &f);
    hc_to_vector(&f, v);
    for (i = 0; i < HC_N_FEATURES; i++) qin[i] = quantize(v[i], MODEL_INPUT_SCALE, MODEL_INPUT_ZERO_POINT);
    if (MODEL_INVOKE(qin, qout) != 0) {
      tl_hal_log("healthcare: model invoke failed");
      counts[2]++;
      continue;
    }
    for (i = 0; i < HC_N_LABELS; i++)
      scores[i] = (float)MODEL_OUTPUT_SCALE * (float)(qout[i] - MODEL_OUTPUT_ZERO_POINT);
    n = hc_inference_json(json, sizeof json, id.device, seq, ts_ms, id.model_id, (double)HC_WINDOW_S, &f, scores);
    counts[0]++;
    if (publish("inference", json, n, 0) == 0) {
      counts[1]++;
      seq++;
    } else {
      tl_hal_log("healthcare: inference publish failed");
      counts[2]++;
    }
    if (interval_ms > 0) tl_hal_idle_ms((uint32_t)interval_ms);
  }
  n = hc_status_json(json, sizeof json, id.device, status_seq++, tl_hal_now_ms(), id.model_id, 0, count_names,
                     counts, 3);
  if (publish("status", json, n, 1) != 0) tl_hal_log("healthcare: status publish failed");
  tl_hal_shutdown();
  return counts[2] ? 1 : 0;
}
