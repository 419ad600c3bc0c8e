/*
 * Host harness for the industrial_iot DSP parity test: reads tlsensor windows from a file (or "-" for
 * stdin) with two channels, `accel` (g, IOT_FS_HZ samples per second, IOT_WINDOW_SAMPLES per window)
 * and `shaft_hz` (the reported shaft speed, one value per window), and prints the C features of each
 * window as one JSON line (NaN -> null, 9 significant digits) with the model vector.
 *
 *   iot_features [--n-balls 9] [--ball-d 7.94] [--pitch-d 39.04] [--contact-deg 0] [FILE]
 *
 * The bearing geometry defaults to the 6205-2RS JEM of the Case Western drive end.
 * Exit status: 0, 2 (bad arguments or unreadable file), 3 (malformed input), 4 (iot_extract failed).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iot_features.h"
#include "tl_sensor_text.h"

#define N IOT_WINDOW_SAMPLES

static const tl_channel channels[2] = {
    {"accel", "g", (float)IOT_FS_HZ, 1.0f},
    {"shaft_hz", "Hz", (float)IOT_FS_HZ / (float)IOT_WINDOW_SAMPLES, 1.0f},
};
static float accel[N], shaft[1], scratch[IOT_SCRATCH_FLOATS(N)];

static void print_number(double v) {
  if (isfinite(v))
    printf("%.9g", v);
  else
    fputs("null", stdout);
}

static int parse_double(const char *s, double *out) {
  char *end;
  *out = strtod(s, &end);
  return end != s && *end == '\0' && isfinite(*out);
}

int main(int argc, char **argv) {
  const tl_sensor_set set = {channels, 2, IOT_WINDOW_S};
  float *bufs[2];
  iot_bearing bearing = {9, 7.94, 39.04, 0.0};
  const char *path = "-";
  FILE *f;
  int64_t ts;
  int i;
  bufs[0] = accel;
  bufs[1] = shaft;
  for (i = 1; i < argc; i++) {
    double v;
    if (i + 1 < argc && strncmp(argv[i], "--", 2) == 0) {
      if (!parse_double(argv[i + 1], &v)) return 2;
      if (strcmp(argv[i], "--n-balls") == 0 && v == floor(v) && v >= 3 && v <= 64)
        bearing.n_balls = (int)v;
      else if (strcmp(argv[i], "--ball-d") == 0)
        bearing.ball_d = v;
      else if (strcmp(argv[i], "--pitch-d") == 0)
        bearing.pitch_d = v;
      else if (strcmp(argv[i], "--contact-deg") == 0)
        bearing.contact_deg = v;
      else
        return 2;
      i++;
    } else if (argv[i][0] != '-' || strcmp(argv[i], "-") == 0) {
      path = argv[i];
    } else {
      return 2;
    }
  }
  f = strcmp(path, "-") != 0 ? fopen(path, "r") : stdin;
  if (!f) return 2;
  for (;;) {
    iot_features ft;
    float vec[IOT_N_FEATURES];
    const float *v;
    int rc = tl_sensor_text_read(f, &set, bufs, &ts);
    if (rc == TL_HAL_END) break;
    if (rc != TL_HAL_OK) return 3;
    if (iot_extract(accel, N, (float)IOT_FS_HZ, shaft[0], &bearing, scratch, &ft) != 0) return 4;
    iot_to_vector(&ft, vec);
    v = &ft.shaft_hz;
    putchar('{');
    for (i = 0; i < IOT_N_FEATURES; i++) {
      printf("%s\"%s\":", i ? "," : "", iot_feature_names[i]);
      print_number(v[i]);
    }
    fputs(",\"vector\":[", stdout);
    for (i = 0; i < IOT_N_FEATURES; i++) {
      if (i) putchar(',');
      print_number(vec[i]);
    }
    fputs("]}\n", stdout);
  }
  if (f != stdin) fclose(f);
  return 0;
}
