/*
 * The rainbow chart: live connections per colour over time, stacked, one
 * colour per SHA, drawn by gnuplot from STATE/timeline.csv.
 *
 * Rows of the timeline are binned (bin_s seconds, the last value of each
 * colour in a bin wins) so that rows written by several rainbow processes
 * at once (a deploy and a `rainbow watch`) draw one line.
 */
#ifndef RAINBOW_CHART_H
#define RAINBOW_CHART_H

#include <stddef.h>

/*
 * Writes PREFIX.dat (wide table), PREFIX.gp (gnuplot script) and runs
 * gnuplot to draw PREFIX.png and PREFIX.svg. prefix NULL = STATE/chart.
 * 0, or -errno with a message in err.
 */
int chart_render(const char *state_dir, const char *prefix, double bin_s, char *err, size_t errlen);

#endif
