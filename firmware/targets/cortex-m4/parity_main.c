/*
 * Parity harness for one compiled model on the Cortex-M4 (mps2-an386 under qemu-system-arm): the
 * M4 twin of firmware/tools/tl_harness.c. Reads N int8 input vectors from a host file, runs the
 * model on each and writes the N int8 output vectors to another host file, both over semihosting:
 *
 *   qemu-system-arm -M mps2-an386 -semihosting-config enable=on,target=native \
 *       -kernel parity.elf -append "--in /abs/inputs.bin --out /abs/outputs.bin"
 *
 * inputs.bin holds N * NAME_INPUT_SIZE bytes, outputs.bin receives N * NAME_OUTPUT_SIZE bytes. On
 * success it prints "TLPARITY model=NAME inputs=N in=I out=O" on semihosting stdout and exits 0;
 * a file it cannot open, a truncated input vector or a failed invoke exits non-zero with a
 * message on semihosting stderr. Built by targets/cortex-m4/parity.mk (goal cortex-m4-parity).
 */
#include <stdio.h>
#include <string.h>

#include TL_MODEL_HEADER

#define TL_CAT_(a, b) a##b
#define TL_CAT(a, b) TL_CAT_(a, b)
#define IN_SIZE TL_CAT(TL_MODEL_UPPER, _INPUT_SIZE)
#define OUT_SIZE TL_CAT(TL_MODEL_UPPER, _OUTPUT_SIZE)
#define INVOKE TL_CAT(TL_MODEL_NAME, _invoke)
#define STR_(x) #x
#define STR(x) STR_(x)

static int8_t in[IN_SIZE], out[OUT_SIZE];

static const char *opt(int argc, char **argv, const char *key) {
  int i;
  for (i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], key) == 0) return argv[i + 1];
  return 0;
}

int main(int argc, char **argv) {
  const char *in_path = opt(argc, argv, "--in");
  const char *out_path = opt(argc, argv, "--out");
  FILE *fin, *fout;
  unsigned long count = 0;
  size_t got;
  if (!in_path || !out_path) {
    fputs("parity: usage: -append \"--in INPUTS.bin --out OUTPUTS.bin\"\n", stderr);
    return 2;
  }
  fin = fopen(in_path, "rb");
  if (!fin) {
    fprintf(stderr, "parity: cannot open %s over semihosting\n", in_path);
    return 2;
  }
  fout = fopen(out_path, "wb");
  if (!fout) {
    fprintf(stderr, "parity: cannot create %s over semihosting\n", out_path);
    fclose(fin);
    return 2;
  }
  while ((got = fread(in, 1, sizeof in, fin)) == sizeof in) {
    if (INVOKE(in, out) != 0) {
      fprintf(stderr, "parity: invoke failed on input %lu\n", count);
      return 1;
    }
    if (fwrite(out, 1, sizeof out, fout) != sizeof out) {
      fprintf(stderr, "parity: write failed after %lu outputs\n", count);
      return 1;
    }
    ++count;
  }
  fclose(fin);
  if (fclose(fout) != 0) {
    fputs("parity: closing the output file failed\n", stderr);
    return 1;
  }
  if (got != 0) {
    fprintf(stderr, "parity: input file ends with a partial vector (%lu of %lu bytes)\n", (unsigned long)got,
            (unsigned long)sizeof in);
    return 1;
  }
  printf("TLPARITY model=%s inputs=%lu in=%lu out=%lu\n", STR(TL_MODEL_NAME), count, (unsigned long)IN_SIZE,
         (unsigned long)OUT_SIZE);
  fflush(stdout);
  return 0;
}
