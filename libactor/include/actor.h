/*
 * actor.h: the public interface of libactor, an actor runtime with Erlang's semantics.
 *
 * An actor system runs a fixed set of scheduler threads. An actor is a behaviour (init,
 * handle, terminate callbacks) plus its state; it has a mailbox and a PID (struct dist_pid,
 * from dist.h) that carries its node. Actors talk only by messages and signals: sends, exit
 * signals along links, DOWN messages from monitors.
 *
 * Threads. Every function may be called from any thread unless its comment says "actor
 * only": those take the running actor (@self) and may only be called from that actor's own
 * callbacks. Callbacks run on scheduler threads and must not block: a handler that sleeps or
 * waits holds up every actor on its scheduler. Run blocking work on a thread of your own and
 * send the result back.
 *
 * Isolation. Unlike the BEAM, actors share one address space: a memory fault in a handler
 * (a bad pointer, an overflow) is not contained to its actor and can take the whole process
 * down. Errors that a handler *returns* are contained: they crash only that actor, and
 * links, monitors and supervisors react as in Erlang.
 *
 * Errors. Functions that can fail return 0 or a negative code: ACTOR_E* below, or -errno.
 * actor_strerror() names them.
 */
#ifndef ACTOR_H
#define ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ACTOR_API __attribute__((visibility("default")))
#else
#define ACTOR_API
#endif

/* ---- Errors ------------------------------------------------------------------------------- */

#define ACTOR_ERR_MAP(X)                                                                           \
    X(ENOPROC, -31001, "no such process")                                                          \
    X(ETIMEDOUT, -31002, "timed out")                                                              \
    X(EBUSY, -31003, "mailbox full")                                                               \
    X(ENAMETAKEN, -31004, "name already registered")                                               \
    X(ENONAME, -31005, "no such name")                                                             \
    X(EINVAL, -31006, "invalid argument")                                                          \
    X(ESTOPPED, -31007, "actor system not running")                                                \
    X(ETYPE, -31008, "unknown or mismatched message type")                                         \
    X(ENOMEM, -31009, "out of memory")                                                             \
    X(EMAPFULL, -31020, "journal full: the map is at its maximum size")                            \
    X(ECORRUPT, -31021, "journal corrupt or of an incompatible format")                            \
    X(ESCHEMA, -31022, "journal schema version mismatch")                                          \
    X(ELOCKED, -31023, "journal directory in use by another process")                              \
    X(ESEQ, -31024, "journal sequence number out of order or duplicate")                           \
    X(EJOURNAL, -31025, "journal storage error")                                                   \
    X(ENOTCONN, -31040, "node unreachable")                                                        \
    X(ENOSPAWN, -31041, "no spawnable behaviour of that name on the node")

enum actor_err {
#define ACTOR_ERR_ENUM_(name, value, msg) ACTOR_##name = (value),
    ACTOR_ERR_MAP(ACTOR_ERR_ENUM_)
#undef ACTOR_ERR_ENUM_
};

/* A static message for any code libactor or libdist returns, or a negated errno. */
ACTOR_API const char *actor_strerror(int err);

/* ---- Exit reasons ------------------------------------------------------------------------- */

/*
 * Why an actor ended, carried by exit signals and DOWN messages. The predefined reasons match
 * Erlang's atoms. Any other value is a custom reason: a handler that returns a non-zero value
 * crashes its actor with that value as the reason.
 */
enum actor_reason {
    ACTOR_NORMAL = 0,            /* normal: does not kill a linked actor that doesn't trap exits */
    ACTOR_KILL = -32001,         /* kill: untrappable; linked actors receive ACTOR_KILLED */
    ACTOR_KILLED = -32002,       /* killed: what an actor ended by ACTOR_KILL propagates */
    ACTOR_SHUTDOWN = -32003,     /* shutdown: an orderly stop asked by a supervisor */
    ACTOR_NOPROC = -32004,       /* noproc: the other side was already dead */
    ACTOR_NOCONNECTION = -32005, /* noconnection: the other side's node went down */
};

/*
 * "normal", "kill", "killed", "shutdown", "noproc", "noconnection", an actor_strerror() text,
 * or "custom".
 */
ACTOR_API const char *actor_reason_name(int reason);

/* ---- Message types ---------------------------------------------------------------------- */

/*
 * A message type: a stable global name ("chat.Say") and a codec. Types live in one
 * process-wide registry; they are registered once and never freed.
 */
struct actor_type;

/*
 * actor_type_register: register (or find, if the same name and descriptor are registered) the
 * type @name whose payloads are protobuf-c messages of @desc. Payloads of this type are freed
 * with protobuf_c_message_free_unpacked(), so send messages that own their fields (as unpacked
 * ones do), or take the payload in the handler (actor_msg_take).
 * Returns 0 with *out set, ACTOR_ETYPE when @name is registered with another descriptor,
 * ACTOR_EINVAL, or ACTOR_ENOMEM.
 */
ACTOR_API int actor_type_register(const char *name, const ProtobufCMessageDescriptor *desc,
                                  const struct actor_type **out);

/* The raw-bytes type, "actor.Raw": a malloc()ed buffer and its size, freed with free(). */
ACTOR_API const struct actor_type *actor_type_raw(void);

/* The type registered under @name, or NULL. */
ACTOR_API const struct actor_type *actor_type_find(const char *name);

ACTOR_API const char *actor_type_name(const struct actor_type *type);
/* The protobuf-c descriptor, or NULL for the raw type. */
ACTOR_API const ProtobufCMessageDescriptor *actor_type_descriptor(const struct actor_type *type);

/* ---- Messages ------------------------------------------------------------------------------ */

/* What a delivered message is. */
enum actor_msg_kind {
    ACTOR_MSG_USER = 0, /* a send or a cast: type, payload, size */
    ACTOR_MSG_CALL,     /* a call: answer it with actor_reply() */
    ACTOR_MSG_EXIT,     /* a trapped exit signal: exit.pid ended with exit.reason */
    ACTOR_MSG_DOWN,     /* a monitor fired: down.ref, down.pid, down.reason */
    ACTOR_MSG_TIMER,    /* a periodic or one-shot timer: timer.id, timer.tag */
    ACTOR_MSG_NODEUP,   /* with actor_monitor_nodes(): node.name is connected */
    ACTOR_MSG_NODEDOWN, /* with actor_monitor_nodes(): node.name went down for node.reason */
};

/* A monitor or call reference: unique within the node. */
struct actor_ref {
    uint64_t id;
};

/*
 * A message as a handler receives it. It and its payload belong to the runtime and are freed
 * when the handler returns, unless the handler takes the payload with actor_msg_take().
 */
struct actor_msg {
    enum actor_msg_kind kind;
    struct dist_pid from; /* the sender; DIST_PID_NONE for sends from outside any actor */
    const struct actor_type *type;
    void *payload;
    size_t size;    /* raw payloads: their length */
    unsigned flags; /* ACTOR_MSG_INLINE: the payload lives inside the envelope */
    union {
        struct {
            struct dist_pid pid;
            int reason;
        } exit;
        struct {
            struct actor_ref ref;
            struct dist_pid pid;
            int reason;
        } down;
        struct {
            uint64_t id;
            uint64_t tag;
        } timer;
        struct {
            struct actor_ref ref;
        } call;
        struct {
            const char *name; /* "name@host"; lives as long as the system */
            int reason;       /* NODEDOWN: an enum dist_down_reason (dist_down_reason_name()) */
        } node;
    } u;
};

#define ACTOR_MSG_INLINE (1u << 0) /* see actor_send_copy */

/*
 * Take ownership of @msg's payload: the runtime will not free it. Returns the payload, or
 * for an inline payload (ACTOR_MSG_INLINE) a malloc()ed copy of it; NULL when there is none,
 * or when that copy cannot be allocated (the message is then left as it was).
 */
ACTOR_API void *actor_msg_take(struct actor_msg *msg);

/* Free a payload of @type the way the runtime would (for payloads never sent). */
ACTOR_API void actor_payload_free(const struct actor_type *type, void *payload);

/* ---- The actor system --------------------------------------------------------------------- */

struct actor_system;
struct actor; /* the running actor, handed to its callbacks */

typedef void (*actor_log_cb)(int level, const char *msg, void *user_data);

struct actor_system_opts {
    unsigned schedulers; /* scheduler threads; 0 = one per CPU */
    uint32_t creation;   /* this node's incarnation, stamped in its PIDs; 0 = 1 */
    actor_log_cb log;    /* optional: where the runtime's log lines go (never to stdout) */
    void *log_data;
};

/*
 * actor_system_new: create a system (not yet running). @opts may be NULL for defaults.
 * Returns 0 with *out set, or ACTOR_EINVAL / ACTOR_ENOMEM.
 */
ACTOR_API int actor_system_new(const struct actor_system_opts *opts, struct actor_system **out);

/* Start the scheduler threads. Returns 0, -errno if a thread cannot start, or ACTOR_EINVAL. */
ACTOR_API int actor_system_start(struct actor_system *sys);

/*
 * actor_system_shutdown: stop gracefully. Every live actor gets an exit signal with reason
 * ACTOR_SHUTDOWN (trapping ones as a message, others end at once); actors still alive after
 * @timeout seconds are killed. Every terminate callback runs; then the schedulers stop.
 * Not from a scheduler thread. Returns 0, or ACTOR_ETIMEDOUT if actors had to be killed.
 */
ACTOR_API int actor_system_shutdown(struct actor_system *sys, double timeout);

/* Free a system that is not running (never started, or shut down). Accepts NULL. */
ACTOR_API void actor_system_free(struct actor_system *sys);

/* ---- Actors ---------------------------------------------------------------------------------- */

/*
 * A behaviour. init runs first, in the actor's context, and sets *state; a non-zero return
 * ends the actor with that reason before it takes any message. handle runs once per message;
 * a non-zero return crashes the actor with that reason. terminate runs once, last, with the
 * reason (also after a crash or a kill) and must free the state. Any callback may be NULL.
 */
struct actor_behaviour {
    const char *name; /* shown by introspection */
    int (*init)(struct actor *self, void *arg, void **state);
    int (*handle)(struct actor *self, void *state, struct actor_msg *msg);
    void (*terminate)(struct actor *self, void *state, int reason);
};

#define ACTOR_SPAWN_LINK    (1u << 0) /* link the new actor to the spawning actor */
#define ACTOR_SPAWN_MONITOR (1u << 1) /* the spawning actor monitors it; ref in monitor_ref */

struct actor_spawn_opts {
    unsigned flags;     /* ACTOR_SPAWN_*; LINK and MONITOR need a spawning actor */
    const char *name;   /* register under this name; NULL for none */
    size_t mailbox_max; /* 0 = unbounded; else sends past it get ACTOR_EBUSY */
    int scheduler;      /* -1: the spawner's, or the first from outside; 0.. pins (0 is one) */
    struct actor_ref *monitor_ref; /* out: the monitor's reference, with ACTOR_SPAWN_MONITOR */
};

/*
 * actor_spawn: start an actor running @behaviour with @arg. @parent is the spawning actor
 * (actor only) or NULL from any thread. @opts may be NULL.
 * Returns 0 with *pid set (pid may be NULL), or ACTOR_ENAMETAKEN (nothing started),
 * ACTOR_ESTOPPED, ACTOR_EINVAL, ACTOR_ENOMEM.
 */
ACTOR_API int actor_spawn(struct actor_system *sys, struct actor *parent,
                          const struct actor_behaviour *behaviour, void *arg,
                          const struct actor_spawn_opts *opts, struct dist_pid *pid);

/* The running actor's PID and system (actor only). */
ACTOR_API struct dist_pid actor_self(const struct actor *self);
ACTOR_API struct actor_system *actor_system_of(const struct actor *self);

/*
 * actor_send: send @payload of @type to @to. On 0 the runtime owns the payload; on failure
 * the caller still does. Messages from one sender to one receiver arrive in send order.
 * Called from an actor's callback, the message carries that actor's PID as its sender.
 * A PID on another node (see "Distribution") takes the same call: the payload is packed and
 * freed here, and 0 means queued for that node.
 * Returns 0, ACTOR_ENOPROC (dead or stale PID), ACTOR_EBUSY (bounded mailbox full, or the
 * outbound queue of the distribution over its high-water mark), ACTOR_ENOTCONN (a remote PID
 * while the system is not distributed), ACTOR_ENOMEM, or ACTOR_EINVAL.
 */
ACTOR_API int actor_send(struct actor_system *sys, struct dist_pid to,
                         const struct actor_type *type, void *payload, size_t size);

/*
 * actor_send_copy: send a copy of the @size bytes at @data as a raw message (actor_type_raw()),
 * as Erlang copies a term into the receiver's heap. @data stays the caller's. A copy of at most
 * ACTOR_INLINE_MAX bytes travels inside the runtime's envelope and costs no allocation; a
 * larger one is malloc()ed. The receiver sees it as any raw message; actor_msg_take() hands it
 * a malloc()ed copy when the payload was inline. Order, sender and thread rules as actor_send.
 * Returns 0, ACTOR_ENOPROC, ACTOR_EBUSY, ACTOR_ENOMEM or ACTOR_EINVAL (@data NULL with
 * @size > 0).
 */
#define ACTOR_INLINE_MAX 48
ACTOR_API int actor_send_copy(struct actor_system *sys, struct dist_pid to, const void *data,
                              size_t size);

/* actor_send to a registered name. ACTOR_ENONAME when no actor has it. */
ACTOR_API int actor_send_named(struct actor_system *sys, const char *name,
                               const struct actor_type *type, void *payload, size_t size);

/* End the running actor with @reason once its current callback returns (actor only). */
ACTOR_API void actor_exit(struct actor *self, int reason);

/*
 * actor_exit_signal: send an exit signal to @to, as Erlang's exit/2. ACTOR_KILL always ends
 * the target; ACTOR_NORMAL is ignored unless it traps exits; other reasons end it unless it
 * traps exits, when it gets an ACTOR_MSG_EXIT instead, in order with its messages. A signal
 * that ends the target does so before it handles the messages already queued, as on the BEAM.
 * Returns 0 or ACTOR_ENOPROC.
 */
ACTOR_API int actor_exit_signal(struct actor_system *sys, struct dist_pid to, int reason);

/* actor_exit_signal(sys, to, ACTOR_KILL). */
ACTOR_API int actor_kill(struct actor_system *sys, struct dist_pid to);

/* ---- Links and monitors (actor only) -------------------------------------------------------- */

/*
 * Link the running actor and @other: when either ends, the other gets an exit signal with
 * its reason. Linking to a dead actor sends the running one an exit signal with
 * ACTOR_NOPROC. Returns 0, or ACTOR_EINVAL for DIST_PID_NONE.
 */
ACTOR_API int actor_link(struct actor *self, struct dist_pid other);
ACTOR_API int actor_unlink(struct actor *self, struct dist_pid other);

/* Exit signals arrive as ACTOR_MSG_EXIT messages while on (ACTOR_KILL still kills). */
ACTOR_API void actor_trap_exit(struct actor *self, int on);

/*
 * Monitor @target: when it ends, the running actor gets an ACTOR_MSG_DOWN with @ref and the
 * reason; a target already dead gives one at once with ACTOR_NOPROC. Returns 0, or
 * ACTOR_EINVAL for DIST_PID_NONE.
 */
ACTOR_API int actor_monitor(struct actor *self, struct dist_pid target, struct actor_ref *ref);

#define ACTOR_DEMONITOR_FLUSH (1u << 0) /* also drop a DOWN for @ref already in the mailbox */

/*
 * Stop a monitor. As in Erlang, a DOWN for it already in the mailbox is still delivered unless
 * ACTOR_DEMONITOR_FLUSH is given; one that has not arrived yet never is.
 * Returns 0, or ACTOR_EINVAL for an unknown reference.
 */
ACTOR_API int actor_demonitor(struct actor *self, struct actor_ref ref, unsigned flags);

/* ---- Registered names --------------------------------------------------------------------- */

/*
 * Names are unique per system and released when their actor ends.
 * register: 0, ACTOR_ENAMETAKEN (name or actor already named), ACTOR_ENOPROC, ACTOR_EINVAL.
 * whereis: 0 with *pid set, or ACTOR_ENONAME. unregister: 0 or ACTOR_ENONAME.
 */
ACTOR_API int actor_register(struct actor_system *sys, const char *name, struct dist_pid pid);
ACTOR_API int actor_whereis(struct actor_system *sys, const char *name, struct dist_pid *pid);
ACTOR_API int actor_unregister(struct actor_system *sys, const char *name);

/* ---- Timers (actor only) ----------------------------------------------------------------- */

/*
 * actor_timer_start: deliver an ACTOR_MSG_TIMER with @tag to the running actor after @after
 * seconds, then every @repeat seconds if @repeat > 0. *id (optional) names it for cancel.
 * Timers die with their actor. Returns 0 or ACTOR_EINVAL / ACTOR_ENOMEM.
 */
ACTOR_API int actor_timer_start(struct actor *self, double after, double repeat, uint64_t tag,
                                uint64_t *id);

/*
 * actor_send_after: send @payload of @type to @to after @after seconds, as from the running
 * actor. The runtime owns the payload from a 0 return; a cancelled timer frees it.
 */
ACTOR_API int actor_send_after(struct actor *self, double after, struct dist_pid to,
                               const struct actor_type *type, void *payload, size_t size,
                               uint64_t *id);

/* Cancel a timer of the running actor. Returns 0, or ACTOR_EINVAL if it already fired. */
ACTOR_API int actor_timer_cancel(struct actor *self, uint64_t id);

/* ---- Request and reply ----------------------------------------------------------------- */

/*
 * The continuation of a call made inside an actor. It runs in the caller's context, with the
 * caller's state, exactly once: @err is 0 with @reply set, ACTOR_ETIMEDOUT, ACTOR_ENOPROC
 * (the callee was or became dead without replying), or ACTOR_ENOTCONN (the callee's node is
 * down or unreachable). Its return value acts as a handler's.
 */
typedef int (*actor_reply_cb)(struct actor *self, void *state, int err, struct actor_msg *reply,
                              void *cb_data);

/*
 * actor_call: send a request (an ACTOR_MSG_CALL) to @to and return at once; @cb runs when the
 * reply, the timeout or the callee's death comes. The scheduler never blocks. Payload
 * ownership as actor_send. Actor only. Returns 0, ACTOR_ENOPROC (then @cb never runs), or
 * ACTOR_EINVAL.
 */
ACTOR_API int actor_call(struct actor *self, struct dist_pid to, const struct actor_type *type,
                         void *payload, size_t size, double timeout, actor_reply_cb cb,
                         void *cb_data);

/*
 * actor_call_wait: the same from a thread that is not a scheduler, blocking up to @timeout
 * seconds. The payload is taken whatever the outcome (freed if it was never delivered), so
 * the caller never has to guess. On 0, *reply is the reply: free it with actor_msg_free().
 * Returns 0, ACTOR_ETIMEDOUT, ACTOR_ENOPROC, ACTOR_ENOTCONN (a remote callee's node went
 * down), ACTOR_ENOMEM, or ACTOR_EINVAL (bad arguments or called on a scheduler thread; the
 * payload is then left to the caller).
 */
ACTOR_API int actor_call_wait(struct actor_system *sys, struct dist_pid to,
                              const struct actor_type *type, void *payload, size_t size,
                              double timeout, struct actor_msg **reply);

/* Free a message returned by actor_call_wait(), payload included unless taken. */
ACTOR_API void actor_msg_free(struct actor_msg *msg);

/*
 * actor_reply: answer @request (an ACTOR_MSG_CALL the running actor received). The reply may
 * come later, from another callback: keep a copy of the struct actor_msg (its from and
 * u.call.ref are all that is used). Payload ownership as actor_send. A caller that gave up
 * meanwhile drops the reply. Returns 0 or ACTOR_EINVAL.
 */
ACTOR_API int actor_reply(struct actor *self, const struct actor_msg *request,
                          const struct actor_type *type, void *payload, size_t size);

/* actor_cast: actor_send, named for symmetry with actor_call. */
ACTOR_API int actor_cast(struct actor_system *sys, struct dist_pid to,
                         const struct actor_type *type, void *payload, size_t size);

/* ---- Supervisors ----------------------------------------------------------------------------- */

enum actor_strategy {
    ACTOR_ONE_FOR_ONE,       /* restart the child that ended */
    ACTOR_ONE_FOR_ALL,       /* stop all children, restart all */
    ACTOR_REST_FOR_ONE,      /* stop and restart the ended child and those started after it */
    ACTOR_SIMPLE_ONE_FOR_ONE /* children added at run time from one template, one_for_one */
};

enum actor_restart {
    ACTOR_PERMANENT, /* always restarted */
    ACTOR_TRANSIENT, /* restarted when it ends with a reason other than normal or shutdown */
    ACTOR_TEMPORARY  /* never restarted */
};

struct actor_child_spec {
    const char *id; /* unique among its siblings; the name introspection shows */
    const struct actor_behaviour *behaviour;
    void *arg; /* passed to init at every (re)start */
    enum actor_restart restart;
    double shutdown_timeout; /* seconds to wait after ACTOR_SHUTDOWN before ACTOR_KILL */
    const char *name;        /* registered name, or NULL */
};

struct actor_sup_opts {
    enum actor_strategy strategy;
    unsigned max_restarts; /* at most this many restarts ... */
    double max_seconds;    /* ... within this many seconds; past it the supervisor exits */
};

/*
 * actor_supervisor_start: spawn a supervisor (linked to @parent when it is non-NULL, so trees
 * nest: a child behaviour whose init calls this with its own @self becomes a subtree) that
 * starts @children in order. For ACTOR_SIMPLE_ONE_FOR_ONE, @children is one template and no
 * child starts until actor_supervisor_add(). The supervisor copies the specs. On shutdown it
 * stops its children in reverse start order: ACTOR_SHUTDOWN, then ACTOR_KILL after the child's
 * shutdown_timeout (0: kill at once; negative: wait forever). Past its restart intensity it
 * stops its children the same way and exits with ACTOR_SHUTDOWN.
 * From outside any actor it waits for the children to start and returns the first child's
 * start error; with @parent it returns once the supervisor is spawned, and a start failure
 * reaches @parent as an exit signal.
 * Returns 0 with *pid set, a child's start error, ACTOR_EINVAL, ACTOR_ENOMEM or
 * ACTOR_ESTOPPED.
 */
ACTOR_API int actor_supervisor_start(struct actor_system *sys, struct actor *parent,
                                     const struct actor_sup_opts *opts,
                                     const struct actor_child_spec *children, size_t n,
                                     struct dist_pid *pid);

/*
 * actor_supervisor_add: start a child of a ACTOR_SIMPLE_ONE_FOR_ONE supervisor from its
 * template, with @arg. Blocks up to @timeout for the supervisor's answer (not from a
 * scheduler thread). Returns 0 with *child set, or an error.
 */
ACTOR_API int actor_supervisor_add(struct actor_system *sys, struct dist_pid sup, void *arg,
                                   double timeout, struct dist_pid *child);

/* ---- Introspection -------------------------------------------------------------------------- */

enum actor_state { ACTOR_IDLE, ACTOR_READY, ACTOR_RUNNING, ACTOR_EXITING };

struct actor_info {
    struct dist_pid pid;
    const char *name;      /* registered name or NULL; valid during the callback only */
    const char *behaviour; /* the behaviour's name */
    size_t mailbox_depth;
    uint64_t handled; /* messages handled */
    enum actor_state state;
};

typedef void (*actor_info_cb)(const struct actor_info *info, void *user_data);

/* Call @cb for each live actor; a snapshot, as consistent as a running system allows. */
ACTOR_API void actor_system_list(struct actor_system *sys, actor_info_cb cb, void *user_data);

struct actor_stats {
    uint64_t alive;   /* actors alive now */
    uint64_t spawned; /* since start */
    uint64_t exited;
    uint64_t delivered; /* messages handed to handlers */
    uint64_t restarts;  /* children restarted by supervisors */
};

ACTOR_API void actor_system_stats(struct actor_system *sys, struct actor_stats *out);

/* ---- Durable actors ---------------------------------------------------------------------- */

/*
 * Event-sourced actors whose state outlives a crash, on an LMDB journal.
 *
 * A journal is one LMDB environment in a directory (one per node). It holds each persistence
 * id's events, keyed by (persistence id, sequence number), the latest snapshot of each
 * persistence id and a schema version that is checked at open. One writer thread owns every
 * write: it takes the appends of all actors queued since its last flush, writes them in one
 * transaction and syncs once (group commit), then acknowledges each one.
 *
 * A durable actor (struct actor_durable_behaviour) is an ordinary actor whose state is the
 * fold of its events. On start it loads its latest snapshot, replays the events after it, and
 * only then takes messages. Its handler persists events: actor_durable_persist() runs the
 * event's apply callback and then the continuation only once the event is on disk, and holds
 * back (stashes) the actor's later messages until then, so they see the new state; the reply
 * to a caller goes from the continuation. actor_durable_persist_async() does the same without
 * holding back messages: the actor goes on, and its events are still written, applied and
 * continued in the order they were persisted.
 *
 * Durability. ACTOR_JOURNAL_SYNC (the default): a batch is acknowledged after LMDB's commit
 * has synced it to the disk, so an acknowledged event survives a process crash (kill -9) and
 * a power cut. ACTOR_JOURNAL_NOSYNC: commits reach the operating system but are not synced;
 * acknowledged events survive a crash of the process, not one of the machine.
 *
 * Failures never pass silently: a map at its maximum size fails the persists of that batch
 * with ACTOR_EMAPFULL, a full disk with -ENOSPC, both delivered to each persisting actor. A
 * corrupt or incompatible environment fails actor_journal_open() with ACTOR_ECORRUPT or
 * ACTOR_ESCHEMA, and the log callback names the file. A second process (or a second open in
 * this one) of a directory gets ACTOR_ELOCKED.
 */
struct actor_journal;

#define ACTOR_JOURNAL_SYNC   0u        /* the default: acknowledge after the sync */
#define ACTOR_JOURNAL_NOSYNC (1u << 0) /* commit without syncing (survives kill -9 only) */

#define ACTOR_JOURNAL_SCHEMA    1u                  /* the schema version this library writes */
#define ACTOR_JOURNAL_ID_MAX    255                 /* bytes in a persistence id */
#define ACTOR_JOURNAL_EVENT_MAX (64u * 1024 * 1024) /* bytes in an event or a snapshot */

struct actor_journal_opts {
    const char *dir;    /* the directory; created (0700) if missing, not its parents */
    size_t map_size;    /* initial map size in bytes; 0 = 64 MiB */
    size_t map_max;     /* the map doubles when full, up to this; 0 = 64 GiB */
    unsigned flags;     /* ACTOR_JOURNAL_SYNC or ACTOR_JOURNAL_NOSYNC */
    unsigned max_batch; /* requests per transaction at most; 0 = 16384 */
    actor_log_cb log;   /* optional: where the journal's log lines go (never stdout) */
    void *log_data;
};

/*
 * actor_journal_open: open (or create) the journal in @opts->dir, check its schema version,
 * take the directory's lock file (<dir>/lock) and start the writer thread.
 * Returns 0 with *out set; ACTOR_ELOCKED (another process, or another open in this one,
 * holds the directory), ACTOR_ECORRUPT (<dir>/data.mdb is not a valid environment of this
 * LMDB format), ACTOR_ESCHEMA (written by another schema version), ACTOR_EINVAL (bad
 * options), ACTOR_ENOMEM, ACTOR_EJOURNAL, or -errno (the directory cannot be created or
 * opened). Every failure also goes to @opts->log, naming the directory or file. Any thread.
 */
ACTOR_API int actor_journal_open(const struct actor_journal_opts *opts, struct actor_journal **out);

/*
 * actor_journal_close: write what is queued, stop the writer, close the environment and
 * release the lock. Stop the durable actors first (shut the actor system down): an actor
 * that persists after the close is undefined behaviour. Accepts NULL. Not from the callback
 * of an append.
 */
ACTOR_API void actor_journal_close(struct actor_journal *j);

/*
 * The outcome of a request to the writer: @err is 0 or the failure (ACTOR_EMAPFULL, -ENOSPC,
 * -EIO, ACTOR_ESEQ, ACTOR_EINVAL, ACTOR_EJOURNAL). Runs on the writer thread, after the
 * batch's sync; it must not block, and must not call actor_journal_flush() or _close().
 */
typedef void (*actor_journal_done_cb)(int err, uint64_t seq, void *user_data);

/*
 * actor_journal_append: queue event @seq of @id (@len bytes at @data, copied) for the next
 * group commit. The writer refuses (ACTOR_ESEQ, through @cb) a @seq that is not exactly one
 * past the id's highest sequence number (its last event or its snapshot, whichever is
 * later), so the journal never holds a gap or a duplicate; the first event is 1. @cb (may be
 * NULL) runs once with the outcome. Durable actors persist with actor_durable_persist(): use
 * this to feed a journal from a program with no actors.
 * Returns 0 (then @cb will run), ACTOR_EINVAL (a NULL or too long @id, @seq 0, @len over
 * ACTOR_JOURNAL_EVENT_MAX), ACTOR_ESTOPPED (the journal is closing) or ACTOR_ENOMEM. Any
 * thread.
 */
ACTOR_API int actor_journal_append(struct actor_journal *j, const char *id, uint64_t seq,
                                   const void *data, size_t len, actor_journal_done_cb cb,
                                   void *user_data);

/*
 * actor_journal_snapshot_save: queue a snapshot of @id as of event @seq (@len bytes at @data,
 * copied). It replaces the id's snapshot unless that one is later (then ACTOR_ESEQ). Returns
 * and @cb as actor_journal_append. Any thread.
 */
ACTOR_API int actor_journal_snapshot_save(struct actor_journal *j, const char *id, uint64_t seq,
                                          const void *data, size_t len, actor_journal_done_cb cb,
                                          void *user_data);

/*
 * actor_journal_delete_to: queue the deletion of @id's events with sequence numbers up to
 * @seq. @seq must be at or before the id's snapshot, so recovery still rebuilds the state
 * (else ACTOR_EINVAL through @cb). Returns and @cb as actor_journal_append. Any thread.
 */
ACTOR_API int actor_journal_delete_to(struct actor_journal *j, const char *id, uint64_t seq,
                                      actor_journal_done_cb cb, void *user_data);

/*
 * actor_journal_flush: block until every request queued before the call is written (and, in
 * sync mode, synced) and its callback has been called. Returns 0 or ACTOR_EINVAL. Not from
 * the writer's callbacks.
 */
ACTOR_API int actor_journal_flush(struct actor_journal *j);

/*
 * Called by actor_journal_replay() for each event, in sequence order. @data is valid during
 * the call only. A non-zero return stops the replay, which returns that value.
 */
typedef int (*actor_journal_event_cb)(uint64_t seq, const void *data, size_t len, void *user_data);

/*
 * actor_journal_replay: call @cb for each stored event of @id with a sequence number of at
 * least @from, in order. Reads what is committed; queued events are not seen (flush first).
 * Returns 0, @cb's non-zero value, ACTOR_EINVAL, ACTOR_ECORRUPT or ACTOR_EJOURNAL. Any thread.
 */
ACTOR_API int actor_journal_replay(struct actor_journal *j, const char *id, uint64_t from,
                                   actor_journal_event_cb cb, void *user_data);

/*
 * actor_journal_highest: the id's highest sequence number, from its last event or its
 * snapshot, whichever is later; 0 for an id never written. Returns 0 with *seq set,
 * ACTOR_EINVAL, ACTOR_ECORRUPT or ACTOR_EJOURNAL. Any thread.
 */
ACTOR_API int actor_journal_highest(struct actor_journal *j, const char *id, uint64_t *seq);

/*
 * actor_journal_snapshot_load: the latest snapshot of @id. On 0, *seq is the event it was
 * taken at and *data a malloc()ed copy of *len bytes that the caller frees; an id without a
 * snapshot gives *seq 0, *data NULL, *len 0. Returns 0, ACTOR_EINVAL, ACTOR_ENOMEM,
 * ACTOR_ECORRUPT or ACTOR_EJOURNAL. Any thread.
 */
ACTOR_API int actor_journal_snapshot_load(struct actor_journal *j, const char *id, uint64_t *seq,
                                          void **data, size_t *len);

struct actor_journal_stats {
    uint64_t appended;  /* events written */
    uint64_t batches;   /* transactions committed: one sync each in sync mode */
    uint64_t failed;    /* requests that failed */
    uint64_t map_grows; /* times the map was grown */
    size_t map_size;    /* the map's size now */
};

/* A snapshot of the journal's counters. Any thread. */
ACTOR_API void actor_journal_stats(struct actor_journal *j, struct actor_journal_stats *out);

/* The running durable actor, handed to its callbacks. */
struct actor_durable;

/*
 * A durable behaviour. The callbacks run in the actor's context (actor only), like those of
 * struct actor_behaviour, and a non-zero return from any of them ends the actor with that
 * reason (from init, restore, apply or recovered while it starts: it never takes a message).
 * - init (optional): make the empty state, before anything is read; @arg is the spec's arg.
 * - restore (optional): load the snapshot taken at event @seq into the state.
 * - apply (required): fold event @seq into the state: during the replay at start, and for a
 *   persisted event once it is on disk, just before its continuation. Deterministic, and
 *   it must not persist.
 * - recovered (optional): the replay is done; the first message comes next. May persist.
 * - handle (required): a message, as struct actor_behaviour's handle; it persists events.
 * - snapshot (optional, needed for snapshots): serialise the state into a malloc()ed buffer,
 *   *data and *len, that the journal takes.
 * - terminate (optional): last, with the reason; frees the state. It also runs when the start
 *   fails after init has made the state.
 * Introspection shows every durable actor's behaviour as "durable".
 */
struct actor_durable_behaviour {
    const char *name; /* named in the journal's log lines about this actor */
    int (*init)(struct actor_durable *d, void *arg, void **state);
    int (*restore)(struct actor_durable *d, void *state, uint64_t seq, const void *data,
                   size_t len);
    int (*apply)(struct actor_durable *d, void *state, uint64_t seq, const void *event, size_t len);
    int (*recovered)(struct actor_durable *d, void *state);
    int (*handle)(struct actor_durable *d, void *state, struct actor_msg *msg);
    int (*snapshot)(struct actor_durable *d, void *state, void **data, size_t *len);
    void (*terminate)(struct actor_durable *d, void *state, int reason);
};

#define ACTOR_DURABLE_DELETE_ON_SNAPSHOT (1u << 0) /* delete the events a snapshot covers */

/*
 * What to start: borrowed, and read when the actor starts (and at each restart under a
 * supervisor), so it must outlive the actor.
 */
struct actor_durable_spec {
    struct actor_journal *journal;
    const struct actor_durable_behaviour *behaviour;
    const char *persistence_id; /* 1 to ACTOR_JOURNAL_ID_MAX bytes; one live actor at a time */
    uint64_t snapshot_every;    /* take a snapshot every this many events; 0 = only on request */
    unsigned flags;             /* ACTOR_DURABLE_* */
    void *arg;                  /* passed to the behaviour's init */
};

/*
 * actor_durable_spawn: start a durable actor, as actor_spawn() starts any actor (same @parent
 * and @opts rules; @opts->mailbox_max must be 0, since the journal's acknowledgements must
 * always reach the actor). The actor recovers in its init: a failed recovery ends it with
 * the error as reason (ACTOR_ENAMETAKEN when an actor with the same persistence id is alive,
 * a journal error, or a callback's non-zero return).
 * Returns 0 with *pid set, ACTOR_EINVAL (a bad spec or options), or actor_spawn()'s errors.
 */
ACTOR_API int actor_durable_spawn(struct actor_system *sys, struct actor *parent,
                                  const struct actor_durable_spec *spec,
                                  const struct actor_spawn_opts *opts, struct dist_pid *pid);

/*
 * actor_durable_base: the plain behaviour that runs durable actors, to put one under a
 * supervisor: a child spec with this behaviour and a struct actor_durable_spec as its arg.
 */
ACTOR_API const struct actor_behaviour *actor_durable_base(void);

/*
 * The continuation of a persist. It runs in the actor's context exactly once: @err is 0 when
 * event @seq is on disk (apply has run), or the failure (then apply did not run): ACTOR_EMAPFULL,
 * -ENOSPC, -EIO, ACTOR_ESEQ, ACTOR_EJOURNAL. Its return value acts as a handler's. A
 * persist without a continuation that fails crashes the actor with the error.
 */
typedef int (*actor_durable_done_cb)(struct actor_durable *d, void *state, int err, uint64_t seq,
                                     void *cb_data);

/*
 * actor_durable_persist: persist an event (@len bytes at @event, copied) as the actor's next
 * sequence number. Once it is on disk, apply runs, then @cb (may be NULL). Until then the
 * actor's later messages are stashed, and are handled after @cb, in their order. After a
 * failure, the actor's persists that were queued behind the failed one fail too, and new
 * ones fail with the same error until those have come back. Actor only, from handle,
 * recovered or a continuation.
 * Returns 0 (then @cb will run), ACTOR_EINVAL (during the replay, a NULL @d, @len over
 * ACTOR_JOURNAL_EVENT_MAX), ACTOR_ENOMEM, ACTOR_ESTOPPED (the journal is closing) or the
 * error of a failed persist whose followers are still out. On an error @cb never runs.
 */
ACTOR_API int actor_durable_persist(struct actor_durable *d, const void *event, size_t len,
                                    actor_durable_done_cb cb, void *cb_data);

/*
 * actor_durable_persist_async: as actor_durable_persist(), but the actor goes on taking
 * messages; apply and @cb still run once the event is on disk, in persist order.
 */
ACTOR_API int actor_durable_persist_async(struct actor_durable *d, const void *event, size_t len,
                                          actor_durable_done_cb cb, void *cb_data);

/*
 * actor_durable_snapshot: take a snapshot now, with the behaviour's snapshot callback, as of
 * the last applied event, and queue it. @cb (may be NULL) runs with the outcome and that
 * sequence number. With ACTOR_DURABLE_DELETE_ON_SNAPSHOT the events it covers are then
 * deleted. Actor only. Returns 0, ACTOR_EINVAL (no snapshot callback, nothing applied yet,
 * or during the replay), ACTOR_ENOMEM, ACTOR_ESTOPPED, or the snapshot callback's error.
 */
ACTOR_API int actor_durable_snapshot(struct actor_durable *d, actor_durable_done_cb cb,
                                     void *cb_data);

/*
 * actor_durable_delete_to: delete this actor's events up to @seq, which must be at or before
 * its latest snapshot (else @cb gets ACTOR_EINVAL). @cb (may be NULL) as for a snapshot.
 * Actor only. Returns 0, ACTOR_EINVAL, ACTOR_ENOMEM or ACTOR_ESTOPPED.
 */
ACTOR_API int actor_durable_delete_to(struct actor_durable *d, uint64_t seq,
                                      actor_durable_done_cb cb, void *cb_data);

/* The durable actor's actor, for actor_self(), actor_reply(), timers... (actor only). */
ACTOR_API struct actor *actor_durable_actor(struct actor_durable *d);

/* The sequence number of the last event applied to the state; 0 before the first. */
ACTOR_API uint64_t actor_durable_last_seq(const struct actor_durable *d);

/* The actor's persistence id (valid as long as the actor). */
ACTOR_API const char *actor_durable_id(const struct actor_durable *d);

/* ---- Distribution ----------------------------------------------------------------------------
 *
 * A system joins a cluster through libdist: actor_dist_start() names the node, registers it
 * with epmd and adopts epmd's creation for its PIDs. From then on a PID may name an actor on
 * another node (pid.node != 0, an index into the system's node table; actor_node_of() names
 * it) and every call that takes a PID works on it as on a local one: actor_send, actor_cast,
 * actor_send_copy, actor_exit_signal, actor_link, actor_monitor, actor_call, actor_reply.
 *
 *   scheduler thread                          I/O thread (its own libev loop, the dist node)
 *   send to a remote PID: pack the payload -->  outbound queue (MPSC, one ev_async per burst)
 *   (protobuf-c, or raw bytes as they are)        --> dist_node_post --> peer's connection
 *                                             incoming frame --> unpack by type name -->
 *   mailbox  <------------------------------------ post with the remote sender's PID
 *
 * A scheduler with nothing to run polls the I/O thread's loop itself for a while (one at a
 * time, before it sleeps), so a reply reaches its actor with no thread woken on the way; the
 * I/O thread takes the loop back within milliseconds when that scheduler gets busy.
 *
 * Semantics, as in Erlang:
 * - A remote send returns once the message is queued: 0 means sent, not delivered. Messages
 *   from one sender to one receiver arrive in send order. A message to a PID of a dead node
 *   or of an older incarnation of a node is dropped without harm.
 * - Links and monitors span nodes. An actor's exit or DOWN carries its real reason. When a
 *   node goes down (or cannot be reached within connect_timeout_ms while something waits for
 *   it), every link to an actor on it delivers an exit with ACTOR_NOCONNECTION, every monitor
 *   on one a DOWN with ACTOR_NOCONNECTION, and pending calls to it fail with ACTOR_ENOTCONN.
 * - A remote call fails with ACTOR_ETIMEDOUT (no reply in time), ACTOR_ENOPROC (no such
 *   process there) or ACTOR_ENOTCONN (the node is unreachable): each through the callback.
 * - A message of a type this node has not registered (actor_type_register) is dropped,
 *   counted (actor_dist_stats) and logged once per type name; the connection stays up. So is
 *   one whose payload does not unpack.
 * - Messages queued for a connection that goes down are lost.
 * - Exit signals, links and monitors name their sender on the wire: sent to a remote actor
 *   from outside any actor, they fail with ACTOR_EINVAL. Plain sends from anywhere are fine.
 * - A call from a plain thread (actor_call_wait) to a remote actor works the same way, and
 *   returns ACTOR_ENOTCONN when the callee's node goes down.
 * - PIDs inside payloads are user data: only a message's sender is translated between nodes.
 */

/*
 * Options of actor_dist_start(). Zero-initialise, then set what you need; 0 or NULL picks the
 * default. The pointers are borrowed for the call.
 */
struct actor_dist_opts {
    const char *name;        /* "name@host", required (dist_node_name_check()) */
    const char *cookie;      /* the cluster secret; NULL: $DIST_COOKIE, then cookie_file */
    const char *cookie_file; /* default $HOME/.dist.cookie, made when missing */
    int insecure;            /* plain TCP without encryption (logged as a warning) */
    const char *listen_host; /* as struct dist_node_opts */
    uint16_t listen_port;    /* 0: an ephemeral port */
    const char *epmd_host;   /* default "127.0.0.1" */
    uint16_t epmd_port;      /* default 4369 */
    const char *ca_file;     /* TLS: with cert_file and key_file, mutual certificate checks */
    const char *cert_file;
    const char *key_file;
    uint32_t tick_ms;              /* a silent peer is down after this; default 60000 */
    uint32_t handshake_timeout_ms; /* default 5000 */
    uint32_t connect_timeout_ms;   /* a node not up this long after something was sent to it
                                      is unreachable (see above); default 5000 */
    uint32_t ready_timeout_ms;     /* actor_dist_start() waits this long for epmd; 10000 */
    uint32_t backoff_max_ms;       /* reconnect backoff ceiling; default 30000 */
};

/*
 * actor_dist_start: make @sys a node of a cluster. Starts the distribution's I/O thread, which
 * runs a libev loop of its own with a libdist node on it, and waits (up to ready_timeout_ms)
 * until the node is registered with epmd; the system then stamps epmd's creation in its PIDs.
 * Call it after actor_system_new() and before actor_system_start(), once.
 * Returns 0, or ACTOR_EINVAL (NULL arguments, the system is running or already distributed),
 * ACTOR_ETIMEDOUT (epmd did not register the node in time), ACTOR_ENOMEM, -errno (the thread
 * or the listening socket), or a DIST_* code from dist_node_new() / dist_node_start() (a bad
 * name, cookie or TLS file). Any thread but a scheduler's.
 */
ACTOR_API int actor_dist_start(struct actor_system *sys, const struct actor_dist_opts *opts);

/*
 * actor_dist_stop: leave the cluster: send what is queued, a goodbye to every peer, unregister
 * from epmd and stop the I/O thread. Remote sends then fail with ACTOR_ENOTCONN. The system's
 * shutdown does this after its actors have ended, so their exits reach remote links first.
 * Does nothing on a system not distributed. Any thread but a scheduler's.
 */
ACTOR_API void actor_dist_stop(struct actor_system *sys);

/*
 * actor_node_name: this node's name, or "nonode@nohost" when the system is not distributed.
 * actor_node_of: the name of @pid's node ("name@host"; for node 0 this node's), or NULL for an
 * index the system never saw. The strings live as long as the system. Any thread.
 */
ACTOR_API const char *actor_node_name(struct actor_system *sys);
ACTOR_API const char *actor_node_of(struct actor_system *sys, struct dist_pid pid);

/*
 * actor_send_at: send to the actor registered as @name on node @node, as Erlang's
 * {Name, Node} ! Msg. @node NULL or this node's name is a local actor_send_named(). A remote
 * send returns once queued; an unknown name there drops the message. Payload ownership, order
 * and sender as actor_send. Returns 0, ACTOR_EINVAL, ACTOR_ENONAME (local only),
 * ACTOR_ENOTCONN (the system is not distributed, or stopped), ACTOR_EBUSY (the outbound queue
 * is over its high-water mark), ACTOR_ENOMEM. Any thread.
 */
ACTOR_API int actor_send_at(struct actor_system *sys, const char *name, const char *node,
                            const struct actor_type *type, void *payload, size_t size);

/*
 * actor_monitor_nodes: while @on, the running actor gets an ACTOR_MSG_NODEUP when a
 * connection to a node comes up and an ACTOR_MSG_NODEDOWN (with the reason) when it goes down,
 * as Erlang's net_kernel:monitor_nodes/1. Actor only. Returns 0, ACTOR_ENOTCONN (not
 * distributed) or ACTOR_ENOMEM.
 */
ACTOR_API int actor_monitor_nodes(struct actor *self, int on);

/*
 * actor_spawnable_register: let other nodes start actors running @behaviour under @name
 * (actor_spawn_remote()). The argument of a spawn must be of @arg_type (a raw or registered
 * type); it is unpacked on this node and handed to the behaviour's init as @arg, which takes
 * ownership of it (frees it with actor_payload_free() or keeps it; a behaviour without init
 * has it freed). @behaviour is borrowed and must outlive the system. Any thread, any time.
 * Returns 0, ACTOR_ENAMETAKEN (@name is registered), ACTOR_EINVAL or ACTOR_ENOMEM.
 */
ACTOR_API int actor_spawnable_register(struct actor_system *sys, const char *name,
                                       const struct actor_behaviour *behaviour,
                                       const struct actor_type *arg_type);

/*
 * The continuation of a remote spawn. It runs in the caller's context exactly once: @err is 0
 * with @pid the new actor, or ACTOR_ENOSPAWN (no spawnable of that name there), ACTOR_ETYPE
 * (the argument is not of the spawnable's type), ACTOR_ETIMEDOUT, ACTOR_ENOTCONN, or the
 * remote actor_spawn()'s error. Its return value acts as a handler's.
 */
typedef int (*actor_spawn_cb)(struct actor *self, void *state, int err, struct dist_pid pid,
                              void *cb_data);

/*
 * actor_spawn_remote: ask @node to spawn its spawnable @name with @arg (of @arg_type, @size
 * bytes for raw; packed here, and taken on 0 as a send takes a payload). With ACTOR_SPAWN_LINK
 * the new actor is linked to the caller, with ACTOR_SPAWN_MONITOR the caller monitors it with
 * the reference *@ref; both are in place before the new actor can end. *@ref (optional) is
 * the request's reference. @cb runs with the outcome, or ACTOR_ETIMEDOUT after @timeout
 * seconds; a new actor whose reply comes after that is killed. Actor only.
 * Returns 0 (then @cb will run), ACTOR_EINVAL, ACTOR_ENOTCONN (not distributed), ACTOR_EBUSY,
 * ACTOR_ENOMEM; @cb then never runs.
 */
ACTOR_API int actor_spawn_remote(struct actor *self, const char *node, const char *name,
                                 const struct actor_type *arg_type, void *arg, size_t size,
                                 unsigned flags, double timeout, actor_spawn_cb cb, void *cb_data,
                                 struct actor_ref *ref);

struct actor_dist_stats {
    uint64_t sent;          /* messages and signals handed to libdist */
    uint64_t received;      /* messages and signals that came from other nodes */
    uint64_t unknown_type;  /* dropped: a message type this node has not registered */
    uint64_t bad_payload;   /* dropped: a payload that does not unpack as its type */
    uint64_t undeliverable; /* dropped: no such local process (dead, stale or unknown name) */
    uint64_t dropped;       /* dropped on the way out: a peer's queue full, a bad target */
};

/* A snapshot of the distribution's counters (all 0 when not distributed). Any thread. */
ACTOR_API void actor_dist_stats(struct actor_system *sys, struct actor_dist_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* ACTOR_H */
