/*
 * The Kubernetes platform's entry point, implemented in deployer/kube*.c.
 * rainbow's main.c picks it for
 * --platform kubernetes / RAINBOW_PLATFORM=kubernetes and drives it only
 * through the table declared in deployer/platform.h.
 */
#ifndef RAINBOW_KUBE_H
#define RAINBOW_KUBE_H

#include <jansson.h>

#include "platform.h"

const struct platform_ops *kube_platform_ops(void);

/*
 * A colour from its Deployment object d (labels, spec, status, the
 * rainbow.chat/ annotations as meta); selected is the sha the Service
 * selects (NULL or "" for none). Pure: what `list` returns per Deployment.
 */
void kube_colour_from_deployment(struct platform_colour *c, json_t *d, const char *selected);

#endif
