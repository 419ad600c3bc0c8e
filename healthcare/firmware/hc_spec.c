/*
 * The healthcare app: the wrist device's sensors, its DSP (hc_features) and its inference message,
 * as the spec the generic loop (app/tl_app.h) runs.
 *
 * Model 0 of the build (MODELS="healthcare_tiny", compiled by shared.tiny.compiler with the domain's
 * metadata) takes the HC_N_FEATURES vector of hc_to_vector and outputs one score per label; the labels
 * and the model id come from its NAME_metadata.h, and the DSP's window geometry is checked against it.
 * The message is healthcare/schemas/inference.json, the same object healthcare.device builds.
 *
 * Provisioned option: --ppg-polarity 1|-1 (default 1): 1 if the front end's PPG rises with blood volume,
 * -1 if it falls (raw light intensity); see healthcare.features step 2. Anything else refuses to start.
 */
#include <math.h>
#include <string.h>

#include "hc_features.h"
#include "tl_app.h"

#if !defined(TL_MODEL_0_HEADER) || !defined(TL_MODEL_0_METADATA)
#error "build with MODELS=<one model compiled by shared.tiny.compiler> (see firmware/Makefile)"
#endif
#include TL_MODEL_0_HEADER
#include TL_MODEL_0_METADATA

#define HC_N_LABELS TL_APP_MODEL_MACRO(0, _LABEL_COUNT)
#if TL_APP_MODEL_MACRO(0, _INPUT_SIZE) != HC_N_FEATURES
#error "the model input must be the HC_N_FEATURES feature vector of hc_to_vector"
#endif
#if HC_N_LABELS == 0
#error "the model metadata names no labels: compile it with the domain's labels (tinylarge compile --labels)"
#endif
#if TL_APP_MODEL_MACRO(0, _OUTPUT_SIZE) != HC_N_LABELS
#error "the model output must have one score per label of its metadata"
#endif
#if HC_FS_HZ * 1000 != TL_APP_MODEL_MACRO(0, _FS_MHZ)
#error "HC_FS_HZ differs from the sampling rate in the model metadata"
#endif
#if HC_WINDOW_SAMPLES != TL_APP_MODEL_MACRO(0, _WINDOW_SAMPLES)
#error "HC_WINDOW_SAMPLES differs from the window in the model metadata"
#endif

static const char *const labels[HC_N_LABELS] = TL_APP_MODEL_MACRO(0, _LABELS);
static const tl_model models[1] = {TL_APP_MODEL(0)};

/* The sensors of the wrist device, as data. */
enum { CH_RED, CH_IR, CH_AX, CH_AY, CH_AZ, CH_TEMP, N_CH };
static const tl_channel channels[N_CH] = {
    {"ppg_red", "counts", (float)HC_FS_HZ, 1.0f}, {"ppg_ir", "counts", (float)HC_FS_HZ, 1.0f},
    {"acc_x", "g", (float)HC_FS_HZ, 1.0f},        {"acc_y", "g", (float)HC_FS_HZ, 1.0f},
    {"acc_z", "g", (float)HC_FS_HZ, 1.0f},        {"temp", "degC", 1.0f / (float)HC_WINDOW_S, 1.0f},
};
static float buf_red[HC_WINDOW_SAMPLES], buf_ir[HC_WINDOW_SAMPLES], buf_ax[HC_WINDOW_SAMPLES],
    buf_ay[HC_WINDOW_SAMPLES], buf_az[HC_WINDOW_SAMPLES], buf_temp[1];
static float *const window[N_CH] = {buf_red, buf_ir, buf_ax, buf_ay, buf_az, buf_temp};
static float scratch[HC_SCRATCH_FLOATS(HC_WINDOW_SAMPLES)];
static float input[HC_N_FEATURES];

/* What the last window produced: read by message(). */
static hc_features features;
static float scores[HC_N_LABELS];

static int dsp(float *const *w, float *work, float *vector) {
  if (hc_extract(w[CH_RED], w[CH_IR], w[CH_AX], w[CH_AY], w[CH_AZ], HC_WINDOW_SAMPLES, w[CH_TEMP][0],
                 (float)HC_FS_HZ, work, &features) != 0)
    return -1;
  hc_to_vector(&features, vector);
  return 0;
}

static int infer(const tl_model *m, const float *vector) {
  static int8_t qin[HC_N_FEATURES], qout[HC_N_LABELS];
  return tl_model_run(&m[0], vector, qin, qout, scores);
}

static void vital(tl_json_writer *w, const char *key, float v, int decimals) {
  tl_json_key(w, key);
  tl_json_number(w, v, decimals); /* NaN -> null */
}

static int message(tl_json_writer *w) {
  const hc_features *f = &features;
  int i, best = 0;
  for (i = 1; i < HC_N_LABELS; i++)
    if (scores[i] > scores[best]) best = i;
  tl_json_key(w, "window_s");
  tl_json_number(w, (double)HC_WINDOW_S, 3);
  tl_json_key(w, "vitals");
  tl_json_begin_object(w);
  /* step 10: a window whose beats are poor withholds HR and HRV (null) rather than send a wrong rate */
  vital(w, "hr_bpm", f->hr_good ? f->hr_bpm : NAN, 2);
  vital(w, "hrv_rmssd_ms", f->hr_good ? f->hrv_rmssd_ms : NAN, 2);
  vital(w, "hrv_sdnn_ms", f->hr_good ? f->hrv_sdnn_ms : NAN, 2);
  vital(w, "spo2_pct", f->spo2_pct, 2);
  vital(w, "rr_bpm", f->rr_bpm, 2);
  vital(w, "temp_c", f->temp_c, 2);
  vital(w, "motion_g", f->motion_g, 2);
  vital(w, "quality", isfinite(f->quality) ? f->quality : 0.0f, 4); /* required number */
  tl_json_end_object(w);
  tl_json_key(w, "hr_quality");
  tl_json_string(w, f->hr_good ? "good" : "low");
  tl_json_key(w, "class");
  tl_json_string(w, labels[best]);
  tl_json_key(w, "scores");
  tl_json_begin_object(w);
  for (i = 0; i < HC_N_LABELS; i++) {
    float p = scores[i] < 0.0f ? 0.0f : (scores[i] > 1.0f ? 1.0f : scores[i]);
    tl_json_key(w, labels[i]);
    tl_json_number(w, p, 4);
  }
  tl_json_end_object(w);
  return 0;
}

static int configure(int argc, char **argv) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], "--ppg-polarity") == 0) {
      if (strcmp(argv[i + 1], "1") == 0) return hc_set_ppg_polarity(1);
      if (strcmp(argv[i + 1], "-1") == 0) return hc_set_ppg_polarity(-1);
      return -1;
    }
  return hc_set_ppg_polarity(1);
}

const tl_app_spec tl_app_domain = {
    .domain = "healthcare",
    .default_device = "wearable-1",
    .sensors = {channels, N_CH, (float)HC_WINDOW_S},
    .window = window,
    .scratch = scratch,
    .scratch_floats = sizeof scratch / sizeof scratch[0],
    .input = input,
    .input_size = HC_N_FEATURES,
    .models = models,
    .n_models = 1,
    .dsp = dsp,
    .infer = infer,
    .message = message,
    .configure = configure,
};
