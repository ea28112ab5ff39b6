#include "version.h"

#ifndef RAINBOW_VERSION
#define RAINBOW_VERSION "unknown"
#endif

const char rainbow_version[] = RAINBOW_VERSION;
