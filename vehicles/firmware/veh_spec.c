/*
 * The vehicles app: the telematics unit's sensors, its DSP (veh_features + veh_trip) and its inference
 * message, as the spec the generic loop (app/tl_app.h) runs. One window is one trip segment of
 * VEH_TRIP_S seconds: the 6-axis IMU at VEH_FS_HZ and the GNSS at 1 Hz (speed, latitude, longitude;
 * "nan" where there was no fix), the table of vehicles.device.window_channels.
 *
 * Per segment, as vehicles.device.inference_message: calibrate the mounting and detect the rule events
 * (veh_detect_events), find the candidate windows, classify each with model 0 (MODELS="veh_tiny": the
 * int8 event-window classifier, 16 inputs, one score per label), summarise the drive (veh_trip_stats)
 * and write vehicles/schemas/inference.json. The classified events keep their GNSS position, so the
 * cloud can merge road anomalies into its hazard map.
 *
 * Memory: the segment is held whole (6 x VEH_TRIP_S x VEH_FS_HZ floats) with double-precision copies and
 * the DSP's scratch, about 1.8 MB at 120 s x 100 Hz: it fits the MPS2-AN386 (4 MB SRAM) that the
 * Cortex-M4 target runs under QEMU, not a 192 KB STM32F4. A streaming form (shorter windows with per-trip
 * counters) is what a small MCU needs; see docs/vehicles.md.
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
#define VEH_N (VEH_FS_HZ * VEH_TRIP_S)
#define VEH_GNSS_N VEH_TRIP_S
#define VEH_MAX_CANDIDATES 128
#define VEH_MAX_RULE_EVENTS 256
#define VEH_MAX_MSG_EVENTS 20 /* vehicles.device.MAX_EVENTS: the message stays under TL_APP_JSON_MAX */
#define VEH_N_KINDS 6
#define VEH_GNSS_GAP_S 3.0

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
static float buf_imu[6][VEH_N], buf_speed[VEH_GNSS_N], buf_lat[VEH_GNSS_N], buf_lon[VEH_GNSS_N];
static float *const window[N_CH] = {buf_imu[0], buf_imu[1], buf_imu[2], buf_imu[3], buf_imu[4],
                                    buf_imu[5], buf_speed, buf_lat, buf_lon};
static float input[VEH_N_FEATURES];

/* the DSP's double-precision working set */
static double acc[3 * VEH_N], gyro[3 * VEH_N], speed[VEH_N], scratch[7 * VEH_N], work[2 * VEH_N];

/* What the last segment produced: read by infer() and message(). */
typedef struct {
  int kind; /* index into labels (1..6), 0: normal (not reported) */
  double t_s, dur_s, peak_mps2, score, lat, lon;
} msg_event;
static struct {
  veh_calibration cal;
  int n_rule, rule_counts[VEH_N_KINDS], n_cand;
  veh_candidate cand[VEH_MAX_CANDIDATES];
  float vectors[VEH_MAX_CANDIDATES][VEH_N_FEATURES];
  double peaks[VEH_MAX_CANDIDATES];
  msg_event events[VEH_MAX_CANDIDATES];
  int n_events, counts[VEH_N_KINDS];
  double stats[VEH_N_STATS], km, fix_frac, lat, lon;
} seg;

static int dsp(float *const *w, float *unused, float *vector) {
  static veh_event rule[VEH_MAX_RULE_EVENTS];
  const double fs = (double)VEH_FS_HZ;
  size_t i;
  int k, fixes = 0;
  (void)unused;
  memset(&seg, 0, sizeof seg);
  for (i = 0; i < VEH_N; i++)
    for (k = 0; k < 3; k++) {
      acc[3 * i + k] = w[CH_AX + k][i];
      gyro[3 * i + k] = w[CH_GX + k][i];
    }
  veh_speed_per_sample(w[CH_SPEED], VEH_GNSS_N, fs, speed, VEH_N);
  seg.n_rule = veh_detect_events(acc, gyro, speed, VEH_N, fs, 0, scratch, rule, VEH_MAX_RULE_EVENTS, &seg.cal);
  if (seg.n_rule < 0) return -1;
  for (k = 0; k < seg.n_rule; k++) seg.rule_counts[rule[k].kind]++;
  /* veh_detect_events leaves the vehicle-frame signals in its scratch (see veh_features.c) */
  veh_signals s = {scratch, scratch + VEH_N, scratch + 2 * VEH_N, scratch + 3 * VEH_N, scratch + 6 * VEH_N,
                   gyro, &seg.cal, VEH_N, fs};
  veh_config cfg = veh_default_config();
  seg.n_cand = veh_candidates(&s, &cfg, scratch + 4 * VEH_N, seg.cand, VEH_MAX_CANDIDATES);
  if (seg.n_cand > VEH_MAX_CANDIDATES) seg.n_cand = VEH_MAX_CANDIDATES;
  for (k = 0; k < seg.n_cand; k++) {
    double f[VEH_N_FEATURES];
    long c = seg.cand[k].centre;
    veh_window_features(&s, c, f);
    veh_to_vector(f, seg.vectors[k]);
    double pk = fabs(s.lon[c]);
    if (fabs(s.lat[c]) > pk) pk = fabs(s.lat[c]);
    if (fabs(s.vert[c]) > pk) pk = fabs(s.vert[c]);
    if (s.raw_h[c] > pk) pk = s.raw_h[c];
    seg.peaks[k] = pk;
  }
  seg.km = veh_trip_stats(&s, work, seg.stats);
  for (i = 0; i < VEH_GNSS_N; i++) fixes += isfinite(w[CH_LAT][i]) ? 1 : 0;
  seg.fix_frac = (double)fixes / VEH_GNSS_N;
  veh_position_at(w[CH_LAT], w[CH_LON], VEH_GNSS_N, (double)(VEH_GNSS_N - 1), VEH_GNSS_GAP_S, &seg.lat, &seg.lon);
  if (seg.n_cand > 0) memcpy(vector, seg.vectors[0], sizeof input);
  else memset(vector, 0, sizeof input);
  return 0;
}

/* Every candidate window through the classifier; the events keep their GNSS position. */
static int infer(const tl_model *m, const float *unused) {
  static int8_t qin[VEH_N_FEATURES], qout[VEH_N_LABELS];
  float scores[VEH_N_LABELS];
  const double fs = (double)VEH_FS_HZ;
  int k, j;
  (void)unused;
  for (k = 0; k < seg.n_cand; k++) {
    int best = 0;
    if (tl_model_run(&m[0], seg.vectors[k], qin, qout, scores) != 0) return -1;
    for (j = 1; j < VEH_N_LABELS; j++)
      if (scores[j] > scores[best]) best = j;
    if (best == 0) continue;
    msg_event *e = &seg.events[seg.n_events++];
    e->kind = best;
    e->t_s = (double)seg.cand[k].lo / fs;
    e->dur_s = (double)(seg.cand[k].hi - seg.cand[k].lo) / fs;
    e->peak_mps2 = seg.peaks[k];
    e->score = scores[best] < 0.0f ? 0.0 : (scores[best] > 1.0f ? 1.0 : (double)scores[best]);
    veh_position_at(buf_lat, buf_lon, VEH_GNSS_N, (double)seg.cand[k].centre / fs, VEH_GNSS_GAP_S, &e->lat, &e->lon);
    seg.counts[best - 1]++;
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
  for (k = 0; k < seg.n_events && k < VEH_MAX_MSG_EVENTS; k++) {
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
    .sensors = {channels, N_CH, (float)VEH_TRIP_S},
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
