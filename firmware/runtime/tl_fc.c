/* FULLY_CONNECTED, int8 with per-tensor or per-channel requantization. */
#include "tl_runtime.h"

void tl_fully_connected(const tl_fc_params *p, const int8_t *input, int8_t *output) {
  int32_t b, o, i;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + b * p->in_n;
    for (o = 0; o < p->out_n; ++o) {
      const int8_t *w = p->weights + o * p->in_n;
      const int32_t q = p->per_channel ? o : 0;
      int32_t acc = 0;
      for (i = 0; i < p->in_n; ++i) {
        acc += ((int32_t)w[i] + p->filter_offset) * ((int32_t)in_b[i] + p->input_offset);
      }
      if (p->bias != 0) acc += p->bias[o];
      acc = tl_mul_by_quantized_multiplier(acc, p->multiplier[q], (int)p->shift[q]);
      acc += p->output_offset;
      if (acc < p->act_min) acc = p->act_min;
      if (acc > p->act_max) acc = p->act_max;
      output[b * p->out_n + o] = (int8_t)acc;
    }
  }
}
