# the inference message (21 features, 7 scores) is about 1.2 KB: room for it and its frame
APP_CFLAGS += -DTL_APP_JSON_MAX=2048
