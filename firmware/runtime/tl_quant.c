/* Fixed-point helpers of the TFLite int8 quantization spec (Q31 multipliers). */
#include "tl_runtime.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O2")
#endif

int32_t tl_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
  int64_t product;
  int64_t nudge;
  if (a == INT32_MIN && b == INT32_MIN) {
    return INT32_MAX; /* the only product that does not fit */
  }
  product = (int64_t)a * (int64_t)b;
  nudge = product >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  /* C99 division truncates toward zero, as the spec requires. */
  return (int32_t)((product + nudge) / ((int64_t)1 << 31));
}

int32_t tl_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  /* Arithmetic right shift of a negative value (gcc, clang, arm-none-eabi-gcc). */
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t tl_mbqm_double(int32_t x, int32_t multiplier, int shift) {
  /* TFLite Micro's double rounding: a saturating rounding doubling high multiply, then a rounding
   * (half away from zero) division by 2^-shift; a positive shift multiplies x first (wrapping). */
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return tl_rounding_divide_by_pot(
      tl_sat_rounding_doubling_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
}

int32_t tl_mbqm_single(int32_t x, int32_t multiplier, int shift) {
  /* Single rounding (TFLITE_SINGLE_ROUNDING, LiteRT's reference kernels for most ops, and XNNPACK):
   * round(x * multiplier / 2^(31 - shift)) with ties toward +infinity, shift in [-31, 30]. */
  const int total_shift = 31 - shift;
  int64_t result;
  if (total_shift >= 33) {
    /* The usual case (real multiplier < 0.5): the rounding constant lands in the high word, and
     * floor(floor(p / 2^32) / 2^k) = floor(p / 2^(32+k)), so one SMULL high word, an add and a shift
     * give the same value as the 64-bit path below. |result| < 2^30: no saturation. */
    const int32_t hi = (int32_t)(((int64_t)x * (int64_t)multiplier) >> 32);
    return (int32_t)((hi + ((int32_t)1 << (total_shift - 33))) >> (total_shift - 32));
  }
  result = (int64_t)x * (int64_t)multiplier + ((int64_t)1 << (total_shift - 1));
  /* floor division by 2^total_shift; written without shifting a negative value */
  result = result >= 0 ? (result >> total_shift) : -(((-result) + (((int64_t)1 << total_shift) - 1)) >> total_shift);
  if (result > INT32_MAX) return INT32_MAX;
  if (result < INT32_MIN) return INT32_MIN;
  return (int32_t)result;
}

int32_t tl_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
#ifdef TL_ARITH_TFLM
  return tl_mbqm_double(x, multiplier, shift);
#else
  return tl_mbqm_single(x, multiplier, shift);
#endif
}

TL_INLINE int8_t *tl_requant_run_mode(const tl_requant_ctx *c, const int32_t *acc, int32_t n, int8_t *y,
                                      const int mode) {
  const int32_t *mult = c->mult, *shift = c->shift;
  const int32_t qstep = c->qstep, off = c->out_offset, lo = c->act_min, hi = c->act_max;
  int32_t k;
  for (k = 0; k < n; ++k, mult += qstep, shift += qstep) {
    *y++ = tl_requant_mode(acc[k], *mult, *shift, off, lo, hi, mode);
  }
  return y;
}

static int8_t *tl_requant_run_single_narrow(const tl_requant_ctx *c, const int32_t *acc, int32_t n, int8_t *y) {
  return tl_requant_run_mode(c, acc, n, y, TL_ROUND_SINGLE_NARROW);
}

static int8_t *tl_requant_run_double_narrow(const tl_requant_ctx *c, const int32_t *acc, int32_t n, int8_t *y) {
  return tl_requant_run_mode(c, acc, n, y, TL_ROUND_DOUBLE_NARROW);
}

static int8_t *tl_requant_run_any(const tl_requant_ctx *c, const int32_t *acc, int32_t n, int8_t *y) {
  return tl_requant_run_mode(c, acc, n, y, (int)c->mode);
}

tl_requant_run_fn tl_requant_run_for(int32_t mode) {
  if (mode == TL_ROUND_SINGLE_NARROW) return tl_requant_run_single_narrow;
  if (mode == TL_ROUND_DOUBLE_NARROW) return tl_requant_run_double_narrow;
  return tl_requant_run_any;
}
