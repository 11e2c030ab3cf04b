/*
 * test_journal_concurrency.c: the journal's writer under concurrent use, in a plain program
 * so that it runs under ThreadSanitizer. Durable actors on two schedulers persist (a mix of
 * persist and persist_async) while plain threads append to ids of their own and a reader
 * thread replays and queries all the while, and the map starts small so that it grows during
 * the run (the writer resizes it while readers come and go). Then every id must hold exactly
 * its events, in order. Prints "ok <what>" or "FAIL <what>: <why>"; the exit status is the
 * number of failures. Every wait is bounded.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "../unit/journal_util.h"

#define ACTORS     8
#define PER_ACTOR  1500
#define THREADS    2
#define PER_THREAD 1500
#define EVENT_SIZE 200
#define WAIT_MS    120000

static struct actor_journal *jr;
static atomic_int finished;        /* actors that applied all their events */
static atomic_int bad;             /* invariants broken inside callbacks */
static atomic_int reader_stop;     /* the reader thread ends */
static atomic_uint_fast64_t reads; /* replays and queries the reader made */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- The durable actors ------------------------------------------------------------------- */

struct writer_state {
    uint64_t applied; /* events applied, in order */
    uint64_t sent;    /* events persisted */
};

static int w_init(struct actor_durable *d, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct writer_state));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static int w_apply(struct actor_durable *d, void *state, uint64_t seq, const void *event,
                   size_t len)
{
    struct writer_state *w = state;
    uint64_t v;

    memcpy(&v, event, sizeof(v));
    if (len != EVENT_SIZE || v != seq || seq != w->applied + 1)
        atomic_fetch_add(&bad, 1);
    w->applied = seq;
    if (seq == PER_ACTOR)
        atomic_fetch_add(&finished, 1);
    return 0;
}

static int w_next(struct actor_durable *d, struct writer_state *w);

static int w_done(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    if (err != 0)
        atomic_fetch_add(&bad, 1);
    return err != 0 ? err : w_next(d, state);
}

/* Persist the next event: odd ones wait (persist), even ones do not (persist_async). */
static int w_next(struct actor_durable *d, struct writer_state *w)
{
    unsigned char ev[EVENT_SIZE] = {0};
    uint64_t seq = w->sent + 1;

    if (seq > PER_ACTOR)
        return 0;
    memcpy(ev, &seq, sizeof(seq));
    w->sent = seq;
    if (seq % 2)
        return actor_durable_persist(d, ev, sizeof(ev), w_done, NULL);
    return actor_durable_persist_async(d, ev, sizeof(ev), w_done, NULL);
}

static int w_recovered(struct actor_durable *d, void *state)
{
    int rc = 0;

    for (int i = 0; i < 4 && rc == 0; i++)
        rc = w_next(d, state);
    return rc;
}

static int w_handle(struct actor_durable *d, void *state, struct actor_msg *msg)
{
    return 0;
}

static void w_terminate(struct actor_durable *d, void *state, int reason)
{
    free(state);
}

static const struct actor_durable_behaviour writer = {
    .name = "writer",
    .init = w_init,
    .apply = w_apply,
    .recovered = w_recovered,
    .handle = w_handle,
    .terminate = w_terminate,
};

/* ---- Plain threads ------------------------------------------------------------------------ */

static atomic_int thread_errors;

static void on_append(int err, uint64_t seq, void *user_data)
{
    if (err != 0)
        atomic_fetch_add(&thread_errors, 1);
}

static void *appender(void *arg)
{
    unsigned char ev[EVENT_SIZE] = {0};
    char id[32];

    snprintf(id, sizeof(id), "thread-%d", (int)(intptr_t)arg);
    for (uint64_t s = 1; s <= PER_THREAD; s++) {
        memcpy(ev, &s, sizeof(s));
        if (actor_journal_append(jr, id, s, ev, sizeof(ev), on_append, NULL) != 0)
            atomic_fetch_add(&thread_errors, 1);
    }
    return NULL;
}

static int count_cb(uint64_t seq, const void *data, size_t len, void *user_data)
{
    uint64_t *n = user_data;

    if (seq != *n + 1)
        atomic_fetch_add(&bad, 1);
    *n = seq;
    return 0;
}

static void *reader(void *arg)
{
    while (!atomic_load(&reader_stop)) {
        char id[32];
        uint64_t n = 0, high = 0;

        snprintf(id, sizeof(id), "actor-%d", (int)(atomic_load(&reads) % ACTORS));
        if (actor_journal_replay(jr, id, 1, count_cb, &n) != 0 ||
            actor_journal_highest(jr, id, &high) != 0 || high < n)
            atomic_fetch_add(&bad, 1);
        atomic_fetch_add(&reads, 1);
    }
    return NULL;
}

/* ---- Checks --------------------------------------------------------------------------------- */

static void check_ids(const char *prefix, int n, uint64_t per)
{
    char what[96], why[128];
    int wrong = 0;

    for (int i = 0; i < n; i++) {
        char id[32];
        uint64_t last = 0;

        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        if (actor_journal_replay(jr, id, 1, count_cb, &last) != 0 || last != per) {
            snprintf(why, sizeof(why), "%s holds %llu events", id, (unsigned long long)last);
            wrong++;
        }
    }
    snprintf(what, sizeof(what), "each %s id holds its %llu events in order", prefix,
             (unsigned long long)per);
    jutil_check(wrong == 0, what, why);
}

int main(void)
{
    static struct actor_durable_spec specs[ACTORS];
    static char ids[ACTORS][32];
    struct actor_journal_opts jo = {.map_size = 1 << 20, .log = jutil_log};
    struct actor_system_opts so = {.schedulers = 2};
    struct actor_journal_stats st;
    struct actor_system *sys;
    pthread_t threads[THREADS], rd;
    char dir[PATH_MAX];
    int rc;

    if (jutil_tmpdir("test-journal-conc", dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    jo.dir = dir;
    rc = actor_journal_open(&jo, &jr);
    if (rc == 0)
        rc = actor_system_new(&so, &sys);
    if (rc == 0)
        rc = actor_system_start(sys);
    jutil_check(rc == 0, "journal and system start", actor_strerror(rc));
    if (rc != 0)
        return 1;
    pthread_create(&rd, NULL, reader, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, appender, (void *)(intptr_t)i);
    for (int i = 0; i < ACTORS && rc == 0; i++) {
        snprintf(ids[i], sizeof(ids[i]), "actor-%d", i);
        specs[i] = (struct actor_durable_spec){
            .journal = jr, .behaviour = &writer, .persistence_id = ids[i]};
        rc = actor_durable_spawn(sys, NULL, &specs[i], NULL, NULL);
    }
    jutil_check(rc == 0, "durable actors spawned", actor_strerror(rc));
    for (long i = 0; i < WAIT_MS && atomic_load(&finished) < ACTORS; i++)
        sleep_ms(1);
    jutil_check(atomic_load(&finished) == ACTORS, "every actor applied all its events",
                "some never finished");
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    actor_journal_flush(jr);
    atomic_store(&reader_stop, 1);
    pthread_join(rd, NULL);
    actor_system_shutdown(sys, 5.0);
    check_ids("actor", ACTORS, PER_ACTOR);
    check_ids("thread", THREADS, PER_THREAD);
    actor_journal_stats(jr, &st);
    jutil_check(st.appended == ACTORS * PER_ACTOR + THREADS * PER_THREAD && st.failed == 0,
                "the writer counted every append and no failure", "wrong counters");
    jutil_check(st.map_grows > 0, "the map grew during the run", "it never grew");
    jutil_check(atomic_load(&bad) == 0 && atomic_load(&thread_errors) == 0,
                "no callback saw an event out of order or a failure", "some did");
    jutil_check(atomic_load(&reads) > 0, "the reader ran alongside", "it never read");
    actor_journal_close(jr);
    actor_system_free(sys);
    jutil_rmdir(dir);
    return jutil_failures;
}
