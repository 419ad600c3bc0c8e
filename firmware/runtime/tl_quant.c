/* Fixed-point helpers of the TFLite int8 quantization spec (Q31 multipliers). */
#include "tl_runtime.h"

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

int32_t tl_mul_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  /* x * 2^left_shift with two's-complement wrap-around, as the interpreter computes it. */
  const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
  return tl_rounding_divide_by_pot(tl_sat_rounding_doubling_high_mul(shifted, multiplier), right_shift);
}
