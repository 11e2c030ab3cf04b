/*
 * system.c: the actor system, its scheduler threads, and the lock-free queues they use.
 *
 * A scheduler thread loops: move actors made ready by other threads (inbox) onto its local
 * FIFO, run each ready actor for a batch of messages, and poll its libev loop now and then for
 * timers. With nothing to run it spins briefly, then sleeps in ev_run() until another thread
 * wakes it with ev_async -- which a sender does only when the scheduler says it is asleep, so
 * busy schedulers exchange work without system calls.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

_Thread_local struct scheduler *actor__tls_sched;
_Thread_local struct actor *actor__tls_actor;

#define SPIN_ROUNDS 2000 /* empty polls before a scheduler sleeps */

/* ---- MPSC queue ------------------------------------------------------------------------------ */

void actor__mpsc_init(struct mpsc *q)
{
    atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
    q->head = &q->stub;
    atomic_store_explicit(&q->tail, &q->stub, memory_order_relaxed);
}

void actor__mpsc_push(struct mpsc *q, struct mpsc_node *n)
{
    struct mpsc_node *prev;

    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    prev = atomic_exchange_explicit(&q->tail, n, memory_order_seq_cst);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

struct mpsc_node *actor__mpsc_pop(struct mpsc *q)
{
    struct mpsc_node *head = q->head;
    struct mpsc_node *next = atomic_load_explicit(&head->next, memory_order_acquire);

    if (head == &q->stub) {
        if (next == NULL)
            return NULL;
        q->head = next;
        head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next != NULL) {
        q->head = next;
        return head;
    }
    if (head != atomic_load_explicit(&q->tail, memory_order_acquire))
        return NULL; /* a push is between its two steps */
    actor__mpsc_push(q, &q->stub);
    next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (next != NULL) {
        q->head = next;
        return head;
    }
    return NULL;
}

int actor__mpsc_maybe_nonempty(struct mpsc *q)
{
    struct mpsc_node *head = q->head;

    if (atomic_load_explicit(&head->next, memory_order_seq_cst) != NULL)
        return 1;
    return head != &q->stub || atomic_load_explicit(&q->tail, memory_order_seq_cst) != head;
}

/* ---- Logging ------------------------------------------------------------------------------- */

void actor__log(struct actor_system *sys, int level, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (sys->opts.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sys->opts.log(level, msg, sys->opts.log_data);
}

/* ---- Scheduling ---------------------------------------------------------------------------- */

static void ready_push(struct scheduler *s, struct actor *a)
{
    a->rq.next = NULL;
    if (s->ready_tail != NULL)
        atomic_store_explicit(&s->ready_tail->next, &a->rq, memory_order_relaxed);
    else
        s->ready_head = &a->rq;
    s->ready_tail = &a->rq;
}

static struct actor *ready_pop(struct scheduler *s)
{
    struct mpsc_node *n = s->ready_head;

    if (n == NULL)
        return NULL;
    s->ready_head = atomic_load_explicit(&n->next, memory_order_relaxed);
    if (s->ready_head == NULL)
        s->ready_tail = NULL;
    return (struct actor *)((char *)n - offsetof(struct actor, rq));
}

/*
 * Put an actor whose state just went IDLE -> QUEUED on its home scheduler: the local FIFO when
 * we are that scheduler (no atomics beyond the caller's CAS), else its inbox, waking it only
 * if it sleeps.
 */
void actor__schedule(struct actor *a)
{
    struct scheduler *home = a->home;

    if (home == NULL) { /* a proxy: a thread waits in actor_call_wait() */
        actor__proxy_wake(a);
        return;
    }
    if (actor__tls_sched == home) {
        ready_push(home, a);
        return;
    }
    actor__mpsc_push(&home->inbox, &a->rq);
    /*
     * The push (a seq_cst exchange) and this seq_cst load pair with idle()'s store and
     * re-check: either we see the scheduler asleep, or it sees our push.
     */
    if (atomic_load(&home->sleeping))
        ev_async_send(home->loop, &home->wake);
}

static void drain_inbox(struct scheduler *s)
{
    struct mpsc_node *n;

    while ((n = actor__mpsc_pop(&s->inbox)) != NULL)
        ready_push(s, (struct actor *)((char *)n - offsetof(struct actor, rq)));
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
}

/* Spin, then sleep until woken or a timer is due. */
static void idle(struct scheduler *s)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        if (actor__mpsc_maybe_nonempty(&s->inbox) || atomic_load(&s->sys->stopping))
            return;
        __builtin_ia32_pause();
    }
    atomic_store(&s->sleeping, 1);
    if (!actor__mpsc_maybe_nonempty(&s->inbox) && !atomic_load(&s->sys->stopping))
        ev_run(s->loop, EVRUN_ONCE);
    atomic_store(&s->sleeping, 0);
}

static void *scheduler_main(void *arg)
{
    struct scheduler *s = arg;
    struct actor_system *sys = s->sys;

    actor__tls_sched = s;
    while (!atomic_load_explicit(&sys->stopping, memory_order_relaxed)) {
        struct actor *a;

        drain_inbox(s);
        a = ready_pop(s);
        if (a == NULL) {
            ev_run(s->loop, EVRUN_NOWAIT);
            if (s->ready_head == NULL)
                idle(s);
            continue;
        }
        actor__run(s, a);
        if (++s->dispatches % EV_POLL_EVERY == 0)
            ev_run(s->loop, EVRUN_NOWAIT);
    }
    actor__tls_sched = NULL;
    return NULL;
}

/* ---- The system ---------------------------------------------------------------------------- */

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (unsigned)n : 1;
}

int actor_system_new(const struct actor_system_opts *opts, struct actor_system **out)
{
    struct actor_system *sys = calloc(1, sizeof(*sys));

    if (sys == NULL)
        return ACTOR_ENOMEM;
    if (opts != NULL)
        sys->opts = *opts;
    sys->nsched = sys->opts.schedulers ? sys->opts.schedulers : cpu_count();
    if (sys->nsched > MAX_SCHEDULERS)
        sys->nsched = MAX_SCHEDULERS;
    if (sys->opts.creation == 0)
        sys->opts.creation = 1;
    sys->scheds = calloc(sys->nsched, sizeof(*sys->scheds));
    if (sys->scheds == NULL) {
        free(sys);
        return ACTOR_ENOMEM;
    }
    pthread_mutex_init(&sys->table_lock, NULL);
    pthread_mutex_init(&sys->names_lock, NULL);
    atomic_store(&sys->next_ref, 1);
    for (unsigned i = 0; i < sys->nsched; i++) {
        struct scheduler *s = &sys->scheds[i];
        s->sys = sys;
        s->index = i;
        actor__mpsc_init(&s->inbox);
        s->loop = ev_loop_new(EVFLAG_AUTO);
        if (s->loop == NULL) {
            actor_system_free(sys);
            return ACTOR_ENOMEM;
        }
        ev_async_init(&s->wake, wake_cb);
        ev_async_start(s->loop, &s->wake);
    }
    *out = sys;
    return 0;
}

int actor_system_start(struct actor_system *sys)
{
    unsigned i;
    int rc = 0;

    if (sys == NULL || atomic_load(&sys->running))
        return ACTOR_EINVAL;
    atomic_store(&sys->stopping, 0);
    for (i = 0; i < sys->nsched; i++) {
        rc = pthread_create(&sys->scheds[i].thread, NULL, scheduler_main, &sys->scheds[i]);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        atomic_store(&sys->stopping, 1);
        while (i-- > 0) {
            ev_async_send(sys->scheds[i].loop, &sys->scheds[i].wake);
            pthread_join(sys->scheds[i].thread, NULL);
        }
        return -rc;
    }
    atomic_store(&sys->running, 1);
    return 0;
}

/*
 * Signal live actors with @reason -- only those spawned from outside any actor when
 * @roots_only -- and return how many there were.
 */
static size_t signal_live(struct actor_system *sys, int reason, int roots_only)
{
    uint32_t n = atomic_load(&sys->nchunks);
    size_t count = 0;

    for (uint32_t c = 0; c < n; c++) {
        struct actor *chunk = atomic_load(&sys->chunks[c]);
        for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
            struct actor *a = &chunk[i];
            uint64_t gate = atomic_load(&a->gate);
            if ((gate & GATE_CLOSED) || a->home == NULL || (roots_only && !a->root))
                continue;
            if (reason == 0 || actor_exit_signal(sys, actor__pid(sys, a), reason) == 0)
                count++;
        }
    }
    return count;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Wait up to @ms for the (root) actors to end. Returns 1 if they did. */
static int wait_dead(struct actor_system *sys, long ms, int roots_only)
{
    for (long i = 0; i < ms; i++) {
        if (signal_live(sys, 0, roots_only) == 0)
            return 1;
        sleep_ms(1);
    }
    return signal_live(sys, 0, roots_only) == 0;
}

/*
 * Stop top-down: first the actors spawned from outside (supervision trees stop their
 * children in order), then whatever is left, then kill what outlives the timeout.
 */
int actor_system_shutdown(struct actor_system *sys, double timeout)
{
    long budget = (long)(timeout * 1000.0);
    int rc = 0;

    if (sys == NULL || !atomic_load(&sys->running) || actor__tls_sched != NULL)
        return ACTOR_EINVAL;
    signal_live(sys, ACTOR_SHUTDOWN, 1);
    wait_dead(sys, budget, 1);
    signal_live(sys, ACTOR_SHUTDOWN, 0);
    if (!wait_dead(sys, budget, 0)) {
        actor__log(sys, 1, "shutdown: killing actors still alive after %.3f s", timeout);
        rc = ACTOR_ETIMEDOUT;
        signal_live(sys, ACTOR_KILL, 0);
        wait_dead(sys, 10000, 0);
    }
    atomic_store(&sys->stopping, 1);
    for (unsigned i = 0; i < sys->nsched; i++)
        ev_async_send(sys->scheds[i].loop, &sys->scheds[i].wake);
    for (unsigned i = 0; i < sys->nsched; i++)
        pthread_join(sys->scheds[i].thread, NULL);
    atomic_store(&sys->running, 0);
    return rc;
}

void actor_system_free(struct actor_system *sys)
{
    if (sys == NULL)
        return;
    if (atomic_load(&sys->running))
        actor_system_shutdown(sys, 5.0);
    for (unsigned i = 0; i < sys->nsched; i++) {
        struct scheduler *s = &sys->scheds[i];
        if (s->loop != NULL) {
            ev_async_stop(s->loop, &s->wake);
            ev_loop_destroy(s->loop);
        }
        while (s->env_cache != NULL) {
            struct envelope *env = s->env_cache;
            s->env_cache = env->payload;
            free(env);
        }
    }
    for (uint32_t c = 0; c < atomic_load(&sys->nchunks); c++) {
        struct actor *chunk = atomic_load(&sys->chunks[c]);
        for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
            struct mpsc_node *n;
            while ((n = actor__mpsc_pop(&chunk[i].mailbox)) != NULL)
                actor__env_free((struct envelope *)n);
        }
        free(chunk);
    }
    actor__names_free(sys);
    pthread_mutex_destroy(&sys->table_lock);
    pthread_mutex_destroy(&sys->names_lock);
    free(sys->scheds);
    free(sys);
}

/* ---- Introspection ------------------------------------------------------------------------- */

void actor_system_stats(struct actor_system *sys, struct actor_stats *out)
{
    uint64_t spawned = atomic_load(&sys->outside_spawned);
    uint64_t exited = atomic_load(&sys->outside_exited);
    uint64_t delivered = 0;

    for (unsigned i = 0; i < sys->nsched; i++) {
        spawned += atomic_load_explicit(&sys->scheds[i].spawned, memory_order_relaxed);
        exited += atomic_load_explicit(&sys->scheds[i].exited, memory_order_relaxed);
        delivered += atomic_load_explicit(&sys->scheds[i].delivered, memory_order_relaxed);
    }
    out->spawned = spawned;
    out->exited = exited;
    out->alive = spawned > exited ? spawned - exited : 0;
    out->delivered = delivered;
    out->restarts = atomic_load(&sys->restarts);
}

void actor__stats_restart(struct actor_system *sys)
{
    atomic_fetch_add(&sys->restarts, 1);
}

void actor_system_list(struct actor_system *sys, actor_info_cb cb, void *user_data)
{
    uint32_t n = atomic_load(&sys->nchunks);

    /* The names lock keeps registered names alive while they are shown. */
    pthread_mutex_lock(&sys->names_lock);
    for (uint32_t c = 0; c < n; c++) {
        struct actor *chunk = atomic_load(&sys->chunks[c]);
        for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
            struct actor *a = &chunk[i];
            uint64_t gate = atomic_load(&a->gate);
            struct actor_info info;
            if ((gate & GATE_CLOSED) || a->behaviour == NULL)
                continue;
            info.pid = actor__pid(sys, a);
            info.name = a->name;
            info.behaviour = a->behaviour->name;
            info.mailbox_depth = ACTOR_DEPTH(a);
            info.handled = atomic_load_explicit(&a->handled, memory_order_relaxed);
            info.state = atomic_load_explicit(&a->running, memory_order_relaxed) ? ACTOR_RUNNING
                         : atomic_load(&a->sched) == RUN_QUEUED                  ? ACTOR_READY
                                                                                 : ACTOR_IDLE;
            cb(&info, user_data);
        }
    }
    pthread_mutex_unlock(&sys->names_lock);
}
