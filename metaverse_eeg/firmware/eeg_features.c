/* See eeg_features.h; the steps follow metaverse_eeg/features.py. */
#include "eeg_features.h"

#include <math.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

enum { AF3, AF4, F3, F4, T7, T8, P7, P8 };
static const double band_lo[EEG_N_BANDS] = {1.0, 4.0, 8.0, 14.0, 31.0};
static const double band_hi[EEG_N_BANDS] = {4.0, 8.0, 14.0, 31.0, 50.0};
#define ALPHA 2
#define GAMMA 4

#define NAMES_CH(c) \
  "bp_" c "_delta", "bp_" c "_theta", "bp_" c "_alpha", "bp_" c "_beta", "bp_" c "_gamma"
#define NAMES_DE(c) \
  "de_" c "_delta", "de_" c "_theta", "de_" c "_alpha", "de_" c "_beta", "de_" c "_gamma"
const char *const eeg_feature_names[EEG_N_FEATURES] = {
    NAMES_CH("AF3"), NAMES_CH("AF4"), NAMES_CH("F3"), NAMES_CH("F4"),
    NAMES_CH("T7"),  NAMES_CH("T8"),  NAMES_CH("P7"), NAMES_CH("P8"),
    NAMES_DE("AF3"), NAMES_DE("AF4"), NAMES_DE("F3"), NAMES_DE("F4"),
    NAMES_DE("T7"),  NAMES_DE("T8"),  NAMES_DE("P7"), NAMES_DE("P8"),
    "faa_f", "faa_af", "blink", "emg", "bad_channels"};

void eeg_fft(float *a, int n, int inverse) {
  int i, j, len, k;
  for (i = 1, j = 0; i < n; i++) { /* bit reversal */
    int bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float tr = a[2 * i], ti = a[2 * i + 1];
      a[2 * i] = a[2 * j];
      a[2 * i + 1] = a[2 * j + 1];
      a[2 * j] = tr;
      a[2 * j + 1] = ti;
    }
  }
  for (len = 2; len <= n; len <<= 1) {
    double ang = 2.0 * M_PI / len * (inverse ? 1.0 : -1.0);
    double sr = cos(ang), si = sin(ang); /* one cos / sin per stage: twiddles by recurrence */
    double wr = 1.0, wi = 0.0;
    for (k = 0; k < len / 2; k++) {
      for (i = 0; i < n; i += len) {
        float *u = &a[2 * (i + k)], *v = &a[2 * (i + k + len / 2)];
        double vr = v[0] * wr - v[1] * wi, vi = v[0] * wi + v[1] * wr;
        v[0] = (float)(u[0] - vr);
        v[1] = (float)(u[1] - vi);
        u[0] = (float)(u[0] + vr);
        u[1] = (float)(u[1] + vi);
      }
      {
        double t = wr * sr - wi * si;
        wi = wr * si + wi * sr;
        wr = t;
      }
    }
  }
}

static double mean_of(const float *x, int n) {
  double s = 0.0;
  int i;
  for (i = 0; i < n; i++) s += x[i];
  return s / n;
}

/* Welch band powers of one channel (uV^2): periodic Hann, mean removed per segment, one-sided density. */
static void welch_bands(const float *x, float *buf, double *bp) {
  const int n = EEG_NPERSEG, step = EEG_NPERSEG - EEG_NOVERLAP;
  const double df = (double)EEG_FS_HZ / n;
  static double hann[EEG_NPERSEG], wsum = 0.0;
  double acc[EEG_NPERSEG / 2 + 1];
  int s, i, b, segs = 0;
  if (wsum == 0.0) { /* the periodic Hann window, once */
    for (i = 0; i < n; i++) {
      hann[i] = 0.5 - 0.5 * cos(2.0 * M_PI * i / n);
      wsum += hann[i] * hann[i];
    }
  }
  for (i = 0; i <= n / 2; i++) acc[i] = 0.0;
  for (s = 0; s + n <= EEG_WINDOW_SAMPLES; s += step) {
    double m = mean_of(x + s, n);
    for (i = 0; i < n; i++) {
      buf[2 * i] = (float)((x[s + i] - m) * hann[i]);
      buf[2 * i + 1] = 0.0f;
    }
    eeg_fft(buf, n, 0);
    for (i = 0; i <= n / 2; i++) {
      double p = (double)buf[2 * i] * buf[2 * i] + (double)buf[2 * i + 1] * buf[2 * i + 1];
      p /= (double)EEG_FS_HZ * wsum;
      if (i > 0 && i < n / 2) p *= 2.0;
      acc[i] += p;
    }
    segs++;
  }
  for (b = 0; b < EEG_N_BANDS; b++) {
    double sum = 0.0;
    for (i = 0; i <= n / 2; i++) {
      double f = i * df;
      if (f >= band_lo[b] && f < band_hi[b]) sum += acc[i] / segs;
    }
    bp[b] = sum * df;
  }
}

/* Variance of each band-passed signal from the whole window's spectrum (Parseval). */
static void band_variances(const float *x, float *buf, double *var) {
  const int n = EEG_WINDOW_SAMPLES;
  const double df = (double)EEG_FS_HZ / n;
  double m = mean_of(x, n);
  int i, b;
  for (i = 0; i < n; i++) {
    buf[2 * i] = (float)(x[i] - m);
    buf[2 * i + 1] = 0.0f;
  }
  eeg_fft(buf, n, 0);
  for (b = 0; b < EEG_N_BANDS; b++) var[b] = 0.0;
  for (i = 0; i <= n / 2; i++) {
    double f = i * df, p = (double)buf[2 * i] * buf[2 * i] + (double)buf[2 * i + 1] * buf[2 * i + 1];
    double w = (i == 0 || i == n / 2) ? 1.0 : 2.0;
    for (b = 0; b < EEG_N_BANDS; b++)
      if (f >= band_lo[b] && f < band_hi[b]) var[b] += w * p;
  }
  for (b = 0; b < EEG_N_BANDS; b++) var[b] /= (double)n * n;
}

int eeg_extract(const float *const x[EEG_N_CH], float *scratch, eeg_features *out) {
  double bp[EEG_N_CH][EEG_N_BANDS], var[EEG_N_BANDS], la[EEG_N_CH], peak = 0.0, share = 0.0;
  double mf[2];
  int c, b, i, bad = 0;
  for (c = 0; c < EEG_N_CH; c++)
    for (i = 0; i < EEG_WINDOW_SAMPLES; i++)
      if (!isfinite(x[c][i])) return -1;
  for (c = 0; c < EEG_N_CH; c++) {
    double m = mean_of(x[c], EEG_WINDOW_SAMPLES), ss = 0.0, sd;
    welch_bands(x[c], scratch, bp[c]);
    band_variances(x[c], scratch, var);
    for (b = 0; b < EEG_N_BANDS; b++) {
      out->bp[c][b] = (float)log10(bp[c][b] + EEG_BP_FLOOR);
      out->de[c][b] = (float)(0.5 * log(2.0 * M_PI * exp(1.0) * (var[b] + EEG_VAR_FLOOR)));
    }
    la[c] = log(bp[c][ALPHA] + EEG_BP_FLOOR);
    for (i = 0; i < EEG_WINDOW_SAMPLES; i++) ss += (x[c][i] - m) * (x[c][i] - m);
    sd = sqrt(ss / EEG_WINDOW_SAMPLES);
    if (sd < EEG_FLAT_UV || sd > EEG_WILD_UV) bad++;
  }
  out->faa_f = (float)(la[F4] - la[F3]);
  out->faa_af = (float)(la[AF4] - la[AF3]);
  mf[0] = mean_of(x[AF3], EEG_WINDOW_SAMPLES);
  mf[1] = mean_of(x[AF4], EEG_WINDOW_SAMPLES);
  for (i = 0; i < EEG_WINDOW_SAMPLES; i++) {
    double v = fabs(((x[AF3][i] - mf[0]) + (x[AF4][i] - mf[1])) / 2.0);
    if (v > peak) peak = v;
  }
  for (c = T7; c <= T8; c++) {
    double total = EEG_BP_FLOOR;
    for (b = 0; b < EEG_N_BANDS; b++) total += bp[c][b];
    share += bp[c][GAMMA] / total / 2.0;
  }
  out->blink = peak >= EEG_BLINK_UV ? 1.0f : 0.0f;
  out->emg_share = (float)share;
  out->emg = share >= EEG_EMG_SHARE ? 1.0f : 0.0f;
  out->bad_channels = (float)bad;
  return 0;
}

void eeg_to_raw(const eeg_features *f, float *raw) {
  int c, b, k = 0;
  for (c = 0; c < EEG_N_CH; c++)
    for (b = 0; b < EEG_N_BANDS; b++) raw[k++] = f->bp[c][b];
  for (c = 0; c < EEG_N_CH; c++)
    for (b = 0; b < EEG_N_BANDS; b++) raw[k++] = f->de[c][b];
  raw[k++] = f->faa_f;
  raw[k++] = f->faa_af;
  raw[k++] = f->blink;
  raw[k++] = f->emg;
  raw[k++] = f->bad_channels;
}

void eeg_to_vector(const eeg_features *f, float *vector) {
  float raw[EEG_N_FEATURES];
  int k;
  eeg_to_raw(f, raw);
  for (k = 0; k < EEG_N_FEATURES; k++) {
    double centre, scale, v;
    if (k < 40) {
      centre = 1.0, scale = 0.8;
    } else if (k < 80) {
      centre = 3.3, scale = 0.8;
    } else if (k < 82) {
      centre = 0.0, scale = 1.5;
    } else {
      centre = 0.0, scale = 1.0;
    }
    v = ((double)raw[k] - centre) / scale;
    if (isnan(v)) v = 0.0;
    if (v > EEG_VECTOR_CLIP) v = EEG_VECTOR_CLIP;
    if (v < -EEG_VECTOR_CLIP) v = -EEG_VECTOR_CLIP;
    vector[k] = (float)v;
  }
}
