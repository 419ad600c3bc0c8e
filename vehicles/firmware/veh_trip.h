/*
 * The rest of the vehicles unit's DSP in C, after veh_detect_events: the candidate windows, their
 * features and the tiny model's input vector, the per-segment driving statistics and the GNSS helpers
 * of the inference message. A port of vehicles/features.py (candidates, window_features, to_vector,
 * trip_stats) and vehicles/device.py (position_at, the per-sample speed), in double precision.
 *
 * Signals (all n samples, vehicle frame, as veh_detect_events leaves them in its scratch):
 * long / lat smoothed, raw_h the raw horizontal magnitude, vert the vertical high-pass, speed (NaN -> 0).
 * The gyro is the raw sensor-frame (n x 3) array rotated here with the calibration.
 */
#ifndef VEH_TRIP_H
#define VEH_TRIP_H

#include <stddef.h>

#include "veh_features.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VEH_N_FEATURES 16 /* features.FEATURE_NAMES */
#define VEH_N_STATS 10    /* features.TRIP_STATS */

typedef struct {
  const double *lon, *lat, *raw_h, *vert, *speed; /* n each */
  const double *gyro;                             /* n x 3, sensor frame */
  const veh_calibration *cal;
  size_t n;
  double fs_hz;
} veh_signals;

typedef struct {
  long lo, hi, centre; /* sample indices: [lo, hi), the peak */
} veh_candidate;

/* features.candidates: writes up to max candidates, returns how many there were (may exceed max).
 * score: n doubles of scratch. */
int veh_candidates(const veh_signals *s, const veh_config *cfg, double *score, veh_candidate *out, int max);
/* features.window_features of the window centred on `centre` (FEATURE_NAMES order). */
void veh_window_features(const veh_signals *s, long centre, double *features);
/* features.to_vector: asinh(value / scale) clipped to +-8, NaN -> 0, as float32. */
void veh_to_vector(const double *features, float *vector);
/* features.trip_stats (TRIP_STATS order); work: 2 n doubles. Returns the km driven (sum of speed / fs). */
double veh_trip_stats(const veh_signals *s, double *work, double *stats);

/* The unit's per-sample speed: the 1 Hz GNSS speed (fix i at t = i s; NaN: none) linearly interpolated
 * at t = i / fs_hz, held beyond the first and last fix (numpy.interp); all NaN without any fix. */
void veh_speed_per_sample(const float *gnss_speed, size_t m, double fs_hz, double *speed, size_t n);
/* device.position_at: the position at t_s interpolated between fixes (1 Hz, fix i at t = i s), if a
 * fix lies within max_gap_s; returns 0 and leaves lat/lon NaN otherwise. */
int veh_position_at(const float *lat, const float *lon, size_t m, double t_s, double max_gap_s, double *lat_out,
                    double *lon_out);

#ifdef __cplusplus
}
#endif

#endif
