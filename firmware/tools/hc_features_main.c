/*
 * Host tool for the healthcare DSP parity test (tests/firmware/test_app_features.py): reads tlsensor
 * windows (healthcare channels) from the file argv[1] (or stdin) and
 * prints the C features of each window, its hr_quality and the model vector as one JSON line (NaN -> null,
 * 6 decimals).
 */
#include <stdio.h>
#include <string.h>

#include "hc_features.h"
#include "tl_json.h"
#include "tl_sensor_text.h"

#define N HC_WINDOW_SAMPLES

static const tl_channel channels[6] = {
    {"ppg_red", "counts", (float)HC_FS_HZ, 1.0f}, {"ppg_ir", "counts", (float)HC_FS_HZ, 1.0f},
    {"acc_x", "g", (float)HC_FS_HZ, 1.0f},        {"acc_y", "g", (float)HC_FS_HZ, 1.0f},
    {"acc_z", "g", (float)HC_FS_HZ, 1.0f},        {"temp", "degC", 1.0f / (float)HC_WINDOW_S, 1.0f},
};
static float red[N], ir[N], ax[N], ay[N], az[N], temp[1], scratch[HC_SCRATCH_FLOATS(N)];

int main(int argc, char **argv) {
  const tl_sensor_set set = {channels, 6, (float)HC_WINDOW_S};
  float *bufs[6];
  FILE *f = (argc > 1 && strcmp(argv[1], "-") != 0) ? fopen(argv[1], "r") : stdin;
  int64_t ts;
  char line[1024];
  bufs[0] = red;
  bufs[1] = ir;
  bufs[2] = ax;
  bufs[3] = ay;
  bufs[4] = az;
  bufs[5] = temp;
  if (!f) return 2;
  for (;;) {
    hc_features ft;
    const float *v = &ft.hr_bpm;
    float vec[HC_N_FEATURES];
    tl_json_writer w;
    int i, rc = tl_sensor_text_read(f, &set, bufs, &ts);
    if (rc == TL_HAL_END) break;
    if (rc != TL_HAL_OK) return 3;
    if (hc_extract(red, ir, ax, ay, az, N, temp[0], (float)HC_FS_HZ, scratch, &ft) != 0) return 4;
    hc_to_vector(&ft, vec);
    tl_json_init(&w, line, sizeof line);
    tl_json_begin_object(&w);
    for (i = 0; i < HC_N_FEATURES; i++) {
      tl_json_key(&w, hc_feature_names[i]);
      tl_json_number(&w, v[i], 6);
    }
    tl_json_key(&w, "hr_quality");
    tl_json_string(&w, ft.hr_good ? "good" : "low");
    tl_json_key(&w, "vector");
    tl_json_begin_array(&w);
    for (i = 0; i < HC_N_FEATURES; i++) tl_json_number(&w, vec[i], 6);
    tl_json_end_array(&w);
    tl_json_end_object(&w);
    if (tl_json_finish(&w) < 0) return 5;
    puts(line);
  }
  return 0;
}
