# the inference message (stats, counts, up to 20 events with positions) stays under 4 KB, the frame limit
APP_CFLAGS += -DTL_APP_JSON_MAX=4096
# the calibration's raw prefix (25 s of the 6-axis IMU as float32, 60 KB) goes to the STM32F405/F407's
# core-coupled RAM; the stream's ring and histograms (about 45 KB) and the rest stay in its 128 KB SRAM
APP_CCM := .bss.veh_cal_buf
