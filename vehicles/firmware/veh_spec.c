/*
 * The vehicles app: the telematics unit's sensors, its DSP (veh_features) and its inference message,
 * as the spec the generic loop (app/tl_app.h) runs. The unit streams: its device window is one second
 * (VEH_BLOCK_S) of the 6-axis IMU at VEH_FS_HZ plus the GNSS fix of that second (speed, latitude,
 * longitude; "nan" where there was none), the table of vehicles.device.window_channels block by block;
 * a trip segment is VEH_TRIP_S such blocks and ends in one inference message (dsp returns
 * TL_APP_PENDING for the others).
 *
 * Per segment, as vehicles.device.inference_message: the first VEH_CAL_S seconds are held raw (the
 * calibration's prefix, cal_buf) until the calibration is fixed; from then on every sample goes through
 * veh_stream one second behind its GNSS (the unit's speed interpolates to the next fix), which counts
 * the rule events, keeps the candidate windows with their features and accumulates the trip
 * statistics. At the segment's end each candidate is classified with model 0 (MODELS="veh_tiny": the
 * int8 event-window classifier, 16 inputs, one score per label) and the message written
 * (vehicles/schemas/inference.json). The classified events keep their GNSS position, so the cloud can
 * merge road anomalies into its hazard map.
 *
 * Memory: cal_buf (6 x VEH_CAL_S x VEH_FS_HZ floats, 60 KB at 25 s x 100 Hz; app.mk places it in the
 * STM32F4's core-coupled RAM) and veh_stream (a ring of VEH_RING samples, the histograms: about 45 KB);
 * nothing grows with VEH_TRIP_S.
 */
#include <math.h>
#include <string.h>

#include "tl_app.h"
#include "veh_features.h"
#include "veh_trip.h"

#if !defined(TL_MODEL_0_HEADER) || !defined(TL_MODEL_0_METADATA)
#error "build with MODELS=<the vehicles event classifier compiled by shared.tiny.compiler> (see firmware/Makefile)"
#endif
#include TL_MODEL_0_HEADER
#include TL_MODEL_0_METADATA

#ifndef VEH_FS_HZ
#define VEH_FS_HZ 100
#endif
#ifndef VEH_TRIP_S
#define VEH_TRIP_S 120
#endif
#define VEH_BLOCK_S 1
#define VEH_N (VEH_FS_HZ * VEH_TRIP_S)
#define VEH_GNSS_N VEH_TRIP_S
#define VEH_CAL_N (VEH_CAL_SECONDS * VEH_FS_HZ)
#define VEH_CAL_BLOCKS VEH_CAL_SECONDS
#define VEH_MAX_CANDIDATES 128
#define VEH_MAX_MSG_EVENTS 20 /* vehicles.device.MAX_EVENTS: the message stays under TL_APP_JSON_MAX */
#define VEH_GNSS_GAP_S 3.0
#define VEH_LAG VEH_SPEED_GAP_S /* block j goes through the stream when block j + VEH_LAG arrives */
#if VEH_TRIP_S <= VEH_CAL_BLOCKS + VEH_LAG
#error "a trip segment must be longer than the calibration's prefix and the GNSS lag"
#endif

#define VEH_N_LABELS TL_APP_MODEL_MACRO(0, _LABEL_COUNT)
#if TL_APP_MODEL_MACRO(0, _INPUT_SIZE) != VEH_N_FEATURES
#error "the model input must be the 16 window features of veh_to_vector"
#endif
#if VEH_N_LABELS != VEH_N_KINDS + 1
#error "the model must score normal + the 6 event kinds (compile it with the domain's labels)"
#endif
#if TL_APP_MODEL_MACRO(0, _OUTPUT_SIZE) != VEH_N_LABELS
#error "the model output must have one score per label of its metadata"
#endif

static const char *const labels[VEH_N_LABELS] = TL_APP_MODEL_MACRO(0, _LABELS);
static const char *const kinds[VEH_N_KINDS] = {"harsh_brake", "harsh_accel", "harsh_corner",
                                               "pothole", "speed_bump", "crash"};
static const char *const stat_names[VEH_N_STATS] = {
    "speed_mean_mps", "speed_p95_mps", "long_p05_mps2", "long_p95_mps2", "lat_p95_mps2",
    "jerk_p95_mps3", "yaw_std_rads", "vert_rms_mps2", "brakes_2_per_km", "moving_s"};
static const tl_model models[1] = {TL_APP_MODEL(0)};

enum { CH_AX, CH_AY, CH_AZ, CH_GX, CH_GY, CH_GZ, CH_SPEED, CH_LAT, CH_LON, N_CH };
static const tl_channel channels[N_CH] = {
    {"acc_x", "m/s^2", (float)VEH_FS_HZ, 1.0f},  {"acc_y", "m/s^2", (float)VEH_FS_HZ, 1.0f},
    {"acc_z", "m/s^2", (float)VEH_FS_HZ, 1.0f},  {"gyro_x", "rad/s", (float)VEH_FS_HZ, 1.0f},
    {"gyro_y", "rad/s", (float)VEH_FS_HZ, 1.0f}, {"gyro_z", "rad/s", (float)VEH_FS_HZ, 1.0f},
    {"speed", "m/s", 1.0f, 1.0f},                {"lat", "deg", 1.0f, 1.0f},
    {"lon", "deg", 1.0f, 1.0f},
};
/* one block (the device window) */
static float buf_imu[6][VEH_FS_HZ * VEH_BLOCK_S], buf_speed[1], buf_lat[1], buf_lon[1];
static float *const window[N_CH] = {buf_imu[0], buf_imu[1], buf_imu[2], buf_imu[3], buf_imu[4],
                                    buf_imu[5], buf_speed, buf_lat, buf_lon};
static float input[VEH_N_FEATURES];

/* the segment as it streams: the calibration's raw prefix, the blocks waiting for their fixes, the fixes */
static float veh_cal_buf[VEH_CAL_N][6];
static float pend[VEH_LAG + 1][VEH_FS_HZ][6];
static float fix_speed[VEH_GNSS_N], fix_lat[VEH_GNSS_N], fix_lon[VEH_GNSS_N];
static veh_stream stream;
static veh_candidate cands[VEH_MAX_CANDIDATES];
static struct {
  int block, bad;
} run;

/* What the last segment produced: read by infer() and message(). */
typedef struct {
  int kind; /* index into labels (1..6), 0: normal (not reported) */
  double t_s, dur_s, peak_mps2, score, lat, lon;
} msg_event;
static struct {
  veh_calibration cal;
  int rule_counts[VEH_N_KINDS], n_cand;
  msg_event events[VEH_MAX_MSG_EVENTS];
  int n_events, counts[VEH_N_KINDS];
  double stats[VEH_N_STATS], km, fix_frac, lat, lon;
} seg;

static void cal_sample(void *ctx, long i, double *a, double *g, double *s) {
  (void)ctx;
  for (int k = 0; k < 3; k++) a[k] = veh_cal_buf[i][k], g[k] = veh_cal_buf[i][3 + k];
  *s = veh_unit_speed(fix_speed, VEH_GNSS_N, i, (double)VEH_FS_HZ);
}

static void push(const float *x, long i) {
  double a[3] = {x[0], x[1], x[2]}, g[3] = {x[3], x[4], x[5]};
  veh_stream_push(&stream, a, g, veh_unit_speed(fix_speed, VEH_GNSS_N, i, (double)VEH_FS_HZ));
}

static void push_block(int b, float (*x)[6]) {
  for (int i = 0; i < VEH_FS_HZ; i++) push(x[i], (long)b * VEH_FS_HZ + i);
}

/* The segment's end: close the stream's runs, the statistics, the GNSS summary. */
static int finish(float *vector) {
  int i, fixes = 0;
  seg.km = veh_stream_finish(&stream, seg.stats);
  memcpy(seg.rule_counts, stream.rule_counts, sizeof seg.rule_counts);
  seg.n_cand = stream.n_cands < VEH_MAX_CANDIDATES ? stream.n_cands : VEH_MAX_CANDIDATES;
  for (i = 0; i < VEH_GNSS_N; i++) fixes += isfinite(fix_lat[i]) ? 1 : 0;
  seg.fix_frac = (double)fixes / VEH_GNSS_N;
  veh_position_at(fix_lat, fix_lon, VEH_GNSS_N, (double)(VEH_GNSS_N - 1), VEH_GNSS_GAP_S, &seg.lat, &seg.lon);
  if (seg.n_cand > 0) veh_to_vector(cands[0].features, vector);
  else memset(vector, 0, sizeof input);
  return 0;
}

/* One block: held, or pushed VEH_LAG blocks behind; the segment's end finishes the stream. */
static int dsp(float *const *w, float *unused, float *vector) {
  const int b = run.block, f = VEH_FS_HZ;
  int i, k;
  (void)unused;
  if (b == 0) {
    memset(&run, 0, sizeof run);
    memset(&seg, 0, sizeof seg);
    for (i = 0; i < VEH_GNSS_N; i++) fix_speed[i] = fix_lat[i] = fix_lon[i] = NAN;
  }
  fix_speed[b] = w[CH_SPEED][0];
  fix_lat[b] = w[CH_LAT][0];
  fix_lon[b] = w[CH_LON][0];
  for (i = 0; i < f; i++)
    for (k = 0; k < 6; k++) {
      float v = w[CH_AX + k][i];
      if (!isfinite(v)) run.bad = 1;
      if (b < VEH_CAL_BLOCKS) veh_cal_buf[b * f + i][k] = v;
      else pend[b % (VEH_LAG + 1)][i][k] = v;
    }
  if (b == VEH_CAL_BLOCKS + VEH_LAG - 1 && !run.bad) { /* the prefix is complete and its speeds known */
    veh_config cfg = veh_default_config();
    if (veh_calibrate(cal_sample, 0, VEH_N, (double)f, &seg.cal) != 0) run.bad = 1;
    veh_stream_init(&stream, VEH_N, (double)f, &cfg, &seg.cal, cands, VEH_MAX_CANDIDATES);
    for (i = 0; i < VEH_CAL_N && !run.bad; i++) push(veh_cal_buf[i], i);
  } else if (b >= VEH_CAL_BLOCKS + VEH_LAG && !run.bad) {
    push_block(b - VEH_LAG, pend[(b - VEH_LAG) % (VEH_LAG + 1)]);
  }
  run.block = b + 1;
  if (run.block < VEH_TRIP_S) return TL_APP_PENDING;
  run.block = 0; /* the segment's last block: the next block starts a new one */
  if (run.bad) return -1;
  for (k = b - VEH_LAG + 1; k <= b; k++) push_block(k, pend[k % (VEH_LAG + 1)]);
  return finish(vector);
}

/* Every candidate window through the classifier; the events keep their GNSS position. */
static int infer(const tl_model *m, const float *unused) {
  static int8_t qin[VEH_N_FEATURES], qout[VEH_N_LABELS];
  float scores[VEH_N_LABELS], vec[VEH_N_FEATURES];
  const double fs = (double)VEH_FS_HZ;
  int k, j;
  (void)unused;
  for (k = 0; k < seg.n_cand; k++) {
    const veh_candidate *c = &cands[k];
    int best = 0;
    veh_to_vector(c->features, vec);
    if (tl_model_run(&m[0], vec, qin, qout, scores) != 0) return -1;
    for (j = 1; j < VEH_N_LABELS; j++)
      if (scores[j] > scores[best]) best = j;
    if (best == 0) continue;
    seg.counts[best - 1]++;
    if (seg.n_events >= VEH_MAX_MSG_EVENTS) continue;
    msg_event *e = &seg.events[seg.n_events++];
    e->kind = best;
    e->t_s = (double)c->lo / fs;
    e->dur_s = (double)(c->hi - c->lo) / fs;
    e->peak_mps2 = c->peak_mps2;
    e->score = scores[best] < 0.0f ? 0.0 : (scores[best] > 1.0f ? 1.0 : (double)scores[best]);
    veh_position_at(fix_lat, fix_lon, VEH_GNSS_N, (double)c->centre / fs, VEH_GNSS_GAP_S, &e->lat, &e->lon);
  }
  return 0;
}

static void counts_object(tl_json_writer *w, const char *key, const int *counts) {
  tl_json_key(w, key);
  tl_json_begin_object(w);
  for (int k = 0; k < VEH_N_KINDS; k++) {
    tl_json_key(w, kinds[k]);
    tl_json_int(w, counts[k]);
  }
  tl_json_end_object(w);
}

static int message(tl_json_writer *w) {
  int k;
  tl_json_key(w, "trip_s");
  tl_json_number(w, (double)VEH_TRIP_S, 3);
  tl_json_key(w, "distance_km");
  tl_json_number(w, seg.km, 4);
  tl_json_key(w, "calibrated");
  tl_json_bool(w, seg.cal.ok);
  tl_json_key(w, "gnss_fix_frac");
  tl_json_number(w, seg.fix_frac, 4);
  tl_json_key(w, "lat");
  tl_json_number(w, seg.lat, 6); /* NaN -> null */
  tl_json_key(w, "lon");
  tl_json_number(w, seg.lon, 6);
  tl_json_key(w, "stats");
  tl_json_begin_object(w);
  for (k = 0; k < VEH_N_STATS; k++) {
    tl_json_key(w, stat_names[k]);
    tl_json_number(w, seg.stats[k], 6);
  }
  tl_json_end_object(w);
  counts_object(w, "counts", seg.counts);
  counts_object(w, "rule_counts", seg.rule_counts);
  tl_json_key(w, "events");
  tl_json_begin_array(w);
  for (k = 0; k < seg.n_events; k++) {
    const msg_event *e = &seg.events[k];
    tl_json_begin_object(w);
    tl_json_key(w, "kind");
    tl_json_string(w, labels[e->kind]);
    tl_json_key(w, "t_s");
    tl_json_number(w, e->t_s, 2);
    tl_json_key(w, "dur_s");
    tl_json_number(w, e->dur_s, 2);
    tl_json_key(w, "peak_mps2");
    tl_json_number(w, e->peak_mps2, 3);
    tl_json_key(w, "score");
    tl_json_number(w, e->score, 4);
    tl_json_key(w, "lat");
    tl_json_number(w, e->lat, 6);
    tl_json_key(w, "lon");
    tl_json_number(w, e->lon, 6);
    tl_json_end_object(w);
  }
  tl_json_end_array(w);
  return 0;
}

const tl_app_spec tl_app_domain = {
    .domain = "vehicles",
    .default_device = "vehicle-1",
    .sensors = {channels, N_CH, (float)VEH_BLOCK_S},
    .window = window,
    .scratch = 0,
    .scratch_floats = 0,
    .input = input,
    .input_size = VEH_N_FEATURES,
    .models = models,
    .n_models = 1,
    .dsp = dsp,
    .infer = infer,
    .message = message,
};
