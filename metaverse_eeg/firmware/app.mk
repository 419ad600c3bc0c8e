# the inference message (85 features, 4 scores) is about 3 KB: room for it and its frame
APP_CFLAGS += -DTL_APP_JSON_MAX=4096
