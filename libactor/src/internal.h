/*
 * internal.h: libactor's struct bodies and the functions its files share.
 *
 * The model, in brief:
 *
 *   sender --push--> [actor mailbox: lock-free MPSC] --(first message: IDLE->SCHEDULED)--+
 *                                                                                         |
 *   scheduler thread: local FIFO of ready actors <-- inbox (MPSC, from other threads) <---+
 *        runs each ready actor for up to ACTOR_BATCH messages, then the next one
 *
 * Every interaction between actors is an envelope in the target's mailbox: user messages and
 * signals alike (link, exit, monitor, down...). An actor's own state is touched only by its
 * home scheduler's thread, so it needs no lock. A sender reaches the target through the
 * process table: actors live in type-stable slots (never freed while the system lives), and
 * each slot has a gate word (generation | closed | senders in flight) that a sender enters
 * with one CAS, so a dying actor can wait out the senders already inside before it recycles
 * its slot.
 *
 * A PID of another node (node != 0) takes one branch in actor__deliver() to remote.c, which
 * packs the envelope into an out_item for the distribution's I/O thread (remote_in.c).
 */
#ifndef ACTOR_INTERNAL_H
#define ACTOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ev.h>

#include "actor.h"

#define ACTOR_BATCH    64 /* messages an actor handles before the next one runs */
#define CHUNK_BITS     12 /* actors per table chunk: 4096 */
#define CHUNK_SIZE     (1u << CHUNK_BITS)
#define MAX_CHUNKS     (1u << 16)
#define MAX_SCHEDULERS 64
#define EV_POLL_EVERY  256 /* dispatches between non-blocking timer/IO polls */

/* ---- Lock-free MPSC queue (Vyukov): many pushers, one popper ------------------------------ */

struct mpsc_node {
    _Atomic(struct mpsc_node *) next;
};

struct mpsc {
    struct mpsc_node *head;           /* popper's end */
    _Atomic(struct mpsc_node *) tail; /* pushers' end */
    struct mpsc_node sentinel;
};

void actor__mpsc_init(struct mpsc *q);

/*
 * Messages waiting in @a's mailbox: pushed - popped, exact for the owner, a snapshot else. Read
 * from another thread, popped can be newer than pushed (a push and its pop between the two
 * loads): the difference is taken as signed and floored at 0, not wrapped to 4 billion.
 */
static inline uint32_t actor__depth(_Atomic uint32_t *pushed, _Atomic uint32_t *popped)
{
    int32_t d = (int32_t)(atomic_load_explicit(pushed, memory_order_relaxed) -
                          atomic_load_explicit(popped, memory_order_relaxed));

    return d < 0 ? 0 : (uint32_t)d;
}
#define ACTOR_DEPTH(a) actor__depth(&(a)->pushed, &(a)->popped)
void actor__mpsc_push(struct mpsc *q, struct mpsc_node *n);
/* NULL when empty, or when a push is half done (the caller retries later). */
struct mpsc_node *actor__mpsc_pop(struct mpsc *q);
int actor__mpsc_maybe_nonempty(struct mpsc *q);

/* ---- Envelopes ------------------------------------------------------------------------------- */

enum env_kind {
    ENV_USER,
    ENV_CALL,
    ENV_REPLY,
    ENV_EXIT,      /* an exit signal (actor_exit_signal): from, reason */
    ENV_LINK_EXIT, /* a linked actor ended (or was never there): from, reason */
    ENV_LINK,
    ENV_UNLINK,
    ENV_MONITOR,      /* from monitors us with ref */
    ENV_DEMONITOR,    /* ref */
    ENV_DOWN,         /* ref, from ended with reason */
    ENV_TIMER,        /* tag timer fired: ref = timer id, tag */
    ENV_CALL_TIMEOUT, /* ref = call ref */
    ENV_NOOP,         /* a flushed DOWN: skipped */
    ENV_SPAWN_REPLY,  /* a remote spawn's outcome: ref = request, reason = error, from = pid */
    ENV_NODE,         /* a node event: ref = node index, reason = down reason, tag = 1 if up */
};

#define ENV_INLINE (1u << 0) /* the payload is data[], a copy made by actor_send_copy */

struct scheduler;

/*
 * 128 bytes. The first 64 hold all a plain message needs; ref and tag
 * (set only for the kinds that use them) and an inline payload are on the second, so an empty
 * message touches one line.
 */
struct envelope {
    struct mpsc_node node;  /* first: the mailbox links envelopes through it */
    struct scheduler *home; /* where it goes back when freed; NULL: malloc()ed outside one */
    uint8_t kind;
    uint8_t flags; /* ENV_INLINE */
    int reason;
    struct dist_pid from;
    const struct actor_type *type;
    void *payload;
    size_t size;
    uint64_t ref; /* a call, monitor or timer id: only for kinds that carry one */
    uint64_t tag; /* a timer's tag: only ENV_TIMER */
    _Alignas(8) unsigned char data[ACTOR_INLINE_MAX];
};

/* ---- Actors ---------------------------------------------------------------------------------- */

/* gate word: generation in the high 32 bits, GATE_CLOSED, senders in flight below. */
#define GATE_CLOSED  (1ull << 31)
#define GATE_SENDERS (GATE_CLOSED - 1)

/* exit_pending: set with the reason in the low 32 bits */
#define EXIT_PENDING (1ull << 32)

#define AF_TRAP_EXIT (1u << 0) /* exit signals become messages */
#define AF_NEED_INIT (1u << 1) /* init has not run yet */
#define AF_EXITING   (1u << 2) /* actor_exit() was called, or a signal killed it */
#define AF_PROXY     (1u << 3) /* stands in for a thread in actor_call_wait() */
#define AF_LIVE      (1u << 4) /* spawned and not yet dead (for listing) */

enum { RUN_IDLE = 0, RUN_QUEUED = 1 };

struct actor_ext; /* links, monitors, timers, calls: allocated on first use */

struct actor {
    struct mpsc mailbox;
    struct mpsc_node rq; /* link in a scheduler's ready queue or inbox */
    _Atomic uint64_t gate;
    _Atomic uint32_t sched;        /* RUN_* */
    _Atomic uint32_t pushed;       /* envelopes ever pushed (senders add, atomically) */
    _Atomic uint32_t popped;       /* envelopes taken (the owner alone writes it) */
    _Atomic uint32_t running;      /* in a callback now, for introspection */
    _Atomic uint64_t exit_pending; /* EXIT_PENDING | reason: an exit signal jumping the queue */
    uint32_t slot;
    uint32_t flags; /* AF_*, owned by the home thread */
    uint32_t mailbox_max;
    uint32_t root; /* spawned from outside any actor: shutdown signals it first */
    int exit_reason;
    _Atomic(struct scheduler *) home; /* changed only by the current home's thread */
    const struct actor_behaviour *behaviour;
    void *state;
    void *arg;
    _Atomic uint64_t handled;
    const char *name; /* registered name; guarded by the name table's lock */
    struct actor_ext *ext;
    struct actor *free_next; /* in a free list, while the slot is unused */
};

struct link_set {
    struct dist_pid *pids;
    size_t n, cap;
};

struct mon {
    uint64_t ref;
    struct dist_pid pid;
};

struct mon_set {
    struct mon *v;
    size_t n, cap;
};

struct timer;
struct pending_call;

struct actor_ext {
    struct link_set links;
    struct mon_set monitoring;   /* monitors this actor holds: ref -> target */
    struct mon_set monitored_by; /* monitors on this actor: ref -> watcher */
    struct timer *timers;
    struct pending_call *calls;
    /* proxies only: the waiting thread */
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
};

/* ---- Schedulers and the system ------------------------------------------------------------ */

/* Envelopes freed on one scheduler that belong to another, handed over in batches. */
struct env_batch {
    struct envelope *first, *last;
    unsigned n;
};

/*
 * A scheduler. Fields other threads touch (inbox, sleeping, idle) and fields only its own
 * thread writes on every message sit on separate cache lines, so a busy scheduler's
 * bookkeeping does not stall every thread that hands it work.
 */
struct scheduler {
    /* read-mostly */
    struct actor_system *sys;
    unsigned index;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;
    /* shared with other threads */
    _Alignas(64) struct mpsc inbox; /* actors made ready by other threads */
    _Atomic int sleeping;
    _Atomic int idle; /* spinning or asleep: ready to take actors handed over */
    _Atomic(struct envelope *) env_returned; /* this thread's envelopes, freed elsewhere */
    /* this thread's own */
    _Alignas(64) struct mpsc_node *ready_head, *ready_tail; /* local FIFO of ready actors */
    unsigned ready_len;
    unsigned dispatches;
    unsigned run_sends;         /* sends by the running actor in this run */
    int64_t busy_since;         /* when the FIFO was last empty; 0 while it is */
    int64_t next_poll;          /* when a spinning scheduler next polls its loop */
    int64_t idle_since;         /* when it last ran dry; 0 while it has work */
    ev_timer trim_timer;        /* gives cached envelopes back after TRIM_AFTER_S idle */
    struct actor *free_slots;   /* slots this thread may reuse without a lock */
    struct envelope *env_cache; /* recycled envelopes, linked through their payload */
    unsigned env_cached;
    struct env_batch env_out[MAX_SCHEDULERS]; /* freed here, going home to scheduler [i] */
    _Atomic uint64_t delivered;               /* written by this thread, read by stats */
    _Atomic uint64_t spawned;
    _Atomic uint64_t exited;
};

struct name_entry;
struct actor_remote;
struct spawnable;

struct actor_system {
    struct actor_system_opts opts;
    unsigned nsched;
    struct scheduler *scheds;
    _Atomic int running;
    _Atomic int stopping;
    _Atomic(struct actor *) chunks[MAX_CHUNKS];
    _Atomic uint32_t nchunks;
    pthread_mutex_t table_lock; /* chunk growth and the shared free list */
    struct actor *free_slots;   /* for threads that are not schedulers */
    _Atomic uint64_t next_ref;
    _Atomic uint64_t outside_spawned, outside_exited, restarts;
    pthread_mutex_t names_lock;
    struct name_entry **names;
    size_t names_mask, names_count;
    struct actor_remote *remote; /* the distribution (remote.c), NULL until actor_dist_start */
    pthread_mutex_t spawn_lock;  /* guards spawnables */
    struct spawnable *spawnables;
};

/* The scheduler and actor the calling thread is running, or NULL. */
/*
 * The initial-exec TLS model reads these with one %fs-relative load instead of a call to
 * __tls_get_addr, on every send. It holds for a library linked at start-up (or dlopen()ed
 * while glibc's spare static TLS lasts, which two pointers do not exhaust).
 */
#define ACTOR_TLS __attribute__((tls_model("initial-exec")))
extern _Thread_local struct scheduler *actor__tls_sched ACTOR_TLS;
extern _Thread_local struct actor *actor__tls_actor ACTOR_TLS;

/* actor.c */
struct actor *actor__lookup(struct actor_system *sys, struct dist_pid pid);
int actor__deliver(struct actor_system *sys, struct dist_pid to, struct envelope *env, int bounded);
/* Post @payload as an envelope of @kind; on failure the payload stays the caller's. */
int actor__post(struct actor_system *sys, struct dist_pid to, enum env_kind kind,
                struct dist_pid from, uint64_t ref, const struct actor_type *type, void *payload,
                size_t size, int bounded);
int actor__signal(struct actor_system *sys, struct dist_pid to, enum env_kind kind,
                  struct dist_pid from, int reason, uint64_t ref);
/* actor_exit_signal() with an explicit sender. */
int actor__exit_signal(struct actor_system *sys, struct dist_pid to, struct dist_pid from,
                       int reason);
/* envelope.c */
struct envelope *actor__env_new(struct actor_system *sys, enum env_kind kind, struct dist_pid from);
void actor__env_free(struct envelope *env);
/* Give a scheduler's cached envelopes past ENV_CACHE_KEEP back to malloc. */
#define ENV_CACHE_KEEP 4096
void actor__env_trim(struct scheduler *s);
/* Hand the envelopes gathered for other schedulers back to them (before idling). */
void actor__env_flush(struct scheduler *s);
/* Free every envelope @s holds: its cache, its returned stack, its batches (system free). */
void actor__env_release_all(struct scheduler *s);
struct dist_pid actor__current_pid(struct actor_system *sys);
void actor__run(struct scheduler *s, struct actor *a);
void actor__msg_init(struct actor_msg *msg, enum actor_msg_kind kind, const struct envelope *env);
struct dist_pid actor__pid(struct actor_system *sys, const struct actor *a);
struct actor_ext *actor__ext(struct actor *a);
struct actor *actor__slot_alloc(struct actor_system *sys);
void actor__slot_release(struct actor_system *sys, struct actor *a);
uint64_t actor__ref_new(struct actor_system *sys);
void actor__mon_add(struct mon_set *set, uint64_t ref, struct dist_pid pid);
void actor__links_add(struct link_set *l, struct dist_pid pid);
int actor__links_remove(struct link_set *l, struct dist_pid pid);
int actor__mon_take(struct mon_set *set, uint64_t ref, struct dist_pid *pid);
/* Take the entry with both @ref and @pid: refs from different nodes may be equal. */
int actor__mon_take_pid(struct mon_set *set, uint64_t ref, struct dist_pid pid);

/* system.c */
void actor__schedule(struct actor *a);
/* Called from the send path every HOG_SENDS sends of one actor's run. */
#define HOG_SENDS 1024
void actor__share_hog(struct scheduler *s);
void actor__log(struct actor_system *sys, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* names.c */
void actor__names_release(struct actor_system *sys, struct actor *a);
int actor__names_insert(struct actor_system *sys, const char *name, struct actor *a,
                        struct dist_pid pid);
void actor__names_free(struct actor_system *sys);

/* timer.c */
void actor__timers_cancel_all(struct actor *a);
int actor__timer_fired(struct actor *a, uint64_t id);

/* call.c */
int actor__call_reply(struct actor *a, struct envelope *env);
/* A call settled by @err (its continuation's result in *rc); 0 if @ref is no pending call. */
int actor__call_failed(struct actor *a, uint64_t ref, int err, int *rc);
void actor__calls_drop(struct actor *a);
void actor__proxy_wake(struct actor *a);

/* call.c: a remote spawn's outcome (they wait among the calls) */
int actor__spawn_reply(struct actor *a, struct envelope *env);

/* ---- The distribution (remote.c, remote_in.c) ----------------------------------------------- */

#define NODES_MAX 65536u /* node names a system knows: as many as libdist's table holds */

/*
 * A request from any thread to the I/O thread: a dist message (packed payload in data[]), or
 * OUT_WATCH_NODES. Strings (a name, a node, a spawnable) follow the payload in data[].
 */
#define OUT_WATCH_NODES 100

struct out_item {
    struct mpsc_node node;
    int kind; /* a DIST_MSG_* kind, or OUT_WATCH_NODES */
    int send_kind;
    int32_t reason;
    uint32_t flags;
    struct dist_pid from, to;
    uint64_t ref;
    const char *type;    /* a registered type's name (types are never freed) */
    const char *to_name; /* SEND by name; SPAWN_REQUEST: the spawnable */
    const char *to_node; /* a node by name, else to.node */
    size_t len;
    _Alignas(8) unsigned char data[];
};

/* What the I/O thread remembers per peer, to tell local actors when the peer goes down. */
enum bond_kind {
    BOND_LINK,  /* local and remote are linked */
    BOND_MON,   /* local monitors remote with ref */
    BOND_RMON,  /* remote monitors local with ref */
    BOND_SPAWN, /* local asked remote's node for a spawn: ref = request, flags */
};

struct bond {
    int kind;
    unsigned flags;
    struct dist_pid local, remote;
    uint64_t ref;
};

struct rpeer {
    struct actor_remote *r;
    uint32_t index;
    int up;           /* on_node_up seen, and no down since */
    ev_timer connect; /* armed while something waits for a node that is not up */
    struct bond *bonds;
    size_t n, cap;
};

struct unknown_type;

struct actor_remote {
    struct actor_system *sys;
    struct ev_loop *loop;
    struct dist_node *node;
    pthread_t thread;
    ev_async wake;
    struct mpsc out;          /* out_items, from any thread to the I/O thread */
    _Atomic int wake_pending; /* an ev_async_send is on its way: no need for another */
    _Atomic size_t out_bytes; /* payload bytes in out */
    _Atomic int running;      /* sends accepted, incoming delivered */
    _Atomic int stopping;     /* the I/O thread is to end */
    int joined;
    double connect_timeout;
    /*
     * Who runs the loop: the I/O thread, or an idle scheduler as its guest (io_lock held while
     * it runs). The I/O thread waits on io_cond while a guest polls, and takes the loop back
     * when the guest has not polled for a while.
     */
    pthread_mutex_t io_lock;
    pthread_cond_t io_cond;
    _Atomic int guest;            /* index + 1 of the scheduler polling the loop; 0: none */
    _Atomic int64_t guest_polled; /* when the guest last polled, in ns */
    /* the start: the I/O thread reports registration */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready, start_err;
    uint32_t creation;
    /* the I/O thread's own */
    struct rpeer **peers; /* by node index */
    uint32_t npeers;
    struct dist_pid *watchers; /* actors monitoring nodes */
    size_t nwatchers, capwatchers;
    struct unknown_type *unknown; /* type names already logged */
    unsigned nunknown;
    /* any thread */
    _Atomic(char *) *names; /* NODES_MAX node names by index, published by the I/O thread */
    _Atomic uint64_t sent, received, unknown_types, bad_payloads, undeliverable, dropped;
};

/* remote.c */
void actor__remote_log(struct actor_remote *r, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * An idle scheduler's turn at the I/O: it becomes the loop's guest if there is none (or in
 * place of one that has not polled for a while, busy with its actors), then
 * drains the outbound queue and polls the sockets without blocking, so that a reply is
 * delivered on the thread that runs its actor, with no thread woken on the way. Returns 1 when
 * it polled, 0 when the loop is another's. @now: now_ns().
 */
int actor__remote_guest_poll(struct actor_remote *r, struct scheduler *s, int64_t now);
/* Before a scheduler sleeps or ends: give the loop back to the I/O thread. */
void actor__remote_guest_leave(struct actor_remote *r, struct scheduler *s);
/* Make the name of node @index readable from any thread (I/O thread). */
void actor__remote_publish(struct actor_remote *r, int index);
/*
 * Hand everything queued so far to the node (the loop's thread, with io_lock held): before a
 * signal made on a local actor's behalf, such as noproc for one that is gone, so that it
 * follows what the actor sent while alive.
 */
void actor__remote_drain(struct actor_remote *r);
/* remote_in.c: the I/O thread's side */
void actor__remote_out(struct actor_remote *r, struct out_item *it);
void actor__remote_on_message(struct dist_node *node, const struct dist_msg *m,
                              const char *from_node, void *user_data);
void actor__remote_on_up(struct dist_node *node, const char *name, void *user_data);
void actor__remote_on_down(struct dist_node *node, const char *name, int reason, void *user_data);
void actor__remote_peers_free(struct actor_remote *r);

/* remote.c: the distribution */
/* Route @env to a remote PID: packed and queued for the I/O thread; on 0 @env is freed. */
int actor__remote_deliver(struct actor_system *sys, struct dist_pid to, struct envelope *env);
/* Queue a spawn request (arg packed here; taken on 0). */
int actor__remote_spawn(struct actor_system *sys, struct dist_pid from, const char *node,
                        const char *name, const struct actor_type *arg_type, void *arg, size_t size,
                        unsigned flags, uint64_t ref);
/* The name of node @index, or NULL. */
const char *actor__node_name(struct actor_system *sys, uint32_t index);
/* The spawnable @name: 0 with its behaviour and argument type, or ACTOR_ENOSPAWN. */
int actor__spawnable_find(struct actor_system *sys, const char *name,
                          const struct actor_behaviour **behaviour,
                          const struct actor_type **arg_type);
/* Stop and free the distribution and the spawnables (system free). */
void actor__remote_free(struct actor_system *sys);

/* supervisor.c */
void actor__stats_restart(struct actor_system *sys);

#endif /* ACTOR_INTERNAL_H */
