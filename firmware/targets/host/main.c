/* Host entry point: the generic app loop (app/tl_app.h) runs the domain's spec through the HAL
 * (tl_hal_host.c); which domain is the build's choice (make APP_DIR=<domain>/firmware). */
#include "tl_app.h"

int main(int argc, char **argv) { return tl_app_main(argc, argv); }
