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

#include "harness.h"

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
