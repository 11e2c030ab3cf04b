/*
 * test_durable.c: durable actors through actor.h. A ledger actor persists each amount it is
 * given as an event and keeps the sum; the tests drive it with casts and calls from the test
 * thread (actor_call_wait) and check what a user would rely on: a continuation or reply only
 * once the event is in the journal, messages held back behind a persist, persist_async order,
 * recovery in a new system, snapshots every N and on request, deletion, and a failed persist.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "journal_util.h"

#define ID        "ledger-1"
#define WAIT_S    10.0
#define SEEN_MAX  64
#define BIG_EVENT (16 * 1024)

enum lop {
    L_ADD,       /* persist value; a call gets the reply in the continuation */
    L_ADD_ASYNC, /* persist_async value */
    L_ADD_BIG,   /* persist BIG_EVENT bytes counting as value */
    L_BIG_ASYNC, /* persist_async BIG_EVENT bytes counting as value */
    L_PEEK,      /* note the count seen now */
    L_GET,       /* reply with the ledger */
    L_SNAP,      /* actor_durable_snapshot; reply in its callback */
    L_DELETE,    /* actor_durable_delete_to(value); reply in its callback */
};

struct lcmd {
    int op;
    int64_t value;
};

struct lreply {
    int err;
    uint64_t seq;
    int64_t sum;
    uint64_t count;    /* events applied */
    uint64_t replayed; /* of them, during the start */
    uint64_t restored; /* the snapshot's seq, 0 if none was restored */
    int bad;           /* an invariant a callback saw broken */
    uint64_t mapfull;  /* continuations that got ACTOR_EMAPFULL */
    uint64_t other;    /* continuations that got another error */
    size_t nseen;
    uint64_t seen[SEEN_MAX];
};

struct ledger {
    struct lreply r; /* the state, in the reply's shape */
    int started;     /* recovered ran */
    uint64_t last_cont;
};

static char dir[PATH_MAX];
static struct actor_journal *jr;
static struct actor_system *sys;

/* ---- The ledger ------------------------------------------------------------------------------
 */

static int l_init(struct actor_durable *d, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct ledger));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static int l_restore(struct actor_durable *d, void *state, uint64_t seq, const void *data,
                     size_t len)
{
    struct ledger *l = state;

    if (len != sizeof(l->r.sum) + sizeof(l->r.count))
        return ACTOR_EINVAL;
    memcpy(&l->r.sum, data, sizeof(l->r.sum));
    memcpy(&l->r.count, (const char *)data + sizeof(l->r.sum), sizeof(l->r.count));
    l->r.restored = seq;
    return 0;
}

static int l_apply(struct actor_durable *d, void *state, uint64_t seq, const void *event,
                   size_t len)
{
    struct ledger *l = state;
    int64_t v;

    if (len < sizeof(v))
        return ACTOR_EINVAL;
    memcpy(&v, event, sizeof(v));
    l->r.sum += v;
    l->r.count++;
    if (!l->started)
        l->r.replayed++;
    if (seq != actor_durable_last_seq(d))
        l->r.bad++;
    return 0;
}

static int l_recovered(struct actor_durable *d, void *state)
{
    ((struct ledger *)state)->started = 1;
    return 0;
}

static int l_snapshot(struct actor_durable *d, void *state, void **data, size_t *len)
{
    struct ledger *l = state;
    char *buf = malloc(sizeof(l->r.sum) + sizeof(l->r.count));

    if (buf == NULL)
        return ACTOR_ENOMEM;
    memcpy(buf, &l->r.sum, sizeof(l->r.sum));
    memcpy(buf + sizeof(l->r.sum), &l->r.count, sizeof(l->r.count));
    *data = buf;
    *len = sizeof(l->r.sum) + sizeof(l->r.count);
    return 0;
}

static void l_terminate(struct actor_durable *d, void *state, int reason)
{
    free(state);
}

/* Reply to the call in @cb_data (a copy of the request, or NULL for a cast) and free it. */
static void reply_to(struct actor_durable *d, struct ledger *l, struct actor_msg *req, int err,
                     uint64_t seq)
{
    struct lreply *r;

    if (req == NULL)
        return;
    r = malloc(sizeof(*r));
    if (r != NULL) {
        *r = l->r;
        r->err = err;
        r->seq = seq;
        if (actor_reply(actor_durable_actor(d), req, actor_type_raw(), r, sizeof(*r)) != 0)
            free(r);
    }
    free(req);
}

/* The continuation: the event must already be in the journal, and continuations in order. */
static int l_done(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    struct ledger *l = state;
    uint64_t stored = 0;

    if (err != 0)
        *(err == ACTOR_EMAPFULL ? &l->r.mapfull : &l->r.other) += 1;
    if (err == 0) {
        if (actor_journal_highest(jr, actor_durable_id(d), &stored) != 0 || stored < seq)
            l->r.bad++;
        if (seq != l->last_cont + 1 && l->last_cont != 0)
            l->r.bad++;
        l->last_cont = seq;
    }
    reply_to(d, l, cb_data, err, seq);
    return 0;
}

static int l_side_done(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    reply_to(d, state, cb_data, err, seq);
    return 0;
}

static int l_add(struct actor_durable *d, const struct lcmd *c, struct actor_msg *req)
{
    static char big[BIG_EVENT];
    const void *ev = &c->value;
    size_t len = sizeof(c->value);
    int rc;

    if (c->op == L_ADD_BIG || c->op == L_BIG_ASYNC) {
        memcpy(big, &c->value, sizeof(c->value));
        ev = big;
        len = sizeof(big);
    }
    if (c->op == L_ADD_ASYNC || c->op == L_BIG_ASYNC)
        rc = actor_durable_persist_async(d, ev, len, l_done, req);
    else
        rc = actor_durable_persist(d, ev, len, l_done, req);
    return rc;
}

static int l_handle(struct actor_durable *d, void *state, struct actor_msg *msg)
{
    struct ledger *l = state;
    const struct lcmd *c = msg->payload;
    struct actor_msg *req = NULL;
    int rc = 0;

    if (msg->kind != ACTOR_MSG_USER && msg->kind != ACTOR_MSG_CALL)
        return 0;
    if (msg->size != sizeof(*c))
        return ACTOR_EINVAL;
    if (msg->kind == ACTOR_MSG_CALL) {
        req = malloc(sizeof(*req));
        if (req == NULL)
            return ACTOR_ENOMEM;
        *req = *msg;
    }
    switch (c->op) {
    case L_ADD:
    case L_ADD_ASYNC:
    case L_ADD_BIG:
    case L_BIG_ASYNC:
        rc = l_add(d, c, req);
        break;
    case L_PEEK:
        if (l->r.nseen < SEEN_MAX)
            l->r.seen[l->r.nseen++] = l->r.count;
        break;
    case L_SNAP:
        rc = actor_durable_snapshot(d, l_side_done, req);
        break;
    case L_DELETE:
        rc = actor_durable_delete_to(d, (uint64_t)c->value, l_side_done, req);
        break;
    default:
        reply_to(d, l, req, 0, actor_durable_last_seq(d));
        return 0;
    }
    if (rc != 0 || c->op == L_PEEK)
        reply_to(d, l, req, rc, 0); /* refused: the callback will never run */
    return 0;
}

static const struct actor_durable_behaviour ledger = {
    .name = "ledger",
    .init = l_init,
    .restore = l_restore,
    .apply = l_apply,
    .recovered = l_recovered,
    .handle = l_handle,
    .snapshot = l_snapshot,
    .terminate = l_terminate,
};

/* ---- Fixture and drivers ---------------------------------------------------------------------
 */

static struct actor_durable_spec spec = {.behaviour = &ledger, .persistence_id = ID};

static void system_start(void)
{
    struct actor_system_opts o = {.schedulers = 2};
    int rc = actor_system_new(&o, &sys);

    cr_assert_eq(rc, 0, "actor_system_new: %s", actor_strerror(rc));
    rc = actor_system_start(sys);
    cr_assert_eq(rc, 0, "actor_system_start: %s", actor_strerror(rc));
}

static void system_stop(void)
{
    if (sys == NULL)
        return;
    actor_system_shutdown(sys, 5.0);
    actor_system_free(sys);
    sys = NULL;
}

static void journal_open(size_t map_size, size_t map_max)
{
    struct actor_journal_opts o = {
        .dir = dir, .map_size = map_size, .map_max = map_max, .log = jutil_log};
    int rc = actor_journal_open(&o, &jr);

    cr_assert_eq(rc, 0, "journal open: %s", actor_strerror(rc));
}

static void setup(void)
{
    jutil_log_clear();
    cr_assert_eq(jutil_tmpdir("test-durable", dir), 0, "mkdtemp: %s", strerror(errno));
    journal_open(0, 0);
    spec = (struct actor_durable_spec){.journal = jr, .behaviour = &ledger, .persistence_id = ID};
    system_start();
}

static void teardown(void)
{
    system_stop();
    actor_journal_close(jr);
    jr = NULL;
    jutil_rmdir(dir);
}

TestSuite(durable, .init = setup, .fini = teardown, .timeout = 60);

static struct dist_pid ledger_spawn(void)
{
    struct dist_pid pid = DIST_PID_NONE;
    int rc = actor_durable_spawn(sys, NULL, &spec, NULL, &pid);

    cr_assert_eq(rc, 0, "actor_durable_spawn: %s", actor_strerror(rc));
    return pid;
}

static void cast(struct dist_pid to, int op, int64_t value)
{
    struct lcmd *c = malloc(sizeof(*c));
    int rc;

    cr_assert_not_null(c);
    *c = (struct lcmd){op, value};
    rc = actor_send(sys, to, actor_type_raw(), c, sizeof(*c));
    if (rc != 0)
        free(c);
    cr_assert_eq(rc, 0, "send: %s", actor_strerror(rc));
}

/* A call; returns actor_call_wait's result and the reply in *out. */
static int call(struct dist_pid to, int op, int64_t value, struct lreply *out)
{
    struct lcmd *c = malloc(sizeof(*c));
    struct actor_msg *reply = NULL;
    int rc;

    cr_assert_not_null(c);
    *c = (struct lcmd){op, value};
    rc = actor_call_wait(sys, to, actor_type_raw(), c, sizeof(*c), WAIT_S, &reply);
    if (rc == ACTOR_EINVAL)
        free(c);
    if (rc == 0) {
        cr_assert_eq(reply->size, sizeof(*out));
        memcpy(out, reply->payload, sizeof(*out));
        actor_msg_free(reply);
    }
    return rc;
}

static struct lreply get(struct dist_pid to)
{
    struct lreply r;
    int rc = call(to, L_GET, 0, &r);

    cr_assert_eq(rc, 0, "get: %s", actor_strerror(rc));
    cr_assert_eq(r.bad, 0, "a callback saw %d broken invariants", r.bad);
    return r;
}

static int count_event(uint64_t seq, const void *data, size_t len, void *user_data)
{
    (*(uint64_t *)user_data)++;
    return 0;
}

static uint64_t stored_events(void)
{
    uint64_t n = 0;

    cr_assert_eq(actor_journal_flush(jr), 0);
    cr_assert_eq(actor_journal_replay(jr, ID, 1, count_event, &n), 0);
    return n;
}

/* ---- Tests -----------------------------------------------------------------------------------
 */

Test(durable, reply_comes_after_the_event_is_stored)
{
    struct dist_pid p = ledger_spawn();
    struct lreply r;
    uint64_t stored = 0;

    for (int i = 1; i <= 20; i++) {
        int rc = call(p, L_ADD, i, &r);

        cr_assert_eq(rc, 0, "call: %s", actor_strerror(rc));
        cr_assert_eq(r.err, 0, "persist: %s", actor_strerror(r.err));
        cr_assert_eq(r.seq, (uint64_t)i);
        /* The reply is out: the event must be in the journal already, without a flush. */
        cr_assert_eq(actor_journal_highest(jr, ID, &stored), 0);
        cr_assert_geq(stored, (uint64_t)i);
    }
    r = get(p);
    cr_assert_eq(r.sum, 210);
    cr_assert_eq(r.count, 20);
}

Test(durable, messages_wait_behind_a_persist)
{
    struct dist_pid p = ledger_spawn();
    struct lreply r;

    for (int i = 0; i < 30; i++) {
        cast(p, L_ADD, 1);
        cast(p, L_PEEK, 0);
    }
    r = get(p);
    cr_assert_eq(r.count, 30);
    cr_assert_eq(r.nseen, 30);
    /* Each peek came after its add's continuation: it saw that add applied. */
    for (size_t i = 0; i < r.nseen; i++)
        cr_assert_eq(r.seen[i], i + 1, "peek #%zu saw %llu events", i,
                     (unsigned long long)r.seen[i]);
}

Test(durable, persist_async_keeps_order_and_loses_nothing)
{
    struct dist_pid p = ledger_spawn();
    struct lreply r;
    double end;

    for (int i = 1; i <= 500; i++)
        cast(p, L_ADD_ASYNC, i);
    end = (double)time(NULL) + WAIT_S;
    do {
        r = get(p); /* get() asserts the continuations ran in order, each after its write */
    } while (r.count < 500 && (double)time(NULL) < end);
    cr_assert_eq(r.count, 500);
    cr_assert_eq(r.sum, 500 * 501 / 2);
    cr_assert_eq(stored_events(), 500);
}

Test(durable, state_is_recovered_in_a_new_system)
{
    struct dist_pid p = ledger_spawn();
    struct lreply r;

    for (int i = 1; i <= 40; i++)
        cast(p, i % 2 ? L_ADD_ASYNC : L_ADD, i); /* the last waits */
    r = get(p);
    cr_assert_eq(r.count, 40);
    system_stop();
    system_start();
    p = ledger_spawn();
    r = get(p);
    cr_assert_eq(r.sum, 40 * 41 / 2);
    cr_assert_eq(r.count, 40);
    cr_assert_eq(r.replayed, 40, "the state came from the journal");
    cr_assert_eq(r.restored, 0);
    cr_assert_eq(call(p, L_ADD, 1000, &r), 0);
    cr_assert_eq(r.seq, 41, "numbering goes on after the recovered events");
}

Test(durable, one_live_actor_per_persistence_id)
{
    struct dist_pid p = ledger_spawn();
    struct dist_pid twin = ledger_spawn();
    struct lreply r;

    get(p);
    /* The twin's start fails (ACTOR_ENAMETAKEN): it is gone, and a call finds no process. */
    cr_assert_eq(call(twin, L_GET, 0, &r), ACTOR_ENOPROC);
    cr_assert_eq(call(p, L_ADD, 5, &r), 0);
    cr_assert_eq(r.seq, 1);
}

Test(durable, snapshot_every_n_events)
{
    struct dist_pid p;
    struct lreply r;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;

    spec.snapshot_every = 10;
    p = ledger_spawn();
    for (int i = 1; i <= 35; i++)
        cast(p, L_ADD, i);
    r = get(p);
    cr_assert_eq(r.count, 35);
    cr_assert_eq(actor_journal_flush(jr), 0);
    cr_assert_eq(actor_journal_snapshot_load(jr, ID, &seq, &data, &len), 0);
    cr_assert_eq(seq, 30);
    free(data);
    system_stop();
    system_start();
    p = ledger_spawn();
    r = get(p);
    cr_assert_eq(r.restored, 30);
    cr_assert_eq(r.replayed, 5, "only the events after the snapshot are replayed");
    cr_assert_eq(r.sum, 35 * 36 / 2);
    cr_assert_eq(r.count, 35);
}

Test(durable, snapshot_on_request_and_delete_covered_events)
{
    struct dist_pid p;
    struct lreply r;

    spec.flags = ACTOR_DURABLE_DELETE_ON_SNAPSHOT;
    p = ledger_spawn();
    cr_assert_eq(call(p, L_SNAP, 0, &r), 0);
    cr_assert_eq(r.err, ACTOR_EINVAL, "nothing to snapshot yet");
    for (int i = 1; i <= 20; i++)
        cast(p, L_ADD, i);
    cr_assert_eq(call(p, L_SNAP, 0, &r), 0);
    cr_assert_eq(r.err, 0, "snapshot: %s", actor_strerror(r.err));
    cr_assert_eq(r.seq, 20);
    cr_assert_eq(stored_events(), 0, "the covered events are deleted");
    cast(p, L_ADD, 100);
    cr_assert_eq(call(p, L_DELETE, 21, &r), 0);
    cr_assert_eq(r.err, ACTOR_EINVAL, "event 21 is not covered by a snapshot");
    cr_assert_eq(stored_events(), 1);
    system_stop();
    system_start();
    p = ledger_spawn();
    r = get(p);
    cr_assert_eq(r.restored, 20);
    cr_assert_eq(r.replayed, 1);
    cr_assert_eq(r.sum, 20 * 21 / 2 + 100);
}

/* A new system on a new journal whose map holds 256 KiB at most; spawns the ledger on it. */
static struct dist_pid restart_with_small_map(void)
{
    system_stop();
    actor_journal_close(jr);
    journal_open(256 << 10, 256 << 10);
    spec.journal = jr;
    system_start();
    return ledger_spawn();
}

Test(durable, a_full_map_fails_the_persist_and_the_actor_goes_on)
{
    struct dist_pid p;
    struct lreply r;
    int ok = 0, failed = 0;

    p = restart_with_small_map();
    for (int i = 1; i <= 40 && failed == 0; i++) {
        cr_assert_eq(call(p, L_ADD_BIG, 1, &r), 0);
        if (r.err == 0) {
            cr_assert_eq(r.seq, (uint64_t)i);
            ok++;
        } else {
            cr_assert_eq(r.err, ACTOR_EMAPFULL, "persist: %s", actor_strerror(r.err));
            failed++;
        }
    }
    cr_assert_eq(failed, 1, "40 events of 16 KiB fit in a 256 KiB map");
    cr_assert_gt(ok, 0);
    r = get(p);
    cr_assert_eq(r.count, (uint64_t)ok, "a failed event is not applied");
    cr_assert_eq(stored_events(), (uint64_t)ok);
    /* A small event still fits in the map's last pages, and takes the next number. */
    cr_assert_eq(call(p, L_ADD, 7, &r), 0);
    if (r.err == 0)
        cr_assert_eq(r.seq, (uint64_t)ok + 1);
    else
        cr_assert_eq(r.err, ACTOR_EMAPFULL);
}

Test(durable, a_failed_persist_fails_those_queued_behind_it_and_numbering_goes_on)
{
    struct dist_pid p;
    struct lreply r;
    double end;

    p = restart_with_small_map();
    for (int i = 0; i < 40; i++)
        cast(p, L_BIG_ASYNC, 1);
    end = (double)time(NULL) + WAIT_S;
    do {
        r = get(p);
    } while (r.count + r.mapfull + r.other < 40 && (double)time(NULL) < end);
    cr_assert_eq(r.count + r.mapfull + r.other, 40, "every continuation ran");
    cr_assert_gt(r.mapfull, 0, "40 events of 16 KiB fit in a 256 KiB map");
    cr_assert_eq(r.other, 0, "those behind the first failure report its cause");
    cr_assert_eq(stored_events(), r.count, "no event past the first failure was stored");
    /* All have come back: the next persist takes the number after the last stored event. */
    cr_assert_eq(call(p, L_ADD, 7, &r), 0);
    if (r.err == 0)
        cr_assert_eq(r.seq, r.count);
    else
        cr_assert_eq(r.err, ACTOR_EMAPFULL);
}
