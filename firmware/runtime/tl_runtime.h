/*
 * TinyLarge runtime: int8 kernels for models compiled by shared.tiny.compiler.
 *
 * C99, no heap, no global state. Every kernel takes a const parameter block
 * (precomputed by the compiler and stored in flash) plus input/output pointers
 * into the caller's arena. The arithmetic follows the TFLite int8 quantization
 * spec so that outputs are bit-identical with the TFLite interpreter:
 *   real = scale * (q - zero_point); requantization by a Q31 multiplier and a
 *   power-of-two shift (tl_mul_by_quantized_multiplier).
 */
#ifndef TL_RUNTIME_H
#define TL_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_RUNTIME_VERSION 1
#define TL_MAX_DIMS 4

/* ---- fixed-point helpers (tl_quant.c) ---------------------------------- */

/* (a * b * 2) >> 32 rounded to nearest, saturating the single overflow case. */
int32_t tl_sat_rounding_doubling_high_mul(int32_t a, int32_t b);
/* x / 2^exponent, rounding half away from zero; 0 <= exponent <= 31. */
int32_t tl_rounding_divide_by_pot(int32_t x, int exponent);
/* round(x * multiplier * 2^(shift - 31)), ties toward +inf; multiplier a Q31 value in [2^30, 2^31).
 * Built with -DTL_ARITH_TFLM: TFLite Micro's double rounding instead (the compiler's arithmetic="tflm"). */
int32_t tl_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift);
/* The two roundings, whatever the build: single (LiteRT's reference FULLY_CONNECTED, ADD, MUL, MEAN,
 * QUANTIZE) and double (TFLite Micro everywhere; LiteRT's reference CONV_2D and DEPTHWISE_CONV_2D). */
int32_t tl_mbqm_single(int32_t x, int32_t multiplier, int shift);
int32_t tl_mbqm_double(int32_t x, int32_t multiplier, int shift);

/* Requantization rounding of one FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D layer (the `rounding`
 * field of its parameters, chosen by the compiler): */
#define TL_ROUND_DEFAULT 0 /* the build's: double with -DTL_ARITH_TFLM, single otherwise */
#define TL_ROUND_SINGLE 1  /* tl_mbqm_single */
#define TL_ROUND_DOUBLE 2  /* tl_mbqm_double */
/* tl_mbqm_double's value where the compiler has shown that every accumulator of the layer has
 * |acc| < 2^30 and every shift is <= -1: then SRDHM(acc, m) = (2 acc m + 2^31) >> 32 (SMMULR of acc << 1)
 * and the rounding division needs no overflow care. */
#define TL_ROUND_DOUBLE_NARROW 3
/* tl_mbqm_single's value where every shift of the layer is <= -2 (real multipliers below 0.5): the high
 * word of one 64-bit product, a rounding constant and a shift, with no test per output. */
#define TL_ROUND_SINGLE_NARROW 4

/* ---- convolution (tl_conv.c) ------------------------------------------- */

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, in_c;
  int32_t out_h, out_w, out_c;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t dil_h, dil_w;
  int32_t pad_h, pad_w;      /* padding before the first row / column */
  int32_t depth_multiplier;  /* DEPTHWISE_CONV_2D only */
  int32_t input_offset;      /* -input zero point */
  int32_t output_offset;     /* output zero point */
  int32_t act_min, act_max;
  const int8_t *weights;     /* conv: [out_c][k_h][k_w][in_c]; depthwise: [k_h][k_w][out_c] */
  const int32_t *bias;       /* [out_c] or NULL */
  const int32_t *multiplier; /* [out_c] */
  const int32_t *shift;      /* [out_c] */
  int32_t rounding;          /* TL_ROUND_* */
} tl_conv_params;

void tl_conv2d(const tl_conv_params *p, const int8_t *input, int8_t *output);
/* CONV_2D by im2col: each output pixel's k_h*k_w*in_c patch (padding filled with the input zero point)
 * times the weights in tl_fc_params' blocked layout with the input offset folded into the bias
 * (never NULL); patch at most TL_IM2COL_MAX bytes (on the stack). */
#define TL_IM2COL_MAX 512
void tl_conv2d_im2col(const tl_conv_params *p, const int8_t *input, int8_t *output);
void tl_depthwise_conv2d(const tl_conv_params *p, const int8_t *input, int8_t *output);
/* DEPTHWISE_CONV_2D with depth multiplier 1 and at most TL_DW_TAPS_MAX taps (the 3x3 path): four
 * channels per step (SXTB16 + SMLABB/SMLATT with the DSP extension), the input offset folded into the
 * bias over all taps (never NULL), padding read as the zero point. */
#define TL_DW_TAPS_MAX 16
void tl_depthwise_conv2d_folded(const tl_conv_params *p, const int8_t *input, int8_t *output);

/* ---- fully connected (tl_fc.c) ----------------------------------------- */

/* Rows of the weight matrix are stored in blocks of TL_FC_BLOCK: within a block, for each run of
 * four inputs, the four bytes of row 0, then row 1, ... (one word per row); then the block's last
 * in_n % 4 inputs row by row. The out_n % TL_FC_BLOCK rows after the last block are stored plainly
 * ([row][in_n]). The compiler (shared.tiny.compiler) lays weights out this way and folds the input
 * zero point into the bias: bias[o] = bias_model[o] - input_zero_point * sum_i w[o][i], so the inner
 * loop is a plain dot product (int8 weights have zero point 0). On a core with the DSP extension
 * (__ARM_FEATURE_DSP: Cortex-M4, M7, M33) the dot product runs on SXTB16 + SMLAD, two 16-bit MACs per
 * instruction; elsewhere (host, Cortex-M0+) in portable C. Both give the same int32 sums. */
#define TL_FC_BLOCK 4
/* Weight arrays start on a word (the DSP kernels load them with LDRD where aligned). */
#if defined(__GNUC__) || defined(__clang__)
#define TL_ALIGN4 __attribute__((aligned(4)))
#else
#define TL_ALIGN4
#endif

typedef struct {
  int32_t batches;
  int32_t in_n, out_n;
  int32_t output_offset;
  int32_t act_min, act_max;
  int32_t per_channel;       /* 1: multiplier/shift have out_n entries, 0: one */
  const int8_t *weights;     /* blocked layout above */
  const int32_t *bias;       /* [out_n], input offset folded in; never NULL */
  const int32_t *multiplier;
  const int32_t *shift;
  int32_t rounding;          /* TL_ROUND_* */
} tl_fc_params;

void tl_fully_connected(const tl_fc_params *p, const int8_t *input, int8_t *output);
/* One input vector (in_n bytes) -> out_n outputs: the matrix-vector product behind FULLY_CONNECTED,
 * CONV_2D 1x1 and the im2col convolution. */
void tl_fc_vector(const tl_fc_params *p, const int8_t *input, int8_t *output);
/* Two input vectors at once: the outputs of two tl_fc_vector calls (inputs and outputs apart). */
void tl_fc_vector2(const tl_fc_params *p, const int8_t *x0, const int8_t *x1, int8_t *y0, int8_t *y1);

/* Small helpers the kernels need inlined whatever the image's optimisation level. */
#if defined(__GNUC__) || defined(__clang__)
#define TL_INLINE static inline __attribute__((always_inline))
#else
#define TL_INLINE static inline
#endif

/* The rounding a layer's TL_ROUND_* value stands for in this build (never TL_ROUND_DEFAULT). */
TL_INLINE int tl_round_mode(int32_t rounding) {
  if (rounding == TL_ROUND_DEFAULT) {
#ifdef TL_ARITH_TFLM
    return TL_ROUND_DOUBLE;
#else
    return TL_ROUND_SINGLE;
#endif
  }
  return (int)rounding;
}

/* acc * multiplier * 2^shift in rounding `mode` (a constant where the kernels call it, so each use
 * compiles to one path). */
TL_INLINE int32_t tl_scale(int32_t acc, int32_t multiplier, int32_t shift, int mode) {
  if (mode == TL_ROUND_SINGLE || mode == TL_ROUND_SINGLE_NARROW) {
    if (mode == TL_ROUND_SINGLE_NARROW || shift <= -2) {
      /* the usual case of tl_mbqm_single (real multiplier < 0.5), same value: one high word */
      const int32_t hi = (int32_t)(((int64_t)acc * (int64_t)multiplier) >> 32);
      return (hi + ((int32_t)1 << (-shift - 2))) >> (-shift - 1);
    }
    return tl_mbqm_single(acc, multiplier, (int)shift);
  }
  if (mode == TL_ROUND_DOUBLE_NARROW) {
    /* |acc| < 2^30, shift <= -1 (the compiler checked): x = SRDHM(acc, multiplier) exactly, |x| <= |acc|;
     * then x / 2^e rounded half away from zero as floor((x + 2^(e-1) - (x < 0)) / 2^e), no overflow */
    const int32_t e = -shift;
    int32_t x;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    __asm__("smmulr %0, %1, %2" : "=r"(x) : "r"(acc * 2), "r"(multiplier));
#else
    x = (int32_t)(((int64_t)acc * (int64_t)multiplier + ((int64_t)1 << 30)) >> 31);
#endif
    return (x + ((int32_t)1 << (e - 1)) - (int32_t)((uint32_t)x >> 31)) >> e;
  }
  return tl_mbqm_double(acc, multiplier, (int)shift);
}

/* Requantize an int32 accumulator to int8 with the output offset and activation clamp. */
TL_INLINE int8_t tl_requant_mode(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                     int32_t act_min, int32_t act_max, int mode) {
  acc = tl_scale(acc, multiplier, shift, mode) + out_offset;
  if (acc < act_min) acc = act_min;
  if (acc > act_max) acc = act_max;
  return (int8_t)acc;
}

/* Requantization of a run of accumulators, out of line (the kernels' loops keep their registers):
 * output channel k of the run uses mult[k * qstep], shift[k * qstep]. */
typedef struct {
  const int32_t *mult, *shift;
  int32_t qstep;             /* 1: per channel, 0: per tensor */
  int32_t out_offset, act_min, act_max;
  int32_t mode;              /* TL_ROUND_* (not DEFAULT) */
} tl_requant_ctx;
typedef int8_t *(*tl_requant_run_fn)(const tl_requant_ctx *c, const int32_t *acc, int32_t n, int8_t *y);
/* The function for c->mode: a fast path's own, or one that tests per output. Writes n int8 to y,
 * returns y + n. */
tl_requant_run_fn tl_requant_run_for(int32_t mode);

/* The same in the build's default rounding. */
static inline int8_t tl_requant(int32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                int32_t act_min, int32_t act_max) {
  return tl_requant_mode(acc, multiplier, shift, out_offset, act_min, act_max, tl_round_mode(TL_ROUND_DEFAULT));
}

/* ---- pooling and reduction (tl_pool.c) --------------------------------- */

typedef struct {
  int32_t batches;
  int32_t in_h, in_w, channels;
  int32_t out_h, out_w;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t act_min, act_max;
} tl_pool_params;

void tl_max_pool2d(const tl_pool_params *p, const int8_t *input, int8_t *output);
void tl_avg_pool2d(const tl_pool_params *p, const int8_t *input, int8_t *output);

/* MEAN over one contiguous run of axes: input viewed as [outer][reduce_n][inner]. */
typedef struct {
  int32_t outer, reduce_n, inner;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier;        /* already folded with 1/reduce_n */
  int32_t shift;
} tl_mean_params;

void tl_mean(const tl_mean_params *p, const int8_t *input, int8_t *output);

/* REDUCE_MAX over one contiguous run of axes (input and output share quantization). */
void tl_reduce_max(int32_t outer, int32_t reduce_n, int32_t inner, const int8_t *input, int8_t *output);

/* ---- elementwise (tl_elementwise.c) ------------------------------------ */

/* Broadcast shapes: output dims plus per-input element strides (0 = broadcast). */
typedef struct {
  int32_t dims[TL_MAX_DIMS];
  int32_t stride1[TL_MAX_DIMS];
  int32_t stride2[TL_MAX_DIMS];
} tl_broadcast;

typedef struct {
  tl_broadcast shape;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_multiplier, input1_shift;
  int32_t input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tl_add_params;

typedef struct {
  tl_broadcast shape;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tl_mul_params;

void tl_add(const tl_add_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void tl_mul(const tl_mul_params *p, const int8_t *input1, const int8_t *input2, int8_t *output);

/* PAD of a tensor of up to 4 dims with a constant (the zero point). */
typedef struct {
  int32_t in_dims[TL_MAX_DIMS];
  int32_t out_dims[TL_MAX_DIMS];
  int32_t before[TL_MAX_DIMS];
  int32_t value;
} tl_pad_params;

void tl_pad(const tl_pad_params *p, const int8_t *input, int8_t *output);

/* 256-entry table lookup (LOGISTIC, TANH): output = table[(uint8_t)input]. */
void tl_lut(const int8_t *table, int32_t n, const int8_t *input, int8_t *output);

/* int8 -> int8 requantization (QUANTIZE between two int8 tensors). */
typedef struct {
  int32_t n;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
} tl_requantize_params;

void tl_requantize(const tl_requantize_params *p, const int8_t *input, int8_t *output);

/* Concatenation of tensors with identical quantization: per outer row, copy
 * chunk[i] bytes from each input in turn. */
void tl_concat(int32_t n_inputs, const int8_t *const *inputs, const int32_t *chunk, int32_t outer,
               int8_t *output);

/* ---- softmax (tl_softmax.c) -------------------------------------------- */

typedef struct {
  int32_t outer, depth;
  const float *exp_table;    /* 256 entries: exp(-input_scale * beta * (255 - i)) */
  float output_scale;
  int32_t output_zero_point;
} tl_softmax_params;

void tl_softmax(const tl_softmax_params *p, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TL_RUNTIME_H */
