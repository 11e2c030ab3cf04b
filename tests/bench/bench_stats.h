/*
 * bench_stats.h: what the benchmark programs (actor_bench, dist_bench) share: Savina's way of
 * summing up runs, and the parsing of their numeric options. Each program includes it once.
 */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_STATS_FN  static __attribute__((unused))
#define BENCH_STATS_MAX 1000 /* runs one summary takes */

BENCH_STATS_FN int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The median of @v (sorted in place). */
BENCH_STATS_FN double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * Savina's filter: keep the runs within +-20 % of the median, return their median. Runs in two
 * clusters far apart can leave none (the median of an even count lies between them); then the
 * plain median stands, with *kept = 0 to say so. @n is at most BENCH_STATS_MAX.
 */
BENCH_STATS_FN double savina_median(const double *runs, int n, int *kept)
{
    double sorted[BENCH_STATS_MAX], keep[BENCH_STATS_MAX];
    double m;

    memcpy(sorted, runs, (size_t)n * sizeof *runs);
    m = median(sorted, n);
    *kept = 0;
    for (int i = 0; i < n; i++)
        if (runs[i] >= 0.8 * m && runs[i] <= 1.2 * m)
            keep[(*kept)++] = runs[i];
    return *kept > 0 ? median(keep, *kept) : m;
}

/* @s as a whole decimal number within [lo, hi] into *out; 0, or -1 (out untouched). */
BENCH_STATS_FN int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    if (s == NULL)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

#endif /* BENCH_STATS_H */
