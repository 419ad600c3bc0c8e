/*
 * The generic TinyLarge device loop, in the style of tflite-micro's examples: setup() once, then
 * loop() once per sensor window. It is the same for every domain; what differs is one const
 * tl_app_spec that the domain's app folder <domain>/firmware/ (in its package) defines as `tl_app_domain`:
 *
 *   sensors   the channel table (name, units, rate, scale) and the window length, plus one buffer
 *             per channel;
 *   scratch   the floats the DSP may use (declared by the domain, sized for its window);
 *   dsp       raw window -> the domain's features (kept by the domain) + the model input vector;
 *             a streaming app reads short blocks and returns TL_APP_PENDING until a window is complete
 *             (no inference, no message for that block: vehicles accumulates a trip segment so);
 *   infer     runs the domain's compiled model(s) on that vector (tl_model_run quantizes, invokes and
 *             dequantizes; a domain may run several models, e.g. a classifier and an autoencoder);
 *   message   writes the domain's fields of the inference message after the envelope.
 *
 * The loop owns the rest: options (--device, --max-windows, --interval-ms, --seq-start; the target
 * takes its own, see tl_hal_init), reading windows through the HAL, the envelope (v, device, seq, ts,
 * model; seq as below), the
 * retained status with counts and its last will, and publishing over the network or as serial
 * frames. Every target's main() calls tl_app_main(argc, argv) and knows no domain.
 *
 * Models come from the build (firmware/Makefile MODELS="a b"): model i is described by
 * TL_MODEL_<i>_NAME / _UPPER / _HEADER / _METADATA, and TL_APP_MODEL(i) is the tl_model initializer
 * for it, read from its generated NAME.h and NAME_metadata.h (include both through
 * TL_MODEL_<i>_HEADER and TL_MODEL_<i>_METADATA first). Model 0 is the domain's primary model: its
 * id is the `model` field of every message.
 */
#ifndef TL_APP_H
#define TL_APP_H

#include <stddef.h>
#include <stdint.h>

#include "tl_hal.h"
#include "tl_json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the largest message the app writes (inference or status); -D to change. */
#ifndef TL_APP_JSON_MAX
#define TL_APP_JSON_MAX 1024
#endif

/* seq: every message's (device, seq) must stay unique across resets, or the cloud refuses the readings
 * after one (it dead-letters a different message under a stored key). --seq-start N provisions the first
 * seq (FirmwareFleet passes shared.protocol.messages.boot_seq()); without it the app starts at
 * tl_hal_now_ms() x TL_APP_SEQ_PER_MS once the clock reads epoch time (>= TL_APP_EPOCH_MIN_MS, at setup
 * or else at the first window), the Python devices' scheme: a device that restarts continues above every
 * seq it used, as long as it sent fewer than TL_APP_SEQ_PER_MS messages per ms of uptime. A target whose
 * clock never reads epoch time counts from 0 (logged). */
#define TL_APP_SEQ_PER_MS 1000
#define TL_APP_EPOCH_MIN_MS INT64_C(1577836800000) /* 2020-01-01: below it, a clock counting from boot */
#define TL_APP_SEQ_MAX INT64_C(9007199254740991)   /* 2^53 - 1: the schema's largest seq */

/* One compiled model (shared.tiny.compiler) as the app runs it. */
typedef struct {
  const char *name; /* C name of the model: "healthcare_tiny" */
  const char *id;   /* id@version from NAME_metadata.h */
  int (*invoke)(const int8_t *input, int8_t *output);
  int input_size, output_size;
  float input_scale;
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
} tl_model;

#define TL_APP_CAT_(a, b) a##b
#define TL_APP_CAT(a, b) TL_APP_CAT_(a, b)
/* The tl_model initializer of the build's model i (0, 1, ...), from its generated headers. */
#define TL_APP_MODEL(i) TL_APP_MODEL_(TL_APP_CAT(TL_MODEL_, TL_APP_CAT(i, _NAME)), \
                                      TL_APP_CAT(TL_MODEL_, TL_APP_CAT(i, _UPPER)))
#define TL_APP_MODEL_(name, up) TL_APP_MODEL__(name, up)
#define TL_APP_MODEL__(name, up)                                                                     \
  {#name, up##_MODEL_ID, name##_invoke, up##_INPUT_SIZE, up##_OUTPUT_SIZE, up##_INPUT_SCALE,          \
   up##_INPUT_ZERO_POINT, up##_OUTPUT_SCALE, up##_OUTPUT_ZERO_POINT}
/* A macro of model i's headers, e.g. TL_APP_MODEL_MACRO(0, _LABEL_COUNT) -> HC_TINY_LABEL_COUNT. */
#define TL_APP_MODEL_MACRO(i, suffix) TL_APP_MODEL_MACRO_(TL_APP_CAT(TL_MODEL_, TL_APP_CAT(i, _UPPER)), suffix)
#define TL_APP_MODEL_MACRO_(up, suffix) TL_APP_CAT(up, suffix)

/* What a domain declares (see the top of this file). Hooks return 0 on success. */
typedef struct {
  const char *domain;         /* registered domain: topics tinylarge/<domain>/<device>/<stream>, logs */
  const char *default_device; /* --device when not given */
  tl_sensor_set sensors;      /* channels and window_s */
  float *const *window;       /* one buffer per channel, tl_sensor_samples(&sensors, ch) floats each */
  float *scratch;             /* DSP working memory */
  size_t scratch_floats;
  float *input; /* the model input vector: dsp writes it, infer reads it */
  int input_size;
  const tl_model *models; /* models[0] is the primary model (its id goes in every message) */
  int n_models;
  int (*dsp)(float *const *window, float *scratch, float *input);
  int (*infer)(const tl_model *models, const float *input);
  int (*message)(tl_json_writer *w); /* the fields after the envelope, from the last dsp + infer */
  /* Optional (NULL: none): the device's provisioned configuration from its options (e.g. the machine a
   * vibration node is mounted on), called by tl_app_setup before the target comes up; non-zero = refuse
   * to start (setup returns 2). */
  int (*configure)(int argc, char **argv);
} tl_app_spec;

/* The domain's spec, defined in its package's <domain>/firmware/ (one per build). */
extern const tl_app_spec tl_app_domain;

/* Quantize as shared.tiny.int8 does: round half to even, saturate to int8. */
int8_t tl_quantize(float x, float scale, int32_t zero_point);
float tl_dequantize(int8_t q, float scale, int32_t zero_point);
/* input[m->input_size] floats -> quantize into qin -> invoke -> dequantize qout into output
 * [m->output_size]. qin / qout hold the model's int8 input / output. Returns the invoke's result. */
int tl_model_run(const tl_model *m, const float *input, int8_t *qin, int8_t *qout, float *output);

/* The envelope every message starts with: "v", "device", "seq", "ts", "model" (call after
 * tl_json_begin_object). */
void tl_app_envelope(tl_json_writer *w, const char *device, int64_t seq, int64_t ts_ms, const char *model_id);
/* The status message (protocol/schemas/status.json); counts may be NULL. Returns its length or -1. */
int tl_app_status_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms, const char *model_id,
                       int online, const char *const *count_names, const uint32_t *counts, int n_counts);

#define TL_APP_PENDING 1  /* dsp: block absorbed, no window complete yet (no inference, no message) */
#define TL_APP_CONTINUE 0 /* tl_app_loop: call again */
#define TL_APP_DONE 1     /* tl_app_loop: the sensor source ended, --max-windows reached, or a read failed */

/* Parse options, bring the target up (tl_hal_init, with the offline status as last will) and publish
 * the online status. Returns 0, or 2 if the spec is incomplete or the target failed. */
int tl_app_setup(const tl_app_spec *spec, int argc, char **argv);
/* One window: read, DSP, inference, message, publish, then wait --interval-ms. */
int tl_app_loop(void);
/* Publish the offline status with the counts, shut the target down. Returns 0, or 1 if any window
 * failed (read, DSP, inference or publish). */
int tl_app_teardown(void);
/* setup, loop until done, teardown with tl_app_domain: what every target's main() calls. */
int tl_app_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* TL_APP_H */
