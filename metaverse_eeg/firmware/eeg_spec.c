/*
 * The metaverse_eeg app: an EEG headset (8 channels at 128 Hz, microvolts) as the spec the generic loop
 * (app/tl_app.h) runs. Each 4 s window: eeg_extract / eeg_to_vector -> the int8 valence x arousal
 * quadrant model -> the inference message of metaverse_eeg/schemas/inference.json, the same object
 * metaverse_eeg.device.inference_message builds:
 *   features   the 85 DSP features, 6 significant digits (Python's "%.6g"), NaN -> null;
 *   class      the label of the highest score (the first of equal maxima, as numpy's argmax);
 *   scores     the dequantized int8 outputs clipped to [0, 1], 4 decimals;
 *   valence    P(high valence) = score(hv_la) + score(hv_ha), arousal = score(lv_ha) + score(hv_ha),
 *              summed in double from the float scores, clipped to [0, 1], 4 decimals;
 *   artefact   true when the window has a blink, EMG or a bad channel.
 * Model (firmware/Makefile MODELS="<quadrant model>", compiled by shared.tiny.compiler with the domain's
 * labels): EEG_N_FEATURES -> 4 scores in LABELS order (lv_la, lv_ha, hv_la, hv_ha).
 */
#include <math.h>

#include "eeg_features.h"
#include "tl_app.h"

#if !defined(TL_MODEL_0_HEADER) || !defined(TL_MODEL_0_METADATA)
#error "build with MODELS=\"<quadrant model>\" compiled by shared.tiny.compiler (see firmware/Makefile)"
#endif
#include TL_MODEL_0_HEADER
#include TL_MODEL_0_METADATA

#define EEG_N_LABELS TL_APP_MODEL_MACRO(0, _LABEL_COUNT)
#if TL_APP_MODEL_MACRO(0, _INPUT_SIZE) != EEG_N_FEATURES
#error "the model input must be the EEG_N_FEATURES vector of eeg_to_vector"
#endif
#if EEG_N_LABELS != 4 || TL_APP_MODEL_MACRO(0, _OUTPUT_SIZE) != 4
#error "the model must output the four valence x arousal quadrants of its metadata's labels"
#endif
#if EEG_FS_HZ * 1000 != TL_APP_MODEL_MACRO(0, _FS_MHZ) || EEG_WINDOW_SAMPLES != TL_APP_MODEL_MACRO(0, _WINDOW_SAMPLES)
#error "the model metadata describes another window than EEG_FS_HZ x EEG_WINDOW_SAMPLES"
#endif

static const char *const labels[EEG_N_LABELS] = TL_APP_MODEL_MACRO(0, _LABELS);
static const tl_model models[1] = {TL_APP_MODEL(0)};

static const tl_channel channels[EEG_N_CH] = {
    {"AF3", "uV", (float)EEG_FS_HZ, 1.0f}, {"AF4", "uV", (float)EEG_FS_HZ, 1.0f},
    {"F3", "uV", (float)EEG_FS_HZ, 1.0f},  {"F4", "uV", (float)EEG_FS_HZ, 1.0f},
    {"T7", "uV", (float)EEG_FS_HZ, 1.0f},  {"T8", "uV", (float)EEG_FS_HZ, 1.0f},
    {"P7", "uV", (float)EEG_FS_HZ, 1.0f},  {"P8", "uV", (float)EEG_FS_HZ, 1.0f},
};
static float buf[EEG_N_CH][EEG_WINDOW_SAMPLES];
static float *const window[EEG_N_CH] = {buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]};
static float scratch[EEG_SCRATCH_FLOATS];
static float input[EEG_N_FEATURES];

static eeg_features features;
static float scores[EEG_N_LABELS];

static int dsp(float *const *w, float *work, float *vector) {
  const float *x[EEG_N_CH];
  int c;
  for (c = 0; c < EEG_N_CH; c++) x[c] = w[c];
  if (eeg_extract(x, work, &features) != 0) return -1;
  eeg_to_vector(&features, vector);
  return 0;
}

static int infer(const tl_model *m, const float *vector) {
  static int8_t qin[EEG_N_FEATURES], qout[EEG_N_LABELS];
  return tl_model_run(&m[0], vector, qin, qout, scores);
}

/* Python's _num: 6 significant digits, as fixed point with at most 6 decimals; NaN -> null. */
static void num6(tl_json_writer *w, double v) {
  int decimals = 6;
  if (isfinite(v) && v != 0.0) {
    decimals = 5 - (int)floor(log10(fabs(v)));
    if (decimals < 0) decimals = 0;
    if (decimals > 6) decimals = 6;
  }
  tl_json_number(w, v, decimals);
}

static double unit(double p) { return p < 0.0 ? 0.0 : (p > 1.0 ? 1.0 : p); }

static int message(tl_json_writer *w) {
  float raw[EEG_N_FEATURES];
  int i, best = 0;
  eeg_to_raw(&features, raw);
  for (i = 1; i < EEG_N_LABELS; i++)
    if (scores[i] > scores[best]) best = i;
  tl_json_key(w, "window_s");
  tl_json_number(w, (double)EEG_WINDOW_SAMPLES / (double)EEG_FS_HZ, 6);
  tl_json_key(w, "features");
  tl_json_begin_object(w);
  for (i = 0; i < EEG_N_FEATURES; i++) {
    tl_json_key(w, eeg_feature_names[i]);
    num6(w, raw[i]);
  }
  tl_json_end_object(w);
  tl_json_key(w, "class");
  tl_json_string(w, labels[best]);
  tl_json_key(w, "scores");
  tl_json_begin_object(w);
  for (i = 0; i < EEG_N_LABELS; i++) {
    tl_json_key(w, labels[i]);
    tl_json_number(w, unit(scores[i]), 4);
  }
  tl_json_end_object(w);
  tl_json_key(w, "valence");
  tl_json_number(w, unit((double)scores[2] + (double)scores[3]), 4);
  tl_json_key(w, "arousal");
  tl_json_number(w, unit((double)scores[1] + (double)scores[3]), 4);
  tl_json_key(w, "artefact");
  tl_json_bool(w, features.blink != 0.0f || features.emg != 0.0f || features.bad_channels != 0.0f);
  return 0;
}

const tl_app_spec tl_app_domain = {
    .domain = "metaverse_eeg",
    .default_device = "eeg-1",
    .sensors = {channels, EEG_N_CH, EEG_WINDOW_S},
    .window = window,
    .scratch = scratch,
    .scratch_floats = sizeof scratch / sizeof scratch[0],
    .input = input,
    .input_size = EEG_N_FEATURES,
    .models = models,
    .n_models = 1,
    .dsp = dsp,
    .infer = infer,
    .message = message,
    .configure = 0,
};
