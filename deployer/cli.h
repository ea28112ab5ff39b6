/*
 * rainbow's command line: parsing, help texts and the commands. Exit
 * statuses: 0 success, 1 the operation failed (reason on stderr), 2 bad
 * usage (reason and a pointer to --help on stderr).
 */
#ifndef RAINBOW_CLI_H
#define RAINBOW_CLI_H

int cli_main(int argc, char **argv);

/* "2", "2s", "500ms", "1.5m", "1h" -> seconds, at most CLI_DURATION_MAX_S; 0 or
 * -EINVAL. */
#define CLI_DURATION_MAX_S (365.0 * 24 * 3600)
int cli_parse_duration(const char *s, double *out);
/* "50", "50/s", "0.5/s" -> sessions per second, 0.01..100000; 0 or -EINVAL. */
int cli_parse_rate(const char *s, double *out);

#endif
