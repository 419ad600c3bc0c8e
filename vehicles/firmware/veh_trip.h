/*
 * The vehicles unit's message helpers in C: the tiny model's input vector of a candidate window's
 * features (features.to_vector) and the GNSS position at a time (device.position_at).
 */
#ifndef VEH_TRIP_H
#define VEH_TRIP_H

#include <stddef.h>

#include "veh_features.h"

#ifdef __cplusplus
extern "C" {
#endif

/* features.to_vector: asinh(value / scale) clipped to +-8, NaN -> 0, as float32. */
void veh_to_vector(const double *features, float *vector);
/* device.position_at: the position at t_s interpolated between fixes (1 Hz, fix i at t = i s), if a
 * fix lies within max_gap_s; returns 0 and leaves lat/lon NaN otherwise. */
int veh_position_at(const float *lat, const float *lon, size_t m, double t_s, double max_gap_s, double *lat_out,
                    double *lon_out);

#ifdef __cplusplus
}
#endif

#endif
