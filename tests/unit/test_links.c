/*
 * test_links.c: links and exit signals, with Erlang's semantics: propagation both ways,
 * normal exits, trap_exit, the untrappable kill and its "killed" echo, links to dead actors,
 * unlink, links as a set, ACTOR_SPAWN_LINK, chains, and the order of signals after messages.
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

TestSuite(links, .init = setup, .fini = teardown, .timeout = 60);

static void link_pair(struct dist_pid a, struct dist_pid b)
{
    struct event r = cmd_run(a, (struct cmd){.op = OP_LINK, .pid = b});

    cr_assert_eq(r.rc, 0, "link %s to %s: %s", pidstr(a), pidstr(b), actor_strerror(r.rc));
}

Test(links, exit_propagates_both_ways)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);
    struct dist_pid c = spawn_probe(0), d = spawn_probe(0);

    link_pair(a, b);
    cmd_send(a, (struct cmd){.op = OP_FAIL, .arg = 42});
    cr_assert_eq(wait_dead(a).rc, 42);
    cr_assert_eq(wait_dead(b).rc, 42, "the linked actor did not die with the same reason");

    link_pair(c, d);
    cmd_send(d, (struct cmd){.op = OP_FAIL, .arg = 43});
    cr_assert_eq(wait_dead(d).rc, 43);
    cr_assert_eq(wait_dead(c).rc, 43, "the link did not carry the signal back");
}

Test(links, normal_exit_does_not_kill_a_linked_actor)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0), w = spawn_probe(PROBE_TRAP);
    struct event e;

    link_pair(a, b);
    link_pair(w, a);
    cmd_send(a, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    cr_assert_eq(wait_dead(a).rc, ACTOR_NORMAL);
    e = event_wait(EV_EXIT, w, 0); /* a trapping actor sees normal exits too */
    cr_assert(dist_pid_eq(e.pid, a));
    cr_assert_eq(e.rc, ACTOR_NORMAL);
    assert_survives(b);
}

Test(links, trap_exit_turns_signals_into_messages)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(PROBE_TRAP);
    struct dist_pid c = spawn_probe(0), d = spawn_probe(0), f = spawn_probe(0);
    struct event e;

    link_pair(a, b);
    cmd_send(a, (struct cmd){.op = OP_FAIL, .arg = 42});
    e = event_wait(EV_EXIT, b, 0);
    cr_assert(dist_pid_eq(e.pid, a), "EXIT from %s, not %s", pidstr(e.pid), pidstr(a));
    cr_assert_eq(e.rc, 42);
    assert_survives(b);

    /* Switched on at run time, then off again. */
    cr_assert_eq(cmd_run(c, (struct cmd){.op = OP_TRAP, .arg = 1}).rc, 0);
    link_pair(d, c);
    cmd_send(d, (struct cmd){.op = OP_FAIL, .arg = 7});
    e = event_wait(EV_EXIT, c, 0);
    cr_assert_eq(e.rc, 7);
    cr_assert(dist_pid_eq(e.pid, d));
    cr_assert_eq(cmd_run(c, (struct cmd){.op = OP_TRAP, .arg = 0}).rc, 0);
    link_pair(f, c);
    cmd_send(f, (struct cmd){.op = OP_FAIL, .arg = 8});
    cr_assert_eq(wait_dead(c).rc, 8, "trap_exit off did not let the signal kill");
    cr_assert_eq(event_count(EV_EXIT, c), 1);
}

Test(links, kill_is_untrappable_and_propagates_as_killed)
{
    struct dist_pid b = spawn_probe(PROBE_TRAP), c = spawn_probe(PROBE_TRAP), d = spawn_probe(0);
    struct dist_pid x = spawn_probe(PROBE_TRAP);
    struct event e;

    link_pair(c, b);
    link_pair(d, b);
    cr_assert_eq(actor_kill(sys, b), 0);
    cr_assert_eq(wait_dead(b).rc, ACTOR_KILLED, "a killed actor's reason is killed");
    cr_assert_eq(event_count(EV_EXIT, b), 0, "kill was trapped");
    e = event_wait(EV_EXIT, c, 0);
    cr_assert_eq(e.rc, ACTOR_KILLED, "linked actors get killed, not kill (got %s)",
                 actor_reason_name(e.rc));
    cr_assert(dist_pid_eq(e.pid, b));
    assert_survives(c); /* killed, unlike kill, can be trapped */
    cr_assert_eq(wait_dead(d).rc, ACTOR_KILLED);

    cr_assert_eq(actor_exit_signal(sys, x, ACTOR_KILL), 0);
    cr_assert_eq(wait_dead(x).rc, ACTOR_KILLED);
    cr_assert_eq(event_count(EV_EXIT, x), 0);
}

Test(links, exit_signal_follows_erlang)
{
    struct dist_pid p = spawn_probe(0), t = spawn_probe(PROBE_TRAP);
    struct event e;

    cr_assert_eq(actor_exit_signal(sys, p, ACTOR_NORMAL), 0);
    assert_survives(p); /* normal is ignored by an actor that doesn't trap */

    cr_assert_eq(actor_exit_signal(sys, t, ACTOR_NORMAL), 0);
    e = event_wait(EV_EXIT, t, 0);
    cr_assert_eq(e.rc, ACTOR_NORMAL);
    cr_assert(dist_pid_is_none(e.pid), "an exit signal from outside any actor came from %s",
              pidstr(e.pid));
    cr_assert_eq(actor_exit_signal(sys, t, 9), 0);
    e = event_wait(EV_EXIT, t, 1);
    cr_assert_eq(e.rc, 9);
    assert_survives(t);

    cr_assert_eq(actor_exit_signal(sys, p, ACTOR_SHUTDOWN), 0);
    cr_assert_eq(wait_dead(p).rc, ACTOR_SHUTDOWN);
}

Test(links, linking_to_a_dead_actor_gives_noproc)
{
    struct dist_pid dead = spawn_probe(0), t = spawn_probe(PROBE_TRAP), p = spawn_probe(0);
    struct event e;

    cmd_send(dead, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    wait_dead(dead);

    link_pair(t, dead);
    e = event_wait(EV_EXIT, t, 0);
    cr_assert(dist_pid_eq(e.pid, dead), "EXIT names %s, not the dead actor", pidstr(e.pid));
    cr_assert_eq(e.rc, ACTOR_NOPROC, "reason %s", actor_reason_name(e.rc));
    assert_survives(t);

    link_pair(p, dead);
    cr_assert_eq(wait_dead(p).rc, ACTOR_NOPROC);
}

Test(links, unlink_stops_propagation)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0), w = spawn_probe(0);
    struct dist_pid c = spawn_probe(0), d = spawn_probe(0), e = spawn_probe(0);

    link_pair(a, b);
    cr_assert_eq(cmd_run(a, (struct cmd){.op = OP_UNLINK, .pid = b}).rc, 0);
    cr_assert_eq(cmd_run(w, (struct cmd){.op = OP_MONITOR, .pid = a}).rc, 0);
    cmd_send(a, (struct cmd){.op = OP_FAIL, .arg = 42});
    cr_assert_eq(wait_dead(a).rc, 42);
    event_wait(EV_DOWN, w, 0);
    assert_survives(b);

    /* Unlink removes both directions. */
    link_pair(c, d);
    cr_assert_eq(cmd_run(c, (struct cmd){.op = OP_UNLINK, .pid = d}).rc, 0);
    cmd_send(d, (struct cmd){.op = OP_FAIL, .arg = 43});
    cr_assert_eq(wait_dead(d).rc, 43);
    assert_survives(c);

    /* Unlinking what is not linked is a no-op, as in Erlang. */
    cr_assert_eq(cmd_run(e, (struct cmd){.op = OP_UNLINK, .pid = c}).rc, 0);
    assert_survives(e);
}

Test(links, links_are_a_set)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);

    link_pair(a, b);
    link_pair(a, b);
    link_pair(b, a);
    cr_assert_eq(cmd_run(a, (struct cmd){.op = OP_UNLINK, .pid = b}).rc, 0);
    cmd_send(a, (struct cmd){.op = OP_FAIL, .arg = 42});
    cr_assert_eq(wait_dead(a).rc, 42);
    assert_survives(b);
}

Test(links, spawn_link_links_parent_and_child)
{
    struct dist_pid p = spawn_probe(0), p2 = spawn_probe(0);
    struct event r = cmd_run(p, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_LINK});
    struct event r2 = cmd_run(p2, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_LINK});

    cr_assert_eq(r.rc, 0, "spawn: %s", actor_strerror(r.rc));
    cr_assert_eq(r2.rc, 0);
    cmd_send(r.pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    cr_assert_eq(wait_dead(r.pid).rc, 42);
    cr_assert_eq(wait_dead(p).rc, 42, "the parent outlived its linked child");

    cmd_send(p2, (struct cmd){.op = OP_FAIL, .arg = 43});
    cr_assert_eq(wait_dead(p2).rc, 43);
    cr_assert_eq(wait_dead(r2.pid).rc, 43, "the child outlived its linked parent");
}

Test(links, spawn_link_of_a_child_whose_init_fails)
{
    struct dist_pid p = spawn_probe(PROBE_TRAP);
    struct event r =
        cmd_run(p, (struct cmd){.op = OP_SPAWN, .arg = ACTOR_SPAWN_LINK, .a = PROBE_INIT_FAIL});
    struct event e;

    cr_assert_eq(r.rc, 0);
    e = event_wait(EV_EXIT, p, 0);
    cr_assert(dist_pid_eq(e.pid, r.pid));
    cr_assert_eq(e.rc, PROBE_INIT_REASON, "reason %d", e.rc);
}

Test(links, a_chain_of_links_dies_together)
{
    enum { N = 50 };
    struct dist_pid p[N];

    for (int i = 0; i < N; i++)
        p[i] = spawn_probe(0);
    for (int i = 1; i < N; i++)
        link_pair(p[i], p[i - 1]);
    cr_assert_eq(actor_kill(sys, p[N - 1]), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(wait_dead(p[i]).rc, ACTOR_KILLED, "link %d", i);
}

Test(links, signals_from_one_actor_follow_its_messages)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(PROBE_TRAP);
    long i_msg, i_exit;

    link_pair(a, b);
    cmd_send(a, (struct cmd){.op = OP_SEND, .pid = b, .a = 4242});
    cmd_send(a, (struct cmd){.op = OP_FAIL, .arg = 42});
    event_wait(EV_EXIT, b, 0);
    barrier(b);
    i_msg = event_find(EV_MSG, b, 4242, 0, NULL);
    i_exit = event_find(EV_EXIT, b, 0, 0, NULL);
    cr_assert_geq(i_msg, 0, "the message sent before the crash was lost");
    cr_assert_lt(i_msg, i_exit, "the exit signal overtook a message sent before it");
}

Test(links, link_rejects_no_process)
{
    struct dist_pid p = spawn_probe(0);
    struct event r = cmd_run(p, (struct cmd){.op = OP_LINK, .pid = DIST_PID_NONE});

    cr_assert_eq(r.rc, ACTOR_EINVAL, "link to no process: %s", actor_strerror(r.rc));
    assert_survives(p);
}

Test(links, after_unlink_a_pending_exit_has_no_effect)
{
    /* a waits in a handler on scheduler 1 while b, linked to it, crashes; the exit signal
     * is in a's mailbox when a unlinks. Erlang: once unlink returns, the link has no effect. */
    struct dist_pid a = spawn_on(1, 0), b = spawn_on(0, 0);
    uint64_t seq;
    size_t depth;
    struct event r = {0};

    link_pair(a, b);
    seq = cmd_send(a, (struct cmd){.op = OP_GATE_UNLINK, .pid = b});
    WAIT_UNTIL(atomic_load(&gate_entered));
    cr_assert(atomic_load(&gate_entered));
    depth = depth_of(a);
    cmd_send(b, (struct cmd){.op = OP_FAIL, .arg = 42});
    WAIT_UNTIL(depth_of(a) > depth);
    cr_assert_gt(depth_of(a), depth, "the exit signal never reached a's mailbox");
    atomic_store(&gate_open, 1);
    WAIT_UNTIL(event_find(EV_RESULT, a, seq, 0, &r) >= 0);
    cr_assert_eq(r.rc, 0);
    assert_survives(a);
}

Test(links, an_exit_signal_from_a_linked_actor_keeps_the_link)
{
    /* exit/2 between linked actors is not a link exit: the link stays. */
    struct dist_pid a = spawn_probe(0), b = spawn_probe(PROBE_TRAP);
    struct event e;

    link_pair(a, b);
    cr_assert_eq(cmd_run(a, (struct cmd){.op = OP_EXIT_SIGNAL, .pid = b, .arg = 9}).rc, 0);
    e = event_wait(EV_EXIT, b, 0);
    cr_assert(dist_pid_eq(e.pid, a));
    cr_assert_eq(e.rc, 9);
    cmd_send(b, (struct cmd){.op = OP_FAIL, .arg = 43});
    cr_assert_eq(wait_dead(b).rc, 43);
    cr_assert_eq(wait_dead(a).rc, 43, "the link was dropped by the exit signal");
}

Test(links, linking_to_a_stale_pid_gives_noproc)
{
    struct dist_pid t = spawn_probe(PROBE_TRAP), other = spawn_probe(0), stale = other;
    struct event e;

    stale.creation++;
    link_pair(t, stale);
    e = event_wait(EV_EXIT, t, 0);
    cr_assert_eq(e.rc, ACTOR_NOPROC);
    cr_assert(dist_pid_eq(e.pid, stale));
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 5});
    wait_dead(t);
    assert_survives(other); /* the live actor with that id was never linked */
}

/*
 * An actor busy in a handler, with @backlog messages queued behind it, then an exit signal.
 * Returns the number of those messages it handled before it died, and its reason.
 */
static int handled_before_exit(int backlog, int reason, int *term_reason)
{
    struct dist_pid p = spawn_on(1, 0);

    cmd_send(p, (struct cmd){.op = OP_GATE});
    WAIT_UNTIL(atomic_load(&gate_entered));
    cr_assert(atomic_load(&gate_entered));
    for (int i = 0; i < backlog; i++)
        cmd_send(p, (struct cmd){.op = OP_ECHO});
    cr_assert_eq(actor_exit_signal(sys, p, reason), 0);
    atomic_store(&gate_open, 1);
    *term_reason = wait_dead(p).rc;
    return event_count(EV_MSG, p);
}

Test(links, kill_does_not_wait_behind_queued_messages)
{
    /* As on the BEAM, an exit signal takes effect when it arrives: user code does not run
     * for the messages queued before it. Otherwise a flooded actor cannot be killed. */
    int reason, handled = handled_before_exit(1000, ACTOR_KILL, &reason);

    cr_assert_eq(reason, ACTOR_KILLED);
    cr_assert_eq(handled, 0, "the killed actor handled %d of its 1000 queued messages first",
                 handled);
}

Test(links, an_exit_signal_does_not_wait_behind_queued_messages)
{
    int reason, handled = handled_before_exit(1000, 9, &reason);

    cr_assert_eq(reason, 9);
    cr_assert_eq(handled, 0, "the actor handled %d of its 1000 queued messages first", handled);
}
