/*
 * test_call.c: request and reply: actor_call's continuation (the caller keeps handling
 * messages meanwhile), timeouts, callees that die, calls to the dead, late replies,
 * actor_reply's rules, a reply given after the handler returned, actor_call_wait from a
 * thread of the test and from a scheduler (refused), and actor_cast.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "dist.h"

/* ---- Harness --------------------------------------------------------------------------------
 *
 * Each test gets its own actor system (two schedulers) and a collector actor. Probes, the
 * actors under test, report what happens to them (init, messages, signals, terminate) as raw
 * messages to the collector, which appends them to a log. Because messages from one sender
 * arrive in order, a probe's entries in the log are in the order the probe saw them.
 * The test thread drives probes with struct cmd messages and polls the log, always with a
 * bound (WAIT_SECONDS): a sleep only paces polling, it never decides an outcome.
 */

/* Not every file uses every helper. */
#define HARNESS_FN static __attribute__((unused))

#define WAIT_SECONDS 10.0
#define MAX_EVENTS   65536

enum ev_kind {
    EV_INIT = 1,   /* a probe's init ran: a = its flags */
    EV_MSG,        /* a probe handled OP_ECHO: seq, pid = the message's sender */
    EV_RESULT,     /* a probe ran a command: seq, rc, pid, a */
    EV_AFTER_EXIT, /* a probe's handler went on after actor_exit() */
    EV_EXIT,       /* a trapped exit signal: pid, rc = reason */
    EV_DOWN,       /* a DOWN message: a = ref, pid, rc = reason */
    EV_TIMER,      /* a timer message: a = id, seq = tag */
    EV_OTHER,      /* any other message: rc = its kind */
    EV_TERM,       /* a probe's terminate ran: rc = reason */
    EV_BAD,        /* a callback saw a wrong state, system or message */
};

struct event {
    int kind;
    int rc;
    uint64_t seq;
    uint64_t a;
    struct dist_pid pid;
    struct dist_pid from; /* filled in by the collector: the reporting actor */
};

static struct actor_system *sys;
static int sys_stopped; /* the test shut the system down itself */
static struct dist_pid collector;
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static struct event ev_log[MAX_EVENTS];
static size_t ev_count;
static atomic_uint_fast64_t next_seq = 1;
static uint64_t last_try_seq;   /* the seq of cmd_try()'s last command */
static atomic_int gate_open;    /* OP_GATE waits for this */
static atomic_int gate_entered; /* set by OP_GATE once it waits */

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(void)
{
    struct timespec ts = {0, 1000000};

    nanosleep(&ts, NULL);
}

/* Poll @cond every millisecond until it holds or WAIT_SECONDS pass. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        double end_ = now() + WAIT_SECONDS;                                                        \
        while (!(cond) && now() < end_)                                                            \
            nap();                                                                                 \
    } while (0)

/* A PID as text, for assertion messages (test thread only). */
HARNESS_FN const char *pidstr(struct dist_pid pid)
{
    static char bufs[4][DIST_PID_STRLEN];
    static int next;
    char *buf = bufs[next++ % 4];

    dist_pid_format(buf, DIST_PID_STRLEN, pid);
    return buf;
}

static int collector_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct event e = {.kind = EV_BAD, .rc = (int)msg->kind};

    if (msg->kind == ACTOR_MSG_USER && msg->type == actor_type_raw() && msg->size == sizeof(e))
        memcpy(&e, msg->payload, sizeof(e));
    e.from = msg->from;
    pthread_mutex_lock(&ev_lock);
    if (ev_count < MAX_EVENTS)
        ev_log[ev_count++] = e;
    pthread_mutex_unlock(&ev_lock);
    return 0;
}

/* Report an event to the collector; the sender (the calling actor) is filled in there. */
static void report(int kind, int rc, uint64_t seq, uint64_t a, struct dist_pid pid)
{
    struct event *e = malloc(sizeof(*e));

    if (e == NULL)
        return;
    *e = (struct event){.kind = kind, .rc = rc, .seq = seq, .a = a, .pid = pid};
    if (actor_send(sys, collector, actor_type_raw(), e, sizeof(*e)) != 0)
        free(e);
}

/*
 * Find the @nth (0-based) event of @kind reported by @from (any reporter for DIST_PID_NONE)
 * whose seq is @seq (any for 0). Returns its index in the log, or -1.
 */
static long event_find(int kind, struct dist_pid from, uint64_t seq, int nth, struct event *out)
{
    long found = -1;

    pthread_mutex_lock(&ev_lock);
    for (size_t i = 0; i < ev_count; i++) {
        const struct event *e = &ev_log[i];

        if (e->kind != kind || (!dist_pid_is_none(from) && !dist_pid_eq(e->from, from)))
            continue;
        if (seq != 0 && e->seq != seq)
            continue;
        if (nth-- == 0) {
            if (out != NULL)
                *out = *e;
            found = (long)i;
            break;
        }
    }
    pthread_mutex_unlock(&ev_lock);
    return found;
}

HARNESS_FN int event_count(int kind, struct dist_pid from)
{
    int n = 0;

    pthread_mutex_lock(&ev_lock);
    for (size_t i = 0; i < ev_count; i++)
        if (ev_log[i].kind == kind && (dist_pid_is_none(from) || dist_pid_eq(ev_log[i].from, from)))
            n++;
    pthread_mutex_unlock(&ev_lock);
    return n;
}

/* How many events the log holds. */
HARNESS_FN size_t log_size(void)
{
    size_t n;

    pthread_mutex_lock(&ev_lock);
    n = ev_count;
    pthread_mutex_unlock(&ev_lock);
    return n;
}

/* Wait for the @nth (0-based) event of @kind from @from; assert that it comes. */
HARNESS_FN struct event event_wait(int kind, struct dist_pid from, int nth)
{
    struct event e = {0};

    WAIT_UNTIL(event_find(kind, from, 0, nth, &e) >= 0);
    cr_assert(event_find(kind, from, 0, nth, &e) >= 0, "event %d #%d from %s never came", kind, nth,
              pidstr(from));
    return e;
}

/* ---- The probe: an actor driven by struct cmd messages -------------------------------------- */

enum op {
    OP_NOOP,           /* nothing at all */
    OP_PING,           /* report an EV_RESULT */
    OP_ECHO,           /* report EV_MSG with seq and the sender */
    OP_FAIL,           /* return arg from the handler */
    OP_EXIT,           /* actor_exit(arg), then report EV_AFTER_EXIT */
    OP_TRAP,           /* actor_trap_exit(arg) */
    OP_LINK,           /* actor_link(pid) */
    OP_UNLINK,         /* actor_unlink(pid) */
    OP_MONITOR,        /* actor_monitor(pid); result a = ref */
    OP_DEMONITOR,      /* actor_demonitor(ref a, flags arg) */
    OP_SPAWN,          /* spawn a probe, spawn flags arg, probe flags a; result pid, a = ref */
    OP_SEND,           /* send OP_ECHO with seq a to pid */
    OP_TIMER,          /* actor_timer_start(d1, d2, tag a), arg times (once for 0); a = id */
    OP_SEND_AFTER,     /* actor_send_after(d1, pid, OP_ECHO with seq a); result a = id */
    OP_CANCEL,         /* actor_timer_cancel(a) */
    OP_GATE,           /* block until gate_open (bounded), then report */
    OP_GATE_DEMONITOR, /* OP_GATE, then actor_demonitor(ref a, flags arg) */
    OP_GATE_UNLINK,    /* OP_GATE, then actor_unlink(pid) */
    OP_EXIT_SIGNAL,    /* actor_exit_signal(pid, arg) */
};

struct cmd {
    int op;
    int arg;
    uint64_t seq; /* filled in by cmd_send() */
    uint64_t a;
    double d1, d2;
    struct dist_pid pid;
};

#define PROBE_TRAP        (1u << 0) /* trap exits from init on */
#define PROBE_INIT_FAIL   (1u << 1) /* init returns PROBE_INIT_REASON */
#define PROBE_INIT_REASON 77
#define PROBE_MAGIC       0x70726f62u

struct probe {
    uint32_t magic;
    struct dist_pid self;
};

static const struct actor_behaviour probe_behaviour;

static void *cmd_new(int op, uint64_t seq, uint64_t a)
{
    struct cmd *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->op = op;
        c->seq = seq;
        c->a = a;
    }
    return c;
}

static void gate_wait(void)
{
    double end = now() + WAIT_SECONDS;

    atomic_store(&gate_entered, 1);
    while (!atomic_load(&gate_open) && now() < end)
        nap();
}

static int probe_spawn(struct actor *self, const struct cmd *c)
{
    struct actor_ref ref = {0};
    struct dist_pid child = DIST_PID_NONE;
    struct actor_spawn_opts o = {.flags = (unsigned)c->arg, .scheduler = -1, .monitor_ref = &ref};
    int rc = actor_spawn(actor_system_of(self), self, &probe_behaviour, (void *)(uintptr_t)c->a, &o,
                         &child);

    report(EV_RESULT, rc, c->seq, ref.id, child);
    return 0;
}

static int probe_timer(struct actor *self, const struct cmd *c)
{
    uint64_t id = 0;
    int rc;

    if (c->op == OP_TIMER) {
        rc = actor_timer_start(self, c->d1, c->d2, c->a, &id);
        for (int i = 1; rc == 0 && i < c->arg; i++)
            rc = actor_timer_start(self, c->d1, c->d2, c->a, NULL);
    } else {
        void *echo = cmd_new(OP_ECHO, c->a, 0);

        rc = actor_send_after(self, c->d1, c->pid, actor_type_raw(), echo, sizeof(struct cmd), &id);
        if (rc != 0)
            free(echo);
    }
    report(EV_RESULT, rc, c->seq, id, DIST_PID_NONE);
    return 0;
}

static int probe_command(struct actor *self, const struct cmd *c)
{
    struct actor_ref ref = {0};
    void *echo;
    int rc = 0;

    switch (c->op) {
    case OP_NOOP:
        return 0;
    case OP_PING:
        break;
    case OP_ECHO:
        return 0; /* reported by the caller, which knows the sender */
    case OP_FAIL:
        return c->arg;
    case OP_EXIT:
        actor_exit(self, c->arg);
        report(EV_AFTER_EXIT, 0, c->seq, 0, DIST_PID_NONE);
        return 0;
    case OP_TRAP:
        actor_trap_exit(self, c->arg);
        break;
    case OP_LINK:
        rc = actor_link(self, c->pid);
        break;
    case OP_UNLINK:
        rc = actor_unlink(self, c->pid);
        break;
    case OP_MONITOR:
        rc = actor_monitor(self, c->pid, &ref);
        break;
    case OP_DEMONITOR:
        rc = actor_demonitor(self, (struct actor_ref){c->a}, (unsigned)c->arg);
        break;
    case OP_SPAWN:
        return probe_spawn(self, c);
    case OP_SEND:
        echo = cmd_new(OP_ECHO, c->a, 0);
        rc = actor_send(actor_system_of(self), c->pid, actor_type_raw(), echo, sizeof(*c));
        if (rc != 0)
            free(echo);
        break;
    case OP_TIMER:
    case OP_SEND_AFTER:
        return probe_timer(self, c);
    case OP_CANCEL:
        rc = actor_timer_cancel(self, c->a);
        break;
    case OP_GATE:
        gate_wait();
        break;
    case OP_GATE_DEMONITOR:
        gate_wait();
        rc = actor_demonitor(self, (struct actor_ref){c->a}, (unsigned)c->arg);
        break;
    case OP_GATE_UNLINK:
        gate_wait();
        rc = actor_unlink(self, c->pid);
        break;
    case OP_EXIT_SIGNAL:
        rc = actor_exit_signal(actor_system_of(self), c->pid, c->arg);
        break;
    default:
        rc = ACTOR_EINVAL;
    }
    report(EV_RESULT, rc, c->seq, ref.id, c->pid);
    return 0;
}

static int probe_init(struct actor *self, void *arg, void **state)
{
    unsigned flags = (unsigned)(uintptr_t)arg;
    struct probe *p;

    if (actor_system_of(self) != sys)
        report(EV_BAD, 1, 0, 0, DIST_PID_NONE);
    report(EV_INIT, 0, 0, flags, actor_self(self));
    if (flags & PROBE_INIT_FAIL)
        return PROBE_INIT_REASON;
    p = malloc(sizeof(*p));
    if (p == NULL)
        return ACTOR_ENOMEM;
    p->magic = PROBE_MAGIC;
    p->self = actor_self(self);
    if (flags & PROBE_TRAP)
        actor_trap_exit(self, 1);
    *state = p;
    return 0;
}

static int probe_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct probe *p = state;
    const struct cmd *c = msg->payload;

    if (p == NULL || p->magic != PROBE_MAGIC || !dist_pid_eq(p->self, actor_self(self)))
        report(EV_BAD, 2, 0, 0, DIST_PID_NONE);
    switch (msg->kind) {
    case ACTOR_MSG_USER:
        if (msg->type != actor_type_raw() || msg->size != sizeof(*c))
            break;
        if (c->op == OP_ECHO)
            report(EV_MSG, 0, c->seq, 0, msg->from);
        return probe_command(self, c);
    case ACTOR_MSG_EXIT:
        report(EV_EXIT, msg->u.exit.reason, 0, 0, msg->u.exit.pid);
        /* A trapping probe obeys the system's shutdown, so that teardown need not kill it. */
        if (msg->u.exit.reason == ACTOR_SHUTDOWN && dist_pid_is_none(msg->u.exit.pid))
            actor_exit(self, ACTOR_SHUTDOWN);
        return 0;
    case ACTOR_MSG_DOWN:
        report(EV_DOWN, msg->u.down.reason, 0, msg->u.down.ref.id, msg->u.down.pid);
        return 0;
    case ACTOR_MSG_TIMER:
        report(EV_TIMER, 0, msg->u.timer.tag, msg->u.timer.id, DIST_PID_NONE);
        return 0;
    default:
        break;
    }
    report(EV_OTHER, (int)msg->kind, 0, 0, msg->from);
    return 0;
}

static void probe_terminate(struct actor *self, void *state, int reason)
{
    struct probe *p = state;

    if (p != NULL && (p->magic != PROBE_MAGIC || !dist_pid_eq(p->self, actor_self(self))))
        report(EV_BAD, 3, 0, 0, DIST_PID_NONE);
    report(EV_TERM, reason, 0, 0, actor_self(self));
    if (p != NULL) {
        p->magic = 0;
        free(p);
    }
}

static const struct actor_behaviour probe_behaviour = {
    .name = "probe",
    .init = probe_init,
    .handle = probe_handle,
    .terminate = probe_terminate,
};

/* Spawn a probe from the test thread. */
HARNESS_FN struct dist_pid spawn_probe(unsigned flags)
{
    struct dist_pid pid = DIST_PID_NONE;
    int rc = actor_spawn(sys, NULL, &probe_behaviour, (void *)(uintptr_t)flags, NULL, &pid);

    cr_assert_eq(rc, 0, "actor_spawn: %s", actor_strerror(rc));
    cr_assert(!dist_pid_is_none(pid));
    return pid;
}

/* Send @c to @to from the test thread; returns actor_send's result. */
HARNESS_FN int cmd_try(struct dist_pid to, struct cmd c)
{
    struct cmd *m = malloc(sizeof(*m));
    int rc;

    cr_assert_not_null(m);
    c.seq = atomic_fetch_add(&next_seq, 1);
    last_try_seq = c.seq;
    *m = c;
    rc = actor_send(sys, to, actor_type_raw(), m, sizeof(*m));
    if (rc != 0)
        free(m); /* a failed send leaves the payload with the caller */
    return rc;
}

/* Send @c to @to from the test thread; returns the seq that its result will carry. */
HARNESS_FN uint64_t cmd_send(struct dist_pid to, struct cmd c)
{
    struct cmd *m = malloc(sizeof(*m));
    int rc;

    cr_assert_not_null(m);
    c.seq = atomic_fetch_add(&next_seq, 1);
    *m = c;
    rc = actor_send(sys, to, actor_type_raw(), m, sizeof(*m));
    if (rc != 0)
        free(m);
    cr_assert_eq(rc, 0, "send op %d to %s: %s", c.op, pidstr(to), actor_strerror(rc));
    return c.seq;
}

/* Run @c in @to and wait for its EV_RESULT. */
HARNESS_FN struct event cmd_run(struct dist_pid to, struct cmd c)
{
    uint64_t seq = cmd_send(to, c);
    struct event e = {0};

    WAIT_UNTIL(event_find(EV_RESULT, to, seq, 0, &e) >= 0);
    cr_assert(event_find(EV_RESULT, to, seq, 0, &e) >= 0, "op %d in %s never completed", c.op,
              pidstr(to));
    return e;
}

struct find_ctx {
    struct dist_pid pid;
    int found;
    struct actor_info info;
    char name[64];
    char behaviour[64];
    size_t listed;
};

static void find_cb(const struct actor_info *info, void *user_data)
{
    struct find_ctx *ctx = user_data;

    ctx->listed++;
    if (!dist_pid_eq(info->pid, ctx->pid))
        return;
    ctx->found++;
    ctx->info = *info;
    snprintf(ctx->name, sizeof(ctx->name), "%s", info->name ? info->name : "(null)");
    snprintf(ctx->behaviour, sizeof(ctx->behaviour), "%s",
             info->behaviour ? info->behaviour : "(null)");
}

/* Non-zero while actor_system_list() shows @pid. */
HARNESS_FN int is_alive(struct dist_pid pid)
{
    struct find_ctx ctx = {.pid = pid};

    actor_system_list(sys, find_cb, &ctx);
    return ctx.found > 0;
}

/* Spawn a probe on @scheduler. */
HARNESS_FN struct dist_pid spawn_on(int scheduler, unsigned flags)
{
    struct actor_spawn_opts o = {.scheduler = scheduler};
    struct dist_pid pid;
    int rc = actor_spawn(sys, NULL, &probe_behaviour, (void *)(uintptr_t)flags, &o, &pid);

    cr_assert_eq(rc, 0, "spawn on scheduler %d: %s", scheduler, actor_strerror(rc));
    return pid;
}

/* @pid's mailbox depth as actor_system_list() shows it (0 when not listed). */
HARNESS_FN size_t depth_of(struct dist_pid pid)
{
    struct find_ctx ctx = {.pid = pid};

    actor_system_list(sys, find_cb, &ctx);
    return ctx.found ? ctx.info.mailbox_depth : 0;
}

/* Wait until @pid has ended: its terminate reported and it left the process table. */
HARNESS_FN struct event wait_dead(struct dist_pid pid)
{
    struct event e = event_wait(EV_TERM, pid, 0);

    WAIT_UNTIL(!is_alive(pid));
    cr_assert(!is_alive(pid), "%s still listed after its terminate ran", pidstr(pid));
    return e;
}

/*
 * Assert that @pid is alive and stays so: a signal that was going to end it had time to (a
 * round trip through it, a short grace, another round trip). Only a lost bug can pass.
 */
HARNESS_FN void assert_survives(struct dist_pid pid)
{
    struct timespec grace = {0, 50 * 1000 * 1000};
    struct event term;

    for (int round = 0; round < 2; round++) {
        uint64_t seq;

        if (round == 1)
            nanosleep(&grace, NULL);
        if (cmd_try(pid, (struct cmd){.op = OP_PING}) != 0 ||
            event_find(EV_TERM, pid, 0, 0, NULL) >= 0) {
            term = event_wait(EV_TERM, pid, 0);
            cr_assert_fail("%s died, reason %s (%d)", pidstr(pid), actor_reason_name(term.rc),
                           term.rc);
        }
        seq = last_try_seq;
        WAIT_UNTIL(event_find(EV_RESULT, pid, seq, 0, NULL) >= 0 ||
                   event_find(EV_TERM, pid, 0, 0, NULL) >= 0);
        if (event_find(EV_TERM, pid, 0, 0, &term) >= 0)
            cr_assert_fail("%s died, reason %s (%d)", pidstr(pid), actor_reason_name(term.rc),
                           term.rc);
        cr_assert(event_find(EV_RESULT, pid, seq, 0, NULL) >= 0, "%s stopped answering",
                  pidstr(pid));
    }
    cr_assert(is_alive(pid), "%s is not listed", pidstr(pid));
}

/* A round trip through @pid: everything it was sent before has been handled. */
HARNESS_FN void barrier(struct dist_pid pid)
{
    cmd_run(pid, (struct cmd){.op = OP_PING});
}

static void setup(void)
{
    static const struct actor_behaviour coll = {.name = "collector", .handle = collector_handle};
    struct actor_system_opts o = {.schedulers = 2};
    struct actor_spawn_opts coll_opts = {.scheduler = 0};
    int rc;

    ev_count = 0;
    sys_stopped = 0;
    atomic_store(&gate_open, 0);
    atomic_store(&gate_entered, 0);
    rc = actor_system_new(&o, &sys);
    cr_assert_eq(rc, 0, "actor_system_new: %s", actor_strerror(rc));
    rc = actor_system_start(sys);
    cr_assert_eq(rc, 0, "actor_system_start: %s", actor_strerror(rc));
    /* On scheduler 0: tests that hold a scheduler in OP_GATE hold scheduler 1. */
    rc = actor_spawn(sys, NULL, &coll, NULL, &coll_opts, &collector);
    cr_assert_eq(rc, 0, "spawn collector: %s", actor_strerror(rc));
}

static void teardown(void)
{
    atomic_store(&gate_open, 1);
    if (sys == NULL)
        return;
    if (!sys_stopped)
        actor_system_shutdown(sys, 5.0);
    actor_system_free(sys);
    sys = NULL;
}

/* No callback saw a wrong state, system or message. */
HARNESS_FN void assert_clean(void)
{
    struct event e;

    cr_assert(event_find(EV_BAD, DIST_PID_NONE, 0, 0, &e) < 0, "EV_BAD %d from %s", e.rc,
              pidstr(e.from));
}

/* ---- A call probe: a probe that also calls and serves calls --------------------------------- */

#define EV_CONT    (EV_BAD + 1) /* a continuation ran: seq = the call's, rc = err, a, pid */
#define EV_CALLED  (EV_BAD + 2) /* a call arrived: a = its value, pid = its sender */
#define EV_REPLIED (EV_BAD + 3) /* actor_reply() returned rc */

enum call_op {
    OP_CALL =
        100,      /* actor_call(pid, server op arg, value a, timeout d1); continuation returns d2 */
    OP_CALL_WAIT, /* actor_call_wait() from this handler; result a = elapsed ms */
    SV_ECHO,      /* (server op) reply value + 1 */
    SV_IGNORE,    /* never reply */
    SV_CRASH,     /* crash with 42 without replying */
    SV_DEFER,     /* keep the request; reply value + 1 on SV_RELEASE */
    SV_RELEASE,   /* (user message) answer the kept request */
    SV_REPLY_USER, /* (user message) actor_reply() to this non-call message */
    SV_ECHO_TWICE, /* reply value + 1, then value + 2 */
};

struct callprobe {
    struct probe probe; /* first: probe_handle and probe_terminate take it as their state */
    struct actor_msg saved;
    uint64_t saved_value;
    int has_saved;
};

struct call_ctx {
    uint64_t seq;
    int ret;
};

static void *value_new(uint64_t v)
{
    uint64_t *p = malloc(sizeof(*p));

    if (p != NULL)
        *p = v;
    return p;
}

static int on_reply(struct actor *self, void *state, int err, struct actor_msg *reply,
                    void *cb_data)
{
    struct callprobe *cp = state;
    struct call_ctx *ctx = cb_data;
    struct dist_pid from = DIST_PID_NONE;
    uint64_t v = 0;
    int ret = ctx->ret;

    if (cp == NULL || cp->probe.magic != PROBE_MAGIC ||
        !dist_pid_eq(cp->probe.self, actor_self(self)))
        report(EV_BAD, 5, 0, 0, DIST_PID_NONE);
    if (err == 0) {
        if (reply == NULL || reply->type != actor_type_raw() || reply->size != sizeof(v)) {
            report(EV_BAD, 6, 0, 0, DIST_PID_NONE);
        } else {
            memcpy(&v, reply->payload, sizeof(v));
            from = reply->from;
        }
    }
    report(EV_CONT, err, ctx->seq, v, from);
    free(ctx);
    return ret;
}

static int callprobe_call(struct actor *self, const struct cmd *c)
{
    struct call_ctx *ctx = malloc(sizeof(*ctx));
    struct cmd *req = cmd_new(c->arg, 0, c->a);
    int rc;

    if (ctx == NULL || req == NULL)
        return ACTOR_ENOMEM;
    *ctx = (struct call_ctx){.seq = c->seq, .ret = (int)c->d2};
    rc = actor_call(self, c->pid, actor_type_raw(), req, sizeof(*req), c->d1, on_reply, ctx);
    if (rc != 0) {
        free(req);
        free(ctx);
    }
    report(EV_RESULT, rc, c->seq, 0, c->pid);
    return 0;
}

static int callprobe_call_wait(struct actor *self, const struct cmd *c)
{
    struct cmd *req = cmd_new(SV_ECHO, 0, c->a);
    struct actor_msg *reply = NULL;
    double t0 = now();
    int rc = actor_call_wait(actor_system_of(self), c->pid, actor_type_raw(), req, sizeof(*req),
                             1.0, &reply);

    if (rc == 0)
        actor_msg_free(reply);
    else if (rc == ACTOR_EINVAL || rc == ACTOR_ENOMEM)
        free(req); /* refused before any send (see call_wait) */
    report(EV_RESULT, rc, c->seq, (uint64_t)((now() - t0) * 1000), c->pid);
    return 0;
}

static void reply_value(struct actor *self, const struct actor_msg *req, uint64_t v)
{
    void *p = value_new(v);
    int rc = actor_reply(self, req, actor_type_raw(), p, sizeof(uint64_t));

    if (rc != 0)
        free(p);
    report(EV_REPLIED, rc, 0, v, req->from);
}

static int callprobe_serve(struct actor *self, struct callprobe *cp, struct actor_msg *msg)
{
    const struct cmd *c = msg->payload;

    if (msg->type != actor_type_raw() || msg->size != sizeof(*c)) {
        report(EV_BAD, 7, 0, 0, msg->from);
        return 0;
    }
    report(EV_CALLED, 0, 0, c->a, msg->from);
    switch (c->op) {
    case SV_ECHO:
        reply_value(self, msg, c->a + 1);
        return 0;
    case SV_ECHO_TWICE:
        reply_value(self, msg, c->a + 1);
        reply_value(self, msg, c->a + 2);
        return 0;
    case SV_CRASH:
        return 42;
    case SV_DEFER:
        cp->saved = *msg;
        cp->saved.payload = NULL; /* the runtime frees the request; only who and ref matter */
        cp->saved_value = c->a;
        cp->has_saved = 1;
        return 0;
    default:
        return 0;
    }
}

static int callprobe_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct callprobe *cp = state;
    const struct cmd *c = msg->payload;

    if (msg->kind == ACTOR_MSG_CALL)
        return callprobe_serve(self, cp, msg);
    if (msg->kind != ACTOR_MSG_USER || msg->type != actor_type_raw() || msg->size != sizeof(*c))
        return probe_handle(self, state, msg);
    switch (c->op) {
    case OP_CALL:
        return callprobe_call(self, c);
    case OP_CALL_WAIT:
        return callprobe_call_wait(self, c);
    case SV_RELEASE:
        if (cp->has_saved) {
            cp->has_saved = 0;
            reply_value(self, &cp->saved, cp->saved_value + 1);
        }
        return 0;
    case SV_REPLY_USER:
        reply_value(self, msg, 0);
        return 0;
    default:
        return probe_handle(self, state, msg);
    }
}

static int callprobe_init(struct actor *self, void *arg, void **state)
{
    struct callprobe *cp = calloc(1, sizeof(*cp));

    if (cp == NULL)
        return ACTOR_ENOMEM;
    cp->probe.magic = PROBE_MAGIC;
    cp->probe.self = actor_self(self);
    *state = cp;
    return 0;
}

static const struct actor_behaviour callprobe_behaviour = {
    .name = "callprobe",
    .init = callprobe_init,
    .handle = callprobe_handle,
    .terminate = probe_terminate,
};

/* Spawn a call probe on @scheduler (-1: any). */
static struct dist_pid spawn_cp(int scheduler)
{
    struct actor_spawn_opts o = {.scheduler = scheduler};
    struct dist_pid pid;
    int rc = actor_spawn(sys, NULL, &callprobe_behaviour, NULL, &o, &pid);

    cr_assert_eq(rc, 0, "spawn: %s", actor_strerror(rc));
    return pid;
}

/* Have @caller call @server; returns the call's seq (its continuation reports it). */
static uint64_t call_from(struct dist_pid caller, struct dist_pid server, int op, uint64_t value,
                          double timeout)
{
    struct event r = cmd_run(
        caller, (struct cmd){.op = OP_CALL, .arg = op, .a = value, .d1 = timeout, .pid = server});

    cr_assert_eq(r.rc, 0, "actor_call: %s", actor_strerror(r.rc));
    return r.seq;
}

static struct event wait_cont(struct dist_pid caller, uint64_t seq)
{
    struct event e = {0};

    WAIT_UNTIL(event_find(EV_CONT, caller, seq, 0, &e) >= 0);
    cr_assert(event_find(EV_CONT, caller, seq, 0, &e) >= 0, "the continuation never ran");
    return e;
}

/*
 * actor.h does not say who owns the request after ACTOR_ETIMEDOUT or ACTOR_ENOPROC: it may
 * have been delivered (the runtime's) or not (ours). Only refusals before any send are
 * surely ours; otherwise this may leak a request, which beats a double free.
 */
static int call_wait(struct dist_pid to, int op, uint64_t value, double timeout,
                     struct actor_msg **reply)
{
    struct cmd *req = cmd_new(op, 0, value);
    int rc = actor_call_wait(sys, to, actor_type_raw(), req, sizeof(*req), timeout, reply);

    if (rc == ACTOR_EINVAL || rc == ACTOR_ENOMEM)
        free(req);
    return rc;
}

static uint64_t reply_value_of(const struct actor_msg *reply)
{
    uint64_t v = 0;

    cr_assert_not_null(reply);
    cr_assert_eq(reply->type, actor_type_raw());
    cr_assert_eq(reply->size, sizeof(v));
    memcpy(&v, reply->payload, sizeof(v));
    return v;
}

static void grace(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};

    nanosleep(&ts, NULL);
}

TestSuite(call, .init = setup, .fini = teardown, .timeout = 60);

Test(call, call_wait_from_a_thread_gets_the_reply)
{
    struct dist_pid s = spawn_cp(-1);
    struct actor_msg *reply = NULL;
    struct event called;
    int rc = call_wait(s, SV_ECHO, 41, 5.0, &reply);

    cr_assert_eq(rc, 0, "actor_call_wait: %s", actor_strerror(rc));
    cr_assert_eq(reply_value_of(reply), 42u);
    cr_assert(dist_pid_eq(reply->from, s), "reply from %s, not %s", pidstr(reply->from), pidstr(s));
    actor_msg_free(reply);
    called = event_wait(EV_CALLED, s, 0);
    cr_assert_eq(called.a, 41u);

    /* A taken payload is the caller's; actor_msg_free leaves it alone. */
    rc = call_wait(s, SV_ECHO, 99, 5.0, &reply);
    cr_assert_eq(rc, 0);
    {
        uint64_t *v = actor_msg_take(reply);

        cr_assert_eq(*v, 100u);
        actor_msg_free(reply);
        free(v);
    }
}

Test(call, call_in_an_actor_does_not_block_it)
{
    struct dist_pid s = spawn_cp(1), c = spawn_cp(0);
    uint64_t call, echo;
    struct event cont;
    long i_call, i_echo, i_cont;

    cmd_send(s, (struct cmd){.op = OP_GATE}); /* the server is busy until the gate opens */
    WAIT_UNTIL(atomic_load(&gate_entered));
    call = call_from(c, s, SV_ECHO, 41, 10.0);
    echo = cmd_send(c, (struct cmd){.op = OP_ECHO});
    event_wait(EV_MSG, c, 0); /* handled while the call is outstanding */
    cr_assert_eq(event_count(EV_CONT, c), 0, "the continuation ran before the reply");
    atomic_store(&gate_open, 1);
    cont = wait_cont(c, call);
    cr_assert_eq(cont.rc, 0, "err %s", actor_strerror(cont.rc));
    cr_assert_eq(cont.a, 42u);
    cr_assert(dist_pid_eq(cont.pid, s));
    i_call = event_find(EV_RESULT, c, call, 0, NULL);
    i_echo = event_find(EV_MSG, c, echo, 0, NULL);
    i_cont = event_find(EV_CONT, c, call, 0, NULL);
    cr_assert(i_call < i_echo && i_echo < i_cont, "call %ld, other message %ld, reply %ld", i_call,
              i_echo, i_cont);
    barrier(c);
    cr_assert_eq(event_count(EV_CONT, c), 1, "the continuation ran twice");
    assert_clean();
}

Test(call, the_callee_sees_a_call_from_the_caller)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    uint64_t call = call_from(c, s, SV_ECHO, 7, 5.0);
    struct event e = event_wait(EV_CALLED, s, 0);

    cr_assert(dist_pid_eq(e.pid, c), "the request came from %s, not %s", pidstr(e.pid), pidstr(c));
    cr_assert_eq(wait_cont(c, call).a, 8u);
    cr_assert_eq(event_wait(EV_REPLIED, s, 0).rc, 0);
}

Test(call, a_timeout_gives_etimedout_once)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    double t0 = now();
    uint64_t call = call_from(c, s, SV_IGNORE, 1, 0.1);
    struct event cont = wait_cont(c, call);

    cr_assert_eq(cont.rc, ACTOR_ETIMEDOUT, "err %s", actor_strerror(cont.rc));
    cr_assert_geq(now() - t0, 0.095, "timed out after %.3f s, asked 0.1", now() - t0);
    grace(0.2);
    barrier(c);
    cr_assert_eq(event_count(EV_CONT, c), 1);
    assert_clean();
}

Test(call, call_wait_times_out)
{
    struct dist_pid s = spawn_cp(-1);
    struct actor_msg *sentinel = (struct actor_msg *)&s, *reply = sentinel;
    double t0 = now();
    int rc = call_wait(s, SV_IGNORE, 1, 0.1, &reply);

    cr_assert_eq(rc, ACTOR_ETIMEDOUT, "%s", actor_strerror(rc));
    cr_assert_geq(now() - t0, 0.095);
    cr_assert_lt(now() - t0, 5.0);
    cr_assert_eq(reply, sentinel, "a failed call_wait touched *reply");
}

Test(call, a_late_reply_is_dropped)
{
    struct dist_pid s = spawn_cp(1), c = spawn_cp(0);
    struct actor_msg *reply = NULL;
    uint64_t call;
    int rc;

    cmd_send(s, (struct cmd){.op = OP_GATE});
    WAIT_UNTIL(atomic_load(&gate_entered));
    call = call_from(c, s, SV_ECHO, 1, 0.1);
    cr_assert_eq(wait_cont(c, call).rc, ACTOR_ETIMEDOUT);
    rc = call_wait(s, SV_ECHO, 10, 0.1, &reply);
    cr_assert_eq(rc, ACTOR_ETIMEDOUT);
    atomic_store(&gate_open, 1);
    event_wait(EV_REPLIED, s, 1); /* both late replies sent */
    /* The server's next message to the caller comes after its late reply. */
    cmd_run(s, (struct cmd){.op = OP_SEND, .pid = c, .a = 777});
    event_wait(EV_MSG, c, 0);
    cr_assert_eq(event_count(EV_CONT, c), 1, "the late reply reached the continuation");
    cr_assert_eq(event_count(EV_OTHER, c), 0, "the late reply arrived as a message");
    /* The thread's next call gets its own reply, not the stale one. */
    rc = call_wait(s, SV_ECHO, 100, 5.0, &reply);
    cr_assert_eq(rc, 0, "%s", actor_strerror(rc));
    cr_assert_eq(reply_value_of(reply), 101u, "a stale reply answered a new call");
    actor_msg_free(reply);
    assert_clean();
}

Test(call, the_callee_dying_gives_enoproc)
{
    struct dist_pid s = spawn_cp(-1), s2 = spawn_cp(-1), c = spawn_cp(-1);
    struct actor_msg *reply = NULL;
    double t0 = now();
    uint64_t call = call_from(c, s, SV_CRASH, 1, 5.0);
    struct event cont = wait_cont(c, call);
    int rc;

    cr_assert_eq(cont.rc, ACTOR_ENOPROC, "err %s", actor_strerror(cont.rc));
    cr_assert_lt(now() - t0, 4.0, "the death was noticed only at the timeout");
    cr_assert(is_alive(c), "the caller died with its callee");
    t0 = now();
    rc = call_wait(s2, SV_CRASH, 1, 5.0, &reply);
    cr_assert_eq(rc, ACTOR_ENOPROC, "%s", actor_strerror(rc));
    cr_assert_lt(now() - t0, 4.0);
    barrier(c);
    cr_assert_eq(event_count(EV_CONT, c), 1);
}

Test(call, calling_a_dead_actor_is_enoproc)
{
    struct dist_pid dead = spawn_cp(-1), c = spawn_cp(-1);
    struct actor_msg *reply = NULL;
    struct event r;
    int rc;

    cr_assert_eq(actor_kill(sys, dead), 0);
    wait_dead(dead);
    r = cmd_run(c, (struct cmd){.op = OP_CALL, .arg = SV_ECHO, .d1 = 5.0, .pid = dead});
    if (r.rc == 0) {
        cr_assert_eq(wait_cont(c, r.seq).rc, ACTOR_ENOPROC);
    } else {
        cr_assert_eq(r.rc, ACTOR_ENOPROC, "%s", actor_strerror(r.rc));
        barrier(c);
        cr_assert_eq(event_count(EV_CONT, c), 0, "the continuation of a refused call ran");
    }
    rc = call_wait(dead, SV_ECHO, 1, 5.0, &reply);
    cr_assert_eq(rc, ACTOR_ENOPROC, "%s", actor_strerror(rc));
}

Test(call, reply_outside_a_call_is_einval)
{
    struct dist_pid s = spawn_cp(-1);

    cmd_send(s, (struct cmd){.op = SV_REPLY_USER});
    cr_assert_eq(event_wait(EV_REPLIED, s, 0).rc, ACTOR_EINVAL);
    cr_assert(is_alive(s));
}

Test(call, a_request_may_be_answered_later)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    uint64_t call = call_from(c, s, SV_DEFER, 20, 10.0);
    struct event cont;

    event_wait(EV_CALLED, s, 0);
    barrier(s);
    cr_assert_eq(event_count(EV_CONT, c), 0);
    cmd_send(s, (struct cmd){.op = SV_RELEASE});
    cont = wait_cont(c, call);
    cr_assert_eq(cont.rc, 0, "err %s", actor_strerror(cont.rc));
    cr_assert_eq(cont.a, 21u);
    cr_assert_eq(event_wait(EV_REPLIED, s, 0).rc, 0);
}

Test(call, call_wait_on_a_scheduler_is_einval)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    struct event r = cmd_run(c, (struct cmd){.op = OP_CALL_WAIT, .pid = s, .a = 1});

    cr_assert_eq(r.rc, ACTOR_EINVAL, "actor_call_wait in a handler: %s", actor_strerror(r.rc));
    cr_assert_lt(r.a, 500u, "it blocked for %llu ms", (unsigned long long)r.a);
    barrier(s);
    cr_assert_eq(event_count(EV_CALLED, s), 0, "the refused request was delivered");
}

Test(call, several_calls_in_flight)
{
    enum { N = 3 };
    struct dist_pid s[N], c = spawn_cp(-1);
    uint64_t call[N];

    for (int i = 0; i < N; i++)
        s[i] = spawn_cp(-1);
    for (int i = 0; i < N; i++)
        call[i] = call_from(c, s[i], SV_ECHO, 1000 * (uint64_t)(i + 1), 5.0);
    call_from(c, s[0], SV_ECHO, 5, 5.0); /* two at once to the same server */
    for (int i = 0; i < N; i++) {
        struct event e = wait_cont(c, call[i]);

        cr_assert_eq(e.rc, 0);
        cr_assert_eq(e.a, 1000 * (uint64_t)(i + 1) + 1, "call %d got the reply to another", i);
        cr_assert(dist_pid_eq(e.pid, s[i]));
    }
    WAIT_UNTIL(event_count(EV_CONT, c) == N + 1);
    barrier(c);
    cr_assert_eq(event_count(EV_CONT, c), N + 1);
}

Test(call, a_failing_continuation_crashes_the_caller)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    struct event r = cmd_run(
        c, (struct cmd){.op = OP_CALL, .arg = SV_ECHO, .a = 1, .d1 = 5.0, .d2 = 13, .pid = s});

    cr_assert_eq(r.rc, 0);
    wait_cont(c, r.seq);
    cr_assert_eq(wait_dead(c).rc, 13, "a continuation's error is the caller's reason");
}

#define THREAD_CALLS 500

struct caller_arg {
    struct dist_pid server;
    uint64_t base;
    int ok;
};

static void *caller_thread(void *arg)
{
    struct caller_arg *ca = arg;

    for (int i = 0; i < THREAD_CALLS; i++) {
        struct actor_msg *reply = NULL;
        uint64_t v = 0;

        if (call_wait(ca->server, SV_ECHO, ca->base + (uint64_t)i, 5.0, &reply) != 0)
            continue;
        if (reply->size == sizeof(v))
            memcpy(&v, reply->payload, sizeof(v));
        if (v == ca->base + (uint64_t)i + 1)
            ca->ok++;
        actor_msg_free(reply);
    }
    return NULL;
}

Test(call, many_threads_call_at_once)
{
    enum { T = 4 };
    struct dist_pid s = spawn_cp(-1);
    struct caller_arg args[T];
    pthread_t th[T];

    for (int i = 0; i < T; i++) {
        args[i] = (struct caller_arg){.server = s, .base = (uint64_t)i << 32};
        cr_assert_eq(pthread_create(&th[i], NULL, caller_thread, &args[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++)
        cr_assert_eq(args[i].ok, THREAD_CALLS, "thread %d: %d of %d calls answered right", i,
                     args[i].ok, THREAD_CALLS);
}

Test(call, cast_is_a_send)
{
    struct dist_pid p = spawn_probe(0);
    struct cmd *c = cmd_new(OP_ECHO, 31337, 0);
    struct event e;

    cr_assert_eq(actor_cast(sys, p, actor_type_raw(), c, sizeof(*c)), 0);
    e = event_wait(EV_MSG, p, 0);
    cr_assert_eq(e.seq, 31337u);
    cr_assert(dist_pid_is_none(e.pid));
}

Test(call, a_second_reply_is_dropped)
{
    struct dist_pid s = spawn_cp(-1), c = spawn_cp(-1);
    uint64_t call = call_from(c, s, SV_ECHO_TWICE, 1, 5.0);
    struct actor_msg *reply = NULL;
    int rc;

    cr_assert_eq(wait_cont(c, call).a, 2u, "the first reply answers");
    event_wait(EV_REPLIED, s, 1);
    cmd_run(s, (struct cmd){.op = OP_SEND, .pid = c, .a = 777}); /* behind the second reply */
    event_wait(EV_MSG, c, 0);
    cr_assert_eq(event_count(EV_CONT, c), 1, "the continuation ran twice");
    cr_assert_eq(event_count(EV_OTHER, c), 0, "the second reply arrived as a message");

    rc = call_wait(s, SV_ECHO_TWICE, 10, 5.0, &reply);
    cr_assert_eq(rc, 0);
    cr_assert_eq(reply_value_of(reply), 11u);
    actor_msg_free(reply);
    rc = call_wait(s, SV_ECHO, 20, 5.0, &reply);
    cr_assert_eq(rc, 0);
    cr_assert_eq(reply_value_of(reply), 21u, "a stale second reply answered a new call");
    actor_msg_free(reply);
    assert_clean();
}
