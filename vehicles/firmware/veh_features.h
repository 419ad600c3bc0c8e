/*
 * The vehicles unit's DSP in C, streaming: a port of vehicles/features.py (unit_speed, calibrate,
 * vehicle_signals, detect_in, candidates, window_features, trip_stats; the module docstring there is
 * the specification). Double precision so that Python and C agree to rounding.
 *
 * The unit calibrates its mounting on the segment's first CAL_S (25) seconds (veh_calibrate, on the
 * raw prefix the app holds), then pushes every sample through veh_stream: a ring of VEH_RING samples
 * in the vehicle frame from which the smoothed signals, the rule events (counted), the candidate
 * windows (with their features) and the trip statistics (sums, runs, histograms) are taken as the
 * samples arrive. Nothing grows with the segment's length.
 */
#ifndef VEH_FEATURES_H
#define VEH_FEATURES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VEH_N_FEATURES 16 /* features.FEATURE_NAMES */
#define VEH_N_STATS 10    /* features.TRIP_STATS */
#define VEH_N_KINDS 6     /* features.EVENT_KINDS */
#define VEH_CAL_SECONDS 25 /* features.CAL_S */
#define VEH_CAL_S ((double)VEH_CAL_SECONDS)
#define VEH_SPEED_GAP_S 4 /* features.SPEED_GAP_S: the unit's speed interpolates between fixes this close */
#define VEH_RING 320      /* >= the feature window (256) + the vertical filter's lookahead (49) + 1 */

typedef struct {
  double brake_mps2, accel_mps2, corner_mps2, min_duration_s, smooth_s;
  double road_mps2, road_min_speed_mps, bump_max_speed_mps, crash_mps2;
} veh_config;

/* The defaults of vehicles.features.EventConfig. */
veh_config veh_default_config(void);

enum { VEH_HARSH_BRAKE = 0, VEH_HARSH_ACCEL, VEH_HARSH_CORNER, VEH_POTHOLE, VEH_SPEED_BUMP, VEH_CRASH };

typedef struct {
  double rotation[3][3]; /* vehicle = rotation @ sensor */
  double gravity_mps2;
  int ok;
} veh_calibration;

/* Sample i of the segment: acc and gyro (sensor frame) and the unit's speed (NaN: none). */
typedef void (*veh_sample_fn)(void *ctx, long i, double *acc, double *gyro, double *speed);

/* features.calibrate on the first min(n, CAL_S fs) samples. Returns 0, or -1 on bad input. */
int veh_calibrate(veh_sample_fn sample, void *ctx, long n, double fs_hz, veh_calibration *cal);

/* features.unit_speed at sample i from the 1 Hz fixes gs[0..m) (fix j at t = j s; NaN: none); reads
 * fixes up to i / fs_hz + VEH_SPEED_GAP_S. */
double veh_unit_speed(const float *gs, long m, long i, double fs_hz);

typedef struct {
  long lo, hi, centre; /* sample indices: [lo, hi), the peak */
  double features[VEH_N_FEATURES];
  double peak_mps2; /* max(|long|, |lat|, |vert|, raw_h) at the centre */
} veh_candidate;

typedef struct {
  long lo, hi, c;
  double best, f[VEH_N_FEATURES], peak;
  int ready;
} veh_cand_state;

typedef struct {
  veh_config cfg;
  veh_calibration cal;
  double fs;
  long n, w_s, w_v, gap, half, la_d;
  long n_in, d_next, j_next, r_next, cs_next, last_crash;
  /* the ring: index k % VEH_RING; cumulative sums hold k in [0, n] */
  double vz[VEH_RING], rawh[VEH_RING], gyro[VEH_RING][3], sp[VEH_RING];
  double cx[VEH_RING], cy[VEH_RING], cz[VEH_RING], clon[VEH_RING];
  double lon[VEH_RING], lat[VEH_RING], vert[VEH_RING];
  /* rules: crash and road merged runs, harsh runs; counts per kind */
  long crash_lo, crash_hi, road_lo, road_hi, harsh_lo[3];
  double road_sum, road_sum_hi;
  int rule_counts[VEH_N_KINDS];
  /* candidates: the open one, the closed ones waiting for their window, the emitted ones */
  veh_cand_state open, wait[4];
  int has_open, n_wait;
  veh_candidate *cands;
  int max_cands, n_cands;
  /* statistics */
  double km_sum, vsq, sp_sum, yaw_s, yaw_sq, v_prev;
  long moving, brake_lo, brakes, jerk_m;
  unsigned short h_speed[800], h_long[2000], h_lat[1000], h_jerk[1600];
} veh_stream;

/* Start a segment of n samples at fs_hz with a fixed calibration; candidates go to cands[0..max). */
void veh_stream_init(veh_stream *st, long n, double fs_hz, const veh_config *cfg, const veh_calibration *cal,
                     veh_candidate *cands, int max_cands);
/* The next sample (sensor frame) and its speed. */
void veh_stream_push(veh_stream *st, const double *acc, const double *gyro, double speed);
/* After the n-th sample: close every run; stats in TRIP_STATS order; returns the km driven. */
double veh_stream_finish(veh_stream *st, double *stats);

#ifdef __cplusplus
}
#endif

#endif
