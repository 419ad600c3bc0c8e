/*
 * The TinyLarge sensor text format ("tlsensor"), read by the host and the QEMU targets.
 *
 * A stream of whitespace-separated tokens (lines do not matter; '#' starts a comment to end of line):
 *   t <epoch_ms>           optional: the end time of the window being filled
 *   <channel> v0 v1 ...    raw samples for a channel, appended to its buffer (may be split over lines)
 * A window is complete when every channel of the set holds tl_sensor_samples() values; the next
 * tokens start the next window. Values are decimal numbers (sign, digits, '.', exponent) or "nan".
 * Example (two channels at 2 Hz, one window of 2 s):
 *   t 1700000030000
 *   ppg_ir 50100 50120 50090 50110
 *   temp 36.5
 */
#ifndef TL_SENSOR_TEXT_H
#define TL_SENSOR_TEXT_H

#include <stdio.h>

#include "tl_hal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read one window from f (see above). Returns TL_HAL_OK, TL_HAL_END (clean end of input, or end in
 * the middle of a window), or TL_HAL_ERROR (unknown channel, bad number, too many samples). */
int tl_sensor_text_read(FILE *f, const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms);

/* Parse a decimal number; returns 1 and sets *out, or 0 if tok is not a number. */
int tl_parse_float(const char *tok, float *out);

#ifdef __cplusplus
}
#endif

#endif /* TL_SENSOR_TEXT_H */
