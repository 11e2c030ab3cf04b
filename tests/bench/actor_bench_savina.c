/*
 * actor_bench_savina.c: the Savina micro-benchmarks of the actor suite, written against the
 * public actor.h API only. tests/bench/erlang/ holds the same benches for Erlang/OTP, with the
 * same parameters.
 *
 *   pingpong          2 actors, 40,000 strictly sequential round trips
 *   counting          a producer sends 1,000,000 increments to a counter, then asks the count
 *   threadring        100 actors in a ring pass a token 100,000 times
 *   big               120 actors, each sends 20,000 pings to random peers, waiting for each pong
 *   fjcreate          spawn 40,000 actors, send each one message; each computes sin(37.2)^2,
 *                     reports to its parent and exits
 *   fjthrput          60 actors each receive 10,000 messages sent round-robin, one sin(37.2)^2
 *                     per message
 *   skynet            a 10-ary tree of actors down to 1,000,000 leaves; sums come back up
 *
 * Messages are raw payloads sent by copy (actor_send_copy), as Erlang copies a term into the
 * receiver's heap: a struct bench_msg when the message carries data, nothing at all when it
 * carries none (an increment, a stop, a done). Copies this small travel inside the runtime's
 * envelope, so no message costs a malloc().
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor_bench.h"

/* What a message with data means. */
enum bench_kind {
    KIND_EMPTY = 0, /* no payload: an increment, a stop, a done */
    KIND_START,
    KIND_PING,
    KIND_PONG,
    KIND_GET,
    KIND_COUNT,
    KIND_TOKEN,
    KIND_WORK,
    KIND_SUM,
};

struct bench_msg {
    uint32_t kind; /* enum bench_kind */
    uint32_t pad;
    uint64_t value; /* a count, a hop count, a sum, or a double's bits */
};

/* ---- Messages ----------------------------------------------------------------------------- */

static uint32_t msg_kind(const struct bench *b, const struct actor_msg *msg)
{
    if (msg->kind != ACTOR_MSG_USER || msg->type != b->raw)
        return UINT32_MAX;
    if (msg->size < sizeof(struct bench_msg))
        return KIND_EMPTY;
    return ((const struct bench_msg *)msg->payload)->kind;
}

static uint64_t msg_value(const struct actor_msg *msg)
{
    return ((const struct bench_msg *)msg->payload)->value;
}

static int send_empty(struct bench *b, struct dist_pid to)
{
    return actor_send_copy(b->sys, to, NULL, 0);
}

static int send_data(struct bench *b, struct dist_pid to, uint32_t kind, uint64_t value)
{
    struct bench_msg m = {kind, 0, value};

    return actor_send_copy(b->sys, to, &m, sizeof m);
}

/* A message a behaviour does not expect: fail the run, crash the actor. */
static int unexpected(struct bench *b, const char *who, const struct actor_msg *msg)
{
    char what[96];

    snprintf(what, sizeof what, "%s got an unexpected message (kind %d, type %s)", who,
             (int)msg->kind, msg->type ? actor_type_name(msg->type) : "none");
    bench_fail(b, what, 0);
    return ACTOR_EINVAL;
}

/* Free the state of an actor whose state is its own malloc()ed block. */
static void state_free(struct actor *self, void *state, int reason)
{
    free(state);
}

/* init for actors whose state is their arg: a malloc()ed block, or the bench itself. */
static int state_take(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

/* ---- pingpong ----------------------------------------------------------------------------- */

struct pingpong {
    struct bench *b;
    struct dist_pid pong;
    uint32_t left;
};

static int pong_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct bench *b = state;

    switch (msg_kind(b, msg)) {
    case KIND_PING:
        return send_data(b, msg->from, KIND_PONG, 0);
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(b, "pong", msg);
    }
}

static int ping_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct pingpong *p = state;
    int rc;

    switch (msg_kind(p->b, msg)) {
    case KIND_PONG:
        if (--p->left == 0) {
            rc = send_empty(p->b, p->pong);
            if (rc != 0)
                bench_fail(p->b, "pingpong: stop", rc);
            sem_post(&p->b->done);
            actor_exit(self, ACTOR_NORMAL);
            return 0;
        }
        /* fall through */
    case KIND_START:
        rc = send_data(p->b, p->pong, KIND_PING, 0);
        if (rc != 0)
            bench_fail(p->b, "pingpong: ping", rc);
        return rc;
    default:
        return unexpected(p->b, "ping", msg);
    }
}

static const struct actor_behaviour pong_behaviour = {"pong", state_take, pong_handle, NULL};
static const struct actor_behaviour ping_behaviour = {"ping", state_take, ping_handle, state_free};

int bench_pingpong_run(struct bench *b)
{
    struct pingpong *p = malloc(sizeof *p);
    struct dist_pid ping;
    int rc;

    if (p == NULL)
        return ACTOR_ENOMEM;
    *p = (struct pingpong){b, DIST_PID_NONE, PINGPONG_N};
    rc = spawn_top(b, &pong_behaviour, b, &p->pong);
    if (rc == 0)
        rc = spawn_top(b, &ping_behaviour, p, &ping);
    if (rc != 0) {
        free(p);
        return rc;
    }
    rc = send_data(b, ping, KIND_START, 0);
    return rc != 0 ? rc : bench_wait(b, "pingpong");
}

/* ---- counting ----------------------------------------------------------------------------- */

struct counting {
    struct bench *b;
    struct dist_pid counter;
    uint64_t count; /* the counter's */
};

static int counter_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct counting *c = state;

    switch (msg_kind(c->b, msg)) {
    case KIND_EMPTY:
        c->count++;
        return 0;
    case KIND_GET:
        actor_exit(self, ACTOR_NORMAL);
        return send_data(c->b, msg->from, KIND_COUNT, c->count);
    default:
        return unexpected(c->b, "counter", msg);
    }
}

static int producer_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct counting *c = state;
    int rc = 0;

    switch (msg_kind(c->b, msg)) {
    case KIND_START:
        for (uint32_t i = 0; i < COUNTING_N && rc == 0; i++)
            rc = send_empty(c->b, c->counter);
        if (rc == 0)
            rc = send_data(c->b, c->counter, KIND_GET, 0);
        if (rc != 0)
            bench_fail(c->b, "counting: send", rc);
        return rc;
    case KIND_COUNT:
        c->b->result = msg_value(msg);
        sem_post(&c->b->done);
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(c->b, "producer", msg);
    }
}

static const struct actor_behaviour counter_behaviour = {"counter", state_take, counter_handle,
                                                         state_free};
static const struct actor_behaviour producer_behaviour = {"producer", state_take, producer_handle,
                                                          state_free};

int bench_counting_run(struct bench *b)
{
    struct counting *counter = calloc(1, sizeof *counter);
    struct counting *producer = calloc(1, sizeof *producer);
    struct dist_pid pid;
    int rc = ACTOR_ENOMEM;

    if (counter == NULL || producer == NULL)
        goto fail;
    counter->b = producer->b = b;
    rc = spawn_top(b, &counter_behaviour, counter, &producer->counter);
    if (rc != 0)
        goto fail;
    counter = NULL; /* the actor's now */
    rc = spawn_top(b, &producer_behaviour, producer, &pid);
    if (rc != 0)
        goto fail;
    rc = send_data(b, pid, KIND_START, 0);
    if (rc == 0)
        rc = bench_wait(b, "counting");
    if (rc == 0 && b->result != COUNTING_N) {
        bench_fail(b, "counting: wrong count", 0);
        rc = -1;
    }
    return rc;
fail:
    free(counter);
    free(producer);
    return rc;
}

/* ---- threadring --------------------------------------------------------------------------- */

/* The state of an actor that has a place in b->pids: threadring's members, big's workers. */
struct indexed {
    struct bench *b;
    uint32_t index;
};

static int ring_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct indexed *m = state;
    struct dist_pid next;
    int rc;

    switch (msg_kind(m->b, msg)) {
    case KIND_TOKEN:
        if (msg_value(msg) == 0) {
            sem_post(&m->b->done);
            return 0;
        }
        next = m->b->pids[(m->index + 1) % RING_ACTORS];
        rc = send_data(m->b, next, KIND_TOKEN, msg_value(msg) - 1);
        if (rc != 0)
            bench_fail(m->b, "threadring: pass", rc);
        return rc;
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(m->b, "ring member", msg);
    }
}

static const struct actor_behaviour ring_behaviour = {"ring", state_take, ring_handle, state_free};

/* Send a stop to the first @n actors of b->pids. */
static int stop_all(struct bench *b, uint32_t n)
{
    int rc = 0;

    for (uint32_t i = 0; i < n; i++) {
        int r = send_empty(b, b->pids[i]);
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* Spawn @n actors of @bh into b->pids, each with a zeroed struct indexed (or a struct that
 * starts with one) of @state_size as its state. */
static int spawn_indexed(struct bench *b, const struct actor_behaviour *bh, uint32_t n,
                         size_t state_size, uint32_t *spawned)
{
    for (*spawned = 0; *spawned < n; (*spawned)++) {
        struct indexed *m = calloc(1, state_size);
        int rc;

        if (m == NULL)
            return ACTOR_ENOMEM;
        m->b = b;
        m->index = *spawned;
        rc = spawn_top(b, bh, m, &b->pids[*spawned]);
        if (rc != 0) {
            free(m);
            return rc;
        }
    }
    return 0;
}

int bench_threadring_run(struct bench *b)
{
    uint32_t spawned;
    int rc = spawn_indexed(b, &ring_behaviour, RING_ACTORS, sizeof(struct indexed), &spawned);

    /* The ring's PIDs are all in b->pids before the token's send publishes them. */
    if (rc == 0)
        rc = send_data(b, b->pids[0], KIND_TOKEN, RING_N);
    if (rc == 0)
        rc = bench_wait(b, "threadring");
    stop_all(b, spawned);
    return rc;
}

/* ---- big ---------------------------------------------------------------------------------- */

struct big_worker {
    struct indexed m;
    uint32_t left; /* pongs still to receive */
    uint64_t seed; /* Park-Miller's minimal standard, as in big.erl */
};

/* Send @msg, rewritten as a ping, to a random peer other than the worker itself. */
static int big_ping(struct big_worker *w, struct actor_msg *msg)
{
    uint64_t r;

    w->seed = w->seed * 48271 % 2147483647;
    r = w->seed % (BIG_ACTORS - 1);
    if (r >= w->m.index)
        r++;
    return send_data(w->m.b, w->m.b->pids[r], KIND_PING, 0);
}

static int big_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct big_worker *w = state;
    struct bench *b = w->m.b;
    int rc;

    switch (msg_kind(b, msg)) {
    case KIND_PING:
        rc = send_data(b, msg->from, KIND_PONG, 0);
        break;
    case KIND_PONG:
        if (w->left == 1) {
            w->left = 0;
            if (atomic_fetch_add(&b->counter, 1) + 1 == BIG_ACTORS)
                sem_post(&b->done);
            return 0;
        }
        w->left--;
        rc = big_ping(w, msg);
        break;
    case KIND_START:
        w->seed = (uint64_t)w->m.index * 7919 + 1;
        w->left = BIG_PINGS;
        rc = big_ping(w, msg);
        break;
    case KIND_EMPTY:
        actor_exit(self, ACTOR_NORMAL);
        return 0;
    default:
        return unexpected(b, "big worker", msg);
    }
    if (rc != 0)
        bench_fail(b, "big: send", rc);
    return rc;
}

static const struct actor_behaviour big_behaviour = {"big", state_take, big_handle, state_free};

int bench_big_run(struct bench *b)
{
    uint32_t spawned;
    int rc;

    atomic_store(&b->counter, 0);
    rc = spawn_indexed(b, &big_behaviour, BIG_ACTORS, sizeof(struct big_worker), &spawned);
    for (uint32_t i = 0; rc == 0 && i < BIG_ACTORS; i++)
        rc = send_data(b, b->pids[i], KIND_START, 0);
    if (rc == 0)
        rc = bench_wait(b, "big");
    stop_all(b, spawned);
    return rc;
}

/* ---- fjcreate and fjthrput ---------------------------------------------------------------- */

struct fj_master {
    struct bench *b;
    uint32_t left; /* dones still to come */
};

struct fj_worker {
    struct bench *b;
    uint32_t left; /* messages still to come (fjthrput) */
};

/* The work of one message: sin(x)^2, with its result used so it cannot be dropped. */
static int fj_compute(struct bench *b, const struct actor_msg *msg)
{
    uint64_t bits = msg_value(msg);
    double x, s, r;

    memcpy(&x, &bits, sizeof x);
    s = sin(x);
    r = s * s;
    if (!(r >= 0.0)) {
        bench_fail(b, "fj: sin(x)^2 < 0", 0);
        return ACTOR_EINVAL;
    }
    return 0;
}

static uint64_t work_bits(struct bench *b)
{
    double x = b->work_arg;
    uint64_t bits;

    memcpy(&bits, &x, sizeof bits);
    return bits;
}

static int fjc_worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct bench *b = state;
    int rc;

    if (msg_kind(b, msg) != KIND_WORK)
        return unexpected(b, "fjcreate worker", msg);
    rc = fj_compute(b, msg);
    if (rc == 0)
        rc = send_empty(b, msg->from);
    if (rc != 0)
        bench_fail(b, "fjcreate: done", rc);
    actor_exit(self, ACTOR_NORMAL);
    return rc;
}

static const struct actor_behaviour fjc_worker_behaviour = {"fjcreate worker", state_take,
                                                            fjc_worker_handle, NULL};

static int fjc_start(struct actor *self, struct fj_master *m)
{
    struct dist_pid pid;
    uint64_t bits = work_bits(m->b);

    for (uint32_t i = 0; i < FJCREATE_N; i++) {
        int rc = actor_spawn(m->b->sys, self, &fjc_worker_behaviour, m->b, NULL, &pid);
        if (rc == 0)
            rc = send_data(m->b, pid, KIND_WORK, bits);
        if (rc != 0) {
            bench_fail(m->b, "fjcreate: spawn or send", rc);
            return rc;
        }
    }
    return 0;
}

static int fj_master_done(struct actor *self, struct fj_master *m)
{
    if (--m->left == 0) {
        sem_post(&m->b->done);
        actor_exit(self, ACTOR_NORMAL);
    }
    return 0;
}

static int fjc_master_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_master *m = state;

    switch (msg_kind(m->b, msg)) {
    case KIND_START:
        return fjc_start(self, m);
    case KIND_EMPTY:
        return fj_master_done(self, m);
    default:
        return unexpected(m->b, "fjcreate master", msg);
    }
}

static const struct actor_behaviour fjc_master_behaviour = {"fjcreate master", state_take,
                                                            fjc_master_handle, state_free};

static int fjt_worker_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_worker *w = state;
    int rc;

    if (msg_kind(w->b, msg) != KIND_WORK)
        return unexpected(w->b, "fjthrput worker", msg);
    rc = fj_compute(w->b, msg);
    if (rc == 0 && --w->left == 0) {
        rc = send_empty(w->b, msg->from);
        if (rc != 0)
            bench_fail(w->b, "fjthrput: done", rc);
        actor_exit(self, ACTOR_NORMAL);
    }
    return rc;
}

static const struct actor_behaviour fjt_worker_behaviour = {"fjthrput worker", state_take,
                                                            fjt_worker_handle, state_free};

static int fjt_start(struct actor *self, struct fj_master *m)
{
    struct dist_pid pids[FJTHRPUT_ACTORS];
    uint64_t bits = work_bits(m->b);
    int rc = 0;

    for (uint32_t i = 0; i < FJTHRPUT_ACTORS && rc == 0; i++) {
        struct fj_worker *w = malloc(sizeof *w);
        if (w == NULL) {
            rc = ACTOR_ENOMEM;
            break;
        }
        *w = (struct fj_worker){m->b, FJTHRPUT_PER};
        rc = actor_spawn(m->b->sys, self, &fjt_worker_behaviour, w, NULL, &pids[i]);
        if (rc != 0)
            free(w);
    }
    for (uint32_t k = 0; k < FJTHRPUT_PER && rc == 0; k++)
        for (uint32_t i = 0; i < FJTHRPUT_ACTORS && rc == 0; i++)
            rc = send_data(m->b, pids[i], KIND_WORK, bits);
    if (rc != 0)
        bench_fail(m->b, "fjthrput: spawn or send", rc);
    return rc;
}

static int fjt_master_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fj_master *m = state;

    switch (msg_kind(m->b, msg)) {
    case KIND_START:
        return fjt_start(self, m);
    case KIND_EMPTY:
        return fj_master_done(self, m);
    default:
        return unexpected(m->b, "fjthrput master", msg);
    }
}

static const struct actor_behaviour fjt_master_behaviour = {"fjthrput master", state_take,
                                                            fjt_master_handle, state_free};

static int run_fj(struct bench *b, const struct actor_behaviour *master, uint32_t dones,
                  const char *name)
{
    struct fj_master *m = malloc(sizeof *m);
    struct dist_pid pid;
    int rc;

    if (m == NULL)
        return ACTOR_ENOMEM;
    *m = (struct fj_master){b, dones};
    rc = spawn_top(b, master, m, &pid);
    if (rc != 0) {
        free(m);
        return rc;
    }
    rc = send_data(b, pid, KIND_START, 0);
    return rc != 0 ? rc : bench_wait(b, name);
}

int bench_fjcreate_run(struct bench *b)
{
    return run_fj(b, &fjc_master_behaviour, FJCREATE_N, "fjcreate");
}

int bench_fjthrput_run(struct bench *b)
{
    return run_fj(b, &fjt_master_behaviour, FJTHRPUT_ACTORS, "fjthrput");
}

/* ---- skynet ------------------------------------------------------------------------------- */

struct skynet_node {
    struct bench *b;
    struct dist_pid parent; /* DIST_PID_NONE for the root */
    uint64_t num;
    uint64_t size;
    uint64_t sum;
    uint32_t left; /* answers still to come */
};

static int skynet_up(struct skynet_node *n, uint64_t sum)
{
    int rc;

    if (dist_pid_is_none(n->parent)) {
        n->b->result = sum;
        sem_post(&n->b->done);
        return 0;
    }
    rc = send_data(n->b, n->parent, KIND_SUM, sum);
    if (rc != 0)
        bench_fail(n->b, "skynet: send up", rc);
    return rc;
}

static const struct actor_behaviour skynet_behaviour;

/* A leaf answers and ends at once; an inner node spawns its ten children. */
static int skynet_init(struct actor *self, void *arg, void **state)
{
    struct skynet_node *n = arg;
    uint64_t child = n->size / 10;

    *state = n;
    if (n->size == 1) {
        actor_exit(self, ACTOR_NORMAL);
        return skynet_up(n, n->num);
    }
    for (uint32_t i = 0; i < 10; i++) {
        struct skynet_node *c = malloc(sizeof *c);
        int rc = c == NULL ? ACTOR_ENOMEM : 0;
        if (rc == 0) {
            *c = (struct skynet_node){n->b, actor_self(self), n->num + i * child, child, 0, 10};
            rc = actor_spawn(n->b->sys, self, &skynet_behaviour, c, NULL, NULL);
        }
        if (rc != 0) {
            free(c);
            bench_fail(n->b, "skynet: spawn", rc);
            return rc;
        }
    }
    return 0;
}

static int skynet_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct skynet_node *n = state;

    if (msg_kind(n->b, msg) != KIND_SUM)
        return unexpected(n->b, "skynet node", msg);
    n->sum += msg_value(msg);
    if (--n->left > 0)
        return 0;
    actor_exit(self, ACTOR_NORMAL);
    return skynet_up(n, n->sum);
}

static const struct actor_behaviour skynet_behaviour = {"skynet", skynet_init, skynet_handle,
                                                        state_free};

int bench_skynet_run(struct bench *b)
{
    struct skynet_node *root = malloc(sizeof *root);
    int rc;

    if (root == NULL)
        return ACTOR_ENOMEM;
    *root = (struct skynet_node){b, DIST_PID_NONE, 0, SKYNET_LEAVES, 0, 10};
    b->result = 0;
    rc = spawn_top(b, &skynet_behaviour, root, NULL);
    if (rc != 0) {
        free(root);
        return rc;
    }
    rc = bench_wait(b, "skynet");
    if (rc == 0 && b->result != SKYNET_SUM) {
        bench_fail(b, "skynet: wrong sum", 0);
        rc = -1;
    }
    return rc;
}
