/*
 * journal.h: what journal.c (the LMDB store and its writer thread) shares with durable.c (the
 * durable actors built on it).
 *
 * A request travels:
 *
 *   caller --journal__submit--> [queue] --writer: one txn per batch, one sync--> done(req)
 *
 * done() runs on the writer thread and owns the request from then on: a durable actor's
 * done() sends it back to the actor as its acknowledgement, so one allocation carries an
 * event from the persist to the continuation.
 */
#ifndef ACTOR_JOURNAL_H
#define ACTOR_JOURNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "actor.h"

#define DATA_FILE "data.mdb" /* LMDB's data file in the journal's directory */

#define JOURNAL_REQ_MAGIC 0x6a726e6c72657175ull /* "jrnlrequ": marks an acknowledgement */

enum journal_op {
    JOP_APPEND,   /* put event seq of the id; refused unless it is the next one */
    JOP_SNAPSHOT, /* put the id's snapshot as of seq */
    JOP_DELETE,   /* delete the id's events up to seq (at most its snapshot's) */
};

struct claim {
    struct claim *next;
    char id[];
};

struct actor_journal {
    char *dir;
    unsigned flags; /* ACTOR_JOURNAL_* */
    unsigned max_batch;
    size_t map_max;
    actor_log_cb log;
    void *log_data;
    MDB_env *env;
    MDB_dbi events, snaps, meta;
    int lock_fd;
    pthread_rwlock_t resize; /* readers shared, map growth exclusive */
    pthread_mutex_t lock;    /* the fields below */
    pthread_cond_t work;     /* the queue has requests, or stopping */
    pthread_cond_t written;  /* written advanced */
    struct journal_req *head, *tail;
    uint64_t queued;  /* requests ever queued */
    uint64_t done;    /* requests written and called back */
    int stopping;     /* no new requests; the writer drains the queue and ends */
    int writer_alive; /* the writer thread exists */
    pthread_t writer;
    struct claim *claims;
    struct actor_journal_stats stats;
};

struct journal_req;
typedef void (*journal_done_fn)(struct journal_req *req);

struct journal_req {
    struct journal_req *next; /* the queue's and the batch's link */
    uint64_t magic;           /* JOURNAL_REQ_MAGIC */
    enum journal_op op;
    int err; /* the outcome, set by the writer before done() */
    uint64_t seq;
    journal_done_fn done; /* writer thread; takes the request */
    /* Whoever queued the request: the public callback, or the durable actor's fields. */
    actor_journal_done_cb cb;
    actor_durable_done_cb dcb;
    void *cb_data;
    void *owner;              /* the durable actor it goes back to */
    struct actor_system *sys; /* ... in this system */
    struct dist_pid to;       /* ... at this PID */
    unsigned flags;           /* durable.c's REQ_* bits */
    size_t idlen;             /* the key's id part: key[0] = idlen, then the id */
    size_t len;               /* bytes of data */
    unsigned char *key;       /* idlen + id + big-endian seq, inside this allocation */
    unsigned char *data;      /* inside this allocation */
};

/*
 * Allocate a request for @op on @id (already checked) with @len bytes of @data copied (data
 * may be NULL with len 0). NULL when out of memory. Free with free().
 */
struct journal_req *journal__req_new(enum journal_op op, const char *id, size_t idlen, uint64_t seq,
                                     const void *data, size_t len);

/* Queue @req. 0, or ACTOR_ESTOPPED when the journal is closing (the caller keeps @req). */
int journal__submit(struct actor_journal *j, struct journal_req *req);

/* Check a persistence id: 0 with *len set, or ACTOR_EINVAL. */
int journal__id_check(const char *id, size_t *len);

/*
 * Claim @id for one live durable actor: 0, or ACTOR_ENAMETAKEN when another holds it.
 * journal__release gives it back.
 */
int journal__claim(struct actor_journal *j, const char *id);
void journal__release(struct actor_journal *j, const char *id);

/* The writer thread's body (journal.c), started by actor_journal_open (journal_open.c). */
void *journal__writer_main(void *arg);

/* Our code for an LMDB result: corruption and format errors apart, errno passed through. */
int journal__mdb_err(int rc);

/* Log through the journal's log callback. */
void journal__log(struct actor_journal *j, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* ACTOR_JOURNAL_H */
