/* MAX_POOL_2D, AVERAGE_POOL_2D, MEAN and REDUCE_MAX, int8 NHWC. MEAN rounds twice (tl_mbqm_double) in
 * both arithmetics, as TFLite Micro and LiteRT's reference kernels do. */
#include "tl_runtime.h"

static int32_t tl_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static int32_t tl_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }

/* Visits the window of output pixel (oy, ox) clipped to the image; avg != 0 averages. */
TL_INLINE void tl_pool(const tl_pool_params *p, const int8_t *input, int8_t *output, int avg) {
  int32_t b, oy, ox, c, y, x;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + b * p->in_h * p->in_w * p->channels;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t ky_start = tl_max_i32(0, -y0);
      const int32_t ky_end = tl_min_i32(p->k_h, p->in_h - y0);
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t kx_start = tl_max_i32(0, -x0);
        const int32_t kx_end = tl_min_i32(p->k_w, p->in_w - x0);
        const int32_t count = (ky_end - ky_start) * (kx_end - kx_start);
        const int32_t row_skip = (p->in_w - (kx_end - kx_start)) * p->channels;
        for (c = 0; c < p->channels; ++c) {
          int32_t acc = avg ? 0 : -128;
          const int8_t *px = in_b + ((y0 + ky_start) * p->in_w + (x0 + kx_start)) * p->channels + c;
          for (y = ky_start; y < ky_end; ++y, px += row_skip) {
            for (x = kx_start; x < kx_end; ++x, px += p->channels) {
              const int32_t v = *px;
              if (avg) {
                acc += v;
              } else {
                acc = tl_max_i32(acc, v);
              }
            }
          }
          if (avg && count > 0) {
            /* round half away from zero */
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          acc = tl_min_i32(tl_max_i32(acc, p->act_min), p->act_max);
          *output++ = (int8_t)acc;
        }
      }
    }
  }
}

void tl_max_pool2d(const tl_pool_params *p, const int8_t *input, int8_t *output) {
  tl_pool(p, input, output, 0);
}

void tl_avg_pool2d(const tl_pool_params *p, const int8_t *input, int8_t *output) {
  tl_pool(p, input, output, 1);
}

void tl_mean(const tl_mean_params *p, const int8_t *input, int8_t *output) {
  int32_t o, r, i;
  for (o = 0; o < p->outer; ++o) {
    const int8_t *in_o = input + o * p->reduce_n * p->inner;
    for (i = 0; i < p->inner; ++i) {
      int32_t sum = 0;
      int32_t out;
      for (r = 0; r < p->reduce_n; ++r) sum += in_o[r * p->inner + i];
      sum -= p->input_zero_point * p->reduce_n;
      out = tl_mbqm_double(sum, p->multiplier, (int)p->shift) + p->output_zero_point;
      *output++ = (int8_t)tl_min_i32(tl_max_i32(out, -128), 127);
    }
  }
}

void tl_reduce_max(int32_t outer, int32_t reduce_n, int32_t inner, const int8_t *input, int8_t *output) {
  int32_t o, r, i;
  for (o = 0; o < outer; ++o) {
    const int8_t *in_o = input + o * reduce_n * inner;
    for (i = 0; i < inner; ++i) {
      int8_t m = -128;
      for (r = 0; r < reduce_n; ++r) {
        if (in_o[r * inner + i] > m) m = in_o[r * inner + i];
      }
      *output++ = m;
    }
  }
}
