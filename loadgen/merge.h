/*
 * `chatload merge PART.json...`: one report from the reports of parts of a
 * run (or of runs side by side), with the same fields and meaning as one
 * process's: counts summed, histograms merged bucket by bucket (so the
 * quantiles are those of all the samples), per_version and message_pairs
 * merged by label, timelines added second by second from each part's start,
 * ok only when every part was ok and the merged numbers meet every part's
 * expectations and the ones given here (docs/chatload.md).
 */
#ifndef CHATLOAD_MERGE_H
#define CHATLOAD_MERGE_H

/* argv[0] is "merge". The exit status: 0, 1 (not ok), 2 (bad usage). */
int merge_main(int argc, char **argv);

#endif
