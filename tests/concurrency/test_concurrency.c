/*
 * test_concurrency.c: the actor runtime under concurrent load, in a plain program so it also
 * runs under ThreadSanitizer (Criterion's runner does not start under TSan). Each check
 * prints "ok <what>" or "FAIL <what>: <why>"; the exit status is the number of failures.
 * Every wait is bounded.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"

#define SENDERS      4
#define PER_SENDER   50000
#define STORM_THREAD 2
#define STORM_EACH   10000
#define CHAIN        5000
#define WATCHERS     1000
#define CALLERS      2
#define CALLS_EACH   2000
#define WAIT_MS      60000

static int failures;

static void check(int ok, const char *what, const char *why)
{
    if (ok) {
        printf("ok   %s\n", what);
    } else {
        printf("FAIL %s: %s\n", what, why);
        failures++;
    }
    fflush(stdout);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static uint64_t alive(struct actor_system *sys)
{
    struct actor_stats st;

    actor_system_stats(sys, &st);
    return st.alive;
}

/* Poll until at most @n actors are alive. */
static int wait_alive_at_most(struct actor_system *sys, uint64_t n)
{
    for (long i = 0; i < WAIT_MS && alive(sys) > n; i++)
        sleep_ms(1);
    return alive(sys) <= n;
}

/* ---- Per-sender order across schedulers ------------------------------------------------------ */

struct sink {
    size_t next[SENDERS];
    struct dist_pid senders[SENDERS];
    size_t nsenders;
    int out_of_order;
    size_t total;
};

static int sink_init(struct actor *self, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct sink));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static size_t sender_index(struct sink *s, struct dist_pid from)
{
    for (size_t i = 0; i < s->nsenders; i++) {
        if (dist_pid_eq(s->senders[i], from))
            return i;
    }
    if (s->nsenders == SENDERS)
        return SENDERS; /* an unexpected sender: counted as out of order */
    s->senders[s->nsenders] = from;
    return s->nsenders++;
}

static int sink_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct sink *s = state;

    if (msg->kind == ACTOR_MSG_CALL) {
        size_t *answer = malloc(2 * sizeof(size_t));
        if (answer == NULL)
            return ACTOR_ENOMEM;
        answer[0] = s->total;
        answer[1] = (size_t)s->out_of_order;
        return actor_reply(self, msg, actor_type_raw(), answer, 2 * sizeof(size_t));
    }
    if (msg->kind == ACTOR_MSG_USER) {
        size_t i = sender_index(s, msg->from), seq = msg->size;
        if (msg->flags & ACTOR_MSG_INLINE) /* sent by copy: the number is the payload */
            memcpy(&seq, msg->payload, sizeof(seq));
        if (i >= SENDERS || seq != s->next[i])
            s->out_of_order = 1;
        else
            s->next[i]++;
        s->total++;
    }
    return 0;
}

static void free_state(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour sink_b = {"sink", sink_init, sink_handle, free_state};

struct source_arg {
    struct dist_pid to;
    int copy; /* send by copy (the number in the payload), else numbered in the size field */
};

/*
 * A sender sends PER_SENDER numbered messages, then ends. Sent by copy, the envelopes it
 * makes on one scheduler are freed on the other and travel back.
 */
static int source_init(struct actor *self, void *arg, void **state)
{
    const struct source_arg *a = arg;
    struct actor_system *sys = actor_system_of(self);

    for (size_t n = 0; n < PER_SENDER; n++) {
        int rc = a->copy ? actor_send_copy(sys, a->to, &n, sizeof(n))
                         : actor_send(sys, a->to, actor_type_raw(), NULL, n);
        if (rc != 0)
            return ACTOR_ENOPROC;
    }
    actor_exit(self, ACTOR_NORMAL);
    return 0;
}

static const struct actor_behaviour source_b = {"source", source_init, NULL, NULL};

static int ask_sink(struct actor_system *sys, struct dist_pid sink, size_t *total, size_t *bad)
{
    struct actor_msg *reply = NULL;
    int rc = actor_call_wait(sys, sink, actor_type_raw(), NULL, 0, 10.0, &reply);

    if (rc == 0) {
        *total = ((size_t *)reply->payload)[0];
        *bad = ((size_t *)reply->payload)[1];
        actor_msg_free(reply);
    }
    return rc;
}

static void check_order(struct actor_system *sys, int copy)
{
    struct actor_spawn_opts on0 = {.scheduler = 0}, on1 = {.scheduler = 1};
    struct source_arg arg = {.copy = copy};
    size_t total = 0, bad = 1;
    char why[128];

    actor_spawn(sys, NULL, &sink_b, NULL, &on1, &arg.to);
    for (int i = 0; i < SENDERS; i++)
        actor_spawn(sys, NULL, &source_b, &arg, i % 2 ? &on1 : &on0, NULL);
    for (long i = 0; i < WAIT_MS; i++) {
        if (ask_sink(sys, arg.to, &total, &bad) != 0 || total >= (size_t)SENDERS * PER_SENDER)
            break;
        sleep_ms(1);
    }
    snprintf(why, sizeof(why), "%zu of %d messages, out of order: %zu", total, SENDERS * PER_SENDER,
             bad);
    check(total == (size_t)SENDERS * PER_SENDER && bad == 0,
          copy ? "per-sender order across schedulers, sent by copy"
               : "per-sender order across schedulers",
          why);
    actor_kill(sys, arg.to);
}

/* ---- Spawn/exit storms from several threads ------------------------------------------------ */

static int quick_init(struct actor *self, void *arg, void **state)
{
    actor_exit(self, ACTOR_NORMAL);
    return 0;
}

static const struct actor_behaviour quick_b = {"quick", quick_init, NULL, NULL};

static void *storm(void *arg)
{
    struct actor_system *sys = arg;
    long failed = 0;

    for (int i = 0; i < STORM_EACH; i++)
        failed += actor_spawn(sys, NULL, &quick_b, NULL, NULL, NULL) != 0;
    return (void *)failed;
}

static void check_storm(struct actor_system *sys)
{
    pthread_t t[STORM_THREAD];
    long failed = 0;
    uint64_t before = alive(sys);

    for (int i = 0; i < STORM_THREAD; i++)
        pthread_create(&t[i], NULL, storm, sys);
    for (int i = 0; i < STORM_THREAD; i++) {
        void *r;
        pthread_join(t[i], &r);
        failed += (long)r;
    }
    check(failed == 0 && wait_alive_at_most(sys, before), "spawn/exit storm from two threads",
          "spawns failed or actors outlived their init");
}

/* ---- A linked chain dies as a whole ------------------------------------------------------- */

static _Atomic int linked;

static int link_init(struct actor *self, void *arg, void **state)
{
    struct dist_pid prev = *(struct dist_pid *)arg;
    int rc = dist_pid_is_none(prev) ? 0 : actor_link(self, prev);

    atomic_fetch_add(&linked, 1);
    return rc;
}

static const struct actor_behaviour link_b = {"chain", link_init, NULL, NULL};

static void check_chain(struct actor_system *sys)
{
    struct dist_pid *pids = calloc(CHAIN + 1, sizeof(*pids));
    uint64_t before = alive(sys);

    if (pids == NULL)
        return;
    for (int i = 1; i <= CHAIN; i++) {
        struct actor_spawn_opts o = {.scheduler = i % 2};
        actor_spawn(sys, NULL, &link_b, &pids[i - 1], &o, &pids[i]);
    }
    /* Every init has run, so every link is asked for; a link signal still in flight when
     * the crash spreads makes its target exit with noproc, which ends it all the same. */
    for (long i = 0; i < WAIT_MS && atomic_load(&linked) < CHAIN; i++)
        sleep_ms(1);
    actor_exit_signal(sys, pids[CHAIN / 2], 7);
    check(wait_alive_at_most(sys, before), "a linked chain across schedulers dies as a whole",
          "some of the chain outlived the crash");
    free(pids);
}

/* ---- Many watchers, one death ------------------------------------------------------------ */

static _Atomic int downs, watching;

static int watcher_init(struct actor *self, void *arg, void **state)
{
    int rc = actor_monitor(self, *(struct dist_pid *)arg, NULL);

    atomic_fetch_add(&watching, 1);
    return rc;
}

static int watcher_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_DOWN && msg->u.down.reason == ACTOR_KILLED)
        atomic_fetch_add(&downs, 1);
    return 0;
}

static const struct actor_behaviour watcher_b = {"watcher", watcher_init, watcher_handle, NULL};
static const struct actor_behaviour idle_b = {"idle", NULL, NULL, NULL};

static void check_monitors(struct actor_system *sys)
{
    struct actor_spawn_opts on0 = {.scheduler = 0};
    struct dist_pid target;

    actor_spawn(sys, NULL, &idle_b, NULL, &on0, &target);
    for (int i = 0; i < WATCHERS; i++) {
        struct actor_spawn_opts o = {.scheduler = i % 2};
        actor_spawn(sys, NULL, &watcher_b, &target, &o, NULL);
    }
    for (long i = 0; i < WAIT_MS && atomic_load(&watching) < WATCHERS; i++)
        sleep_ms(1);
    /* A monitor asked for before the kill sees the death: DOWN killed, never lost. */
    actor_kill(sys, target);
    for (long i = 0; i < WAIT_MS && atomic_load(&downs) < WATCHERS; i++)
        sleep_ms(1);
    check(atomic_load(&downs) == WATCHERS, "a thousand monitors each get one DOWN",
          "DOWN messages missing");
}

/* ---- Blocking calls from several threads ----------------------------------------------------- */

static int echo_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind != ACTOR_MSG_CALL)
        return 0;
    return actor_reply(self, msg, actor_type_raw(), NULL, msg->size + 1);
}

static const struct actor_behaviour echo_b = {"echo", NULL, echo_handle, NULL};

static void *caller(void *arg)
{
    struct dist_pid *echo = arg;
    struct actor_system *sys = *(struct actor_system **)(echo + 1);
    long bad = 0;

    for (size_t i = 0; i < CALLS_EACH; i++) {
        struct actor_msg *reply = NULL;
        if (actor_call_wait(sys, *echo, actor_type_raw(), NULL, i, 10.0, &reply) != 0 ||
            reply->size != i + 1)
            bad++;
        actor_msg_free(reply);
    }
    return (void *)bad;
}

static void check_calls(struct actor_system *sys)
{
    struct {
        struct dist_pid echo;
        struct actor_system *sys;
    } target = {DIST_PID_NONE, sys};
    pthread_t t[CALLERS];
    long bad = 0;

    actor_spawn(sys, NULL, &echo_b, NULL, NULL, &target.echo);
    for (int i = 0; i < CALLERS; i++)
        pthread_create(&t[i], NULL, caller, &target);
    for (int i = 0; i < CALLERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    check(bad == 0, "blocking calls from two threads", "wrong or failed replies");
    actor_kill(sys, target.echo);
}

/* ---- Bounded mailboxes under concurrent senders --------------------------------------------- */

#define BOUND_THREADS     4
#define BOUND_MAX         4096
#define BOUND_OUTSTANDING 256
#define BOUND_MS          1500

struct bound {
    struct actor_system *sys;
    struct dist_pid sink;
    _Atomic uint64_t sent, handled, busy, failed;
    _Atomic int stop;
};

static int bound_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct bound *b = state;

    atomic_fetch_add_explicit(&b->handled, 1, memory_order_relaxed);
    return 0;
}

static int bound_init(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

static const struct actor_behaviour bound_b = {"bounded", bound_init, bound_handle, NULL};

/* Keep at most BOUND_OUTSTANDING messages in flight: the mailbox never nears its bound. */
static void *bound_sender(void *arg)
{
    struct bound *b = arg;
    int x = 1;

    while (!atomic_load(&b->stop)) {
        if (atomic_load(&b->sent) - atomic_load(&b->handled) > BOUND_OUTSTANDING) {
            sched_yield();
            continue;
        }
        int rc = actor_send_copy(b->sys, b->sink, &x, sizeof(x));
        atomic_fetch_add(rc == 0 ? &b->sent : rc == ACTOR_EBUSY ? &b->busy : &b->failed, 1);
    }
    return NULL;
}

/*
 * A sender on another thread reads the depth as pushed - popped while the owner pops: a send
 * must never be refused as busy when the mailbox is nowhere near its bound.
 */
static void check_bounded(struct actor_system *sys)
{
    static struct bound b;
    struct actor_spawn_opts so = {.scheduler = -1, .mailbox_max = BOUND_MAX};
    pthread_t t[BOUND_THREADS];
    char why[128];

    b.sys = sys;
    if (actor_spawn(sys, NULL, &bound_b, &b, &so, &b.sink) != 0) {
        check(0, "a bounded mailbox is never busy far below its bound", "spawn failed");
        return;
    }
    for (int i = 0; i < BOUND_THREADS; i++)
        pthread_create(&t[i], NULL, bound_sender, &b);
    sleep_ms(BOUND_MS);
    atomic_store(&b.stop, 1);
    for (int i = 0; i < BOUND_THREADS; i++)
        pthread_join(t[i], NULL);
    snprintf(why, sizeof(why), "%llu busy and %llu failed of %llu sends",
             (unsigned long long)b.busy, (unsigned long long)b.failed, (unsigned long long)b.sent);
    check(b.busy == 0 && b.failed == 0 && b.sent > 0,
          "a bounded mailbox is never busy far below its bound", why);
    actor_kill(sys, b.sink);
}

int main(void)
{
    struct actor_system_opts opts = {.schedulers = 2};
    struct actor_system *sys;
    int rc;

    if (actor_system_new(&opts, &sys) != 0 || actor_system_start(sys) != 0) {
        printf("FAIL cannot start an actor system\n");
        return 1;
    }
    check_order(sys, 0);
    check_order(sys, 1);
    check_storm(sys);
    check_chain(sys);
    check_monitors(sys);
    check_calls(sys);
    check_bounded(sys);
    rc = actor_system_shutdown(sys, 5.0);
    check(rc == 0 && alive(sys) == 0, "shutdown ends every actor", actor_strerror(rc));
    actor_system_free(sys);
    return failures;
}
