/*
 * The rainbow chart: live connections per colour over time, stacked, one
 * colour per SHA, drawn by gnuplot from STATE/timeline.csv, with a dashed
 * line and the SHA at every switch (STATE/record.jsonl). And one colour's
 * drain curve beside the forecast made at its switch.
 *
 * Rows of the timeline are binned (bin_s seconds, the last value of each
 * colour in a bin wins) so that rows written by several rainbow processes
 * at once (a deploy and a `rainbow watch`) draw one line.
 */
#ifndef RAINBOW_CHART_H
#define RAINBOW_CHART_H

#include <stddef.h>

/*
 * One row of STATE/timeline.csv (time,sha,connections,state; run_timeline()
 * writes it): 1 with its fields, 0 when it is not a row rainbow could have
 * written (the header, an edited or truncated line, a SHA that is not one).
 */
int chart_timeline_row(const char *line, double *t, char sha[64], long *conns);

/*
 * Writes PREFIX.dat (wide table), PREFIX.gp (gnuplot script) and runs
 * gnuplot to draw PREFIX.png and PREFIX.svg. prefix NULL = STATE/chart.
 * Every switch in the record is marked (a rollback: "rollback to", in
 * red); the y axis leaves headroom above the highest total; colours that
 * never held a connection get no legend entry; verdict (or NULL) is
 * written in large type in the top left corner. 0, or -errno with a
 * message in err.
 */
int chart_render(const char *state_dir, const char *prefix, double bin_s, const char *verdict,
		 char *err, size_t errlen);

/*
 * The drain of colour sha (its last one in the history): remaining fraction
 * of its count at deselection against seconds since deselection, from the
 * timeline, with the forecast curve recorded at the switch and vertical
 * lines at the forecast (median, 90th percentile) and the real drain.
 * PREFIX.dat (block 0 real, block 1 forecast), PREFIX.gp, .png, .svg;
 * prefix NULL = STATE/drain-SHA. 0, or -errno with a message in err
 * (-ENOENT: no drain of sha in the history).
 */
int chart_render_drain(const char *state_dir, const char *prefix, const char *sha, char *err,
		       size_t errlen);

#endif
