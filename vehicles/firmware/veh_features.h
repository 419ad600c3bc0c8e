/*
 * The vehicles unit's DSP in C: mounting calibration and event detection, a port of
 * vehicles/features.py (calibrate, vehicle_signals, detect_in; the module docstring there is the
 * specification). Double precision so that Python and C agree to rounding.
 *
 * The firmware app (veh_spec.c) runs these on one whole 120 s segment, then veh_trip.c's candidate
 * windows, features and statistics; the segment does not fit a small MCU's RAM (see veh_spec.c).
 */
#ifndef VEH_FEATURES_H
#define VEH_FEATURES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  double brake_mps2, accel_mps2, corner_mps2, min_duration_s, smooth_s;
  double road_mps2, road_min_speed_mps, bump_max_speed_mps, crash_mps2;
} veh_config;

/* The defaults of vehicles.features.EventConfig. */
veh_config veh_default_config(void);

enum { VEH_HARSH_BRAKE = 0, VEH_HARSH_ACCEL, VEH_HARSH_CORNER, VEH_POTHOLE, VEH_SPEED_BUMP, VEH_CRASH };

typedef struct {
  int kind; /* VEH_* (the order of vehicles.features.EVENT_KINDS) */
  double t_start_s, t_end_s, peak_mps2;
} veh_event;

typedef struct {
  double rotation[3][3]; /* vehicle = rotation @ sensor */
  double gravity_mps2;
  int ok;
} veh_calibration;

/* acc, gyro: n x 3 row-major (sensor frame); speed: n (NaN: no fix yet). scratch: 7 n doubles.
 * Writes up to max_events events sorted by start; returns their number, or -1 on bad input. */
int veh_calibrate(const double *acc, const double *gyro, const double *speed, size_t n, double fs_hz,
                  veh_calibration *cal);
int veh_detect_events(const double *acc, const double *gyro, const double *speed, size_t n, double fs_hz,
                      const veh_config *cfg, double *scratch, veh_event *events, int max_events,
                      veh_calibration *cal_out);

#ifdef __cplusplus
}
#endif

#endif
