/*
 * test_stress.c: the runtime under load, each test bounded in time:
 *   - 1,000,000 spawn/exit cycles, in batches, alive back to the baseline after each;
 *   - 10,000,000 messages from several senders (actors on both schedulers and a plain thread)
 *     to receivers on both schedulers, per-sender order checked by sequence numbers, with a
 *     window of unacknowledged messages so that memory stays bounded;
 *   - a chain of 100,000 linked actors that dies as a whole when one end is killed;
 *   - a monitor storm: 10,000 monitors on one actor, every one gets its DOWN;
 *   - threads that spawn and stop actors at once, and threads whose sends race a kill.
 * ACTOR_STRESS_DIV=n divides every count by n (for sanitizer builds).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "dist.h"

static struct actor_system *sys;

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

/* Poll @cond every millisecond until it holds or @seconds pass. */
#define WAIT_UNTIL(cond, seconds)                                                                  \
    do {                                                                                           \
        double end_ = now() + (seconds);                                                           \
        while (!(cond) && now() < end_)                                                            \
            nap();                                                                                 \
    } while (0)

static uint64_t scaled(uint64_t n)
{
    const char *div = getenv("ACTOR_STRESS_DIV");
    long d = div != NULL ? strtol(div, NULL, 10) : 1;

    return d > 1 ? n / (uint64_t)d : n;
}

static struct actor_stats stats(void)
{
    struct actor_stats st;

    actor_system_stats(sys, &st);
    return st;
}

static void setup(void)
{
    struct actor_system_opts o = {.schedulers = 2};

    cr_assert_eq(actor_system_new(&o, &sys), 0);
    cr_assert_eq(actor_system_start(sys), 0);
}

static void teardown(void)
{
    if (sys != NULL) {
        actor_system_shutdown(sys, 10.0);
        actor_system_free(sys);
        sys = NULL;
    }
}

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 180);

/* A raw message of 16 bytes: every message in this file. */
struct smsg {
    uint32_t kind;
    uint32_t idx;
    uint64_t seq;
};

enum { M_STOP, M_DATA, M_ACK, M_GO, M_CONT, M_GROW, M_WATCH };

static int send_smsg(struct actor_system *s, struct dist_pid to, uint32_t kind, uint32_t idx,
                     uint64_t seq)
{
    struct smsg *m = malloc(sizeof(*m));
    int rc;

    if (m == NULL)
        return ACTOR_ENOMEM;
    *m = (struct smsg){.kind = kind, .idx = idx, .seq = seq};
    rc = actor_send(s, to, actor_type_raw(), m, sizeof(*m));
    if (rc != 0)
        free(m);
    return rc;
}

static const struct smsg *smsg_of(const struct actor_msg *msg)
{
    if (msg->kind != ACTOR_MSG_USER || msg->type != actor_type_raw() ||
        msg->size != sizeof(struct smsg))
        return NULL;
    return msg->payload;
}

/* ---- 1,000,000 spawn/exit cycles --------------------------------------------------------------
 */

static atomic_uint_fast64_t cyc_inits, cyc_terms, cyc_bad;

static int cycler_init(struct actor *self, void *arg, void **state)
{
    atomic_fetch_add_explicit(&cyc_inits, 1, memory_order_relaxed);
    *state = arg;
    return 0;
}

static int cycler_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    const struct smsg *m = smsg_of(msg);

    if (m != NULL && m->kind == M_STOP)
        actor_exit(self, ACTOR_NORMAL);
    return 0;
}

static void cycler_terminate(struct actor *self, void *state, int reason)
{
    atomic_fetch_add_explicit(&cyc_terms, 1, memory_order_relaxed);
    if (reason != ACTOR_NORMAL && reason != ACTOR_KILLED)
        atomic_fetch_add(&cyc_bad, 1);
}

static const struct actor_behaviour cycler = {
    .name = "cycler",
    .init = cycler_init,
    .handle = cycler_handle,
    .terminate = cycler_terminate,
};

Test(stress, a_million_spawn_exit_cycles)
{
    enum { BATCH = 10000 };
    static struct dist_pid pids[BATCH];
    uint64_t total = scaled(1000000), done = 0;
    struct actor_stats s0 = stats(), st;
    double t0 = now();

    for (int batch = 0; done < total; batch++) {
        uint64_t n = total - done < BATCH ? total - done : BATCH;

        for (uint64_t i = 0; i < n; i++) {
            int rc = actor_spawn(sys, NULL, &cycler, NULL, NULL, &pids[i]);

            cr_assert_eq(rc, 0, "spawn %llu: %s", (unsigned long long)(done + i),
                         actor_strerror(rc));
        }
        for (uint64_t i = 0; i < n; i++) {
            /* Most end by a message, every fourth batch by a kill. */
            int rc =
                batch % 4 == 3 ? actor_kill(sys, pids[i]) : send_smsg(sys, pids[i], M_STOP, 0, 0);

            cr_assert_eq(rc, 0, "ending actor %llu: %s", (unsigned long long)(done + i),
                         actor_strerror(rc));
        }
        done += n;
        WAIT_UNTIL((st = stats(), st.alive == s0.alive), 30.0);
        cr_assert_eq(st.alive, s0.alive, "batch %d: %llu alive, baseline %llu", batch,
                     (unsigned long long)st.alive, (unsigned long long)s0.alive);
    }
    WAIT_UNTIL(atomic_load(&cyc_terms) == total, 10.0);
    st = stats();
    cr_assert_eq(atomic_load(&cyc_inits), total);
    cr_assert_eq(atomic_load(&cyc_terms), total, "%llu terminates for %llu actors",
                 (unsigned long long)atomic_load(&cyc_terms), (unsigned long long)total);
    cr_assert_eq(atomic_load(&cyc_bad), 0u, "unexpected exit reasons");
    cr_assert_eq(st.spawned - s0.spawned, total);
    cr_assert_eq(st.exited - s0.exited, total);
    cr_log_info("%llu spawn/exit cycles in %.2f s", (unsigned long long)total, now() - t0);
}

/* Several threads spawn and stop actors at once: the process table's free lists under load. */
#define SPAWN_THREADS 4

static void *spawn_thread(void *arg)
{
    uint64_t n = *(uint64_t *)arg;
    struct dist_pid pids[1000];

    for (uint64_t done = 0; done < n;) {
        uint64_t k = n - done < 1000 ? n - done : 1000;

        for (uint64_t i = 0; i < k; i++)
            if (actor_spawn(sys, NULL, &cycler, NULL, NULL, &pids[i]) != 0)
                atomic_fetch_add(&cyc_bad, 1);
        for (uint64_t i = 0; i < k; i++)
            if (send_smsg(sys, pids[i], M_STOP, 0, 0) != 0)
                atomic_fetch_add(&cyc_bad, 1);
        done += k;
    }
    return NULL;
}

Test(stress, threads_spawn_and_stop_at_once)
{
    uint64_t per_thread = scaled(100000), total = per_thread * SPAWN_THREADS;
    struct actor_stats s0 = stats(), st;
    pthread_t th[SPAWN_THREADS];

    for (int i = 0; i < SPAWN_THREADS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, spawn_thread, &per_thread), 0);
    for (int i = 0; i < SPAWN_THREADS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&cyc_bad), 0u, "a spawn or a send failed");
    WAIT_UNTIL((st = stats(), st.alive == s0.alive), 60.0);
    cr_assert_eq(st.alive, s0.alive, "%llu still alive", (unsigned long long)(st.alive - s0.alive));
    cr_assert_eq(st.spawned - s0.spawned, total);
    WAIT_UNTIL(atomic_load(&cyc_terms) == total, 10.0);
    cr_assert_eq(atomic_load(&cyc_terms), total);
}

/* ---- Sends racing the death of their target ----------------------------------------------------
 */

#define RACE_THREADS 4
#define RACE_WINDOW  100000

static struct dist_pid race_target;
static _Atomic int race_go, race_abort, race_finished;
static atomic_uint_fast64_t race_accepted, race_handled, race_revived, race_other_err;
static uint64_t race_accepted0, race_handled0; /* at the start of a round */

static int counter_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    atomic_fetch_add_explicit(&race_handled, 1, memory_order_relaxed);
    return 0;
}

/* Send until refused; a dead PID must then stay dead, whatever reuses its slot. */
static void *race_thread(void *arg)
{
    struct dist_pid to = race_target;
    int rc = 0;

    while (!atomic_load(&race_go))
        ;
    while (!atomic_load(&race_abort)) {
        /*
         * A window keeps memory bounded (this tests the race, not overload): past it, one
         * send per pause, which still finds out about the death.
         */
        if ((atomic_load_explicit(&race_accepted, memory_order_relaxed) - race_accepted0) -
                (atomic_load_explicit(&race_handled, memory_order_relaxed) - race_handled0) >
            RACE_WINDOW) {
            struct timespec pause = {0, 50000};

            nanosleep(&pause, NULL);
        }
        rc = send_smsg(sys, to, M_DATA, 0, 0);
        if (rc != 0)
            break;
        atomic_fetch_add_explicit(&race_accepted, 1, memory_order_relaxed);
    }
    if (rc != 0 && rc != ACTOR_ENOPROC)
        atomic_fetch_add(&race_other_err, 1);
    for (int i = 0; rc != 0 && i < 2000; i++)
        if (send_smsg(sys, to, M_DATA, 0, 0) == 0)
            atomic_fetch_add(&race_revived, 1);
    atomic_fetch_add(&race_finished, 1);
    return NULL;
}

struct depth_probe {
    struct dist_pid pid;
    size_t depth;
};

static void depth_cb(const struct actor_info *info, void *user_data)
{
    struct depth_probe *d = user_data;

    if (dist_pid_eq(info->pid, d->pid))
        d->depth = info->mailbox_depth;
}

Test(stress, sends_racing_a_death)
{
    static const struct actor_behaviour counter = {.name = "counter", .handle = counter_handle};
    int rounds = (int)scaled(50) > 0 ? (int)scaled(50) : 1;

    for (int round = 0; round < rounds; round++) {
        pthread_t th[RACE_THREADS];
        struct actor_spawn_opts o = {.scheduler = round % 2};
        uint64_t before = atomic_load(&race_handled);
        struct depth_probe d = {0};

        atomic_store(&race_go, 0);
        atomic_store(&race_finished, 0);
        race_accepted0 = atomic_load(&race_accepted);
        race_handled0 = atomic_load(&race_handled);
        cr_assert_eq(actor_spawn(sys, NULL, &counter, NULL, &o, &race_target), 0);
        for (int i = 0; i < RACE_THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, race_thread, NULL), 0);
        atomic_store(&race_go, 1);
        WAIT_UNTIL(atomic_load(&race_handled) - before > 2000, 10.0);
        cr_assert_eq(actor_kill(sys, race_target), 0);
        /* New actors, likely in the dead one's slot, while the threads still send. */
        for (int i = 0; i < 100; i++)
            cr_assert_eq(actor_spawn(sys, NULL, &counter, NULL, &o, NULL), 0);
        /* The kill must take effect while the senders go on. */
        WAIT_UNTIL(atomic_load(&race_finished) == RACE_THREADS, 10.0);
        d.pid = race_target;
        actor_system_list(sys, depth_cb, &d);
        atomic_store(&race_abort, atomic_load(&race_finished) != RACE_THREADS);
        for (int i = 0; i < RACE_THREADS; i++)
            pthread_join(th[i], NULL);
        cr_assert_not(atomic_load(&race_abort),
                      "round %d: a killed actor still took messages 10 s later "
                      "(%zu waiting in its mailbox)",
                      round, d.depth);
    }
    cr_assert_eq(atomic_load(&race_other_err), 0u, "a send failed with other than ENOPROC");
    cr_assert_eq(atomic_load(&race_revived), 0u, "%llu sends to a dead PID were accepted",
                 (unsigned long long)atomic_load(&race_revived));
    cr_assert_leq(atomic_load(&race_handled), atomic_load(&race_accepted));
}

/* ---- 10,000,000 messages, per-sender order ----------------------------------------------------
 */

#define N_ACTOR_SENDERS 4
#define N_SENDERS       (N_ACTOR_SENDERS + 1) /* the last one is a plain thread */
#define N_RECEIVERS     2
#define WINDOW          16384 /* unacknowledged messages per sender and receiver */
#define ACK_EVERY       4096
#define SEND_BATCH      256 /* messages a sender sends per turn, per receiver */

static struct dist_pid senders[N_ACTOR_SENDERS], receivers[N_RECEIVERS];
static uint64_t per_pair[N_SENDERS]; /* messages each sender sends to each receiver */
static _Atomic uint64_t thread_acked[N_RECEIVERS];
static atomic_uint_fast64_t received[N_RECEIVERS], order_errors, sender_errors, send_errors;
static uint64_t last_seq[N_RECEIVERS][N_SENDERS]; /* receiver-owned */

struct sender {
    uint32_t idx;
    uint64_t sent[N_RECEIVERS], acked[N_RECEIVERS];
    int cont_pending;
};

/* Send what the windows allow, SEND_BATCH at most per receiver; then yield with M_CONT. */
static void sender_pump(struct actor *self, struct sender *s)
{
    struct actor_system *as = actor_system_of(self);
    int more = 0;

    for (int r = 0; r < N_RECEIVERS; r++) {
        for (int k = 0;
             k < SEND_BATCH && s->sent[r] < per_pair[s->idx] && s->sent[r] - s->acked[r] < WINDOW;
             k++) {
            if (send_smsg(as, receivers[r], M_DATA, s->idx, s->sent[r] + 1) != 0) {
                atomic_fetch_add(&send_errors, 1);
                return;
            }
            s->sent[r]++;
        }
        if (s->sent[r] < per_pair[s->idx] && s->sent[r] - s->acked[r] < WINDOW)
            more = 1;
    }
    if (more && !s->cont_pending) {
        s->cont_pending = 1;
        if (send_smsg(as, actor_self(self), M_CONT, 0, 0) != 0)
            atomic_fetch_add(&send_errors, 1);
    }
}

static int sender_init(struct actor *self, void *arg, void **state)
{
    struct sender *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return ACTOR_ENOMEM;
    s->idx = (uint32_t)(uintptr_t)arg;
    *state = s;
    return 0;
}

static int sender_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct sender *s = state;
    const struct smsg *m = smsg_of(msg);

    if (m == NULL)
        return 0;
    if (m->kind == M_ACK && m->idx < N_RECEIVERS && m->seq > s->acked[m->idx])
        s->acked[m->idx] = m->seq;
    if (m->kind == M_CONT)
        s->cont_pending = 0;
    sender_pump(self, s);
    return 0;
}

static void free_state(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour sender_behaviour = {
    .name = "sender",
    .init = sender_init,
    .handle = sender_handle,
    .terminate = free_state,
};

static int receiver_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    uint32_t r = (uint32_t)(uintptr_t)state;
    const struct smsg *m = smsg_of(msg);

    if (m == NULL || m->kind != M_DATA || m->idx >= N_SENDERS) {
        atomic_fetch_add(&sender_errors, 1);
        return 0;
    }
    if (m->idx < N_ACTOR_SENDERS ? !dist_pid_eq(msg->from, senders[m->idx])
                                 : !dist_pid_is_none(msg->from))
        atomic_fetch_add(&sender_errors, 1);
    if (m->seq != last_seq[r][m->idx] + 1)
        atomic_fetch_add(&order_errors, 1);
    last_seq[r][m->idx] = m->seq;
    /* Release: the test thread reads last_seq once it has seen the count. */
    atomic_fetch_add_explicit(&received[r], 1, memory_order_release);
    if (m->seq % ACK_EVERY == 0 || m->seq == per_pair[m->idx]) {
        if (m->idx < N_ACTOR_SENDERS)
            send_smsg(actor_system_of(self), senders[m->idx], M_ACK, r, m->seq);
        else
            atomic_store(&thread_acked[r], m->seq);
    }
    return 0;
}

static int receiver_init(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

static const struct actor_behaviour receiver_behaviour = {
    .name = "receiver",
    .init = receiver_init,
    .handle = receiver_handle,
};

/* The plain-thread sender: the same windows, polled. */
static void *thread_sender(void *arg)
{
    uint32_t idx = N_ACTOR_SENDERS;
    uint64_t sent[N_RECEIVERS] = {0};
    double end = now() + 150.0;
    int busy = 1;

    while (busy && now() < end) {
        busy = 0;
        for (int r = 0; r < N_RECEIVERS; r++) {
            int k = 0;

            while (k++ < SEND_BATCH && sent[r] < per_pair[idx] &&
                   sent[r] - atomic_load(&thread_acked[r]) < WINDOW) {
                if (send_smsg(sys, receivers[r], M_DATA, idx, sent[r] + 1) != 0) {
                    atomic_fetch_add(&send_errors, 1);
                    return NULL;
                }
                sent[r]++;
            }
            if (sent[r] < per_pair[idx])
                busy = 1;
        }
        if (busy && sent[0] - atomic_load(&thread_acked[0]) >= WINDOW &&
            sent[1] - atomic_load(&thread_acked[1]) >= WINDOW)
            nap();
    }
    return NULL;
}

Test(stress, ten_million_messages_keep_per_sender_order)
{
    uint64_t total = scaled(10000000), expect = 0, got = 0;
    struct actor_stats s0 = stats(), st;
    pthread_t th;
    double t0;

    /* 90% from the actors, 10% from the thread, split evenly over the receivers. */
    for (int i = 0; i < N_ACTOR_SENDERS; i++)
        per_pair[i] = total * 9 / 10 / N_ACTOR_SENDERS / N_RECEIVERS;
    per_pair[N_ACTOR_SENDERS] = total / 10 / N_RECEIVERS;
    for (int i = 0; i < N_SENDERS; i++)
        expect += per_pair[i] * N_RECEIVERS;
    for (int r = 0; r < N_RECEIVERS; r++) {
        struct actor_spawn_opts o = {.scheduler = r};

        cr_assert_eq(
            actor_spawn(sys, NULL, &receiver_behaviour, (void *)(uintptr_t)r, &o, &receivers[r]),
            0);
    }
    for (int i = 0; i < N_ACTOR_SENDERS; i++) {
        struct actor_spawn_opts o = {.scheduler = i % 2};

        cr_assert_eq(
            actor_spawn(sys, NULL, &sender_behaviour, (void *)(uintptr_t)i, &o, &senders[i]), 0);
    }
    t0 = now();
    for (int i = 0; i < N_ACTOR_SENDERS; i++)
        cr_assert_eq(send_smsg(sys, senders[i], M_GO, 0, 0), 0);
    cr_assert_eq(pthread_create(&th, NULL, thread_sender, NULL), 0);
    WAIT_UNTIL((got = atomic_load(&received[0]) + atomic_load(&received[1])) >= expect ||
                   atomic_load(&send_errors) != 0,
               150.0);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&send_errors), 0u, "a send failed");
    cr_assert_eq(got, expect, "%llu of %llu messages arrived", (unsigned long long)got,
                 (unsigned long long)expect);
    cr_assert_eq(atomic_load(&order_errors), 0u, "%llu messages out of order",
                 (unsigned long long)atomic_load(&order_errors));
    cr_assert_eq(atomic_load(&sender_errors), 0u, "%llu messages with the wrong sender",
                 (unsigned long long)atomic_load(&sender_errors));
    for (int r = 0; r < N_RECEIVERS; r++)
        for (int i = 0; i < N_SENDERS; i++)
            cr_assert_eq(last_seq[r][i], per_pair[i], "receiver %d, sender %d", r, i);
    cr_log_info("%llu messages in %.2f s", (unsigned long long)expect, now() - t0);
    st = stats();
    cr_assert_geq(st.delivered - s0.delivered, expect);
}

/* ---- A chain of 100,000 linked actors ------------------------------------------------------- */

static atomic_uint_fast64_t chain_inits, chain_terms, chain_not_killed;
static _Atomic uint64_t chain_tail_id;
static _Atomic int chain_done, chain_errors;

static int chain_init(struct actor *self, void *arg, void **state)
{
    atomic_fetch_add_explicit(&chain_inits, 1, memory_order_relaxed);
    return 0;
}

/* M_GROW with seq n: spawn a linked child and pass it n - 1; the last one reports itself. */
static int chain_handle(struct actor *self, void *state, struct actor_msg *msg);

static void chain_terminate(struct actor *self, void *state, int reason)
{
    atomic_fetch_add_explicit(&chain_terms, 1, memory_order_relaxed);
    if (reason != ACTOR_KILLED)
        atomic_fetch_add(&chain_not_killed, 1);
}

static const struct actor_behaviour chain_behaviour = {
    .name = "chain",
    .init = chain_init,
    .handle = chain_handle,
    .terminate = chain_terminate,
};

static int chain_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    const struct smsg *m = smsg_of(msg);
    struct actor_spawn_opts o = {.flags = ACTOR_SPAWN_LINK, .scheduler = -1};
    struct dist_pid child;

    if (m == NULL || m->kind != M_GROW)
        return 0;
    if (m->seq == 0) {
        atomic_store(&chain_tail_id, actor_self(self).id);
        atomic_store(&chain_done, 1);
        return 0;
    }
    if (actor_spawn(actor_system_of(self), self, &chain_behaviour, NULL, &o, &child) != 0 ||
        send_smsg(actor_system_of(self), child, M_GROW, 0, m->seq - 1) != 0) {
        atomic_fetch_add(&chain_errors, 1);
        atomic_store(&chain_done, 1);
    }
    return 0;
}

static void chain_run(int kill_head)
{
    uint64_t n = scaled(100000);
    struct actor_stats s0 = stats(), st;
    struct dist_pid head, tail;
    double t0 = now();

    cr_assert_eq(actor_spawn(sys, NULL, &chain_behaviour, NULL, NULL, &head), 0);
    cr_assert_eq(send_smsg(sys, head, M_GROW, 0, n - 1), 0);
    WAIT_UNTIL(atomic_load(&chain_done), 60.0);
    cr_assert(atomic_load(&chain_done), "the chain grew to %llu of %llu",
              (unsigned long long)atomic_load(&chain_inits), (unsigned long long)n);
    cr_assert_eq(atomic_load(&chain_errors), 0);
    st = stats();
    cr_assert_eq(st.alive, s0.alive + n, "%llu alive, expected %llu", (unsigned long long)st.alive,
                 (unsigned long long)(s0.alive + n));
    tail = head;
    tail.id = atomic_load(&chain_tail_id);
    cr_assert_eq(actor_kill(sys, kill_head ? head : tail), 0);
    WAIT_UNTIL((st = stats(), st.alive == s0.alive), 60.0);
    cr_assert_eq(st.alive, s0.alive, "%llu of %llu links still alive",
                 (unsigned long long)(st.alive - s0.alive), (unsigned long long)n);
    WAIT_UNTIL(atomic_load(&chain_terms) == n, 10.0);
    cr_assert_eq(atomic_load(&chain_terms), n);
    cr_assert_eq(atomic_load(&chain_not_killed), 0u, "%llu links died of another reason",
                 (unsigned long long)atomic_load(&chain_not_killed));
    cr_assert_eq(actor_kill(sys, kill_head ? tail : head), ACTOR_ENOPROC);
    cr_log_info("a chain of %llu built and killed in %.2f s", (unsigned long long)n, now() - t0);
}

Test(stress, a_chain_of_links_dies_from_its_tail)
{
    chain_run(0);
}

Test(stress, a_chain_of_links_dies_from_its_head)
{
    chain_run(1);
}

/* ---- A monitor storm ------------------------------------------------------------------------ */

#define WATCHERS      100
#define MONITORS_EACH 100

static struct dist_pid storm_target;
static atomic_int storm_monitors, storm_down_ok, storm_down_bad;

struct watcher {
    uint64_t refs[MONITORS_EACH];
    int seen[MONITORS_EACH];
};

static int watcher_init(struct actor *self, void *arg, void **state)
{
    struct watcher *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return ACTOR_ENOMEM;
    *state = w;
    return 0;
}

static int watcher_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct watcher *w = state;
    const struct smsg *m;

    if (msg->kind == ACTOR_MSG_DOWN) {
        int hit = -1;

        for (int i = 0; i < MONITORS_EACH; i++)
            if (w->refs[i] == msg->u.down.ref.id)
                hit = i;
        if (hit < 0 || w->seen[hit]++ != 0 || msg->u.down.reason != 42 ||
            !dist_pid_eq(msg->u.down.pid, storm_target))
            atomic_fetch_add(&storm_down_bad, 1);
        else
            atomic_fetch_add(&storm_down_ok, 1);
        return 0;
    }
    m = smsg_of(msg);
    if (m != NULL && m->kind == M_WATCH) {
        for (int i = 0; i < MONITORS_EACH; i++) {
            struct actor_ref ref = {0};

            if (actor_monitor(self, storm_target, &ref) != 0)
                atomic_fetch_add(&storm_down_bad, 1);
            w->refs[i] = ref.id;
            atomic_fetch_add(&storm_monitors, 1);
        }
    }
    return 0;
}

static const struct actor_behaviour watcher_behaviour = {
    .name = "watcher",
    .init = watcher_init,
    .handle = watcher_handle,
    .terminate = free_state,
};

static int target_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    const struct smsg *m = smsg_of(msg);

    return m != NULL && m->kind == M_STOP ? 42 : 0;
}

Test(stress, a_monitor_storm)
{
    static const struct actor_behaviour target = {.name = "target", .handle = target_handle};
    struct actor_spawn_opts o = {.scheduler = 0};
    struct dist_pid w[WATCHERS];
    int total = WATCHERS * MONITORS_EACH;

    cr_assert_eq(actor_spawn(sys, NULL, &target, NULL, &o, &storm_target), 0);
    for (int i = 0; i < WATCHERS; i++)
        cr_assert_eq(actor_spawn(sys, NULL, &watcher_behaviour, NULL, NULL, &w[i]), 0);
    for (int i = 0; i < WATCHERS; i++)
        cr_assert_eq(send_smsg(sys, w[i], M_WATCH, 0, 0), 0);
    WAIT_UNTIL(atomic_load(&storm_monitors) == total, 30.0);
    cr_assert_eq(atomic_load(&storm_monitors), total);
    cr_assert_eq(send_smsg(sys, storm_target, M_STOP, 0, 0), 0);
    WAIT_UNTIL(atomic_load(&storm_down_ok) + atomic_load(&storm_down_bad) >= total, 30.0);
    cr_assert_eq(atomic_load(&storm_down_bad), 0, "%d wrong or repeated DOWNs",
                 atomic_load(&storm_down_bad));
    cr_assert_eq(atomic_load(&storm_down_ok), total, "%d of %d DOWNs", atomic_load(&storm_down_ok),
                 total);
    /* No extra DOWN follows (a grace for one to show), and every watcher is alive. */
    {
        struct timespec grace = {0, 100 * 1000 * 1000};

        nanosleep(&grace, NULL);
    }
    for (int i = 0; i < WATCHERS; i++)
        cr_assert_eq(send_smsg(sys, w[i], M_STOP, 0, 0), 0, "watcher %d died", i);
    cr_assert_eq(atomic_load(&storm_down_ok), total);
    cr_assert_eq(atomic_load(&storm_down_bad), 0);
}
