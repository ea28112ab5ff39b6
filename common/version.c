/*
 * The build's version string: the one object compiled with the git SHA.
 */
#include "version.h"

#ifndef RAINBOW_VERSION
#define RAINBOW_VERSION "unknown"
#endif

const char rainbow_version[] = RAINBOW_VERSION;
