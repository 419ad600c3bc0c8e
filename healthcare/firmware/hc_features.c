/* Healthcare on-device DSP, ported from healthcare/features.py (see hc_features.h). */
#include "hc_features.h"

#include <math.h>

#define OFF_WRIST_DC 10000.0
#define BP_HIGH_HZ 4.0
#define BP_LOW_HZ 0.5
#define BETA 0.02
#define REFRACTORY_S 0.3
#define REFRACTORY_FRAC 0.65
#define REFRACTORY_MAX_S 0.6
#define PERIOD_FRAC 0.8
#define DIASTOLIC_HEIGHT 0.45
#define PEAK_SEARCH_S 0.3
#define PEAK_FRAC 0.35
#define HC_MAX_CAND 256
#define IBI_MIN_S 0.27
#define IBI_MAX_S 2.0
#define MIN_BEATS 5
#define MIN_PERFUSION 0.0005
#define MIN_WINDOW_S 8.0
#define RR_LO_BPM 6.0
#define RR_STEP_BPM 0.5
#define RR_N 61 /* 6.0, 6.5, ..., 36.0 */
#define MOTION_OK_G 0.1
#define MOTION_BAD_G 0.3
#define HR_Q_IBI_MIN 0.94
#define HR_Q_CORR_MIN 0.86
#define HR_PERIOD_TOL 0.15
#define HR_GAP_MAX 1.5
#define HR_EDGE_MAX 2.0
#define VECTOR_CLIP 8.0f
#define PI_D 3.14159265358979323846

const char *const hc_feature_names[HC_N_FEATURES] = {"hr_bpm", "hrv_rmssd_ms", "hrv_sdnn_ms", "spo2_pct",
                                                     "rr_bpm", "temp_c", "motion_g", "quality"};
static const float VECTOR_CENTER[HC_N_FEATURES] = {75.0f, 40.0f, 50.0f, 96.0f, 16.0f, 36.8f, 0.05f, 0.5f};
static const float VECTOR_SCALE[HC_N_FEATURES] = {25.0f, 40.0f, 40.0f, 4.0f, 6.0f, 1.0f, 0.1f, 0.5f};

/* Python's round(): half to even. */
static int round_half_even(double x) {
  double f = floor(x), d = x - f;
  int i = (int)f;
  if (d > 0.5 || (d == 0.5 && (i & 1))) i++;
  return i;
}

static double mean_of(const float *x, int n) {
  double s = 0.0;
  int i;
  for (i = 0; i < n; i++) s += x[i];
  return s / n;
}

/* Step 2: bp = EMA(fc=4 Hz) - EMA(fc=0.5 Hz), both started at x[0]. The DC `c` is removed first:
 * both filters pass a constant unchanged, so the difference is the same and float32 keeps precision. */
static void bandpass(const float *x, int n, double c, float fs, float *bp) {
  float a_hi = (float)(1.0 - exp(-2.0 * PI_D * BP_HIGH_HZ / fs));
  float a_lo = (float)(1.0 - exp(-2.0 * PI_D * BP_LOW_HZ / fs));
  float hi = (float)(x[0] - c), lo = hi;
  int i;
  bp[0] = 0.0f;
  for (i = 1; i < n; i++) {
    float v = (float)(x[i] - c);
    hi += a_hi * (v - hi);
    lo += a_lo * (v - lo);
    bp[i] = hi - lo;
  }
}

/* Centred moving average over 2*(width/2)+1 samples, the mean of those available near the edges. */
static void centred_mean(const float *x, int n, int width, double offset, float *out) {
  int h = width / 2, lo = 0, hi = 0, i;
  double s = 0.0;
  for (i = 0; i < n; i++) {
    int want_lo = i - h < 0 ? 0 : i - h, want_hi = i + h + 1 > n ? n : i + h + 1;
    while (hi < want_hi) s += x[hi++] - offset;
    while (lo < want_lo) s -= x[lo++] - offset;
    out[i] = (float)(s / (hi - lo));
  }
}

static double parabolic(double ym, double y0, double yp) {
  double den = ym - 2.0 * y0 + yp, d;
  if (den >= 0.0) return 0.0;
  d = 0.5 * (ym - yp) / den;
  return d > 0.5 ? 0.5 : (d < -0.5 ? -0.5 : d);
}

static void sort_doubles(double *a, int n);

static int ppg_polarity = 1;

int hc_set_ppg_polarity(int polarity) {
  if (polarity != 1 && polarity != -1) return -1;
  ppg_polarity = polarity;
  return 0;
}

/* Step 3a: the beat period in samples (0: none). r(k) = sum_i bp[i] bp[i+k] in double; r: scratch of n
 * floats (the lags' r, kept as float). */
static int period_lag(const float *bp, int n, float fs, float *r) {
  int k_lo = (int)ceil(IBI_MIN_S * fs), k_hi = (int)floor(IBI_MAX_S * fs), k, i, found = 0;
  double best = 0.0;
  if (k_lo < 1) k_lo = 1;
  if (k_hi > n - 1) k_hi = n - 1;
  if (k_hi - k_lo < 2) return 0;
  for (k = k_lo; k <= k_hi; k++) {
    double s = 0.0;
    for (i = 0; i + k < n; i++) s += (double)bp[i] * (double)bp[i + k];
    r[k - k_lo] = (float)s;
  }
  for (k = 1; k < k_hi - k_lo; k++) /* peaks: r[k-1] < r[k] >= r[k+1] and r[k] > 0 */
    if (r[k] > r[k - 1] && r[k] >= r[k + 1] && r[k] > 0.0f && (!found || r[k] > best)) {
      best = r[k];
      found = 1;
    }
  if (!found) return 0;
  for (k = 1; k < k_hi - k_lo; k++) /* the shortest peak lag with r >= PERIOD_FRAC x the largest */
    if (r[k] > r[k - 1] && r[k] >= r[k + 1] && r[k] > 0.0f && (double)r[k] >= PERIOD_FRAC * best) break;
  return k_lo + k;
}

/* Step 3: beat indices and times on the upstroke slope (the refractory rules as in features.py); returns
 * the number of beats; *period: K of step 3a (0: none, or no candidate at all).
 * z, ma1, ma2: scratch of n floats. */
static int detect(const float *bp, int n, float fs, float *z, float *ma1, float *ma2, int *idx, double *t,
                  int *period) {
  int w1 = 2 * round_half_even(0.055 * fs) + 1, w2 = 2 * round_half_even(0.333 * fs) + 1;
  int search = round_half_even(PEAK_SEARCH_S * fs);
  double refractory = REFRACTORY_S * fs, diastolic, zmean, min_amp;
  int cand_p[HC_MAX_CAND];
  double cand_a[HC_MAX_CAND], kept_a[HC_MAX_BEATS], sorted[HC_MAX_CAND];
  int i, kept = 0, n_cand = 0, run_start = -1;
  /* d = slope (kept in ma2 until the moving averages need it), z = max(d, 0)^2 */
  z[0] = 0.0f;
  for (i = 1; i < n; i++) {
    float d = bp[i] - bp[i - 1];
    z[i] = d > 0.0f ? d * d : 0.0f;
  }
  zmean = mean_of(z, n);
  centred_mean(z, n, w1, 0.0, ma1);
  centred_mean(z, n, w2, 0.0, ma2);
  for (i = 0; i <= n; i++) {
    int above = i < n && (double)ma1[i] > (double)ma2[i] + BETA * zmean;
    if (above && run_start < 0) run_start = i;
    if (!above && run_start >= 0) {
      int s = run_start, e = i, u, j, p, lo, hi;
      float best;
      run_start = -1;
      if (e - s < w1) continue;
      /* u = index of the largest slope in the run (first on ties); slope recomputed from bp */
      for (u = s, best = (s > 0 ? bp[s] - bp[s - 1] : 0.0f), j = s + 1; j < e; j++) {
        float d = bp[j] - bp[j - 1];
        if (d > best) {
          best = d;
          u = j;
        }
      }
      lo = u > 1 ? u : 1;
      hi = u + search < n - 1 ? u + search : n - 1;
      for (p = lo; p < hi; p++) {
        if (bp[p] >= bp[p + 1]) {
          float mn = bp[u];
          for (j = (u - search > 0 ? u - search : 0); j <= u; j++)
            if (bp[j] < mn) mn = bp[j];
          if (n_cand < HC_MAX_CAND) {
            cand_p[n_cand] = p;
            cand_a[n_cand++] = (double)bp[p] - mn;
          }
          break;
        }
      }
    }
  }
  *period = 0;
  if (n_cand == 0) return 0;
  *period = period_lag(bp, n, fs, ma1); /* ma1 is free once the runs are found */
  diastolic = REFRACTORY_FRAC * *period;
  if (diastolic > REFRACTORY_MAX_S * fs) diastolic = REFRACTORY_MAX_S * fs;
  if (diastolic < refractory) diastolic = refractory;
  for (i = 0; i < n_cand; i++) sorted[i] = cand_a[i];
  sort_doubles(sorted, n_cand);
  min_amp = PEAK_FRAC * sorted[(3 * (n_cand - 1)) / 4];
  for (i = 0; i < n_cand; i++) {
    int p = cand_p[i];
    double a = cand_a[i];
    if (a < min_amp) continue;
    if (kept && p - idx[kept - 1] < refractory) {
      if (a > kept_a[kept - 1]) {
        idx[kept - 1] = p;
        kept_a[kept - 1] = a;
      }
      continue;
    }
    /* the diastolic wave of the previous beat: within the diastolic window and below DIASTOLIC_HEIGHT of it */
    if (kept && p - idx[kept - 1] < diastolic && (double)bp[p] < DIASTOLIC_HEIGHT * (double)bp[idx[kept - 1]])
      continue;
    if (kept < HC_MAX_BEATS) {
      idx[kept] = p;
      kept_a[kept++] = a;
    }
  }
  for (i = 0; i < kept; i++) {
    int p = idx[i];
    t[i] = (p + parabolic(bp[p - 1], bp[p], bp[p + 1])) / fs;
  }
  return kept;
}

static void sort_doubles(double *a, int n) { /* insertion sort: n <= HC_MAX_BEATS */
  int i, j;
  for (i = 1; i < n; i++) {
    double v = a[i];
    for (j = i - 1; j >= 0 && a[j] > v; j--) a[j + 1] = a[j];
    a[j + 1] = v;
  }
}

static double median_of(const double *x, int n, double *tmp) {
  int i;
  for (i = 0; i < n; i++) tmp[i] = x[i];
  sort_doubles(tmp, n);
  return (n & 1) ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

/* |sum_i x[i] exp(-j w i)|^2 by a rotating phasor (renormalised every 64 steps). */
static double power_at(const float *x, int n, double w) {
  double c = cos(w), s = sin(w), pr = 1.0, pi = 0.0, re = 0.0, im = 0.0;
  int i;
  for (i = 0; i < n; i++) {
    double npr;
    re += x[i] * pr;
    im -= x[i] * pi;
    npr = pr * c - pi * s;
    pi = pr * s + pi * c;
    pr = npr;
    if ((i & 63) == 63) {
      double m = sqrt(pr * pr + pi * pi);
      pr /= m;
      pi /= m;
    }
  }
  return re * re + im * im;
}

/* Step 6. bw: scratch of n floats. am/tb: the ac_k and beat times of the beats in ks. */
static double resp_rate(const float *ir, int n, double dc, float fs, double m_ibi, const double *tb,
                        const double *am, int n_am, float *bw) {
  double p_bw[RR_N], p_am[RR_N], score[RR_N], max_bw = 0.0, max_am = 0.0, best;
  double sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0, slope, icept, am_mean = 0.0;
  int width = round_half_even(m_ibi * fs), i, k, kbest;
  if (width < 1) width = 1;
  centred_mean(ir, n, width, dc, bw);
  for (i = 0; i < n; i++) { /* least-squares line, as np.polyfit(i, bw, 1) */
    sx += i;
    sy += bw[i];
    sxx += (double)i * i;
    sxy += (double)i * bw[i];
  }
  slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  icept = (sy - slope * sx) / n;
  for (i = 0; i < n; i++)
    bw[i] = (float)((bw[i] - (slope * i + icept)) * (0.5 - 0.5 * cos(2.0 * PI_D * i / (n - 1))));
  for (k = 0; k < RR_N; k++) {
    double f = RR_LO_BPM + RR_STEP_BPM * k;
    p_bw[k] = power_at(bw, n, 2.0 * PI_D * f / (60.0 * fs));
    if (p_bw[k] > max_bw) max_bw = p_bw[k];
    p_am[k] = 0.0;
  }
  if (n_am >= 4 && tb[n_am - 1] > tb[0]) {
    for (i = 0; i < n_am; i++) am_mean += am[i];
    am_mean /= n_am;
    for (k = 0; k < RR_N; k++) {
      double f = RR_LO_BPM + RR_STEP_BPM * k, re = 0.0, im = 0.0;
      for (i = 0; i < n_am; i++) {
        double a = (am[i] - am_mean) * (0.5 - 0.5 * cos(2.0 * PI_D * (tb[i] - tb[0]) / (tb[n_am - 1] - tb[0])));
        double arg = 2.0 * PI_D * f / 60.0 * tb[i];
        re += a * cos(arg);
        im -= a * sin(arg);
      }
      p_am[k] = re * re + im * im;
      if (p_am[k] > max_am) max_am = p_am[k];
    }
  }
  for (k = 0; k < RR_N; k++)
    score[k] = (max_bw > 0.0 ? p_bw[k] / max_bw : 0.0) + (max_am > 0.0 ? p_am[k] / max_am : 0.0);
  for (kbest = 0, k = 1; k < RR_N; k++)
    if (score[k] > score[kbest]) kbest = k;
  best = RR_LO_BPM + RR_STEP_BPM * kbest;
  if (kbest > 0 && kbest < RR_N - 1)
    best += RR_STEP_BPM * parabolic(score[kbest - 1], score[kbest], score[kbest + 1]);
  return best;
}

/* Step 8, q_corr: mean Pearson correlation of beat segments with their mean segment. tmpl: scratch. */
static double segment_corr(const float *bp, int n, const int *idx, int nb, double m_ibi, float fs, float *tmpl) {
  int pre = round_half_even(0.25 * m_ibi * fs), len = round_half_even(0.6 * m_ibi * fs);
  int b, i, ok = 0;
  double tm = 0.0, tss = 0.0, rsum = 0.0;
  if (len < 3) return 0.0;
  for (i = 0; i < len; i++) tmpl[i] = 0.0f;
  for (b = 0; b < nb; b++) {
    int s = idx[b] - pre;
    double m;
    if (s < 0 || s + len > n) continue;
    ok++;
    m = mean_of(bp + s, len);
    for (i = 0; i < len; i++) tmpl[i] += (float)(bp[s + i] - m);
  }
  if (ok < 3) return 0.0;
  for (i = 0; i < len; i++) tm += tmpl[i] / ok;
  tm /= len;
  for (i = 0; i < len; i++) {
    tmpl[i] = (float)(tmpl[i] / ok - tm);
    tss += (double)tmpl[i] * tmpl[i];
  }
  for (b = 0; b < nb; b++) {
    int s = idx[b] - pre;
    double m, ss = 0.0, dot = 0.0, den;
    if (s < 0 || s + len > n) continue;
    m = mean_of(bp + s, len);
    for (i = 0; i < len; i++) {
      double d = bp[s + i] - m;
      ss += d * d;
      dot += d * tmpl[i];
    }
    den = sqrt(ss * tss);
    rsum += den > 0.0 ? dot / den : 0.0;
  }
  rsum /= ok;
  return rsum > 0.0 ? rsum : 0.0;
}

int hc_extract(const float *ppg_red, const float *ppg_ir, const float *acc_x, const float *acc_y,
               const float *acc_z, int n, float temp_c, float fs_hz, float *scratch, hc_features *out) {
  float *bp_ir = scratch, *bp_red = scratch + n, *s0 = scratch + 2 * n, *s1 = scratch + 3 * n,
        *s2 = scratch + 4 * n;
  int idx[HC_MAX_BEATS], ks[HC_MAX_BEATS], nb, n_valid = 0, n_ks = 0, n_pair = 0, k, i, period = 0;
  double t[HC_MAX_BEATS], ibi[HC_MAX_BEATS], good[HC_MAX_BEATS], tmp[HC_MAX_BEATS];
  double ac_ir[HC_MAX_BEATS], ac_red[HC_MAX_BEATS], tks[HC_MAX_BEATS];
  double dc_ir, dc_red, msum = 0.0, msq = 0.0, motion, q_motion, gsum = 0.0, gss = 0.0, psum = 0.0;
  double m_ibi, ac_ir_mean = 0.0, ac_red_mean = 0.0, q_ibi = 0.0, q_corr, max_ibi = 0.0, lead, tail;
  int mag_nan = 0;
  if (!(fs_hz > 0.0f) || n < 3 || n < MIN_WINDOW_S * fs_hz) return -1;

  /* step 7: motion = population std of |acc| */
  for (i = 0; i < n; i++) {
    double m = sqrt((double)acc_x[i] * acc_x[i] + (double)acc_y[i] * acc_y[i] + (double)acc_z[i] * acc_z[i]);
    if (m != m) mag_nan = 1;
    s0[i] = (float)m;
    msum += m;
  }
  motion = NAN;
  if (!mag_nan) {
    double mu = msum / n;
    for (i = 0; i < n; i++) msq += (s0[i] - mu) * (s0[i] - mu);
    motion = sqrt(msq / n);
  }
  q_motion = (motion != motion) ? 1.0 : (MOTION_BAD_G - motion) / (MOTION_BAD_G - MOTION_OK_G);
  if (q_motion < 0.0) q_motion = 0.0;
  if (q_motion > 1.0) q_motion = 1.0;

  out->hr_bpm = out->hrv_rmssd_ms = out->hrv_sdnn_ms = out->spo2_pct = out->rr_bpm = NAN;
  out->temp_c = NAN;
  out->motion_g = (float)motion;
  out->quality = 0.0f;
  out->hr_good = 0;

  /* step 1: DC and the off-wrist test */
  dc_ir = mean_of(ppg_ir, n);
  dc_red = mean_of(ppg_red, n);
  if (!(dc_ir >= OFF_WRIST_DC)) return 0;
  out->temp_c = isfinite(temp_c) ? temp_c : NAN; /* step 9 */

  /* steps 2-3 */
  bandpass(ppg_ir, n, dc_ir, fs_hz, bp_ir);
  bandpass(ppg_red, n, dc_red, fs_hz, bp_red);
  if (ppg_polarity < 0)
    for (i = 0; i < n; i++) {
      bp_ir[i] = -bp_ir[i];
      bp_red[i] = -bp_red[i];
    }
  nb = detect(bp_ir, n, fs_hz, s0, s1, s2, idx, t, &period);

  /* step 4 */
  for (k = 0; k + 1 < nb; k++) {
    ibi[k] = t[k + 1] - t[k];
    if (ibi[k] >= IBI_MIN_S && ibi[k] <= IBI_MAX_S) {
      good[n_valid++] = ibi[k];
      ks[n_ks++] = k + 1;
    }
  }
  if (nb < MIN_BEATS || n_valid < MIN_BEATS - 1) return 0;
  for (k = 0; k < n_valid; k++) gsum += good[k];
  gsum /= n_valid;
  for (k = 0; k < n_valid; k++) gss += (good[k] - gsum) * (good[k] - gsum);
  out->hr_bpm = (float)(60.0 / gsum);
  out->hrv_sdnn_ms = (float)(1000.0 * sqrt(gss / (n_valid - 1)));
  for (k = 0; k + 2 < nb; k++) {
    int v0 = ibi[k] >= IBI_MIN_S && ibi[k] <= IBI_MAX_S, v1 = ibi[k + 1] >= IBI_MIN_S && ibi[k + 1] <= IBI_MAX_S;
    if (v0 && v1) {
      double d = ibi[k + 1] - ibi[k];
      psum += d * d;
      n_pair++;
    }
  }
  if (n_pair) out->hrv_rmssd_ms = (float)(1000.0 * sqrt(psum / n_pair));

  /* step 5: per-beat AC at the IR beat indices */
  for (i = 0; i < n_ks; i++) {
    int kk = ks[i], j;
    float mn_ir = bp_ir[idx[kk - 1]], mn_red = bp_red[idx[kk - 1]];
    for (j = idx[kk - 1]; j <= idx[kk]; j++) {
      if (bp_ir[j] < mn_ir) mn_ir = bp_ir[j];
      if (bp_red[j] < mn_red) mn_red = bp_red[j];
    }
    ac_ir[i] = (double)bp_ir[idx[kk]] - mn_ir;
    ac_red[i] = (double)bp_red[idx[kk]] - mn_red;
    ac_ir_mean += ac_ir[i];
    ac_red_mean += ac_red[i];
    tks[i] = t[kk];
  }
  ac_ir_mean /= n_ks;
  ac_red_mean /= n_ks;
  if (!(ac_ir_mean >= MIN_PERFUSION * dc_ir)) { /* no pulsatile signal: the beats are noise (as step 4) */
    out->hr_bpm = out->hrv_rmssd_ms = out->hrv_sdnn_ms = NAN;
    return 0;
  }
  if (ac_ir_mean > 0.0 && dc_red > 0.0) {
    double r = (ac_red_mean / dc_red) / (ac_ir_mean / dc_ir), spo2 = 110.0 - 25.0 * r;
    if (isfinite(r)) out->spo2_pct = (float)(spo2 > 100.0 ? 100.0 : (spo2 < 0.0 ? 0.0 : spo2));
  }

  /* step 6 */
  m_ibi = median_of(good, n_valid, tmp);
  out->rr_bpm = (float)resp_rate(ppg_ir, n, dc_ir, fs_hz, m_ibi, tks, ac_ir, n_ks, s0);

  /* step 8 */
  for (k = 0; k + 1 < nb; k++)
    if (ibi[k] >= IBI_MIN_S && ibi[k] <= IBI_MAX_S && ibi[k] >= 0.5 * m_ibi && ibi[k] <= 1.5 * m_ibi) q_ibi += 1.0;
  q_ibi /= (nb - 1);
  q_corr = segment_corr(bp_ir, n, idx, nb, m_ibi, fs_hz, s1);
  out->quality = (float)(q_ibi * q_corr * q_motion);

  /* step 10: HR quality (features.hr_good) */
  for (k = 0; k + 1 < nb; k++)
    if (ibi[k] > max_ibi) max_ibi = ibi[k];
  lead = t[0];
  tail = (double)n / fs_hz - t[nb - 1];
  out->hr_good = q_motion > 0.0 && q_ibi >= HR_Q_IBI_MIN && q_corr >= HR_Q_CORR_MIN && period > 0 &&
                 fabs(60.0 * fs_hz / period / (60.0 / gsum) - 1.0) <= HR_PERIOD_TOL && max_ibi <= HR_GAP_MAX * m_ibi &&
                 lead <= HR_EDGE_MAX * m_ibi && tail <= HR_EDGE_MAX * m_ibi;
  return 0;
}

void hc_to_vector(const hc_features *f, float v[HC_N_FEATURES]) {
  const float x[HC_N_FEATURES] = {f->hr_bpm, f->hrv_rmssd_ms, f->hrv_sdnn_ms, f->spo2_pct,
                                  f->rr_bpm, f->temp_c, f->motion_g, f->quality};
  int i;
  for (i = 0; i < HC_N_FEATURES; i++) {
    float y = (x[i] - VECTOR_CENTER[i]) / VECTOR_SCALE[i];
    if (y != y) y = 0.0f;
    v[i] = y > VECTOR_CLIP ? VECTOR_CLIP : (y < -VECTOR_CLIP ? -VECTOR_CLIP : y);
  }
}
