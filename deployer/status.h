/*
 * What `rainbow status -o json` prints, built from one observation, so that
 * every reader of the platform (status, the dashboard) says the same thing.
 */
#ifndef RAINBOW_STATUS_H
#define RAINBOW_STATUS_H

#include <jansson.h>

#include "run.h"

/*
 * {"platform", "selected", "colours": [{sha, state, replicas, ready,
 * connections, restarts, lost, age_s, selected, draining_s, eta_s, eta_p90_s,
 * [forecast], drain_from, drained_pct, meta, replica_list}], "lifetimes": {...}};
 * NULL when out of memory. docs/rainbow.md lists the fields.
 */
json_t *status_json(const char *platform, const struct run_obs *obs);

/*
 * How far a draining colour is, in whole percent of the connections it had
 * when deselected (drain_from): those that ended by themselves, so neither
 * the ones left nor the ones lost in crashes; rounded down, so 100 only
 * when none is left. -1 when unknown (no drain_from, or more connections
 * than that).
 */
int status_drained_pct(long drain_from, long connections, long lost);

#endif
