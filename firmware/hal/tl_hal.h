/*
 * TinyLarge hardware seam: the only functions an app calls that touch the hardware.
 *
 * A target (firmware/targets/<name>/) implements these for one board or for the host:
 *   sensor  tl_hal_sensor_read   fill one window of every channel of a sensor set
 *   clock   tl_hal_now_ms        epoch milliseconds when the target knows the time, else ms since boot
 *   output  tl_hal_write         raw bytes out of the serial line (framed messages, see tl_frame.h)
 *   network tl_hal_net_publish   publish straight to MQTT (host only; other targets return
 *                                TL_HAL_NO_NET and the app falls back to framing over tl_hal_write)
 *   log     tl_hal_log           one human-readable line (stderr / semihosting), never parsed
 *
 * Sensors are described by data, not control flow: an app declares a const table of channels
 * (name, units, rate, scale) and asks for a window; the target decides where samples come from
 * (an ADC driver, a file, semihosting).
 */
#ifndef TL_HAL_H
#define TL_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_HAL_OK 0
#define TL_HAL_END 1          /* tl_hal_sensor_read: no more data */
#define TL_HAL_NO_NET (-100)  /* tl_hal_net_publish: this target has no network */
#define TL_HAL_ERROR (-1)

typedef struct {
  const char *name;   /* "ppg_ir": how the channel is named in recordings and Edge Impulse exports */
  const char *units;  /* "counts", "g", "degC" */
  float rate_hz;      /* samples per second; a window holds round(rate_hz * window_s) samples (>= 1) */
  float scale;        /* physical value = raw sample * scale */
} tl_channel;

typedef struct {
  const tl_channel *channels;
  int n_channels;
  float window_s;
} tl_sensor_set;

/* Number of samples channel `ch` holds in one window. */
int tl_sensor_samples(const tl_sensor_set *set, int ch);

/* Fill bufs[ch][0 .. tl_sensor_samples(set, ch)) with physical values for every channel.
 * *end_ts_ms receives the epoch ms of the window end if the source carries it, else -1.
 * Returns TL_HAL_OK, TL_HAL_END when the source is exhausted, or TL_HAL_ERROR. */
int tl_hal_sensor_read(const tl_sensor_set *set, float *const *bufs, int64_t *end_ts_ms);

/* Who the device is: the host target needs it for topics and the last will. */
typedef struct {
  const char *domain;    /* "healthcare" */
  const char *device;    /* device id, [A-Za-z0-9_-]{1,64} */
  const char *model_id;  /* "healthcare-tiny@1" */
  const char *offline_status;  /* status message with state offline: the MQTT last will */
  size_t offline_status_len;
} tl_identity;

/* Bring the target up. argv holds "--key value" pairs; a target takes the keys it knows (host:
 * --input, --mqtt, --keepalive-s, ...) and ignores the others. Returns TL_HAL_OK or TL_HAL_ERROR. */
int tl_hal_init(const tl_identity *id, int argc, char **argv);
/* Wait ms milliseconds while keeping the link alive (host: MQTT keepalive). */
void tl_hal_idle_ms(uint32_t ms);
/* Flush and close (host: DISCONNECT; the app has published its offline status before). */
void tl_hal_shutdown(void);

int64_t tl_hal_now_ms(void);
int tl_hal_write(const uint8_t *data, size_t n);
int tl_hal_net_publish(const char *stream, const char *payload, size_t n, int retained);
void tl_hal_log(const char *line);

#ifdef __cplusplus
}
#endif

#endif /* TL_HAL_H */
