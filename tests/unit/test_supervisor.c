/*
 * test_supervisor.c: supervisors on a running system of two schedulers: which children each
 * strategy restarts and in what order, the restart types, the intensity limit, ordered
 * shutdown with timeouts, nested trees and simple_one_for_one.
 *
 * Children are test workers whose callbacks record what happened to them (starts, PIDs,
 * terminate reasons, and one ordered event log) under one mutex; the test thread polls that
 * record with a bounded wait. Whatever an actor can reach is static, not on the test's
 * stack: a failed assertion leaves the test body while actors still run until teardown.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"

#define WAIT_SECONDS 5.0
#define CRASH        77 /* the custom reason test children crash with */
#define MAX_EVENTS   256

/* One child's observable life. */
struct slot {
    const char *id;
    int trap;           /* trap exits and ignore them, shutdown included */
    double crash_after; /* > 0: crash with CRASH this many seconds after each start */
    int starts;
    int terms;
    int last_reason;
    struct dist_pid pid; /* of the latest start */
};

/* What the callbacks did, in order: 'S' a start, 'T' a terminate. */
struct event {
    char kind;
    const struct slot *slot;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct event events[MAX_EVENTS];
static size_t nevents;
static struct actor_system *sys;

static void record(char kind, struct slot *s, int reason)
{
    pthread_mutex_lock(&lock);
    if (kind == 'S') {
        s->starts++;
    } else {
        s->terms++;
        s->last_reason = reason;
    }
    if (nevents < MAX_EVENTS)
        events[nevents++] = (struct event){kind, s};
    pthread_mutex_unlock(&lock);
}

/* ---- The test worker ------------------------------------------------------------------- */

static int worker_init(struct actor *self, void *arg, void **state)
{
    struct slot *s = arg;

    pthread_mutex_lock(&lock);
    s->pid = actor_self(self);
    pthread_mutex_unlock(&lock);
    record('S', s, 0);
    if (s->trap)
        actor_trap_exit(self, 1);
    if (s->crash_after > 0)
        actor_timer_start(self, s->crash_after, 0, 1, NULL);
    *state = s;
    return 0;
}

/* A raw int message asks the worker to end itself with that reason. */
static int worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_TIMER)
        return CRASH;
    if (msg->kind == ACTOR_MSG_USER && msg->size == sizeof(int))
        actor_exit(self, *(int *)msg->payload);
    return 0; /* trapped exits are ignored */
}

static void worker_terminate(struct actor *self, void *state, int reason)
{
    record('T', state, reason);
}

static const struct actor_behaviour worker = {
    .name = "test_worker",
    .init = worker_init,
    .handle = worker_handle,
    .terminate = worker_terminate,
};

static struct actor_child_spec spec_of(struct slot *s, enum actor_restart restart)
{
    return (struct actor_child_spec){
        .id = s->id,
        .behaviour = &worker,
        .arg = s,
        .restart = restart,
        .shutdown_timeout = 1.0,
    };
}

/* ---- A test actor that watches another with a monitor -------------------------------- */

struct watch {
    struct dist_pid target;
    int down;
    int reason;
};

static int watch_init(struct actor *self, void *arg, void **state)
{
    struct watch *w = arg;

    *state = w;
    return actor_monitor(self, w->target, NULL);
}

static int watch_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct watch *w = state;

    if (msg->kind != ACTOR_MSG_DOWN)
        return 0;
    pthread_mutex_lock(&lock);
    w->down = 1;
    w->reason = msg->u.down.reason;
    pthread_mutex_unlock(&lock);
    actor_exit(self, ACTOR_NORMAL);
    return 0;
}

static const struct actor_behaviour watcher = {
    .name = "test_watch",
    .init = watch_init,
    .handle = watch_handle,
};

static void watch_start(struct watch *w, struct dist_pid target)
{
    w->target = target;
    cr_assert_eq(actor_spawn(sys, NULL, &watcher, w, NULL, NULL), 0);
}

/* ---- Fixture and helpers --------------------------------------------------------------- */

static void setup(void)
{
    struct actor_system_opts opts = {.schedulers = 2};

    nevents = 0;
    cr_assert_eq(actor_system_new(&opts, &sys), 0);
    cr_assert_eq(actor_system_start(sys), 0);
}

static void teardown(void)
{
    actor_system_shutdown(sys, 5.0);
    actor_system_free(sys);
    sys = NULL;
}

TestSuite(supervisor, .init = setup, .fini = teardown, .timeout = 60);

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Read an int that callbacks write, under the lock. */
static int read_int(const int *p)
{
    int v;

    pthread_mutex_lock(&lock);
    v = *p;
    pthread_mutex_unlock(&lock);
    return v;
}

static struct dist_pid pid_of(struct slot *s)
{
    struct dist_pid pid;

    pthread_mutex_lock(&lock);
    pid = s->pid;
    pthread_mutex_unlock(&lock);
    return pid;
}

/* Wait, at most WAIT_SECONDS, until *p >= want. Returns whether it got there. */
static int wait_int(const int *p, int want)
{
    double end = now() + WAIT_SECONDS;

    while (read_int(p) < want) {
        if (now() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

static struct actor_stats stats(void)
{
    struct actor_stats st;

    actor_system_stats(sys, &st);
    return st;
}

static int wait_alive(uint64_t want)
{
    double end = now() + WAIT_SECONDS;

    while (stats().alive != want) {
        if (now() > end)
            return 0;
        sleep_ms(1);
    }
    return 1;
}

/*
 * Let the supervisor catch up: once @alive actors are left, the exits have all been sent
 * (an actor counts as exited only after its exit signals went out); a call answered by the
 * supervisor then comes after it handled them. actor_supervisor_add on a supervisor that is
 * not simple_one_for_one is such a call: it answers ACTOR_EINVAL.
 */
static void settle(struct dist_pid sup, uint64_t alive)
{
    cr_assert(wait_alive(alive), "expected %lu actors, have %lu", (unsigned long)alive,
              (unsigned long)stats().alive);
    cr_assert_eq(actor_supervisor_add(sys, sup, NULL, WAIT_SECONDS, NULL), ACTOR_EINVAL);
}

/* The index of the @nth (from 0) event @kind of @s, or -1. */
static int event_at(char kind, const struct slot *s, int nth)
{
    int found = -1;

    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < nevents && found < 0; i++)
        if (events[i].kind == kind && events[i].slot == s && nth-- == 0)
            found = (int)i;
    pthread_mutex_unlock(&lock);
    return found;
}

/* Assert that event @k1 of @s1 (its @n1-th) happened, and before event @k2 of @s2. */
static void before(char k1, const struct slot *s1, int n1, char k2, const struct slot *s2, int n2)
{
    int i = event_at(k1, s1, n1), j = event_at(k2, s2, n2);

    cr_assert(i >= 0, "no event %c #%d of %s", k1, n1, s1->id);
    cr_assert(j >= 0, "no event %c #%d of %s", k2, n2, s2->id);
    cr_assert(i < j, "%c #%d of %s came after %c #%d of %s", k1, n1, s1->id, k2, n2, s2->id);
}

static void tell_exit(struct dist_pid pid, int reason)
{
    int *p = malloc(sizeof(*p));

    cr_assert_not_null(p);
    *p = reason;
    cr_assert_eq(actor_send(sys, pid, actor_type_raw(), p, sizeof(*p)), 0);
}

static void crash(struct slot *s)
{
    cr_assert_eq(actor_exit_signal(sys, pid_of(s), CRASH), 0);
}

static struct dist_pid start_sup(enum actor_strategy strategy, const struct actor_child_spec *c,
                                 size_t n)
{
    struct actor_sup_opts opts = {strategy, 10, 10.0};
    struct dist_pid sup;

    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, c, n, &sup), 0);
    return sup;
}

struct find {
    struct dist_pid pid;
    int found;
    char behaviour[32];
};

static void find_cb(const struct actor_info *info, void *user_data)
{
    struct find *f = user_data;

    if (dist_pid_eq(info->pid, f->pid)) {
        f->found = 1;
        snprintf(f->behaviour, sizeof(f->behaviour), "%s", info->behaviour);
    }
}

static struct find find_actor(struct dist_pid pid)
{
    struct find f = {.pid = pid};

    actor_system_list(sys, find_cb, &f);
    return f;
}

/* ---- Strategies ------------------------------------------------------------------------ */

Test(supervisor, starts_children_in_order_and_lists_as_supervisor)
{
    static struct slot a = {.id = "a"}, b = {.id = "b"}, c = {.id = "c"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT),
                                       spec_of(&c, ACTOR_PERMANENT)};
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ONE, specs, 3);
    struct find f;

    cr_assert(wait_int(&c.starts, 1) && wait_int(&b.starts, 1) && wait_int(&a.starts, 1));
    before('S', &a, 0, 'S', &b, 0);
    before('S', &b, 0, 'S', &c, 0);
    f = find_actor(sup);
    cr_assert(f.found);
    cr_assert_str_eq(f.behaviour, "supervisor");
    cr_assert_eq(stats().alive, 4);
}

Test(supervisor, one_for_one_restarts_only_the_crashed_child)
{
    static struct slot a = {.id = "a"}, b = {.id = "b"}, c = {.id = "c"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT),
                                       spec_of(&c, ACTOR_PERMANENT)};
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ONE, specs, 3);
    struct dist_pid pa, pb, pc;

    cr_assert(wait_int(&a.starts, 1) && wait_int(&b.starts, 1) && wait_int(&c.starts, 1));
    pa = pid_of(&a);
    pb = pid_of(&b);
    pc = pid_of(&c);
    crash(&b);
    cr_assert(wait_int(&b.starts, 2), "b was not restarted");
    cr_assert_not(dist_pid_eq(pid_of(&b), pb));
    cr_assert_eq(read_int(&b.last_reason), CRASH);
    settle(sup, 4);
    cr_assert_eq(read_int(&a.starts), 1);
    cr_assert_eq(read_int(&c.starts), 1);
    cr_assert(dist_pid_eq(pid_of(&a), pa) && dist_pid_eq(pid_of(&c), pc));
    cr_assert_eq(stats().restarts, 1);
}

Test(supervisor, one_for_all_restarts_every_child_in_order)
{
    static struct slot a = {.id = "a"}, b = {.id = "b"}, c = {.id = "c"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT),
                                       spec_of(&c, ACTOR_PERMANENT)};
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ALL, specs, 3);
    struct dist_pid pa, pb, pc;

    cr_assert(wait_int(&a.starts, 1) && wait_int(&b.starts, 1) && wait_int(&c.starts, 1));
    pa = pid_of(&a);
    pb = pid_of(&b);
    pc = pid_of(&c);
    crash(&b);
    cr_assert(wait_int(&a.starts, 2) && wait_int(&b.starts, 2) && wait_int(&c.starts, 2));
    cr_assert_not(dist_pid_eq(pid_of(&a), pa));
    cr_assert_not(dist_pid_eq(pid_of(&b), pb));
    cr_assert_not(dist_pid_eq(pid_of(&c), pc));
    /* The others stop latest first, shut down; then all start again in order. */
    before('T', &b, 0, 'T', &c, 0);
    before('T', &c, 0, 'T', &a, 0);
    before('T', &a, 0, 'S', &a, 1);
    before('S', &a, 1, 'S', &b, 1);
    before('S', &b, 1, 'S', &c, 1);
    settle(sup, 4);
    cr_assert_eq(stats().restarts, 3);
}

Test(supervisor, rest_for_one_restarts_the_child_and_those_after_it)
{
    static struct slot a = {.id = "a"}, b = {.id = "b"}, c = {.id = "c"}, d = {.id = "d"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT),
                                       spec_of(&c, ACTOR_PERMANENT), spec_of(&d, ACTOR_PERMANENT)};
    struct dist_pid sup = start_sup(ACTOR_REST_FOR_ONE, specs, 4);
    struct dist_pid pa, pb;

    cr_assert(wait_int(&a.starts, 1) && wait_int(&d.starts, 1));
    pa = pid_of(&a);
    pb = pid_of(&b);
    crash(&b);
    cr_assert(wait_int(&b.starts, 2) && wait_int(&c.starts, 2) && wait_int(&d.starts, 2));
    cr_assert_not(dist_pid_eq(pid_of(&b), pb));
    before('T', &d, 0, 'T', &c, 0);
    before('T', &c, 0, 'S', &b, 1);
    before('S', &b, 1, 'S', &c, 1);
    before('S', &c, 1, 'S', &d, 1);
    settle(sup, 5);
    cr_assert_eq(read_int(&a.starts), 1);
    cr_assert(dist_pid_eq(pid_of(&a), pa));
    cr_assert_eq(read_int(&c.last_reason), ACTOR_SHUTDOWN);
}

Test(supervisor, simple_one_for_one_adds_children_from_the_template)
{
    static struct slot tmpl = {.id = "tmpl"};
    static struct slot kids[3] = {{.id = "k0"}, {.id = "k1"}, {.id = "k2"}};
    struct actor_child_spec spec = spec_of(&tmpl, ACTOR_PERMANENT);
    struct dist_pid sup = start_sup(ACTOR_SIMPLE_ONE_FOR_ONE, &spec, 1);
    struct dist_pid pids[3], old;
    static struct watch w;

    cr_assert_eq(stats().alive, 1, "no child starts before an add");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(actor_supervisor_add(sys, sup, &kids[i], WAIT_SECONDS, &pids[i]), 0);
        cr_assert(wait_int(&kids[i].starts, 1));
        cr_assert(dist_pid_eq(pid_of(&kids[i]), pids[i]), "add returns the child's PID");
    }
    old = pids[1];
    crash(&kids[1]);
    cr_assert(wait_int(&kids[1].starts, 2), "an added child restarts with its own arg");
    cr_assert_not(dist_pid_eq(pid_of(&kids[1]), old));
    cr_assert_eq(read_int(&kids[0].starts), 1);
    cr_assert_eq(read_int(&kids[2].starts), 1);
    cr_assert_eq(read_int(&tmpl.starts), 0);

    watch_start(&w, sup);
    cr_assert_eq(actor_exit_signal(sys, sup, ACTOR_SHUTDOWN), 0);
    cr_assert(wait_int(&w.down, 1));
    before('T', &kids[2], 0, 'T', &kids[1], 1);
    before('T', &kids[1], 1, 'T', &kids[0], 0);
}

Test(supervisor, add_is_refused_by_other_strategies)
{
    static struct slot a = {.id = "a"};
    struct actor_child_spec spec = spec_of(&a, ACTOR_PERMANENT);
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ONE, &spec, 1);
    struct dist_pid child = DIST_PID_NONE;

    cr_assert_eq(actor_supervisor_add(sys, sup, &a, WAIT_SECONDS, &child), ACTOR_EINVAL);
    cr_assert(dist_pid_is_none(child), "a failed add leaves its output alone");
}

/* ---- Restart types --------------------------------------------------------------------- */

Test(supervisor, permanent_child_restarts_even_after_a_normal_exit)
{
    static struct slot p = {.id = "p"};
    struct actor_child_spec spec = spec_of(&p, ACTOR_PERMANENT);

    start_sup(ACTOR_ONE_FOR_ONE, &spec, 1);
    cr_assert(wait_int(&p.starts, 1));
    tell_exit(pid_of(&p), ACTOR_NORMAL);
    cr_assert(wait_int(&p.starts, 2));
    cr_assert_eq(read_int(&p.last_reason), ACTOR_NORMAL);
}

Test(supervisor, transient_child_restarts_only_after_a_crash)
{
    static struct slot n = {.id = "n"}, s = {.id = "s"}, c = {.id = "c"};
    struct actor_child_spec specs[] = {spec_of(&n, ACTOR_TRANSIENT), spec_of(&s, ACTOR_TRANSIENT),
                                       spec_of(&c, ACTOR_TRANSIENT)};
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ONE, specs, 3);

    cr_assert(wait_int(&n.starts, 1) && wait_int(&s.starts, 1) && wait_int(&c.starts, 1));
    tell_exit(pid_of(&n), ACTOR_NORMAL);
    tell_exit(pid_of(&s), ACTOR_SHUTDOWN);
    settle(sup, 2);
    cr_assert_eq(stats().restarts, 0);
    cr_assert_eq(read_int(&n.starts), 1);
    cr_assert_eq(read_int(&s.starts), 1);
    crash(&c);
    cr_assert(wait_int(&c.starts, 2), "a crashed transient child restarts");
    cr_assert_eq(stats().restarts, 1);
}

Test(supervisor, temporary_child_is_never_restarted)
{
    static struct slot t = {.id = "t"}, p = {.id = "p"};
    struct actor_child_spec specs[] = {spec_of(&t, ACTOR_TEMPORARY), spec_of(&p, ACTOR_PERMANENT)};
    struct dist_pid sup = start_sup(ACTOR_ONE_FOR_ONE, specs, 2);

    cr_assert(wait_int(&t.starts, 1) && wait_int(&p.starts, 1));
    crash(&t);
    settle(sup, 2);
    cr_assert_eq(stats().restarts, 0);
    cr_assert_eq(read_int(&t.starts), 1);
    cr_assert_eq(read_int(&t.last_reason), CRASH);
}

Test(supervisor, named_child_keeps_its_name_across_restarts)
{
    static struct slot a = {.id = "a"};
    struct actor_child_spec spec = spec_of(&a, ACTOR_PERMANENT);
    struct dist_pid found, old;

    spec.name = "named_worker";
    start_sup(ACTOR_ONE_FOR_ONE, &spec, 1);
    cr_assert(wait_int(&a.starts, 1));
    old = pid_of(&a);
    cr_assert_eq(actor_whereis(sys, "named_worker", &found), 0);
    cr_assert(dist_pid_eq(found, old));
    crash(&a);
    cr_assert(wait_int(&a.starts, 2));
    cr_assert_eq(actor_whereis(sys, "named_worker", &found), 0);
    cr_assert(dist_pid_eq(found, pid_of(&a)));
    cr_assert_not(dist_pid_eq(found, old));
}

/* ---- Intensity ------------------------------------------------------------------------- */

Test(supervisor, too_many_restarts_stop_the_supervisor)
{
    static struct slot steady = {.id = "steady"}, flaky = {.id = "flaky", .crash_after = 0.05};
    struct actor_child_spec specs[] = {spec_of(&steady, ACTOR_PERMANENT),
                                       spec_of(&flaky, ACTOR_PERMANENT)};
    struct actor_sup_opts opts = {ACTOR_ONE_FOR_ONE, 3, 10.0};
    struct dist_pid sup;
    static struct watch w;

    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, specs, 2, &sup), 0);
    watch_start(&w, sup);
    cr_assert(wait_int(&w.down, 1), "the supervisor did not give up");
    cr_assert_eq(read_int(&w.reason), ACTOR_SHUTDOWN);
    cr_assert_eq(stats().restarts, 3);
    cr_assert_eq(read_int(&flaky.starts), 4);
    cr_assert_eq(read_int(&steady.terms), 1, "the other children are stopped too");
    cr_assert_eq(read_int(&steady.last_reason), ACTOR_SHUTDOWN);
    cr_assert(wait_alive(0));
    cr_assert_not(find_actor(sup).found);
}

Test(supervisor, restarts_outside_the_window_are_forgotten)
{
    static struct slot a = {.id = "a"};
    struct actor_child_spec spec = spec_of(&a, ACTOR_PERMANENT);
    struct actor_sup_opts opts = {ACTOR_ONE_FOR_ONE, 1, 0.2};
    struct dist_pid sup;

    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, &spec, 1, &sup), 0);
    for (int i = 1; i <= 3; i++) {
        cr_assert(wait_int(&a.starts, i));
        sleep_ms(300); /* past the window, so each crash is the only one in it */
        crash(&a);
    }
    cr_assert(wait_int(&a.starts, 4));
    cr_assert(find_actor(sup).found);
}

/* ---- Shutdown -------------------------------------------------------------------------- */

Test(supervisor, shutdown_stops_children_in_reverse_order_within_their_timeouts)
{
    static struct slot a = {.id = "a"}, stubborn = {.id = "stubborn", .trap = 1};
    static struct slot c = {.id = "c"}, brutal = {.id = "brutal", .trap = 1};
    struct actor_child_spec specs[] = {
        spec_of(&a, ACTOR_PERMANENT), spec_of(&stubborn, ACTOR_PERMANENT),
        spec_of(&c, ACTOR_PERMANENT), spec_of(&brutal, ACTOR_PERMANENT)};
    struct dist_pid sup;
    static struct watch w;
    double t0;

    specs[1].shutdown_timeout = 0.3; /* it ignores shutdown: killed after 0.3 s */
    specs[3].shutdown_timeout = 0;   /* killed at once */
    sup = start_sup(ACTOR_ONE_FOR_ONE, specs, 4);
    cr_assert(wait_int(&brutal.starts, 1) && wait_int(&a.starts, 1));
    watch_start(&w, sup);
    t0 = now();
    cr_assert_eq(actor_exit_signal(sys, sup, ACTOR_SHUTDOWN), 0);
    cr_assert(wait_int(&w.down, 1));
    cr_assert_geq(now() - t0, 0.29, "the stubborn child was not given its timeout");
    cr_assert_eq(read_int(&w.reason), ACTOR_SHUTDOWN);
    before('T', &brutal, 0, 'T', &c, 0);
    before('T', &c, 0, 'T', &stubborn, 0);
    before('T', &stubborn, 0, 'T', &a, 0);
    cr_assert_eq(read_int(&brutal.last_reason), ACTOR_KILLED);
    cr_assert_eq(read_int(&c.last_reason), ACTOR_SHUTDOWN);
    cr_assert_eq(read_int(&stubborn.last_reason), ACTOR_KILLED);
    cr_assert_eq(read_int(&a.last_reason), ACTOR_SHUTDOWN);
    cr_assert_eq(stats().restarts, 0);
    cr_assert(wait_alive(0));
}

Test(supervisor, failed_child_spawn_fails_the_start)
{
    static struct slot a = {.id = "a"}, b = {.id = "b"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT)};
    struct actor_sup_opts opts = {ACTOR_ONE_FOR_ONE, 10, 10.0};
    struct actor_spawn_opts holder = {.name = "taken", .scheduler = -1};
    struct dist_pid sup = DIST_PID_NONE;
    static struct slot h = {.id = "holder"};

    cr_assert_eq(actor_spawn(sys, NULL, &worker, &h, &holder, NULL), 0);
    specs[1].name = "taken";
    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, specs, 2, &sup), ACTOR_ENAMETAKEN);
    cr_assert(dist_pid_is_none(sup));
    cr_assert(wait_int(&a.terms, 1), "the child already started is stopped");
    cr_assert_eq(read_int(&a.last_reason), ACTOR_SHUTDOWN);
    cr_assert_eq(read_int(&b.starts), 0);
    cr_assert(wait_alive(1), "only the name's holder is left");
}

Test(supervisor, bad_arguments_are_refused)
{
    static struct slot a = {.id = "a"}, b = {.id = "a"};
    struct actor_child_spec specs[] = {spec_of(&a, ACTOR_PERMANENT), spec_of(&b, ACTOR_PERMANENT)};
    struct actor_sup_opts opts = {ACTOR_ONE_FOR_ONE, 1, 1.0};
    struct actor_sup_opts simple = {ACTOR_SIMPLE_ONE_FOR_ONE, 1, 1.0};
    struct dist_pid sup;

    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, specs, 2, &sup), ACTOR_EINVAL,
                 "duplicate ids");
    specs[1].id = "b";
    cr_assert_eq(actor_supervisor_start(sys, NULL, &simple, specs, 2, &sup), ACTOR_EINVAL,
                 "simple_one_for_one takes one template");
    specs[1].behaviour = NULL;
    cr_assert_eq(actor_supervisor_start(sys, NULL, &opts, specs, 2, &sup), ACTOR_EINVAL);
    cr_assert_eq(stats().spawned, 0);
}

/* ---- Nested trees ---------------------------------------------------------------------- */

/*
 * A subtree as a child: actor.h gives child specs no supervisor behaviour, so this child
 * starts a supervisor linked to itself, passes an exit signal it traps on to it, and ends
 * with the inner supervisor's reason, once that supervisor has stopped its own children.
 */
struct subtree {
    struct slot slot;
    struct actor_sup_opts opts;
    const struct actor_child_spec *specs;
    size_t n;
    struct dist_pid inner;
};

static int subtree_init(struct actor *self, void *arg, void **state)
{
    struct subtree *t = arg;
    struct dist_pid inner;
    int rc;

    actor_trap_exit(self, 1);
    rc = actor_supervisor_start(actor_system_of(self), self, &t->opts, t->specs, t->n, &inner);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&lock);
    t->inner = inner;
    pthread_mutex_unlock(&lock);
    record('S', &t->slot, 0);
    *state = t;
    return 0;
}

static int subtree_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct subtree *t = state;

    if (msg->kind != ACTOR_MSG_EXIT)
        return 0;
    if (dist_pid_eq(msg->u.exit.pid, t->inner))
        actor_exit(self, msg->u.exit.reason);
    else
        actor_exit_signal(actor_system_of(self), t->inner, msg->u.exit.reason);
    return 0;
}

static void subtree_terminate(struct actor *self, void *state, int reason)
{
    struct subtree *t = state;

    record('T', &t->slot, reason);
}

static const struct actor_behaviour subtree_behaviour = {
    .name = "test_subtree",
    .init = subtree_init,
    .handle = subtree_handle,
    .terminate = subtree_terminate,
};

Test(supervisor, nested_tree_restarts_inside_first_and_stops_in_order)
{
    static struct slot w = {.id = "w"}, x = {.id = "x"}, y = {.id = "y"};
    static struct actor_child_spec inner[2];
    static struct subtree t = {
        .slot = {.id = "subtree"}, .opts = {ACTOR_ONE_FOR_ONE, 1, 10.0}, .specs = inner, .n = 2};
    struct actor_child_spec outer[] = {spec_of(&w, ACTOR_PERMANENT),
                                       {.id = "subtree",
                                        .behaviour = &subtree_behaviour,
                                        .arg = &t,
                                        .restart = ACTOR_PERMANENT,
                                        .shutdown_timeout = 5.0}};
    struct dist_pid sup, inner_pid;
    static struct watch dw;

    inner[0] = spec_of(&x, ACTOR_PERMANENT);
    inner[1] = spec_of(&y, ACTOR_PERMANENT);
    sup = start_sup(ACTOR_ONE_FOR_ONE, outer, 2);
    cr_assert(wait_int(&x.starts, 1) && wait_int(&y.starts, 1) && wait_int(&w.starts, 1));
    pthread_mutex_lock(&lock);
    inner_pid = t.inner;
    pthread_mutex_unlock(&lock);
    cr_assert_str_eq(find_actor(inner_pid).behaviour, "supervisor");

    /* Within its intensity the inner supervisor handles a crash alone. */
    crash(&x);
    cr_assert(wait_int(&x.starts, 2));
    cr_assert_eq(read_int(&t.slot.starts), 1);
    cr_assert_eq(read_int(&y.starts), 1);

    /* Past it, the inner one gives up and the outer one restarts the whole subtree. */
    crash(&x);
    cr_assert(wait_int(&t.slot.starts, 2), "the subtree was not restarted");
    cr_assert(wait_int(&x.starts, 3) && wait_int(&y.starts, 2));
    cr_assert_eq(read_int(&t.slot.last_reason), ACTOR_SHUTDOWN);
    cr_assert_eq(read_int(&w.starts), 1);

    /* Stopping the root stops the leaves of the latest subtree first. */
    watch_start(&dw, sup);
    cr_assert_eq(actor_exit_signal(sys, sup, ACTOR_SHUTDOWN), 0);
    cr_assert(wait_int(&dw.down, 1));
    before('T', &y, 1, 'T', &x, 2);
    before('T', &x, 2, 'T', &t.slot, 1);
    before('T', &t.slot, 1, 'T', &w, 0);
    cr_assert(wait_alive(0));
}
