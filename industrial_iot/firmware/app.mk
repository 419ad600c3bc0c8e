# the inference message (21 features, 7 scores) is about 1.2 KB: room for it and its frame
APP_CFLAGS += -DTL_APP_JSON_MAX=2048
# the models the app needs, primary first (files in the domain's models dir): the build passes them as MODELS
APP_MODELS := tiny.tflite anomaly.tflite
# the 8192-sample window buffer (32 KB) goes to the STM32F405/F407's core-coupled RAM (the FFT scratch, 96 KB,
# and the rest stay in its 128 KB SRAM); rows without CCM do not fit the app
APP_CCM := .bss.buf_accel
