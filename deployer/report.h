/*
 * `rainbow report`: drain times and deploy overheads from the state
 * directory's history (STATE/record.jsonl and STATE/timeline.csv), for
 * benchmarks and pull requests.
 *
 * Per drain (a colour deselected by a select that replaced it):
 *   drain_from            its count when deselected
 *   drain_t50_s .. t100_s deselection -> the count first read <= 50 %, 10 %,
 *                         1 %, 0 of drain_from (timeline rows; null when
 *                         not reached while observed)
 *   forecast_at_switch_s  the first forecast within REPORT_SWITCH_WINDOW_S of
 *                         the deselection: when it said the count would read
 *                         0, from the deselection (since_deselect_s + eta_s);
 *                         also its p90 and t99; forecast_error_s/_pct
 *                         against drain_t100_s; forecast_curve: its
 *                         expected drain curve, [seconds since deselection,
 *                         fraction of drain_from] pairs
 *   outcome               drained, draining (not 0 yet when last observed),
 *                         rolled-back (selected again before 0)
 * Per switch: create_to_ready_s (create or scale-up started -> the
 * observation that found every replica ready), ready_to_switch_s (that
 * observation -> switch confirmed).
 */
#ifndef RAINBOW_REPORT_H
#define RAINBOW_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define REPORT_SWITCH_WINDOW_S 10.0

/*
 * Builds the report: {"drains":[...],"switches":[...]}. 0, or -errno with a
 * message in err (-ENOENT: no record in state_dir).
 */
int report_build(const char *state_dir, json_t **out, char *err, size_t errlen);

/* The report as Markdown tables (for a pull request) or plain text. */
void report_print_md(FILE *f, const json_t *rep);
void report_print_table(FILE *f, const json_t *rep);

#endif
