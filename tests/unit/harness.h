/*
 * harness.h: the shared harness of the actor runtime's tests (test_spawn.c, test_links.c,
 * test_monitors.c, test_names.c, test_timers.c, test_call.c, test_types.c). Each test program
 * includes it once; its state is per program.
 */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

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

#endif /* TEST_HARNESS_H */
