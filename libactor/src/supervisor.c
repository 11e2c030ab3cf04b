/*
 * supervisor.c: supervisors, built on libactor's public API alone.
 *
 * A supervisor is an actor whose behaviour is named "supervisor" (what introspection shows).
 * It traps exits and is linked to every child it starts. It reacts to a child's EXIT as its
 * strategy and the child's restart type say, and it stops children with a small state machine
 * driven by DOWN and TIMER messages, so it never blocks its scheduler:
 *
 *   RUNNING --crash, one_for_all / rest_for_one--> RESTARTING --range stopped--> RUNNING
 *     |                                                |          (restart it in order)
 *     '--parent EXIT, ACTOR_SHUTDOWN, intensity, ------+--> TERMINATING --all stopped--> exit
 *        a child that failed to start
 *
 * A phase stops the children [lo, n) one at a time, the latest started first:
 *
 *   unlink, monitor, ACTOR_SHUTDOWN, timer(shutdown_timeout)
 *        |-- DOWN -------------------------------> stopped: next child
 *        '-- TIMER --> actor_kill --> DOWN ------> stopped: next child
 *
 * A shutdown_timeout of 0 kills at once (Erlang's brutal_kill); a negative one waits for
 * ever (Erlang's infinity, meant for children that are supervisors themselves).
 *
 * Choices where Erlang/OTP leaves room or where an asynchronous spawn differs:
 * - More than max_restarts restarts within max_seconds: the supervisor stops every child in
 *   order and exits with ACTOR_SHUTDOWN, as OTP's supervisor does. A restart is one crash
 *   handled, however many children it restarts.
 * - Children are spawned from the supervisor's init, in order; their own inits run later, on
 *   the supervisor's scheduler. A child whose actor_spawn fails makes the supervisor stop
 *   the children it has started and exit with that error as its reason. Called from outside
 *   any actor, actor_supervisor_start() waits for init's verdict (a ping the supervisor
 *   answers) and returns that error. Called with @parent, it may not block: it returns once
 *   the supervisor is spawned, and the parent learns of a failure from its EXIT.
 *   A child whose own init fails ends like a crash and is restarted by its restart type.
 * - A restart whose actor_spawn fails is retried after SUP_RETRY_DELAY; each retry counts as
 *   a restart, so a child that can never start ends the supervisor by intensity.
 * - EXIT from the parent (any reason) or an exit signal ACTOR_SHUTDOWN from anyone stops the
 *   children in order, then the supervisor exits with that reason. Other trapped exits from
 *   actors that are not children are ignored, as in OTP.
 * - A supervisor that ends without its orderly shutdown (killed) kills its remaining children
 *   from terminate, so none outlives it.
 * - Trees nest through actors: a child spec names a behaviour, and a child that is to be a
 *   supervisor is an actor calling actor_supervisor_start(sys, self, ...) from its init.
 *
 * Requests (actor_supervisor_start's sync and actor_supervisor_add) are calls of the raw type
 * carrying a struct sup_req; the reply is a struct sup_reply. Both hold pointers or PIDs of
 * this process only, so requests from other nodes are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Only for actor__stats_restart(): everything else here uses the public API. */
#include "internal.h"

#define SUP_MAGIC 0x53555052u /* "SUPR": tells our requests from other raw calls */

/*
 * Seconds actor_supervisor_start() waits for the new supervisor to answer: init only spawns,
 * so this is generous and is hit only by a wedged system.
 */
#define SUP_START_TIMEOUT 30.0

/*
 * Seconds before retrying a restart whose spawn failed: what makes a spawn fail (a name not
 * yet released, memory) takes a moment to clear, and retrying at once would spin.
 */
#define SUP_RETRY_DELAY 0.1

/* The intensity window keeps one timestamp per allowed restart; cap what that may cost. */
#define SUP_MAX_RESTARTS_CAP 1000000u

#define NO_CHILD SIZE_MAX

enum sup_op { SUP_OP_PING = 1, SUP_OP_ADD = 2 };

enum sup_tag { SUP_TAG_STOP = 1, SUP_TAG_RETRY = 2 };

struct sup_req {
    uint32_t magic;
    uint32_t op;
    void *arg; /* SUP_OP_ADD: the new child's init argument (borrowed) */
};

struct sup_reply {
    uint32_t magic;
    int err;
    struct dist_pid child;
};

/* A copied child spec: the strings are ours, the behaviour and arg are borrowed. */
struct sup_spec {
    char *id;
    char *name;
    const struct actor_behaviour *behaviour;
    void *arg;
    enum actor_restart restart;
    double shutdown_timeout;
};

#define CHILD_STOPPING (1u << 0) /* being stopped: its EXIT is ignored, its DOWN awaited */
#define CHILD_START    (1u << 1) /* to be (re)started by start_marked() */
#define CHILD_GONE     (1u << 2) /* dead for good: compact() drops it */

struct sup_child {
    const struct sup_spec *spec;
    void *arg;
    struct dist_pid pid; /* DIST_PID_NONE while not running */
    unsigned flags;
};

enum sup_mode { SUP_RUNNING, SUP_RESTARTING, SUP_TERMINATING };

struct sup_state {
    struct actor_system *sys;
    struct actor_sup_opts opts;
    struct dist_pid parent; /* DIST_PID_NONE when started from outside any actor */
    struct sup_spec *specs; /* simple_one_for_one: the one template */
    size_t nspecs;
    struct sup_child *kids; /* in start order */
    size_t nkids, capkids;
    int dirty; /* some child is CHILD_GONE */

    /* Restart intensity: a ring of the times of the latest restarts, oldest at rhead. */
    double *rtimes;
    size_t rhead, rcount;

    enum sup_mode mode;
    size_t lo;       /* the phase stops children [lo, nkids) */
    int reason;      /* TERMINATING: the reason to exit with */
    size_t stop_idx; /* the child being stopped, or NO_CHILD */
    struct actor_ref stop_ref;
    uint64_t stop_timer;
    int stop_timer_on;
    uint64_t retry_timer;
    int retry_on;

    int init_err; /* the spawn error that ended init, answered to the sync ping */
    int hold;     /* a starter waits for a ping: do not exit before answering it */
    int done;     /* TERMINATING has stopped every child */
    int exited;
};

/* ---- State ----------------------------------------------------------------------------- */

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void state_free(struct sup_state *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nspecs; i++) {
        free(st->specs[i].id);
        free(st->specs[i].name);
    }
    free(st->specs);
    free(st->kids);
    free(st->rtimes);
    free(st);
}

static int spec_copy(struct sup_spec *dst, const struct actor_child_spec *src)
{
    dst->id = strdup(src->id);
    dst->name = src->name ? strdup(src->name) : NULL;
    if (!dst->id || (src->name && !dst->name))
        return ACTOR_ENOMEM;
    dst->behaviour = src->behaviour;
    dst->arg = src->arg;
    dst->restart = src->restart;
    dst->shutdown_timeout = src->shutdown_timeout;
    return 0;
}

static int check_spec(const struct actor_child_spec *c)
{
    if (!c->id || !c->behaviour || isnan(c->shutdown_timeout))
        return ACTOR_EINVAL;
    if (c->restart != ACTOR_PERMANENT && c->restart != ACTOR_TRANSIENT &&
        c->restart != ACTOR_TEMPORARY)
        return ACTOR_EINVAL;
    return 0;
}

static int check_args(const struct actor_sup_opts *opts, const struct actor_child_spec *children,
                      size_t n)
{
    if (opts->strategy != ACTOR_ONE_FOR_ONE && opts->strategy != ACTOR_ONE_FOR_ALL &&
        opts->strategy != ACTOR_REST_FOR_ONE && opts->strategy != ACTOR_SIMPLE_ONE_FOR_ONE)
        return ACTOR_EINVAL;
    if (!(opts->max_seconds >= 0) || opts->max_restarts > SUP_MAX_RESTARTS_CAP)
        return ACTOR_EINVAL;
    if ((n > 0 && !children) || (opts->strategy == ACTOR_SIMPLE_ONE_FOR_ONE && n != 1))
        return ACTOR_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (check_spec(&children[i]) != 0)
            return ACTOR_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(children[i].id, children[j].id) == 0)
                return ACTOR_EINVAL;
    }
    return 0;
}

/* Copy the options and specs. Static children get their slots now, not yet running. */
static int state_new(const struct actor_sup_opts *opts, const struct actor_child_spec *children,
                     size_t n, struct sup_state **out)
{
    struct sup_state *st = calloc(1, sizeof(*st));

    if (!st)
        return ACTOR_ENOMEM;
    st->opts = *opts;
    st->stop_idx = NO_CHILD;
    st->specs = calloc(n > 0 ? n : 1, sizeof(*st->specs));
    st->rtimes = calloc(opts->max_restarts > 0 ? opts->max_restarts : 1, sizeof(double));
    if (!st->specs || !st->rtimes)
        goto fail;
    for (; st->nspecs < n; st->nspecs++) {
        if (spec_copy(&st->specs[st->nspecs], &children[st->nspecs]) != 0) {
            st->nspecs++; /* so state_free() frees its partial copy */
            goto fail;
        }
    }
    if (opts->strategy != ACTOR_SIMPLE_ONE_FOR_ONE && n > 0) {
        st->kids = calloc(n, sizeof(*st->kids));
        if (!st->kids)
            goto fail;
        st->capkids = st->nkids = n;
        for (size_t i = 0; i < n; i++) {
            st->kids[i].spec = &st->specs[i];
            st->kids[i].arg = st->specs[i].arg;
        }
    }
    *out = st;
    return 0;
fail:
    state_free(st);
    return ACTOR_ENOMEM;
}

static int kids_push(struct sup_state *st, const struct sup_spec *spec, void *arg)
{
    if (st->nkids == st->capkids) {
        size_t cap = st->capkids ? st->capkids * 2 : 8;
        struct sup_child *k = realloc(st->kids, cap * sizeof(*k));

        if (!k)
            return ACTOR_ENOMEM;
        st->kids = k;
        st->capkids = cap;
    }
    st->kids[st->nkids++] = (struct sup_child){.spec = spec, .arg = arg};
    return 0;
}

static int running(const struct sup_child *c)
{
    return !dist_pid_is_none(c->pid);
}

/* A linear scan: simple_one_for_one trees of many thousands of children would want a map. */
static size_t find_child(const struct sup_state *st, struct dist_pid pid)
{
    if (dist_pid_is_none(pid))
        return NO_CHILD;
    for (size_t i = 0; i < st->nkids; i++)
        if (dist_pid_eq(st->kids[i].pid, pid))
            return i;
    return NO_CHILD;
}

static void mark_gone(struct sup_state *st, struct sup_child *c)
{
    c->flags |= CHILD_GONE;
    st->dirty = 1;
}

/* Drop dead-for-good children. Only between phases: a phase holds indices into kids. */
static void compact(struct sup_state *st)
{
    size_t j = 0;

    if (!st->dirty || st->mode != SUP_RUNNING)
        return;
    for (size_t i = 0; i < st->nkids; i++)
        if (!(st->kids[i].flags & CHILD_GONE))
            st->kids[j++] = st->kids[i];
    st->nkids = j;
    st->dirty = 0;
}

/*
 * Record a restart now. Returns 1, recording nothing, when it would be more than
 * max_restarts within max_seconds.
 */
static int intensity_exceeded(struct sup_state *st)
{
    size_t max = st->opts.max_restarts;
    double now = now_seconds();

    if (max == 0)
        return 1;
    while (st->rcount > 0 && now - st->rtimes[st->rhead] > st->opts.max_seconds) {
        st->rhead = (st->rhead + 1) % max;
        st->rcount--;
    }
    if (st->rcount == max)
        return 1;
    st->rtimes[(st->rhead + st->rcount) % max] = now;
    st->rcount++;
    return 0;
}

static int should_restart(const struct sup_child *c, int reason)
{
    switch (c->spec->restart) {
    case ACTOR_PERMANENT:
        return 1;
    case ACTOR_TRANSIENT:
        return reason != ACTOR_NORMAL && reason != ACTOR_SHUTDOWN;
    default:
        return 0;
    }
}

/* ---- Starting and stopping children ------------------------------------------------------ */

static int child_spawn(struct sup_state *st, struct actor *self, struct sup_child *c)
{
    struct actor_spawn_opts so = {
        .flags = ACTOR_SPAWN_LINK,
        .name = c->spec->name,
        .scheduler = -1,
    };
    struct dist_pid pid;
    int err = actor_spawn(st->sys, self, c->spec->behaviour, c->arg, &so, &pid);

    if (err == 0)
        c->pid = pid;
    return err;
}

static void begin_terminate(struct sup_state *st, struct actor *self, int reason);

static void schedule_retry(struct sup_state *st, struct actor *self)
{
    int err;

    if (st->retry_on)
        return;
    err = actor_timer_start(self, SUP_RETRY_DELAY, 0, SUP_TAG_RETRY, &st->retry_timer);
    if (err != 0) {
        /* Without a timer nothing would ever retry: give up as intensity would. */
        begin_terminate(st, self, err);
        return;
    }
    st->retry_on = 1;
}

/*
 * (Re)start every child marked CHILD_START, in start order. one_for_all and rest_for_one
 * stop at the first failure, since later children may depend on the earlier ones.
 */
static void start_marked(struct sup_state *st, struct actor *self)
{
    int ordered = st->opts.strategy == ACTOR_ONE_FOR_ALL || st->opts.strategy == ACTOR_REST_FOR_ONE;

    for (size_t i = 0; i < st->nkids && st->mode == SUP_RUNNING; i++) {
        struct sup_child *c = &st->kids[i];

        if (!(c->flags & CHILD_START))
            continue;
        if (child_spawn(st, self, c) != 0) {
            schedule_retry(st, self);
            if (ordered)
                return;
            continue;
        }
        c->flags &= ~CHILD_START;
        actor__stats_restart(st->sys);
    }
}

static void maybe_exit(struct sup_state *st, struct actor *self)
{
    if (st->done && !st->hold && !st->exited) {
        st->exited = 1;
        actor_exit(self, st->reason);
    }
}

/* Every child of the phase is stopped: exit, or restart the range in start order. */
static void phase_done(struct sup_state *st, struct actor *self)
{
    if (st->mode == SUP_TERMINATING) {
        st->done = 1;
        maybe_exit(st, self);
        return;
    }
    st->mode = SUP_RUNNING;
    for (size_t i = st->lo; i < st->nkids; i++)
        if (!(st->kids[i].flags & CHILD_GONE) && !running(&st->kids[i]))
            st->kids[i].flags |= CHILD_START;
    start_marked(st, self);
}

/*
 * Begin stopping child @i. Returns 0 while its DOWN is awaited, or -1 when it could not be
 * monitored (then it is killed and counted as stopped at once).
 */
static int stop_child(struct sup_state *st, struct actor *self, size_t i)
{
    struct sup_child *c = &st->kids[i];
    double timeout = c->spec->shutdown_timeout;

    /* Unlinked, its end comes as the monitor's DOWN alone; a stale EXIT is ignored. */
    actor_unlink(self, c->pid);
    if (actor_monitor(self, c->pid, &st->stop_ref) != 0) {
        actor_kill(st->sys, c->pid);
        c->pid = DIST_PID_NONE;
        return -1;
    }
    c->flags |= CHILD_STOPPING;
    st->stop_idx = i;
    if (timeout == 0) {
        actor_kill(st->sys, c->pid);
        return 0;
    }
    actor_exit_signal(st->sys, c->pid, ACTOR_SHUTDOWN);
    if (timeout > 0) {
        if (actor_timer_start(self, timeout, 0, SUP_TAG_STOP, &st->stop_timer) == 0)
            st->stop_timer_on = 1;
        else
            actor_kill(st->sys, c->pid); /* no timer to bound the wait: do not wait */
    }
    return 0;
}

/* Stop the latest started running child of the phase, or end the phase. */
static void stop_next(struct sup_state *st, struct actor *self)
{
    if (st->stop_idx != NO_CHILD)
        return;
    for (;;) {
        size_t i = st->nkids;

        while (i > st->lo && !running(&st->kids[i - 1]))
            i--;
        if (i == st->lo) {
            phase_done(st, self);
            return;
        }
        if (stop_child(st, self, i - 1) == 0)
            return;
    }
}

static void begin_restart(struct sup_state *st, struct actor *self, size_t lo)
{
    st->mode = SUP_RESTARTING;
    st->lo = lo;
    stop_next(st, self);
}

static void begin_terminate(struct sup_state *st, struct actor *self, int reason)
{
    if (st->mode == SUP_TERMINATING)
        return;
    st->mode = SUP_TERMINATING;
    st->reason = reason;
    st->lo = 0;
    for (size_t i = 0; i < st->nkids; i++)
        st->kids[i].flags &= ~CHILD_START;
    stop_next(st, self);
}

/* ---- Reacting to messages ------------------------------------------------------------------ */

static void child_exited(struct sup_state *st, struct actor *self, size_t i, int reason)
{
    struct sup_child *c = &st->kids[i];
    int restart = should_restart(c, reason);

    c->pid = DIST_PID_NONE;
    if (!restart &&
        (c->spec->restart == ACTOR_TEMPORARY || st->opts.strategy == ACTOR_SIMPLE_ONE_FOR_ONE))
        mark_gone(st, c);
    if (!restart || st->mode == SUP_TERMINATING)
        return;
    if (st->mode == SUP_RESTARTING && i >= st->lo)
        return; /* the phase restarts it with the rest of its range */
    if (intensity_exceeded(st)) {
        begin_terminate(st, self, ACTOR_SHUTDOWN);
        return;
    }
    if (st->mode == SUP_RESTARTING) {
        /* rest_for_one, below the range: widen it; the phase stops what lies in between. */
        st->lo = i;
        return;
    }
    switch (st->opts.strategy) {
    case ACTOR_ONE_FOR_ALL:
        begin_restart(st, self, 0);
        break;
    case ACTOR_REST_FOR_ONE:
        begin_restart(st, self, i);
        break;
    default:
        c->flags |= CHILD_START;
        start_marked(st, self);
        break;
    }
}

static void on_exit_msg(struct sup_state *st, struct actor *self, struct dist_pid pid, int reason)
{
    size_t i = find_child(st, pid);

    if (i != NO_CHILD) {
        if (!(st->kids[i].flags & CHILD_STOPPING))
            child_exited(st, self, i, reason);
        return;
    }
    if ((!dist_pid_is_none(st->parent) && dist_pid_eq(pid, st->parent)) || reason == ACTOR_SHUTDOWN)
        begin_terminate(st, self, reason);
}

static void on_down(struct sup_state *st, struct actor *self, const struct actor_msg *msg)
{
    struct sup_child *c;

    if (st->stop_idx == NO_CHILD || msg->u.down.ref.id != st->stop_ref.id)
        return;
    c = &st->kids[st->stop_idx];
    if (st->stop_timer_on) {
        actor_timer_cancel(self, st->stop_timer);
        st->stop_timer_on = 0;
    }
    c->pid = DIST_PID_NONE;
    c->flags &= ~CHILD_STOPPING;
    if (c->spec->restart == ACTOR_TEMPORARY)
        mark_gone(st, c);
    st->stop_idx = NO_CHILD;
    stop_next(st, self);
}

static void on_timer(struct sup_state *st, struct actor *self, const struct actor_msg *msg)
{
    uint64_t id = msg->u.timer.id;

    if (msg->u.timer.tag == SUP_TAG_STOP && st->stop_timer_on && id == st->stop_timer) {
        st->stop_timer_on = 0;
        actor_kill(st->sys, st->kids[st->stop_idx].pid);
        return;
    }
    if (msg->u.timer.tag != SUP_TAG_RETRY || !st->retry_on || id != st->retry_timer)
        return;
    st->retry_on = 0;
    if (st->mode != SUP_RUNNING)
        return; /* a restart phase ends by starting what is marked; termination by nothing */
    if (intensity_exceeded(st))
        begin_terminate(st, self, ACTOR_SHUTDOWN);
    else
        start_marked(st, self);
}

static void reply(struct actor *self, const struct actor_msg *req, int err, struct dist_pid child)
{
    struct sup_reply *rep = malloc(sizeof(*rep));

    /* Without memory for the answer the caller times out: nothing better is left to do. */
    if (!rep)
        return;
    *rep = (struct sup_reply){.magic = SUP_MAGIC, .err = err, .child = child};
    if (actor_reply(self, req, actor_type_raw(), rep, sizeof(*rep)) != 0)
        free(rep);
}

static void on_add(struct sup_state *st, struct actor *self, const struct actor_msg *msg, void *arg)
{
    int err;

    if (st->opts.strategy != ACTOR_SIMPLE_ONE_FOR_ONE) {
        reply(self, msg, ACTOR_EINVAL, DIST_PID_NONE);
        return;
    }
    if (st->mode != SUP_RUNNING) {
        reply(self, msg, ACTOR_ENOPROC, DIST_PID_NONE); /* it is shutting down */
        return;
    }
    err = kids_push(st, &st->specs[0], arg);
    if (err == 0) {
        err = child_spawn(st, self, &st->kids[st->nkids - 1]);
        if (err != 0)
            st->nkids--;
    }
    reply(self, msg, err, err == 0 ? st->kids[st->nkids - 1].pid : DIST_PID_NONE);
}

static void on_call(struct sup_state *st, struct actor *self, const struct actor_msg *msg)
{
    const struct sup_req *req = msg->payload;

    /* The request carries a pointer of this process: never honour one from another node. */
    if (msg->type != actor_type_raw() || msg->size != sizeof(*req) || !req ||
        req->magic != SUP_MAGIC || msg->from.node != 0) {
        reply(self, msg, ACTOR_ETYPE, DIST_PID_NONE);
        return;
    }
    switch (req->op) {
    case SUP_OP_PING:
        reply(self, msg, st->init_err, DIST_PID_NONE);
        st->hold = 0;
        maybe_exit(st, self);
        break;
    case SUP_OP_ADD:
        on_add(st, self, msg, req->arg);
        break;
    default:
        reply(self, msg, ACTOR_EINVAL, DIST_PID_NONE);
        break;
    }
}

/* ---- The behaviour ---------------------------------------------------------------------- */

static int sup_init(struct actor *self, void *arg, void **state)
{
    struct sup_state *st = arg;
    int any = 0;

    st->sys = actor_system_of(self);
    /* Before the first spawn: a child that dies at once must not take us down. */
    actor_trap_exit(self, 1);
    for (size_t i = 0; i < st->nkids; i++) {
        int err = child_spawn(st, self, &st->kids[i]);

        if (err == 0) {
            any = 1;
            continue;
        }
        st->init_err = err;
        if (!any && !st->hold) {
            state_free(st);
            return err;
        }
        begin_terminate(st, self, err);
        break;
    }
    *state = st;
    return 0;
}

static int sup_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct sup_state *st = state;

    switch (msg->kind) {
    case ACTOR_MSG_EXIT:
        on_exit_msg(st, self, msg->u.exit.pid, msg->u.exit.reason);
        break;
    case ACTOR_MSG_DOWN:
        on_down(st, self, msg);
        break;
    case ACTOR_MSG_TIMER:
        on_timer(st, self, msg);
        break;
    case ACTOR_MSG_CALL:
        on_call(st, self, msg);
        break;
    default:
        break; /* a supervisor takes no plain messages */
    }
    compact(st);
    return 0;
}

static void sup_terminate(struct actor *self, void *state, int reason)
{
    struct sup_state *st = state;

    if (!st)
        return;
    /* Only an end without the orderly shutdown (a kill) leaves children running. */
    for (size_t i = st->nkids; i-- > 0;)
        if (running(&st->kids[i]))
            actor_kill(st->sys, st->kids[i].pid);
    state_free(st);
}

static const struct actor_behaviour sup_behaviour = {
    .name = "supervisor",
    .init = sup_init,
    .handle = sup_handle,
    .terminate = sup_terminate,
};

/* ---- Public API ------------------------------------------------------------------------ */

/*
 * Call the supervisor @sup from outside any actor. Returns the call's own error (then *answer
 * is untouched), or 0 with *answer set to the supervisor's verdict and *child to its PID.
 */
static int sup_request(struct actor_system *sys, struct dist_pid sup, uint32_t op, void *arg,
                       double timeout, int *answer, struct dist_pid *child)
{
    struct sup_req *req = malloc(sizeof(*req));
    const struct sup_reply *rep;
    struct actor_msg *msg;
    int err;

    if (!req)
        return ACTOR_ENOMEM;
    *req = (struct sup_req){.magic = SUP_MAGIC, .op = op, .arg = arg};
    err = actor_call_wait(sys, sup, actor_type_raw(), req, sizeof(*req), timeout, &msg);
    if (err == ACTOR_ETIMEDOUT || err == ACTOR_ENOPROC) {
        /*
         * The request may have been delivered (and is then the runtime's to free) or not:
         * actor.h does not say which. Leaking a few bytes beats a double free.
         */
        return err;
    }
    if (err != 0) {
        free(req); /* refused before any send */
        return err;
    }
    rep = msg->payload;
    if (msg->type != actor_type_raw() || msg->size != sizeof(*rep) || !rep ||
        rep->magic != SUP_MAGIC) {
        *answer = ACTOR_ETYPE; /* @sup is some other actor */
    } else {
        *answer = rep->err;
        if (child)
            *child = rep->child;
    }
    actor_msg_free(msg);
    return 0;
}

int actor_supervisor_start(struct actor_system *sys, struct actor *parent,
                           const struct actor_sup_opts *opts,
                           const struct actor_child_spec *children, size_t n, struct dist_pid *pid)
{
    struct actor_spawn_opts so = {.flags = parent ? ACTOR_SPAWN_LINK : 0, .scheduler = -1};
    struct sup_state *st;
    struct dist_pid sup;
    int err;

    if (!sys || !opts)
        return ACTOR_EINVAL;
    err = check_args(opts, children, n);
    if (err == 0)
        err = state_new(opts, children, n, &st);
    if (err != 0)
        return err;
    st->parent = parent ? actor_self(parent) : DIST_PID_NONE;
    /* Inside an actor we may not block, so only an outside caller waits for init's verdict. */
    st->hold = parent == NULL;
    err = actor_spawn(sys, parent, &sup_behaviour, st, &so, &sup);
    if (err != 0) {
        state_free(st);
        return err;
    }
    if (parent == NULL) {
        int answer = 0;

        err = sup_request(sys, sup, SUP_OP_PING, NULL, SUP_START_TIMEOUT, &answer, NULL);
        if (err != 0) {
            /* Nobody could reach it: make sure it and its children do not linger. */
            actor_kill(sys, sup);
            return err;
        }
        if (answer != 0)
            return answer; /* it stops its started children in order, then exits */
    }
    if (pid)
        *pid = sup;
    return 0;
}

int actor_supervisor_add(struct actor_system *sys, struct dist_pid sup, void *arg, double timeout,
                         struct dist_pid *child)
{
    struct dist_pid pid = DIST_PID_NONE;
    int answer = 0;
    int err;

    if (!sys)
        return ACTOR_EINVAL;
    err = sup_request(sys, sup, SUP_OP_ADD, arg, timeout, &answer, &pid);
    if (err != 0)
        return err;
    if (answer == 0 && child)
        *child = pid;
    return answer;
}
