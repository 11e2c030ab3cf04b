/*
 * actor_bench_idle.c: idle_actor_bytes, the memory an idle actor costs. Spawn 1,000,000 actors
 * that do nothing and report (RSS after - RSS before) / 1,000,000. It is one measurement in a
 * fresh process, since memory freed by an earlier run would hide the growth.
 */
#include <stdio.h>
#include <unistd.h>

#include "actor_bench.h"

/* Resident set size in bytes, from /proc/self/statm. */
static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static int idle_init(struct actor *self, void *arg, void **state)
{
    struct bench *b = arg;

    atomic_fetch_add_explicit(&b->counter, 1, memory_order_relaxed);
    *state = NULL;
    return 0;
}

static const struct actor_behaviour idle_behaviour = {"idle", idle_init, NULL, NULL};

/* Spawn IDLE_N actors and wait until each has run its init. Sets *secs and *bytes. */
int bench_idle_run(struct bench *b, double *secs, long *bytes)
{
    struct actor_stats st;
    long before, after;
    double t0, deadline;
    int rc = 0;

    atomic_store(&b->counter, 0);
    before = rss_bytes();
    t0 = now_s();
    for (uint32_t i = 0; i < IDLE_N && rc == 0; i++)
        rc = spawn_top(b, &idle_behaviour, b, NULL);
    if (rc != 0) {
        bench_fail(b, "idle_actor_bytes: spawn", rc);
        return rc;
    }
    deadline = now_s() + opt.timeout;
    while (atomic_load(&b->counter) < IDLE_N) {
        if (now_s() > deadline) {
            bench_fail(b, "idle_actor_bytes: the actors' inits did not all run", 0);
            return -1;
        }
        sleep_ms(1);
    }
    *secs = now_s() - t0;
    after = rss_bytes();
    actor_system_stats(b->sys, &st);
    if (st.alive < IDLE_N) {
        bench_fail(b, "idle_actor_bytes: fewer actors alive than spawned", 0);
        return -1;
    }
    if (before < 0 || after < 0) {
        bench_fail(b, "idle_actor_bytes: cannot read /proc/self/statm", 0);
        return -1;
    }
    *bytes = after - before;
    return 0;
}
