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

#ifndef TL_FC_DSP
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

#ifdef TL_FC_DSP
#define TL_UNUSED __attribute__((unused)) /* the naked functions' arguments: read by their assembly */
/* acc[0..3] += the four rows of a block . x over `steps` runs of four inputs: xs = x's words
 * pre-extended (2 per run), w the block's words (4 per run, LDM). Per run 18 instructions for 16 MACs
 * (LDRD, LDM, 8 SXTB16, 8 SMLAD), eight runs per loop pass. Returns w past the runs. */
__attribute__((naked, noinline)) static const int8_t *tl_run4(TL_UNUSED const uint32_t *xs, TL_UNUSED const int8_t *w,
                                                               TL_UNUSED int32_t steps, TL_UNUSED int32_t *acc) {
#define TL_R4 \
  "ldrd r7, r8, [r0], #8\n\t" \
  "ldmia r1!, {r9, r10, r11, r12}\n\t" \
  "sxtb16 lr, r9, ror #8\n\t" \
  "sxtb16 r9, r9\n\t" \
  "smlad r3, r9, r7, r3\n\t" \
  "smlad r3, lr, r8, r3\n\t" \
  "sxtb16 lr, r10, ror #8\n\t" \
  "sxtb16 r10, r10\n\t" \
  "smlad r4, r10, r7, r4\n\t" \
  "smlad r4, lr, r8, r4\n\t" \
  "sxtb16 lr, r11, ror #8\n\t" \
  "sxtb16 r11, r11\n\t" \
  "smlad r5, r11, r7, r5\n\t" \
  "smlad r5, lr, r8, r5\n\t" \
  "sxtb16 lr, r12, ror #8\n\t" \
  "sxtb16 r12, r12\n\t" \
  "smlad r6, r12, r7, r6\n\t" \
  "smlad r6, lr, r8, r6\n\t"
  __asm__ volatile(
      "push {r3, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
      "ldmia r3, {r3, r4, r5, r6}\n\t"
      "tst r2, #7\n\t"
      "beq 2f\n"
      "1:\n\t" TL_R4
      "sub r2, r2, #1\n\t"
      "tst r2, #7\n\t"
      "bne 1b\n"
      "2:\n\t"
      "lsrs r2, r2, #3\n\t"
      "beq 4f\n"
      "3:\n\t" TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4
      "subs r2, r2, #1\n\t"
      "bne 3b\n"
      "4:\n\t"
      "ldr r12, [sp]\n\t"
      "stmia r12, {r3, r4, r5, r6}\n\t"
      "mov r0, r1\n\t"
      "pop {r3, r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t");
#undef TL_R4
}

/* Whole layers in assembly for the two narrow roundings (per-channel, word-aligned weights, in_n and out_n
 * multiples of 4, activation range all of int8): each block's MAC loop as tl_run4, then its four outputs
 * requantized in registers.
 * tl_fc_job's offsets are the assembly's. */
typedef struct {
  const int8_t *w;       /* 0: the next block's weights */
  int32_t words;         /* 4: in_n / 4 */
  const uint32_t *xs;    /* 8: x pre-extended */
  const int32_t *bias;   /* 12 */
  const int32_t *mult;   /* 16 */
  const int32_t *shift;  /* 20 */
  int8_t *y;             /* 24 */
  int32_t off;           /* 28: output zero point */
  const int32_t *mult_end; /* 32: the multipliers' end (the last block's is read) */
} tl_fc_job;

/* single narrow: hi = SMMUL(acc, m); ((hi >> (-s - 2)) + 1) >> 1 = (hi + 2^(-s-2)) >> (-s-1) */
#define TL_RQ_SN(A, M) \
  "smmul " A ", " A ", " M "\n\t" \
  "ldr r2, [r8], #4\n\t" \
  "mvn r2, r2\n\t" \
  "sub r2, r2, #1\n\t" \
  "asr " A ", " A ", r2\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", lr, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
/* double narrow: x = SMMULR(2 acc, m); y = x - (x < 0); ((y >> (-s - 1)) + 1) >> 1
 * = (x + 2^(-s-1) - (x < 0)) >> -s */
#define TL_RQ_DN(A, M) \
  "lsl " A ", " A ", #1\n\t" \
  "smmulr " A ", " A ", " M "\n\t" \
  "ldr r2, [r8], #4\n\t" \
  "sub " A ", " A ", " A ", lsr #31\n\t" \
  "mvn r2, r2\n\t" \
  "asr " A ", " A ", r2\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", lr, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
#define TL_FC_LAYER_ASM(RQ) \
  __asm__ volatile( \
      "push {r0, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n" \
      "6:\n\t" \
      "ldr r12, [r0, #12]\n\t" \
      "ldmia r12!, {r3, r4, r5, r6}\n\t" \
      "str r12, [r0, #12]\n\t" \
      "ldrd r1, r2, [r0, #0]\n\t" \
      "ldr r0, [r0, #8]\n\t" \
      "tst r2, #7\n\t" \
      "beq 2f\n" \
      "1:\n\t" TL_R4 \
      "sub r2, r2, #1\n\t" \
      "tst r2, #7\n\t" \
      "bne 1b\n" \
      "2:\n\t" \
      "lsrs r2, r2, #3\n\t" \
      "beq 4f\n" \
      "3:\n\t" TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 TL_R4 \
      "subs r2, r2, #1\n\t" \
      "bne 3b\n" \
      "4:\n\t" \
      "ldr r0, [sp]\n\t" \
      "str r1, [r0, #0]\n\t" \
      "ldrd r7, r8, [r0, #16]\n\t" \
      "ldmia r7!, {r9, r10, r11, r12}\n\t" \
      "ldr lr, [r0, #28]\n\t" \
      "ldr r1, [r0, #24]\n\t" \
      RQ("r3", "r9") RQ("r4", "r10") RQ("r5", "r11") RQ("r6", "r12") \
      "strb r3, [r1], #1\n\t" \
      "strb r4, [r1], #1\n\t" \
      "strb r5, [r1], #1\n\t" \
      "strb r6, [r1], #1\n\t" \
      "str r1, [r0, #24]\n\t" \
      "strd r7, r8, [r0, #16]\n\t" \
      "ldr r2, [r0, #32]\n\t" \
      "cmp r7, r2\n\t" \
      "bne 6b\n\t" \
      "pop {r0, r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t")

#define TL_R4 \
  "ldrd r7, r8, [r0], #8\n\t" \
  "ldmia r1!, {r9, r10, r11, r12}\n\t" \
  "sxtb16 lr, r9, ror #8\n\t" \
  "sxtb16 r9, r9\n\t" \
  "smlad r3, r9, r7, r3\n\t" \
  "smlad r3, lr, r8, r3\n\t" \
  "sxtb16 lr, r10, ror #8\n\t" \
  "sxtb16 r10, r10\n\t" \
  "smlad r4, r10, r7, r4\n\t" \
  "smlad r4, lr, r8, r4\n\t" \
  "sxtb16 lr, r11, ror #8\n\t" \
  "sxtb16 r11, r11\n\t" \
  "smlad r5, r11, r7, r5\n\t" \
  "smlad r5, lr, r8, r5\n\t" \
  "sxtb16 lr, r12, ror #8\n\t" \
  "sxtb16 r12, r12\n\t" \
  "smlad r6, r12, r7, r6\n\t" \
  "smlad r6, lr, r8, r6\n\t"
__attribute__((naked, noinline)) static void tl_fc_layer_sn(TL_UNUSED tl_fc_job *job) {
  TL_FC_LAYER_ASM(TL_RQ_SN);
}
__attribute__((naked, noinline)) static void tl_fc_layer_dn(TL_UNUSED tl_fc_job *job) {
  TL_FC_LAYER_ASM(TL_RQ_DN);
}
#undef TL_R4

/* The assembly layer for p where it applies (1 = done). */
static int tl_fc_layer_asm(const tl_fc_params *p, const uint32_t *xs, int8_t *y, int mode) {
  tl_fc_job job;
  if (!p->per_channel || p->out_n < 4 || p->act_min > -128 || p->act_max < 127 ||
      (mode != TL_ROUND_SINGLE_NARROW && mode != TL_ROUND_DOUBLE_NARROW)) {
    return 0; /* SSAT is the only clamp there */
  }
  job.w = p->weights;
  job.words = p->in_n >> 2;
  job.xs = xs;
  job.bias = p->bias;
  job.mult = p->multiplier;
  job.shift = p->shift;
  job.y = y;
  job.off = p->output_offset;
  job.mult_end = p->multiplier + (p->out_n & ~3);
  if (mode == TL_ROUND_SINGLE_NARROW) {
    tl_fc_layer_sn(&job);
  } else {
    tl_fc_layer_dn(&job);
  }
  return 1;
}

#endif

/* The blocks of rows, then the leftover rows; xs: x's words pre-extended (DSP build only). The DSP build
 * runs whole layers of the two narrow roundings in assembly (tl_fc_layer_asm); otherwise each block's four
 * sums are requantized out of line (tl_requant_run_for: the layer's rounding, one call per block). */
static void tl_fc_rows(const tl_fc_params *p, const int8_t *x, const uint32_t *xs, int8_t *y) {
  const int8_t *w = p->weights;
  const int32_t blocks = p->out_n / TL_FC_BLOCK, in_n = p->in_n, left = p->out_n % TL_FC_BLOCK;
  const int32_t *bias = p->bias;
  int32_t b, r;
  int32_t acc[TL_FC_BLOCK];
  tl_requant_ctx rq;
  tl_requant_run_fn run;
#ifdef TL_FC_DSP
  const int aligned = ((uintptr_t)w & 3u) == 0; /* LDM/LDRD need word-aligned weights (TL_ALIGN4) */
  const int32_t words = in_n >> 2, tail = in_n & 3;
  if (aligned && ((in_n | p->out_n) & 3) == 0 && tl_fc_layer_asm(p, xs, y, tl_round_mode(p->rounding))) return;
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
      int32_t t;
      const int8_t *xt = x + 4 * words;
      w = tl_run4(xs, w, words, acc);
      for (t = 0; t < tail; ++t) {
        const int32_t v = xt[t];
        acc[0] += w[t] * v;
        acc[1] += w[tail + t] * v;
        acc[2] += w[2 * tail + t] * v;
        acc[3] += w[3 * tail + t] * v;
      }
      w += 4 * tail;
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

#ifdef TL_FC_DSP
/* Two vectors through a whole layer in assembly (same conditions as tl_fc_layer_asm): per pair of rows
 * r, r+1 of a block, a loop over runs of four inputs (LDM of both vectors' extended words, LDRD of the two
 * rows' weight words, each extended once for both vectors: 14 instructions for 16 MACs), then the four
 * outputs (r and r+1 of x0 and x1) requantized in registers. tl_fc_job2's offsets are the assembly's. */
typedef struct {
  const int8_t *w;       /* 0: the next row pair's first word */
  int32_t words;         /* 4 */
  const uint32_t *xs2;   /* 8 */
  const int32_t *bias;   /* 12 */
  const int32_t *mult;   /* 16 */
  const int32_t *shift;  /* 20 */
  int8_t *y0, *y1;       /* 24, 28 */
  int32_t off;           /* 32 */
  int32_t pairs;         /* 36: row pairs left (even at the start of a block) */
} tl_fc_job2;

/* requantization of A with multiplier M and shift register E (already -s - 2 for single, -s - 1 for double) */
#define TL_RQ2_SN(A, M, E) \
  "smmul " A ", " A ", " M "\n\t" \
  "asr " A ", " A ", " E "\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", lr, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
#define TL_RQ2_DN(A, M, E) \
  "lsl " A ", " A ", #1\n\t" \
  "smmulr " A ", " A ", " M "\n\t" \
  "sub " A ", " A ", " A ", lsr #31\n\t" \
  "asr " A ", " A ", " E "\n\t" \
  "add " A ", " A ", #1\n\t" \
  "add " A ", lr, " A ", asr #1\n\t" \
  "ssat " A ", #8, " A "\n\t"
#define TL_E_SN "mvn r11, r11\n\tmvn r12, r12\n\tsub r11, r11, #1\n\tsub r12, r12, #1\n\t"
#define TL_E_DN "mvn r11, r11\n\tmvn r12, r12\n\t"
#define TL_R22 \
  "ldmia r0!, {r7, r8, r9, r10}\n\t" \
  "ldrd r11, r12, [r1], #16\n\t" \
  "sxtb16 lr, r11, ror #8\n\t" \
  "sxtb16 r11, r11\n\t" \
  "smlad r3, r11, r7, r3\n\t" \
  "smlad r3, lr, r8, r3\n\t" \
  "smlad r4, r11, r9, r4\n\t" \
  "smlad r4, lr, r10, r4\n\t" \
  "sxtb16 lr, r12, ror #8\n\t" \
  "sxtb16 r12, r12\n\t" \
  "smlad r5, r12, r7, r5\n\t" \
  "smlad r5, lr, r8, r5\n\t" \
  "smlad r6, r12, r9, r6\n\t" \
  "smlad r6, lr, r10, r6\n\t"
#define TL_FC_PAIR_ASM(E, RQ) \
  __asm__ volatile( \
      "push {r0, r4, r5, r6, r7, r8, r9, r10, r11, lr}\n" \
      "6:\n\t" \
      "ldr r12, [r0, #12]\n\t" \
      "ldrd r3, r5, [r12], #8\n\t" \
      "str r12, [r0, #12]\n\t" \
      "mov r4, r3\n\t" \
      "mov r6, r5\n\t" \
      "ldrd r1, r2, [r0, #0]\n\t" \
      "ldr r0, [r0, #8]\n\t" \
      "tst r2, #3\n\t" \
      "beq 2f\n" \
      "1:\n\t" TL_R22 \
      "sub r2, r2, #1\n\t" \
      "tst r2, #3\n\t" \
      "bne 1b\n" \
      "2:\n\t" \
      "lsrs r2, r2, #2\n\t" \
      "beq 4f\n" \
      "3:\n\t" TL_R22 TL_R22 TL_R22 TL_R22 \
      "subs r2, r2, #1\n\t" \
      "bne 3b\n" \
      "4:\n\t" \
      "ldr r0, [sp]\n\t" \
      "ldr r2, [r0, #36]\n\t" \
      "tst r2, #1\n\t" \
      "itte eq\n\t" \
      "ldreq r1, [r0, #0]\n\t" \
      "addeq r1, r1, #8\n\t" \
      "subne r1, r1, #8\n\t" \
      "str r1, [r0, #0]\n\t" \
      "ldrd r7, r8, [r0, #16]\n\t" \
      "ldrd r9, r10, [r7], #8\n\t" \
      "ldrd r11, r12, [r8], #8\n\t" \
      "strd r7, r8, [r0, #16]\n\t" \
      "ldr lr, [r0, #32]\n\t" \
      E \
      RQ("r3", "r9", "r11") RQ("r4", "r9", "r11") RQ("r5", "r10", "r12") RQ("r6", "r10", "r12") \
      "ldrd r1, r2, [r0, #24]\n\t" \
      "strb r3, [r1], #1\n\t" \
      "strb r5, [r1], #1\n\t" \
      "strb r4, [r2], #1\n\t" \
      "strb r6, [r2], #1\n\t" \
      "strd r1, r2, [r0, #24]\n\t" \
      "ldr r2, [r0, #36]\n\t" \
      "subs r2, r2, #1\n\t" \
      "str r2, [r0, #36]\n\t" \
      "bne 6b\n\t" \
      "pop {r0, r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t")
__attribute__((naked, noinline)) static void tl_fc_pair_sn(TL_UNUSED tl_fc_job2 *job) {
  TL_FC_PAIR_ASM(TL_E_SN, TL_RQ2_SN);
}
__attribute__((naked, noinline)) static void tl_fc_pair_dn(TL_UNUSED tl_fc_job2 *job) {
  TL_FC_PAIR_ASM(TL_E_DN, TL_RQ2_DN);
}
#undef TL_R22
#endif

#ifdef TL_FC_DSP
/* Two vectors x0, x1 through the assembly (tl_fc_pair_sn / _dn) where it applies (1 = done): in_n and
 * out_n multiples of 4, word-aligned weights, per-channel narrow rounding, activation range all of int8.
 * Both vectors are read (extended into xs2) before any output is written, so the outputs may overwrite
 * them (in place, 1x1 convolution). */
static int tl_fc_pair(const tl_fc_params *p, const int8_t *x0, const int8_t *x1, int8_t *y0, int8_t *y1) {
  const int mode = tl_round_mode(p->rounding);
  const int32_t words = p->in_n >> 2;
  int32_t k;
  tl_fc_job2 job;
  if (((p->in_n | p->out_n) & 3) != 0 || ((uintptr_t)p->weights & 3u) != 0 || !p->per_channel ||
      p->out_n < 4 || p->act_min > -128 || p->act_max < 127 ||
      (mode != TL_ROUND_SINGLE_NARROW && mode != TL_ROUND_DOUBLE_NARROW)) {
    return 0;
  }
  {
    uint32_t xs2[(p->in_n >> 2) * 4 + 4];
    for (k = 0; k < words; ++k) {
      const uint32_t v0 = tl_ld32(x0 + 4 * k), v1 = tl_ld32(x1 + 4 * k);
      xs2[4 * k] = tl_sxtb16(v0);
      xs2[4 * k + 1] = tl_sxtb16_ror8(v0);
      xs2[4 * k + 2] = tl_sxtb16(v1);
      xs2[4 * k + 3] = tl_sxtb16_ror8(v1);
    }
    job.w = p->weights;
    job.words = words;
    job.xs2 = xs2;
    job.bias = p->bias;
    job.mult = p->multiplier;
    job.shift = p->shift;
    job.y0 = y0;
    job.y1 = y1;
    job.off = p->output_offset;
    job.pairs = 2 * (p->out_n >> 2);
    if (mode == TL_ROUND_SINGLE_NARROW) {
      tl_fc_pair_sn(&job);
    } else {
      tl_fc_pair_dn(&job);
    }
  }
  return 1;
}
#endif

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

void tl_fc_vector2(const tl_fc_params *p, const int8_t *x0, const int8_t *x1, int8_t *y0, int8_t *y1) {
#ifdef TL_FC_DSP
  if (tl_fc_pair(p, x0, x1, y0, y1)) return;
#endif
  tl_fc_vector(p, x0, y0);
  tl_fc_vector(p, x1, y1);
}

void tl_fully_connected(const tl_fc_params *p, const int8_t *input, int8_t *output) {
  int32_t b = 0;
#ifdef TL_FC_DSP
  if (p->batches >= 2) {
    /* 1x1 convolution: vectors two at a time where the assembly applies (each weight word extended once
     * for both) */
    for (; b + 2 <= p->batches; b += 2) {
      if (!tl_fc_pair(p, input + b * p->in_n, input + (b + 1) * p->in_n, output + b * p->out_n,
                      output + (b + 1) * p->out_n)) {
        break;
      }
    }
    if (b == p->batches) return;
  }
#endif
  if (input == output && p->in_n == p->out_n) {
    /* in place (the compiler's plan for CONV_2D 1x1 with as many outputs as inputs): each vector is
     * copied aside before its outputs overwrite it */
    int8_t x[p->in_n > 0 ? p->in_n : 1];
    for (; b < p->batches; ++b) {
      memcpy(x, input + b * p->in_n, (size_t)p->in_n);
      tl_fc_vector(p, x, output + b * p->out_n);
    }
    return;
  }
  for (; b < p->batches; ++b) tl_fc_vector(p, input + b * p->in_n, output + b * p->out_n);
}
