/*
 * test_spawn.c: an actor's life: spawn, init, handle and terminate in order, init failures,
 * handler errors, actor_exit, sends to dead and stale PIDs, the sender PID, per-sender order,
 * bounded mailboxes, introspection, statistics and shutdown.
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

TestSuite(spawn, .init = setup, .fini = teardown, .timeout = 60);

/* Every callback NULL: messages are dropped, the actor lives until a signal ends it. */
static const struct actor_behaviour idle_behaviour = {.name = "idle"};

/* Send an OP_NOOP through @s (which may be another system), without asserting the outcome. */
static int send_noop(struct actor_system *s, struct dist_pid to)
{
    struct cmd *c = cmd_new(OP_NOOP, 0, 0);
    int rc = actor_send(s, to, actor_type_raw(), c, sizeof(*c));

    if (rc != 0)
        free(c); /* a failed send leaves the payload with the caller */
    return rc;
}

Test(spawn, init_handle_terminate_run_in_order)
{
    struct dist_pid pid = spawn_probe(0);
    uint64_t s1 = cmd_send(pid, (struct cmd){.op = OP_ECHO});
    uint64_t s2 = cmd_send(pid, (struct cmd){.op = OP_ECHO});
    uint64_t sx = cmd_send(pid, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    struct event init, term;
    long i_init, i_m1, i_m2, i_after, i_term;

    term = wait_dead(pid);
    cr_assert_eq(term.rc, ACTOR_NORMAL, "terminate reason %d", term.rc);
    i_init = event_find(EV_INIT, pid, 0, 0, &init);
    i_m1 = event_find(EV_MSG, pid, s1, 0, NULL);
    i_m2 = event_find(EV_MSG, pid, s2, 0, NULL);
    i_after = event_find(EV_AFTER_EXIT, pid, sx, 0, NULL);
    i_term = event_find(EV_TERM, pid, 0, 0, NULL);
    cr_assert(i_init >= 0 && i_m1 >= 0 && i_m2 >= 0 && i_after >= 0 && i_term >= 0,
              "init %ld, msg %ld %ld, after-exit %ld, terminate %ld", i_init, i_m1, i_m2, i_after,
              i_term);
    cr_assert(i_init < i_m1 && i_m1 < i_m2 && i_m2 < i_after && i_after < i_term,
              "callbacks out of order: init %ld, msg %ld %ld, after-exit %ld, terminate %ld",
              i_init, i_m1, i_m2, i_after, i_term);
    cr_assert(dist_pid_eq(init.pid, pid), "actor_self() in init is %s, spawn said %s",
              pidstr(init.pid), pidstr(pid));
    cr_assert_eq(event_count(EV_INIT, pid), 1);
    cr_assert_eq(event_count(EV_TERM, pid), 1, "terminate ran more than once");
    assert_clean();
}

Test(spawn, init_failure_ends_the_actor_with_its_reason)
{
    struct dist_pid watcher = spawn_probe(0);
    struct event r, down;
    struct dist_pid pid = spawn_probe(PROBE_INIT_FAIL);
    struct cmd *c = cmd_new(OP_ECHO, 1, 0);
    int rc = actor_send(sys, pid, actor_type_raw(), c, sizeof(*c));

    if (rc != 0)
        free(c);
    cr_assert(rc == 0 || rc == ACTOR_ENOPROC, "send to an actor whose init fails: %s",
              actor_strerror(rc));
    event_wait(EV_INIT, pid, 0);
    WAIT_UNTIL(!is_alive(pid));
    cr_assert_not(is_alive(pid));
    c = cmd_new(OP_ECHO, 2, 0);
    rc = actor_send(sys, pid, actor_type_raw(), c, sizeof(*c));
    if (rc != 0)
        free(c);
    cr_assert_eq(rc, ACTOR_ENOPROC, "send after a failed init: %s", actor_strerror(rc));
    cr_assert_eq(event_count(EV_MSG, pid), 0, "an actor whose init failed took a message");

    /* The reason reaches a monitor, even one set up by the spawn itself. */
    r = cmd_run(watcher,
                (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_MONITOR, .a = PROBE_INIT_FAIL});
    cr_assert_eq(r.rc, 0, "spawn: %s", actor_strerror(r.rc));
    down = event_wait(EV_DOWN, watcher, 0);
    cr_assert_eq(down.rc, PROBE_INIT_REASON, "DOWN reason %d", down.rc);
    cr_assert(dist_pid_eq(down.pid, r.pid));
    cr_assert_eq(down.a, r.a, "DOWN ref %llu, spawn gave %llu", (unsigned long long)down.a,
                 (unsigned long long)r.a);
    cr_assert(is_alive(watcher));
}

Test(spawn, handler_error_crashes_with_that_reason)
{
    struct dist_pid watcher = spawn_probe(0);
    struct dist_pid pid = spawn_probe(0);
    struct event mon = cmd_run(watcher, (struct cmd){.op = OP_MONITOR, .pid = pid});
    struct event term, down;
    int rc;

    cr_assert_eq(mon.rc, 0);
    cmd_send(pid, (struct cmd){.op = OP_ECHO});
    cmd_send(pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    rc = cmd_try(pid, (struct cmd){.op = OP_ECHO}); /* queued behind, or refused */
    cr_assert(rc == 0 || rc == ACTOR_ENOPROC, "%s", actor_strerror(rc));
    term = wait_dead(pid);
    cr_assert_eq(term.rc, 42, "terminate reason %d", term.rc);
    down = event_wait(EV_DOWN, watcher, 0);
    cr_assert_eq(down.rc, 42);
    cr_assert_eq(down.a, mon.a);
    cr_assert_eq(event_count(EV_MSG, pid), 1, "a message after the crash was handled");
    assert_clean();
}

Test(spawn, actor_exit_ends_the_actor_after_its_callback)
{
    struct dist_pid pid = spawn_probe(0);
    struct event term;
    int rc;

    cmd_send(pid, (struct cmd){.op = OP_EXIT, .arg = 5});
    /* Queued behind the exit, or refused if the actor is already gone. */
    rc = cmd_try(pid, (struct cmd){.op = OP_ECHO});
    cr_assert(rc == 0 || rc == ACTOR_ENOPROC, "%s", actor_strerror(rc));
    term = wait_dead(pid);
    cr_assert_eq(term.rc, 5);
    cr_assert_eq(event_count(EV_AFTER_EXIT, pid), 1, "the handler did not finish");
    cr_assert_eq(event_count(EV_MSG, pid), 0, "a message after actor_exit was handled");
}

Test(spawn, sends_to_a_dead_pid_are_enoproc)
{
    struct dist_pid pid = spawn_probe(0);
    struct dist_pid never = {.id = (uint64_t)1 << 40, .node = 0, .creation = pid.creation};
    void *p;

    cr_assert_eq(send_noop(sys, pid), 0);
    cmd_send(pid, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    wait_dead(pid);
    cr_assert_eq(send_noop(sys, pid), ACTOR_ENOPROC);
    p = malloc(8);
    cr_assert_eq(actor_cast(sys, pid, actor_type_raw(), p, 8), ACTOR_ENOPROC);
    free(p);
    cr_assert_eq(actor_kill(sys, pid), ACTOR_ENOPROC);
    cr_assert_eq(actor_exit_signal(sys, pid, 3), ACTOR_ENOPROC);
    cr_assert_eq(send_noop(sys, never), ACTOR_ENOPROC, "a PID never handed out");
    cr_assert_eq(actor_kill(sys, never), ACTOR_ENOPROC);
    {
        int rc = send_noop(sys, DIST_PID_NONE);

        cr_assert(rc == ACTOR_ENOPROC || rc == ACTOR_EINVAL, "send to no process: %s",
                  actor_strerror(rc));
    }
}

Test(spawn, a_stale_creation_is_enoproc)
{
    struct actor_system_opts o = {.schedulers = 2, .creation = 2};
    struct actor_system *sys2 = NULL;
    struct dist_pid pid = spawn_probe(0), stale = pid, q = DIST_PID_NONE, q_old;

    stale.creation = pid.creation + 1;
    cr_assert_eq(send_noop(sys, stale), ACTOR_ENOPROC, "a PID of another incarnation");
    cr_assert_eq(actor_kill(sys, stale), ACTOR_ENOPROC);
    cr_assert(is_alive(pid));
    cr_assert_eq(send_noop(sys, pid), 0);

    /* A restarted node (new creation) hands out the same ids again: an old PID must not
     * reach the new actor that has its id. */
    cr_assert_eq(actor_system_new(&o, &sys2), 0);
    cr_assert_eq(actor_system_start(sys2), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(actor_spawn(sys2, NULL, &idle_behaviour, NULL, NULL, &q), 0);
    cr_assert_eq(q.creation, 2u);
    q_old = q;
    q_old.creation = 1;
    cr_assert_eq(send_noop(sys2, q_old), ACTOR_ENOPROC, "old incarnation reached a new actor");
    cr_assert_eq(send_noop(sys2, q), 0);
    cr_assert_eq(actor_kill(sys2, q_old), ACTOR_ENOPROC);
    cr_assert_eq(actor_system_shutdown(sys2, 5.0), 0);
    actor_system_free(sys2);
}

Test(spawn, the_sender_pid_is_delivered)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);
    uint64_t s = cmd_send(b, (struct cmd){.op = OP_ECHO});
    struct event e = {0};
    struct event r = cmd_run(a, (struct cmd){.op = OP_SEND, .pid = b, .a = 987654321});

    cr_assert_eq(r.rc, 0);
    WAIT_UNTIL(event_find(EV_MSG, b, s, 0, &e) >= 0);
    cr_assert(event_find(EV_MSG, b, s, 0, &e) >= 0);
    cr_assert(dist_pid_is_none(e.pid), "a send from outside any actor carries %s", pidstr(e.pid));
    WAIT_UNTIL(event_find(EV_MSG, b, 987654321, 0, &e) >= 0);
    cr_assert(event_find(EV_MSG, b, 987654321, 0, &e) >= 0);
    cr_assert(dist_pid_eq(e.pid, a), "the sender is %s, not %s", pidstr(e.pid), pidstr(a));
}

/*
 * A burster sends @count OP_ECHO messages, seq base+1 ... base+count, to @target at once,
 * then reports EV_RESULT: seq = base, rc = how many were accepted, a = how many were busy.
 */
struct burst {
    struct dist_pid target;
    uint64_t base;
    int count;
};

static int burster_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    const struct burst *b = msg->payload;
    int ok = 0, busy = 0;

    if (msg->kind != ACTOR_MSG_USER || msg->size != sizeof(*b))
        return 0;
    for (int i = 1; i <= b->count; i++) {
        struct cmd *c = cmd_new(OP_ECHO, b->base + (uint64_t)i, 0);
        int rc = actor_send(actor_system_of(self), b->target, actor_type_raw(), c, sizeof(*c));

        if (rc == 0) {
            ok++;
            continue;
        }
        free(c);
        if (rc == ACTOR_EBUSY)
            busy++;
        else
            report(EV_BAD, rc, 0, 0, DIST_PID_NONE);
    }
    report(EV_RESULT, ok, b->base, (uint64_t)busy, b->target);
    return 0;
}

static const struct actor_behaviour burster = {.name = "burster", .handle = burster_handle};

Test(spawn, messages_from_one_sender_arrive_in_send_order)
{
    enum { SENDERS = 3, PER_SENDER = 3000, FROM_TEST = 2000 };
    struct dist_pid rx = spawn_probe(0), tx[SENDERS];
    uint64_t last[SENDERS + 1] = {0}, first_test = 0;
    int seen[SENDERS + 1] = {0};

    for (int i = 0; i < SENDERS; i++) {
        struct actor_spawn_opts o = {.scheduler = i % 2};
        struct burst *b = malloc(sizeof(*b));

        cr_assert_eq(actor_spawn(sys, NULL, &burster, NULL, &o, &tx[i]), 0);
        *b = (struct burst){.target = rx, .base = (uint64_t)(i + 1) << 32, .count = PER_SENDER};
        cr_assert_eq(actor_send(sys, tx[i], actor_type_raw(), b, sizeof(*b)), 0);
    }
    for (int i = 0; i < FROM_TEST; i++) {
        uint64_t s = cmd_send(rx, (struct cmd){.op = OP_ECHO});

        if (i == 0)
            first_test = s;
    }
    WAIT_UNTIL(event_count(EV_MSG, rx) == SENDERS * PER_SENDER + FROM_TEST);
    cr_assert_eq(event_count(EV_MSG, rx), SENDERS * PER_SENDER + FROM_TEST);
    for (int n = 0;; n++) {
        struct event e;
        int k = SENDERS;

        if (event_find(EV_MSG, rx, 0, n, &e) < 0)
            break;
        for (int i = 0; i < SENDERS; i++)
            if (dist_pid_eq(e.pid, tx[i]))
                k = i;
        if (k == SENDERS) {
            cr_assert(dist_pid_is_none(e.pid), "unknown sender %s", pidstr(e.pid));
            cr_assert_eq(e.seq, first_test + (uint64_t)seen[k], "test-thread sends reordered");
        } else {
            cr_assert_eq(e.seq, ((uint64_t)(k + 1) << 32) + (uint64_t)seen[k] + 1,
                         "sender %d: got seq %llx after %llx", k, (unsigned long long)e.seq,
                         (unsigned long long)last[k]);
        }
        last[k] = e.seq;
        seen[k]++;
    }
    for (int i = 0; i < SENDERS; i++) {
        cr_assert_eq(seen[i], PER_SENDER);
        cr_assert_eq(event_wait(EV_RESULT, tx[i], 0).rc, PER_SENDER);
    }
    assert_clean();
}

Test(spawn, a_bounded_mailbox_reports_busy)
{
    struct actor_spawn_opts o = {.mailbox_max = 4, .scheduler = 1};
    struct dist_pid pid;
    uint64_t accepted[4];
    struct cmd *extra;
    int rc;

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &pid), 0);
    cmd_send(pid, (struct cmd){.op = OP_GATE});
    WAIT_UNTIL(atomic_load(&gate_entered));
    cr_assert(atomic_load(&gate_entered), "the probe never reached the gate");
    for (int i = 0; i < 4; i++)
        accepted[i] = cmd_send(pid, (struct cmd){.op = OP_ECHO});
    extra = cmd_new(OP_ECHO, 999, 0);
    rc = actor_send(sys, pid, actor_type_raw(), extra, sizeof(*extra));
    cr_assert_eq(rc, ACTOR_EBUSY, "the fifth send into a mailbox of 4: %s", actor_strerror(rc));
    cr_assert_eq(extra->seq, 999u, "the payload of a refused send is the caller's");
    free(extra);
    extra = cmd_new(OP_ECHO, 998, 0);
    rc = actor_cast(sys, pid, actor_type_raw(), extra, sizeof(*extra));
    cr_assert_eq(rc, ACTOR_EBUSY);
    free(extra);
    atomic_store(&gate_open, 1);
    for (int i = 0; i < 4; i++) {
        struct event e = event_wait(EV_MSG, pid, i);

        cr_assert_eq(e.seq, accepted[i]);
    }
    barrier(pid);
    cr_assert_eq(event_count(EV_MSG, pid), 4, "a refused message was delivered");
    cr_assert_eq(send_noop(sys, pid), 0, "a drained mailbox takes messages again");
}

Test(spawn, list_shows_name_behaviour_and_counters)
{
    struct actor_spawn_opts o = {.name = "worker-1", .scheduler = -1};
    struct dist_pid pid;
    struct find_ctx ctx = {0}, coll = {0};
    struct actor_stats st;

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &pid), 0);
    for (int i = 0; i < 3; i++)
        cmd_send(pid, (struct cmd){.op = OP_ECHO});
    event_wait(EV_MSG, pid, 2);
    ctx.pid = pid;
    for (double end = now() + WAIT_SECONDS; now() < end; nap()) {
        ctx = (struct find_ctx){.pid = pid};
        actor_system_list(sys, find_cb, &ctx);
        if (ctx.found && ctx.info.handled == 3)
            break;
    }
    cr_assert_eq(ctx.found, 1, "listed %d times", ctx.found);
    cr_assert_str_eq(ctx.name, "worker-1");
    cr_assert_str_eq(ctx.behaviour, "probe");
    cr_assert_eq(ctx.info.handled, 3u, "handled %llu", (unsigned long long)ctx.info.handled);
    cr_assert_eq(ctx.info.mailbox_depth, 0u);
    cr_assert_neq(ctx.info.state, ACTOR_EXITING);

    coll.pid = collector;
    actor_system_list(sys, find_cb, &coll);
    cr_assert_eq(coll.found, 1);
    cr_assert_str_eq(coll.behaviour, "collector");
    cr_assert_str_eq(coll.name, "(null)", "an unnamed actor lists a NULL name");
    actor_system_stats(sys, &st);
    cr_assert_eq(coll.listed, (size_t)st.alive, "listed %zu actors, stats say %llu alive",
                 coll.listed, (unsigned long long)st.alive);
}

Test(spawn, list_shows_a_waiting_mailbox)
{
    struct actor_spawn_opts o = {.scheduler = 1};
    struct dist_pid pid;
    struct find_ctx ctx = {0};

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &pid), 0);
    cmd_send(pid, (struct cmd){.op = OP_GATE});
    WAIT_UNTIL(atomic_load(&gate_entered));
    for (int i = 0; i < 5; i++)
        cmd_send(pid, (struct cmd){.op = OP_NOOP});
    ctx.pid = pid;
    actor_system_list(sys, find_cb, &ctx);
    atomic_store(&gate_open, 1);
    cr_assert_eq(ctx.found, 1);
    cr_assert_eq(ctx.info.mailbox_depth, 5u, "depth %zu", ctx.info.mailbox_depth);
    cr_assert_eq(ctx.info.state, ACTOR_RUNNING, "state %d while in its handler",
                 (int)ctx.info.state);
}

Test(spawn, stats_count_spawns_exits_and_deliveries)
{
    struct actor_stats s0, st;
    struct dist_pid p[5];
    size_t ev0;

    actor_system_stats(sys, &s0);
    cr_assert_eq(s0.alive, 1u, "the collector");
    cr_assert_eq(s0.spawned, 1u);
    cr_assert_eq(s0.exited, 0u);
    cr_assert_eq(s0.restarts, 0u);
    ev0 = log_size();
    for (int i = 0; i < 5; i++)
        p[i] = spawn_probe(0);
    actor_system_stats(sys, &st);
    cr_assert_eq(st.spawned, s0.spawned + 5);
    cr_assert_eq(st.alive, s0.alive + 5);
    for (int i = 0; i < 5; i++)
        cmd_send(p[i], (struct cmd){.op = OP_ECHO});
    for (int i = 0; i < 5; i++)
        event_wait(EV_MSG, p[i], 0);
    cr_assert_eq(actor_kill(sys, p[0]), 0);
    cr_assert_eq(actor_exit_signal(sys, p[1], 9), 0);
    wait_dead(p[0]);
    wait_dead(p[1]);
    spawn_probe(PROBE_INIT_FAIL);
    WAIT_UNTIL((actor_system_stats(sys, &st), st.exited == 3 && st.alive == s0.alive + 3));
    cr_assert_eq(st.spawned, s0.spawned + 6);
    cr_assert_eq(st.exited, 3u, "exited %llu", (unsigned long long)st.exited);
    cr_assert_eq(st.alive, s0.alive + 3, "alive %llu", (unsigned long long)st.alive);
    /* Quiet now: each probe handled one OP_ECHO, the collector one message per log entry. */
    WAIT_UNTIL((actor_system_stats(sys, &st), st.delivered == s0.delivered + 5 + log_size() - ev0));
    cr_assert_eq(st.delivered, s0.delivered + 5 + log_size() - ev0, "delivered %llu, expected %llu",
                 (unsigned long long)st.delivered,
                 (unsigned long long)(s0.delivered + 5 + log_size() - ev0));
}

/* ---- Shutdown ----------------------------------------------------------------------------------
 */

#define COUNTED_TRAP (1u << 0) /* trap exits */
#define COUNTED_OBEY (1u << 1) /* on a trapped exit signal, exit with its reason */

static atomic_int counted_inits, counted_terms, counted_shutdown, counted_killed;

static int counted_init(struct actor *self, void *arg, void **state)
{
    atomic_fetch_add(&counted_inits, 1);
    if ((uintptr_t)arg & COUNTED_TRAP)
        actor_trap_exit(self, 1);
    *state = arg;
    return 0;
}

static int counted_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_EXIT && ((uintptr_t)state & COUNTED_OBEY))
        actor_exit(self, msg->u.exit.reason);
    return 0;
}

static void counted_terminate(struct actor *self, void *state, int reason)
{
    atomic_fetch_add(&counted_terms, 1);
    if (reason == ACTOR_SHUTDOWN)
        atomic_fetch_add(&counted_shutdown, 1);
    if (reason == ACTOR_KILLED)
        atomic_fetch_add(&counted_killed, 1);
}

static const struct actor_behaviour counted_behaviour = {
    .name = "counted",
    .init = counted_init,
    .handle = counted_handle,
    .terminate = counted_terminate,
};

static void spawn_counted(int n, uintptr_t flags)
{
    for (int i = 0; i < n; i++) {
        int rc = actor_spawn(sys, NULL, &counted_behaviour, (void *)flags, NULL, NULL);

        cr_assert_eq(rc, 0, "spawn: %s", actor_strerror(rc));
    }
}

Test(spawn, shutdown_runs_every_terminate)
{
    struct actor_stats st;
    void *p;
    int rc;

    spawn_counted(40, 0);
    spawn_counted(10, COUNTED_TRAP | COUNTED_OBEY);
    WAIT_UNTIL(atomic_load(&counted_inits) == 50);
    rc = actor_system_shutdown(sys, 5.0);
    sys_stopped = 1;
    cr_assert_eq(rc, 0, "shutdown: %s", actor_strerror(rc));
    cr_assert_eq(atomic_load(&counted_terms), 50, "%d of 50 terminates ran",
                 atomic_load(&counted_terms));
    cr_assert_eq(atomic_load(&counted_shutdown), 50, "%d of 50 ended with shutdown",
                 atomic_load(&counted_shutdown));
    actor_system_stats(sys, &st);
    cr_assert_eq(st.alive, 0u);
    rc = actor_spawn(sys, NULL, &counted_behaviour, NULL, NULL, NULL);
    cr_assert_eq(rc, ACTOR_ESTOPPED, "spawn after shutdown: %s", actor_strerror(rc));
    p = malloc(8);
    rc = actor_send(sys, collector, actor_type_raw(), p, 8);
    cr_assert(rc == ACTOR_ESTOPPED || rc == ACTOR_ENOPROC, "send after shutdown: %s",
              actor_strerror(rc));
    free(p);
}

Test(spawn, shutdown_kills_actors_that_ignore_it)
{
    double t0, took;
    int rc;

    spawn_counted(3, 0);
    spawn_counted(2, COUNTED_TRAP); /* traps the shutdown signal and carries on */
    WAIT_UNTIL(atomic_load(&counted_inits) == 5);
    t0 = now();
    rc = actor_system_shutdown(sys, 1.0);
    took = now() - t0;
    sys_stopped = 1;
    cr_assert_eq(rc, ACTOR_ETIMEDOUT, "shutdown: %s", actor_strerror(rc));
    cr_assert_geq(took, 0.95, "shutdown did not wait for the trapping actors");
    cr_assert_lt(took, 1.75, "shutdown took %.2f s with a 1 s timeout", took);
    cr_assert_eq(atomic_load(&counted_terms), 5);
    cr_assert_eq(atomic_load(&counted_shutdown), 3);
    cr_assert_eq(atomic_load(&counted_killed), 2, "stragglers' terminate reason is killed");
}

Test(spawn, spawn_rejects_invalid_requests)
{
    struct actor_spawn_opts link = {.flags = ACTOR_SPAWN_LINK, .scheduler = -1};
    struct actor_spawn_opts mon = {.flags = ACTOR_SPAWN_MONITOR, .scheduler = -1};
    struct dist_pid pid = {.id = 12345};
    struct actor_stats s0, st;

    actor_system_stats(sys, &s0);
    cr_assert_eq(actor_spawn(sys, NULL, &counted_behaviour, NULL, &link, &pid), ACTOR_EINVAL,
                 "LINK needs a spawning actor");
    cr_assert_eq(actor_spawn(sys, NULL, &counted_behaviour, NULL, &mon, &pid), ACTOR_EINVAL,
                 "MONITOR needs a spawning actor");
    cr_assert_eq(actor_spawn(sys, NULL, NULL, NULL, NULL, &pid), ACTOR_EINVAL);
    cr_assert_eq(pid.id, 12345u, "a failed spawn left *pid untouched");
    actor_system_stats(sys, &st);
    cr_assert_eq(st.spawned, s0.spawned);
    cr_assert_eq(atomic_load(&counted_inits), 0, "a refused spawn ran init");
}

Test(spawn, an_actor_with_no_callbacks_drops_its_messages)
{
    struct dist_pid pid;
    struct actor_stats s0, st;

    actor_system_stats(sys, &s0);
    cr_assert_eq(actor_spawn(sys, NULL, &idle_behaviour, NULL, NULL, &pid), 0);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(send_noop(sys, pid), 0);
    cr_assert_eq(actor_exit_signal(sys, pid, 9), 0);
    WAIT_UNTIL(!is_alive(pid));
    cr_assert_not(is_alive(pid));
    WAIT_UNTIL((actor_system_stats(sys, &st), st.exited == s0.exited + 1));
    cr_assert_eq(st.alive, s0.alive);
}

struct blocked_call {
    struct dist_pid to;
    int rc;
    double took;
};

static void *blocked_call_thread(void *arg)
{
    struct blocked_call *bc = arg;
    struct cmd *req = cmd_new(OP_NOOP, 0, 0);
    struct actor_msg *reply = NULL;
    double t0 = now();

    /* A probe never answers a call. */
    bc->rc = actor_call_wait(sys, bc->to, actor_type_raw(), req, sizeof(*req), 30.0, &reply);
    bc->took = now() - t0;
    if (bc->rc == 0)
        actor_msg_free(reply);
    return NULL;
}

Test(spawn, shutdown_wakes_a_blocked_call_wait)
{
    struct blocked_call bc = {.to = spawn_probe(0)};
    pthread_t th;
    int rc;

    cr_assert_eq(pthread_create(&th, NULL, blocked_call_thread, &bc), 0);
    event_wait(EV_OTHER, bc.to, 0); /* the call arrived */
    rc = actor_system_shutdown(sys, 5.0);
    sys_stopped = 1;
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0, "shutdown: %s", actor_strerror(rc));
    cr_assert(bc.rc == ACTOR_ENOPROC || bc.rc == ACTOR_ESTOPPED, "the waiting call got %s",
              actor_strerror(bc.rc));
    cr_assert_lt(bc.took, 10.0, "the call waited %.1f s after its callee was shut down", bc.took);
}

static int spawner_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    /* Each message: a child, and another message to itself. Ends only when stopped. */
    int rc = actor_spawn(actor_system_of(self), self, &counted_behaviour, NULL, NULL, NULL);

    if (rc == 0)
        rc = send_noop(actor_system_of(self), actor_self(self));
    return rc == ACTOR_ESTOPPED ? 0 : rc;
}

Test(spawn, shutdown_stops_actors_that_keep_spawning)
{
    static const struct actor_behaviour spawner = {.name = "spawner", .handle = spawner_handle};
    struct actor_stats st;
    int rc;

    for (int i = 0; i < 2; i++) {
        struct dist_pid pid;
        struct actor_spawn_opts o = {.scheduler = i};

        cr_assert_eq(actor_spawn(sys, NULL, &spawner, NULL, &o, &pid), 0);
        cr_assert_eq(send_noop(sys, pid), 0);
    }
    WAIT_UNTIL(atomic_load(&counted_inits) > 10000);
    rc = actor_system_shutdown(sys, 5.0);
    sys_stopped = 1;
    cr_assert_eq(rc, 0, "shutdown: %s", actor_strerror(rc));
    actor_system_stats(sys, &st);
    cr_assert_eq(st.alive, 0u, "%llu alive after shutdown", (unsigned long long)st.alive);
    cr_assert_eq(atomic_load(&counted_terms), atomic_load(&counted_inits),
                 "%d actors ran init, %d terminate", atomic_load(&counted_inits),
                 atomic_load(&counted_terms));
}

Test(spawn, a_bounded_mailbox_holds_for_senders_on_its_scheduler)
{
    /* The target cannot run while the burster, on the same scheduler, is in its handler. */
    struct actor_spawn_opts bounded = {.mailbox_max = 4, .scheduler = 1};
    struct actor_spawn_opts same = {.scheduler = 1};
    struct dist_pid target, tx;
    struct burst *b = malloc(sizeof(*b));
    struct event r;

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &bounded, &target), 0);
    barrier(target);
    cr_assert_eq(actor_spawn(sys, NULL, &burster, NULL, &same, &tx), 0);
    *b = (struct burst){.target = target, .base = 100, .count = 10};
    cr_assert_eq(actor_send(sys, tx, actor_type_raw(), b, sizeof(*b)), 0);
    r = event_wait(EV_RESULT, tx, 0);
    cr_assert_eq(r.rc, 4, "%d of 10 sends into a mailbox of 4 accepted", r.rc);
    cr_assert_eq(r.a, 6u, "%llu refused as busy", (unsigned long long)r.a);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(event_wait(EV_MSG, target, i).seq, 101u + (uint64_t)i);
    barrier(target);
    cr_assert_eq(event_count(EV_MSG, target), 4);
    assert_clean();
}

Test(spawn, a_recycled_slot_does_not_take_old_mail)
{
    struct dist_pid old = spawn_on(0, 0), fresh[64], sender = spawn_on(0, 0);
    struct event r;

    cr_assert_eq(actor_kill(sys, old), 0);
    wait_dead(old);
    for (int i = 0; i < 64; i++)
        fresh[i] = spawn_on(0, 0);
    for (int i = 0; i < 64; i++)
        cr_assert_not(dist_pid_eq(fresh[i], old), "a PID was handed out twice");
    cr_assert_eq(send_noop(sys, old), ACTOR_ENOPROC);
    /* From an actor of the same scheduler too. */
    r = cmd_run(sender, (struct cmd){.op = OP_SEND, .pid = old, .a = 5});
    cr_assert_eq(r.rc, ACTOR_ENOPROC, "a send between actors of one scheduler: %s",
                 actor_strerror(r.rc));
    for (int i = 0; i < 64; i++)
        barrier(fresh[i]);
    cr_assert_eq(event_count(EV_MSG, DIST_PID_NONE), 0, "old mail reached a new actor");
}

Test(spawn, stale_pids_are_refused_between_actors_too)
{
    struct dist_pid a = spawn_on(0, 0), b = spawn_on(0, 0), c = spawn_on(1, 0), stale;
    struct event r;

    stale = b;
    stale.creation++;
    r = cmd_run(a, (struct cmd){.op = OP_SEND, .pid = stale, .a = 1});
    cr_assert_eq(r.rc, ACTOR_ENOPROC, "same scheduler: %s", actor_strerror(r.rc));
    r = cmd_run(c, (struct cmd){.op = OP_SEND, .pid = stale, .a = 1});
    cr_assert_eq(r.rc, ACTOR_ENOPROC, "other scheduler: %s", actor_strerror(r.rc));
    stale = b;
    stale.node = 7;
    r = cmd_run(a, (struct cmd){.op = OP_SEND, .pid = stale, .a = 1});
    cr_assert_neq(r.rc, 0, "a PID of an unknown node was delivered locally");
    barrier(b);
    cr_assert_eq(event_count(EV_MSG, b), 0);
}
