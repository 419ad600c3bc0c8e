/* Cortex-M4 entry point: startup.c calls main with the semihosting command line. */
#include "hc_app.h"

int main(int argc, char **argv) { return hc_app_main(argc, argv); }
