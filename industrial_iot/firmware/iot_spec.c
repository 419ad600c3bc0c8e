/*
 * The industrial_iot app: a vibration sensor node on one bearing housing, as the spec the generic loop
 * (app/tl_app.h) runs. Each 0.8 s window: the accelerometer (IOT_FS_HZ, g) and the shaft speed the drive
 * reports (one value per window) -> iot_extract / iot_to_vector -> the condition classifier and the
 * anomaly autoencoder -> the inference message of industrial_iot/schemas/inference.json, the same object
 * industrial_iot.device.inference_message builds.
 *
 * Models (firmware/Makefile MODELS="<classifier> <autoencoder>", compiled by shared.tiny.compiler):
 *   model 0  the classifier: IOT_N_FEATURES -> one probability per label; its id is the message's
 *            `model`, its labels (NAME_metadata.h) name `class` and `scores`;
 *   model 1  the autoencoder: IOT_N_FEATURES -> IOT_N_FEATURES; its id is `anomaly_model`.
 *
 * The anomaly score is industrial_iot.tiny.anomaly_error, computed here exactly as there: the float
 * to_vector input x is quantized for the model (tl_model_run), the int8 output is dequantized to
 * y[j] = (q_out[j] - z_out) * s_out (float32), and
 *     score = (1/21) * sum_j (y[j] - x[j])^2
 * with every difference and the running sum in double (Python: float64 numpy mean of the same float32
 * values), against the FLOAT input, not its quantized copy.
 *
 * Device configuration. What the node is mounted on is provisioned, not sensed: the bearing's geometry
 * (for the defect frequencies of the envelope lines) and the machine's ISO 10816-3 group and foundation
 * (reported with every window, for the cloud's zone) are written once at installation. Here they are
 * firmware options, read at setup by the spec's configure hook (the host passes them on its command line,
 * the Cortex-M4 image on its semihosting command line; a production node would read the same values
 * from its provisioning record in flash):
 *   --n-balls N  --ball-d MM  --pitch-d MM  --contact-deg DEG   the monitored bearing (default 6205:
 *                                                               9 balls, 7.94 / 39.04 mm, 0 deg)
 *   --iso-group 1|2  --foundation rigid|flexible                ISO 10816-3 class (default 2, rigid)
 * An invalid value refuses to start (tl_app_setup returns 2).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "iot_features.h"
#include "tl_app.h"

#if !defined(TL_MODEL_0_HEADER) || !defined(TL_MODEL_0_METADATA) || !defined(TL_MODEL_1_HEADER) || \
    !defined(TL_MODEL_1_METADATA)
#error "build with MODELS=\"<classifier> <autoencoder>\" compiled by shared.tiny.compiler (see firmware/Makefile)"
#endif
#include TL_MODEL_0_HEADER
#include TL_MODEL_0_METADATA
#include TL_MODEL_1_HEADER
#include TL_MODEL_1_METADATA

#define IOT_N_LABELS TL_APP_MODEL_MACRO(0, _LABEL_COUNT)
#if TL_APP_MODEL_MACRO(0, _INPUT_SIZE) != IOT_N_FEATURES
#error "the classifier input must be the IOT_N_FEATURES feature vector of iot_to_vector"
#endif
#if IOT_N_LABELS == 0
#error "the classifier metadata names no labels: compile it with the domain's labels (tinylarge compile --labels)"
#endif
#if TL_APP_MODEL_MACRO(0, _OUTPUT_SIZE) != IOT_N_LABELS
#error "the classifier output must have one score per label of its metadata"
#endif
#if IOT_FS_HZ * 1000 != TL_APP_MODEL_MACRO(0, _FS_MHZ)
#error "IOT_FS_HZ differs from the sampling rate in the classifier metadata"
#endif
#if IOT_WINDOW_SAMPLES != TL_APP_MODEL_MACRO(0, _WINDOW_SAMPLES)
#error "IOT_WINDOW_SAMPLES differs from the window in the classifier metadata"
#endif
#if TL_APP_MODEL_MACRO(1, _INPUT_SIZE) != IOT_N_FEATURES || TL_APP_MODEL_MACRO(1, _OUTPUT_SIZE) != IOT_N_FEATURES
#error "the autoencoder must map the IOT_N_FEATURES vector to IOT_N_FEATURES outputs"
#endif
#if IOT_FS_HZ * 1000 != TL_APP_MODEL_MACRO(1, _FS_MHZ) || IOT_WINDOW_SAMPLES != TL_APP_MODEL_MACRO(1, _WINDOW_SAMPLES)
#error "the autoencoder metadata describes another window than IOT_FS_HZ x IOT_WINDOW_SAMPLES"
#endif

static const char *const labels[IOT_N_LABELS] = TL_APP_MODEL_MACRO(0, _LABELS);
static const tl_model models[2] = {TL_APP_MODEL(0), TL_APP_MODEL(1)};

/* The sensors of the node, as data. */
enum { CH_ACCEL, CH_SHAFT, N_CH };
static const tl_channel channels[N_CH] = {
    {"accel", "g", (float)IOT_FS_HZ, 1.0f},
    {"shaft_hz", "Hz", 1.0f / IOT_WINDOW_S, 1.0f},
};
static float buf_accel[IOT_WINDOW_SAMPLES], buf_shaft[1];
static float *const window[N_CH] = {buf_accel, buf_shaft};
static float scratch[IOT_SCRATCH_FLOATS(IOT_WINDOW_SAMPLES)];
static float input[IOT_N_FEATURES];

/* The provisioned configuration (configure()). */
static struct {
  iot_bearing bearing;
  int iso_group;
  const char *foundation;
} cfg;

/* What the last window produced: read by message(). */
static iot_features features;
static float shaft_hz;
static float scores[IOT_N_LABELS];
static double anomaly;

static const char *opt(int argc, char **argv, const char *key) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], key) == 0) return argv[i + 1];
  return 0;
}

/* *out = the option's value when given; -1 if given but not a number */
static int opt_number(int argc, char **argv, const char *key, double *out) {
  const char *s = opt(argc, argv, key);
  char *end;
  double v;
  if (!s) return 0;
  v = strtod(s, &end);
  if (end == s || *end != '\0' || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int configure(int argc, char **argv) {
  double n_balls = 9.0, group = 2.0;
  const char *foundation;
  iot_defects check;
  cfg.bearing.ball_d = 7.94;
  cfg.bearing.pitch_d = 39.04;
  cfg.bearing.contact_deg = 0.0;
  if (opt_number(argc, argv, "--n-balls", &n_balls) || opt_number(argc, argv, "--ball-d", &cfg.bearing.ball_d) ||
      opt_number(argc, argv, "--pitch-d", &cfg.bearing.pitch_d) ||
      opt_number(argc, argv, "--contact-deg", &cfg.bearing.contact_deg) ||
      opt_number(argc, argv, "--iso-group", &group))
    return -1;
  if (n_balls != floor(n_balls) || n_balls < 3.0 || n_balls > 1000.0) return -1;
  cfg.bearing.n_balls = (int)n_balls;
  if (group != 1.0 && group != 2.0) return -1;
  cfg.iso_group = (int)group;
  foundation = opt(argc, argv, "--foundation");
  if (!foundation) foundation = "rigid";
  if (strcmp(foundation, "rigid") != 0 && strcmp(foundation, "flexible") != 0) return -1;
  cfg.foundation = foundation;
  return iot_bearing_frequencies(1.0, &cfg.bearing, &check); /* -1: impossible geometry */
}

static int dsp(float *const *w, float *work, float *vector) {
  shaft_hz = w[CH_SHAFT][0];
  if (iot_extract(w[CH_ACCEL], IOT_WINDOW_SAMPLES, (float)IOT_FS_HZ, shaft_hz, &cfg.bearing, work, &features) != 0)
    return -1;
  iot_to_vector(&features, vector);
  return 0;
}

static int infer(const tl_model *m, const float *vector) {
  static int8_t qin[IOT_N_FEATURES], qout[IOT_N_LABELS], qae[IOT_N_FEATURES];
  static float recon[IOT_N_FEATURES];
  double sum = 0.0;
  int j;
  if (tl_model_run(&m[0], vector, qin, qout, scores) != 0) return -1;
  if (tl_model_run(&m[1], vector, qin, qae, recon) != 0) return -1;
  for (j = 0; j < IOT_N_FEATURES; j++) {
    double d = (double)recon[j] - (double)vector[j];
    sum += d * d;
  }
  anomaly = sum / (double)IOT_N_FEATURES;
  return 0;
}

/* Python's _num: 6 significant digits ("%.6g"), NaN / inf -> null; here as fixed point with the decimals
 * that keep 6 significant digits (at most 6 after the point, so values below 5e-7 print as 0). */
static void num6(tl_json_writer *w, double v) {
  int decimals = 6;
  if (isfinite(v) && v != 0.0) {
    decimals = 5 - (int)floor(log10(fabs(v)));
    if (decimals < 0) decimals = 0;
    if (decimals > 6) decimals = 6;
  }
  tl_json_number(w, v, decimals); /* NaN -> null */
}

static int message(tl_json_writer *w) {
  const iot_features *x = &features;
  const float f[IOT_N_FEATURES] = { /* iot_feature_names order */
      x->shaft_hz,     x->v_rms_mm_s,   x->a_rms_g,      x->peak_g,      x->crest,      x->kurtosis,
      x->v_0p5x_mm_s,  x->v_1x_mm_s,    x->v_2x_mm_s,    x->v_3x_mm_s,   x->v_halfx_mm_s, x->v_4_8x_mm_s,
      x->a_10_1k_g,    x->a_1k_2k_g,    x->a_2k_4k_g,    x->env_rms_g,   x->env_1x_g,   x->env_ftf_g,
      x->env_bpfo_g,   x->env_bpfi_g,   x->env_bsf2_g};
  int i, best = 0;
  for (i = 1; i < IOT_N_LABELS; i++)
    if (scores[i] > scores[best]) best = i; /* the first of equal maxima, as numpy's argmax */
  tl_json_key(w, "window_s");
  tl_json_number(w, (double)IOT_WINDOW_SAMPLES / (double)IOT_FS_HZ, 6);
  tl_json_key(w, "shaft_hz");
  num6(w, shaft_hz);
  tl_json_key(w, "iso_group");
  tl_json_int(w, cfg.iso_group);
  tl_json_key(w, "foundation");
  tl_json_string(w, cfg.foundation);
  tl_json_key(w, "features");
  tl_json_begin_object(w);
  for (i = 0; i < IOT_N_FEATURES; i++) {
    tl_json_key(w, iot_feature_names[i]);
    num6(w, f[i]);
  }
  tl_json_end_object(w);
  tl_json_key(w, "class");
  tl_json_string(w, labels[best]);
  tl_json_key(w, "scores");
  tl_json_begin_object(w);
  for (i = 0; i < IOT_N_LABELS; i++) {
    float p = scores[i] < 0.0f ? 0.0f : (scores[i] > 1.0f ? 1.0f : scores[i]);
    tl_json_key(w, labels[i]);
    tl_json_number(w, p, 4);
  }
  tl_json_end_object(w);
  tl_json_key(w, "anomaly");
  tl_json_number(w, anomaly > 0.0 ? anomaly : 0.0, 6);
  tl_json_key(w, "anomaly_model");
  tl_json_string(w, models[1].id);
  return 0;
}

const tl_app_spec tl_app_domain = {
    .domain = "industrial_iot",
    .default_device = "vib-1",
    .sensors = {channels, N_CH, IOT_WINDOW_S},
    .window = window,
    .scratch = scratch,
    .scratch_floats = sizeof scratch / sizeof scratch[0],
    .input = input,
    .input_size = IOT_N_FEATURES,
    .models = models,
    .n_models = 2,
    .dsp = dsp,
    .infer = infer,
    .message = message,
    .configure = configure,
};
