/*
 * Host test harness for one compiled model: reads N inputs from a binary file
 * (N * INPUT_SIZE int8 values), runs the model on each and writes N outputs.
 *
 * Build: cc -Ifirmware/runtime -IGEN -DTL_MODEL=name -DTL_MODEL_UPPER=NAME \
 *           -DTL_MODEL_HEADER='"name.h"' firmware/tools/tl_harness.c GEN/name.c firmware/runtime/(*).c
 * Run:   ./harness inputs.bin outputs.bin
 */
#include <stdio.h>
#include <stdlib.h>

#include TL_MODEL_HEADER

#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)
#define TL_INVOKE TL_CAT(TL_MODEL, _invoke)
#define TL_IN_SIZE TL_CAT(TL_MODEL_UPPER, _INPUT_SIZE)
#define TL_OUT_SIZE TL_CAT(TL_MODEL_UPPER, _OUTPUT_SIZE)

int main(int argc, char **argv) {
  static int8_t in[TL_IN_SIZE];
  static int8_t out[TL_OUT_SIZE];
  FILE *fin;
  FILE *fout;
  long count = 0;
  if (argc != 3) {
    fprintf(stderr, "usage: %s INPUTS.bin OUTPUTS.bin\n", argv[0]);
    return 2;
  }
  fin = fopen(argv[1], "rb");
  fout = fopen(argv[2], "wb");
  if (fin == NULL || fout == NULL) {
    fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  while (fread(in, 1, sizeof in, fin) == sizeof in) {
    if (TL_INVOKE(in, out) != 0) {
      fprintf(stderr, "invoke failed on input %ld\n", count);
      return 1;
    }
    if (fwrite(out, 1, sizeof out, fout) != sizeof out) {
      fprintf(stderr, "write failed\n");
      return 1;
    }
    ++count;
  }
  fclose(fin);
  fclose(fout);
  printf("%ld\n", count);
  return 0;
}
