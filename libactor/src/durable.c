/*
 * durable.c: durable actors, an ordinary behaviour wrapped around the user's durable one.
 *
 *   init:    claim the persistence id -> user init -> restore the snapshot -> replay the
 *            events after it -> recovered; only then does the actor take a message.
 *   end:     terminate -> wait until the actor's queued requests are written -> release the
 *            id, so that a new incarnation reads everything its predecessor persisted.
 *   handle:  an acknowledgement from the journal's writer -> apply, continuation, snapshot
 *            every N, then the stashed messages;
 *            any other message while a persist() is out -> the stash, in order;
 *            else -> the user's handler.
 *
 * A persist allocates one journal request that carries the event's copy, the continuation
 * and the actor's PID. The writer sends it back to the actor as a raw message once its batch
 * is on disk (the acknowledgement), so from the persist to the continuation the event is
 * never copied again. The writer handles requests in queue order and sends from one thread,
 * so an actor's acknowledgements come back in the order it persisted.
 *
 * After a failed append, the writer refuses this actor's later appends that were already
 * queued (they no longer follow the highest seq), so the journal keeps no gap; the actor
 * refuses new persists until those have come back, then goes on from its last applied seq.
 */
#include <stdlib.h>
#include <string.h>

#include "journal.h"

#define REQ_ASYNC (1u << 0) /* persist_async: the actor's messages are not held back */

struct stashed {
    struct stashed *next;
    struct actor_msg msg; /* its payload taken from the runtime */
};

struct actor_durable {
    struct actor_journal *j;
    const struct actor_durable_behaviour *b;
    struct actor *self;
    struct dist_pid pid;
    void *state; /* the user's */
    uint64_t snapshot_every;
    unsigned flags;      /* ACTOR_DURABLE_* */
    uint64_t next_seq;   /* the seq the next persist gets */
    uint64_t applied;    /* the last event applied to the state */
    uint64_t since_snap; /* events applied since the last snapshot */
    unsigned inflight;   /* appends queued and not yet acknowledged */
    unsigned waiting;    /* of them, persist() ones: messages are stashed meanwhile */
    unsigned requests;   /* requests of any kind not yet acknowledged */
    int failed;          /* the first error among the inflight appends, or 0 */
    int replaying;       /* starting: no persist yet */
    struct stashed *stash_head, *stash_tail;
    size_t idlen;
    char id[ACTOR_JOURNAL_ID_MAX + 1];
};

/* ---- Requests --------------------------------------------------------------------------------
 */

/* The writer's done(): send the request back to its actor (writer thread). */
static void ack_send(struct journal_req *req)
{
    if (actor_send(req->sys, req->to, actor_type_raw(), req, sizeof(*req)) != 0)
        free(req); /* the actor is gone */
}

/* Queue a request of @op for this actor, with @data copied. */
static int request(struct actor_durable *d, enum journal_op op, uint64_t seq, const void *data,
                   size_t len, actor_durable_done_cb cb, void *cb_data, unsigned flags)
{
    struct journal_req *req = journal__req_new(op, d->id, d->idlen, seq, data, len);
    int rc;

    if (req == NULL)
        return ACTOR_ENOMEM;
    req->done = ack_send;
    req->dcb = cb;
    req->cb_data = cb_data;
    req->owner = d;
    req->sys = actor_system_of(d->self);
    req->to = d->pid;
    req->flags = flags;
    rc = journal__submit(d->j, req);
    if (rc != 0) {
        free(req);
        return rc;
    }
    d->requests++;
    return 0;
}

static int persist(struct actor_durable *d, const void *event, size_t len, actor_durable_done_cb cb,
                   void *cb_data, unsigned flags)
{
    int rc;

    if (d == NULL || d->replaying || (event == NULL && len > 0) || len > ACTOR_JOURNAL_EVENT_MAX)
        return ACTOR_EINVAL;
    if (d->failed != 0)
        return d->failed;
    rc = request(d, JOP_APPEND, d->next_seq, event, len, cb, cb_data, flags);
    if (rc != 0)
        return rc;
    d->next_seq++;
    d->inflight++;
    if (!(flags & REQ_ASYNC))
        d->waiting++;
    return 0;
}

int actor_durable_persist(struct actor_durable *d, const void *event, size_t len,
                          actor_durable_done_cb cb, void *cb_data)
{
    return persist(d, event, len, cb, cb_data, 0);
}

int actor_durable_persist_async(struct actor_durable *d, const void *event, size_t len,
                                actor_durable_done_cb cb, void *cb_data)
{
    return persist(d, event, len, cb, cb_data, REQ_ASYNC);
}

int actor_durable_delete_to(struct actor_durable *d, uint64_t seq, actor_durable_done_cb cb,
                            void *cb_data)
{
    if (d == NULL || d->replaying || seq == 0)
        return ACTOR_EINVAL;
    return request(d, JOP_DELETE, seq, NULL, 0, cb, cb_data, 0);
}

int actor_durable_snapshot(struct actor_durable *d, actor_durable_done_cb cb, void *cb_data)
{
    void *data = NULL;
    size_t len = 0;
    int rc;

    if (d == NULL || d->replaying || d->b->snapshot == NULL || d->applied == 0)
        return ACTOR_EINVAL;
    rc = d->b->snapshot(d, d->state, &data, &len);
    if (rc != 0)
        return rc;
    if (data == NULL && len > 0)
        return ACTOR_EINVAL;
    rc = len <= ACTOR_JOURNAL_EVENT_MAX
             ? request(d, JOP_SNAPSHOT, d->applied, data, len, cb, cb_data, 0)
             : ACTOR_EINVAL;
    free(data);
    if (rc != 0)
        return rc;
    d->since_snap = 0;
    /* Queued behind the snapshot: the writer deletes only what a stored snapshot covers. */
    if (d->flags & ACTOR_DURABLE_DELETE_ON_SNAPSHOT)
        rc = request(d, JOP_DELETE, d->applied, NULL, 0, NULL, NULL, 0);
    return rc;
}

struct actor *actor_durable_actor(struct actor_durable *d)
{
    return d->self;
}

uint64_t actor_durable_last_seq(const struct actor_durable *d)
{
    return d->applied;
}

const char *actor_durable_id(const struct actor_durable *d)
{
    return d->id;
}

/* ---- The stash -------------------------------------------------------------------------------
 */

static int stash_push(struct actor_durable *d, struct actor_msg *msg)
{
    struct stashed *s = malloc(sizeof(*s));
    void *payload;

    if (s == NULL)
        return ACTOR_ENOMEM;
    /* Take first: the copy then carries a payload of its own, never the runtime's. */
    payload = actor_msg_take(msg);
    if (payload == NULL && msg->payload != NULL) {
        free(s);
        return ACTOR_ENOMEM;
    }
    s->msg = *msg;
    s->msg.payload = payload;
    s->next = NULL;
    if (d->stash_tail != NULL)
        d->stash_tail->next = s;
    else
        d->stash_head = s;
    d->stash_tail = s;
    return 0;
}

static struct stashed *stash_pop(struct actor_durable *d)
{
    struct stashed *s = d->stash_head;

    if (s != NULL) {
        d->stash_head = s->next;
        if (d->stash_head == NULL)
            d->stash_tail = NULL;
    }
    return s;
}

static void stashed_free(struct stashed *s)
{
    if (s->msg.payload != NULL)
        actor_payload_free(s->msg.type, s->msg.payload);
    free(s);
}

/* Hand the stashed messages to the handler, in order, until a persist() holds them again. */
static int stash_drain(struct actor_durable *d)
{
    while (d->waiting == 0 && d->stash_head != NULL) {
        struct stashed *s = stash_pop(d);
        int rc = d->b->handle(d, d->state, &s->msg);

        stashed_free(s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- Acknowledgements ------------------------------------------------------------------------
 */

static int is_ack(const struct actor_durable *d, const struct actor_msg *msg)
{
    const struct journal_req *req = msg->payload;

    return msg->kind == ACTOR_MSG_USER && msg->type == actor_type_raw() &&
           msg->size == sizeof(*req) && req != NULL && dist_pid_is_none(msg->from) &&
           req->magic == JOURNAL_REQ_MAGIC && req->owner == d;
}

static int snapshot_due(struct actor_durable *d)
{
    if (d->snapshot_every == 0 || d->since_snap < d->snapshot_every || d->b->snapshot == NULL)
        return 0;
    return actor_durable_snapshot(d, NULL, NULL);
}

static int append_done(struct actor_durable *d, struct journal_req *req)
{
    int err = req->err, rc = 0;

    d->inflight--;
    if (!(req->flags & REQ_ASYNC))
        d->waiting--;
    if (err == 0) {
        d->applied = req->seq;
        d->since_snap++;
        rc = d->b->apply(d, d->state, req->seq, req->data, req->len);
        if (rc != 0)
            return rc;
    } else if (d->failed == 0) {
        d->failed = err;
    } else if (err == ACTOR_ESEQ) {
        err = d->failed; /* refused behind the first failure: report its cause */
    }
    if (d->inflight == 0 && d->failed != 0) {
        d->next_seq = d->applied + 1;
        d->failed = 0;
    }
    if (req->dcb != NULL)
        rc = req->dcb(d, d->state, err, req->seq, req->cb_data);
    else
        rc = err;
    return rc != 0 ? rc : snapshot_due(d);
}

static int other_done(struct actor_durable *d, struct journal_req *req)
{
    if (req->dcb != NULL)
        return req->dcb(d, d->state, req->err, req->seq, req->cb_data);
    if (req->err != 0)
        journal__log(d->j, 1, "durable %s (%s): automatic %s up to %llu failed: %s", d->id,
                     d->b->name != NULL ? d->b->name : "?",
                     req->op == JOP_SNAPSHOT ? "snapshot" : "deletion",
                     (unsigned long long)req->seq, actor_strerror(req->err));
    return 0;
}

static int ack_handle(struct actor_durable *d, struct journal_req *req)
{
    int rc;

    d->requests--;
    rc = req->op == JOP_APPEND ? append_done(d, req) : other_done(d, req);
    free(req);
    return rc != 0 ? rc : stash_drain(d);
}

/* ---- Recovery --------------------------------------------------------------------------------
 */

static int replay_one(uint64_t seq, const void *data, size_t len, void *user_data)
{
    struct actor_durable *d = user_data;

    if (seq != d->applied + 1)
        return ACTOR_ESEQ; /* a gap: never written by this library */
    d->applied = seq;
    return d->b->apply(d, d->state, seq, data, len);
}

static int restore(struct actor_durable *d)
{
    void *data = NULL;
    size_t len = 0;
    uint64_t seq = 0;
    int rc = actor_journal_snapshot_load(d->j, d->id, &seq, &data, &len);

    if (rc != 0 || seq == 0)
        return rc;
    rc = d->b->restore != NULL ? d->b->restore(d, d->state, seq, data, len) : ACTOR_EINVAL;
    free(data);
    d->applied = seq;
    return rc;
}

static int recover(struct actor_durable *d, void *arg)
{
    uint64_t snap;
    int rc;

    /*
     * No earlier incarnation's append can still be queued: one waits for its requests before
     * it releases the persistence id (durable_free), and this one holds the id now.
     */
    rc = d->b->init != NULL ? d->b->init(d, arg, &d->state) : 0;
    if (rc != 0)
        return rc;
    d->replaying = 1;
    rc = restore(d);
    snap = d->applied;
    if (rc == 0)
        rc = actor_journal_replay(d->j, d->id, d->applied + 1, replay_one, d);
    d->replaying = 0;
    d->since_snap = d->applied - snap; /* the next automatic snapshot counts from there */
    d->next_seq = d->applied + 1;
    if (rc == 0 && d->b->recovered != NULL)
        rc = d->b->recovered(d, d->state);
    return rc;
}

/* ---- The wrapping behaviour ------------------------------------------------------------------
 */

static int spec_check(const struct actor_durable_spec *spec)
{
    size_t len;

    if (spec == NULL || spec->journal == NULL || spec->behaviour == NULL ||
        spec->behaviour->apply == NULL || spec->behaviour->handle == NULL ||
        (spec->flags & ~ACTOR_DURABLE_DELETE_ON_SNAPSHOT) != 0)
        return ACTOR_EINVAL;
    return journal__id_check(spec->persistence_id, &len);
}

static void durable_free(struct actor_durable *d)
{
    while (d->stash_head != NULL)
        stashed_free(stash_pop(d));
    /* Wait for our requests' acknowledgements to be sent, so none outlives the system. */
    if (d->requests > 0)
        actor_journal_flush(d->j);
    journal__release(d->j, d->id);
    free(d);
}

static int durable_init(struct actor *self, void *arg, void **state)
{
    const struct actor_durable_spec *spec = arg;
    struct actor_durable *d;
    int rc = spec_check(spec);

    if (rc != 0)
        return rc;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return ACTOR_ENOMEM;
    d->j = spec->journal;
    d->b = spec->behaviour;
    d->self = self;
    d->pid = actor_self(self);
    d->snapshot_every = spec->snapshot_every;
    d->flags = spec->flags;
    journal__id_check(spec->persistence_id, &d->idlen);
    memcpy(d->id, spec->persistence_id, d->idlen + 1);
    rc = journal__claim(d->j, d->id);
    if (rc != 0) {
        free(d);
        return rc;
    }
    rc = recover(d, spec->arg);
    if (rc != 0) {
        /* The runtime runs no terminate after a failed init: free the user's state here. */
        if (d->state != NULL && d->b->terminate != NULL)
            d->b->terminate(d, d->state, rc);
        durable_free(d);
        return rc;
    }
    *state = d;
    return 0;
}

static int durable_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct actor_durable *d = state;

    if (is_ack(d, msg))
        return ack_handle(d, actor_msg_take(msg));
    if (d->waiting > 0)
        return stash_push(d, msg);
    return d->b->handle(d, d->state, msg);
}

static void durable_terminate(struct actor *self, void *state, int reason)
{
    struct actor_durable *d = state;

    if (d == NULL)
        return;
    if (d->b->terminate != NULL)
        d->b->terminate(d, d->state, reason);
    durable_free(d);
}

static const struct actor_behaviour durable_behaviour = {
    .name = "durable",
    .init = durable_init,
    .handle = durable_handle,
    .terminate = durable_terminate,
};

const struct actor_behaviour *actor_durable_base(void)
{
    return &durable_behaviour;
}

int actor_durable_spawn(struct actor_system *sys, struct actor *parent,
                        const struct actor_durable_spec *spec, const struct actor_spawn_opts *opts,
                        struct dist_pid *pid)
{
    if (sys == NULL || spec_check(spec) != 0 || (opts != NULL && opts->mailbox_max != 0))
        return ACTOR_EINVAL;
    return actor_spawn(sys, parent, &durable_behaviour, (void *)spec, opts, pid);
}
