/*
 * dispatch.c: spawning an actor, running it on its scheduler, and its death.
 *
 *   spawn --> NEED_INIT --(first run: init)--> running: envelopes one by one
 *                                                 |  handler error, actor_exit, exit signal
 *                                                 v
 *             terminate --> gate closed --> mailbox drained --> links get EXIT,
 *             monitors get DOWN --> timers, calls, name dropped --> slot free
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- Spawn ------------------------------------------------------------------------------------
 */

static struct scheduler *pick_home(struct actor_system *sys, struct actor *parent, int hint)
{
    if (hint >= 0)
        return &sys->scheds[(unsigned)hint % sys->nsched];
    if (parent != NULL)
        return parent->home;
    if (actor__tls_sched != NULL && actor__tls_sched->sys == sys)
        return actor__tls_sched;
    /*
     * From outside: the first scheduler. Actors that talk to each other then start together,
     * and work sharing spreads them once more than one is ready at a time.
     */
    return &sys->scheds[0];
}

static void count_spawn(struct actor_system *sys, int delta_exit)
{
    struct scheduler *s = actor__tls_sched;

    if (s != NULL && s->sys == sys) {
        _Atomic uint64_t *c = delta_exit ? &s->exited : &s->spawned;
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add(delta_exit ? &sys->outside_exited : &sys->outside_spawned, 1);
    }
}

/* Links and monitors asked for at spawn, set up before anyone can reach the child. */
static int spawn_bonds(struct actor_system *sys, struct actor *parent, struct actor *a,
                       const struct actor_spawn_opts *opts)
{
    struct dist_pid ppid, cpid = actor__pid(sys, a);

    if (!(opts->flags & (ACTOR_SPAWN_LINK | ACTOR_SPAWN_MONITOR)))
        return 0;
    if (parent == NULL || actor__ext(parent) == NULL || actor__ext(a) == NULL)
        return ACTOR_EINVAL;
    ppid = actor__pid(sys, parent);
    if (opts->flags & ACTOR_SPAWN_LINK) {
        actor__links_add(&parent->ext->links, cpid);
        actor__links_add(&a->ext->links, ppid);
    }
    if (opts->flags & ACTOR_SPAWN_MONITOR) {
        uint64_t ref = actor__ref_new(sys);
        actor__mon_add(&parent->ext->monitoring, ref, cpid);
        actor__mon_add(&a->ext->monitored_by, ref, ppid);
        if (opts->monitor_ref != NULL)
            opts->monitor_ref->id = ref;
    }
    return 0;
}

int actor_spawn(struct actor_system *sys, struct actor *parent,
                const struct actor_behaviour *behaviour, void *arg,
                const struct actor_spawn_opts *opts, struct dist_pid *pid)
{
    static const struct actor_spawn_opts defaults = {.scheduler = -1};
    struct actor *a;
    struct dist_pid child;
    int rc;

    if (sys == NULL || behaviour == NULL)
        return ACTOR_EINVAL;
    if (!atomic_load_explicit(&sys->running, memory_order_relaxed) ||
        atomic_load_explicit(&sys->stopping, memory_order_relaxed))
        return ACTOR_ESTOPPED;
    if (opts == NULL)
        opts = &defaults;
    a = actor__slot_alloc(sys);
    if (a == NULL)
        return ACTOR_ENOMEM;
    a->home = pick_home(sys, parent, opts->scheduler);
    a->behaviour = behaviour;
    a->arg = arg;
    a->state = NULL;
    a->flags = AF_NEED_INIT | AF_LIVE;
    atomic_store_explicit(&a->exit_pending, 0, memory_order_relaxed);
    a->root = parent == NULL && actor__tls_actor == NULL;
    a->exit_reason = 0;
    a->mailbox_max = (uint32_t)(opts->mailbox_max > UINT32_MAX ? UINT32_MAX : opts->mailbox_max);
    atomic_store_explicit(&a->handled, 0, memory_order_relaxed);
    atomic_store_explicit(&a->pushed, 0, memory_order_relaxed);
    atomic_store_explicit(&a->popped, 0, memory_order_relaxed);
    atomic_store_explicit(&a->sched, RUN_QUEUED, memory_order_relaxed);
    child = actor__pid(sys, a);
    rc = opts->name != NULL ? actor__names_insert(sys, opts->name, a, child) : 0;
    if (rc != 0) {
        a->behaviour = NULL;
        actor__slot_release(sys, a);
        return rc;
    }
    rc = spawn_bonds(sys, parent, a, opts);
    if (rc != 0) {
        free(a->ext);
        a->ext = NULL;
        a->behaviour = NULL;
        actor__slot_release(sys, a);
        return rc;
    }
    count_spawn(sys, 0);
    /* Open the gate (same generation), then run init on the home scheduler. */
    atomic_fetch_and_explicit(&a->gate, ~GATE_CLOSED, memory_order_release);
    actor__schedule(a);
    if (pid != NULL)
        *pid = child;
    return 0;
}

/* ---- Death ------------------------------------------------------------------------------------
 */

/* Close the gate and wait out the senders already inside it: they are mid-push. */
static void gate_close(struct actor *a)
{
    uint64_t gate = atomic_fetch_or_explicit(&a->gate, GATE_CLOSED, memory_order_acq_rel);

    while ((gate & GATE_SENDERS) != 0)
        gate = atomic_load_explicit(&a->gate, memory_order_acquire);
}

/*
 * What a dead actor owes the senders of what is left in its mailbox. A link or monitor asked
 * for before the death (it is in the mailbox, so it was) hears the real reason, as in Erlang.
 */
static void drain_dead(struct actor_system *sys, struct actor *a, struct dist_pid me, int reason)
{
    struct mpsc_node *n;

    for (;;) {
        n = actor__mpsc_pop(&a->mailbox);
        if (n == NULL && !actor__mpsc_maybe_nonempty(&a->mailbox))
            break;
        if (n == NULL)
            continue; /* a push finishing: the gate is closed, so it is the last ones */
        struct envelope *env = (struct envelope *)n;
        if (env->kind == ENV_LINK)
            actor__signal(sys, env->from, ENV_LINK_EXIT, me, reason, 0);
        else if (env->kind == ENV_MONITOR)
            actor__signal(sys, env->from, ENV_DOWN, me, reason, env->ref);
        actor__env_free(env);
    }
    atomic_store_explicit(&a->pushed, 0, memory_order_relaxed);
    atomic_store_explicit(&a->popped, 0, memory_order_relaxed);
}

static void notify_bonds(struct actor_system *sys, struct actor *a, struct dist_pid me, int reason)
{
    struct actor_ext *ext = a->ext;
    /* An actor killed outright tells its links "killed", which they may trap. */
    int link_reason = reason == ACTOR_KILL ? ACTOR_KILLED : reason;

    if (ext == NULL)
        return;
    for (size_t i = 0; i < ext->links.n; i++)
        actor__signal(sys, ext->links.pids[i], ENV_LINK_EXIT, me, link_reason, 0);
    for (size_t i = 0; i < ext->monitored_by.n; i++)
        actor__signal(sys, ext->monitored_by.v[i].pid, ENV_DOWN, me, link_reason,
                      ext->monitored_by.v[i].ref);
    for (size_t i = 0; i < ext->monitoring.n; i++)
        actor__signal(sys, ext->monitoring.v[i].pid, ENV_DEMONITOR, me, 0,
                      ext->monitoring.v[i].ref);
}

static void ext_free(struct actor *a)
{
    struct actor_ext *ext = a->ext;

    if (ext == NULL)
        return;
    free(ext->links.pids);
    free(ext->monitoring.v);
    free(ext->monitored_by.v);
    free(ext);
    a->ext = NULL;
}

static void die(struct scheduler *s, struct actor *a, int reason)
{
    struct actor_system *sys = s->sys;
    struct dist_pid me = actor__pid(sys, a);

    if (a->behaviour->terminate != NULL && !(a->flags & AF_NEED_INIT))
        a->behaviour->terminate(a, a->state, reason);
    actor__tls_actor = NULL;
    gate_close(a);
    /* The name goes first, so whoever hears of the death can reuse it at once. */
    actor__names_release(sys, a);
    drain_dead(sys, a, me, reason == ACTOR_KILL ? ACTOR_KILLED : reason);
    notify_bonds(sys, a, me, reason);
    actor__timers_cancel_all(a);
    actor__calls_drop(a);
    ext_free(a);
    a->flags = 0;
    a->state = NULL;
    atomic_store_explicit(&a->running, 0, memory_order_relaxed);
    /* Next generation, still closed until the slot is spawned into again. */
    atomic_store_explicit(&a->gate, (((atomic_load(&a->gate) >> 32) + 1) << 32) | GATE_CLOSED,
                          memory_order_release);
    atomic_store_explicit(&a->sched, RUN_IDLE, memory_order_relaxed);
    count_spawn(sys, 1);
    actor__slot_release(sys, a);
}

/* ---- Running ----------------------------------------------------------------------------------
 */

/* Hand a message to the behaviour; counted as delivered (signals handled inside are not). */
static int call_handler(struct actor *a, struct actor_msg *msg)
{
    struct scheduler *s = a->home;

    atomic_store_explicit(&a->handled, atomic_load_explicit(&a->handled, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&s->delivered,
                          atomic_load_explicit(&s->delivered, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (a->behaviour->handle == NULL)
        return 0;
    return a->behaviour->handle(a, a->state, msg);
}

void actor__msg_init(struct actor_msg *msg, enum actor_msg_kind kind, const struct envelope *env)
{
    memset(msg, 0, sizeof(*msg));
    msg->kind = kind;
    msg->from = env->from;
    msg->type = env->type;
    msg->payload = env->payload;
    msg->size = env->size;
    if (env->flags & ENV_INLINE)
        msg->flags = ACTOR_MSG_INLINE;
}

/* An exit signal: kill ends the actor; trapped ones become messages; normal is ignored. */
static int on_exit_signal(struct actor *a, struct envelope *env)
{
    struct actor_msg msg;

    /*
     * Only a linked actor's death ends the link; exit/2 from a live one does not. A death
     * notice from an actor no longer linked (unlinked meanwhile) has no effect, as in Erlang.
     */
    if (env->kind == ENV_LINK_EXIT &&
        (a->ext == NULL || !actor__links_remove(&a->ext->links, env->from)))
        return 0;
    if (env->kind == ENV_EXIT && env->reason == ACTOR_KILL) {
        actor_exit(a, ACTOR_KILLED);
        return 0;
    }
    if (a->flags & AF_TRAP_EXIT) {
        actor__msg_init(&msg, ACTOR_MSG_EXIT, env);
        msg.u.exit.pid = env->from;
        msg.u.exit.reason = env->reason;
        return call_handler(a, &msg);
    }
    if (env->reason != ACTOR_NORMAL)
        actor_exit(a, env->reason);
    return 0;
}

static int on_down(struct actor *a, struct envelope *env)
{
    struct actor_msg msg;

    if (a->ext == NULL || !actor__mon_take(&a->ext->monitoring, env->ref, NULL))
        return 0; /* demonitored, or a call's monitor already settled */
    int rc;

    if (actor__call_failed(a, env->ref,
                           env->reason == ACTOR_NOCONNECTION ? ACTOR_ENOTCONN : ACTOR_ENOPROC, &rc))
        return rc; /* it was a call's monitor: the continuation heard of it */
    actor__msg_init(&msg, ACTOR_MSG_DOWN, env);
    msg.u.down.ref.id = env->ref;
    msg.u.down.pid = env->from;
    msg.u.down.reason = env->reason;
    return call_handler(a, &msg);
}

/* A node came up or went down, for an actor that monitors nodes. */
static int on_node_event(struct actor *a, struct envelope *env)
{
    struct actor_msg msg;

    actor__msg_init(&msg, env->tag ? ACTOR_MSG_NODEUP : ACTOR_MSG_NODEDOWN, env);
    msg.u.node.name = actor__node_name(a->home->sys, (uint32_t)env->ref);
    msg.u.node.reason = env->reason;
    return call_handler(a, &msg);
}

/* Handle one envelope. Returns a handler's result: non-zero crashes the actor. */
static int process(struct actor *a, struct envelope *env)
{
    struct actor_msg msg;
    int rc = 0;

    switch (env->kind) {
    case ENV_USER:
    case ENV_CALL:
        actor__msg_init(&msg, env->kind == ENV_CALL ? ACTOR_MSG_CALL : ACTOR_MSG_USER, env);
        if (env->kind == ENV_CALL)
            msg.u.call.ref.id = env->ref;
        rc = call_handler(a, &msg);
        env->payload = msg.payload; /* NULL if the handler took it */
        break;
    case ENV_REPLY:
        rc = actor__call_reply(a, env);
        break;
    case ENV_CALL_TIMEOUT:
        actor__call_failed(a, env->ref, ACTOR_ETIMEDOUT, &rc);
        break;
    case ENV_EXIT:
    case ENV_LINK_EXIT:
        rc = on_exit_signal(a, env);
        break;
    case ENV_LINK:
        if (actor__ext(a) != NULL)
            actor__links_add(&a->ext->links, env->from);
        break;
    case ENV_UNLINK:
        if (a->ext != NULL)
            actor__links_remove(&a->ext->links, env->from);
        break;
    case ENV_MONITOR:
        if (actor__ext(a) != NULL)
            actor__mon_add(&a->ext->monitored_by, env->ref, env->from);
        break;
    case ENV_DEMONITOR:
        if (a->ext != NULL)
            actor__mon_take_pid(&a->ext->monitored_by, env->ref, env->from);
        break;
    case ENV_DOWN:
        rc = on_down(a, env);
        break;
    case ENV_NOOP:
        break;
    case ENV_SPAWN_REPLY:
        rc = actor__spawn_reply(a, env);
        break;
    case ENV_NODE:
        rc = on_node_event(a, env);
        break;
    case ENV_TIMER:
        if (actor__timer_fired(a, env->ref)) {
            actor__msg_init(&msg, ACTOR_MSG_TIMER, env);
            msg.u.timer.id = env->ref;
            msg.u.timer.tag = env->tag;
            rc = call_handler(a, &msg);
        }
        break;
    }
    return rc;
}

/*
 * A flagged exit signal: a kill, or one an actor that does not trap exits dies of, ends it
 * now. One it traps waits its turn in the mailbox. Returns 1 if the actor is now exiting.
 */
static int exit_jumps_queue(struct actor *a)
{
    uint64_t flag = atomic_exchange_explicit(&a->exit_pending, 0, memory_order_acquire);
    int reason = (int)(uint32_t)flag;

    if (flag == 0)
        return 0;
    if (reason == ACTOR_KILL)
        actor_exit(a, ACTOR_KILLED);
    else if (!(a->flags & AF_TRAP_EXIT))
        actor_exit(a, reason);
    return (a->flags & AF_EXITING) != 0;
}

static int run_init(struct actor *a)
{
    a->flags &= ~AF_NEED_INIT;
    if (a->behaviour->init == NULL)
        return 0;
    return a->behaviour->init(a, a->arg, &a->state);
}

/*
 * Run @a for up to ACTOR_BATCH envelopes. Afterwards it is dead, requeued (more mail), or
 * idle; going idle re-checks the mailbox, since a sender that saw it busy did not queue it.
 */
void actor__run(struct scheduler *s, struct actor *a)
{
    uint64_t done = 0;
    int rc = 0;

    actor__tls_actor = a;
    s->run_sends = 0;
    atomic_store_explicit(&a->running, 1, memory_order_relaxed);
    if (a->flags & AF_NEED_INIT) {
        rc = run_init(a);
        if (rc != 0) {
            a->flags |= AF_NEED_INIT; /* no terminate for a failed init */
            die(s, a, rc);
            return;
        }
    }
    while (done < ACTOR_BATCH && !(a->flags & AF_EXITING)) {
        if (atomic_load_explicit(&a->exit_pending, memory_order_relaxed) != 0 &&
            exit_jumps_queue(a))
            break;
        struct mpsc_node *n = actor__mpsc_pop(&a->mailbox);
        if (n == NULL)
            break;
        /* Only this thread writes popped: a plain store, no locked instruction. */
        atomic_store_explicit(&a->popped,
                              atomic_load_explicit(&a->popped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        rc = process(a, (struct envelope *)n);
        actor__env_free((struct envelope *)n);
        done++;
        if (rc != 0)
            actor_exit(a, rc);
    }
    atomic_store_explicit(&a->running, 0, memory_order_relaxed);
    if (a->flags & AF_EXITING) {
        die(s, a, a->exit_reason);
        return;
    }
    actor__tls_actor = NULL;
    if (done == ACTOR_BATCH) {
        actor__schedule(a); /* still QUEUED: straight to the back of the line */
        return;
    }
    atomic_store_explicit(&a->sched, RUN_IDLE, memory_order_seq_cst);
    if (actor__mpsc_maybe_nonempty(&a->mailbox)) {
        uint32_t idle = RUN_IDLE;
        if (atomic_compare_exchange_strong(&a->sched, &idle, RUN_QUEUED))
            actor__schedule(a);
    }
}
