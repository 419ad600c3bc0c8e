/*
 * Metaverse EEG headset DSP: a C99 port of metaverse_eeg/features.py (its module docstring defines the
 * arithmetic: bands, Welch parameters, differential entropy, asymmetry, artefact flags, the vector's
 * centre and scale). Samples and spectra are float32; sums and powers are double. The FFT is an in-place
 * iterative radix-2 one (eeg_fft). No heap: the caller passes EEG_SCRATCH_FLOATS floats of scratch.
 */
#ifndef EEG_FEATURES_H
#define EEG_FEATURES_H

#ifdef __cplusplus
extern "C" {
#endif

#define EEG_N_CH 8          /* AF3 AF4 F3 F4 T7 T8 P7 P8 */
#define EEG_N_BANDS 5       /* delta theta alpha beta gamma */
#define EEG_FS_HZ 128
#define EEG_WINDOW_SAMPLES 512
#define EEG_WINDOW_S ((float)EEG_WINDOW_SAMPLES / (float)EEG_FS_HZ)
#define EEG_NPERSEG 256
#define EEG_NOVERLAP 128
#define EEG_N_FEATURES (2 * EEG_N_CH * EEG_N_BANDS + 5)
/* a complex EEG_WINDOW_SAMPLES-point buffer */
#define EEG_SCRATCH_FLOATS (2 * EEG_WINDOW_SAMPLES)

#define EEG_BLINK_UV 90.0
#define EEG_EMG_SHARE 0.3
#define EEG_FLAT_UV 0.5
#define EEG_WILD_UV 150.0
#define EEG_BP_FLOOR 1e-3
#define EEG_VAR_FLOOR 1e-6
#define EEG_VECTOR_CLIP 8.0

/* The DSP's outputs (features.EegFeatures). */
typedef struct {
  float bp[EEG_N_CH][EEG_N_BANDS]; /* log10(band power + 1e-3), uV^2 */
  float de[EEG_N_CH][EEG_N_BANDS]; /* differential entropy, nats */
  float faa_f, faa_af, blink, emg, bad_channels;
  float emg_share;
} eeg_features;

extern const char *const eeg_feature_names[EEG_N_FEATURES];

/* In-place complex FFT of n (a power of two) interleaved re/im floats; inverse without the 1/n. */
void eeg_fft(float *a, int n, int inverse);
/* x[ch] points at EEG_WINDOW_SAMPLES uV samples of channel ch. Returns 0, or -1 on a non-finite sample. */
int eeg_extract(const float *const x[EEG_N_CH], float *scratch, eeg_features *out);
/* The 85 features in eeg_feature_names order, unscaled (features.to_vector_raw). */
void eeg_to_raw(const eeg_features *f, float *raw);
/* The model input: (raw - centre) / scale, NaN -> 0, clipped to +-8 (features.to_vector). */
void eeg_to_vector(const eeg_features *f, float *vector);

#ifdef __cplusplus
}
#endif

#endif /* EEG_FEATURES_H */
