/* See veh_trip.h; every step follows vehicles/features.py and vehicles/device.py. */
#include "veh_trip.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CANDIDATE_FRACTION 0.6
#define WINDOW_S 2.56
#define RUN_MPS2 2.5
#define VERT_WIDTH_MPS2 2.0
#define VECTOR_CLIP 8.0

/* features.VECTOR_SCALE is float32: 0.1 and 0.2 are their float32 values there too */
static const float vector_scale[VEH_N_FEATURES] = {2.0f, 2.0f, 2.0f, 0.5f, 0.5f, 2.0f, 2.0f, 1.0f,
                                                   0.1f, 0.2f, 0.2f, 0.2f, 5.0f, 10.0f, 5.0f, 2.0f};

static long round_half_even(double x) {
  double r = floor(x + 0.5);
  if (r - x == 0.5 && fmod(r, 2.0) != 0.0) r -= 1.0;
  return (long)r;
}

static double gyro_axis(const veh_signals *s, size_t i, int axis) {
  const double *g = s->gyro + 3 * i;
  const double *r = s->cal->rotation[axis];
  return r[0] * g[0] + r[1] * g[1] + r[2] * g[2];
}

int veh_candidates(const veh_signals *s, const veh_config *cfg, double *score, veh_candidate *out, int max) {
  size_t n = s->n;
  long gap = (long)s->fs_hz, cur_lo = -1, cur_hi = -1, lo = -1;
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    double v = -s->lon[i] / cfg->brake_mps2, x;
    x = s->lon[i] / cfg->accel_mps2;
    if (x > v) v = x;
    x = fabs(s->lat[i]) / cfg->corner_mps2;
    if (x > v) v = x;
    x = s->speed[i] >= cfg->road_min_speed_mps ? fabs(s->vert[i]) / cfg->road_mps2 : 0.0;
    if (x > v) v = x;
    x = s->raw_h[i] / cfg->crash_mps2;
    if (x > v) v = x;
    score[i] = v;
  }
  for (size_t i = 0; i <= n; i++) {
    int on = i < n && score[i] >= CANDIDATE_FRACTION;
    if (on && lo < 0) lo = (long)i;
    if (!on && lo >= 0) {
      if (cur_lo >= 0 && lo - cur_hi <= gap) {
        cur_hi = (long)i;
      } else {
        if (cur_lo >= 0) {
          if (count < max) out[count].lo = cur_lo, out[count].hi = cur_hi;
          count++;
        }
        cur_lo = lo;
        cur_hi = (long)i;
      }
      lo = -1;
    }
  }
  if (cur_lo >= 0) {
    if (count < max) out[count].lo = cur_lo, out[count].hi = cur_hi;
    count++;
  }
  for (int k = 0; k < count && k < max; k++) { /* the first sample of the largest score (numpy argmax) */
    long best = out[k].lo;
    for (long j = out[k].lo + 1; j < out[k].hi; j++)
      if (score[j] > score[best]) best = j;
    out[k].centre = best;
  }
  return count;
}

void veh_window_features(const veh_signals *s, long centre, double *f) {
  double fs = s->fs_hz;
  long half = round_half_even(WINDOW_S * fs / 2.0);
  long lo = centre - half < 0 ? 0 : centre - half;
  long hi = centre + half > (long)s->n ? (long)s->n : centre + half;
  double lmin = INFINITY, lmax = -INFINITY, latmax = 0, vmin = INFINITY, vmax = -INFINITY, vsq = 0;
  double pitch = 0, roll = 0, yaw = 0, hpeak = -INFINITY, jerk = 0, sp = 0;
  long lrun = 0, trun = 0, vwidth = 0;
  for (long i = lo; i < hi; i++) {
    double lg = s->lon[i], lt = fabs(s->lat[i]), vz = s->vert[i];
    if (lg < lmin) lmin = lg;
    if (lg > lmax) lmax = lg;
    if (lt > latmax) latmax = lt;
    if (fabs(lg) >= RUN_MPS2) lrun++;
    if (lt >= RUN_MPS2) trun++;
    if (vz < vmin) vmin = vz;
    if (vz > vmax) vmax = vz;
    vsq += vz * vz;
    if (fabs(vz) >= VERT_WIDTH_MPS2) vwidth++;
    double r = fabs(gyro_axis(s, (size_t)i, 0)), p = fabs(gyro_axis(s, (size_t)i, 1)), y = fabs(gyro_axis(s, (size_t)i, 2));
    if (r > roll) roll = r;
    if (p > pitch) pitch = p;
    if (y > yaw) yaw = y;
    if (s->raw_h[i] > hpeak) hpeak = s->raw_h[i];
    if (i > lo && fabs(lg - s->lon[i - 1]) * fs > jerk) jerk = fabs(lg - s->lon[i - 1]) * fs;
    sp += s->speed[i];
  }
  f[0] = lmin;
  f[1] = lmax;
  f[2] = latmax;
  f[3] = (double)lrun / fs;
  f[4] = (double)trun / fs;
  f[5] = vmin;
  f[6] = vmax;
  f[7] = sqrt(vsq / (double)(hi - lo));
  f[8] = (double)vwidth / fs;
  f[9] = pitch;
  f[10] = roll;
  f[11] = yaw;
  f[12] = hpeak;
  f[13] = jerk;
  f[14] = sp / (double)(hi - lo);
  f[15] = s->speed[hi - 1] - s->speed[lo];
}

void veh_to_vector(const double *features, float *vector) {
  for (int k = 0; k < VEH_N_FEATURES; k++) {
    double v = asinh(features[k] / (double)vector_scale[k]);
    if (v > VECTOR_CLIP) v = VECTOR_CLIP;
    if (v < -VECTOR_CLIP) v = -VECTOR_CLIP;
    vector[k] = isnan(v) ? 0.0f : (float)v;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* numpy.percentile (linear) of x[0..m), sorted in place; NaN if m == 0 */
static double percentile(double *x, size_t m, double q) {
  if (m == 0) return NAN;
  qsort(x, m, sizeof(double), cmp_double);
  double pos = q / 100.0 * (double)(m - 1);
  size_t i = (size_t)floor(pos);
  double t = pos - (double)i;
  if (i + 1 >= m) return x[m - 1];
  double a = x[i], b = x[i + 1], d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t; /* numpy's _lerp */
}

double veh_trip_stats(const veh_signals *s, double *work, double *st) {
  size_t n = s->n, m = 0, i;
  double fs = s->fs_hz, km = 0.0, sum = 0.0;
  double *buf = work, *cum = work + n; /* cum[k] = sum of lon[0..k) for k < n; cum[n] kept in `total` */
  for (i = 0; i < n; i++) km += s->speed[i];
  km = km / fs / 1000.0;
  for (i = 0; i < n; i++)
    if (s->speed[i] > 2.0) m++;
  if (m == 0) {
    for (int k = 0; k < VEH_N_STATS; k++) st[k] = 0.0;
    return km;
  }
  for (i = 0, m = 0; i < n; i++)
    if (s->speed[i] > 2.0) sum += s->speed[i], m++;
  st[0] = sum / (double)m;
  memcpy(buf, s->speed, n * sizeof(double));
  st[1] = percentile(buf, n, 95.0);
  for (i = 0, m = 0; i < n; i++)
    if (s->speed[i] > 2.0) buf[m++] = s->lon[i];
  st[2] = percentile(buf, m, 5.0);
  st[3] = percentile(buf, m, 95.0); /* the same set, already sorted */
  for (i = 0, m = 0; i < n; i++)
    if (s->speed[i] > 2.0) buf[m++] = fabs(s->lat[i]);
  st[4] = percentile(buf, m, 95.0);
  /* jerk: |diff(movavg(long, fs))| * fs where the later sample is moving; movavg as features._movavg */
  {
    long w = (long)fs, half = w / 2;
    double prev = 0.0;
    cum[0] = 0.0;
    for (i = 1; i < n; i++) cum[i] = cum[i - 1] + s->lon[i - 1];
    double total = cum[n - 1] + s->lon[n - 1]; /* cum[n] */
    m = 0;
    for (long k = 0; k < (long)n; k++) {
      long lo = k - half < 0 ? 0 : k - half;
      long hi = k - half + w > (long)n ? (long)n : k - half + w;
      double chi = hi == (long)n ? total : cum[hi];
      double v = (chi - cum[lo]) / (double)(hi - lo);
      if (k > 0 && s->speed[k] > 2.0) buf[m++] = fabs(v - prev) * fs;
      prev = v;
    }
    st[5] = percentile(buf, m, 95.0);
  }
  {
    double mean = 0.0, var = 0.0;
    for (i = 0, m = 0; i < n; i++)
      if (s->speed[i] > 2.0) buf[m++] = gyro_axis(s, i, 2);
    for (i = 0; i < m; i++) mean += buf[i];
    mean /= (double)m;
    for (i = 0; i < m; i++) var += (buf[i] - mean) * (buf[i] - mean);
    st[6] = sqrt(var / (double)m);
  }
  {
    double sq = 0.0;
    for (i = 0; i < n; i++) sq += s->vert[i] * s->vert[i];
    st[7] = sqrt(sq / (double)n);
  }
  {
    long brakes = 0, lo = -1;
    for (i = 0; i <= n; i++) {
      int on = i < n && -s->lon[i] >= 2.0;
      if (on && lo < 0) lo = (long)i;
      if (!on && lo >= 0) {
        if ((double)((long)i - lo) / fs >= 0.3) brakes++;
        lo = -1;
      }
    }
    st[8] = (double)brakes / (km > 0.1 ? km : 0.1);
  }
  for (i = 0, m = 0; i < n; i++)
    if (s->speed[i] > 2.0) m++;
  st[9] = (double)m / fs;
  return km;
}

/* the first fix after index j (m if none) */
static long next_fix(const float *x, size_t m, long j) {
  for (j++; j < (long)m; j++)
    if (isfinite(x[j])) break;
  return j;
}

/* numpy.interp between fixes a < b (times a, b s): slope first, as numpy computes it */
static double lerp_fix(const float *x, long a, long b, double t) {
  double slope = ((double)x[b] - (double)x[a]) / (double)(b - a);
  return slope * (t - (double)a) + (double)x[a];
}

void veh_speed_per_sample(const float *gs, size_t m, double fs, double *speed, size_t n) {
  long first = next_fix(gs, m, -1), last = -1, a;
  for (long j = 0; j < (long)m; j++)
    if (isfinite(gs[j])) last = j;
  if (first >= (long)m) {
    for (size_t i = 0; i < n; i++) speed[i] = NAN;
    return;
  }
  a = first; /* the last fix at or before t */
  for (size_t i = 0; i < n; i++) {
    double t = (double)i / fs;
    if (t <= (double)first || t >= (double)last) {
      speed[i] = gs[t <= (double)first ? first : last];
      continue;
    }
    while (next_fix(gs, m, a) <= (long)floor(t)) a = next_fix(gs, m, a);
    speed[i] = (double)a == t ? (double)gs[a] : lerp_fix(gs, a, next_fix(gs, m, a), t);
  }
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
