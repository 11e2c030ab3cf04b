/*
 * actor_bench.h: what the actor benchmark's driver (actor_bench.c) and its benches
 * (actor_bench_savina.c, actor_bench_idle.c) share: the benches' sizes, the state of one bench
 * process, and the calls by which a bench reports its end or its failure.
 *
 * A bench's run function spawns its actors and sends the first message; the actor that ends
 * the run posts b->done, and the run function returns once bench_wait() has seen it. Any
 * thread that meets an error calls bench_fail(), which also wakes the waiting thread.
 */
#ifndef BENCH_ACTOR_BENCH_H
#define BENCH_ACTOR_BENCH_H

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "actor.h"

#define BENCH_TIMEOUT_S  120.0 /* default bound on any one wait */
#define BENCH_MAX_ITERS  1000
#define BENCH_MAX_SCHED  256
#define BENCH_ERR_MAX    256
#define BENCH_SHUTDOWN_S 60.0 /* grace for actor_system_shutdown */
#define BENCH_WORK_ARG   37.2 /* the argument of sin() in fjcreate and fjthrput */
#define PINGPONG_N       40000
#define COUNTING_N       1000000
#define RING_ACTORS      100
#define RING_N           100000
#define BIG_ACTORS       120
#define BIG_PINGS        20000
#define FJCREATE_N       40000
#define FJTHRPUT_ACTORS  60
#define FJTHRPUT_PER     10000
#define SKYNET_LEAVES    1000000
#define SKYNET_SUM       499999500000ULL
#define IDLE_N           1000000

/* The state of one bench process: one actor system, shared by every run of the bench. */
struct bench {
    struct actor_system *sys;
    const struct actor_type *raw;
    sem_t done;        /* posted by the actor that ends a run, or by bench_fail() */
    atomic_int failed; /* set once, by the first bench_fail() */
    char error[BENCH_ERR_MAX];
    atomic_uint_fast64_t counter; /* big: workers done; idle: inits run */
    uint64_t result;              /* counting's count, skynet's sum, read after done */
    struct dist_pid *pids;        /* threadring's ring, big's peers */
    volatile double work_arg;     /* read at run time, so sin() cannot be folded away */
    /* The watchdog: the step under way and when it must be over. */
    pthread_mutex_t wd_lock;
    const char *wd_step;
    double wd_deadline;
    int wd_quit; /* set by main before it returns and @b goes away */
};

/* The options, parsed by main() in actor_bench.c. */
struct bench_opts {
    int json;
    int verbose;
    unsigned schedulers;
    int iters;
    double timeout;
};

extern struct bench_opts opt;

static inline double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Spawn from outside any actor. */
static inline int spawn_top(struct bench *b, const struct actor_behaviour *bh, void *arg,
                            struct dist_pid *pid)
{
    return actor_spawn(b->sys, NULL, bh, arg, NULL, pid);
}

/* Record the first failure and wake the waiting thread. Any thread may call it. */
void bench_fail(struct bench *b, const char *what, int err);

/* Wait for the run's done post. 0, or -1 with b->error set. */
int bench_wait(struct bench *b, const char *what);

/* The benches (actor_bench_savina.c): one run each, timed by the driver. 0, or nonzero if the
 * run failed. */
int bench_pingpong_run(struct bench *b);
int bench_counting_run(struct bench *b);
int bench_threadring_run(struct bench *b);
int bench_big_run(struct bench *b);
int bench_fjcreate_run(struct bench *b);
int bench_fjthrput_run(struct bench *b);
int bench_skynet_run(struct bench *b);

/* idle_actor_bytes (actor_bench_idle.c): spawn IDLE_N actors and wait until each has run its
 * init. Sets *secs and *bytes. */
int bench_idle_run(struct bench *b, double *secs, long *bytes);

#endif /* BENCH_ACTOR_BENCH_H */
