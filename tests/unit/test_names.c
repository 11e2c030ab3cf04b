/*
 * test_names.c: registered names: register, whereis, unregister, uniqueness both ways,
 * names given at spawn, release when the actor ends, actor_send_named, and a register race.
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

TestSuite(names, .init = setup, .fini = teardown, .timeout = 60);

static int whereis_is(const char *name, struct dist_pid pid)
{
    struct dist_pid got = DIST_PID_NONE;

    return actor_whereis(sys, name, &got) == 0 && dist_pid_eq(got, pid);
}

static int send_named_echo(const char *name, uint64_t seq)
{
    struct cmd *c = cmd_new(OP_ECHO, seq, 0);
    int rc = actor_send_named(sys, name, actor_type_raw(), c, sizeof(*c));

    if (rc != 0)
        free(c); /* a failed send leaves the payload with the caller */
    return rc;
}

Test(names, register_whereis_unregister)
{
    struct dist_pid a = spawn_probe(0);
    struct dist_pid out = {.id = 777};

    cr_assert_eq(actor_whereis(sys, "alpha", &out), ACTOR_ENONAME);
    cr_assert_eq(out.id, 777u, "a failed whereis left *pid untouched");
    cr_assert_eq(actor_register(sys, "alpha", a), 0);
    cr_assert(whereis_is("alpha", a));
    cr_assert_eq(actor_unregister(sys, "alpha"), 0);
    cr_assert_eq(actor_whereis(sys, "alpha", &out), ACTOR_ENONAME);
    cr_assert_eq(actor_unregister(sys, "alpha"), ACTOR_ENONAME);
    assert_clean();
    cr_assert(is_alive(a), "unregister ended the actor");
    /* The actor may take a name again, and the name may go to another actor. */
    cr_assert_eq(actor_register(sys, "alpha2", a), 0);
    cr_assert(whereis_is("alpha2", a));
}

Test(names, a_name_has_one_actor_and_an_actor_one_name)
{
    struct dist_pid a = spawn_probe(0), b = spawn_probe(0);

    cr_assert_eq(actor_register(sys, "alpha", a), 0);
    cr_assert_eq(actor_register(sys, "alpha", b), ACTOR_ENAMETAKEN);
    cr_assert_eq(actor_register(sys, "alpha", a), ACTOR_ENAMETAKEN);
    cr_assert_eq(actor_register(sys, "beta", a), ACTOR_ENAMETAKEN, "an actor has one name");
    cr_assert(whereis_is("alpha", a), "a refused register changed the name");
    cr_assert_eq(actor_whereis(sys, "beta", &(struct dist_pid){0}), ACTOR_ENONAME);
    cr_assert_eq(actor_register(sys, "beta", b), 0);
    cr_assert(whereis_is("beta", b));
}

Test(names, spawn_registers_and_refuses_a_taken_name)
{
    struct actor_spawn_opts o = {.name = "gamma", .scheduler = -1};
    struct dist_pid a, b = {.id = 555};
    struct actor_stats s0, st;
    int inits;

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &a), 0);
    cr_assert(whereis_is("gamma", a), "the name is registered when spawn returns");
    event_wait(EV_INIT, a, 0);
    inits = event_count(EV_INIT, DIST_PID_NONE);
    actor_system_stats(sys, &s0);
    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &b), ACTOR_ENAMETAKEN);
    cr_assert_eq(b.id, 555u);
    barrier(a);
    actor_system_stats(sys, &st);
    cr_assert_eq(st.spawned, s0.spawned, "a refused spawn started an actor");
    cr_assert_eq(st.alive, s0.alive);
    cr_assert_eq(event_count(EV_INIT, DIST_PID_NONE), inits, "a refused spawn ran init");
    cr_assert(whereis_is("gamma", a));
}

static void end_and_release(const char *name, struct dist_pid pid, int how)
{
    struct dist_pid next;

    cr_assert_eq(actor_register(sys, name, pid), 0);
    if (how == 0)
        cmd_send(pid, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    else if (how == 1)
        cmd_send(pid, (struct cmd){.op = OP_FAIL, .arg = 42});
    else
        cr_assert_eq(actor_kill(sys, pid), 0);
    wait_dead(pid);
    WAIT_UNTIL(actor_whereis(sys, name, &(struct dist_pid){0}) == ACTOR_ENONAME);
    cr_assert_eq(actor_whereis(sys, name, &(struct dist_pid){0}), ACTOR_ENONAME,
                 "%s still names a dead actor (end %d)", name, how);
    cr_assert_eq(send_named_echo(name, 1), ACTOR_ENONAME);
    next = spawn_probe(0);
    cr_assert_eq(actor_register(sys, name, next), 0, "%s was not released (end %d)", name, how);
    cr_assert(whereis_is(name, next));
}

Test(names, a_name_is_released_when_its_actor_ends)
{
    end_and_release("normal", spawn_probe(0), 0);
    end_and_release("crashed", spawn_probe(0), 1);
    end_and_release("killed", spawn_probe(0), 2);
}

Test(names, a_name_from_spawn_is_released_too)
{
    struct actor_spawn_opts o = {.name = "delta", .scheduler = -1};
    struct dist_pid a, b;

    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &a), 0);
    cr_assert_eq(actor_kill(sys, a), 0);
    wait_dead(a);
    WAIT_UNTIL(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &b) == 0);
    cr_assert(whereis_is("delta", b), "the name never came free");
}

Test(names, send_named_delivers)
{
    struct dist_pid a = spawn_probe(0);
    struct event e;

    cr_assert_eq(actor_register(sys, "alpha", a), 0);
    cr_assert_eq(send_named_echo("alpha", 11), 0);
    cr_assert_eq(send_named_echo("alpha", 12), 0);
    e = event_wait(EV_MSG, a, 0);
    cr_assert_eq(e.seq, 11u);
    cr_assert(dist_pid_is_none(e.pid));
    cr_assert_eq(event_wait(EV_MSG, a, 1).seq, 12u);
    cr_assert_eq(send_named_echo("nobody", 13), ACTOR_ENONAME);
    cr_assert_eq(actor_unregister(sys, "alpha"), 0);
    cr_assert_eq(send_named_echo("alpha", 14), ACTOR_ENONAME);
    barrier(a);
    cr_assert_eq(event_count(EV_MSG, a), 2);
}

Test(names, register_refuses_dead_and_invalid)
{
    struct dist_pid dead = spawn_probe(0), stale;
    int rc;

    stale = spawn_probe(0);
    stale.creation++;
    cmd_send(dead, (struct cmd){.op = OP_EXIT, .arg = ACTOR_NORMAL});
    wait_dead(dead);
    cr_assert_eq(actor_register(sys, "ghost", dead), ACTOR_ENOPROC);
    cr_assert_eq(actor_register(sys, "stale", stale), ACTOR_ENOPROC);
    cr_assert_eq(actor_whereis(sys, "ghost", &(struct dist_pid){0}), ACTOR_ENONAME);
    cr_assert_eq(actor_register(sys, NULL, spawn_probe(0)), ACTOR_EINVAL);
    rc = actor_register(sys, "none", DIST_PID_NONE);
    cr_assert(rc == ACTOR_ENOPROC || rc == ACTOR_EINVAL, "register no process: %s",
              actor_strerror(rc));
}

Test(names, names_are_copied)
{
    char name[16];
    struct dist_pid a = spawn_probe(0);

    snprintf(name, sizeof(name), "%s", "epsilon");
    cr_assert_eq(actor_register(sys, name, a), 0);
    memset(name, 'z', sizeof(name) - 1);
    cr_assert(whereis_is("epsilon", a));
}

struct race {
    pthread_barrier_t *start;
    struct dist_pid pid;
    int rc;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;

    pthread_barrier_wait(r->start);
    r->rc = actor_register(sys, "contested", r->pid);
    return NULL;
}

Test(names, one_of_many_concurrent_registers_wins)
{
    enum { T = 6, ROUNDS = 50 };
    struct dist_pid pids[T];

    for (int i = 0; i < T; i++)
        pids[i] = spawn_probe(0);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_t start;
        struct race r[T];
        pthread_t th[T];
        int winners = 0, winner = -1;

        pthread_barrier_init(&start, NULL, T);
        for (int i = 0; i < T; i++) {
            r[i] = (struct race){.start = &start, .pid = pids[i]};
            cr_assert_eq(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
        }
        for (int i = 0; i < T; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < T; i++) {
            if (r[i].rc == 0) {
                winners++;
                winner = i;
            } else {
                cr_assert_eq(r[i].rc, ACTOR_ENAMETAKEN, "%s", actor_strerror(r[i].rc));
            }
        }
        cr_assert_eq(winners, 1, "round %d: %d winners", round, winners);
        cr_assert(whereis_is("contested", pids[winner]));
        cr_assert_eq(actor_unregister(sys, "contested"), 0);
    }
}

Test(names, an_empty_name_is_invalid)
{
    struct actor_spawn_opts o = {.name = "", .scheduler = -1};
    struct dist_pid pid;

    cr_assert_eq(actor_register(sys, "", spawn_probe(0)), ACTOR_EINVAL);
    cr_assert_eq(actor_spawn(sys, NULL, &probe_behaviour, NULL, &o, &pid), ACTOR_EINVAL,
                 "spawn with an empty name");
}

/* On DOWN: report whereis("svc") as rc, and a register of "svc" for itself as a. */
static int successor_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_DOWN) {
        struct dist_pid holder = DIST_PID_NONE;
        int where = actor_whereis(actor_system_of(self), "svc", &holder);
        int reg = actor_register(actor_system_of(self), "svc", actor_self(self));

        report(EV_DOWN, where, 0, (uint64_t)(int64_t)reg, holder);
        return 0;
    }
    return probe_handle(self, state, msg);
}

Test(names, the_name_is_free_when_the_down_arrives)
{
    /* Erlang unregisters a name before the exit's signals go out, so a supervisor that sees
     * the DOWN can start a successor under the same name. Many timers on the dying actor
     * make its death slow, so that a late release would show. */
    static const struct actor_behaviour successor = {.name = "successor",
                                                     .init = probe_init,
                                                     .handle = successor_handle,
                                                     .terminate = probe_terminate};
    struct actor_spawn_opts o = {.scheduler = 1};
    struct dist_pid t = spawn_on(0, 0), s;
    struct event e;

    cr_assert_eq(actor_spawn(sys, NULL, &successor, NULL, &o, &s), 0);
    cr_assert_eq(actor_register(sys, "svc", t), 0);
    cr_assert_eq(cmd_run(t, (struct cmd){.op = OP_TIMER, .arg = 50000, .d1 = 60}).rc, 0);
    cr_assert_eq(cmd_run(s, (struct cmd){.op = OP_MONITOR, .pid = t}).rc, 0);
    cmd_send(t, (struct cmd){.op = OP_FAIL, .arg = 1});
    e = event_wait(EV_DOWN, s, 0);
    cr_assert_eq(e.rc, ACTOR_ENONAME, "whereis in the DOWN handler: %s, the name still on %s",
                 actor_strerror(e.rc), pidstr(e.pid));
    cr_assert_eq((int)(int64_t)e.a, 0, "register in the DOWN handler: %s",
                 actor_strerror((int)(int64_t)e.a));
}
