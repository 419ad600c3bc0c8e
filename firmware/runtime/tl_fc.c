/* FULLY_CONNECTED, int8 with per-tensor or per-channel requantization, on the blocked weight layout
 * of tl_runtime.h. Two builds of the same dot products, chosen at compile time:
 *   __ARM_FEATURE_DSP (Cortex-M4/M7/M33): SXTB16 sign-extends bytes 0,2 (and, rotated, 1,3) of a word
 *     into two 16-bit lanes; SMLAD multiplies both lanes and adds them to the accumulator. Inputs and
 *     weights go through the same permutation, so lane pairs match without reordering the weights.
 *   otherwise (host, Cortex-M0+): portable C over the same layout.
 * Integer sums are exact in both, so the outputs are identical (tests/firmware/test_kernels.py). */
#include <string.h>

#include "tl_runtime.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O2") /* the kernels measure fastest at -O2 whatever the image is built with */
#endif

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TL_FC_DSP 1

static inline uint32_t tl_ld32(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4); /* one LDR: unaligned word loads are allowed on ARMv7E-M */
  return v;
}
static inline uint32_t tl_sxtb16(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(v));
  return r;
}
static inline uint32_t tl_sxtb16_ror8(uint32_t v) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
static inline int32_t tl_smlad(uint32_t a, uint32_t b, int32_t acc) {
  int32_t r;
  __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
  return r;
}
static inline int32_t tl_dot4(uint32_t w, uint32_t xa, uint32_t xb) {
  return tl_smlad(tl_sxtb16_ror8(w), xb, tl_smlad(tl_sxtb16(w), xa, 0));
}
#endif

#ifdef TL_FC_DSP
/* One step of 4 inputs x 4 rows: the inputs come pre-extended (LDRD of two lane pairs), the weights of
 * two rows per LDRD, each row word extended by two SXTB16 into two SMLADs: 19 instructions, 16 MACs. */
#define TL_STEP4 \
  "ldrd %[xa], %[xb], [%[xs]], #8\n\t" \
  "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
  "sxtb16 %[tt], %[w0], ror #8\n\t" \
  "sxtb16 %[w0], %[w0]\n\t" \
  "smlad %[a0], %[w0], %[xa], %[a0]\n\t" \
  "smlad %[a0], %[tt], %[xb], %[a0]\n\t" \
  "sxtb16 %[tt], %[w1], ror #8\n\t" \
  "sxtb16 %[w1], %[w1]\n\t" \
  "smlad %[a1], %[w1], %[xa], %[a1]\n\t" \
  "smlad %[a1], %[tt], %[xb], %[a1]\n\t" \
  "ldrd %[w0], %[w1], [%[w]], #8\n\t" \
  "sxtb16 %[tt], %[w0], ror #8\n\t" \
  "sxtb16 %[w0], %[w0]\n\t" \
  "smlad %[a2], %[w0], %[xa], %[a2]\n\t" \
  "smlad %[a2], %[tt], %[xb], %[a2]\n\t" \
  "sxtb16 %[tt], %[w1], ror #8\n\t" \
  "sxtb16 %[w1], %[w1]\n\t" \
  "smlad %[a3], %[w1], %[xa], %[a3]\n\t" \
  "smlad %[a3], %[tt], %[xb], %[a3]\n\t"
#define TL_STEP_OPERANDS \
  : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xs] "+r"(xs), [w] "+r"(w), [n] "+r"(n), \
    [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), [tt] "=&r"(tt) \
  : \
  : "cc", "memory"

/* acc[0..3] += the block's four rows . x, with xs = x's words pre-extended (SXTB16, SXTB16 ROR 8);
 * w word-aligned. Returns the pointer past the block. */
TL_INLINE const int8_t *tl_block4(const int8_t *w, const int8_t *x, const uint32_t *xs, int32_t in_n,
                               int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t n = in_n >> 4, t;
  const int32_t tail = in_n & 3;
  uint32_t xa, xb, w0, w1, tt;
  if (n > 0) {
    __asm__ volatile("1:\n\t" TL_STEP4 TL_STEP4 TL_STEP4 TL_STEP4 "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t" TL_STEP_OPERANDS);
  }
  n = (in_n >> 2) & 3;
  if (n > 0) {
    __asm__ volatile("1:\n\t" TL_STEP4 "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t" TL_STEP_OPERANDS);
  }
  x += in_n & ~3;
  for (t = 0; t < tail; ++t) {
    const int32_t xt = x[t];
    a0 += w[t] * xt;
    a1 += w[tail + t] * xt;
    a2 += w[2 * tail + t] * xt;
    a3 += w[3 * tail + t] * xt;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w + 4 * tail;
}
#else
/* acc[0..3] += the block's four rows . x; returns the pointer past the block. */
static const int8_t *tl_block4(const int8_t *w, const int8_t *x, int32_t in_n, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k = in_n >> 2, t;
  const int32_t tail = in_n & 3;
  for (; k > 0; --k) {
    for (t = 0; t < 4; ++t) {
      const int32_t xt = x[t];
      a0 += w[t] * xt;
      a1 += w[4 + t] * xt;
      a2 += w[8 + t] * xt;
      a3 += w[12 + t] * xt;
    }
    x += 4;
    w += 16;
  }
  for (t = 0; t < tail; ++t) {
    const int32_t xt = x[t];
    a0 += w[t] * xt;
    a1 += w[tail + t] * xt;
    a2 += w[2 * tail + t] * xt;
    a3 += w[3 * tail + t] * xt;
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  return w + 4 * tail;
}
#endif

/* One plainly stored row . x. */
static int32_t tl_row(const int8_t *w, const int8_t *x, int32_t in_n, int32_t acc) {
  int32_t i = 0;
#ifdef TL_FC_DSP
  for (; i + 4 <= in_n; i += 4) {
    const uint32_t xv = tl_ld32(x + i);
    acc += tl_dot4(tl_ld32(w + i), tl_sxtb16(xv), tl_sxtb16_ror8(xv));
  }
#endif
  for (; i < in_n; ++i) acc += w[i] * x[i];
  return acc;
}

/* The blocks of rows, then the leftover rows; xs: x's words pre-extended (DSP build only). Each block's
 * four sums are requantized out of line (tl_requant_run_for: the layer's rounding, one call per block). */
static void tl_fc_rows(const tl_fc_params *p, const int8_t *x, const uint32_t *xs, int8_t *y) {
  const int8_t *w = p->weights;
  const int32_t blocks = p->out_n / TL_FC_BLOCK, in_n = p->in_n, left = p->out_n % TL_FC_BLOCK;
  const int32_t *bias = p->bias;
  int32_t b, r;
  int32_t acc[TL_FC_BLOCK];
  tl_requant_ctx rq;
  tl_requant_run_fn run;
#ifdef TL_FC_DSP
  const int aligned = ((uintptr_t)w & 3u) == 0; /* LDRD needs word-aligned weights (TL_ALIGN4) */
  const int32_t words = in_n >> 2, tail = in_n & 3;
#else
  (void)xs;
#endif
  rq.mult = p->multiplier;
  rq.shift = p->shift;
  rq.qstep = p->per_channel ? 1 : 0;
  rq.out_offset = p->output_offset;
  rq.act_min = p->act_min;
  rq.act_max = p->act_max;
  rq.mode = tl_round_mode(p->rounding);
  run = tl_requant_run_for(rq.mode);
  for (b = 0; b < blocks; ++b) {
    acc[0] = bias[0];
    acc[1] = bias[1];
    acc[2] = bias[2];
    acc[3] = bias[3];
    bias += 4;
#ifdef TL_FC_DSP
    if (aligned) {
      w = tl_block4(w, x, xs, in_n, acc);
    } else { /* unaligned weights (another compiler's layout): one row at a time, same sums */
      int32_t i, k;
      for (r = 0; r < TL_FC_BLOCK; ++r) {
        for (k = 0; k < words; ++k) acc[r] += tl_dot4(tl_ld32(w + 16 * k + 4 * r), xs[2 * k], xs[2 * k + 1]);
        for (i = 0; i < tail; ++i) acc[r] += w[16 * words + r * tail + i] * x[4 * words + i];
      }
      w += in_n * TL_FC_BLOCK;
    }
#else
    w = tl_block4(w, x, in_n, acc);
#endif
    y = run(&rq, acc, TL_FC_BLOCK, y);
    rq.mult += TL_FC_BLOCK * rq.qstep;
    rq.shift += TL_FC_BLOCK * rq.qstep;
  }
  for (r = 0; r < left; ++r, w += in_n) acc[r] = tl_row(w, x, in_n, bias[r]);
  run(&rq, acc, left, y);
}

void tl_fc_vector(const tl_fc_params *p, const int8_t *x, int8_t *y) {
#ifdef TL_FC_DSP
  /* the input's words sign-extended once (on the stack, 2 bytes per input), shared by every block */
  const int32_t words = p->in_n >> 2;
  uint32_t xs[(p->in_n >> 2) * 2 + 2];
  int32_t k;
  for (k = 0; k < words; ++k) {
    const uint32_t xv = tl_ld32(x + 4 * k);
    xs[2 * k] = tl_sxtb16(xv);
    xs[2 * k + 1] = tl_sxtb16_ror8(xv);
  }
  tl_fc_rows(p, x, xs, y);
#else
  tl_fc_rows(p, x, 0, y);
#endif
}

void tl_fully_connected(const tl_fc_params *p, const int8_t *input, int8_t *output) {
  int32_t b;
  if (input == output && p->in_n == p->out_n) {
    /* in place (the compiler's plan for CONV_2D 1x1 with as many outputs as inputs): each vector is
     * copied aside before its outputs overwrite it */
    int8_t x[p->in_n > 0 ? p->in_n : 1];
    for (b = 0; b < p->batches; ++b) {
      memcpy(x, input + b * p->in_n, (size_t)p->in_n);
      tl_fc_vector(p, x, output + b * p->out_n);
    }
    return;
  }
  for (b = 0; b < p->batches; ++b) tl_fc_vector(p, input + b * p->in_n, output + b * p->out_n);
}
