/*
 * journal_bench.c: the journal suite of BENCHMARKS.md: durable actors on LMDB, in the default
 * sync mode, in a directory on the disk under test.
 *
 *   fsync          the disk's raw rate: write 4 KiB at the start of a file, fdatasync, repeat
 *   persist_wait   one actor persists 10,000 events, each one waiting for the one before
 *   persist_async  one actor persists 10,000 events without waiting
 *   group_commit   100 actors x 10,000 events, each actor with up to 500 persist_async out
 *   group_wait     100 actors x 1,000 events, each waiting for each (persist): shows what
 *                  group commit alone gives to actors that all wait
 *   recover_10k    the time from spawn to the first message for an actor with 10,000 events
 *   recover_1m     the same with 1,000,000 events
 *
 * Events are 32 bytes. Each bench runs --iterations times (default 5; the sync-bound ones are
 * slow) with fresh persistence ids; the report is the median of the runs within +-20 % of the
 * median, as in Savina. Output: one line per bench, or with --json one JSON row
 * {"suite":"journal","bench":...,"impl":"ours","n":...,"seconds":...,"ops_per_s":...}.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"

#define EVENT_SIZE    32
#define WINDOW        500 /* persist_async out at once per actor in group_commit */
#define ITERS_DEFAULT 5
#define ITERS_MAX     50
#define FSYNC_OPS     2000
#define FSYNC_SECONDS 3.0
#define TIMEOUT_S     600.0

static struct {
    int json;
    int iterations;
    const char *dir;
} opt = {0, ITERS_DEFAULT, NULL};

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(void)
{
    struct timespec ts = {0, 200000};

    nanosleep(&ts, NULL);
}

/* ---- The bench actor -------------------------------------------------------------------- */

enum mode { M_WAIT, M_ASYNC, M_RECOVER };

struct run {
    enum mode mode;
    uint64_t n;            /* events each actor persists */
    atomic_int remaining;  /* actors not done yet */
    atomic_int terminated; /* actors whose terminate ran */
    atomic_int errors;
};

struct bench_actor {
    struct run *run;
    uint64_t sent, applied;
    uint64_t sum;
};

static int b_init(struct actor_durable *d, void *arg, void **state)
{
    struct bench_actor *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return ACTOR_ENOMEM;
    b->run = arg;
    *state = b;
    return 0;
}

static int b_apply(struct actor_durable *d, void *state, uint64_t seq, const void *event,
                   size_t len)
{
    struct bench_actor *b = state;
    uint64_t v;

    memcpy(&v, event, sizeof(v));
    b->sum += v;
    b->applied++;
    return 0;
}

static int b_next(struct actor_durable *d, struct bench_actor *b);

static int b_done(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    struct bench_actor *b = state;

    if (err != 0) {
        atomic_fetch_add(&b->run->errors, 1);
        atomic_fetch_sub(&b->run->remaining, 1);
        return err;
    }
    if (b->applied == b->run->n) {
        atomic_fetch_sub(&b->run->remaining, 1);
        return 0;
    }
    return b_next(d, b);
}

static int b_next(struct actor_durable *d, struct bench_actor *b)
{
    unsigned char ev[EVENT_SIZE] = {0};

    if (b->sent == b->run->n)
        return 0;
    b->sent++;
    memcpy(ev, &b->sent, sizeof(b->sent));
    if (b->run->mode == M_WAIT)
        return actor_durable_persist(d, ev, sizeof(ev), b_done, NULL);
    return actor_durable_persist_async(d, ev, sizeof(ev), b_done, NULL);
}

static int b_recovered(struct actor_durable *d, void *state)
{
    struct bench_actor *b = state;
    uint64_t window = b->run->mode == M_ASYNC ? WINDOW : 1;
    int rc = 0;

    if (b->run->mode == M_RECOVER) {
        if (b->applied != b->run->n)
            atomic_fetch_add(&b->run->errors, 1);
        atomic_fetch_sub(&b->run->remaining, 1);
        actor_exit(actor_durable_actor(d), ACTOR_NORMAL);
        return 0;
    }
    for (uint64_t i = 0; i < window && rc == 0; i++)
        rc = b_next(d, b);
    return rc;
}

static int b_handle(struct actor_durable *d, void *state, struct actor_msg *msg)
{
    return 0;
}

static void b_terminate(struct actor_durable *d, void *state, int reason)
{
    struct bench_actor *b = state;

    atomic_fetch_add(&b->run->terminated, 1);
    free(b);
}

static const struct actor_durable_behaviour bench_behaviour = {
    .name = "bench",
    .init = b_init,
    .apply = b_apply,
    .recovered = b_recovered,
    .handle = b_handle,
    .terminate = b_terminate,
};

/* ---- Runs --------------------------------------------------------------------------------- */

struct env {
    struct actor_journal *journal;
    struct actor_system *sys;
    unsigned next_id; /* fresh persistence ids for each run */
};

/*
 * Spawn @actors durable actors in @mode (ids "<prefix>-<i>", or fresh ones when @prefix is
 * NULL) and time them until each is done. Returns the seconds, or a negative value on error.
 */
static double run_actors(struct env *e, enum mode mode, int actors, uint64_t n, const char *prefix)
{
    struct actor_durable_spec *specs = calloc((size_t)actors, sizeof(*specs));
    char(*ids)[32] = calloc((size_t)actors, sizeof(*ids));
    struct run run = {.mode = mode, .n = n};
    double start, end, deadline;
    int rc = specs != NULL && ids != NULL ? 0 : ACTOR_ENOMEM;

    atomic_store(&run.remaining, actors);
    start = now();
    for (int i = 0; i < actors && rc == 0; i++) {
        if (prefix != NULL)
            snprintf(ids[i], sizeof(ids[i]), "%s-%d", prefix, i);
        else
            snprintf(ids[i], sizeof(ids[i]), "run%u-%d", e->next_id, i);
        specs[i] = (struct actor_durable_spec){.journal = e->journal,
                                               .behaviour = &bench_behaviour,
                                               .persistence_id = ids[i],
                                               .arg = &run};
        rc = actor_durable_spawn(e->sys, NULL, &specs[i], NULL, NULL);
    }
    e->next_id++;
    deadline = start + TIMEOUT_S;
    while (rc == 0 && atomic_load(&run.remaining) > 0 && now() < deadline)
        nap();
    end = now();
    if (rc == 0 && (atomic_load(&run.remaining) > 0 || atomic_load(&run.errors) > 0))
        rc = ACTOR_ETIMEDOUT;
    /* Stop them all and wait for their terminates: the next run may reuse their ids. */
    if (mode != M_RECOVER)
        actor_system_shutdown(e->sys, 10.0);
    while (atomic_load(&run.terminated) < actors && now() < deadline + 10)
        nap();
    free(specs);
    free(ids);
    if (rc != 0)
        fprintf(stderr, "journal_bench: run failed: %s\n", actor_strerror(rc));
    return rc == 0 ? end - start : -1;
}

static int env_open(struct env *e, const char *name)
{
    char path[PATH_MAX];
    struct actor_journal_opts jo = {.dir = path, .map_size = (size_t)256 << 20};
    struct actor_system_opts so = {.schedulers = 2};
    int rc;

    snprintf(path, sizeof(path), "%s/%s", opt.dir, name);
    rc = actor_journal_open(&jo, &e->journal);
    if (rc == 0)
        rc = actor_system_new(&so, &e->sys);
    if (rc == 0)
        rc = actor_system_start(e->sys);
    if (rc != 0)
        fprintf(stderr, "journal_bench: %s: %s\n", path, actor_strerror(rc));
    return rc;
}

/* A new system for the next run (a shutdown system does not restart). */
static int env_restart(struct env *e)
{
    struct actor_system_opts so = {.schedulers = 2};
    int rc;

    actor_system_free(e->sys);
    e->sys = NULL;
    rc = actor_system_new(&so, &e->sys);
    return rc != 0 ? rc : actor_system_start(e->sys);
}

static void env_close(struct env *e)
{
    if (e->sys != NULL) {
        actor_system_shutdown(e->sys, 10.0);
        actor_system_free(e->sys);
    }
    actor_journal_close(e->journal);
}

/* Append @n events to @id directly, batched by the writer; 0 or an error. */
static int prefill(struct actor_journal *j, const char *id, uint64_t n)
{
    unsigned char ev[EVENT_SIZE] = {0};

    for (uint64_t s = 1; s <= n; s++) {
        int rc;

        memcpy(ev, &s, sizeof(s));
        rc = actor_journal_append(j, id, s, ev, sizeof(ev), NULL, NULL);
        if (rc != 0)
            return rc;
    }
    return actor_journal_flush(j);
}

/* ---- Report ------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Savina's filter: the median of the runs within +-20 % of the median. */
static double filtered_median(double *v, int n, int *kept)
{
    double m, keep[ITERS_MAX];
    int k = 0;

    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    m = v[n / 2];
    for (int i = 0; i < n; i++)
        if (v[i] >= 0.8 * m && v[i] <= 1.2 * m)
            keep[k++] = v[i];
    *kept = k;
    return k > 0 ? keep[k / 2] : m;
}

static void report(const char *bench, uint64_t n, double secs, int runs, int kept,
                   const char *extra)
{
    double rate = (double)n / secs;

    if (opt.json)
        printf("{\"suite\":\"journal\",\"bench\":\"%s\",\"impl\":\"ours\",\"n\":%llu,"
               "\"seconds\":%.6f,\"ops_per_s\":%.0f,\"iterations\":%d,\"kept\":%d%s}\n",
               bench, (unsigned long long)n, secs, rate, runs, kept, extra);
    else
        printf("%-14s n=%-8llu %10.4f s %12.0f events/s  (%d of %d runs kept)\n", bench,
               (unsigned long long)n, secs, rate, kept, runs);
    fflush(stdout);
}

/* ---- Benches ------------------------------------------------------------------------------ */

/* The disk's raw fdatasync rate, on a file in the bench directory. */
static int bench_fsync(void)
{
    char path[PATH_MAX], block[4096], extra[64];
    double start, secs;
    int fd, ops = 0;

    snprintf(path, sizeof(path), "%s/fsync.probe", opt.dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "journal_bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    memset(block, 'f', sizeof(block));
    start = now();
    while (ops < FSYNC_OPS && now() - start < FSYNC_SECONDS) {
        if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block) || fdatasync(fd) != 0) {
            fprintf(stderr, "journal_bench: fsync probe: %s\n", strerror(errno));
            close(fd);
            return 1;
        }
        ops++;
    }
    secs = now() - start;
    close(fd);
    unlink(path);
    snprintf(extra, sizeof(extra), ",\"fsync_per_s\":%.0f", ops / secs);
    report("fsync", (uint64_t)ops, secs, 1, 1, extra);
    return 0;
}

/* persist_wait, persist_async, group_commit, group_wait. */
static int bench_persist(const char *name, enum mode mode, int actors, uint64_t n)
{
    struct env e = {0};
    double runs[ITERS_MAX], secs;
    int kept, rc = env_open(&e, name);

    for (int it = 0; it < opt.iterations && rc == 0; it++) {
        runs[it] = run_actors(&e, mode, actors, n, NULL);
        rc = runs[it] < 0 ? 1 : env_restart(&e);
    }
    env_close(&e);
    if (rc != 0)
        return 1;
    secs = filtered_median(runs, opt.iterations, &kept);
    report(name, (uint64_t)actors * n, secs, opt.iterations, kept, "");
    return 0;
}

static int bench_recover(const char *name, uint64_t n)
{
    struct env e = {0};
    double runs[ITERS_MAX], secs;
    int kept, rc = env_open(&e, name);

    if (rc == 0)
        rc = prefill(e.journal, "recover-0", n);
    for (int it = 0; it < opt.iterations && rc == 0; it++) {
        runs[it] = run_actors(&e, M_RECOVER, 1, n, "recover");
        rc = runs[it] < 0;
    }
    env_close(&e);
    if (rc != 0)
        return 1;
    secs = filtered_median(runs, opt.iterations, &kept);
    report(name, n, secs, opt.iterations, kept, "");
    return 0;
}

static int bench(const char *name)
{
    if (strcmp(name, "fsync") == 0)
        return bench_fsync();
    if (strcmp(name, "persist_wait") == 0)
        return bench_persist(name, M_WAIT, 1, 10000);
    if (strcmp(name, "persist_async") == 0)
        return bench_persist(name, M_ASYNC, 1, 10000);
    if (strcmp(name, "group_commit") == 0)
        return bench_persist(name, M_ASYNC, 100, 10000);
    if (strcmp(name, "group_wait") == 0)
        return bench_persist(name, M_WAIT, 100, 1000);
    if (strcmp(name, "recover_10k") == 0)
        return bench_recover(name, 10000);
    if (strcmp(name, "recover_1m") == 0)
        return bench_recover(name, 1000000);
    fprintf(stderr, "journal_bench: unknown bench: %s\n", name);
    return 2;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: journal_bench --dir DIR [--json] [--iterations N] BENCH...\n"
                 "benches: fsync persist_wait persist_async group_commit group_wait\n"
                 "         recover_10k recover_1m\n"
                 "DIR must be on the disk under test (not tmpfs); the bench makes its\n"
                 "journals in it and leaves them for the caller to remove.\n");
}

int main(int argc, char **argv)
{
    int i, status = 0;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            opt.json = 1;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            opt.dir = argv[++i];
        } else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            opt.iterations = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (opt.dir == NULL || i == argc || opt.iterations < 1 || opt.iterations > ITERS_MAX) {
        usage(stderr);
        return 2;
    }
    for (; i < argc && status == 0; i++)
        status = bench(argv[i]);
    return status;
}
