/*
 * test_timers.c: actor timers: one-shot and periodic ACTOR_MSG_TIMER with tag and id,
 * deadline order, cancel, actor_send_after, and timers that die with their actor.
 * Lower bounds on time are asserted (a timer never fires early); upper bounds only as
 * WAIT_SECONDS, since a loaded machine may be slow.
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

TestSuite(timers, .init = setup, .fini = teardown, .timeout = 60);

static struct event timer_start(struct dist_pid p, double after, double repeat, uint64_t tag)
{
    struct event r = cmd_run(p, (struct cmd){.op = OP_TIMER, .d1 = after, .d2 = repeat, .a = tag});

    cr_assert_eq(r.rc, 0, "actor_timer_start: %s", actor_strerror(r.rc));
    return r;
}

static int timer_cancel(struct dist_pid p, uint64_t id)
{
    return cmd_run(p, (struct cmd){.op = OP_CANCEL, .a = id}).rc;
}

static void grace(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};

    nanosleep(&ts, NULL);
}

Test(timers, a_one_shot_timer_fires_once_with_its_tag)
{
    struct dist_pid p = spawn_probe(0);
    double t0 = now();
    struct event r = timer_start(p, 0.05, 0, 77);
    struct event e = event_wait(EV_TIMER, p, 0);

    cr_assert_geq(now() - t0, 0.045, "fired after %.3f s, asked 0.05", now() - t0);
    cr_assert_eq(e.seq, 77u, "tag %llu", (unsigned long long)e.seq);
    cr_assert_eq(e.a, r.a, "timer id %llu, start gave %llu", (unsigned long long)e.a,
                 (unsigned long long)r.a);
    grace(0.2);
    barrier(p);
    cr_assert_eq(event_count(EV_TIMER, p), 1, "a one-shot timer fired again");
}

Test(timers, a_zero_delay_timer_fires)
{
    struct dist_pid p = spawn_probe(0);

    timer_start(p, 0, 0, 3);
    cr_assert_eq(event_wait(EV_TIMER, p, 0).seq, 3u);
}

Test(timers, a_periodic_timer_repeats_until_cancelled)
{
    struct dist_pid p = spawn_probe(0);
    double t0 = now();
    struct event start = timer_start(p, 0.01, 0.01, 5), r;
    int n1, stray = 0;
    long i_cancel;
    uint64_t seq;

    event_wait(EV_TIMER, p, 4);
    cr_assert_geq(now() - t0, 0.045, "5 ticks of 10 ms in %.3f s", now() - t0);
    seq = cmd_send(p, (struct cmd){.op = OP_CANCEL, .a = start.a});
    WAIT_UNTIL(event_find(EV_RESULT, p, seq, 0, NULL) >= 0);
    i_cancel = event_find(EV_RESULT, p, seq, 0, &r);
    cr_assert_geq(i_cancel, 0);
    cr_assert_eq(r.rc, 0, "cancel of a running periodic timer: %s", actor_strerror(r.rc));
    for (int n = 0;; n++) {
        struct event e;
        long i = event_find(EV_TIMER, p, 0, n, &e);

        if (i < 0)
            break;
        cr_assert_eq(e.seq, 5u);
        cr_assert_eq(e.a, start.a, "tick of timer %llu, started %llu", (unsigned long long)e.a,
                     (unsigned long long)start.a);
        if (i > i_cancel)
            stray++;
    }
    barrier(p);
    n1 = event_count(EV_TIMER, p);
    grace(0.1);
    barrier(p);
    cr_assert_eq(event_count(EV_TIMER, p), n1, "the timer went on after cancel");
    cr_assert_leq(stray, 1, "%d ticks handled after cancel", stray);
}

Test(timers, cancel_stops_a_one_shot_timer)
{
    struct dist_pid p = spawn_probe(0);
    struct event r = timer_start(p, 0.3, 0, 9);

    cr_assert_eq(timer_cancel(p, r.a), 0);
    cr_assert_eq(timer_cancel(p, r.a), ACTOR_EINVAL, "a second cancel");
    cr_assert_eq(timer_cancel(p, r.a + 1000), ACTOR_EINVAL, "an unknown id");
    grace(0.5);
    barrier(p);
    cr_assert_eq(event_count(EV_TIMER, p), 0, "a cancelled timer fired");
}

Test(timers, cancel_after_firing_is_einval)
{
    struct dist_pid p = spawn_probe(0);
    struct event r = timer_start(p, 0.01, 0, 1);

    event_wait(EV_TIMER, p, 0);
    cr_assert_eq(timer_cancel(p, r.a), ACTOR_EINVAL);
}

Test(timers, timers_fire_in_deadline_order)
{
    struct dist_pid p = spawn_probe(0);
    struct event t1 = timer_start(p, 0.25, 0, 1);
    struct event t2 = timer_start(p, 0.05, 0, 2);
    struct event t3 = timer_start(p, 0.15, 0, 3);

    cr_assert(t1.a != t2.a && t2.a != t3.a && t1.a != t3.a, "timer ids repeat");
    cr_assert_eq(event_wait(EV_TIMER, p, 0).seq, 2u);
    cr_assert_eq(event_wait(EV_TIMER, p, 1).seq, 3u);
    cr_assert_eq(event_wait(EV_TIMER, p, 2).seq, 1u);
    cr_assert_eq(event_wait(EV_TIMER, p, 0).a, t2.a);
    cr_assert_eq(event_wait(EV_TIMER, p, 2).a, t1.a);
}

Test(timers, timer_rejects_a_negative_delay)
{
    struct dist_pid p = spawn_probe(0);
    struct event r = cmd_run(p, (struct cmd){.op = OP_TIMER, .d1 = -1.0, .a = 1});

    cr_assert_eq(r.rc, ACTOR_EINVAL, "after -1 s: %s", actor_strerror(r.rc));
    grace(0.05);
    barrier(p);
    cr_assert_eq(event_count(EV_TIMER, p), 0);
}

Test(timers, send_after_delivers_as_from_the_actor)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);
    double t0 = now();
    struct event r = cmd_run(a, (struct cmd){.op = OP_SEND_AFTER, .d1 = 0.05, .pid = b, .a = 4242});
    struct event e;

    cr_assert_eq(r.rc, 0, "actor_send_after: %s", actor_strerror(r.rc));
    e = event_wait(EV_MSG, b, 0);
    cr_assert_geq(now() - t0, 0.045, "delivered after %.3f s, asked 0.05", now() - t0);
    cr_assert_eq(e.seq, 4242u);
    cr_assert(dist_pid_eq(e.pid, a), "sender %s, not %s", pidstr(e.pid), pidstr(a));
    cr_assert_eq(event_count(EV_TIMER, a), 0, "send_after also sent a timer message");
}

Test(timers, cancelled_send_after_is_dropped)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);
    struct event r = cmd_run(a, (struct cmd){.op = OP_SEND_AFTER, .d1 = 0.3, .pid = b, .a = 1});

    cr_assert_eq(r.rc, 0);
    cr_assert_eq(timer_cancel(a, r.a), 0);
    grace(0.5);
    barrier(b);
    cr_assert_eq(event_count(EV_MSG, b), 0, "a cancelled send_after was delivered");
}

Test(timers, send_after_to_a_dead_actor_is_harmless)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);
    struct event r = cmd_run(a, (struct cmd){.op = OP_SEND_AFTER, .d1 = 0.05, .pid = b, .a = 1});

    cr_assert_eq(r.rc, 0);
    cr_assert_eq(actor_kill(sys, b), 0);
    wait_dead(b);
    grace(0.2);
    barrier(a); /* the sender is unharmed, and the payload freed (see ASan) */
    cr_assert_eq(event_count(EV_MSG, b), 0);
}

/* No probe handled anything after its terminate ran. */
static void assert_nothing_after_terminate(struct dist_pid p)
{
    long i_term = event_find(EV_TERM, p, 0, 0, NULL), i_last = -1;

    cr_assert_geq(i_term, 0);
    for (int n = 0; event_find(EV_TIMER, p, 0, n, NULL) >= 0; n++)
        i_last = event_find(EV_TIMER, p, 0, n, NULL);
    cr_assert_lt(i_last, i_term, "a timer reached %s after terminate", pidstr(p));
    cr_assert_eq(event_count(EV_TERM, p), 1);
}

Test(timers, timers_die_with_their_actor)
{
    struct dist_pid p = spawn_probe(0), b = spawn_probe(0), fresh;
    struct actor_stats s0, st;

    actor_system_stats(sys, &s0);
    timer_start(p, 0.002, 0.002, 1);
    timer_start(p, 0.05, 0, 2);
    timer_start(p, 0.2, 0.1, 3);
    event_wait(EV_TIMER, p, 3);
    cmd_send(p, (struct cmd){.op = OP_FAIL, .arg = 1});
    cr_assert_eq(wait_dead(p).rc, 1);
    grace(0.4);
    barrier(b);
    assert_nothing_after_terminate(p);
    cr_assert_eq(event_count(EV_TERM, DIST_PID_NONE), 1, "another actor died");
    fresh = spawn_probe(0);
    barrier(fresh);
    actor_system_stats(sys, &st);
    cr_assert_eq(st.alive, s0.alive, "alive %llu, expected %llu", (unsigned long long)st.alive,
                 (unsigned long long)s0.alive);
}

Test(timers, timers_racing_their_actors_death)
{
    enum { N = 200 };
    struct dist_pid p[N];
    struct actor_stats s0, st;

    actor_system_stats(sys, &s0);
    for (int i = 0; i < N; i++) {
        p[i] = spawn_probe(0);
        cmd_send(p[i], (struct cmd){.op = OP_TIMER, .d1 = 0.001, .d2 = 0.001, .a = 1});
        cmd_send(p[i], (struct cmd){.op = OP_TIMER, .d1 = 0.0, .d2 = 0.0, .a = 2});
    }
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            cr_assert_eq(actor_kill(sys, p[i]), 0);
        else if (i % 3 == 1)
            cmd_send(p[i], (struct cmd){.op = OP_FAIL, .arg = 7});
        else
            cmd_send(p[i], (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    }
    for (int i = 0; i < N; i++)
        wait_dead(p[i]);
    grace(0.1);
    WAIT_UNTIL((actor_system_stats(sys, &st), st.alive == s0.alive));
    cr_assert_eq(st.alive, s0.alive);
    barrier(spawn_probe(0));
    for (int i = 0; i < N; i++)
        assert_nothing_after_terminate(p[i]);
    assert_clean();
}
