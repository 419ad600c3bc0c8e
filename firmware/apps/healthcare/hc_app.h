/*
 * The healthcare firmware app: sensors -> DSP (hc_features) -> int8 model -> JSON -> MQTT or serial.
 *
 * Builds against any model compiled by shared.tiny.compiler: compile with
 *   -DTL_MODEL_HEADER='"name.h"' -DTL_MODEL_NAME=name -DTL_MODEL_UPPER=NAME
 *   -DTL_MODEL_ID='"healthcare-tiny@1"'
 * The model takes the HC_N_FEATURES-vector of hc_to_vector and outputs one score per label of
 * hc_labels (the order of healthcare.signals.LABELS).
 */
#ifndef HC_APP_H
#define HC_APP_H

#include <stddef.h>
#include <stdint.h>

#include "hc_features.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HC_N_LABELS 6
#define HC_JSON_MAX 1024

extern const char *const hc_labels[HC_N_LABELS];

/* The inference message (shared/schemas/healthcare.inference.json). Returns its length or -1. */
int hc_inference_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms,
                      const char *model_id, double window_s, const hc_features *f,
                      const float scores[HC_N_LABELS]);
/* The status message (shared/schemas/status.json); counts may be NULL. Returns its length or -1. */
int hc_status_json(char *buf, size_t cap, const char *device, int64_t seq, int64_t ts_ms, const char *model_id,
                   int online, const char *const *count_names, const uint32_t *counts, int n_counts);

/* Entry point every target's main() calls. Options: --device ID (default "wearable-1"),
 * --max-windows N (0 = until the sensor source ends), --interval-ms MS (pause between windows),
 * plus the target's own (see tl_hal_init). Returns 0 on success. */
int hc_app_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* HC_APP_H */
