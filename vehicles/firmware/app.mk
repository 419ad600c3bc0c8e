# the inference message (stats, counts, up to 20 events with positions) stays under 4 KB, the frame limit
APP_CFLAGS += -DTL_APP_JSON_MAX=4096
