/* See veh_features.h; every step follows vehicles/features.py line by line. */
#include "veh_features.h"

#include <math.h>
#include <string.h>

#define STILL_SPEED 0.3
#define STILL_GYRO 0.05
#define STILL_MIN_S 1.0
#define CAL_MIN_SECONDS 5
#define CAL_ITER 2
#define CANDIDATE_FRACTION 0.6
#define WINDOW_S 2.56
#define RUN_MPS2 2.5
#define VERT_WIDTH_MPS2 2.0
#define R(k) ((size_t)((k) % VEH_RING))

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
static double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

/* Python's round() for the non-negative values used here: half to even. */
static long round_half_even(double x) {
  double r = floor(x + 0.5);
  if (r - x == 0.5 && fmod(r, 2.0) != 0.0) r -= 1.0;
  return (long)r;
}

double veh_unit_speed(const float *gs, long m, long i, double fs) {
  double t = (double)i / fs;
  long k = (long)floor(t), a, b;
  if (m <= 0) return NAN;
  if (k > m - 1) k = m - 1;
  for (a = k; a >= 0 && !isfinite(gs[a]); a--) {
  }
  if (a < 0) return NAN;
  for (b = k + 1; b < m && b - a <= VEH_SPEED_GAP_S && !isfinite(gs[b]); b++) {
  }
  if (b < m && b - a <= VEH_SPEED_GAP_S && isfinite(gs[b]) && t > (double)a)
    return ((double)gs[b] - (double)gs[a]) / (double)(b - a) * (t - (double)a) + (double)gs[a];
  return (double)gs[a];
}

/* features._forward: the forward axis from the fit's sum for the up axis u; 0 if not ok (f = e1) */
static int forward(const double *u, const double *fit, const double *turn, int rows, double *f) {
  static const double ex[3] = {1, 0, 0}, ey[3] = {0, 1, 0};
  double e1[3], e2[3], l, mu[3], c3[3];
  cross(u, ex, e1);
  if (norm3(e1) < 0.3) cross(u, ey, e1);
  l = norm3(e1);
  for (int k = 0; k < 3; k++) e1[k] /= l;
  cross(u, e1, e2);
  for (int k = 0; k < 3; k++) mu[k] = dot3(turn + 3 * k, u);
  cross(mu, u, c3);
  for (int k = 0; k < 3; k++) c3[k] += fit[k];
  double c1 = dot3(c3, e1), c2 = dot3(c3, e2), cn = sqrt(c1 * c1 + c2 * c2);
  if (rows < CAL_MIN_SECONDS || cn <= 1e-6) {
    memcpy(f, e1, sizeof e1);
    return 0;
  }
  for (int k = 0; k < 3; k++) f[k] = (c1 * e1[k] + c2 * e2[k]) / cn;
  return 1;
}

int veh_calibrate(veh_sample_fn sample, void *ctx, long n_all, double fs, veh_calibration *cal) {
  double a[3], g[3], s, mean[3] = {0, 0, 0}, run[3] = {0, 0, 0}, total[3] = {0, 0, 0}, fit[3] = {0, 0, 0};
  double vw[3] = {0, 0, 0}, turn[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0}, s_first = NAN, s_last = NAN;
  long n, i, count = 0, run_start = -1, first = -1, last = -1;
  int rows = 0, k;
  if (!sample || !cal || !(fs >= 20.0) || n_all < (long)(2 * fs)) return -1;
  n = round_half_even(VEH_CAL_S * fs);
  if (n > n_all) n = n_all;
  /* still runs of at least STILL_MIN_S, the whole mean, the speed-weighted gyro, the first/last speed */
  for (i = 0; i <= n; i++) {
    int still = 0;
    if (i < n) {
      sample(ctx, i, a, g, &s);
      still = (isnan(s) ? 99.0 : s) < STILL_SPEED && norm3(g) < STILL_GYRO;
      double v = isnan(s) ? 0.0 : s;
      for (k = 0; k < 3; k++) {
        total[k] += a[k], vw[k] += v * g[k];
        for (int q = 0; q < 3; q++) turn[3 * k + q] += v * a[k] * g[q];
      }
      if (!isnan(s)) {
        if (first < 0) first = i, s_first = s;
        last = i, s_last = s;
      }
    }
    if (still) {
      if (run_start < 0) run_start = i, run[0] = run[1] = run[2] = 0.0;
      for (k = 0; k < 3; k++) run[k] += a[k];
    } else if (run_start >= 0) {
      if ((double)(i - run_start) >= STILL_MIN_S * fs) {
        for (k = 0; k < 3; k++) mean[k] += run[k];
        count += i - run_start;
      }
      run_start = -1;
    }
  }
  int moving = count == 0;
  for (k = 0; k < 3; k++)
    for (int q = 0; q < 3; q++) turn[3 * k + q] /= fs;
  for (k = 0; k < 3; k++) mean[k] = moving ? total[k] / (double)n : mean[k] / (double)count;
  /* the forward fit: per second with a speed change, dv times the mean specific force */
  long sec = (long)floor((double)n / fs);
  for (long q = 0; q < sec - 1; q++) {
    long i0 = round_half_even(q * fs), i1 = round_half_even((q + 1) * fs);
    double s0, s1, h[3] = {0, 0, 0};
    if (i1 >= n) continue;
    sample(ctx, i0, a, g, &s0);
    sample(ctx, i1, a, g, &s1);
    if (isnan(s0) || isnan(s1) || fabs(s1 - s0) < 0.3) continue;
    for (i = i0; i < i1; i++) {
      sample(ctx, i, a, g, &s);
      for (k = 0; k < 3; k++) h[k] += a[k];
    }
    double dv = (s1 - s0) * fs / (double)(i1 - i0);
    for (k = 0; k < 3; k++) fit[k] += dv * (h[k] / (double)(i1 - i0));
    rows++;
  }
  double gu[3] = {mean[0], mean[1], mean[2]}, u[3], f[3], c[3];
  double gn = norm3(gu);
  for (k = 0; k < 3; k++) u[k] = gu[k] / gn;
  if (moving) { /* take the mean linear acceleration out of the mean */
    double dvt = last > first ? (s_last - s_first) * fs / (double)(last - first) : 0.0;
    for (k = 0; k < 3; k++) vw[k] /= (double)n;
    for (int it = 0; it < CAL_ITER; it++) {
      if (!forward(u, fit, turn, rows, f)) break;
      cross(vw, f, c);
      for (k = 0; k < 3; k++) gu[k] = mean[k] - c[k] - dvt * f[k];
      gn = norm3(gu);
      for (k = 0; k < 3; k++) u[k] = gu[k] / gn;
    }
  }
  cal->ok = forward(u, fit, turn, rows, f);
  cross(u, f, c);
  for (k = 0; k < 3; k++) {
    cal->rotation[0][k] = f[k];
    cal->rotation[1][k] = c[k];
    cal->rotation[2][k] = u[k];
  }
  cal->gravity_mps2 = gn;
  return 0;
}

/* ---- the stream ------------------------------------------------------------------------------- */

void veh_stream_init(veh_stream *st, long n, double fs, const veh_config *cfg, const veh_calibration *cal,
                     veh_candidate *cands, int max_cands) {
  memset(st, 0, sizeof *st);
  st->cfg = cfg ? *cfg : veh_default_config();
  st->cal = *cal;
  st->fs = fs;
  st->n = n;
  st->w_s = round_half_even(st->cfg.smooth_s * fs);
  if (st->w_s < 1) st->w_s = 1;
  st->w_v = (long)fs;
  st->gap = (long)fs;
  st->half = round_half_even(WINDOW_S * fs / 2.0);
  st->la_d = (st->w_s - st->w_s / 2 > st->w_v - st->w_v / 2 ? st->w_s - st->w_s / 2 : st->w_v - st->w_v / 2) - 1;
  st->last_crash = st->crash_lo = st->road_lo = st->brake_lo = -1;
  st->harsh_lo[0] = st->harsh_lo[1] = st->harsh_lo[2] = -1;
  st->cands = cands;
  st->max_cands = max_cands;
}

/* features._movavg of a cumulative-sum ring at j, window w */
static double movavg(const veh_stream *st, const double *cum, long j, long w) {
  long half = w / 2, lo = j - half < 0 ? 0 : j - half, hi = j - half + w > st->n ? st->n : j - half + w;
  return (cum[R(hi)] - cum[R(lo)]) / (double)(hi - lo);
}

static void hist_add(unsigned short *h, int nb, double lo, double width, double x) {
  double b = floor((x - lo) / width);
  int k = b < 0 ? 0 : (b > nb - 1 ? nb - 1 : (int)b);
  h[k]++;
}

/* features.hist_percentile */
static double hist_percentile(const unsigned short *h, int nb, double lo, double width, long m, double q) {
  long rank, cum = 0;
  int b;
  if (m == 0) return NAN;
  rank = (long)floor(q * (double)(m - 1) / 100.0 + 0.5);
  for (b = 0; b < nb - 1; b++) {
    cum += h[b];
    if (cum > rank) break;
  }
  return lo + ((double)b + 0.5) * width;
}

/* features.window_features of the window centred on c (clipped to the segment), and the peak */
static void window_features(const veh_stream *st, long c, double *f, double *peak) {
  double fs = st->fs;
  long lo = c - st->half < 0 ? 0 : c - st->half, hi = c + st->half > st->n ? st->n : c + st->half;
  double lmin = INFINITY, lmax = -INFINITY, latmax = 0, vmin = INFINITY, vmax = -INFINITY, vsq = 0;
  double pitch = 0, roll = 0, yaw = 0, hpeak = -INFINITY, jerk = 0, sp = 0;
  long lrun = 0, trun = 0, vwidth = 0;
  for (long i = lo; i < hi; i++) {
    size_t r = R(i);
    double lg = st->lon[r], lt = fabs(st->lat[r]), vz = st->vert[r];
    if (lg < lmin) lmin = lg;
    if (lg > lmax) lmax = lg;
    if (lt > latmax) latmax = lt;
    if (fabs(lg) >= RUN_MPS2) lrun++;
    if (lt >= RUN_MPS2) trun++;
    if (vz < vmin) vmin = vz;
    if (vz > vmax) vmax = vz;
    vsq += vz * vz;
    if (fabs(vz) >= VERT_WIDTH_MPS2) vwidth++;
    if (fabs(st->gyro[r][0]) > roll) roll = fabs(st->gyro[r][0]);
    if (fabs(st->gyro[r][1]) > pitch) pitch = fabs(st->gyro[r][1]);
    if (fabs(st->gyro[r][2]) > yaw) yaw = fabs(st->gyro[r][2]);
    if (st->rawh[r] > hpeak) hpeak = st->rawh[r];
    if (i > lo && fabs(lg - st->lon[R(i - 1)]) * fs > jerk) jerk = fabs(lg - st->lon[R(i - 1)]) * fs;
    sp += st->sp[r];
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
  f[15] = st->sp[R(hi - 1)] - st->sp[R(lo)];
  size_t rc = R(c);
  double pk = fabs(st->lon[rc]);
  if (fabs(st->lat[rc]) > pk) pk = fabs(st->lat[rc]);
  if (fabs(st->vert[rc]) > pk) pk = fabs(st->vert[rc]);
  if (st->rawh[rc] > pk) pk = st->rawh[rc];
  *peak = pk;
}

static void emit_candidate(veh_stream *st, const veh_cand_state *c) {
  if (st->n_cands < st->max_cands) {
    veh_candidate *o = &st->cands[st->n_cands];
    o->lo = c->lo;
    o->hi = c->hi;
    o->centre = c->c;
    memcpy(o->features, c->f, sizeof o->features);
    o->peak_mps2 = c->peak;
  }
  st->n_cands++;
}

/* the closed candidates whose window is complete, in order */
static void drain(veh_stream *st) {
  int k = 0;
  while (k < st->n_wait && st->wait[k].ready) emit_candidate(st, &st->wait[k++]);
  if (k) {
    memmove(st->wait, st->wait + k, (size_t)(st->n_wait - k) * sizeof st->wait[0]);
    st->n_wait -= k;
  }
}

static void close_open(veh_stream *st) {
  if (!st->has_open) return;
  if (st->n_wait < 4) st->wait[st->n_wait++] = st->open;
  st->has_open = 0;
  drain(st);
}

/* features.candidates at sample j, and the features of a centre whose window just completed */
static void candidate_step(veh_stream *st, long j) {
  const veh_config *cfg = &st->cfg;
  size_t r = R(j);
  double lg = st->lon[r], score = -lg / cfg->brake_mps2, x;
  x = lg / cfg->accel_mps2;
  if (x > score) score = x;
  x = fabs(st->lat[r]) / cfg->corner_mps2;
  if (x > score) score = x;
  x = fabs(st->vert[r]) / cfg->road_mps2 * (st->sp[r] >= cfg->road_min_speed_mps ? 1.0 : 0.0);
  if (x > score) score = x;
  x = st->rawh[r] / cfg->crash_mps2;
  if (x > score) score = x;
  int on = score >= CANDIDATE_FRACTION;
  if (on && st->has_open && j - st->open.hi > st->gap) close_open(st);
  if (on && !st->has_open) {
    memset(&st->open, 0, sizeof st->open);
    st->open.lo = j;
    st->open.best = -INFINITY;
    st->has_open = 1;
  }
  if (on) {
    st->open.hi = j + 1;
    if (score > st->open.best) st->open.best = score, st->open.c = j, st->open.ready = 0;
  }
  long last = st->n - 1;
  if (st->has_open && !st->open.ready) {
    long due = st->open.c + st->half - 1 < last ? st->open.c + st->half - 1 : last;
    if (due == j) window_features(st, st->open.c, st->open.f, &st->open.peak), st->open.ready = 1;
  }
  for (int k = 0; k < st->n_wait; k++) {
    veh_cand_state *w = &st->wait[k];
    long due = w->c + st->half - 1 < last ? w->c + st->half - 1 : last;
    if (!w->ready && due == j) window_features(st, w->c, w->f, &w->peak), w->ready = 1;
  }
  drain(st);
  if (!on && st->has_open && j - st->open.hi >= st->gap) close_open(st);
}

/* trip statistics at sample j (vehicle-frame signals complete) */
static void stats_step(veh_stream *st, long j) {
  size_t r = R(j);
  double sp = st->sp[r], lg = st->lon[r];
  st->km_sum += sp;
  st->vsq += st->vert[r] * st->vert[r];
  hist_add(st->h_speed, 800, 0.0, 0.1, sp);
  if (sp > 2.0) {
    st->moving++;
    st->sp_sum += sp;
    hist_add(st->h_long, 2000, -20.0, 0.02, lg);
    hist_add(st->h_lat, 1000, 0.0, 0.02, fabs(st->lat[r]));
    st->yaw_s += st->gyro[r][2];
    st->yaw_sq += st->gyro[r][2] * st->gyro[r][2];
  }
  int on = -lg >= 2.0;
  if (on && st->brake_lo < 0) st->brake_lo = j;
  if (!on && st->brake_lo >= 0) {
    if ((double)(j - st->brake_lo) / st->fs >= 0.3) st->brakes++;
    st->brake_lo = -1;
  }
}

static void jerk_step(veh_stream *st, long j) {
  double v = movavg(st, st->clon, j, (long)st->fs);
  if (j >= 1 && st->sp[R(j)] > 2.0) {
    hist_add(st->h_jerk, 1600, 0.0, 0.05, fabs(v - st->v_prev) * st->fs);
    st->jerk_m++;
  }
  st->v_prev = v;
}

static void road_close(veh_stream *st) {
  double mean = st->road_sum_hi / (double)(st->road_hi - st->road_lo);
  st->rule_counts[mean < st->cfg.bump_max_speed_mps ? VEH_SPEED_BUMP : VEH_POTHOLE]++;
  st->road_lo = -1;
}

static void harsh_close(veh_stream *st, int kind, long end) {
  if ((double)(end - st->harsh_lo[kind]) / st->fs >= st->cfg.min_duration_s) st->rule_counts[kind]++;
  st->harsh_lo[kind] = -1;
}

/* features.detect_in at sample r: everything within gap samples after it has arrived */
static void rule_step(veh_stream *st, long r) {
  const veh_config *cfg = &st->cfg;
  long until = r + st->gap < st->n - 1 ? r + st->gap : st->n - 1;
  for (; st->cs_next <= until; st->cs_next++)
    if (st->rawh[R(st->cs_next)] >= cfg->crash_mps2) st->last_crash = st->cs_next;
  int mask = st->last_crash >= 0 && st->last_crash >= r - st->gap;
  size_t q = R(r);
  if (st->rawh[q] >= cfg->crash_mps2) {
    if (st->crash_lo >= 0 && r - st->crash_hi > st->gap) st->rule_counts[VEH_CRASH]++, st->crash_lo = -1;
    if (st->crash_lo < 0) st->crash_lo = r;
    st->crash_hi = r + 1;
  }
  double lg = st->lon[q], sig[3] = {-lg, lg, fabs(st->lat[q])};
  double thr[3] = {cfg->brake_mps2, cfg->accel_mps2, cfg->corner_mps2};
  for (int k = 0; k < 3; k++) {
    int on = sig[k] >= thr[k] && !mask;
    if (on && st->harsh_lo[k] < 0) st->harsh_lo[k] = r;
    if (!on && st->harsh_lo[k] >= 0) harsh_close(st, k, r);
  }
  if (st->road_lo >= 0) st->road_sum += st->sp[q];
  int on = fabs(st->vert[q]) >= cfg->road_mps2 && st->sp[q] >= cfg->road_min_speed_mps && !mask;
  if (on) {
    if (st->road_lo >= 0 && r - st->road_hi > st->gap) road_close(st);
    if (st->road_lo < 0) st->road_lo = r, st->road_sum = st->sp[q];
    st->road_hi = r + 1;
    st->road_sum_hi = st->road_sum;
  }
}

static void advance(veh_stream *st, int final) {
  long avail = st->n_in - 1;
  while (st->d_next < st->n && (final || st->d_next + st->la_d <= avail)) {
    long j = st->d_next;
    size_t r = R(j);
    st->lon[r] = movavg(st, st->cx, j, st->w_s);
    st->lat[r] = movavg(st, st->cy, j, st->w_s);
    st->vert[r] = st->vz[r] - movavg(st, st->cz, j, st->w_v);
    st->clon[R(j + 1)] = st->clon[r] + st->lon[r];
    candidate_step(st, j);
    stats_step(st, j);
    st->d_next++;
  }
  int all = st->d_next == st->n;
  long la_j = (long)st->fs - (long)st->fs / 2 - 1;
  while (st->j_next < st->d_next && (all || st->j_next + la_j <= st->d_next - 1)) jerk_step(st, st->j_next++);
  while (st->r_next < st->d_next && (all || st->r_next + st->gap <= avail)) rule_step(st, st->r_next++);
}

void veh_stream_push(veh_stream *st, const double *a, const double *g, double speed) {
  long i = st->n_in;
  double av[3], gv[3];
  if (i >= st->n) return;
  for (int k = 0; k < 3; k++) {
    const double *row = st->cal.rotation[k];
    av[k] = row[0] * a[0] + row[1] * a[1] + row[2] * a[2];
    gv[k] = row[0] * g[0] + row[1] * g[1] + row[2] * g[2];
  }
  size_t r = R(i), r1 = R(i + 1);
  st->vz[r] = av[2] - st->cal.gravity_mps2;
  st->rawh[r] = sqrt(av[0] * av[0] + av[1] * av[1]);
  memcpy(st->gyro[r], gv, sizeof gv);
  st->sp[r] = isnan(speed) ? 0.0 : speed;
  if (i == 0) st->cx[0] = st->cy[0] = st->cz[0] = st->clon[0] = 0.0;
  st->cx[r1] = st->cx[r] + av[0];
  st->cy[r1] = st->cy[r] + av[1];
  st->cz[r1] = st->cz[r] + st->vz[r];
  st->n_in++;
  advance(st, 0);
}

double veh_stream_finish(veh_stream *st, double *out) {
  double fs = st->fs, km;
  long m;
  advance(st, 1);
  for (int k = 0; k < 3; k++)
    if (st->harsh_lo[k] >= 0) harsh_close(st, k, st->n);
  if (st->crash_lo >= 0) st->rule_counts[VEH_CRASH]++, st->crash_lo = -1;
  if (st->road_lo >= 0) road_close(st);
  if (st->brake_lo >= 0 && (double)(st->n - st->brake_lo) / fs >= 0.3) st->brakes++;
  st->brake_lo = -1;
  close_open(st);
  m = st->moving;
  km = st->km_sum / fs / 1000.0;
  if (m == 0) {
    for (int k = 0; k < VEH_N_STATS; k++) out[k] = 0.0;
    return km;
  }
  double ym = st->yaw_s / (double)m, var = st->yaw_sq / (double)m - ym * ym;
  out[0] = st->sp_sum / (double)m;
  out[1] = hist_percentile(st->h_speed, 800, 0.0, 0.1, st->n, 95.0);
  out[2] = hist_percentile(st->h_long, 2000, -20.0, 0.02, m, 5.0);
  out[3] = hist_percentile(st->h_long, 2000, -20.0, 0.02, m, 95.0);
  out[4] = hist_percentile(st->h_lat, 1000, 0.0, 0.02, m, 95.0);
  out[5] = hist_percentile(st->h_jerk, 1600, 0.0, 0.05, st->jerk_m, 95.0);
  out[6] = sqrt(var > 0.0 ? var : 0.0);
  out[7] = sqrt(st->vsq / (double)st->n);
  out[8] = (double)st->brakes / (km > 0.1 ? km : 0.1);
  out[9] = (double)m / fs;
  return km;
}
