/*
 * supervision_tree.c: a supervisor keeps two workers alive.
 *
 *                 supervisor (one_for_one)
 *                  /                    \
 *        "steady" ticks on           "flaky" crashes on
 *        and never fails             every third tick
 *
 * Each time "flaky" crashes, the supervisor starts a fresh one, with a new PID; "steady" is
 * left alone. The main thread watches the runtime's restart counter and, after three
 * restarts, stops the tree: the supervisor stops both workers, latest first.
 *
 * Run: ./build/examples/supervision_tree
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "actor.h"

#define TICK_SECONDS 0.2
#define RESTARTS     3  /* restarts to watch before the program ends */
#define CRASH_REASON 42 /* a custom exit reason: any non-zero return from a handler */

/* What each worker is: passed as the child spec's arg, so every restart gets it again. */
struct worker_conf {
    const char *name;
    int crash_every; /* crash on this tick; 0 = never */
};

struct worker {
    const struct worker_conf *conf;
    int ticks;
};

static const char *pid_str(struct dist_pid pid, char buf[DIST_PID_STRLEN])
{
    dist_pid_format(buf, DIST_PID_STRLEN, pid);
    return buf;
}

static int worker_init(struct actor *self, void *arg, void **state)
{
    struct worker *w = calloc(1, sizeof(*w));
    char buf[DIST_PID_STRLEN];
    int err;

    if (w == NULL)
        return ACTOR_ENOMEM;
    w->conf = arg;
    err = actor_timer_start(self, TICK_SECONDS, TICK_SECONDS, 0, NULL);
    if (err != 0) {
        free(w);
        return err;
    }
    printf("%-6s started as %s\n", w->conf->name, pid_str(actor_self(self), buf));
    *state = w;
    return 0;
}

static int worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct worker *w = state;

    if (msg->kind != ACTOR_MSG_TIMER)
        return 0;
    w->ticks++;
    if (w->conf->crash_every > 0 && w->ticks == w->conf->crash_every) {
        printf("%-6s crashes on tick %d\n", w->conf->name, w->ticks);
        return CRASH_REASON; /* a handler's error crashes only its own actor */
    }
    return 0;
}

static void worker_terminate(struct actor *self, void *state, int reason)
{
    struct worker *w = state;
    char buf[DIST_PID_STRLEN];

    printf("%-6s %s ended: %s (%d) after %d ticks\n", w->conf->name, pid_str(actor_self(self), buf),
           actor_reason_name(reason), reason, w->ticks);
    free(w);
}

static const struct actor_behaviour worker = {
    .name = "worker",
    .init = worker_init,
    .handle = worker_handle,
    .terminate = worker_terminate,
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/*
 * Stop the tree through its root, as an application would: the supervisor stops its children
 * latest first and then exits. actor_system_shutdown() alone would signal every actor at
 * once and lose that order.
 */
static void stop_tree(struct actor_system *sys, struct dist_pid sup)
{
    struct actor_stats st;

    actor_exit_signal(sys, sup, ACTOR_SHUTDOWN);
    for (int i = 0; i < 100; i++) {
        actor_system_stats(sys, &st);
        if (st.alive == 0)
            return;
        sleep_ms(50);
    }
}

/* Print each restart as the runtime counts it; return once RESTARTS were seen. */
static int watch_restarts(struct actor_system *sys)
{
    uint64_t seen = 0;

    /* Bounded, so a broken runtime cannot hang the example: 30 s is far more than needed. */
    for (int i = 0; i < 600; i++) {
        struct actor_stats st;

        actor_system_stats(sys, &st);
        if (st.restarts > seen) {
            seen = st.restarts;
            printf("supervisor: restart %llu of %d\n", (unsigned long long)seen, RESTARTS);
        }
        if (seen >= RESTARTS)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

int main(void)
{
    static const struct worker_conf steady = {"steady", 0};
    static const struct worker_conf flaky = {"flaky", 3};
    const struct actor_child_spec children[] = {
        {.id = "steady",
         .behaviour = &worker,
         .arg = (void *)&steady,
         .restart = ACTOR_PERMANENT,
         .shutdown_timeout = 1.0},
        {.id = "flaky",
         .behaviour = &worker,
         .arg = (void *)&flaky,
         .restart = ACTOR_PERMANENT,
         .shutdown_timeout = 1.0},
    };
    /* Up to 5 restarts in 10 s; more would mean something is badly wrong, so give up. */
    const struct actor_sup_opts sup_opts = {ACTOR_ONE_FOR_ONE, 5, 10.0};
    struct actor_system_opts opts = {.schedulers = 2};
    struct actor_system *sys;
    struct dist_pid sup;
    char buf[DIST_PID_STRLEN];
    int err;

    setvbuf(stdout, NULL, _IOLBF, 0); /* scheduler threads print too: keep lines whole */
    err = actor_system_new(&opts, &sys);
    if (err == 0)
        err = actor_system_start(sys);
    if (err != 0) {
        fprintf(stderr, "supervision_tree: %s\n", actor_strerror(err));
        return 1;
    }
    err = actor_supervisor_start(sys, NULL, &sup_opts, children, 2, &sup);
    if (err != 0) {
        fprintf(stderr, "supervision_tree: supervisor: %s\n", actor_strerror(err));
        actor_system_free(sys);
        return 1;
    }
    printf("supervisor started as %s\n", pid_str(sup, buf));
    err = watch_restarts(sys);
    printf("stopping the tree\n");
    stop_tree(sys, sup);
    actor_system_shutdown(sys, 5.0);
    actor_system_free(sys);
    return err == 0 ? 0 : 1;
}
