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
#include <sched.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

_Thread_local struct scheduler *actor__tls_sched ACTOR_TLS;
_Thread_local struct actor *actor__tls_actor ACTOR_TLS;

/*
 * An idle scheduler spins this long before it sleeps: waking a sleeping thread costs tens of
 * microseconds on a VM, far more than the spin, and a busy peer usually has work for it soon.
 */
#define SPIN_NS 200000L
/*
 * Work moves only from a scheduler busy this long without a break, and at most this often:
 * moving splits actors that talk to each other, and a message between schedulers costs far
 * more than one within a scheduler, so only a lasting backlog is worth it.
 */
#define SHARE_AFTER_NS 20000000L
/* While spinning, the loop is polled for due timers this often. */
#define POLL_NS      50000L
#define TRIM_AFTER_S 1.0 /* idle seconds before cached envelopes go back to malloc */

/* ---- MPSC queue ------------------------------------------------------------------------------ */

void actor__mpsc_init(struct mpsc *q)
{
    atomic_store_explicit(&q->sentinel.next, NULL, memory_order_relaxed);
    q->head = &q->sentinel;
    atomic_store_explicit(&q->tail, &q->sentinel, memory_order_relaxed);
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

    if (head == &q->sentinel) {
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
    actor__mpsc_push(q, &q->sentinel);
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
    return head != &q->sentinel || atomic_load_explicit(&q->tail, memory_order_seq_cst) != head;
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
    s->ready_len++;
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
    s->ready_len--;
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

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/*
 * A burst can leave hundreds of thousands of envelopes cached. They are given back to malloc
 * once the scheduler has been idle for TRIM_AFTER_S, not at every pause, so that bursts a
 * moment apart reuse them (as allocators decay their dirty pages).
 */
static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct scheduler *s = (struct scheduler *)((char *)w - offsetof(struct scheduler, trim_timer));

    if (s->ready_head == NULL && s->idle_since != 0 &&
        now_ns() - s->idle_since >= (int64_t)(TRIM_AFTER_S * 1e9)) {
        actor__env_trim(s);
        ev_timer_stop(loop, w);
    }
}

/* Spin, then sleep until woken or a timer is due. */
static void idle(struct scheduler *s)
{
    struct actor_remote *r = s->sys->remote;
    int64_t until = now_ns() + SPIN_NS;

    s->idle_since = until - SPIN_NS;
    atomic_store_explicit(&s->idle, 1, memory_order_relaxed);
    actor__env_flush(s);
    for (unsigned i = 0;; i++) {
        if (actor__mpsc_maybe_nonempty(&s->inbox) || atomic_load(&s->sys->stopping))
            goto out;
        if (r != NULL && actor__remote_guest_poll(r, s, now_ns())) {
            if (s->ready_head != NULL || actor__mpsc_maybe_nonempty(&s->inbox))
                goto out;
        } else {
            __builtin_ia32_pause();
        }
        if ((i & 63) != 63)
            continue;
        /*
         * Give the core away now and then: with more threads than cores (two nodes on one
         * host, each with its I/O thread), a spinning scheduler must not starve the thread
         * that would bring it work.
         */
        if ((i & 255) == 255)
            sched_yield();
        int64_t now = now_ns();
        if (now >= until)
            break;
        /* Timers due while spinning: polled now and then, not on every empty queue. */
        if (now >= s->next_poll) {
            s->next_poll = now + POLL_NS;
            ev_run(s->loop, EVRUN_NOWAIT);
            if (s->ready_head != NULL)
                goto out;
        }
    }
    if (!ev_is_active(&s->trim_timer))
        ev_timer_start(s->loop, &s->trim_timer);
    if (r != NULL)
        actor__remote_guest_leave(r, s);
    atomic_store(&s->sleeping, 1);
    if (!actor__mpsc_maybe_nonempty(&s->inbox) && !atomic_load(&s->sys->stopping))
        ev_run(s->loop, EVRUN_ONCE);
    atomic_store(&s->sleeping, 0);
out:
    s->idle_since = 0;
    atomic_store_explicit(&s->idle, 0, memory_order_relaxed);
}

/* An idle scheduler other than @s, or NULL. */
static struct scheduler *idle_peer(struct scheduler *s)
{
    struct actor_system *sys = s->sys;

    for (unsigned i = 1; i < sys->nsched; i++) {
        struct scheduler *p = &sys->scheds[(s->index + i) % sys->nsched];
        if (atomic_load_explicit(&p->idle, memory_order_relaxed))
            return p;
    }
    return NULL;
}

/*
 * Hand up to @give of the actors queued here to @peer. An actor moves only from its home's
 * own thread and only while queued, not running, so senders' same-scheduler fast path stays
 * sound. Actors with timers or calls in flight stay, since those live on this loop.
 */
static void give_to(struct scheduler *s, struct scheduler *peer, unsigned give)
{
    for (unsigned i = 0, n = s->ready_len; i < n && give > 0; i++) {
        struct actor *a = ready_pop(s);
        if (a->ext != NULL && (a->ext->timers != NULL || a->ext->calls != NULL)) {
            ready_push(s, a);
            continue;
        }
        /* Release: the new home's local sends then see this thread's last popped. */
        atomic_store_explicit(&a->home, peer, memory_order_release);
        actor__schedule(a);
        give--;
    }
}

/* Work sharing: with actors waiting here for a while and a peer idle, hand it half of them. */
static void share(struct scheduler *s)
{
    struct scheduler *peer;

    if (s->ready_len < 2 || (s->dispatches & 63) != 0)
        return;
    if (s->busy_since == 0 || now_ns() - s->busy_since < SHARE_AFTER_NS)
        return;
    peer = idle_peer(s);
    if (peer == NULL)
        return;
    s->busy_since = now_ns(); /* the next hand-over waits its turn */
    give_to(s, peer, s->ready_len / 2);
}

/*
 * A handler that sends HOG_SENDS messages in one run (a fan-out loop) holds its scheduler
 * for as long as it likes, and every actor queued behind it waits, those it feeds included.
 * When several wait, an idle peer takes them all, and they run while the loop goes on. A
 * lone one stays: one consumer drains a batch faster from this core's cache than through a
 * stream of cross-core transfers (measured: 6x slower for a counter fed in a loop).
 */
void actor__share_hog(struct scheduler *s)
{
    struct scheduler *peer = s->ready_len >= 2 ? idle_peer(s) : NULL;

    if (peer != NULL)
        give_to(s, peer, s->ready_len);
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
            s->busy_since = 0;
            idle(s);
            continue;
        }
        if (s->busy_since == 0)
            s->busy_since = now_ns();
        actor__run(s, a);
        share(s);
        if (++s->dispatches % EV_POLL_EVERY == 0)
            ev_run(s->loop, EVRUN_NOWAIT);
    }
    actor__env_flush(s);
    if (s->sys->remote != NULL)
        actor__remote_guest_leave(s->sys->remote, s);
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
    sys->scheds = aligned_alloc(_Alignof(struct scheduler), sys->nsched * sizeof(*sys->scheds));
    if (sys->scheds != NULL)
        memset(sys->scheds, 0, sys->nsched * sizeof(*sys->scheds));
    if (sys->scheds == NULL) {
        free(sys);
        return ACTOR_ENOMEM;
    }
    pthread_mutex_init(&sys->table_lock, NULL);
    pthread_mutex_init(&sys->names_lock, NULL);
    pthread_mutex_init(&sys->spawn_lock, NULL);
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
        ev_timer_init(&s->trim_timer, trim_cb, TRIM_AFTER_S, TRIM_AFTER_S);
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
    int64_t deadline = now_ns() + (int64_t)(timeout * 1e9);
    int rc = 0;

    if (sys == NULL || !atomic_load(&sys->running) || actor__tls_sched != NULL)
        return ACTOR_EINVAL;
    /* One budget for both rounds: the roots first, then whatever is left. */
    signal_live(sys, ACTOR_SHUTDOWN, 1);
    wait_dead(sys, (deadline - now_ns()) / 1000000, 1);
    signal_live(sys, ACTOR_SHUTDOWN, 0);
    if (!wait_dead(sys, (deadline - now_ns()) / 1000000, 0)) {
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
    /* Last: the exits of the actors that just ended still reach their remote links. */
    actor_dist_stop(sys);
    atomic_store(&sys->running, 0);
    return rc;
}

void actor_system_free(struct actor_system *sys)
{
    if (sys == NULL)
        return;
    if (atomic_load(&sys->running))
        actor_system_shutdown(sys, 5.0);
    /* Before the mailboxes are emptied: the I/O thread delivers into them until it stops. */
    actor__remote_free(sys);
    for (unsigned i = 0; i < sys->nsched; i++) {
        struct scheduler *s = &sys->scheds[i];
        if (s->loop != NULL) {
            ev_async_stop(s->loop, &s->wake);
            ev_timer_stop(s->loop, &s->trim_timer);
            ev_loop_destroy(s->loop);
        }
    }
    /* Envelopes left in mailboxes go back to their schedulers first, then all are freed. */
    for (uint32_t c = 0; c < atomic_load(&sys->nchunks); c++) {
        struct actor *chunk = atomic_load(&sys->chunks[c]);
        for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
            struct mpsc_node *n;
            while ((n = actor__mpsc_pop(&chunk[i].mailbox)) != NULL)
                actor__env_free((struct envelope *)n);
        }
        free(chunk);
    }
    for (unsigned i = 0; i < sys->nsched; i++)
        actor__env_release_all(&sys->scheds[i]);
    actor__names_free(sys);
    pthread_mutex_destroy(&sys->spawn_lock);
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
