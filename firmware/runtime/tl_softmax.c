/*
 * int8 SOFTMAX as the TFLite interpreter computes it on x86 and Cortex-M
 * targets: a 256-entry float table of exp(-input_scale * beta * d) for the
 * distance d = max - x, a float sum, and round-half-away-from-zero of
 * p / output_scale. The float operations are done in the same order as the
 * interpreter so that single-precision IEEE arithmetic gives identical bits.
 */
#include "tl_runtime.h"

static int32_t tl_round_half_away(float v) {
  /* roundf without libm: add +-0.5 in double (exact for |v| < 2^52) and truncate */
  const double d = (double)v;
  return (int32_t)(d >= 0.0 ? d + 0.5 : d - 0.5);
}

void tl_softmax(const tl_softmax_params *p, const int8_t *input, int8_t *output) {
  int32_t o, j;
  for (o = 0; o < p->outer; ++o) {
    int32_t max_val = -128;
    float sum_exp = 0.0f;
    float inv_sum;
    const float *table;
    for (j = 0; j < p->depth; ++j) {
      if (input[j] > max_val) max_val = input[j];
    }
    table = p->exp_table + (255 - max_val);
    for (j = 0; j < p->depth; ++j) sum_exp += table[input[j]];
    inv_sum = 1.0f / (sum_exp * p->output_scale);
    for (j = 0; j < p->depth; ++j) {
      const float prob = table[input[j]] * inv_sum;
      int32_t q = tl_round_half_away(prob) + p->output_zero_point;
      if (q < -128) q = -128;
      if (q > 127) q = 127;
      output[j] = (int8_t)q;
    }
    input += p->depth;
    output += p->depth;
  }
}
