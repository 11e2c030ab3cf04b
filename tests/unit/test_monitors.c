/*
 * test_monitors.c: monitors: DOWN with the reference, PID and reason; immediate noproc for a
 * dead target; demonitor with and without ACTOR_DEMONITOR_FLUSH; ACTOR_SPAWN_MONITOR; several
 * monitors per target; DOWN after earlier messages; watchers that die first.
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

TestSuite(monitors, .init = setup, .fini = teardown, .timeout = 60);

static struct event monitor(struct dist_pid watcher, struct dist_pid target)
{
    struct event r = cmd_run(watcher, (struct cmd){.op = OP_MONITOR, .pid = target});

    cr_assert_eq(r.rc, 0, "monitor: %s", actor_strerror(r.rc));
    return r;
}

Test(monitors, down_carries_ref_pid_and_reason)
{
    struct dist_pid w = spawn_probe(0);
    struct dist_pid t1 = spawn_probe(0), t2 = spawn_probe(0), t3 = spawn_probe(PROBE_TRAP);
    struct event m1 = monitor(w, t1), m2 = monitor(w, t2), m3 = monitor(w, t3);
    struct event d;

    cr_assert_neq(m1.a, m2.a, "two monitors share a reference");
    cr_assert_neq(m2.a, m3.a);
    cmd_send(t1, (struct cmd){.op = OP_FAIL, .arg = 42});
    d = event_wait(EV_DOWN, w, 0);
    cr_assert_eq(d.a, m1.a, "DOWN ref %llu, monitor gave %llu", (unsigned long long)d.a,
                 (unsigned long long)m1.a);
    cr_assert(dist_pid_eq(d.pid, t1));
    cr_assert_eq(d.rc, 42);

    cmd_send(t2, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    d = event_wait(EV_DOWN, w, 1);
    cr_assert_eq(d.a, m2.a);
    cr_assert_eq(d.rc, ACTOR_NORMAL, "a normal exit is reported too");

    cr_assert_eq(actor_kill(sys, t3), 0);
    d = event_wait(EV_DOWN, w, 2);
    cr_assert_eq(d.a, m3.a);
    cr_assert_eq(d.rc, ACTOR_KILLED, "reason %s", actor_reason_name(d.rc));
    assert_survives(w); /* a monitor is not a link */
    cr_assert_eq(event_count(EV_EXIT, w), 0);
}

Test(monitors, monitoring_a_dead_actor_gives_noproc_at_once)
{
    struct dist_pid w = spawn_probe(0), dead = spawn_probe(0);
    struct event m, d;

    cmd_send(dead, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    wait_dead(dead);
    m = monitor(w, dead);
    d = event_wait(EV_DOWN, w, 0);
    cr_assert_eq(d.a, m.a);
    cr_assert(dist_pid_eq(d.pid, dead));
    cr_assert_eq(d.rc, ACTOR_NOPROC, "reason %s", actor_reason_name(d.rc));
    assert_survives(w);
    cr_assert_eq(event_count(EV_DOWN, w), 1);
}

Test(monitors, demonitor_stops_a_monitor)
{
    struct dist_pid w = spawn_probe(0), t = spawn_probe(0);
    struct event m = monitor(w, t), r;

    r = cmd_run(w, (struct cmd){.op = OP_DEMONITOR, .a = m.a});
    cr_assert_eq(r.rc, 0);
    r = cmd_run(w, (struct cmd){.op = OP_DEMONITOR, .a = m.a});
    cr_assert_eq(r.rc, ACTOR_EINVAL, "a second demonitor: %s", actor_strerror(r.rc));
    r = cmd_run(w, (struct cmd){.op = OP_DEMONITOR, .a = m.a + 1000});
    cr_assert_eq(r.rc, ACTOR_EINVAL, "an unknown reference: %s", actor_strerror(r.rc));
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    wait_dead(t);
    assert_survives(w);
    cr_assert_eq(event_count(EV_DOWN, w), 0, "DOWN after demonitor");
}

Test(monitors, demonitor_by_another_actor_is_einval)
{
    struct dist_pid w = spawn_probe(0), x = spawn_probe(0), t = spawn_probe(0);
    struct event m = monitor(w, t);
    struct event r = cmd_run(x, (struct cmd){.op = OP_DEMONITOR, .a = m.a});

    cr_assert_eq(r.rc, ACTOR_EINVAL, "another actor's reference: %s", actor_strerror(r.rc));
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    cr_assert_eq(event_wait(EV_DOWN, w, 0).a, m.a, "the owner's monitor was removed");
}

/*
 * The watcher, on scheduler 1, runs OP_GATE_DEMONITOR and waits in it while its target, on
 * scheduler 0, is killed: the DOWN lands in the watcher's mailbox before demonitor runs.
 * Returns the monitor's reference and demonitor's result.
 */
static struct event demonitor_with_pending_down(struct dist_pid w, unsigned flags, struct event *m)
{
    struct dist_pid t = spawn_on(0, 0);
    uint64_t seq;
    size_t depth;
    struct event r = {0};

    *m = monitor(w, t);
    seq = cmd_send(w, (struct cmd){.op = OP_GATE_DEMONITOR, .a = m->a, .arg = (int)flags});
    WAIT_UNTIL(atomic_load(&gate_entered));
    cr_assert(atomic_load(&gate_entered));
    depth = depth_of(w);
    cr_assert_eq(actor_kill(sys, t), 0);
    WAIT_UNTIL(!is_alive(t));
    cr_assert_not(is_alive(t));
    /* The DOWN may travel a moment after the target leaves the table. */
    WAIT_UNTIL(depth_of(w) > depth);
    cr_assert_gt(depth_of(w), depth, "the DOWN never reached the watcher's mailbox");
    atomic_store(&gate_open, 1);
    WAIT_UNTIL(event_find(EV_RESULT, w, seq, 0, &r) >= 0);
    cr_assert(event_find(EV_RESULT, w, seq, 0, &r) >= 0);
    barrier(w);
    return r;
}

Test(monitors, demonitor_flush_drops_a_pending_down)
{
    struct dist_pid w = spawn_on(1, 0);
    struct event m, r = demonitor_with_pending_down(w, ACTOR_DEMONITOR_FLUSH, &m);

    cr_assert_eq(r.rc, 0, "demonitor of a fired monitor: %s", actor_strerror(r.rc));
    assert_survives(w);
    cr_assert_eq(event_count(EV_DOWN, w), 0, "a DOWN survived ACTOR_DEMONITOR_FLUSH");
}

Test(monitors, demonitor_without_flush_leaves_a_pending_down)
{
    struct dist_pid w = spawn_on(1, 0);
    struct event m, r = demonitor_with_pending_down(w, 0, &m);
    struct event d;

    cr_assert_eq(r.rc, 0, "demonitor of a fired monitor: %s", actor_strerror(r.rc));
    d = event_wait(EV_DOWN, w, 0);
    cr_assert_eq(d.a, m.a);
    cr_assert_eq(d.rc, ACTOR_KILLED);
}

Test(monitors, spawn_monitor_sets_the_ref)
{
    struct dist_pid w = spawn_probe(0);
    struct event r = cmd_run(w, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_MONITOR});
    struct event r2 = cmd_run(w, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_MONITOR});
    struct event d;

    cr_assert_eq(r.rc, 0, "spawn: %s", actor_strerror(r.rc));
    cr_assert_eq(r2.rc, 0);
    cr_assert_neq(r.a, r2.a, "two spawn monitors share a reference");
    cmd_send(r.pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    d = event_wait(EV_DOWN, w, 0);
    cr_assert_eq(d.a, r.a, "DOWN ref %llu, spawn gave %llu", (unsigned long long)d.a,
                 (unsigned long long)r.a);
    cr_assert(dist_pid_eq(d.pid, r.pid));
    cr_assert_eq(d.rc, 42);
    assert_survives(w);
    cr_assert(is_alive(r2.pid), "the other child died");
}

Test(monitors, each_monitor_gets_its_own_down)
{
    enum { W = 4, M = 3 };
    struct dist_pid t = spawn_probe(0), w[W];
    struct event m[W][M];

    for (int i = 0; i < W; i++) {
        w[i] = spawn_probe(0);
        for (int j = 0; j < M; j++)
            m[i][j] = monitor(w[i], t);
    }
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    for (int i = 0; i < W; i++) {
        int seen[M] = {0};

        event_wait(EV_DOWN, w[i], M - 1);
        barrier(w[i]);
        cr_assert_eq(event_count(EV_DOWN, w[i]), M);
        for (int n = 0; n < M; n++) {
            struct event d;

            event_find(EV_DOWN, w[i], 0, n, &d);
            cr_assert_eq(d.rc, 42);
            for (int j = 0; j < M; j++)
                if (d.a == m[i][j].a)
                    seen[j]++;
        }
        for (int j = 0; j < M; j++)
            cr_assert_eq(seen[j], 1, "watcher %d, monitor %d: %d DOWNs", i, j, seen[j]);
    }
}

Test(monitors, down_follows_earlier_messages)
{
    struct dist_pid w = spawn_probe(0), t = spawn_probe(0);
    long i_msg, i_down;

    monitor(w, t);
    cmd_send(t, (struct cmd){.op = OP_SEND, .pid = w, .a = 4242});
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    event_wait(EV_DOWN, w, 0);
    i_msg = event_find(EV_MSG, w, 4242, 0, NULL);
    i_down = event_find(EV_DOWN, w, 0, 0, NULL);
    cr_assert_geq(i_msg, 0, "the message sent before the crash was lost");
    cr_assert_lt(i_msg, i_down, "the DOWN overtook a message sent before it");
}

Test(monitors, a_dead_watcher_is_forgotten)
{
    struct dist_pid w = spawn_probe(0), t = spawn_probe(0), w2 = spawn_probe(0);

    monitor(w, t);
    monitor(w2, t);
    cmd_send(w, (struct cmd){.op = OP_FAIL, .arg = 1});
    wait_dead(w);
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    wait_dead(t);
    cr_assert_eq(event_wait(EV_DOWN, w2, 0).rc, 42);
    cr_assert_eq(event_count(EV_DOWN, w), 0);
    assert_survives(w2);
}

Test(monitors, watchers_that_end_first_leave_nothing_behind)
{
    /* A watcher that ends with monitors still active leaves nothing behind for its targets. */
    struct dist_pid t = spawn_probe(0);
    struct actor_stats st0, st;

    actor_system_stats(sys, &st0);
    for (int i = 0; i < 20; i++) {
        struct dist_pid w = spawn_probe(0);

        monitor(w, t);
        cmd_send(w, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
        wait_dead(w);
    }
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 42});
    wait_dead(t);
    WAIT_UNTIL((actor_system_stats(sys, &st), st.alive == st0.alive - 1));
    cr_assert_eq(st.alive, st0.alive - 1);
    cr_assert_eq(event_count(EV_DOWN, DIST_PID_NONE), 0);
}

Test(monitors, monitoring_a_stale_pid_gives_noproc)
{
    struct dist_pid w = spawn_probe(0), t = spawn_probe(0), stale = t;
    struct event m, d;

    stale.creation++;
    m = monitor(w, stale);
    d = event_wait(EV_DOWN, w, 0);
    cr_assert_eq(d.a, m.a);
    cr_assert_eq(d.rc, ACTOR_NOPROC);
    cr_assert(dist_pid_eq(d.pid, stale));
    cr_assert_eq(event_count(EV_OTHER, t), 0);
}

Test(monitors, a_spawn_monitor_can_be_removed)
{
    struct dist_pid w = spawn_probe(0);
    struct event r = cmd_run(w, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_MONITOR});

    cr_assert_eq(r.rc, 0);
    cr_assert_eq(cmd_run(w, (struct cmd){.op = OP_DEMONITOR, .a = r.a}).rc, 0);
    cmd_send(r.pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    wait_dead(r.pid);
    assert_survives(w);
    cr_assert_eq(event_count(EV_DOWN, w), 0);
}

Test(monitors, spawn_link_and_monitor_together)
{
    struct dist_pid w = spawn_probe(PROBE_TRAP);
    struct event r =
        cmd_run(w, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_LINK | ACTOR_SPAWN_MONITOR});
    struct event d, x;

    cr_assert_eq(r.rc, 0);
    cmd_send(r.pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    d = event_wait(EV_DOWN, w, 0);
    x = event_wait(EV_EXIT, w, 0);
    cr_assert_eq(d.a, r.a);
    cr_assert_eq(d.rc, 42);
    cr_assert(dist_pid_eq(x.pid, r.pid));
    cr_assert_eq(x.rc, 42);
    assert_survives(w);
}
