/* CONV_2D and DEPTHWISE_CONV_2D, int8 NHWC with per-channel requantization. */
#include <string.h>

#include "tl_runtime.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O2")
#endif

static int8_t tl_requant_clamp(int32_t acc, const tl_conv_params *p, int32_t ch) {
  /* the generic kernels: the slow path of either rounding (the narrow one is exact for the double too) */
  acc = tl_round_mode(p->rounding) == TL_ROUND_SINGLE ? tl_mbqm_single(acc, p->multiplier[ch], (int)p->shift[ch])
                                                      : tl_mbqm_double(acc, p->multiplier[ch], (int)p->shift[ch]);
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

/* Output pixel (oy, ox)'s k_h x k_w x in_c patch into dst (padding = the input zero point, which the
 * folded bias cancels); rows wholly inside the image by one copy. */
static void tl_im2col_patch(const tl_conv_params *p, const int8_t *in_b, int32_t oy, int32_t ox, int8_t *dst) {
  const int32_t row = p->k_w * p->in_c;
  const int32_t in_y0 = oy * p->stride_h - p->pad_h, in_x0 = ox * p->stride_w - p->pad_w;
  const int8_t pad = (int8_t)(-p->input_offset);
  const int whole = p->dil_w == 1 && in_x0 >= 0 && in_x0 + p->k_w <= p->in_w;
  int32_t ky, kx;
  for (ky = 0; ky < p->k_h; ++ky) {
    const int32_t in_y = in_y0 + ky * p->dil_h;
    if (in_y < 0 || in_y >= p->in_h) {
      memset(dst, pad, (size_t)row);
      dst += row;
      continue;
    }
    if (whole) {
      memcpy(dst, in_b + (in_y * p->in_w + in_x0) * p->in_c, (size_t)row);
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
}

void tl_conv2d_im2col(const tl_conv_params *p, const int8_t *input, int8_t *output) {
  const int32_t patch_n = p->k_h * p->k_w * p->in_c;
  /* two patches (pixels go through the weights two at a time), only as large as the patch needs; word
   * aligned for the DSP kernels' loads */
  uint32_t patch_words[2 * ((patch_n > 0 && patch_n <= TL_IM2COL_MAX ? patch_n : 1) + 3) / 4];
  int8_t *const patch0 = (int8_t *)patch_words;
  int8_t *const patch1 = patch0 + ((patch_n + 3) & ~3);
  const int32_t pixels = p->out_h * p->out_w;
  tl_fc_params fc;
  int32_t b, n;
  fc.batches = 1;
  fc.in_n = patch_n;
  fc.out_n = p->out_c;
  fc.output_offset = p->output_offset;
  fc.act_min = p->act_min;
  fc.act_max = p->act_max;
  fc.per_channel = 1;
  fc.weights = p->weights;
  fc.bias = p->bias;
  fc.multiplier = p->multiplier;
  fc.shift = p->shift;
  fc.rounding = p->rounding;
  if (fc.in_n > TL_IM2COL_MAX) return; /* the compiler never selects this kernel then */
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (int32_t)b * p->in_h * p->in_w * p->in_c;
    for (n = 0; n + 2 <= pixels; n += 2) {
      tl_im2col_patch(p, in_b, n / p->out_w, n % p->out_w, patch0);
      tl_im2col_patch(p, in_b, (n + 1) / p->out_w, (n + 1) % p->out_w, patch1);
      tl_fc_vector2(&fc, patch0, patch1, output, output + p->out_c);
      output += 2 * p->out_c;
    }
    if (n < pixels) {
      tl_im2col_patch(p, in_b, n / p->out_w, n % p->out_w, patch0);
      tl_fc_vector(&fc, patch0, output);
      output += p->out_c;
    }
  }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TL_DW_DSP 1
static inline uint32_t tl_dw_ld32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint32_t tl_dw_sxtb16(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(v));
  return r;
}
static inline uint32_t tl_dw_sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
static inline int32_t tl_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
static inline int32_t tl_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
#endif

/* Rows of the (padded) input for output row oy: in place, the rows at or above oy come from the ring
 * of saved rows (ring_rows of them), the rows below from the input, which is not yet overwritten. */
static void tl_dw_rows(const tl_conv_params *p, const int8_t *in_b, const int8_t *ring, int32_t ring_rows,
                       int32_t oy, const int8_t **rowp) {
  const int32_t in_y0 = oy * p->stride_h - p->pad_h;
  const int32_t row_bytes = p->in_w * p->in_c;
  int32_t ky;
  for (ky = 0; ky < p->k_h; ++ky) {
    const int32_t in_y = in_y0 + ky * p->dil_h;
    if (in_y < 0 || in_y >= p->in_h) {
      rowp[ky] = 0;
    } else if (ring != 0 && in_y <= oy) {
      rowp[ky] = ring + (in_y % ring_rows) * row_bytes;
    } else {
      rowp[ky] = in_b + in_y * row_bytes;
    }
  }
}

/* tap t of four channels: a0..a3 += w[0..3] * s_t[0..3] */
#ifdef TL_DW_DSP
#define TL_DW_MAC4 \
  { \
    const uint32_t xv = tl_dw_ld32(s_t), wv = tl_dw_ld32(w); \
    const uint32_t xa = tl_dw_sxtb16(xv), xb = tl_dw_sxtb16_ror8(xv); \
    const uint32_t wa = tl_dw_sxtb16(wv), wb = tl_dw_sxtb16_ror8(wv); \
    a0 = tl_smlabb(wa, xa, a0); \
    a2 = tl_smlatt(wa, xa, a2); \
    a1 = tl_smlabb(wb, xb, a1); \
    a3 = tl_smlatt(wb, xb, a3); \
  }
#else
#define TL_DW_MAC4 \
  { \
    a0 += w[0] * s_t[0]; \
    a1 += w[1] * s_t[1]; \
    a2 += w[2] * s_t[2]; \
    a3 += w[3] * s_t[3]; \
  }
#endif

/* One output pixel's channels: src[t] = the input pixel under tap t (the zero-point pixel where padded,
 * which the folded bias cancels); each four channels' sums requantized out of line in the layer's rounding
 * (tl_requant_run_for). */
typedef int8_t *(*tl_dw_pixel_fn)(const tl_conv_params *p, const int8_t *const *src, int32_t taps, int8_t *y);
static int8_t *tl_dw_pixel(const tl_conv_params *p, const int8_t *const *src, int32_t taps, int8_t *y) {
  const int32_t ch = p->in_c;
  const int32_t *bias = p->bias;
  int32_t c, t;
  int32_t acc[4];
  tl_requant_ctx rq;
  tl_requant_run_fn run;
  rq.mult = p->multiplier;
  rq.shift = p->shift;
  rq.qstep = 1;
  rq.out_offset = p->output_offset;
  rq.act_min = p->act_min;
  rq.act_max = p->act_max;
  rq.mode = tl_round_mode(p->rounding);
  run = tl_requant_run_for(rq.mode);
  for (c = 0; c + 4 <= ch; c += 4, rq.mult += 4, rq.shift += 4) {
    int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
    const int8_t *w = p->weights + c;
    for (t = 0; t < taps; ++t, w += ch) {
      const int8_t *s_t = src[t] + c;
      TL_DW_MAC4
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    y = run(&rq, acc, 4, y);
  }
  for (; c < ch; ++c, ++rq.mult, ++rq.shift) {
    int32_t a = bias[c];
    const int8_t *w = p->weights + c;
    for (t = 0; t < taps; ++t, w += ch) a += *w * src[t][c];
    y = run(&rq, &a, 1, y);
  }
  return y;
}

#ifdef TL_DW_DSP
/* The 3x3 path in assembly for the two narrow roundings (activation range all of int8): per group of four
 * channels the nine taps unrolled (LDR of the input and weight words, SXTB16 both, SMLABB/SMLATT), then
 * the four outputs requantized in registers. tl_dw_job's offsets are the assembly's. */
typedef struct {
  const int8_t *const *src; /* 0: the nine tap pixels */
  const int8_t *w;          /* 4: weights [tap][ch] */
  int32_t ch;               /* 8 */
  const int32_t *bias;      /* 12 */
  const int32_t *mult;      /* 16 */
  const int32_t *shift;     /* 20 */
  int8_t *y;                /* 24 */
  int32_t off;              /* 28 */
  int32_t groups;           /* 32: groups of four channels left */
} tl_dw_job;

#define TL_DW_TAP \
  "ldr r8, [r0], #4\n\t" \
  "ldr r9, [r8, r3]\n\t" \
  "ldr r10, [r1]\n\t" \
  "add r1, r1, r2\n\t" \
  "sxtb16 r8, r9, ror #8\n\t" \
  "sxtb16 r9, r9\n\t" \
  "sxtb16 r11, r10, ror #8\n\t" \
  "sxtb16 r10, r10\n\t" \
  "smlabb r4, r10, r9, r4\n\t" \
  "smlatt r6, r10, r9, r6\n\t" \
  "smlabb r5, r11, r8, r5\n\t" \
  "smlatt r7, r11, r8, r7\n\t"
/* acc A with multiplier M; shift from [r9], output zero point in r1 */
#define TL_DW_RQ_SN(A, M) \
  "ldr r2, [r9], #4\n\t" \
  "smmul " A ", " A ", " M "\n\t" \
  "mvn r2, r2\n\t" \
  "sub r2, r2, #1\n\t" \
  "asr " A ", " A ", r2\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", r1, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
#define TL_DW_RQ_DN(A, M) \
  "ldr r2, [r9], #4\n\t" \
  "lsl " A ", " A ", #1\n\t" \
  "smmulr " A ", " A ", " M "\n\t" \
  "sub " A ", " A ", " A ", lsr #31\n\t" \
  "mvn r2, r2\n\t" \
  "asr " A ", " A ", r2\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", r1, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
#define TL_DW_ASM(RQ) \
  __asm__ volatile( \
      "push {r0, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t" \
      "movs r3, #0\n" \
      "6:\n\t" \
      "ldr r12, [r0, #12]\n\t" \
      "ldmia r12!, {r4, r5, r6, r7}\n\t" \
      "str r12, [r0, #12]\n\t" \
      "ldr r1, [r0, #4]\n\t" \
      "ldr r2, [r0, #8]\n\t" \
      "add r1, r1, r3\n\t" \
      "ldr r0, [r0, #0]\n\t" \
      TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP TL_DW_TAP \
      "ldr r0, [sp]\n\t" \
      "ldrd r8, r9, [r0, #16]\n\t" \
      "ldmia r8!, {r10, r11, r12, lr}\n\t" \
      "ldr r1, [r0, #28]\n\t" \
      RQ("r4", "r10") RQ("r5", "r11") RQ("r6", "r12") RQ("r7", "lr") \
      "strd r8, r9, [r0, #16]\n\t" \
      "ldr r10, [r0, #24]\n\t" \
      "strb r4, [r10], #1\n\t" \
      "strb r5, [r10], #1\n\t" \
      "strb r6, [r10], #1\n\t" \
      "strb r7, [r10], #1\n\t" \
      "str r10, [r0, #24]\n\t" \
      "adds r3, r3, #4\n\t" \
      "ldr r2, [r0, #32]\n\t" \
      "subs r2, r2, #1\n\t" \
      "str r2, [r0, #32]\n\t" \
      "bne 6b\n\t" \
      "pop {r0, r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t")
#define TL_DW_UNUSED __attribute__((unused))
__attribute__((naked, noinline)) static void tl_dw9_sn(TL_DW_UNUSED tl_dw_job *job) { TL_DW_ASM(TL_DW_RQ_SN); }
__attribute__((naked, noinline)) static void tl_dw9_dn(TL_DW_UNUSED tl_dw_job *job) { TL_DW_ASM(TL_DW_RQ_DN); }

/* One pixel by the assembly (its four-channel groups), the last ch % 4 channels in C. */
TL_INLINE int8_t *tl_dw9_pixel(const tl_conv_params *p, const int8_t *const *src, int8_t *y, const int mode) {
  const int32_t ch = p->in_c, groups = ch >> 2;
  int32_t c, t;
  if (groups > 0) {
    tl_dw_job job;
    job.src = src;
    job.w = p->weights;
    job.ch = ch;
    job.bias = p->bias;
    job.mult = p->multiplier;
    job.shift = p->shift;
    job.y = y;
    job.off = p->output_offset;
    job.groups = groups;
    if (mode == TL_ROUND_SINGLE_NARROW) {
      tl_dw9_sn(&job);
    } else {
      tl_dw9_dn(&job);
    }
    y += 4 * groups;
  }
  for (c = 4 * groups; c < ch; ++c) {
    int32_t a = p->bias[c];
    const int8_t *w = p->weights + c;
    for (t = 0; t < 9; ++t, w += ch) a += *w * src[t][c];
    *y++ = tl_requant_mode(a, p->multiplier[c], p->shift[c], p->output_offset, -128, 127, mode);
  }
  return y;
}
static int8_t *tl_dw9_pixel_sn(const tl_conv_params *p, const int8_t *const *src, int32_t taps, int8_t *y) {
  (void)taps;
  return tl_dw9_pixel(p, src, y, TL_ROUND_SINGLE_NARROW);
}
static int8_t *tl_dw9_pixel_dn(const tl_conv_params *p, const int8_t *const *src, int32_t taps, int8_t *y) {
  (void)taps;
  return tl_dw9_pixel(p, src, y, TL_ROUND_DOUBLE_NARROW);
}
#endif

static void tl_dw_folded(const tl_conv_params *p, const int8_t *input, int8_t *output, int8_t *ring,
                         int32_t ring_rows, const int8_t *zpix) {
  const int32_t ch = p->in_c;
  const int8_t *src[TL_DW_TAPS_MAX];
  const int8_t *rowp[TL_DW_TAPS_MAX];
  int32_t b, oy, ox, ky, kx, t;
  tl_dw_pixel_fn pixel = tl_dw_pixel;
#ifdef TL_DW_DSP
  const int mode = tl_round_mode(p->rounding);
  if (p->k_h * p->k_w == 9 && p->act_min <= -128 && p->act_max >= 127) {
    if (mode == TL_ROUND_SINGLE_NARROW) pixel = tl_dw9_pixel_sn;
    if (mode == TL_ROUND_DOUBLE_NARROW) pixel = tl_dw9_pixel_dn;
  }
#endif
  for (b = 0; b < p->batches; ++b) {
    const int8_t *in_b = input + (int32_t)b * p->in_h * p->in_w * ch;
    for (oy = 0; oy < p->out_h; ++oy) {
      if (ring != 0) { /* save input row oy before output row oy overwrites it */
        memcpy(ring + (oy % ring_rows) * p->in_w * ch, in_b + oy * p->in_w * ch, (size_t)(p->in_w * ch));
      }
      tl_dw_rows(p, in_b, ring, ring_rows, oy, rowp);
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        t = 0;
        for (ky = 0; ky < p->k_h; ++ky) {
          for (kx = 0; kx < p->k_w; ++kx, ++t) {
            const int32_t in_x = in_x0 + kx * p->dil_w;
            src[t] = (rowp[ky] == 0 || in_x < 0 || in_x >= p->in_w) ? zpix : rowp[ky] + in_x * ch;
          }
        }
        output = pixel(p, src, t, output);
      }
    }
  }
}

void tl_depthwise_conv2d_folded(const tl_conv_params *p, const int8_t *input, int8_t *output) {
  int8_t zpix[p->in_c > 0 ? p->in_c + 4 : 4]; /* one pixel of the zero point: what padding reads */
  if (p->k_h * p->k_w > TL_DW_TAPS_MAX || p->depth_multiplier != 1) return; /* never selected then */
  if (input == output) {
    /* in place (stride 1, same size; the compiler's plan): a ring of pad_h + 1 saved input rows */
    const int32_t ring_rows = p->pad_h + 1;
    int8_t ring[ring_rows * p->in_w * p->in_c];
    memset(zpix, -p->input_offset, (size_t)p->in_c);
    tl_dw_folded(p, input, output, ring, ring_rows, zpix);
  } else {
    memset(zpix, -p->input_offset, (size_t)p->in_c);
    tl_dw_folded(p, input, output, 0, 1, zpix);
  }
}
