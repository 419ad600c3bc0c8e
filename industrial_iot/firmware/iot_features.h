/*
 * Industrial IoT on-device DSP: a C99 port of industrial_iot/features.py, step by step (the step
 * numbers in iot_features.c are those of the Python module docstring, which defines the arithmetic).
 * Samples and spectra are float32; sums, means and frequencies are double. The FFT is an in-place
 * iterative radix-2 one (iot_fft). No heap: the caller passes a scratch area of IOT_SCRATCH_FLOATS(n)
 * floats.
 */
#ifndef IOT_FEATURES_H
#define IOT_FEATURES_H

#ifdef __cplusplus
extern "C" {
#endif

#define IOT_N_FEATURES 21
/* scratch floats needed for a window of n samples: a complex n-point buffer and n more floats */
#define IOT_SCRATCH_FLOATS(n) (3 * (n))

/* The window the device samples (industrial_iot.features.FS_HZ / WINDOW_SAMPLES): 10 240 Hz x 8192
 * samples = 0.8 s, df = 1.25 Hz; -D to change (n a power of two, fs / 2 above IOT_ENV_HI_HZ). */
#ifndef IOT_FS_HZ
#define IOT_FS_HZ 10240
#endif
#ifndef IOT_WINDOW_SAMPLES
#define IOT_WINDOW_SAMPLES 8192
#endif
#define IOT_WINDOW_S ((float)IOT_WINDOW_SAMPLES / (float)IOT_FS_HZ)

/* features.py constants */
#define IOT_G 9.80665
#define IOT_V_LO_HZ 10.0
#define IOT_V_HI_HZ 1000.0
#define IOT_ENV_LO_HZ 1500.0
#define IOT_ENV_HI_HZ 4000.0
#define IOT_TOL_BINS 2.0
#define IOT_TOL_FRAC 0.02
#define IOT_ENV_HARMONICS 3
#define IOT_MIN_SAMPLES 256
#define IOT_VECTOR_CLIP 8.0

/* The monitored bearing: ball count, ball and pitch diameters (same unit), contact angle (degrees). */
typedef struct {
  int n_balls;
  double ball_d, pitch_d, contact_deg;
} iot_bearing;

/* Defect frequencies in Hz (features.bearing_frequencies). */
typedef struct {
  double bpfo, bpfi, bsf, ftf;
} iot_defects;

/* Same order as industrial_iot.features.FEATURE_NAMES. NaN where not measurable. */
typedef struct {
  float shaft_hz, v_rms_mm_s, a_rms_g, peak_g, crest, kurtosis;
  float v_0p5x_mm_s, v_1x_mm_s, v_2x_mm_s, v_3x_mm_s, v_halfx_mm_s, v_4_8x_mm_s;
  float a_10_1k_g, a_1k_2k_g, a_2k_4k_g;
  float env_rms_g, env_1x_g, env_ftf_g, env_bpfo_g, env_bpfi_g, env_bsf2_g;
} iot_features;

extern const char *const iot_feature_names[IOT_N_FEATURES];

/* Returns 0, or -1 if the geometry is invalid (n_balls < 3, ball_d <= 0, ball_d >= pitch_d,
 * contact angle outside [0, 90), shaft_hz < 0). */
int iot_bearing_frequencies(double shaft_hz, const iot_bearing *b, iot_defects *out);

/* In-place complex FFT of n (a power of two) points stored re, im, re, im, ...;
 * forward: sum x[i] exp(-2 pi j i k / n); inverse != 0: the + sign, no 1/n scale. */
void iot_fft(float *re_im, int n, int inverse);

/* All features of one window (accel_g: n samples in g, n a power of two >= 256). Returns 0, or -1 if
 * n, fs_hz or the bearing is invalid or the envelope band does not fit below fs_hz / 2. A window with a
 * non-finite sample gives NaN for every feature but shaft_hz; shaft_hz not > 0 gives NaN lines. */
int iot_extract(const float *accel_g, int n, float fs_hz, float shaft_hz, const iot_bearing *bearing,
                float *scratch, iot_features *out);

/* The tiny model's input (features.to_vector): log10(value + eps) where eps > 0, then
 * (y - centre) / scale, clipped to +-8, NaN -> 0. */
void iot_to_vector(const iot_features *f, float v[IOT_N_FEATURES]);

#ifdef __cplusplus
}
#endif

#endif /* IOT_FEATURES_H */
