/*
 * actor_bench.c: our side of the actor suite, the Savina micro-benchmarks
 * (actor_bench_savina.c) and idle_actor_bytes (actor_bench_idle.c), written against the public
 * actor.h API only. tests/bench/erlang/ holds the same benches for Erlang/OTP, with the same
 * parameters; scripts/bench runs both side by side. See /work/shared/BENCHMARKS.md.
 *
 * This file is the driver: the options, the method, the watchdog and the report.
 *
 * Each timed run:
 *
 *     clock starts --> spawn the actors, send the first message --> the last actor posts the
 *     done semaphore --> stop the actors that stay --> clock stops --> wait, untimed, until
 *     the system has as many live actors as before the run
 *
 * Method (Savina's): 12 runs, drop those outside +-20 % of the median, report the median of
 * the rest. idle_actor_bytes is one measurement in a fresh process, since memory freed by an
 * earlier run would hide the growth. Every wait has a deadline (--timeout, 120 s), and a
 * watchdog thread ends the process if any step, a runtime call included, overruns it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor_bench.h"
#include "bench_stats.h"

struct bench_spec {
    const char *name;
    uint64_t n;
    int (*run)(struct bench *b);
};

/* The parsed options: this program's only globals. */
struct bench_opts opt = {0, 0, 2, 12, BENCH_TIMEOUT_S};

/* ---- Utilities ------------------------------------------------------------------------------ */

/* Record the first failure and wake the waiting thread. Any thread may call it. */
void bench_fail(struct bench *b, const char *what, int err)
{
    int expected = 0;

    if (atomic_compare_exchange_strong(&b->failed, &expected, 1)) {
        if (err != 0)
            snprintf(b->error, sizeof b->error, "%s: %s", what, actor_strerror(err));
        else
            snprintf(b->error, sizeof b->error, "%s", what);
        sem_post(&b->done);
    }
}

static void watchdog_arm(struct bench *b, const char *step, double seconds)
{
    pthread_mutex_lock(&b->wd_lock);
    b->wd_step = step;
    b->wd_deadline = now_s() + seconds;
    pthread_mutex_unlock(&b->wd_lock);
}

/*
 * The watchdog: a step that overruns its deadline is a hang, possibly inside the runtime,
 * where no timeout of ours can reach. Report it and end the process; nothing can be freed.
 */
static void *watchdog_run(void *arg)
{
    struct bench *b = arg;

    for (;;) {
        sleep_ms(100);
        pthread_mutex_lock(&b->wd_lock);
        const char *step = b->wd_step;
        int overdue = step != NULL && now_s() > b->wd_deadline;
        int quit = b->wd_quit;
        pthread_mutex_unlock(&b->wd_lock);
        if (quit)
            return NULL;
        if (overdue) {
            fprintf(stderr, "actor_bench: HANG: %s did not finish within %.0f s\n", step,
                    opt.timeout);
            fflush(stderr);
            _exit(3);
        }
    }
}

/* ---- Running a bench ------------------------------------------------------------------------ */

/* Wait for the run's done post. 0, or -1 with b->error set. */
int bench_wait(struct bench *b, const char *what)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)opt.timeout;
    for (;;) {
        if (sem_timedwait(&b->done, &ts) == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == ETIMEDOUT) {
            char msg[96];
            snprintf(msg, sizeof msg, "%s: no result within %.0f s", what, opt.timeout);
            bench_fail(b, msg, 0);
        } else {
            bench_fail(b, "sem_timedwait", -errno);
        }
        break;
    }
    return atomic_load(&b->failed) ? -1 : 0;
}

/* ---- The method and the report ------------------------------------------------------------ */

static const struct bench_spec bench_specs[] = {
    {"pingpong", PINGPONG_N, bench_pingpong_run},
    {"counting", COUNTING_N, bench_counting_run},
    {"threadring", RING_N, bench_threadring_run},
    {"big", (uint64_t)BIG_ACTORS *BIG_PINGS, bench_big_run},
    {"fjcreate", FJCREATE_N, bench_fjcreate_run},
    {"fjthrput", (uint64_t)FJTHRPUT_ACTORS *FJTHRPUT_PER, bench_fjthrput_run},
    {"skynet", SKYNET_LEAVES, bench_skynet_run},
    {"idle_actor_bytes", IDLE_N, NULL},
};

#define BENCH_COUNT (sizeof bench_specs / sizeof bench_specs[0])

static void report(const struct bench *b, const char *name, uint64_t n, double secs, int iters,
                   int kept, const char *extra_json, const char *extra_text)
{
    double rate = (double)n / secs;

    if (opt.json)
        printf("{\"suite\":\"actor\",\"bench\":\"%s\",\"impl\":\"ours\",\"n\":%llu,"
               "\"seconds\":%.7f,\"ops_per_s\":%.0f,\"iterations\":%d,\"kept\":%d,"
               "\"schedulers\":%u%s}\n",
               name, (unsigned long long)n, secs, rate, iters, kept, opt.schedulers, extra_json);
    else
        printf("%-17s n=%-9llu %12.6f s %12.0f ops/s  (%d of %d runs kept)%s\n", name,
               (unsigned long long)n, secs, rate, kept, iters, extra_text);
    fflush(stdout);
}

/* Wait, untimed, until only @alive actors are left: the last run's have all ended. */
static int settle(struct bench *b, uint64_t alive, const char *name)
{
    double deadline = now_s() + opt.timeout;
    struct actor_stats st;

    for (;;) {
        actor_system_stats(b->sys, &st);
        if (st.alive <= alive)
            return 0;
        if (now_s() > deadline) {
            fprintf(stderr, "actor_bench: %s: %llu actors still alive %.0f s after the run\n", name,
                    (unsigned long long)(st.alive - alive), opt.timeout);
            return -1;
        }
        sleep_ms(1);
    }
}

static int run_timed(struct bench *b, const struct bench_spec *spec)
{
    double runs[BENCH_MAX_ITERS], secs;
    struct actor_stats st;
    int kept;

    actor_system_stats(b->sys, &st);
    for (int it = 0; it < opt.iters; it++) {
        double t0;
        int rc;

        while (sem_trywait(&b->done) == 0)
            ; /* no post of an earlier run may count for this one */
        watchdog_arm(b, spec->name, opt.timeout + 10);
        t0 = now_s();
        rc = spec->run(b);
        runs[it] = now_s() - t0;
        if (rc != 0) {
            if (!atomic_load(&b->failed))
                bench_fail(b, spec->name, rc);
            fprintf(stderr, "actor_bench: %s, run %d: %s\n", spec->name, it + 1, b->error);
            return -1;
        }
        watchdog_arm(b, "the wait for a run's actors to end", opt.timeout + 10);
        if (settle(b, st.alive, spec->name) != 0)
            return -1;
        if (opt.verbose)
            fprintf(stderr, "actor_bench: %s run %d: %.6f s\n", spec->name, it + 1, runs[it]);
    }
    secs = savina_median(runs, opt.iters, &kept);
    report(b, spec->name, spec->n, secs, opt.iters, kept, "", "");
    return 0;
}

static int run_idle_report(struct bench *b)
{
    char json[128], text[96];
    double secs = 0;
    long bytes = 0;

    watchdog_arm(b, "idle_actor_bytes", opt.timeout + 10);
    if (bench_idle_run(b, &secs, &bytes) != 0) {
        fprintf(stderr, "actor_bench: idle_actor_bytes: %s\n", b->error);
        return -1;
    }
    snprintf(json, sizeof json, ",\"bytes_per_actor\":%.1f,\"measure\":\"rss\"",
             (double)bytes / IDLE_N);
    snprintf(text, sizeof text, " bytes_per_actor=%.1f measure=\"rss\"", (double)bytes / IDLE_N);
    report(b, "idle_actor_bytes", IDLE_N, secs, 1, 1, json, text);
    return 0;
}

/* ---- The system -------------------------------------------------------------------------- */

static int system_up(struct bench *b)
{
    struct actor_system_opts o = {opt.schedulers, 0, NULL, NULL};
    int rc;

    b->raw = actor_type_raw();
    b->work_arg = BENCH_WORK_ARG;
    rc = actor_system_new(&o, &b->sys);
    if (rc == 0)
        rc = actor_system_start(b->sys);
    if (rc != 0)
        fprintf(stderr, "actor_bench: starting the actor system: %s\n", actor_strerror(rc));
    return rc;
}

static void system_down(struct bench *b)
{
    int rc;

    watchdog_arm(b, "actor_system_shutdown", BENCH_SHUTDOWN_S + 30);
    rc = actor_system_shutdown(b->sys, BENCH_SHUTDOWN_S);
    if (rc != 0)
        fprintf(stderr, "actor_bench: actor_system_shutdown: %s\n", actor_strerror(rc));
    actor_system_free(b->sys);
    b->sys = NULL;
}

/* ---- Options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: actor_bench [--json] [--verbose] [--schedulers N] [--iterations N]\n"
            "                   [--timeout SECONDS] [BENCH...]\n"
            "BENCH: pingpong counting threadring big fjcreate fjthrput skynet\n"
            "       idle_actor_bytes, or all (the default). idle_actor_bytes measures RSS and\n"
            "       is right only in a fresh process: run it on its own.\n"
            "Defaults: 2 schedulers, 12 iterations (Savina's median), 120 s per wait.\n");
}

/* Parse argv into opt and @selected (one flag per bench_specs entry). 0, 1 for help, or -1. */
static int parse_args(int argc, char **argv, int *selected)
{
    int any = 0;
    long v;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            opt.json = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return 1;
        } else if (strcmp(a, "--schedulers") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, BENCH_MAX_SCHED, &v) != 0)
                return -1;
            opt.schedulers = (unsigned)v;
        } else if (strcmp(a, "--iterations") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, BENCH_MAX_ITERS, &v) != 0)
                return -1;
            opt.iters = (int)v;
        } else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) {
            if (parse_long(argv[++i], 1, 3600, &v) != 0)
                return -1;
            opt.timeout = (double)v;
        } else if (strcmp(a, "all") == 0) {
            for (size_t k = 0; k < BENCH_COUNT; k++)
                selected[k] = 1;
            any = 1;
        } else {
            size_t k = 0;
            while (k < BENCH_COUNT && strcmp(a, bench_specs[k].name) != 0)
                k++;
            if (k == BENCH_COUNT)
                return -1;
            selected[k] = 1;
            any = 1;
        }
    }
    for (size_t k = 0; !any && k < BENCH_COUNT; k++)
        selected[k] = 1;
    return 0;
}

int main(int argc, char **argv)
{
    int selected[BENCH_COUNT] = {0};
    struct bench b;
    pthread_t wd;
    int rc;

    rc = parse_args(argc, argv, selected);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "actor_bench: bad option, value or bench\n");
        usage(rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.wd_lock, NULL);
    if (sem_init(&b.done, 0, 0) != 0) {
        perror("actor_bench: sem_init");
        return 1;
    }
    b.pids = calloc(BIG_ACTORS > RING_ACTORS ? BIG_ACTORS : RING_ACTORS, sizeof *b.pids);
    if (b.pids == NULL || pthread_create(&wd, NULL, watchdog_run, &b) != 0) {
        fprintf(stderr, "actor_bench: out of memory or threads\n");
        return 1;
    }
    watchdog_arm(&b, "starting the actor system", opt.timeout);
    if (system_up(&b) != 0)
        return 1;
    rc = 0;
    for (size_t k = 0; k < BENCH_COUNT && rc == 0; k++) {
        if (!selected[k])
            continue;
        if (bench_specs[k].run == NULL)
            rc = run_idle_report(&b);
        else
            rc = run_timed(&b, &bench_specs[k]);
    }
    if (rc != 0) {
        /* Actors of a failed run may still be running: leave without tearing down. */
        fflush(stdout);
        _exit(1);
    }
    system_down(&b);
    pthread_mutex_lock(&b.wd_lock);
    b.wd_quit = 1;
    pthread_mutex_unlock(&b.wd_lock);
    pthread_join(wd, NULL);
    sem_destroy(&b.done);
    pthread_mutex_destroy(&b.wd_lock);
    free(b.pids);
    return 0;
}
