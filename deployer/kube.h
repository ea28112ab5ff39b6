/*
 * The Kubernetes platform's entry point, implemented in deployer/kube*.c by
 * the Kubernetes platform (issue 5). rainbow's main.c picks it for
 * --platform kubernetes / RAINBOW_PLATFORM=kubernetes and drives it only
 * through the table declared in deployer/platform.h.
 */
#ifndef RAINBOW_KUBE_H
#define RAINBOW_KUBE_H

#include "platform.h"

const struct platform_ops *kube_platform_ops(void);

#endif
