/*
 * call.c: request and reply. Inside an actor a call never blocks: it monitors the callee,
 * sends the request, arms a timeout, and keeps a continuation that runs when the reply, the
 * callee's DOWN, or the timeout arrives -- whichever is first; the others are then ignored.
 * From a plain thread, actor_call_wait() borrows a proxy slot: a PID that can receive, whose
 * "scheduling" signals a condition variable the thread waits on.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

struct pending_call {
    ev_timer timeout;
    struct pending_call *next;
    struct actor *owner;
    uint64_t ref; /* the call's reference, also its monitor's */
    struct dist_pid callee;
    actor_reply_cb cb;    /* a call's continuation, or NULL for a remote spawn */
    actor_spawn_cb scb;   /* a remote spawn's continuation */
    unsigned spawn_flags; /* ACTOR_SPAWN_LINK, ACTOR_SPAWN_MONITOR */
    void *cb_data;
};

static struct pending_call *call_take(struct actor *a, uint64_t ref);

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct pending_call *pc = (struct pending_call *)w;
    struct actor *a = pc->owner;
    struct actor_system *sys = a->home->sys;
    struct dist_pid me = actor__pid(sys, a);

    actor__signal(sys, me, ENV_CALL_TIMEOUT, me, 0, pc->ref);
}

/* Keep @pc among @self's pending calls, with its timeout armed. */
static void call_pend(struct actor *self, struct pending_call *pc, uint64_t ref, double timeout,
                      void *cb_data)
{
    pc->owner = self;
    pc->ref = ref;
    pc->cb_data = cb_data;
    ev_timer_init(&pc->timeout, timeout_cb, timeout, 0.);
    ev_timer_start(self->home->loop, &pc->timeout);
    pc->next = self->ext->calls;
    self->ext->calls = pc;
}

int actor_call(struct actor *self, struct dist_pid to, const struct actor_type *type, void *payload,
               size_t size, double timeout, actor_reply_cb cb, void *cb_data)
{
    struct actor_system *sys = self->home->sys;
    struct dist_pid me = actor__pid(sys, self);
    struct actor_ext *ext = actor__ext(self);
    struct pending_call *pc;
    uint64_t ref = actor__ref_new(sys);
    int rc;

    if (type == NULL || cb == NULL || timeout < 0.)
        return ACTOR_EINVAL;
    pc = ext != NULL ? calloc(1, sizeof(*pc)) : NULL;
    if (pc == NULL)
        return ACTOR_ENOMEM;
    rc = actor__signal(sys, to, ENV_MONITOR, me, 0, ref);
    if (rc == 0)
        rc = actor__post(sys, to, ENV_CALL, me, ref, type, payload, size, 1);
    if (rc != 0) {
        free(pc);
        return rc;
    }
    actor__mon_add(&ext->monitoring, ref, to);
    pc->callee = to;
    pc->cb = cb;
    call_pend(self, pc, ref, timeout, cb_data);
    return 0;
}

int actor_spawn_remote(struct actor *self, const char *node, const char *name,
                       const struct actor_type *arg_type, void *arg, size_t size, unsigned flags,
                       double timeout, actor_spawn_cb cb, void *cb_data, struct actor_ref *ref)
{
    struct actor_system *sys = self->home->sys;
    struct actor_ext *ext = actor__ext(self);
    struct pending_call *pc;
    uint64_t r = actor__ref_new(sys);
    int rc;

    if (node == NULL || name == NULL || arg_type == NULL || cb == NULL || timeout < 0. ||
        (flags & ~(ACTOR_SPAWN_LINK | ACTOR_SPAWN_MONITOR)) != 0)
        return ACTOR_EINVAL;
    pc = ext != NULL ? calloc(1, sizeof(*pc)) : NULL;
    if (pc == NULL)
        return ACTOR_ENOMEM;
    rc = actor__remote_spawn(sys, actor__pid(sys, self), node, name, arg_type, arg, size, flags, r);
    if (rc != 0) {
        free(pc);
        return rc;
    }
    pc->callee = DIST_PID_NONE;
    pc->scb = cb;
    pc->spawn_flags = flags;
    call_pend(self, pc, r, timeout, cb_data);
    if (ref != NULL)
        ref->id = r;
    return 0;
}

int actor__spawn_reply(struct actor *a, struct envelope *env)
{
    struct actor_system *sys = a->home->sys;
    struct pending_call *pc = call_take(a, env->ref);
    struct dist_pid child = env->reason == 0 ? env->from : DIST_PID_NONE;
    int rc;

    if (pc == NULL) {
        /* Too late: the caller heard of a timeout, so nobody would know of this actor. */
        if (!dist_pid_is_none(child))
            actor__exit_signal(sys, child, actor__pid(sys, a), ACTOR_KILL);
        return 0;
    }
    if (!dist_pid_is_none(child) && (pc->spawn_flags & ACTOR_SPAWN_LINK))
        actor__links_add(&a->ext->links, child);
    if (!dist_pid_is_none(child) && (pc->spawn_flags & ACTOR_SPAWN_MONITOR))
        actor__mon_add(&a->ext->monitoring, pc->ref, child);
    rc = pc->scb(a, a->state, env->reason, child, pc->cb_data);
    free(pc);
    return rc;
}

static struct pending_call *call_take(struct actor *a, uint64_t ref)
{
    struct pending_call **pp = a->ext != NULL ? &a->ext->calls : NULL;

    while (pp != NULL && *pp != NULL) {
        struct pending_call *pc = *pp;
        if (pc->ref == ref) {
            *pp = pc->next;
            ev_timer_stop(a->home->loop, &pc->timeout);
            return pc;
        }
        pp = &pc->next;
    }
    return NULL;
}

/* Stop watching the callee once the call is settled by a reply or a timeout. */
static void call_unmonitor(struct actor *a, struct pending_call *pc)
{
    struct actor_system *sys = a->home->sys;

    if (actor__mon_take(&a->ext->monitoring, pc->ref, NULL))
        actor__signal(sys, pc->callee, ENV_DEMONITOR, actor__pid(sys, a), 0, pc->ref);
}

int actor__call_reply(struct actor *a, struct envelope *env)
{
    struct pending_call *pc = call_take(a, env->ref);
    struct actor_msg msg;
    int rc;

    if (pc == NULL)
        return 0; /* too late: the call already timed out */
    call_unmonitor(a, pc);
    actor__msg_init(&msg, ACTOR_MSG_USER, env);
    rc = pc->cb(a, a->state, 0, &msg, pc->cb_data);
    env->payload = msg.payload;
    free(pc);
    return rc;
}

int actor__call_failed(struct actor *a, uint64_t ref, int err, int *rc)
{
    struct pending_call *pc = call_take(a, ref);

    *rc = 0;
    if (pc == NULL)
        return 0;
    if (err == ACTOR_ETIMEDOUT)
        call_unmonitor(a, pc);
    if (pc->scb != NULL)
        *rc = pc->scb(a, a->state, err, DIST_PID_NONE, pc->cb_data);
    else
        *rc = pc->cb(a, a->state, err, NULL, pc->cb_data);
    free(pc);
    return 1;
}

void actor__calls_drop(struct actor *a)
{
    while (a->ext != NULL && a->ext->calls != NULL) {
        struct pending_call *pc = a->ext->calls;
        a->ext->calls = pc->next;
        ev_timer_stop(a->home->loop, &pc->timeout);
        free(pc);
    }
}

int actor_reply(struct actor *self, const struct actor_msg *request, const struct actor_type *type,
                void *payload, size_t size)
{
    struct actor_system *sys = self->home->sys;
    int rc;

    if (request == NULL || request->kind != ACTOR_MSG_CALL || type == NULL)
        return ACTOR_EINVAL;
    rc = actor__post(sys, request->from, ENV_REPLY, actor__pid(sys, self), request->u.call.ref.id,
                     type, payload, size, 0);
    if (rc == ACTOR_ENOMEM)
        return rc;
    /* A caller that is gone drops the reply, as promised: it is freed here. */
    if (rc != 0)
        actor_payload_free(type, payload);
    return 0;
}

/* ---- Calls from plain threads: the proxy ------------------------------------------------------
 */

struct proxy_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

void actor__proxy_wake(struct actor *a)
{
    struct actor_ext *ext = a->ext;

    pthread_mutex_lock(ext->lock);
    pthread_cond_signal(ext->cond);
    pthread_mutex_unlock(ext->lock);
}

static struct actor *proxy_open(struct actor_system *sys, struct proxy_wait *w)
{
    struct actor *p = actor__slot_alloc(sys);

    if (p == NULL || actor__ext(p) == NULL) {
        if (p != NULL)
            actor__slot_release(sys, p);
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->lock, NULL);
    p->ext->lock = &w->lock;
    p->ext->cond = &w->cond;
    p->flags = AF_PROXY;
    p->behaviour = NULL;
    p->home = NULL;
    atomic_store(&p->sched, RUN_IDLE);
    atomic_fetch_and_explicit(&p->gate, ~GATE_CLOSED, memory_order_release);
    return p;
}

static void proxy_close(struct actor_system *sys, struct actor *p, struct proxy_wait *w)
{
    struct mpsc_node *n;
    uint64_t gate = atomic_fetch_or(&p->gate, GATE_CLOSED);

    while ((gate & GATE_SENDERS) != 0)
        gate = atomic_load(&p->gate);
    while ((n = actor__mpsc_pop(&p->mailbox)) != NULL || actor__mpsc_maybe_nonempty(&p->mailbox)) {
        if (n != NULL)
            actor__env_free((struct envelope *)n);
    }
    atomic_store(&p->pushed, 0);
    atomic_store(&p->popped, 0);
    atomic_store(&p->gate, (((gate >> 32) + 1) << 32) | GATE_CLOSED);
    free(p->ext);
    p->ext = NULL;
    p->flags = 0;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    actor__slot_release(sys, p);
}

/* Wait for the reply or the DOWN for @ref. 0 with *out, or an error. Under w->lock. */
static int proxy_wait_for(struct actor *p, struct proxy_wait *w, uint64_t ref,
                          const struct timespec *deadline, struct envelope **out)
{
    for (;;) {
        struct mpsc_node *n = actor__mpsc_pop(&p->mailbox);
        if (n != NULL) {
            struct envelope *env = (struct envelope *)n;
            if (env->kind == ENV_REPLY && env->ref == ref) {
                *out = env;
                return 0;
            }
            int down = env->kind == ENV_DOWN && env->ref == ref;
            int reason = env->reason;
            actor__env_free(env);
            if (down)
                return reason == ACTOR_NOCONNECTION ? ACTOR_ENOTCONN : ACTOR_ENOPROC;
            continue;
        }
        atomic_store(&p->sched, RUN_IDLE);
        if (actor__mpsc_maybe_nonempty(&p->mailbox))
            continue;
        if (pthread_cond_timedwait(&w->cond, &w->lock, deadline) != 0 &&
            !actor__mpsc_maybe_nonempty(&p->mailbox))
            return ACTOR_ETIMEDOUT;
    }
}

static struct actor_msg *reply_msg(struct envelope *env)
{
    struct actor_msg *msg = calloc(1, sizeof(*msg));

    if (msg != NULL) {
        actor__msg_init(msg, ACTOR_MSG_USER, env);
        /* The reply outlives its envelope: an inline payload is copied out. */
        if (msg->payload != NULL && (msg->flags & ACTOR_MSG_INLINE)) {
            msg->payload = actor_msg_take(msg);
            if (msg->payload == NULL) {
                free(msg);
                msg = NULL;
            }
        }
        env->payload = NULL;
    }
    actor__env_free(env);
    return msg;
}

int actor_call_wait(struct actor_system *sys, struct dist_pid to, const struct actor_type *type,
                    void *payload, size_t size, double timeout, struct actor_msg **reply)
{
    struct proxy_wait w;
    struct actor *p;
    struct dist_pid me;
    struct envelope *env = NULL;
    struct timespec deadline;
    uint64_t ref;
    int rc;

    if (sys == NULL || type == NULL || reply == NULL || timeout < 0. || actor__tls_sched != NULL)
        return ACTOR_EINVAL;
    p = proxy_open(sys, &w);
    if (p == NULL) {
        actor_payload_free(type, payload);
        return ACTOR_ENOMEM;
    }
    me = actor__pid(sys, p);
    ref = actor__ref_new(sys);
    rc = actor__signal(sys, to, ENV_MONITOR, me, 0, ref);
    if (rc == 0)
        rc = actor__post(sys, to, ENV_CALL, me, ref, type, payload, size, 1);
    if (rc != 0)
        actor_payload_free(type, payload); /* taken in every case, as documented */
    if (rc == 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)timeout;
        deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w.lock);
        rc = proxy_wait_for(p, &w, ref, &deadline, &env);
        pthread_mutex_unlock(&w.lock);
        if (rc != ACTOR_ENOPROC && rc != ACTOR_ENOTCONN)
            actor__signal(sys, to, ENV_DEMONITOR, me, 0, ref);
    }
    proxy_close(sys, p, &w);
    if (rc == 0) {
        *reply = reply_msg(env);
        rc = *reply != NULL ? 0 : ACTOR_ENOMEM;
    }
    return rc;
}

void actor_msg_free(struct actor_msg *msg)
{
    if (msg == NULL)
        return;
    if (msg->payload != NULL)
        actor_payload_free(msg->type, msg->payload);
    free(msg);
}
