/*
 * actor_bench.c: our side of the actor suite, the Savina micro-benchmarks, written against the
 * public actor.h API only. tests/bench/erlang/ holds the same benches for Erlang/OTP, with the
 * same parameters; scripts/bench runs both side by side. See /work/shared/BENCHMARKS.md.
 *
 *   pingpong          2 actors, 40,000 strictly sequential round trips
 *   counting          a producer sends 1,000,000 increments to a counter, then asks the count
 *   threadring        100 actors in a ring pass a token 100,000 times
 *   big               120 actors, each sends 20,000 pings to random peers, waiting for each pong
 *   fjcreate          spawn 40,000 actors, send each one message; each computes sin(37.2)^2,
 *                     reports to its parent and exits
 *   fjthrput          60 actors each receive 10,000 messages sent round-robin, one sin(37.2)^2
 *                     per message
 *   skynet            a 10-ary tree of actors down to 1,000,000 leaves; sums come back up
 *   idle_actor_bytes  spawn 1,000,000 idle actors: (RSS after - RSS before) / 1,000,000
 *
 * Messages are raw payloads sent by copy (actor_send_copy), as Erlang copies a term into the
 * receiver's heap: a struct bench_msg when the message carries data, nothing at all when it
 * carries none (an increment, a stop, a done). Copies this small travel inside the runtime's
 * envelope, so no message costs a malloc().
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
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* What a message with data means. */
enum bench_kind {
    KIND_EMPTY = 0, /* no payload: an increment, a stop, a done */
    KIND_START,
    KIND_PING,
    KIND_PONG,
    KIND_GET,
    KIND_COUNT,
    KIND_TOKEN,
    KIND_WORK,
    KIND_SUM,
};

struct bench_msg {
    uint32_t kind; /* enum bench_kind */
    uint32_t pad;
    uint64_t value; /* a count, a hop count, a sum, or a double's bits */
};

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

struct bench_spec {
    const char *name;
    uint64_t n;
    int (*run)(struct bench *b);
};

/* The parsed options: this program's only globals. */
static struct {
    int json;
    int verbose;
    unsigned schedulers;
    int iters;
    double timeout;
} opt = {0, 0, 2, 12, BENCH_TIMEOUT_S};

/* ---- Utilities ------------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Record the first failure and wake the waiting thread. Any thread may call it. */
static void bench_fail(struct bench *b, const char *what, int err)
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

/* ---- Messages ----------------------------------------------------------------------------- */

static uint32_t msg_kind(const struct bench *b, const struct actor_msg *msg)
{
    if (msg->kind != ACTOR_MSG_USER || msg->type != b->raw)
        return UINT32_MAX;
    if (msg->size < sizeof(struct bench_msg))
        return KIND_EMPTY;
    return ((const struct bench_msg *)msg->payload)->kind;
}

static uint64_t msg_value(const struct actor_msg *msg)
{
    return ((const struct bench_msg *)msg->payload)->value;
}

static int send_empty(struct bench *b, struct dist_pid to)
{
    return actor_send_copy(b->sys, to, NULL, 0);
}

static int send_data(struct bench *b, struct dist_pid to, uint32_t kind, uint64_t value)
{
    struct bench_msg m = {kind, 0, value};

    return actor_send_copy(b->sys, to, &m, sizeof m);
}

/* A message a behaviour does not expect: fail the run, crash the actor. */
static int unexpected(struct bench *b, const char *who, const struct actor_msg *msg)
{
    char what[96];

    snprintf(what, sizeof what, "%s got an unexpected message (kind %d, type %s)", who,
             (int)msg->kind, msg->type ? actor_type_name(msg->type) : "none");
    bench_fail(b, what, 0);
    return ACTOR_EINVAL;
}

/* Free the state of an actor whose state is its own malloc()ed block. */
static void state_free(struct actor *self, void *state, int reason)
{
    free(state);
}

/* init for actors whose state is their arg: a malloc()ed block, or the bench itself. */
static int state_take(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

/* ---- Running a bench ------------------------------------------------------------------------ */

/* Wait for the run's done post. 0, or -1 with b->error set. */
static int bench_wait(struct bench *b, const char *what)
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

/* Spawn from outside any actor. */
static int spawn_top(struct bench *b, const struct actor_behaviour *bh, void *arg,
                     struct dist_pid *pid)
{
    return actor_spawn(b->sys, NULL, bh, arg, NULL, pid);
}

/* ---- pingpong ----------------------------------------------------------------------------- */

struct pingpong {
    struct bench *b;
    struct dist_pid pong;
    uint32_t left;
};

static int pong_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct bench *b = state;

    switch (msg_kind(b, msg)) {
    case KIND_PING:
        return send_data(b, msg->from, KIND_PONG, 0);
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(b, "pong", msg);
    }
}

static int ping_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct pingpong *p = state;
    int rc;

    switch (msg_kind(p->b, msg)) {
    case KIND_PONG:
        if (--p->left == 0) {
            rc = send_empty(p->b, p->pong);
            if (rc != 0)
                bench_fail(p->b, "pingpong: stop", rc);
            sem_post(&p->b->done);
            actor_exit(self, ACTOR_NORMAL);
            return 0;
        }
        /* fall through */
    case KIND_START:
        rc = send_data(p->b, p->pong, KIND_PING, 0);
        if (rc != 0)
            bench_fail(p->b, "pingpong: ping", rc);
        return rc;
    default:
        return unexpected(p->b, "ping", msg);
    }
}

static const struct actor_behaviour pong_behaviour = {"pong", state_take, pong_handle, NULL};
static const struct actor_behaviour ping_behaviour = {"ping", state_take, ping_handle, state_free};

static int run_pingpong(struct bench *b)
{
    struct pingpong *p = malloc(sizeof *p);
    struct dist_pid ping;
    int rc;

    if (p == NULL)
        return ACTOR_ENOMEM;
    *p = (struct pingpong){b, DIST_PID_NONE, PINGPONG_N};
    rc = spawn_top(b, &pong_behaviour, b, &p->pong);
    if (rc == 0)
        rc = spawn_top(b, &ping_behaviour, p, &ping);
    if (rc != 0) {
        free(p);
        return rc;
    }
    rc = send_data(b, ping, KIND_START, 0);
    return rc != 0 ? rc : bench_wait(b, "pingpong");
}

/* ---- counting ----------------------------------------------------------------------------- */

struct counting {
    struct bench *b;
    struct dist_pid counter;
    uint64_t count; /* the counter's */
};

static int counter_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct counting *c = state;

    switch (msg_kind(c->b, msg)) {
    case KIND_EMPTY:
        c->count++;
        return 0;
    case KIND_GET:
        actor_exit(self, ACTOR_NORMAL);
        return send_data(c->b, msg->from, KIND_COUNT, c->count);
    default:
        return unexpected(c->b, "counter", msg);
    }
}

static int producer_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct counting *c = state;
    int rc = 0;

    switch (msg_kind(c->b, msg)) {
    case KIND_START:
        for (uint32_t i = 0; i < COUNTING_N && rc == 0; i++)
            rc = send_empty(c->b, c->counter);
        if (rc == 0)
            rc = send_data(c->b, c->counter, KIND_GET, 0);
        if (rc != 0)
            bench_fail(c->b, "counting: send", rc);
        return rc;
    case KIND_COUNT:
        c->b->result = msg_value(msg);
        sem_post(&c->b->done);
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(c->b, "producer", msg);
    }
}

static const struct actor_behaviour counter_behaviour = {"counter", state_take, counter_handle,
                                                         state_free};
static const struct actor_behaviour producer_behaviour = {"producer", state_take, producer_handle,
                                                          state_free};

static int run_counting(struct bench *b)
{
    struct counting *counter = calloc(1, sizeof *counter);
    struct counting *producer = calloc(1, sizeof *producer);
    struct dist_pid pid;
    int rc = ACTOR_ENOMEM;

    if (counter == NULL || producer == NULL)
        goto fail;
    counter->b = producer->b = b;
    rc = spawn_top(b, &counter_behaviour, counter, &producer->counter);
    if (rc != 0)
        goto fail;
    counter = NULL; /* the actor's now */
    rc = spawn_top(b, &producer_behaviour, producer, &pid);
    if (rc != 0)
        goto fail;
    rc = send_data(b, pid, KIND_START, 0);
    if (rc == 0)
        rc = bench_wait(b, "counting");
    if (rc == 0 && b->result != COUNTING_N) {
        bench_fail(b, "counting: wrong count", 0);
        rc = -1;
    }
    return rc;
fail:
    free(counter);
    free(producer);
    return rc;
}

/* ---- threadring --------------------------------------------------------------------------- */

/* The state of an actor that has a place in b->pids: threadring's members, big's workers. */
struct indexed {
    struct bench *b;
    uint32_t index;
};

static int ring_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct indexed *m = state;
    struct dist_pid next;
    int rc;

    switch (msg_kind(m->b, msg)) {
    case KIND_TOKEN:
        if (msg_value(msg) == 0) {
            sem_post(&m->b->done);
            return 0;
        }
        next = m->b->pids[(m->index + 1) % RING_ACTORS];
        rc = send_data(m->b, next, KIND_TOKEN, msg_value(msg) - 1);
        if (rc != 0)
            bench_fail(m->b, "threadring: pass", rc);
        return rc;
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(m->b, "ring member", msg);
    }
}

static const struct actor_behaviour ring_behaviour = {"ring", state_take, ring_handle, state_free};

/* Send a stop to the first @n actors of b->pids. */
static int stop_all(struct bench *b, uint32_t n)
{
    int rc = 0;

    for (uint32_t i = 0; i < n; i++) {
        int r = send_empty(b, b->pids[i]);
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* Spawn @n actors of @bh into b->pids, each with a zeroed struct indexed (or a struct that
 * starts with one) of @state_size as its state. */
static int spawn_indexed(struct bench *b, const struct actor_behaviour *bh, uint32_t n,
                         size_t state_size, uint32_t *spawned)
{
    for (*spawned = 0; *spawned < n; (*spawned)++) {
        struct indexed *m = calloc(1, state_size);
        int rc;

        if (m == NULL)
            return ACTOR_ENOMEM;
        m->b = b;
        m->index = *spawned;
        rc = spawn_top(b, bh, m, &b->pids[*spawned]);
        if (rc != 0) {
            free(m);
            return rc;
        }
    }
    return 0;
}

static int run_threadring(struct bench *b)
{
    uint32_t spawned;
    int rc = spawn_indexed(b, &ring_behaviour, RING_ACTORS, sizeof(struct indexed), &spawned);

    /* The ring's PIDs are all in b->pids before the token's send publishes them. */
    if (rc == 0)
        rc = send_data(b, b->pids[0], KIND_TOKEN, RING_N);
    if (rc == 0)
        rc = bench_wait(b, "threadring");
    stop_all(b, spawned);
    return rc;
}

/* ---- big ---------------------------------------------------------------------------------- */

struct big_worker {
    struct indexed m;
    uint32_t left; /* pongs still to receive */
    uint64_t seed; /* Park-Miller's minimal standard, as in big.erl */
};

/* Send @msg, rewritten as a ping, to a random peer other than the worker itself. */
static int big_ping(struct big_worker *w, struct actor_msg *msg)
{
    uint64_t r;

    w->seed = w->seed * 48271 % 2147483647;
    r = w->seed % (BIG_ACTORS - 1);
    if (r >= w->m.index)
        r++;
    return send_data(w->m.b, w->m.b->pids[r], KIND_PING, 0);
}

static int big_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct big_worker *w = state;
    struct bench *b = w->m.b;
    int rc;

    switch (msg_kind(b, msg)) {
    case KIND_PING:
        rc = send_data(b, msg->from, KIND_PONG, 0);
        break;
    case KIND_PONG:
        if (w->left == 1) {
            w->left = 0;
            if (atomic_fetch_add(&b->counter, 1) + 1 == BIG_ACTORS)
                sem_post(&b->done);
            return 0;
        }
        w->left--;
        rc = big_ping(w, msg);
        break;
    case KIND_START:
        w->seed = (uint64_t)w->m.index * 7919 + 1;
        w->left = BIG_PINGS;
        rc = big_ping(w, msg);
        break;
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(b, "big worker", msg);
    }
    if (rc != 0)
        bench_fail(b, "big: send", rc);
    return rc;
}

static const struct actor_behaviour big_behaviour = {"big", state_take, big_handle, state_free};

static int run_big(struct bench *b)
{
    uint32_t spawned;
    int rc;

    atomic_store(&b->counter, 0);
    rc = spawn_indexed(b, &big_behaviour, BIG_ACTORS, sizeof(struct big_worker), &spawned);
    for (uint32_t i = 0; rc == 0 && i < BIG_ACTORS; i++)
        rc = send_data(b, b->pids[i], KIND_START, 0);
    if (rc == 0)
        rc = bench_wait(b, "big");
    stop_all(b, spawned);
    return rc;
}

/* ---- fjcreate and fjthrput ---------------------------------------------------------------- */

struct fj_master {
    struct bench *b;
    uint32_t left; /* dones still to come */
};

struct fj_worker {
    struct bench *b;
    uint32_t left; /* messages still to come (fjthrput) */
};

/* The work of one message: sin(x)^2, with its result used so it cannot be dropped. */
static int fj_compute(struct bench *b, const struct actor_msg *msg)
{
    uint64_t bits = msg_value(msg);
    double x, s, r;

    memcpy(&x, &bits, sizeof x);
    s = sin(x);
    r = s * s;
    if (!(r >= 0.0)) {
        bench_fail(b, "fj: sin(x)^2 < 0", 0);
        return ACTOR_EINVAL;
    }
    return 0;
}

static uint64_t work_bits(struct bench *b)
{
    double x = b->work_arg;
    uint64_t bits;

    memcpy(&bits, &x, sizeof bits);
    return bits;
}

static int fjc_worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct bench *b = state;
    int rc;

    if (msg_kind(b, msg) != KIND_WORK)
        return unexpected(b, "fjcreate worker", msg);
    rc = fj_compute(b, msg);
    if (rc == 0)
        rc = send_empty(b, msg->from);
    if (rc != 0)
        bench_fail(b, "fjcreate: done", rc);
    actor_exit(self, ACTOR_NORMAL);
    return rc;
}

static const struct actor_behaviour fjc_worker_behaviour = {"fjcreate worker", state_take,
                                                            fjc_worker_handle, NULL};

static int fjc_start(struct actor *self, struct fj_master *m)
{
    struct dist_pid pid;
    uint64_t bits = work_bits(m->b);

    for (uint32_t i = 0; i < FJCREATE_N; i++) {
        int rc = actor_spawn(m->b->sys, self, &fjc_worker_behaviour, m->b, NULL, &pid);
        if (rc == 0)
            rc = send_data(m->b, pid, KIND_WORK, bits);
        if (rc != 0) {
            bench_fail(m->b, "fjcreate: spawn or send", rc);
            return rc;
        }
    }
    return 0;
}

static int fj_master_done(struct actor *self, struct fj_master *m)
{
    if (--m->left == 0) {
        sem_post(&m->b->done);
        actor_exit(self, ACTOR_NORMAL);
    }
    return 0;
}

static int fjc_master_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_master *m = state;

    switch (msg_kind(m->b, msg)) {
    case KIND_START:
        return fjc_start(self, m);
    case KIND_EMPTY:
        return fj_master_done(self, m);
    default:
        return unexpected(m->b, "fjcreate master", msg);
    }
}

static const struct actor_behaviour fjc_master_behaviour = {"fjcreate master", state_take,
                                                            fjc_master_handle, state_free};

static int fjt_worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_worker *w = state;
    int rc;

    if (msg_kind(w->b, msg) != KIND_WORK)
        return unexpected(w->b, "fjthrput worker", msg);
    rc = fj_compute(w->b, msg);
    if (rc == 0 && --w->left == 0) {
        rc = send_empty(w->b, msg->from);
        if (rc != 0)
            bench_fail(w->b, "fjthrput: done", rc);
        actor_exit(self, ACTOR_NORMAL);
    }
    return rc;
}

static const struct actor_behaviour fjt_worker_behaviour = {"fjthrput worker", state_take,
                                                            fjt_worker_handle, state_free};

static int fjt_start(struct actor *self, struct fj_master *m)
{
    struct dist_pid pids[FJTHRPUT_ACTORS];
    uint64_t bits = work_bits(m->b);
    int rc = 0;

    for (uint32_t i = 0; i < FJTHRPUT_ACTORS && rc == 0; i++) {
        struct fj_worker *w = malloc(sizeof *w);
        if (w == NULL) {
            rc = ACTOR_ENOMEM;
            break;
        }
        *w = (struct fj_worker){m->b, FJTHRPUT_PER};
        rc = actor_spawn(m->b->sys, self, &fjt_worker_behaviour, w, NULL, &pids[i]);
        if (rc != 0)
            free(w);
    }
    for (uint32_t k = 0; k < FJTHRPUT_PER && rc == 0; k++)
        for (uint32_t i = 0; i < FJTHRPUT_ACTORS && rc == 0; i++)
            rc = send_data(m->b, pids[i], KIND_WORK, bits);
    if (rc != 0)
        bench_fail(m->b, "fjthrput: spawn or send", rc);
    return rc;
}

static int fjt_master_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_master *m = state;

    switch (msg_kind(m->b, msg)) {
    case KIND_START:
        return fjt_start(self, m);
    case KIND_EMPTY:
        return fj_master_done(self, m);
    default:
        return unexpected(m->b, "fjthrput master", msg);
    }
}

static const struct actor_behaviour fjt_master_behaviour = {"fjthrput master", state_take,
                                                            fjt_master_handle, state_free};

static int run_fj(struct bench *b, const struct actor_behaviour *master, uint32_t dones,
                  const char *name)
{
    struct fj_master *m = malloc(sizeof *m);
    struct dist_pid pid;
    int rc;

    if (m == NULL)
        return ACTOR_ENOMEM;
    *m = (struct fj_master){b, dones};
    rc = spawn_top(b, master, m, &pid);
    if (rc != 0) {
        free(m);
        return rc;
    }
    rc = send_data(b, pid, KIND_START, 0);
    return rc != 0 ? rc : bench_wait(b, name);
}

static int run_fjcreate(struct bench *b)
{
    return run_fj(b, &fjc_master_behaviour, FJCREATE_N, "fjcreate");
}

static int run_fjthrput(struct bench *b)
{
    return run_fj(b, &fjt_master_behaviour, FJTHRPUT_ACTORS, "fjthrput");
}

/* ---- skynet ------------------------------------------------------------------------------- */

struct skynet_node {
    struct bench *b;
    struct dist_pid parent; /* DIST_PID_NONE for the root */
    uint64_t num;
    uint64_t size;
    uint64_t sum;
    uint32_t left; /* answers still to come */
};

static int skynet_up(struct skynet_node *n, uint64_t sum)
{
    int rc;

    if (dist_pid_is_none(n->parent)) {
        n->b->result = sum;
        sem_post(&n->b->done);
        return 0;
    }
    rc = send_data(n->b, n->parent, KIND_SUM, sum);
    if (rc != 0)
        bench_fail(n->b, "skynet: send up", rc);
    return rc;
}

static const struct actor_behaviour skynet_behaviour;

/* A leaf answers and ends at once; an inner node spawns its ten children. */
static int skynet_init(struct actor *self, void *arg, void **state)
{
    struct skynet_node *n = arg;
    uint64_t child = n->size / 10;

    *state = n;
    if (n->size == 1) {
        actor_exit(self, ACTOR_NORMAL);
        return skynet_up(n, n->num);
    }
    for (uint32_t i = 0; i < 10; i++) {
        struct skynet_node *c = malloc(sizeof *c);
        int rc = c == NULL ? ACTOR_ENOMEM : 0;
        if (rc == 0) {
            *c = (struct skynet_node){n->b, actor_self(self), n->num + i * child, child, 0, 10};
            rc = actor_spawn(n->b->sys, self, &skynet_behaviour, c, NULL, NULL);
        }
        if (rc != 0) {
            free(c);
            bench_fail(n->b, "skynet: spawn", rc);
            return rc;
        }
    }
    return 0;
}

static int skynet_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct skynet_node *n = state;

    if (msg_kind(n->b, msg) != KIND_SUM)
        return unexpected(n->b, "skynet node", msg);
    n->sum += msg_value(msg);
    if (--n->left > 0)
        return 0;
    actor_exit(self, ACTOR_NORMAL);
    return skynet_up(n, n->sum);
}

static const struct actor_behaviour skynet_behaviour = {"skynet", skynet_init, skynet_handle,
                                                        state_free};

static int run_skynet(struct bench *b)
{
    struct skynet_node *root = malloc(sizeof *root);
    int rc;

    if (root == NULL)
        return ACTOR_ENOMEM;
    *root = (struct skynet_node){b, DIST_PID_NONE, 0, SKYNET_LEAVES, 0, 10};
    b->result = 0;
    rc = spawn_top(b, &skynet_behaviour, root, NULL);
    if (rc != 0) {
        free(root);
        return rc;
    }
    rc = bench_wait(b, "skynet");
    if (rc == 0 && b->result != SKYNET_SUM) {
        bench_fail(b, "skynet: wrong sum", 0);
        rc = -1;
    }
    return rc;
}

/* ---- idle_actor_bytes ----------------------------------------------------------------------- */

static int idle_init(struct actor *self, void *arg, void **state)
{
    struct bench *b = arg;

    atomic_fetch_add_explicit(&b->counter, 1, memory_order_relaxed);
    *state = NULL;
    return 0;
}

static const struct actor_behaviour idle_behaviour = {"idle", idle_init, NULL, NULL};

/* Spawn IDLE_N actors and wait until each has run its init. Sets *secs and *bytes. */
static int run_idle(struct bench *b, double *secs, long *bytes)
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

/* ---- The method and the report ------------------------------------------------------------ */

static const struct bench_spec bench_specs[] = {
    {"pingpong", PINGPONG_N, run_pingpong},
    {"counting", COUNTING_N, run_counting},
    {"threadring", RING_N, run_threadring},
    {"big", (uint64_t)BIG_ACTORS *BIG_PINGS, run_big},
    {"fjcreate", FJCREATE_N, run_fjcreate},
    {"fjthrput", (uint64_t)FJTHRPUT_ACTORS *FJTHRPUT_PER, run_fjthrput},
    {"skynet", SKYNET_LEAVES, run_skynet},
    {"idle_actor_bytes", IDLE_N, NULL},
};

#define BENCH_COUNT (sizeof bench_specs / sizeof bench_specs[0])

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * Savina's filter: keep the runs within +-20 % of the median, return their median. Runs in two
 * clusters far apart can leave none (the median of an even count lies between them); then the
 * plain median stands, with *kept = 0 to say so.
 */
static double savina_median(const double *runs, int n, int *kept)
{
    double sorted[BENCH_MAX_ITERS], keep[BENCH_MAX_ITERS];
    double m;

    memcpy(sorted, runs, (size_t)n * sizeof *runs);
    m = median(sorted, n);
    *kept = 0;
    for (int i = 0; i < n; i++)
        if (runs[i] >= 0.8 * m && runs[i] <= 1.2 * m)
            keep[(*kept)++] = runs[i];
    return *kept > 0 ? median(keep, *kept) : m;
}

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
    if (run_idle(b, &secs, &bytes) != 0) {
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

static int parse_long(const char *s, long lo, long hi, long *out)
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
