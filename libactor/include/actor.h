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
    X(ENOMEM, -31009, "out of memory")

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
    ACTOR_NORMAL = 0,        /* normal: does not kill a linked actor that doesn't trap exits */
    ACTOR_KILL = -32001,     /* kill: untrappable; linked actors receive ACTOR_KILLED */
    ACTOR_KILLED = -32002,   /* killed: what an actor ended by ACTOR_KILL propagates */
    ACTOR_SHUTDOWN = -32003, /* shutdown: an orderly stop asked by a supervisor */
    ACTOR_NOPROC = -32004,   /* noproc: the other side was already dead */
};

/* "normal", "kill", "killed", "shutdown", "noproc", an actor_strerror() text, or "custom". */
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
 * Returns 0, ACTOR_ENOPROC (dead or stale PID), ACTOR_EBUSY (bounded mailbox full), or
 * ACTOR_EINVAL.
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
 * caller's state, exactly once: @err is 0 with @reply set, ACTOR_ETIMEDOUT, or ACTOR_ENOPROC
 * (the callee was or became dead without replying). Its return value acts as a handler's.
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
 * Returns 0, ACTOR_ETIMEDOUT, ACTOR_ENOPROC, ACTOR_ENOMEM, or ACTOR_EINVAL (bad arguments or
 * called on a scheduler thread; the payload is then left to the caller).
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

#ifdef __cplusplus
}
#endif

#endif /* ACTOR_H */
