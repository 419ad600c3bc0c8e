# Parity harness for the Cortex-M4 (parity_main.c): the compiled model + runtime, built with the
# app's flags (M4_CFLAGS: -O2, -mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16), reading and
# writing int8 vectors over semihosting. Kept beside the target so that firmware/Makefile stays as is:
#
#   make -C firmware -f targets/cortex-m4/parity.mk cortex-m4-parity MODEL_DIR=... MODELS=NAME OUT=...
#        -> $(OUT)/parity.elf         (shared.tiny.targets.build drives it: target cortex-m4-parity)

include $(dir $(lastword $(MAKEFILE_LIST)))../../Makefile

.PHONY: cortex-m4-parity
cortex-m4-parity: $(OUT)/parity.elf
comma := ,
# M4_LDFLAGS names its map file when the Makefile is read (an empty stem); this one gets its own
PARITY_LDFLAGS := $(filter-out -Wl$(comma)-Map=%,$(M4_LDFLAGS)) -Wl,-Map=$(OUT)/parity.map
$(OUT)/parity.elf: $(FW)/targets/cortex-m4/parity_main.c $(M4_START) $(RUNTIME_SRC) $(MODEL_SRC)
	@mkdir -p $(OUT)
	$(ARM_CC) $(M4_CFLAGS) $(ONE_MODEL_DEFS) $(PARITY_LDFLAGS) -o $@ $^ -lm -lrdimon
