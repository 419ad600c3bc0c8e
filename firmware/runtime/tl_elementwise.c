/* ADD, MUL (with broadcasting), PAD, table lookups, requantize and concatenation. ADD, MUL and QUANTIZE
 * round twice (tl_mbqm_double) in both arithmetics: TFLite Micro and LiteRT's reference kernels agree there. */
#include <string.h>

#include "tl_runtime.h"

static int32_t tl_clamp(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

static int32_t tl_add_one(const tl_add_params *p, int32_t a, int32_t b) {
  const int32_t a_shifted = (a + p->input1_offset) * ((int32_t)1 << p->left_shift);
  const int32_t b_shifted = (b + p->input2_offset) * ((int32_t)1 << p->left_shift);
  const int32_t a_scaled = tl_mbqm_double(a_shifted, p->input1_multiplier, (int)p->input1_shift);
  const int32_t b_scaled = tl_mbqm_double(b_shifted, p->input2_multiplier, (int)p->input2_shift);
  const int32_t out = tl_mbqm_double(a_scaled + b_scaled, p->output_multiplier,
                                                     (int)p->output_shift) + p->output_offset;
  return tl_clamp(out, p->act_min, p->act_max);
}

static int32_t tl_mul_one(const tl_mul_params *p, int32_t a, int32_t b) {
  const int32_t prod = (a + p->input1_offset) * (b + p->input2_offset);
  const int32_t out = tl_mbqm_double(prod, p->output_multiplier, (int)p->output_shift) +
                      p->output_offset;
  return tl_clamp(out, p->act_min, p->act_max);
}

/* Walks the 4-D broadcast output in row-major order. */
#define TL_BROADCAST_LOOP(SHAPE, BODY)                                                      \
  do {                                                                                      \
    int32_t i0, i1, i2, i3;                                                                 \
    int32_t out_index = 0;                                                                  \
    for (i0 = 0; i0 < (SHAPE)->dims[0]; ++i0)                                               \
      for (i1 = 0; i1 < (SHAPE)->dims[1]; ++i1)                                             \
        for (i2 = 0; i2 < (SHAPE)->dims[2]; ++i2)                                           \
          for (i3 = 0; i3 < (SHAPE)->dims[3]; ++i3) {                                       \
            const int32_t idx1 = i0 * (SHAPE)->stride1[0] + i1 * (SHAPE)->stride1[1] +      \
                                 i2 * (SHAPE)->stride1[2] + i3 * (SHAPE)->stride1[3];       \
            const int32_t idx2 = i0 * (SHAPE)->stride2[0] + i1 * (SHAPE)->stride2[1] +      \
                                 i2 * (SHAPE)->stride2[2] + i3 * (SHAPE)->stride2[3];       \
            BODY;                                                                           \
            ++out_index;                                                                    \
          }                                                                                 \
  } while (0)

void tl_add(const tl_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  TL_BROADCAST_LOOP(&p->shape, output[out_index] = (int8_t)tl_add_one(p, input1[idx1], input2[idx2]));
}

void tl_mul(const tl_mul_params *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  TL_BROADCAST_LOOP(&p->shape, output[out_index] = (int8_t)tl_mul_one(p, input1[idx1], input2[idx2]));
}

void tl_lut(const int8_t *table, int32_t n, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < n; ++i) output[i] = table[(uint8_t)input[i]];
}

void tl_requantize(const tl_requantize_params *p, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < p->n; ++i) {
    const int32_t v = tl_mbqm_double((int32_t)input[i] - p->input_zero_point, p->multiplier,
                                                     (int)p->shift) + p->output_zero_point;
    output[i] = (int8_t)tl_clamp(v, -128, 127);
  }
}

void tl_concat(int32_t n_inputs, const int8_t *const *inputs, const int32_t *chunk, int32_t outer,
               int8_t *output) {
  int32_t o, k;
  for (o = 0; o < outer; ++o) {
    for (k = 0; k < n_inputs; ++k) {
      memcpy(output, inputs[k] + o * chunk[k], (size_t)chunk[k]);
      output += chunk[k];
    }
  }
}

void tl_pad(const tl_pad_params *p, const int8_t *input, int8_t *output) {
  int32_t o0, o1, o2, o3;
  for (o0 = 0; o0 < p->out_dims[0]; ++o0) {
    const int32_t i0 = o0 - p->before[0];
    for (o1 = 0; o1 < p->out_dims[1]; ++o1) {
      const int32_t i1 = o1 - p->before[1];
      for (o2 = 0; o2 < p->out_dims[2]; ++o2) {
        const int32_t i2 = o2 - p->before[2];
        for (o3 = 0; o3 < p->out_dims[3]; ++o3) {
          const int32_t i3 = o3 - p->before[3];
          const int inside = i0 >= 0 && i0 < p->in_dims[0] && i1 >= 0 && i1 < p->in_dims[1] && i2 >= 0 &&
                             i2 < p->in_dims[2] && i3 >= 0 && i3 < p->in_dims[3];
          *output++ = inside ? input[((i0 * p->in_dims[1] + i1) * p->in_dims[2] + i2) * p->in_dims[3] + i3]
                             : (int8_t)p->value;
        }
      }
    }
  }
}
