/* See veh_trip.h; every step follows vehicles/features.py and vehicles/device.py. */
#include "veh_trip.h"

#include <math.h>

#define VECTOR_CLIP 8.0

/* features.VECTOR_SCALE is float32: 0.1 and 0.2 are their float32 values there too */
static const float vector_scale[VEH_N_FEATURES] = {2.0f, 2.0f, 2.0f, 0.5f, 0.5f, 2.0f, 2.0f, 1.0f,
                                                   0.1f, 0.2f, 0.2f, 0.2f, 5.0f, 10.0f, 5.0f, 2.0f};

void veh_to_vector(const double *features, float *vector) {
  for (int k = 0; k < VEH_N_FEATURES; k++) {
    double v = asinh(features[k] / (double)vector_scale[k]);
    if (v > VECTOR_CLIP) v = VECTOR_CLIP;
    if (v < -VECTOR_CLIP) v = -VECTOR_CLIP;
    vector[k] = isnan(v) ? 0.0f : (float)v;
  }
}

/* numpy.interp between fixes a < b (times a, b s): slope first, as numpy computes it */
static double lerp_fix(const float *x, long a, long b, double t) {
  double slope = ((double)x[b] - (double)x[a]) / (double)(b - a);
  return slope * (t - (double)a) + (double)x[a];
}

int veh_position_at(const float *lat, const float *lon, size_t m, double t, double max_gap, double *lat_out,
                    double *lon_out) {
  long a = -1, b = -1;
  double best = INFINITY;
  *lat_out = *lon_out = NAN;
  for (size_t j = 0; j < m; j++) {
    if (!isfinite(lat[j]) || !isfinite(lon[j])) continue;
    double d = fabs((double)j - t);
    if (d < best) best = d;
    if ((double)j <= t) a = (long)j;
    if ((double)j >= t && b < 0) b = (long)j;
  }
  if (!(best <= max_gap)) return 0;
  if (a < 0) a = b;
  if (b < 0) b = a;
  if (a == b) {
    *lat_out = lat[a];
    *lon_out = lon[a];
  } else {
    *lat_out = lerp_fix(lat, a, b, t);
    *lon_out = lerp_fix(lon, a, b, t);
  }
  return 1;
}
