/* See veh_features.h; every step follows vehicles/features.py line by line. */
#include "veh_features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STILL_SPEED 0.3
#define STILL_GYRO 0.05
#define STILL_MIN_S 1.0
#define CAL_MIN_SECONDS 5

veh_config veh_default_config(void) {
  veh_config c = {3.5, 3.0, 3.5, 0.5, 0.5, 4.0, 1.5, 6.0, 2.5 * 9.80665};
  return c;
}

static void cross(const double *a, const double *b, double *out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

static double norm3(const double *a) { return sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]); }

/* Python's round() for the non-negative values used here: half to even. */
static long round_half_even(double x) {
  double r = floor(x + 0.5);
  if (r - x == 0.5 && fmod(r, 2.0) != 0.0) r -= 1.0;
  return (long)r;
}

int veh_calibrate(const double *acc, const double *gyro, const double *speed, size_t n, double fs,
                  veh_calibration *cal) {
  if (!acc || !gyro || !speed || !cal || !(fs >= 20.0) || n < (size_t)(2 * fs)) return -1;
  double mean[3] = {0, 0, 0};
  size_t count = 0, run_start = 0;
  int in_run = 0;
  for (size_t i = 0; i <= n; i++) {
    int still = 0;
    if (i < n) {
      double s = isnan(speed[i]) ? 99.0 : speed[i];
      const double *g = gyro + 3 * i;
      still = s < STILL_SPEED && norm3(g) < STILL_GYRO;
    }
    if (still && !in_run) { in_run = 1; run_start = i; }
    if (!still && in_run) {
      in_run = 0;
      if ((double)(i - run_start) >= STILL_MIN_S * fs) {
        for (size_t j = run_start; j < i; j++) {
          for (int k = 0; k < 3; k++) mean[k] += acc[3 * j + k];
        }
        count += i - run_start;
      }
    }
  }
  if (count == 0) {
    for (size_t j = 0; j < n; j++) for (int k = 0; k < 3; k++) mean[k] += acc[3 * j + k];
    count = n;
  }
  for (int k = 0; k < 3; k++) mean[k] /= (double)count;
  double g_est = norm3(mean), u[3], e1[3], e2[3];
  for (int k = 0; k < 3; k++) u[k] = mean[k] / g_est;
  static const double ex[3] = {1, 0, 0}, ey[3] = {0, 1, 0};
  cross(u, ex, e1);
  if (norm3(e1) < 0.3) cross(u, ey, e1);
  double l1 = norm3(e1);
  for (int k = 0; k < 3; k++) e1[k] /= l1;
  cross(u, e1, e2);
  long sec = (long)floor((double)n / fs);
  double c1 = 0.0, c2 = 0.0;
  int rows = 0;
  for (long k = 0; k < sec - 1; k++) {
    long i0 = round_half_even(k * fs), i1 = round_half_even((k + 1) * fs);
    if ((size_t)i1 >= n || isnan(speed[i0]) || isnan(speed[i1])) continue;
    double d = speed[i1] - speed[i0];
    if (fabs(d) < 0.3) continue;
    double h[3] = {0, 0, 0};
    for (long j = i0; j < i1; j++) for (int q = 0; q < 3; q++) h[q] += acc[3 * j + q];
    for (int q = 0; q < 3; q++) h[q] /= (double)(i1 - i0);
    double dv = d * fs / (double)(i1 - i0);
    c1 += dv * (h[0] * e1[0] + h[1] * e1[1] + h[2] * e1[2]);
    c2 += dv * (h[0] * e2[0] + h[1] * e2[1] + h[2] * e2[2]);
    rows++;
  }
  int ok = rows >= CAL_MIN_SECONDS;
  double f[3] = {e1[0], e1[1], e1[2]};
  if (ok) {
    double cn = sqrt(c1 * c1 + c2 * c2);
    if (cn > 1e-6) {
      for (int k = 0; k < 3; k++) f[k] = (c1 * e1[k] + c2 * e2[k]) / cn;
    } else {
      ok = 0;
    }
  }
  double left[3];
  cross(u, f, left);
  for (int k = 0; k < 3; k++) {
    cal->rotation[0][k] = f[k];
    cal->rotation[1][k] = left[k];
    cal->rotation[2][k] = u[k];
  }
  cal->gravity_mps2 = g_est;
  cal->ok = ok;
  return 0;
}

/* features._movavg: centred window of w samples, shortened at the ends. */
static void movavg(const double *x, size_t n, long w, double *out, double *cum) {
  if (w < 1) w = 1;
  cum[0] = 0.0;
  for (size_t i = 0; i < n; i++) cum[i + 1] = cum[i] + x[i];
  long half = w / 2;
  for (long i = 0; i < (long)n; i++) {
    long lo = i - half < 0 ? 0 : i - half;
    long hi = i - half + w > (long)n ? (long)n : i - half + w;
    out[i] = (cum[hi] - cum[lo]) / (double)(hi - lo);
  }
}

typedef struct { veh_event *ev; int count, max; } sink;

static void emit(sink *s, int kind, double t0, double t1, double peak) {
  if (s->count < s->max) {
    veh_event e = {kind, t0, t1, peak};
    s->ev[s->count] = e;
  }
  s->count++;
}

static int cmp_speed(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int veh_detect_events(const double *acc, const double *gyro, const double *speed, size_t n, double fs,
                      const veh_config *cfg_in, double *scratch, veh_event *events, int max_events,
                      veh_calibration *cal_out) {
  veh_calibration cal;
  if (!scratch || !events || max_events < 0) return -1;
  for (size_t i = 0; i < 3 * n; i++) if (!isfinite(acc[i]) || !isfinite(gyro[i])) return -1;
  if (veh_calibrate(acc, gyro, speed, n, fs, &cal) != 0) return -1;
  veh_config cfg = cfg_in ? *cfg_in : veh_default_config();
  double *lon = scratch, *lat = scratch + n, *rawh = scratch + 2 * n, *vert = scratch + 3 * n;
  double *tmp = scratch + 4 * n, *cum = scratch + 5 * n, *sp = scratch + 6 * n; /* cum: n + 1 */
  /* tmp holds the raw longitudinal, then lateral, then vertical; sp the speed (NaN -> 0) */
  double (*R)[3] = cal.rotation;
  long w = round_half_even(cfg.smooth_s * fs);
  for (int axis = 0; axis < 3; axis++) {
    for (size_t i = 0; i < n; i++) {
      const double *a = acc + 3 * i;
      tmp[i] = R[axis][0] * a[0] + R[axis][1] * a[1] + R[axis][2] * a[2];
      if (axis == 0) rawh[i] = tmp[i] * tmp[i];
      if (axis == 1) rawh[i] = sqrt(rawh[i] + tmp[i] * tmp[i]);
    }
    if (axis == 0) movavg(tmp, n, w, lon, cum);
    if (axis == 1) movavg(tmp, n, w, lat, cum);
    if (axis == 2) {
      for (size_t i = 0; i < n; i++) tmp[i] -= cal.gravity_mps2;
      movavg(tmp, n, (long)fs, vert, cum);
      for (size_t i = 0; i < n; i++) vert[i] = tmp[i] - vert[i];
    }
  }
  for (size_t i = 0; i < n; i++) sp[i] = isnan(speed[i]) ? 0.0 : speed[i];
  sink s = {events, 0, max_events};
  /* crash: raw horizontal >= crash, runs merged within fs samples; mask +-fs samples around them */
  unsigned char *mask = (unsigned char *)tmp; /* n bytes fit in n doubles */
  memset(mask, 0, n);
  long gap = (long)fs;
  long cur_lo = -1, cur_hi = -1, run_lo = 0;
  for (size_t i = 0; i <= n; i++) {
    int on = i < n && rawh[i] >= cfg.crash_mps2;
    if (on && (i == 0 || !(rawh[i - 1] >= cfg.crash_mps2))) run_lo = (long)i;
    if (!on && i > 0 && rawh[i - 1] >= cfg.crash_mps2) {
      long lo = run_lo, hi = (long)i;
      if (cur_lo >= 0 && lo - cur_hi <= gap) cur_hi = hi;
      else {
        if (cur_lo >= 0) {
          double pk = 0; for (long j = cur_lo; j < cur_hi; j++) if (rawh[j] > pk) pk = rawh[j];
          emit(&s, VEH_CRASH, cur_lo / fs, cur_hi / fs, pk);
          for (long j = cur_lo - gap < 0 ? 0 : cur_lo - gap; j < cur_hi + gap && j < (long)n; j++) mask[j] = 1;
        }
        cur_lo = lo; cur_hi = hi;
      }
    }
  }
  if (cur_lo >= 0) {
    double pk = 0; for (long j = cur_lo; j < cur_hi; j++) if (rawh[j] > pk) pk = rawh[j];
    emit(&s, VEH_CRASH, cur_lo / fs, cur_hi / fs, pk);
    for (long j = cur_lo - gap < 0 ? 0 : cur_lo - gap; j < cur_hi + gap && j < (long)n; j++) mask[j] = 1;
  }
  /* harsh maneuvers: runs of the smoothed signal at or beyond the threshold, outside crashes */
  for (int kind = VEH_HARSH_BRAKE; kind <= VEH_HARSH_CORNER; kind++) {
    double thr = kind == VEH_HARSH_BRAKE ? cfg.brake_mps2 : kind == VEH_HARSH_ACCEL ? cfg.accel_mps2 : cfg.corner_mps2;
    long lo = -1;
    for (size_t i = 0; i <= n; i++) {
      double v = 0.0;
      if (i < n) v = kind == VEH_HARSH_BRAKE ? -lon[i] : kind == VEH_HARSH_ACCEL ? lon[i] : fabs(lat[i]);
      int on = i < n && v >= thr && !mask[i];
      if (on && lo < 0) lo = (long)i;
      if (!on && lo >= 0) {
        if ((double)((long)i - lo) / fs >= cfg.min_duration_s) {
          double pk = -INFINITY;
          for (long j = lo; j < (long)i; j++) {
            double x = kind == VEH_HARSH_BRAKE ? -lon[j] : kind == VEH_HARSH_ACCEL ? lon[j] : fabs(lat[j]);
            if (x > pk) pk = x;
          }
          emit(&s, kind, lo / fs, (double)i / fs, pk);
        }
        lo = -1;
      }
    }
  }
  /* road anomalies: |vert| >= road at speed >= road_min, outside crashes, runs merged within fs samples */
  cur_lo = -1;
  long lo = -1;
  for (size_t i = 0; i <= n; i++) {
    int on = i < n && fabs(vert[i]) >= cfg.road_mps2 && sp[i] >= cfg.road_min_speed_mps && !mask[i];
    if (on && lo < 0) lo = (long)i;
    int close_run = !on && lo >= 0;
    long hi = (long)i;
    if (close_run) {
      if (cur_lo >= 0 && lo - cur_hi <= gap) cur_hi = hi;
      else {
        if (cur_lo >= 0) {
          size_t m = (size_t)(cur_hi - cur_lo);
          memcpy(cum, sp + cur_lo, m * sizeof(double));
          qsort(cum, m, sizeof(double), cmp_speed);
          double med = m % 2 ? cum[m / 2] : 0.5 * (cum[m / 2 - 1] + cum[m / 2]);
          double pk = 0; for (long j = cur_lo; j < cur_hi; j++) if (fabs(vert[j]) > pk) pk = fabs(vert[j]);
          emit(&s, med < cfg.bump_max_speed_mps ? VEH_SPEED_BUMP : VEH_POTHOLE, cur_lo / fs, cur_hi / fs, pk);
        }
        cur_lo = lo; cur_hi = hi;
      }
      lo = -1;
    }
  }
  if (cur_lo >= 0) {
    size_t m = (size_t)(cur_hi - cur_lo);
    memcpy(cum, sp + cur_lo, m * sizeof(double));
    qsort(cum, m, sizeof(double), cmp_speed);
    double med = m % 2 ? cum[m / 2] : 0.5 * (cum[m / 2 - 1] + cum[m / 2]);
    double pk = 0; for (long j = cur_lo; j < cur_hi; j++) if (fabs(vert[j]) > pk) pk = fabs(vert[j]);
    emit(&s, med < cfg.bump_max_speed_mps ? VEH_SPEED_BUMP : VEH_POTHOLE, cur_lo / fs, cur_hi / fs, pk);
  }
  int count = s.count < max_events ? s.count : max_events;
  /* stable insertion sort by start time (Python sorts the same list stably) */
  for (int i = 1; i < count; i++) {
    veh_event e = events[i];
    int j = i - 1;
    while (j >= 0 && events[j].t_start_s > e.t_start_s) { events[j + 1] = events[j]; j--; }
    events[j + 1] = e;
  }
  if (cal_out) *cal_out = cal;
  return count;
}
