/* Host entry point: the app does everything through the HAL (tl_hal_host.c). */
#include "hc_app.h"

int main(int argc, char **argv) { return hc_app_main(argc, argv); }
