/*
 * actor.c: the process table, spawn, send, dispatch, exit, links and monitors.
 *
 * A slot's gate word decides who may deliver to it:
 *
 *   spawn: gate = gen | 0 senders          (open)
 *   send:  CAS gate: senders + 1 if gen matches and open; push; schedule; senders - 1
 *   death: set CLOSED; wait for senders == 0; drain the mailbox; gate = (gen + 1) | CLOSED
 *
 * so a sender either lands in the mailbox before the drain or sees the actor as gone, and a
 * recycled slot never takes mail meant for its previous tenant.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- Process table --------------------------------------------------------------------------- */

static struct actor *slot_at(struct actor_system *sys, uint32_t slot)
{
    uint32_t c = slot >> CHUNK_BITS;
    struct actor *chunk;

    if (c >= MAX_CHUNKS)
        return NULL;
    chunk = atomic_load_explicit(&sys->chunks[c], memory_order_acquire);
    return chunk != NULL ? &chunk[slot & (CHUNK_SIZE - 1)] : NULL;
}

struct dist_pid actor__pid(struct actor_system *sys, const struct actor *a)
{
    uint64_t gen = atomic_load_explicit(&a->gate, memory_order_relaxed) >> 32;
    struct dist_pid pid = {(gen << 32) | a->slot, 0, sys->opts.creation};

    return pid;
}

struct actor *actor__lookup(struct actor_system *sys, struct dist_pid pid)
{
    struct actor *a;

    if (pid.node != 0 || pid.creation != sys->opts.creation || pid.id == 0)
        return NULL;
    a = slot_at(sys, (uint32_t)pid.id);
    if (a == NULL)
        return NULL;
    return (atomic_load(&a->gate) >> 32) == (pid.id >> 32) ? a : NULL;
}

/* A new chunk of closed slots, threaded onto the shared free list. Under table_lock. */
static int chunk_grow(struct actor_system *sys)
{
    uint32_t c = atomic_load(&sys->nchunks);
    struct actor *chunk;

    if (c >= MAX_CHUNKS)
        return ACTOR_ENOMEM;
    chunk = calloc(CHUNK_SIZE, sizeof(*chunk));
    if (chunk == NULL)
        return ACTOR_ENOMEM;
    for (uint32_t i = CHUNK_SIZE; i-- > 0;) {
        struct actor *a = &chunk[i];
        a->slot = (c << CHUNK_BITS) | i;
        /* Generation 1 first, so no PID has id 0. */
        atomic_store(&a->gate, (1ull << 32) | GATE_CLOSED);
        actor__mpsc_init(&a->mailbox);
        a->free_next = sys->free_slots;
        sys->free_slots = a;
    }
    atomic_store_explicit(&sys->chunks[c], chunk, memory_order_release);
    atomic_store(&sys->nchunks, c + 1);
    return 0;
}

/* Slots to hand a scheduler's free list at once, so spawns rarely take the lock. */
#define SLOT_BATCH 256

struct actor *actor__slot_alloc(struct actor_system *sys)
{
    struct scheduler *s = actor__tls_sched;
    struct actor *a;

    if (s != NULL && s->sys == sys && s->free_slots != NULL) {
        a = s->free_slots;
        s->free_slots = a->free_next;
        return a;
    }
    pthread_mutex_lock(&sys->table_lock);
    if (sys->free_slots == NULL && chunk_grow(sys) != 0) {
        pthread_mutex_unlock(&sys->table_lock);
        return NULL;
    }
    a = sys->free_slots;
    sys->free_slots = a->free_next;
    if (s != NULL && s->sys == sys) {
        for (int i = 0; i < SLOT_BATCH && sys->free_slots != NULL; i++) {
            struct actor *b = sys->free_slots;
            sys->free_slots = b->free_next;
            b->free_next = s->free_slots;
            s->free_slots = b;
        }
    }
    pthread_mutex_unlock(&sys->table_lock);
    return a;
}

void actor__slot_release(struct actor_system *sys, struct actor *a)
{
    struct scheduler *s = actor__tls_sched;

    if (s != NULL && s->sys == sys) {
        a->free_next = s->free_slots;
        s->free_slots = a;
        return;
    }
    pthread_mutex_lock(&sys->table_lock);
    a->free_next = sys->free_slots;
    sys->free_slots = a;
    pthread_mutex_unlock(&sys->table_lock);
}

uint64_t actor__ref_new(struct actor_system *sys)
{
    return atomic_fetch_add_explicit(&sys->next_ref, 1, memory_order_relaxed);
}

/* ---- Envelopes and delivery ----------------------------------------------------------------- */

/* Enter a slot's gate for generation @gen. Returns 0, or ACTOR_ENOPROC. */
static int gate_enter(struct actor *a, uint64_t gen)
{
    uint64_t gate = atomic_load_explicit(&a->gate, memory_order_acquire);

    do {
        if ((gate >> 32) != gen || (gate & GATE_CLOSED))
            return ACTOR_ENOPROC;
    } while (!atomic_compare_exchange_weak_explicit(&a->gate, &gate, gate + 1, memory_order_acq_rel,
                                                    memory_order_acquire));
    return 0;
}

static void gate_leave(struct actor *a)
{
    atomic_fetch_sub_explicit(&a->gate, 1, memory_order_release);
}

/*
 * Make @a runnable if it was idle. Called after the push: if @a is seen queued or running,
 * its scheduler's going idle (a seq_cst store, then a look at the mailbox) will see the push,
 * so the common case of a busy receiver costs a load, not a locked instruction.
 */
static void wake_actor(struct actor *a)
{
    uint32_t idle = RUN_IDLE;

    if (atomic_load(&a->sched) != RUN_IDLE)
        return;
    if (atomic_compare_exchange_strong_explicit(&a->sched, &idle, RUN_QUEUED, memory_order_acq_rel,
                                                memory_order_relaxed))
        actor__schedule(a);
}

/*
 * Deliver @env to @to. On 0 the mailbox owns @env; on failure the caller still does.
 * @bounded: honour the target's mailbox_max (user messages only; signals always pass).
 */
int actor__deliver(struct actor_system *sys, struct dist_pid to, struct envelope *env, int bounded)
{
    struct actor *a;
    struct scheduler *me;
    uint64_t gate;
    int local;

    if (to.node != 0)
        return actor__remote_deliver(sys, to, env);
    if (to.creation != sys->opts.creation || to.id == 0)
        return ACTOR_ENOPROC;
    a = slot_at(sys, (uint32_t)to.id);
    if (a == NULL)
        return ACTOR_ENOPROC;
    gate = atomic_load_explicit(&a->gate, memory_order_acquire);
    if ((gate >> 32) != (to.id >> 32) || (gate & GATE_CLOSED))
        return ACTOR_ENOPROC;
    /*
     * A target whose home is this thread cannot die while we run (death runs on its home),
     * so the gate need not be entered: the hot path of a send between actors of one
     * scheduler is a push and a wake-up.
     */
    me = actor__tls_sched;
    local = a->home == me && me != NULL;
    if (!local && gate_enter(a, to.id >> 32) != 0)
        return ACTOR_ENOPROC;
    if (bounded && a->mailbox_max != 0 && ACTOR_DEPTH(a) >= a->mailbox_max) {
        if (!local)
            gate_leave(a);
        return ACTOR_EBUSY;
    }
    /*
     * Depth is pushed - popped. The home thread alone writes popped, so a send from it counts
     * by taking one off popped, with a plain store; other threads add to pushed atomically.
     */
    if (local)
        atomic_store_explicit(&a->popped,
                              atomic_load_explicit(&a->popped, memory_order_relaxed) - 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&a->pushed, 1, memory_order_relaxed);
    actor__mpsc_push(&a->mailbox, &env->node);
    wake_actor(a);
    if (!local)
        gate_leave(a);
    if (me != NULL && ++me->run_sends % HOG_SENDS == 0 && actor__tls_actor != NULL)
        actor__share_hog(me);
    return 0;
}

int actor__post(struct actor_system *sys, struct dist_pid to, enum env_kind kind,
                struct dist_pid from, uint64_t ref, const struct actor_type *type, void *payload,
                size_t size, int bounded)
{
    struct envelope *env = actor__env_new(sys, kind, from);
    int rc;

    if (env == NULL)
        return ACTOR_ENOMEM;
    env->ref = ref;
    env->type = type;
    env->payload = payload;
    env->size = size;
    rc = actor__deliver(sys, to, env, bounded);
    if (rc != 0) {
        env->payload = NULL; /* the payload stays the caller's */
        actor__env_free(env);
    }
    return rc;
}

int actor__signal(struct actor_system *sys, struct dist_pid to, enum env_kind kind,
                  struct dist_pid from, int reason, uint64_t ref)
{
    struct envelope *env = actor__env_new(sys, kind, from);
    int rc;

    if (env == NULL)
        return ACTOR_ENOMEM;
    env->reason = reason;
    env->ref = ref;
    rc = actor__deliver(sys, to, env, 0);
    if (rc != 0)
        actor__env_free(env);
    return rc;
}

struct dist_pid actor__current_pid(struct actor_system *sys)
{
    struct actor *self = actor__tls_actor;

    return self != NULL ? actor__pid(sys, self) : DIST_PID_NONE;
}

int actor_send(struct actor_system *sys, struct dist_pid to, const struct actor_type *type,
               void *payload, size_t size)
{
    if (sys == NULL || type == NULL)
        return ACTOR_EINVAL;
    return actor__post(sys, to, ENV_USER, actor__current_pid(sys), 0, type, payload, size, 1);
}

int actor_cast(struct actor_system *sys, struct dist_pid to, const struct actor_type *type,
               void *payload, size_t size)
{
    return actor_send(sys, to, type, payload, size);
}

/*
 * An exit signal goes in the mailbox, in order, and is also flagged on the target, so that
 * one that kills does so before the messages queued ahead of it are handled, as on the BEAM.
 * A kill overrides any other pending reason.
 */
int actor__exit_signal(struct actor_system *sys, struct dist_pid to, struct dist_pid from,
                       int reason)
{
    int rc = actor__signal(sys, to, ENV_EXIT, from, reason, 0);
    struct actor *a = rc == 0 ? actor__lookup(sys, to) : NULL;
    uint64_t flag = EXIT_PENDING | (uint32_t)reason, none = 0;

    if (a == NULL || reason == ACTOR_NORMAL)
        return rc;
    if (reason == ACTOR_KILL)
        atomic_store_explicit(&a->exit_pending, flag, memory_order_release);
    else
        atomic_compare_exchange_strong(&a->exit_pending, &none, flag);
    return rc;
}

int actor_exit_signal(struct actor_system *sys, struct dist_pid to, int reason)
{
    return actor__exit_signal(sys, to, actor__current_pid(sys), reason);
}

int actor_kill(struct actor_system *sys, struct dist_pid to)
{
    return actor_exit_signal(sys, to, ACTOR_KILL);
}

void *actor_msg_take(struct actor_msg *msg)
{
    void *p = msg->payload;

    if (p != NULL && (msg->flags & ACTOR_MSG_INLINE)) {
        p = malloc(msg->size); /* the envelope is recycled: hand over a copy */
        if (p == NULL)
            return NULL;
        memcpy(p, msg->payload, msg->size);
        msg->flags &= ~ACTOR_MSG_INLINE;
    }
    msg->payload = NULL;
    return p;
}

/* ---- Link and monitor sets ------------------------------------------------------------------ */

struct actor_ext *actor__ext(struct actor *a)
{
    if (a->ext == NULL)
        a->ext = calloc(1, sizeof(*a->ext));
    return a->ext;
}

static int links_find(const struct link_set *l, struct dist_pid pid)
{
    for (size_t i = 0; i < l->n; i++) {
        if (dist_pid_eq(l->pids[i], pid))
            return (int)i;
    }
    return -1;
}

void actor__links_add(struct link_set *l, struct dist_pid pid)
{
    if (links_find(l, pid) >= 0)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct dist_pid *p = realloc(l->pids, cap * sizeof(*p));
        if (p == NULL)
            return;
        l->pids = p;
        l->cap = cap;
    }
    l->pids[l->n++] = pid;
}

int actor__links_remove(struct link_set *l, struct dist_pid pid)
{
    int i = links_find(l, pid);

    if (i < 0)
        return 0;
    l->pids[i] = l->pids[--l->n];
    return 1;
}

void actor__mon_add(struct mon_set *set, uint64_t ref, struct dist_pid pid)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4;
        struct mon *v = realloc(set->v, cap * sizeof(*v));
        if (v == NULL)
            return;
        set->v = v;
        set->cap = cap;
    }
    set->v[set->n].ref = ref;
    set->v[set->n].pid = pid;
    set->n++;
}

int actor__mon_take(struct mon_set *set, uint64_t ref, struct dist_pid *pid)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].ref == ref) {
            if (pid != NULL)
                *pid = set->v[i].pid;
            set->v[i] = set->v[--set->n];
            return 1;
        }
    }
    return 0;
}

int actor__mon_take_pid(struct mon_set *set, uint64_t ref, struct dist_pid pid)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->v[i].ref == ref && dist_pid_eq(set->v[i].pid, pid)) {
            set->v[i] = set->v[--set->n];
            return 1;
        }
    }
    return 0;
}

/* ---- Links and monitors: the public side ---------------------------------------------------- */

int actor_link(struct actor *self, struct dist_pid other)
{
    struct actor_system *sys = self->home->sys;
    struct dist_pid me = actor__pid(sys, self);
    struct actor_ext *ext = actor__ext(self);

    if (dist_pid_is_none(other))
        return ACTOR_EINVAL;
    if (ext == NULL || dist_pid_eq(other, me))
        return ext == NULL ? ACTOR_ENOMEM : 0;
    actor__links_add(&ext->links, other);
    /* Linking to the dead: an exit signal noproc, as Erlang sends; it ends the link. */
    if (actor__signal(sys, other, ENV_LINK, me, 0, 0) != 0)
        actor__signal(sys, me, ENV_LINK_EXIT, other, ACTOR_NOPROC, 0);
    return 0;
}

int actor_unlink(struct actor *self, struct dist_pid other)
{
    struct actor_system *sys = self->home->sys;

    if (self->ext != NULL && actor__links_remove(&self->ext->links, other))
        actor__signal(sys, other, ENV_UNLINK, actor__pid(sys, self), 0, 0);
    return 0;
}

void actor_trap_exit(struct actor *self, int on)
{
    if (on)
        self->flags |= AF_TRAP_EXIT;
    else
        self->flags &= ~AF_TRAP_EXIT;
}

int actor_monitor(struct actor *self, struct dist_pid target, struct actor_ref *ref)
{
    struct actor_system *sys = self->home->sys;
    struct actor_ext *ext = actor__ext(self);
    struct dist_pid me = actor__pid(sys, self);
    uint64_t r = actor__ref_new(sys);

    if (dist_pid_is_none(target))
        return ACTOR_EINVAL;
    if (ext == NULL)
        return ACTOR_ENOMEM;
    actor__mon_add(&ext->monitoring, r, target);
    if (actor__signal(sys, target, ENV_MONITOR, me, 0, r) != 0)
        actor__signal(sys, me, ENV_DOWN, target, ACTOR_NOPROC, r);
    if (ref != NULL)
        ref->id = r;
    return 0;
}

/*
 * The DOWN for @ref already in the mailbox, if any. Only the owner pops, and senders only
 * append, so the owner may walk its own queue; a DOWN still being pushed is not seen, and
 * counts as arriving after the demonitor.
 */
static struct envelope *pending_down(struct actor *self, uint64_t ref)
{
    struct mpsc_node *n = self->mailbox.head;

    for (; n != NULL; n = atomic_load_explicit(&n->next, memory_order_acquire)) {
        struct envelope *env = (struct envelope *)n;
        if (n != &self->mailbox.sentinel && env->kind == ENV_DOWN && env->ref == ref)
            return env;
    }
    return NULL;
}

int actor_demonitor(struct actor *self, struct actor_ref ref, unsigned flags)
{
    struct actor_system *sys = self->home->sys;
    struct dist_pid target;
    struct envelope *down;

    if (self->ext == NULL || !actor__mon_take(&self->ext->monitoring, ref.id, &target))
        return ACTOR_EINVAL;
    actor__signal(sys, target, ENV_DEMONITOR, actor__pid(sys, self), 0, ref.id);
    down = pending_down(self, ref.id);
    if (down != NULL && (flags & ACTOR_DEMONITOR_FLUSH))
        down->kind = ENV_NOOP;
    else if (down != NULL)
        actor__mon_add(&self->ext->monitoring, ref.id, target); /* it is delivered, as Erlang */
    return 0;
}

struct dist_pid actor_self(const struct actor *self)
{
    return actor__pid(self->home->sys, self);
}

struct actor_system *actor_system_of(const struct actor *self)
{
    return self->home->sys;
}

void actor_exit(struct actor *self, int reason)
{
    if (!(self->flags & AF_EXITING)) {
        self->flags |= AF_EXITING;
        self->exit_reason = reason;
    }
}
