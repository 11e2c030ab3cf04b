/*
 * remote.c: the distribution's life and its sending side. A distributed system has one more
 * thread, the I/O thread, which runs a libev loop of its own with the libdist node on it.
 *
 *   any thread: send to a remote PID --> pack the payload --> out_item --+
 *                                                                        | MPSC queue
 *   I/O thread: ev_async (one per burst) --> drain --> remote_in.c <-----+
 *                   --> bonds, dist_node_post --> the peer's connection
 *
 * An idle scheduler may run the loop in the I/O thread's place, as its guest (under io_lock):
 * it drains the queue and polls the sockets between looks at its own inbox, so a round trip
 * to an actor on another node wakes no thread on either side. The I/O thread waits meanwhile,
 * and takes the loop back when the guest goes to sleep or stops polling (busy with actors);
 * another idle scheduler takes the place of a guest busy with actors sooner.
 *
 * Packing happens on the sender's thread, so the I/O thread only copies bytes. Items from one
 * thread leave in the order they were queued, and libdist keeps one lane per sending PID, so
 * messages between a pair of actors keep their order end to end.
 *
 * PIDs of remote actors carry libdist's own node index: the I/O thread is the only one that
 * interns names, and it publishes each index's name in names[] before any PID with that index
 * reaches an actor, so any thread can print a PID's node without a lock.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define IO_SPIN_NS 100000 /* how long the I/O thread polls after traffic before it sleeps */
/* A guest that has not polled for this long is busy: the I/O thread takes the loop back. */
#define GUEST_STALE_NS 2000000
/* How often the I/O thread looks at its guest meanwhile. */
#define GUEST_WATCH_NS 1000000
/* A guest that has not polled for this long is busy: another idle scheduler takes its place. */
#define GUEST_STEAL_NS 100000

#define OUT_HIGH_WATER     (64u * 1024u * 1024u) /* queued bytes before sends get ACTOR_EBUSY */
#define DEFAULT_CONNECT_MS 5000u
#define DEFAULT_READY_MS   10000u
#define NO_NODE            "nonode@nohost"

struct spawnable {
    struct spawnable *next;
    const struct actor_behaviour *behaviour;
    const struct actor_type *arg_type;
    char name[];
};

void actor__remote_log(struct actor_remote *r, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (r->sys->opts.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->sys->opts.log(level, msg, r->sys->opts.log_data);
}

static void dist_log(int level, const char *msg, void *user_data)
{
    struct actor_remote *r = user_data;

    if (r->sys->opts.log != NULL)
        r->sys->opts.log(level, msg, r->sys->opts.log_data);
}

void actor__remote_publish(struct actor_remote *r, int index)
{
    const char *name;
    char *copy;

    if (index <= 0 || (uint32_t)index >= NODES_MAX ||
        atomic_load_explicit(&r->names[index], memory_order_relaxed) != NULL)
        return;
    name = dist_node_name_of(r->node, (uint32_t)index);
    copy = name != NULL ? strdup(name) : NULL;
    if (copy != NULL)
        atomic_store_explicit(&r->names[index], copy, memory_order_release);
}

const char *actor__node_name(struct actor_system *sys, uint32_t index)
{
    struct actor_remote *r = sys->remote;

    if (r == NULL)
        return index == 0 ? NO_NODE : NULL;
    return index < NODES_MAX ? atomic_load_explicit(&r->names[index], memory_order_acquire) : NULL;
}

const char *actor_node_name(struct actor_system *sys)
{
    return sys != NULL ? actor__node_name(sys, 0) : NO_NODE;
}

const char *actor_node_of(struct actor_system *sys, struct dist_pid pid)
{
    return sys != NULL ? actor__node_name(sys, pid.node) : NULL;
}

/* ---- The outbound queue ---------------------------------------------------------------------- */

/* The distribution if it takes sends, else NULL. */
static struct actor_remote *remote_live(struct actor_system *sys)
{
    struct actor_remote *r = sys->remote;

    return r != NULL && atomic_load_explicit(&r->running, memory_order_acquire) ? r : NULL;
}

static size_t packed_size(const struct actor_type *type, const void *payload, size_t size)
{
    if (payload == NULL)
        return 0;
    if (actor_type_descriptor(type) == NULL)
        return size;
    return protobuf_c_message_get_packed_size(payload);
}

/*
 * An item with room for @len payload bytes and copies of @name and @node (either NULL), or
 * NULL: ACTOR_EBUSY in *rc when the queue is over its high-water mark, else ACTOR_ENOMEM.
 */
static struct out_item *item_new(struct actor_remote *r, size_t len, const char *name,
                                 const char *node, int *rc)
{
    size_t nl = name != NULL ? strlen(name) + 1 : 0, dl = node != NULL ? strlen(node) + 1 : 0;
    struct out_item *it;

    *rc = ACTOR_EBUSY;
    if (len > 0 && atomic_load_explicit(&r->out_bytes, memory_order_relaxed) + len > OUT_HIGH_WATER)
        return NULL;
    *rc = ACTOR_ENOMEM;
    it = malloc(sizeof(*it) + len + nl + dl);
    if (it == NULL)
        return NULL;
    memset(it, 0, sizeof(*it));
    it->len = len;
    if (name != NULL)
        it->to_name = memcpy(it->data + len, name, nl);
    if (node != NULL)
        it->to_node = memcpy(it->data + len + nl, node, dl);
    *rc = 0;
    return it;
}

/* Pack @payload of @type (@it->len bytes) into @it. */
static void item_pack(struct out_item *it, const struct actor_type *type, const void *payload)
{
    it->type = actor_type_name(type);
    if (it->len == 0)
        return;
    if (actor_type_descriptor(type) == NULL)
        memcpy(it->data, payload, it->len);
    else
        protobuf_c_message_pack(payload, it->data);
}

/* Hand @it to the I/O thread, waking it unless a wake-up is already on its way. */
static void item_push(struct actor_remote *r, struct out_item *it)
{
    atomic_fetch_add_explicit(&r->out_bytes, it->len, memory_order_relaxed);
    actor__mpsc_push(&r->out, &it->node);
    /* A scheduler that polls the loop itself sends the item when it next idles. */
    if (actor__tls_sched != NULL &&
        atomic_load_explicit(&r->guest, memory_order_relaxed) == (int)actor__tls_sched->index + 1)
        return;
    if (!atomic_exchange(&r->wake_pending, 1))
        ev_async_send(r->loop, &r->wake);
}

/* The dist kind of an envelope bound for another node; 0 for kinds that never leave. */
static int env_dist_kind(const struct envelope *env, int *send_kind, uint32_t *flags)
{
    static const int kinds[] = {
        [ENV_USER] = DIST_MSG_SEND,           [ENV_CALL] = DIST_MSG_SEND,
        [ENV_REPLY] = DIST_MSG_SEND,          [ENV_EXIT] = DIST_MSG_EXIT,
        [ENV_LINK_EXIT] = DIST_MSG_EXIT,      [ENV_LINK] = DIST_MSG_LINK,
        [ENV_UNLINK] = DIST_MSG_UNLINK,       [ENV_MONITOR] = DIST_MSG_MONITOR,
        [ENV_DEMONITOR] = DIST_MSG_DEMONITOR, [ENV_DOWN] = DIST_MSG_DOWN,
    };

    *send_kind = env->kind == ENV_CALL    ? DIST_SEND_KIND_CALL
                 : env->kind == ENV_REPLY ? DIST_SEND_KIND_REPLY
                                          : DIST_SEND_KIND_PLAIN;
    *flags = env->kind == ENV_LINK_EXIT ? DIST_EXIT_LINK : 0;
    return env->kind < sizeof(kinds) / sizeof(kinds[0]) ? kinds[env->kind] : 0;
}

int actor__remote_deliver(struct actor_system *sys, struct dist_pid to, struct envelope *env)
{
    struct actor_remote *r = remote_live(sys);
    struct out_item *it;
    int kind, send_kind, rc;
    uint32_t flags;

    if (r == NULL)
        return ACTOR_ENOTCONN;
    kind = env_dist_kind(env, &send_kind, &flags);
    /* A signal names its sender on the wire: only an actor sends one to another node. */
    if (kind == 0 || to.node >= NODES_MAX || (kind != DIST_MSG_SEND && dist_pid_is_none(env->from)))
        return ACTOR_EINVAL;
    it = item_new(r, kind == DIST_MSG_SEND ? packed_size(env->type, env->payload, env->size) : 0,
                  NULL, NULL, &rc);
    if (it == NULL)
        return rc;
    it->kind = kind;
    it->send_kind = send_kind;
    it->flags = flags;
    it->reason = env->reason;
    it->from = env->from;
    it->to = to;
    it->ref = env->kind == ENV_USER ? 0 : env->ref; /* a plain message's ref is never set */
    if (kind == DIST_MSG_SEND)
        item_pack(it, env->type, env->payload);
    actor__env_free(env); /* the payload too: it travels packed */
    item_push(r, it);
    return 0;
}

int actor_send_at(struct actor_system *sys, const char *name, const char *node,
                  const struct actor_type *type, void *payload, size_t size)
{
    struct actor_remote *r;
    struct out_item *it;
    int rc;

    if (sys == NULL || name == NULL || type == NULL)
        return ACTOR_EINVAL;
    if (node == NULL || strcmp(node, actor_node_name(sys)) == 0)
        return actor_send_named(sys, name, type, payload, size);
    r = remote_live(sys);
    if (r == NULL)
        return ACTOR_ENOTCONN;
    it = item_new(r, packed_size(type, payload, size), name, node, &rc);
    if (it == NULL)
        return rc;
    it->kind = DIST_MSG_SEND;
    it->from = actor__current_pid(sys);
    item_pack(it, type, payload);
    actor_payload_free(type, payload);
    item_push(r, it);
    return 0;
}

int actor__remote_spawn(struct actor_system *sys, struct dist_pid from, const char *node,
                        const char *name, const struct actor_type *arg_type, void *arg, size_t size,
                        unsigned flags, uint64_t ref)
{
    struct actor_remote *r = remote_live(sys);
    struct out_item *it;
    int rc;

    if (r == NULL)
        return ACTOR_ENOTCONN;
    it = item_new(r, packed_size(arg_type, arg, size), name, node, &rc);
    if (it == NULL)
        return rc;
    it->kind = DIST_MSG_SPAWN_REQUEST;
    it->from = from;
    it->flags = flags;
    it->ref = ref;
    item_pack(it, arg_type, arg);
    actor_payload_free(arg_type, arg);
    item_push(r, it);
    return 0;
}

int actor_monitor_nodes(struct actor *self, int on)
{
    struct actor_system *sys = self->home->sys;
    struct actor_remote *r = remote_live(sys);
    struct out_item *it;
    int rc;

    if (r == NULL)
        return ACTOR_ENOTCONN;
    it = item_new(r, 0, NULL, NULL, &rc);
    if (it == NULL)
        return rc;
    it->kind = OUT_WATCH_NODES;
    it->from = actor__pid(sys, self);
    it->flags = on != 0;
    item_push(r, it);
    return 0;
}

/* ---- The I/O thread -------------------------------------------------------------------------- */

/* Take what every thread queued. A push caught between its two steps is waited out. */
void actor__remote_drain(struct actor_remote *r)
{
    for (;;) {
        struct mpsc_node *n = actor__mpsc_pop(&r->out);
        if (n == NULL) {
            if (!actor__mpsc_maybe_nonempty(&r->out))
                return;
            continue;
        }
        struct out_item *it = (struct out_item *)n;
        atomic_fetch_sub_explicit(&r->out_bytes, it->len, memory_order_relaxed);
        actor__remote_out(r, it);
        free(it);
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct actor_remote *r =
        (struct actor_remote *)((char *)w - offsetof(struct actor_remote, wake));

    /* Cleared first: a push after this point sends a new wake-up, one before it is drained. */
    atomic_store(&r->wake_pending, 0);
    actor__remote_drain(r);
    if (atomic_load(&r->stopping))
        ev_break(loop, EVBREAK_ALL);
}

static void start_done(struct actor_remote *r, int err, uint32_t creation)
{
    pthread_mutex_lock(&r->lock);
    r->ready = 1;
    r->start_err = err;
    r->creation = creation;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void on_ready(struct dist_node *node, uint32_t creation, void *user_data)
{
    start_done(user_data, 0, creation);
}

static int64_t io_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/*
 * After traffic, the I/O thread polls for IO_SPIN_NS before it sleeps: a reply usually comes
 * within tens of microseconds, and catching it awake saves a wake-up on each side (the
 * sender's eventfd write, this thread's return from epoll). While it polls, wake_pending
 * stays set, so senders skip the ev_async. It yields now and then, to share the cores with
 * the schedulers.
 */
static void io_spin(struct actor_remote *r)
{
    uint64_t seen = UINT64_MAX;
    int64_t until = 0;

    atomic_store(&r->wake_pending, 1);
    for (unsigned i = 0; !atomic_load(&r->stopping) && !atomic_load(&r->guest); i++) {
        uint64_t now_seen;
        int64_t now;
        actor__remote_drain(r);
        ev_run(r->loop, EVRUN_NOWAIT);
        now_seen = atomic_load_explicit(&r->sent, memory_order_relaxed) +
                   atomic_load_explicit(&r->received, memory_order_relaxed);
        now = io_now_ns();
        if (now_seen != seen) {
            seen = now_seen;
            until = now + IO_SPIN_NS;
        }
        if (now >= until)
            break;
        if ((i & 7) == 7)
            sched_yield();
    }
}

/* Sleep in the loop until a socket, a timer or a sender's ev_async wakes it. */
static void io_block(struct actor_remote *r)
{
    /*
     * Seq_cst both ways: a sender pushes, then exchanges wake_pending; this thread clears it,
     * then looks at the queue. Either the sender sees 0 and sends the ev_async, or this
     * thread sees the push and does not sleep.
     */
    atomic_store(&r->wake_pending, 0);
    if (actor__mpsc_maybe_nonempty(&r->out) || atomic_load(&r->stopping) || atomic_load(&r->guest))
        return;
    ev_run(r->loop, EVRUN_ONCE);
}

/*
 * While a scheduler polls the loop, wait (io_lock released) until it leaves, or until it has
 * not polled for GUEST_STALE_NS: busy with its actors, it would leave the sockets unread.
 */
static void io_stand_aside(struct actor_remote *r)
{
    int64_t at = io_now_ns() + GUEST_WATCH_NS;
    struct timespec ts = {at / 1000000000L, at % 1000000000L};
    int g;

    pthread_cond_timedwait(&r->io_cond, &r->io_lock, &ts);
    g = atomic_load(&r->guest);
    if (g != 0 && io_now_ns() - atomic_load(&r->guest_polled) > GUEST_STALE_NS)
        atomic_compare_exchange_strong(&r->guest, &g, 0);
}

int actor__remote_guest_poll(struct actor_remote *r, struct scheduler *s, int64_t now)
{
    int me = (int)s->index + 1;
    int g = atomic_load_explicit(&r->guest, memory_order_relaxed);

    if (atomic_load_explicit(&r->stopping, memory_order_relaxed))
        return 0;
    if (g != me) {
        if (g != 0 && now - atomic_load(&r->guest_polled) < GUEST_STEAL_NS)
            return 0;
        if (!atomic_load_explicit(&r->running, memory_order_relaxed) ||
            !atomic_compare_exchange_strong(&r->guest, &g, me))
            return 0;
        atomic_store(&r->guest_polled, now);
        if (g == 0)
            ev_async_send(r->loop, &r->wake); /* out of epoll, to stand aside */
    }
    if (pthread_mutex_trylock(&r->io_lock) != 0)
        return 0;
    if (atomic_load(&r->guest) == me && !atomic_load(&r->stopping)) {
        atomic_store(&r->guest_polled, now);
        actor__remote_drain(r);
        ev_run(r->loop, EVRUN_NOWAIT);
    }
    pthread_mutex_unlock(&r->io_lock);
    return 1;
}

void actor__remote_guest_leave(struct actor_remote *r, struct scheduler *s)
{
    int me = (int)s->index + 1;

    /*
     * Not under io_lock: the I/O thread may hold it in epoll once the loop is its own again.
     * A signal it misses costs at most GUEST_WATCH_NS.
     */
    if (atomic_compare_exchange_strong(&r->guest, &me, 0))
        pthread_cond_signal(&r->io_cond);
}

static void *io_main(void *arg)
{
    struct actor_remote *r = arg;
    struct dist_node_handlers h = {on_ready, actor__remote_on_message, actor__remote_on_up,
                                   actor__remote_on_down};
    int rc;

    pthread_mutex_lock(&r->io_lock);
    rc = dist_node_start(r->node, &h, r);
    if (rc != 0) {
        pthread_mutex_unlock(&r->io_lock);
        start_done(r, rc, 0);
        return NULL;
    }
    while (!atomic_load(&r->stopping)) {
        if (atomic_load(&r->guest)) {
            io_stand_aside(r);
            continue;
        }
        io_spin(r);
        io_block(r);
    }
    /* What the actors sent before the stop goes out, then the goodbyes. */
    actor__remote_drain(r);
    ev_run(r->loop, EVRUN_NOWAIT);
    dist_node_stop(r->node);
    pthread_mutex_unlock(&r->io_lock);
    return NULL;
}

/* ---- Life ------------------------------------------------------------------------------------ */

static void remote_destroy(struct actor_remote *r)
{
    struct mpsc_node *n;

    if (r == NULL)
        return;
    while ((n = actor__mpsc_pop(&r->out)) != NULL)
        free(n);
    actor__remote_peers_free(r);
    dist_node_free(r->node);
    if (r->loop != NULL) {
        ev_async_stop(r->loop, &r->wake);
        ev_loop_destroy(r->loop);
    }
    for (uint32_t i = 0; r->names != NULL && i < NODES_MAX; i++)
        free(atomic_load(&r->names[i]));
    free(r->names);
    free(r->watchers);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->io_lock);
    pthread_cond_destroy(&r->io_cond);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static void node_opts_of(const struct actor_dist_opts *o, struct actor_remote *r,
                         struct dist_node_opts *d)
{
    memset(d, 0, sizeof(*d));
    d->name = o->name;
    d->listen_host = o->listen_host;
    d->listen_port = o->listen_port;
    d->epmd_host = o->epmd_host;
    d->epmd_port = o->epmd_port;
    d->cookie = o->cookie;
    d->cookie_file = o->cookie_file;
    d->insecure = o->insecure;
    d->ca_file = o->ca_file;
    d->cert_file = o->cert_file;
    d->key_file = o->key_file;
    d->tick_ms = o->tick_ms;
    d->handshake_timeout_ms = o->handshake_timeout_ms;
    d->backoff_max_ms = o->backoff_max_ms;
    d->busy_poll_us = -1; /* the I/O thread and its guests poll by themselves */
    d->log_cb = dist_log;
    d->log_user_data = r;
}

/* The state and the node, before the thread: configuration errors show here. */
static int remote_new(struct actor_system *sys, const struct actor_dist_opts *opts,
                      struct actor_remote **out)
{
    struct actor_remote *r = calloc(1, sizeof(*r));
    struct dist_node_opts d;
    pthread_condattr_t attr;
    int rc = ACTOR_ENOMEM;

    if (r == NULL)
        return ACTOR_ENOMEM;
    r->sys = sys;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->io_lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &attr);
    pthread_cond_init(&r->io_cond, &attr);
    pthread_condattr_destroy(&attr);
    actor__mpsc_init(&r->out);
    r->connect_timeout =
        (opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS) / 1000.;
    r->names = calloc(NODES_MAX, sizeof(*r->names));
    r->loop = ev_loop_new(EVFLAG_AUTO);
    if (r->names == NULL || r->loop == NULL)
        goto fail;
    atomic_store(&r->names[0], strdup(opts->name));
    if (atomic_load(&r->names[0]) == NULL)
        goto fail;
    node_opts_of(opts, r, &d);
    rc = dist_node_new(r->loop, &d, &r->node);
    if (rc != 0)
        goto fail;
    ev_async_init(&r->wake, wake_cb);
    ev_async_start(r->loop, &r->wake);
    *out = r;
    return 0;
fail:
    remote_destroy(r);
    return rc;
}

/* Wait for the registration, up to @ms. Returns 0 or the error. */
static int wait_ready(struct actor_remote *r, uint32_t ms)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->ready && rc == 0)
        rc = pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
    rc = r->ready ? r->start_err : ACTOR_ETIMEDOUT;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void remote_join(struct actor_remote *r)
{
    if (r->joined)
        return;
    atomic_store(&r->running, 0);
    atomic_store(&r->stopping, 1);
    ev_async_send(r->loop, &r->wake);
    pthread_cond_signal(&r->io_cond);
    pthread_join(r->thread, NULL);
    r->joined = 1;
}

int actor_dist_start(struct actor_system *sys, const struct actor_dist_opts *opts)
{
    struct actor_remote *r;
    int rc;

    if (sys == NULL || opts == NULL || opts->name == NULL || sys->remote != NULL ||
        atomic_load(&sys->running) || actor__tls_sched != NULL)
        return ACTOR_EINVAL;
    rc = remote_new(sys, opts, &r);
    if (rc != 0)
        return rc;
    rc = -pthread_create(&r->thread, NULL, io_main, r);
    if (rc != 0) {
        r->joined = 1;
        remote_destroy(r);
        return rc;
    }
    rc = wait_ready(r, opts->ready_timeout_ms ? opts->ready_timeout_ms : DEFAULT_READY_MS);
    if (rc != 0) {
        remote_join(r);
        remote_destroy(r);
        return rc;
    }
    /* No actor runs yet, so no PID has the old creation. */
    sys->opts.creation = r->creation;
    sys->remote = r;
    atomic_store_explicit(&r->running, 1, memory_order_release);
    return 0;
}

void actor_dist_stop(struct actor_system *sys)
{
    if (sys != NULL && sys->remote != NULL && actor__tls_sched == NULL)
        remote_join(sys->remote);
}

void actor_dist_stats(struct actor_system *sys, struct actor_dist_stats *out)
{
    struct actor_remote *r = sys != NULL ? sys->remote : NULL;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return;
    out->sent = atomic_load(&r->sent);
    out->received = atomic_load(&r->received);
    out->unknown_type = atomic_load(&r->unknown_types);
    out->bad_payload = atomic_load(&r->bad_payloads);
    out->undeliverable = atomic_load(&r->undeliverable);
    out->dropped = atomic_load(&r->dropped);
}

/* ---- Spawnables ------------------------------------------------------------------------------ */

int actor_spawnable_register(struct actor_system *sys, const char *name,
                             const struct actor_behaviour *behaviour,
                             const struct actor_type *arg_type)
{
    struct spawnable *sp;
    size_t len;
    int rc = 0;

    if (sys == NULL || name == NULL || name[0] == '\0' || behaviour == NULL || arg_type == NULL)
        return ACTOR_EINVAL;
    len = strlen(name);
    pthread_mutex_lock(&sys->spawn_lock);
    for (sp = sys->spawnables; sp != NULL && strcmp(sp->name, name) != 0; sp = sp->next)
        ;
    if (sp != NULL) {
        rc = ACTOR_ENAMETAKEN;
    } else {
        sp = malloc(sizeof(*sp) + len + 1);
        if (sp == NULL) {
            rc = ACTOR_ENOMEM;
        } else {
            sp->behaviour = behaviour;
            sp->arg_type = arg_type;
            memcpy(sp->name, name, len + 1);
            sp->next = sys->spawnables;
            sys->spawnables = sp;
        }
    }
    pthread_mutex_unlock(&sys->spawn_lock);
    return rc;
}

int actor__spawnable_find(struct actor_system *sys, const char *name,
                          const struct actor_behaviour **behaviour,
                          const struct actor_type **arg_type)
{
    struct spawnable *sp;

    pthread_mutex_lock(&sys->spawn_lock);
    for (sp = sys->spawnables; sp != NULL && strcmp(sp->name, name) != 0; sp = sp->next)
        ;
    if (sp != NULL) {
        *behaviour = sp->behaviour;
        *arg_type = sp->arg_type;
    }
    pthread_mutex_unlock(&sys->spawn_lock);
    return sp != NULL ? 0 : ACTOR_ENOSPAWN;
}

void actor__remote_free(struct actor_system *sys)
{
    struct actor_remote *r = sys->remote;

    if (r != NULL) {
        remote_join(r);
        remote_destroy(r);
        sys->remote = NULL;
    }
    while (sys->spawnables != NULL) {
        struct spawnable *sp = sys->spawnables;
        sys->spawnables = sp->next;
        free(sp);
    }
}
