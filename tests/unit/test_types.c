/*
 * test_types.c: the message type registry: the raw type, protobuf-c types registered by name
 * and descriptor, duplicates and conflicts, lookups, and protobuf payloads on the way through
 * an actor. Also the error and exit-reason names.
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

/* ---- Two protobuf-c message types, as protoc-c generates them ------------------------------- */

/* package test; message Ping { uint32 seq = 1; string note = 2; } message Pong { uint32 seq = 1; }
 */
struct test_ping {
    ProtobufCMessage base;
    uint32_t seq;
    char *note;
};

struct test_pong {
    ProtobufCMessage base;
    uint32_t seq;
};

static const ProtobufCMessageDescriptor ping_descriptor;
static const ProtobufCMessageDescriptor pong_descriptor;

static void ping_init(ProtobufCMessage *m)
{
    struct test_ping *p = (struct test_ping *)m;

    memset(p, 0, sizeof(*p));
    p->base.descriptor = &ping_descriptor;
    p->note = (char *)protobuf_c_empty_string;
}

static void pong_init(ProtobufCMessage *m)
{
    struct test_pong *p = (struct test_pong *)m;

    memset(p, 0, sizeof(*p));
    p->base.descriptor = &pong_descriptor;
}

static const ProtobufCFieldDescriptor ping_fields[2] = {
    {"seq", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0, offsetof(struct test_ping, seq),
     NULL, NULL, 0, 0, NULL, NULL},
    {"note", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, offsetof(struct test_ping, note),
     NULL, &protobuf_c_empty_string, 0, 0, NULL, NULL},
};
static const unsigned ping_fields_by_name[] = {1, 0};
static const ProtobufCIntRange ping_ranges[2] = {{1, 0}, {0, 2}};

static const ProtobufCMessageDescriptor ping_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Ping",
    "Ping",
    "Test__Ping",
    "test",
    sizeof(struct test_ping),
    2,
    ping_fields,
    ping_fields_by_name,
    1,
    ping_ranges,
    ping_init,
    NULL,
    NULL,
    NULL,
};

static const ProtobufCFieldDescriptor pong_fields[1] = {
    {"seq", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0, offsetof(struct test_pong, seq),
     NULL, NULL, 0, 0, NULL, NULL},
};
static const unsigned pong_fields_by_name[] = {0};
static const ProtobufCIntRange pong_ranges[2] = {{1, 0}, {0, 1}};

static const ProtobufCMessageDescriptor pong_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Pong",
    "Pong",
    "Test__Pong",
    "test",
    sizeof(struct test_pong),
    1,
    pong_fields,
    pong_fields_by_name,
    1,
    pong_ranges,
    pong_init,
    NULL,
    NULL,
    NULL,
};

/* An unpacked Ping: it owns its fields, as the runtime's free expects. */
static struct test_ping *ping_new(uint32_t seq, const char *note)
{
    struct test_ping src;
    uint8_t buf[256];
    size_t len;

    ping_init(&src.base);
    src.seq = seq;
    src.note = (char *)note;
    len = protobuf_c_message_pack(&src.base, buf);
    cr_assert_lt(len, sizeof(buf));
    return (struct test_ping *)protobuf_c_message_unpack(&ping_descriptor, NULL, len, buf);
}

TestSuite(types, .init = setup, .fini = teardown, .timeout = 30);

Test(types, raw_type_is_builtin)
{
    const struct actor_type *raw = actor_type_raw();

    cr_assert_not_null(raw);
    cr_assert_str_eq(actor_type_name(raw), "actor.Raw");
    cr_assert_null(actor_type_descriptor(raw));
    cr_assert_eq(actor_type_find("actor.Raw"), raw);
    cr_assert_eq(actor_type_raw(), raw, "one raw type");
}

Test(types, find_unknown_is_null)
{
    cr_assert_null(actor_type_find("test.Nope"));
    cr_assert_null(actor_type_find(""));
    cr_assert_null(actor_type_find("actor.raw"), "names are case-sensitive");
}

Test(types, register_protobuf_type)
{
    const struct actor_type *t = NULL;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &t), 0);
    cr_assert_not_null(t);
    cr_assert_neq(t, actor_type_raw());
    cr_assert_str_eq(actor_type_name(t), "test.Ping");
    cr_assert_eq(actor_type_descriptor(t), &ping_descriptor);
    cr_assert_eq(actor_type_find("test.Ping"), t);
}

Test(types, register_twice_with_same_descriptor_returns_same_type)
{
    const struct actor_type *a = NULL, *b = NULL, *c = NULL;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &a), 0);
    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &b), 0);
    cr_assert_eq(a, b);
    /* One descriptor may carry several names; each name is its own type. */
    cr_assert_eq(actor_type_register("test.PingAlias", &ping_descriptor, &c), 0);
    cr_assert_neq(c, a);
    cr_assert_eq(actor_type_find("test.Ping"), a);
    cr_assert_eq(actor_type_find("test.PingAlias"), c);
}

Test(types, register_with_other_descriptor_is_etype)
{
    const struct actor_type *a = NULL;
    const struct actor_type *untouched = (const struct actor_type *)&pong_descriptor;
    const struct actor_type *out = untouched;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &a), 0);
    cr_assert_eq(actor_type_register("test.Ping", &pong_descriptor, &out), ACTOR_ETYPE);
    cr_assert_eq(out, untouched, "a failed register left its output untouched");
    cr_assert_eq(actor_type_find("test.Ping"), a);
    cr_assert_eq(actor_type_descriptor(a), &ping_descriptor);
}

Test(types, raw_name_cannot_be_taken_by_a_descriptor)
{
    const struct actor_type *out = NULL;

    cr_assert_eq(actor_type_register("actor.Raw", &ping_descriptor, &out), ACTOR_ETYPE);
    cr_assert_null(out);
    cr_assert_null(actor_type_descriptor(actor_type_find("actor.Raw")));
}

Test(types, register_rejects_invalid_arguments)
{
    const struct actor_type *out = NULL;

    cr_assert_eq(actor_type_register(NULL, &ping_descriptor, &out), ACTOR_EINVAL);
    cr_assert_eq(actor_type_register("test.Ping", NULL, &out), ACTOR_EINVAL);
    cr_assert_null(out);
    cr_assert_null(actor_type_find("test.Ping"), "a failed register registered nothing");
}

Test(types, register_copies_the_name)
{
    char name[32];
    const struct actor_type *t = NULL;

    snprintf(name, sizeof(name), "test.%s", "Transient");
    cr_assert_eq(actor_type_register(name, &pong_descriptor, &t), 0);
    memset(name, 'x', sizeof(name) - 1);
    cr_assert_eq(actor_type_find("test.Transient"), t);
    cr_assert_str_eq(actor_type_name(t), "test.Transient");
}

struct reg_race {
    pthread_barrier_t *start;
    const struct actor_type *out[16];
    int rc[16];
};

static void *reg_thread(void *arg)
{
    struct reg_race *r = arg;
    static atomic_int slot;
    int me = atomic_fetch_add(&slot, 1);

    pthread_barrier_wait(r->start);
    for (int i = 0; i < 16; i++) {
        char name[32];

        snprintf(name, sizeof(name), "race.T%d", i);
        r[me].rc[i] = actor_type_register(name, &ping_descriptor, &r[me].out[i]);
    }
    return NULL;
}

Test(types, concurrent_registration_agrees)
{
    enum { T = 8 };
    pthread_barrier_t start;
    struct reg_race r[T];
    pthread_t th[T];

    memset(r, 0, sizeof(r));
    pthread_barrier_init(&start, NULL, T);
    for (int i = 0; i < T; i++)
        r[i].start = &start;
    for (int i = 0; i < T; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reg_thread, r), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int n = 0; n < 16; n++) {
        char name[32];

        snprintf(name, sizeof(name), "race.T%d", n);
        for (int i = 0; i < T; i++) {
            cr_assert_eq(r[i].rc[n], 0);
            cr_assert_eq(r[i].out[n], r[0].out[n], "two threads got two types for %s", name);
        }
        cr_assert_eq(actor_type_find(name), r[0].out[n]);
    }
}

static const struct actor_type *ping_type;

/* Reports each Ping: seq, and a = 1 when its note arrived intact. Takes odd ones. */
static int ping_sink_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct test_ping *p = msg->payload;

    if (msg->kind != ACTOR_MSG_USER || msg->type != ping_type ||
        p->base.descriptor != &ping_descriptor) {
        report(EV_OTHER, (int)msg->kind, 0, 0, msg->from);
        return 0;
    }
    report(EV_MSG, 0, p->seq, strcmp(p->note, "hello") == 0, msg->from);
    if (p->seq % 2 == 1) {
        if (actor_msg_take(msg) != p)
            report(EV_BAD, 4, 0, 0, DIST_PID_NONE);
        actor_payload_free(ping_type, p);
    }
    return 0;
}

Test(types, protobuf_payload_is_delivered_and_freed)
{
    static const struct actor_behaviour sink = {.name = "ping_sink", .handle = ping_sink_handle};
    struct dist_pid pid;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &ping_type), 0);
    cr_assert_eq(actor_spawn(sys, NULL, &sink, NULL, NULL, &pid), 0);
    for (uint32_t i = 1; i <= 10; i++) {
        struct test_ping *p = ping_new(i, "hello");

        cr_assert_not_null(p);
        cr_assert_eq(actor_send(sys, pid, ping_type, p, 0), 0);
    }
    for (int i = 0; i < 10; i++) {
        struct event e = event_wait(EV_MSG, pid, i);

        cr_assert_eq(e.seq, (uint64_t)i + 1, "Pings out of order");
        cr_assert_eq(e.a, 1u, "Ping %d lost its note", i + 1);
        cr_assert(dist_pid_is_none(e.pid), "a send from the test thread has no sender");
    }
    cr_assert_eq(event_count(EV_OTHER, pid), 0);
    assert_clean();
}

static pthread_mutex_t taken_lock = PTHREAD_MUTEX_INITIALIZER;
static struct test_ping *taken[8];
static int n_taken;

/* Takes every Ping and keeps it past the handler's return. */
static int ping_keeper_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_USER && msg->type == ping_type) {
        struct test_ping *p = actor_msg_take(msg);

        if (p == NULL || msg->payload != NULL)
            report(EV_BAD, 8, 0, 0, DIST_PID_NONE); /* take clears the message's payload */
        pthread_mutex_lock(&taken_lock);
        if (n_taken < 8)
            taken[n_taken++] = p;
        pthread_mutex_unlock(&taken_lock);
    }
    return 0;
}

static int handled_by(struct dist_pid pid)
{
    struct find_ctx ctx = {.pid = pid};

    actor_system_list(sys, find_cb, &ctx);
    return ctx.found ? (int)ctx.info.handled : -1;
}

Test(types, a_taken_payload_outlives_its_handler)
{
    static const struct actor_behaviour keeper = {.name = "keeper", .handle = ping_keeper_handle};
    struct dist_pid pid;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &ping_type), 0);
    cr_assert_eq(actor_spawn(sys, NULL, &keeper, NULL, NULL, &pid), 0);
    for (uint32_t i = 1; i <= 3; i++)
        cr_assert_eq(actor_send(sys, pid, ping_type, ping_new(i, "kept"), 0), 0);
    WAIT_UNTIL(handled_by(pid) == 3); /* the handlers have returned */
    cr_assert_eq(handled_by(pid), 3);
    pthread_mutex_lock(&taken_lock);
    cr_assert_eq(n_taken, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(taken[i]->base.descriptor, &ping_descriptor);
        cr_assert_eq(taken[i]->seq, (uint32_t)i + 1);
        cr_assert_str_eq(taken[i]->note, "kept");
        actor_payload_free(ping_type, taken[i]);
    }
    pthread_mutex_unlock(&taken_lock);
    actor_payload_free(ping_type, NULL);
    actor_payload_free(actor_type_raw(), NULL);
    assert_clean();
}

Test(types, send_rejects_a_missing_type)
{
    struct dist_pid pid = spawn_probe(0);
    void *payload = malloc(16);

    cr_assert_eq(actor_send(sys, pid, NULL, payload, 16), ACTOR_EINVAL);
    free(payload); /* a failed send leaves the payload with the caller */
    barrier(pid);
    cr_assert_eq(event_count(EV_OTHER, pid), 0, "the rejected message was delivered");
}

Test(types, strerror_and_reason_names)
{
    cr_assert_str_eq(actor_strerror(ACTOR_ENOPROC), "no such process");
    cr_assert_str_eq(actor_strerror(ACTOR_ETIMEDOUT), "timed out");
    cr_assert_str_eq(actor_strerror(ACTOR_EBUSY), "mailbox full");
    cr_assert_str_eq(actor_strerror(ACTOR_ENAMETAKEN), "name already registered");
    cr_assert_str_eq(actor_strerror(ACTOR_ETYPE), "unknown or mismatched message type");
    cr_assert_not_null(actor_strerror(-ENOENT));
    cr_assert_neq(actor_strerror(-ENOENT)[0], '\0');
    cr_assert_str_eq(actor_strerror(DIST_ENOBUFS), dist_strerror(DIST_ENOBUFS),
                     "libdist's codes are named too");
    cr_assert_not_null(actor_strerror(-99999));
    cr_assert_str_eq(actor_reason_name(ACTOR_NORMAL), "normal");
    cr_assert_str_eq(actor_reason_name(ACTOR_KILL), "kill");
    cr_assert_str_eq(actor_reason_name(ACTOR_KILLED), "killed");
    cr_assert_str_eq(actor_reason_name(ACTOR_SHUTDOWN), "shutdown");
    cr_assert_str_eq(actor_reason_name(ACTOR_NOPROC), "noproc");
    cr_assert_str_eq(actor_reason_name(ACTOR_ENOPROC), "no such process");
    cr_assert_str_eq(actor_reason_name(42), "custom");
}
