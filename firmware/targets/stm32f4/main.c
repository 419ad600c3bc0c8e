/* STM32F4 entry point: startup.c calls main with the build's TL_FW_ARGS; the generic app loop
 * (app/tl_app.h) runs the domain's spec (make APP_DIR=<domain>/firmware). */
#include "tl_app.h"

int main(int argc, char **argv) { return tl_app_main(argc, argv); }
