/*
 * journal.c: the durable actors' store. One LMDB environment per directory, one writer
 * thread that owns every write, and group commit.
 *
 *   any thread --submit--> [queue: mutex + condvar] --writer-->  txn { batch } commit+sync
 *                                                                   |
 *                                      done(req) for each, in queue order <---+
 *
 * Layout of the environment (<dir>/data.mdb, with LMDB's <dir>/lock.mdb):
 *
 *   "events"    key: u8 idlen | id | u64 big-endian seq    value: the event's bytes
 *   "snapshots" key: u8 idlen | id                          value: u64 big-endian seq | bytes
 *   "meta"      key: "schema"                               value: u32 big-endian version
 *
 * The length prefix keeps one id's keys together and the big-endian seq keeps them in order,
 * so a replay is one cursor walk. The writer appends an event only as the id's next number,
 * so the store itself rules out gaps and duplicates.
 *
 * Map size. LMDB needs the map resized when no transaction is open in the process: readers
 * take j->resize shared, the writer takes it exclusively to grow the map (doubling, up to
 * map_max) after a batch hit MDB_MAP_FULL, then retries the batch.
 *
 * Opening, the lock and the schema check are in journal_open.c.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"

#define REPLAY_CHUNK 8192 /* events per read transaction in a replay */
#define KEY_MAX      (1 + ACTOR_JOURNAL_ID_MAX + 8)
#define SNAP_HEADER  8 /* the seq in front of a snapshot's bytes */

/* The state of one batch's write transaction. */
struct batch_txn {
    MDB_txn *txn;
    MDB_cursor *cur; /* on "events" */
};

/* ---- Helpers ---------------------------------------------------------------------------------
 */

void journal__log(struct actor_journal *j, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (j->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    j->log(level, msg, j->log_data);
}

static void be64_put(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t be64_get(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Our code for an LMDB result: corruption and format errors apart, errno passed through. */
int journal__mdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_MAP_FULL:
        return ACTOR_EMAPFULL;
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INCOMPATIBLE:
        return ACTOR_ECORRUPT;
    default:
        return rc > 0 ? -rc : ACTOR_EJOURNAL;
    }
}

int journal__id_check(const char *id, size_t *len)
{
    size_t n;

    if (id == NULL)
        return ACTOR_EINVAL;
    n = strlen(id);
    if (n == 0 || n > ACTOR_JOURNAL_ID_MAX)
        return ACTOR_EINVAL;
    *len = n;
    return 0;
}

/* Write the key of @id's event @seq into @key; returns its length. */
static size_t key_make(unsigned char *key, const char *id, size_t idlen, uint64_t seq)
{
    key[0] = (unsigned char)idlen;
    memcpy(key + 1, id, idlen);
    be64_put(key + 1 + idlen, seq);
    return 1 + idlen + 8;
}

/* Whether @k is an event key of the id that @prefix (idlen | id) starts. */
static int key_of(const MDB_val *k, const unsigned char *prefix, size_t idlen)
{
    return k->mv_size == 1 + idlen + 8 && memcmp(k->mv_data, prefix, 1 + idlen) == 0;
}

static uint64_t key_seq(const MDB_val *k)
{
    return be64_get((const unsigned char *)k->mv_data + k->mv_size - 8);
}

struct journal_req *journal__req_new(enum journal_op op, const char *id, size_t idlen, uint64_t seq,
                                     const void *data, size_t len)
{
    size_t keylen = 1 + idlen + 8;
    struct journal_req *req = malloc(sizeof(*req) + keylen + len);

    if (req == NULL)
        return NULL;
    memset(req, 0, sizeof(*req));
    req->magic = JOURNAL_REQ_MAGIC;
    req->op = op;
    req->seq = seq;
    req->idlen = idlen;
    req->len = len;
    req->key = (unsigned char *)(req + 1);
    req->data = req->key + keylen;
    key_make(req->key, id, idlen, seq);
    if (len > 0)
        memcpy(req->data, data, len);
    return req;
}

/* ---- Reads -----------------------------------------------------------------------------------
 */

static int read_begin(struct actor_journal *j, MDB_txn **txn)
{
    int rc;

    pthread_rwlock_rdlock(&j->resize);
    rc = mdb_txn_begin(j->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&j->resize);
        journal__log(j, 1, "journal: %s: read: %s", j->dir, mdb_strerror(rc));
    }
    return journal__mdb_err(rc);
}

static void read_end(struct actor_journal *j, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&j->resize);
}

/* The seq of the id's snapshot in @txn, 0 for none. */
static int snap_seq_in(struct actor_journal *j, MDB_txn *txn, const unsigned char *prefix,
                       size_t idlen, uint64_t *seq)
{
    MDB_val k = {1 + idlen, (void *)prefix}, v;
    int rc = mdb_get(txn, j->snaps, &k, &v);

    *seq = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (v.mv_size < SNAP_HEADER)
        return MDB_CORRUPTED;
    *seq = be64_get(v.mv_data);
    return 0;
}

/*
 * The highest seq of the id that @prefix starts, in @txn through @cur: its last event or its
 * snapshot, whichever is later. Returns an LMDB code.
 */
static int highest_in(struct actor_journal *j, MDB_txn *txn, MDB_cursor *cur,
                      const unsigned char *prefix, size_t idlen, uint64_t *out)
{
    unsigned char key[KEY_MAX];
    MDB_val k = {1 + idlen + 8, key}, v;
    uint64_t last = 0, snap;
    int rc;

    memcpy(key, prefix, 1 + idlen);
    be64_put(key + 1 + idlen, UINT64_MAX); /* never a stored seq: the first key past the id */
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && key_of(&k, prefix, idlen))
        last = key_seq(&k);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    rc = snap_seq_in(j, txn, prefix, idlen, &snap);
    if (rc == 0)
        *out = last > snap ? last : snap;
    return rc;
}

int actor_journal_highest(struct actor_journal *j, const char *id, uint64_t *seq)
{
    unsigned char prefix[KEY_MAX];
    MDB_txn *txn;
    MDB_cursor *cur;
    size_t idlen;
    int rc;

    if (j == NULL || seq == NULL || journal__id_check(id, &idlen) != 0)
        return ACTOR_EINVAL;
    key_make(prefix, id, idlen, 0);
    rc = read_begin(j, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(txn, j->events, &cur);
    if (rc == 0) {
        rc = highest_in(j, txn, cur, prefix, idlen, seq);
        mdb_cursor_close(cur);
    }
    read_end(j, txn);
    return journal__mdb_err(rc);
}

int actor_journal_snapshot_load(struct actor_journal *j, const char *id, uint64_t *seq, void **data,
                                size_t *len)
{
    unsigned char prefix[KEY_MAX];
    MDB_val k, v;
    MDB_txn *txn;
    void *copy = NULL;
    size_t idlen, n = 0;
    int rc;

    if (j == NULL || seq == NULL || data == NULL || len == NULL ||
        journal__id_check(id, &idlen) != 0)
        return ACTOR_EINVAL;
    k = (MDB_val){1 + idlen, prefix};
    key_make(prefix, id, idlen, 0);
    rc = read_begin(j, &txn);
    if (rc != 0)
        return rc;
    rc = mdb_get(txn, j->snaps, &k, &v);
    if (rc == 0 && v.mv_size < SNAP_HEADER)
        rc = MDB_CORRUPTED;
    if (rc == 0) {
        n = v.mv_size - SNAP_HEADER;
        copy = malloc(n > 0 ? n : 1);
        if (copy == NULL) {
            read_end(j, txn);
            return ACTOR_ENOMEM;
        }
        memcpy(copy, (unsigned char *)v.mv_data + SNAP_HEADER, n);
        *seq = be64_get(v.mv_data);
    } else if (rc == MDB_NOTFOUND) {
        *seq = 0;
        rc = 0;
    }
    read_end(j, txn);
    if (rc == 0) {
        *data = copy;
        *len = n;
    }
    return journal__mdb_err(rc);
}

/*
 * Walk the events of the id that @prefix starts from *from on, at most REPLAY_CHUNK of them,
 * in one read transaction. Sets *from past the last one seen, *more when the chunk filled,
 * *stop to the callback's non-zero return. Returns an LMDB code.
 */
static int replay_chunk(struct actor_journal *j, MDB_txn *txn, unsigned char *prefix, size_t idlen,
                        uint64_t *from, actor_journal_event_cb cb, void *user_data, int *more,
                        int *stop)
{
    MDB_val k = {1 + idlen + 8, prefix}, v;
    MDB_cursor *cur;
    int n = 0, rc;

    be64_put(prefix + 1 + idlen, *from);
    rc = mdb_cursor_open(txn, j->events, &cur);
    if (rc != 0)
        return rc;
    *more = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && key_of(&k, prefix, idlen)) {
        uint64_t seq = key_seq(&k);

        *stop = cb(seq, v.mv_data, v.mv_size, user_data);
        *from = seq + 1;
        if (*stop != 0)
            break;
        if (++n == REPLAY_CHUNK) {
            *more = 1;
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int actor_journal_replay(struct actor_journal *j, const char *id, uint64_t from,
                         actor_journal_event_cb cb, void *user_data)
{
    unsigned char prefix[KEY_MAX];
    size_t idlen;
    int more = 1, stop = 0, rc = 0;

    if (j == NULL || cb == NULL || journal__id_check(id, &idlen) != 0)
        return ACTOR_EINVAL;
    key_make(prefix, id, idlen, 0);
    if (from == 0)
        from = 1;
    /* Chunks, so that a long replay never holds the map's growth up for long. */
    while (more && stop == 0 && rc == 0) {
        MDB_txn *txn;

        rc = read_begin(j, &txn);
        if (rc != 0)
            return rc;
        rc = journal__mdb_err(
            replay_chunk(j, txn, prefix, idlen, &from, cb, user_data, &more, &stop));
        read_end(j, txn);
    }
    return stop != 0 ? stop : rc;
}

/* ---- The writer ------------------------------------------------------------------------------
 */

static int append_in(struct actor_journal *j, struct batch_txn *b, struct journal_req *req)
{
    MDB_val k = {1 + req->idlen + 8, req->key}, v = {req->len, req->data};
    uint64_t highest;
    int rc;

    rc = highest_in(j, b->txn, b->cur, req->key, req->idlen, &highest);
    if (rc != 0)
        return rc;
    if (req->seq != highest + 1) {
        req->err = ACTOR_ESEQ;
        return 0;
    }
    rc = mdb_put(b->txn, j->events, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        req->err = ACTOR_ESEQ;
        return 0;
    }
    return rc;
}

static int snapshot_in(struct actor_journal *j, struct batch_txn *b, struct journal_req *req)
{
    MDB_val k = {1 + req->idlen, req->key}, v = {SNAP_HEADER + req->len, NULL};
    uint64_t old;
    int rc;

    rc = snap_seq_in(j, b->txn, req->key, req->idlen, &old);
    if (rc != 0)
        return rc;
    if (old > req->seq) {
        req->err = ACTOR_ESEQ;
        return 0;
    }
    rc = mdb_put(b->txn, j->snaps, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return rc;
    be64_put(v.mv_data, req->seq);
    if (req->len > 0)
        memcpy((unsigned char *)v.mv_data + SNAP_HEADER, req->data, req->len);
    return 0;
}

static int delete_in(struct actor_journal *j, struct batch_txn *b, struct journal_req *req)
{
    unsigned char key[KEY_MAX];
    MDB_val k = {key_make(key, (char *)req->key + 1, req->idlen, 1), key}, v;
    uint64_t snap;
    int rc;

    rc = snap_seq_in(j, b->txn, req->key, req->idlen, &snap);
    if (rc != 0)
        return rc;
    if (req->seq > snap) {
        req->err = ACTOR_EINVAL; /* the state would no longer be recoverable */
        return 0;
    }
    /* Seek afresh after each deletion: where LMDB leaves a cursor after one is subtle. */
    for (;;) {
        k = (MDB_val){1 + req->idlen + 8, key};
        rc = mdb_cursor_get(b->cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || !key_of(&k, req->key, req->idlen) || key_seq(&k) > req->seq)
            break;
        rc = mdb_cursor_del(b->cur, 0);
        if (rc != 0)
            break;
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Write @batch in one transaction. A request's own refusal goes in its err; a failure of
 * the transaction (map full, I/O) is returned as an LMDB code, and nothing is written.
 */
static int batch_try(struct actor_journal *j, struct journal_req *batch)
{
    struct batch_txn b;
    int rc;

    rc = mdb_txn_begin(j->env, NULL, 0, &b.txn);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_open(b.txn, j->events, &b.cur);
    for (struct journal_req *r = batch; r != NULL && rc == 0; r = r->next) {
        r->err = 0;
        if (r->op == JOP_APPEND)
            rc = append_in(j, &b, r);
        else if (r->op == JOP_SNAPSHOT)
            rc = snapshot_in(j, &b, r);
        else
            rc = delete_in(j, &b, r);
    }
    if (rc != 0) {
        mdb_txn_abort(b.txn);
        return rc;
    }
    mdb_cursor_close(b.cur);
    /* In sync mode LMDB's commit syncs the data and the meta page before it returns. */
    return mdb_txn_commit(b.txn);
}

/* Double the map, up to map_max. 0, or ACTOR_EMAPFULL when it is at its maximum already. */
static int map_grow(struct actor_journal *j)
{
    size_t size = j->stats.map_size, next;
    int rc;

    if (size >= j->map_max)
        return ACTOR_EMAPFULL;
    next = size > j->map_max / 2 ? j->map_max : size * 2;
    pthread_rwlock_wrlock(&j->resize);
    rc = mdb_env_set_mapsize(j->env, next);
    pthread_rwlock_unlock(&j->resize);
    if (rc != 0)
        return journal__mdb_err(rc);
    pthread_mutex_lock(&j->lock);
    j->stats.map_size = next;
    j->stats.map_grows++;
    pthread_mutex_unlock(&j->lock);
    journal__log(j, 2, "journal: %s: map grown to %zu MiB", j->dir, next >> 20);
    return 0;
}

/* Write @batch, growing the map as needed. Returns an LMDB code, or ACTOR_EMAPFULL. */
static int batch_write_grow(struct actor_journal *j, struct journal_req *batch)
{
    for (;;) {
        int rc = batch_try(j, batch);

        if (rc != MDB_MAP_FULL)
            return rc;
        if (map_grow(j) != 0)
            return ACTOR_EMAPFULL;
    }
}

static void batch_fail(struct actor_journal *j, struct journal_req *batch, int rc, int quiet)
{
    int err = rc == ACTOR_EMAPFULL ? rc : journal__mdb_err(rc);

    if (!quiet)
        journal__log(j, 1, "journal: %s/%s: write failed: %s", j->dir, DATA_FILE,
                     rc == ACTOR_EMAPFULL ? actor_strerror(err) : mdb_strerror(rc));
    for (struct journal_req *r = batch; r != NULL; r = r->next)
        r->err = err;
}

/*
 * Write @batch in one transaction. When that fails as a whole (a full map or disk), write
 * its requests one by one instead, so that those that still fit are written and only the
 * others fail.
 */
static void batch_write(struct actor_journal *j, struct journal_req *batch)
{
    int rc = batch_write_grow(j, batch);
    int failures = 0;

    if (rc == 0)
        return;
    if (batch->next == NULL) {
        batch_fail(j, batch, rc, 0);
        return;
    }
    for (struct journal_req *r = batch, *next; r != NULL; r = next) {
        next = r->next;
        r->next = NULL;
        rc = batch_write_grow(j, r);
        if (rc != 0)
            batch_fail(j, r, rc, failures++ > 0); /* one line per batch is enough */
        r->next = next;
    }
}

/* Take up to max_batch requests off the queue (locked). Returns the batch and its size. */
static struct journal_req *batch_take(struct actor_journal *j, uint64_t *n)
{
    struct journal_req *batch = j->head, *last = j->head;

    *n = 1;
    while (last->next != NULL && *n < j->max_batch) {
        last = last->next;
        (*n)++;
    }
    j->head = last->next;
    if (j->head == NULL)
        j->tail = NULL;
    last->next = NULL;
    return batch;
}

void *journal__writer_main(void *arg)
{
    struct actor_journal *j = arg;

    for (;;) {
        struct journal_req *batch, *next;
        uint64_t n, appended = 0, failed = 0;

        pthread_mutex_lock(&j->lock);
        while (j->head == NULL && !j->stopping)
            pthread_cond_wait(&j->work, &j->lock);
        if (j->head == NULL) {
            pthread_mutex_unlock(&j->lock);
            return NULL;
        }
        batch = batch_take(j, &n);
        pthread_mutex_unlock(&j->lock);
        batch_write(j, batch);
        for (struct journal_req *r = batch; r != NULL; r = next) {
            next = r->next;
            appended += r->err == 0 && r->op == JOP_APPEND;
            failed += r->err != 0;
            r->next = NULL;
            r->done(r);
        }
        pthread_mutex_lock(&j->lock);
        j->done += n;
        j->stats.appended += appended;
        j->stats.failed += failed;
        j->stats.batches++;
        pthread_cond_broadcast(&j->written);
        pthread_mutex_unlock(&j->lock);
    }
}

int journal__submit(struct actor_journal *j, struct journal_req *req)
{
    pthread_mutex_lock(&j->lock);
    if (j->stopping) {
        pthread_mutex_unlock(&j->lock);
        return ACTOR_ESTOPPED;
    }
    req->next = NULL;
    if (j->tail != NULL)
        j->tail->next = req;
    else
        j->head = req;
    j->tail = req;
    j->queued++;
    /* The writer sleeps only on an empty queue: the first request is the one to wake it. */
    if (j->head == req)
        pthread_cond_signal(&j->work);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

int actor_journal_flush(struct actor_journal *j)
{
    uint64_t target;

    if (j == NULL)
        return ACTOR_EINVAL;
    pthread_mutex_lock(&j->lock);
    target = j->queued;
    while (j->done < target)
        pthread_cond_wait(&j->written, &j->lock);
    pthread_mutex_unlock(&j->lock);
    return 0;
}

void actor_journal_stats(struct actor_journal *j, struct actor_journal_stats *out)
{
    pthread_mutex_lock(&j->lock);
    *out = j->stats;
    pthread_mutex_unlock(&j->lock);
}

/* ---- Public requests -------------------------------------------------------------------------
 */

static void public_done(struct journal_req *req)
{
    if (req->cb != NULL)
        req->cb(req->err, req->seq, req->cb_data);
    free(req);
}

static int public_submit(struct actor_journal *j, enum journal_op op, const char *id, uint64_t seq,
                         const void *data, size_t len, actor_journal_done_cb cb, void *user_data)
{
    struct journal_req *req;
    size_t idlen;
    int rc;

    if (j == NULL || journal__id_check(id, &idlen) != 0 || len > ACTOR_JOURNAL_EVENT_MAX ||
        (data == NULL && len > 0))
        return ACTOR_EINVAL;
    if (op == JOP_APPEND && (seq == 0 || seq == UINT64_MAX))
        return ACTOR_EINVAL;
    req = journal__req_new(op, id, idlen, seq, data, len);
    if (req == NULL)
        return ACTOR_ENOMEM;
    req->done = public_done;
    req->cb = cb;
    req->cb_data = user_data;
    rc = journal__submit(j, req);
    if (rc != 0)
        free(req);
    return rc;
}

int actor_journal_append(struct actor_journal *j, const char *id, uint64_t seq, const void *data,
                         size_t len, actor_journal_done_cb cb, void *user_data)
{
    return public_submit(j, JOP_APPEND, id, seq, data, len, cb, user_data);
}

int actor_journal_snapshot_save(struct actor_journal *j, const char *id, uint64_t seq,
                                const void *data, size_t len, actor_journal_done_cb cb,
                                void *user_data)
{
    return public_submit(j, JOP_SNAPSHOT, id, seq, data, len, cb, user_data);
}

int actor_journal_delete_to(struct actor_journal *j, const char *id, uint64_t seq,
                            actor_journal_done_cb cb, void *user_data)
{
    return public_submit(j, JOP_DELETE, id, seq, NULL, 0, cb, user_data);
}

/* ---- Claims: one live durable actor per persistence id --------------------------------------
 */

int journal__claim(struct actor_journal *j, const char *id)
{
    struct claim *c;
    size_t len = strlen(id);

    pthread_mutex_lock(&j->lock);
    for (c = j->claims; c != NULL; c = c->next) {
        if (strcmp(c->id, id) == 0) {
            pthread_mutex_unlock(&j->lock);
            return ACTOR_ENAMETAKEN;
        }
    }
    c = malloc(sizeof(*c) + len + 1);
    if (c != NULL) {
        memcpy(c->id, id, len + 1);
        c->next = j->claims;
        j->claims = c;
    }
    pthread_mutex_unlock(&j->lock);
    return c != NULL ? 0 : ACTOR_ENOMEM;
}

void journal__release(struct actor_journal *j, const char *id)
{
    pthread_mutex_lock(&j->lock);
    for (struct claim **p = &j->claims; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->id, id) == 0) {
            struct claim *c = *p;

            *p = c->next;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&j->lock);
}
