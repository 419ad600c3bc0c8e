/* CONV_2D and DEPTHWISE_CONV_2D, int8 NHWC with per-channel requantization. */
#include <string.h>

#include "tl_runtime.h"

static int8_t tl_requant_clamp(int32_t acc, const tl_conv_params *p, int32_t ch) {
  acc = tl_mul_by_quantized_multiplier(acc, p->multiplier[ch], (int)p->shift[ch]);
  acc += p->output_offset;
  if (acc < p->act_min) acc = p->act_min;
  if (acc > p->act_max) acc = p->act_max;
  return (int8_t)acc;
}

void tl_conv2d(const tl_conv_params *p, const int8_t *input, int8_t *output) {
  int32_t b, oy, ox, oc, ky, kx, ic;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (int32_t)b * p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->out_c; ++oc) {
          int32_t acc = 0;
          const int8_t *w_oc = p->weights + oc * p->k_h * p->k_w * p->in_c;
          for (ky = 0; ky < p->k_h; ++ky) {
            const int32_t in_y = in_y0 + ky * p->dil_h;
            if (in_y < 0 || in_y >= p->in_h) continue;
            for (kx = 0; kx < p->k_w; ++kx) {
              const int32_t in_x = in_x0 + kx * p->dil_w;
              const int8_t *in_px;
              const int8_t *w_px;
              if (in_x < 0 || in_x >= p->in_w) continue;
              in_px = in_b + (in_y * p->in_w + in_x) * p->in_c;
              w_px = w_oc + (ky * p->k_w + kx) * p->in_c;
              for (ic = 0; ic < p->in_c; ++ic) {
                acc += (int32_t)w_px[ic] * ((int32_t)in_px[ic] + p->input_offset);
              }
            }
          }
          if (p->bias != 0) acc += p->bias[oc];
          *output++ = tl_requant_clamp(acc, p, oc);
        }
      }
    }
  }
}

void tl_depthwise_conv2d(const tl_conv_params *p, const int8_t *input, int8_t *output) {
  int32_t b, oy, ox, ic, m, ky, kx;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (int32_t)b * p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < p->depth_multiplier; ++m) {
            const int32_t oc = ic * p->depth_multiplier + m;
            int32_t acc = 0;
            for (ky = 0; ky < p->k_h; ++ky) {
              const int32_t in_y = in_y0 + ky * p->dil_h;
              if (in_y < 0 || in_y >= p->in_h) continue;
              for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t in_x = in_x0 + kx * p->dil_w;
                int32_t in_v;
                int32_t w_v;
                if (in_x < 0 || in_x >= p->in_w) continue;
                in_v = in_b[(in_y * p->in_w + in_x) * p->in_c + ic];
                w_v = p->weights[(ky * p->k_w + kx) * p->out_c + oc];
                acc += w_v * (in_v + p->input_offset);
              }
            }
            if (p->bias != 0) acc += p->bias[oc];
            output[(oy * p->out_w + ox) * p->out_c + oc] = tl_requant_clamp(acc, p, oc);
          }
        }
      }
    }
    output += p->out_h * p->out_w * p->out_c;
  }
}

void tl_conv2d_im2col(const tl_conv_params *p, const int8_t *input, int8_t *output) {
  int8_t patch[TL_IM2COL_MAX];
  const int32_t row = p->k_w * p->in_c;
  const int8_t pad = (int8_t)(-p->input_offset); /* the zero point: contributes nothing */
  tl_fc_params fc;
  int32_t b, oy, ox, ky, kx;
  fc.batches = 1;
  fc.in_n = p->k_h * row;
  fc.out_n = p->out_c;
  fc.output_offset = p->output_offset;
  fc.act_min = p->act_min;
  fc.act_max = p->act_max;
  fc.per_channel = 1;
  fc.weights = p->weights;
  fc.bias = p->bias;
  fc.multiplier = p->multiplier;
  fc.shift = p->shift;
  if (fc.in_n > TL_IM2COL_MAX) return; /* the compiler never selects this kernel then */
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (int32_t)b * p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        int8_t *dst = patch;
        for (ky = 0; ky < p->k_h; ++ky) {
          const int32_t in_y = in_y0 + ky * p->dil_h;
          if (in_y < 0 || in_y >= p->in_h) {
            memset(dst, pad, (size_t)row);
            dst += row;
            continue;
          }
          for (kx = 0; kx < p->k_w; ++kx, dst += p->in_c) {
            const int32_t in_x = in_x0 + kx * p->dil_w;
            if (in_x < 0 || in_x >= p->in_w) {
              memset(dst, pad, (size_t)p->in_c);
            } else {
              memcpy(dst, in_b + (in_y * p->in_w + in_x) * p->in_c, (size_t)p->in_c);
            }
          }
        }
        tl_fc_vector(&fc, patch, output);
        output += p->out_c;
      }
    }
  }
}
