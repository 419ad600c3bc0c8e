/* Industrial IoT DSP (see iot_features.h; the steps are those of industrial_iot/features.py). */
#include "iot_features.h"

#include <math.h>

#define IOT_PI 3.14159265358979323846

const char *const iot_feature_names[IOT_N_FEATURES] = {
    "shaft_hz",     "v_rms_mm_s",  "a_rms_g",     "peak_g",      "crest",        "kurtosis",
    "v_0p5x_mm_s",  "v_1x_mm_s",   "v_2x_mm_s",   "v_3x_mm_s",   "v_halfx_mm_s", "v_4_8x_mm_s",
    "a_10_1k_g",    "a_1k_2k_g",   "a_2k_4k_g",   "env_rms_g",   "env_1x_g",     "env_ftf_g",
    "env_bpfo_g",   "env_bpfi_g",  "env_bsf2_g",
};

/* to_vector constants (features.VECTOR_EPS, VECTOR_CENTER, VECTOR_SCALE; centre and scale are float32
 * there too) */
static const double vec_eps[IOT_N_FEATURES] = {0.0,  0.01, 1e-4, 1e-4, 1e-3, 1e-3, 0.01, 0.01, 0.01, 0.01, 0.01,
                                               0.01, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5};
static const float vec_center[IOT_N_FEATURES] = {30.0f, -0.1f, -1.1f, -0.5f, 0.6f,  0.5f,  -1.5f,
                                                 -0.2f, -0.7f, -1.0f, -1.5f, -1.0f, -1.1f, -2.2f,
                                                 -1.9f, -2.1f, -3.1f, -3.1f, -2.8f, -2.8f, -2.8f};
static const float vec_scale[IOT_N_FEATURES] = {15.0f, 0.5f, 0.5f, 0.5f, 0.2f, 0.3f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f,
                                                0.5f,  0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};

int iot_bearing_frequencies(double shaft_hz, const iot_bearing *b, iot_defects *out) {
  double r;
  if (!b || b->n_balls < 3 || !(b->ball_d > 0.0) || !(b->ball_d < b->pitch_d) || !(b->contact_deg >= 0.0) ||
      !(b->contact_deg < 90.0) || !(shaft_hz >= 0.0) || !isfinite(b->pitch_d) || !isfinite(shaft_hz))
    return -1;
  r = b->ball_d / b->pitch_d * cos(b->contact_deg * (IOT_PI / 180.0));
  out->bpfo = 0.5 * b->n_balls * shaft_hz * (1.0 - r);
  out->bpfi = 0.5 * b->n_balls * shaft_hz * (1.0 + r);
  out->bsf = b->pitch_d / (2.0 * b->ball_d) * shaft_hz * (1.0 - r * r);
  out->ftf = 0.5 * shaft_hz * (1.0 - r);
  return 0;
}

void iot_fft(float *a, int n, int inverse) {
  int i, j, k, len;
  for (i = 1, j = 0; i < n; i++) { /* bit-reversal permutation */
    int bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float t = a[2 * i];
      a[2 * i] = a[2 * j];
      a[2 * j] = t;
      t = a[2 * i + 1];
      a[2 * i + 1] = a[2 * j + 1];
      a[2 * j + 1] = t;
    }
  }
  for (len = 2; len <= n; len <<= 1) {
    const int half = len >> 1;
    const double ang = (inverse ? 2.0 : -2.0) * IOT_PI / len;
    const double cr = cos(ang), ci = sin(ang);
    double wr = 1.0, wi = 0.0; /* twiddle exp(-+ 2 pi j k / len) by a double-precision rotation */
    for (k = 0; k < half; k++) {
      const float fr = (float)wr, fi = (float)wi;
      double t;
      for (i = k; i < n; i += len) {
        float *p = a + 2 * i, *q = a + 2 * (i + half);
        const float tr = fr * q[0] - fi * q[1], ti = fr * q[1] + fi * q[0];
        q[0] = p[0] - tr;
        q[1] = p[1] - ti;
        p[0] += tr;
        p[1] += ti;
      }
      t = wr;
      wr = wr * cr - wi * ci;
      wi = t * ci + wi * cr;
    }
  }
}

/* Periodic Hann window times v into the complex buffer c (imaginary parts 0). */
static void hann_complex(const float *v, double offset, int n, float *c) {
  const double cr = cos(2.0 * IOT_PI / n), ci = sin(2.0 * IOT_PI / n);
  double wr = 1.0, wi = 0.0, t;
  int i;
  for (i = 0; i < n; i++) {
    c[2 * i] = (float)(((double)v[i] - offset) * (0.5 - 0.5 * wr));
    c[2 * i + 1] = 0.0f;
    t = wr;
    wr = wr * cr - wi * ci;
    wi = t * ci + wi * cr;
  }
}

/* Step 4: first and last bin of [lo, hi]; *k0 > *k1 when the band holds no bin. */
static void band_bins(double lo, double hi, double df, long k_max, long *k0, long *k1) {
  double a = ceil(lo / df), b = floor(hi / df);
  *k0 = a < 1.0 ? 1 : (long)a;
  *k1 = b > (double)k_max ? k_max : (b < 0.0 ? 0 : (long)b);
}

static float band_rms(const float *s, long k_max, double lo, double hi, double df) {
  long k0, k1, k;
  double sum = 0.0;
  band_bins(lo, hi, df, k_max, &k0, &k1);
  if (k0 > k1) return NAN;
  for (k = k0; k <= k1; k++) sum += s[k];
  return (float)sqrt(sum);
}

/* Step 6: sqrt of the summed line powers of s at the m targets (NaN if no line has a bin). */
static float lines(const float *s, long k_max, double df, const double *targets, int m) {
  double total = 0.0;
  int i, hit = 0;
  for (i = 0; i < m; i++) {
    const double f = targets[i];
    const double tol = IOT_TOL_BINS * df > IOT_TOL_FRAC * f ? IOT_TOL_BINS * df : IOT_TOL_FRAC * f;
    long k0, k1, k;
    band_bins(f - tol, f + tol, df, k_max, &k0, &k1);
    if (k0 <= k1) {
      for (k = k0; k <= k1; k++) total += s[k];
      hit = 1;
    }
  }
  return hit ? (float)sqrt(total) : NAN;
}

static float orders_line(const float *s, long k_max, double df, double fr, const double *orders, int m) {
  double t[8];
  int i;
  for (i = 0; i < m; i++) t[i] = orders[i] * fr;
  return lines(s, k_max, df, t, m);
}

static float harmonics_line(const float *s, long k_max, double df, double f1, double fr) {
  double t[IOT_ENV_HARMONICS];
  int h;
  for (h = 0; h < IOT_ENV_HARMONICS; h++) t[h] = (double)(h + 1) * f1 * fr;
  return lines(s, k_max, df, t, IOT_ENV_HARMONICS);
}

int iot_extract(const float *x, int n, float fs_hz, float shaft_hz, const iot_bearing *bearing, float *scratch,
                iot_features *out) {
  static const double o_half[1] = {0.5}, o_1[1] = {1.0}, o_2[1] = {2.0}, o_3[1] = {3.0};
  static const double o_halves[3] = {1.5, 2.5, 3.5}, o_4_8[5] = {4.0, 5.0, 6.0, 7.0, 8.0};
  const double fs = fs_hz, df = fs / n;
  const double fr = (isfinite(shaft_hz) && shaft_hz > 0.0f) ? (double)shaft_hz : NAN;
  float *a = scratch, *b = scratch + 2 * n, *s, *sv, *se;
  long k_lo, k_hi, k_max = n / 2 - 1, kk, m_env;
  double mean = 0.0, s2 = 0.0, s4 = 0.0, peak = 0.0, rms, norm;
  iot_defects d;
  int i, k;
  if (n < IOT_MIN_SAMPLES || (n & (n - 1)) || !(fs_hz > 0.0f) || !isfinite(fs_hz)) return -1;
  if (iot_bearing_frequencies(1.0, bearing, &d) != 0) return -1;
  { /* step 7's geometry is checked before anything else */
    const double lo = ceil(IOT_ENV_LO_HZ / df), hi = floor(IOT_ENV_HI_HZ / df);
    if (!(lo >= 1.0 && lo <= hi && hi <= (double)k_max)) return -1;
    k_lo = (long)lo;
    k_hi = (long)hi;
    for (m_env = 4; m_env < k_hi - k_lo + 1; m_env *= 2) {
    }
  }
  /* step 1 */
  out->shaft_hz = (float)fr;
  out->v_rms_mm_s = out->a_rms_g = out->peak_g = out->crest = out->kurtosis = NAN;
  out->v_0p5x_mm_s = out->v_1x_mm_s = out->v_2x_mm_s = out->v_3x_mm_s = out->v_halfx_mm_s = NAN;
  out->v_4_8x_mm_s = out->a_10_1k_g = out->a_1k_2k_g = out->a_2k_4k_g = NAN;
  out->env_rms_g = out->env_1x_g = out->env_ftf_g = out->env_bpfo_g = out->env_bpfi_g = out->env_bsf2_g = NAN;
  for (i = 0; i < n; i++) {
    if (!isfinite(x[i])) return 0;
    mean += x[i];
  }
  mean /= n;
  /* step 2 */
  for (i = 0; i < n; i++) {
    const double v = (double)x[i] - mean, v2 = v * v;
    s2 += v2;
    s4 += v2 * v2;
    if (fabs(v) > peak) peak = fabs(v);
  }
  rms = sqrt(s2 / n);
  out->a_rms_g = (float)rms;
  out->peak_g = (float)peak;
  if (rms > 0.0) {
    out->crest = (float)(peak / rms);
    out->kurtosis = (float)((s4 / n) / (rms * rms * rms * rms));
  }
  /* step 3: S into b[0 .. n/2), step 5: Sv into b[n/2 .. n) */
  hann_complex(x, mean, n, a);
  iot_fft(a, n, 0);
  s = b;
  sv = b + n / 2;
  norm = 2.0 / (n * (3.0 * n / 8.0));
  s[0] = sv[0] = 0.0f;
  for (k = 1; k < n / 2; k++) {
    const double p = norm * ((double)a[2 * k] * a[2 * k] + (double)a[2 * k + 1] * a[2 * k + 1]);
    const double w = 1000.0 * IOT_G / (2.0 * IOT_PI * (k * df));
    s[k] = (float)p;
    sv[k] = (float)(p * (w * w));
  }
  /* step 4 */
  out->a_10_1k_g = band_rms(s, k_max, 10.0, 1000.0, df);
  out->a_1k_2k_g = band_rms(s, k_max, 1000.0, 2000.0, df);
  out->a_2k_4k_g = band_rms(s, k_max, 2000.0, 4000.0, df);
  /* step 5 */
  out->v_rms_mm_s = band_rms(sv, k_max, IOT_V_LO_HZ, IOT_V_HI_HZ, df);
  /* step 6 */
  if (!isnan(fr)) {
    out->v_0p5x_mm_s = orders_line(sv, k_max, df, fr, o_half, 1);
    out->v_1x_mm_s = orders_line(sv, k_max, df, fr, o_1, 1);
    out->v_2x_mm_s = orders_line(sv, k_max, df, fr, o_2, 1);
    out->v_3x_mm_s = orders_line(sv, k_max, df, fr, o_3, 1);
    out->v_halfx_mm_s = orders_line(sv, k_max, df, fr, o_halves, 3);
    out->v_4_8x_mm_s = orders_line(sv, k_max, df, fr, o_4_8, 5);
  }
  /* step 7: unwindowed spectrum in a; the band's bins to b[0 .. 2M), inverse FFT, envelope into a */
  for (i = 0; i < n; i++) {
    a[2 * i] = (float)((double)x[i] - mean);
    a[2 * i + 1] = 0.0f;
  }
  iot_fft(a, n, 0);
  for (kk = 0; kk < m_env; kk++) {
    const int in_band = kk <= k_hi - k_lo;
    b[2 * kk] = in_band ? a[2 * (k_lo + kk)] : 0.0f;
    b[2 * kk + 1] = in_band ? a[2 * (k_lo + kk) + 1] : 0.0f;
  }
  iot_fft(b, (int)m_env, 1);
  {
    double emean = 0.0, evar = 0.0;
    for (kk = 0; kk < m_env; kk++) {
      a[kk] = (float)(2.0 / n * sqrt((double)b[2 * kk] * b[2 * kk] + (double)b[2 * kk + 1] * b[2 * kk + 1]));
      emean += a[kk];
    }
    emean /= m_env;
    for (kk = 0; kk < m_env; kk++) evar += ((double)a[kk] - emean) * ((double)a[kk] - emean);
    out->env_rms_g = (float)sqrt(evar / m_env);
    if (isnan(fr)) return 0;
    /* step 8 */
    hann_complex(a, emean, (int)m_env, b);
  }
  iot_fft(b, (int)m_env, 0);
  se = a;
  norm = 2.0 / (m_env * (3.0 * m_env / 8.0));
  se[0] = 0.0f;
  for (kk = 1; kk < m_env / 2; kk++)
    se[kk] = (float)(norm * ((double)b[2 * kk] * b[2 * kk] + (double)b[2 * kk + 1] * b[2 * kk + 1]));
  {
    const long ke = m_env / 2 - 1;
    double t = fr;
    out->env_1x_g = lines(se, ke, df, &t, 1);
    t = d.ftf * fr;
    out->env_ftf_g = lines(se, ke, df, &t, 1);
    out->env_bpfo_g = harmonics_line(se, ke, df, d.bpfo, fr);
    out->env_bpfi_g = harmonics_line(se, ke, df, d.bpfi, fr);
    out->env_bsf2_g = harmonics_line(se, ke, df, 2.0 * d.bsf, fr);
  }
  return 0;
}

void iot_to_vector(const iot_features *f, float v[IOT_N_FEATURES]) {
  const float x[IOT_N_FEATURES] = {
      f->shaft_hz,  f->v_rms_mm_s,   f->a_rms_g,     f->peak_g,    f->crest,     f->kurtosis,  f->v_0p5x_mm_s,
      f->v_1x_mm_s, f->v_2x_mm_s,    f->v_3x_mm_s,   f->v_halfx_mm_s, f->v_4_8x_mm_s, f->a_10_1k_g, f->a_1k_2k_g,
      f->a_2k_4k_g, f->env_rms_g,    f->env_1x_g,    f->env_ftf_g, f->env_bpfo_g, f->env_bpfi_g, f->env_bsf2_g,
  };
  int i;
  for (i = 0; i < IOT_N_FEATURES; i++) {
    double y = x[i], z;
    if (vec_eps[i] > 0.0) y = log10((y > 0.0 ? y : (isnan(y) ? y : 0.0)) + vec_eps[i]);
    z = (y - (double)vec_center[i]) / (double)vec_scale[i];
    if (isnan(z)) z = 0.0;
    if (z > IOT_VECTOR_CLIP) z = IOT_VECTOR_CLIP;
    if (z < -IOT_VECTOR_CLIP) z = -IOT_VECTOR_CLIP;
    v[i] = (float)z;
  }
}
