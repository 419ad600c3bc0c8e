/*
 * Healthcare on-device DSP: a C99 port of healthcare/features.py, step by step (the step numbers in
 * hc_features.c are those of the Python module docstring). Samples are float32; sums, means and the
 * least-squares fit accumulate in double so that the 18-bit PPG counts lose nothing. No heap: the
 * caller passes a scratch area of HC_SCRATCH_FLOATS(n) floats.
 */
#ifndef HC_FEATURES_H
#define HC_FEATURES_H

#ifdef __cplusplus
extern "C" {
#endif

#define HC_N_FEATURES 8
#define HC_MAX_BEATS 128
/* scratch floats needed for a window of n samples */
#define HC_SCRATCH_FLOATS(n) (5 * (n))

/* The window the device samples (healthcare.signals.CohortConfig: 25 Hz, 30 s); -D to change, with a
 * model compiled for the same window: hc_spec.c #error-checks both against its NAME_metadata.h. */
#ifndef HC_FS_HZ
#define HC_FS_HZ 25
#endif
#ifndef HC_WINDOW_S
#define HC_WINDOW_S 30
#endif
#define HC_WINDOW_SAMPLES (HC_FS_HZ * HC_WINDOW_S)

/* Same order as healthcare.features.FEATURE_NAMES (the model's input). NaN where not measurable.
 * hr_good (step 10, not a model input): 1 if the HR is reportable, 0 if the message withholds HR and HRV
 * (null, "hr_quality": "low"); always 0 when hr_bpm is NaN. */
typedef struct {
  float hr_bpm, hrv_rmssd_ms, hrv_sdnn_ms, spo2_pct, rr_bpm, temp_c, motion_g, quality;
  int hr_good;
} hc_features;

extern const char *const hc_feature_names[HC_N_FEATURES];

/* acc_x/y/z in g; returns 0, or -1 if the window is too short (< 8 s) or fs_hz is not > 0. */
int hc_extract(const float *ppg_red, const float *ppg_ir, const float *acc_x, const float *acc_y,
               const float *acc_z, int n, float temp_c, float fs_hz, float *scratch, hc_features *out);

/* The PPG's polarity for every later hc_extract (features.extract's `polarity`): 1 (default) if it rises
 * with blood volume, -1 if it falls (raw light intensity); the band-passed channels are multiplied by it.
 * Returns 0, or -1 (unchanged) for any other value. */
int hc_set_ppg_polarity(int polarity);

/* The tiny model's input: (value - centre) / scale, clipped to +-8, NaN -> 0 (features.to_vector). */
void hc_to_vector(const hc_features *f, float v[HC_N_FEATURES]);

#ifdef __cplusplus
}
#endif

#endif /* HC_FEATURES_H */
