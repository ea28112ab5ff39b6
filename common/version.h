/*
 * The build's version (the short git SHA the binaries were built from, or
 * "unknown"). Only common/version.c sees the compiler flag that carries it,
 * and the Makefile rebuilds that one object when the SHA changes, so no
 * other object can keep a stale version.
 */
#ifndef COMMON_VERSION_H
#define COMMON_VERSION_H

extern const char rainbow_version[];

#endif
