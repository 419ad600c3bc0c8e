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
#define TL_MAC4(w, xa, xb, acc) \
  do { \
    const uint32_t w_ = (w); \
    acc = tl_smlad(tl_sxtb16(w_), xa, acc); \
    acc = tl_smlad(tl_sxtb16_ror8(w_), xb, acc); \
  } while (0)
#endif

/* acc[0..3] += the block's four rows . x; returns the pointer past the block. */
static const int8_t *tl_block4(const int8_t *w, const int8_t *x, int32_t in_n, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k = in_n >> 2, t;
  const int32_t tail = in_n & 3;
#ifdef TL_FC_DSP
  if (k >= 2 && ((uintptr_t)w & 3u) == 0) { /* LDRD needs word-aligned weights (TL_ALIGN4) */
    /* 8 inputs x 4 rows per iteration: 1 LDR + 2 SXTB16 per input word, LDRD + 4 SXTB16 + 4 SMLAD per
     * two rows; registers allocated by hand so nothing spills (44 instructions per 32 MACs). */
    int32_t pairs = k >> 1;
    uint32_t xa, xb, w0, w1, tt;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[xa], [%[x]], #4\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"
        "sxtb16 %[xb], %[xa], ror #8\n\t"
        "sxtb16 %[xa], %[xa]\n\t"
        "sxtb16 %[tt], %[w0], ror #8\n\t"
        "sxtb16 %[w0], %[w0]\n\t"
        "smlad %[a0], %[w0], %[xa], %[a0]\n\t"
        "smlad %[a0], %[tt], %[xb], %[a0]\n\t"
        "sxtb16 %[tt], %[w1], ror #8\n\t"
        "sxtb16 %[w1], %[w1]\n\t"
        "smlad %[a1], %[w1], %[xa], %[a1]\n\t"
        "smlad %[a1], %[tt], %[xb], %[a1]\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"
        "sxtb16 %[tt], %[w0], ror #8\n\t"
        "sxtb16 %[w0], %[w0]\n\t"
        "smlad %[a2], %[w0], %[xa], %[a2]\n\t"
        "smlad %[a2], %[tt], %[xb], %[a2]\n\t"
        "sxtb16 %[tt], %[w1], ror #8\n\t"
        "sxtb16 %[w1], %[w1]\n\t"
        "smlad %[a3], %[w1], %[xa], %[a3]\n\t"
        "smlad %[a3], %[tt], %[xb], %[a3]\n\t"
        "ldr %[xa], [%[x]], #4\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"
        "sxtb16 %[xb], %[xa], ror #8\n\t"
        "sxtb16 %[xa], %[xa]\n\t"
        "sxtb16 %[tt], %[w0], ror #8\n\t"
        "sxtb16 %[w0], %[w0]\n\t"
        "smlad %[a0], %[w0], %[xa], %[a0]\n\t"
        "smlad %[a0], %[tt], %[xb], %[a0]\n\t"
        "sxtb16 %[tt], %[w1], ror #8\n\t"
        "sxtb16 %[w1], %[w1]\n\t"
        "smlad %[a1], %[w1], %[xa], %[a1]\n\t"
        "smlad %[a1], %[tt], %[xb], %[a1]\n\t"
        "ldrd %[w0], %[w1], [%[w]], #8\n\t"
        "sxtb16 %[tt], %[w0], ror #8\n\t"
        "sxtb16 %[w0], %[w0]\n\t"
        "smlad %[a2], %[w0], %[xa], %[a2]\n\t"
        "smlad %[a2], %[tt], %[xb], %[a2]\n\t"
        "sxtb16 %[tt], %[w1], ror #8\n\t"
        "sxtb16 %[w1], %[w1]\n\t"
        "smlad %[a3], %[w1], %[xa], %[a3]\n\t"
        "smlad %[a3], %[tt], %[xb], %[a3]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x), [w] "+r"(w),
          [n] "+r"(pairs), [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), [tt] "=&r"(tt)
        :
        : "cc", "memory");
    k &= 1;
  }
  for (; k > 0; --k) {
    const uint32_t xv = tl_ld32(x), xa = tl_sxtb16(xv), xb = tl_sxtb16_ror8(xv);
    TL_MAC4(tl_ld32(w), xa, xb, a0);
    TL_MAC4(tl_ld32(w + 4), xa, xb, a1);
    TL_MAC4(tl_ld32(w + 8), xa, xb, a2);
    TL_MAC4(tl_ld32(w + 12), xa, xb, a3);
    x += 4;
    w += 16;
  }
#else
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
#endif
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

/* One plainly stored row . x. */
static int32_t tl_row(const int8_t *w, const int8_t *x, int32_t in_n, int32_t acc) {
  int32_t i = 0;
#ifdef TL_FC_DSP
  for (; i + 4 <= in_n; i += 4) {
    const uint32_t xv = tl_ld32(x + i);
    TL_MAC4(tl_ld32(w + i), tl_sxtb16(xv), tl_sxtb16_ror8(xv), acc);
  }
#endif
  for (; i < in_n; ++i) acc += w[i] * x[i];
  return acc;
}

void tl_fc_vector(const tl_fc_params *p, const int8_t *x, int8_t *y) {
  const int8_t *w = p->weights;
  const int32_t blocks = p->out_n / TL_FC_BLOCK;
  int32_t o = 0, b, r;
  int32_t acc[TL_FC_BLOCK];
  for (b = 0; b < blocks; ++b) {
    for (r = 0; r < TL_FC_BLOCK; ++r) acc[r] = p->bias[o + r];
    w = tl_block4(w, x, p->in_n, acc);
    for (r = 0; r < TL_FC_BLOCK; ++r, ++o) {
      const int32_t q = p->per_channel ? o : 0;
      y[o] = tl_requant(acc[r], p->multiplier[q], p->shift[q], p->output_offset, p->act_min, p->act_max);
    }
  }
  for (; o < p->out_n; ++o, w += p->in_n) {
    const int32_t q = p->per_channel ? o : 0;
    y[o] = tl_requant(tl_row(w, x, p->in_n, p->bias[o]), p->multiplier[q], p->shift[q], p->output_offset,
                      p->act_min, p->act_max);
  }
}

void tl_fully_connected(const tl_fc_params *p, const int8_t *input, int8_t *output) {
  int32_t b;
  for (b = 0; b < p->batches; ++b) tl_fc_vector(p, input + b * p->in_n, output + b * p->out_n);
}
