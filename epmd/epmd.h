/*
 * epmd.h: the epmd program's internal interface: the registry, the server and the client.
 */
#ifndef EPMD_H
#define EPMD_H

#include <stddef.h>
#include <stdint.h>

#include "dist.h"

struct ev_loop;

/* ---- Logging --------------------------------------------------------------------------------- */

enum epmd_log_level { EPMD_LOG_ERROR = 0, EPMD_LOG_INFO = 1, EPMD_LOG_DEBUG = 2 };

/*
 * epmd_log: write one line to stderr ("epmd: <time>: message"), or to syslog once
 * epmd_log_syslog() was called. Lines above the verbosity set by epmd_log_init() are dropped.
 */
void epmd_log_init(int verbosity);
void epmd_log_syslog(void);
void epmd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Registry -------------------------------------------------------------------------------- */

/*
 * A name known to the registry. Active names answer PORT_PLEASE2 and appear in NAMES. Names
 * that were registered and then left are remembered ("old/unused") to continue their
 * creation counter, as Erlang's epmd does.
 */
struct epmd_node {
    struct epmd_node *hnext;       /* hash chain */
    struct epmd_node *prev, *next; /* in the active or the old list, newest first */
    uint32_t hash;
    uint32_t cr;                /* creation counter, Erlang's scheme */
    uint32_t creation;          /* what the current registration was given */
    unsigned flags;             /* EPMD_NODE_* */
    void *owner;                /* connection holding an Erlang registration */
    int fd;                     /* that connection's socket, shown by DUMP */
    uint64_t expires_ms;        /* leased: monotonic expiry */
    uint32_t lease_ms;          /* leased: lease length */
    struct dist_epmd_node info; /* port, versions; name and extra point below */
    const uint8_t *token;       /* leased: owner token, in data */
    size_t token_len;
    struct dist_epmd_metalist meta; /* leased: metadata, in data */
    uint8_t *data;                  /* extra, token and metadata of this registration */
    size_t name_len;
    char name[]; /* NUL-terminated */
};

#define EPMD_NODE_ACTIVE (1u << 0) /* registered now; otherwise remembered */
#define EPMD_NODE_LEASED (1u << 1) /* kept by keep-alives, not by a connection */

/* Lease bounds, in milliseconds. */
#define EPMD_LEASE_DEFAULT_MS 60000u
#define EPMD_LEASE_MIN_MS     100u
#define EPMD_LEASE_MAX_MS     3600000u

/* Told of every registration (kind DIST_EPMD_REGISTERED), unregistration and expiry. */
typedef void (*epmd_event_cb)(int kind, const struct epmd_node *node, void *user_data);

/* Returns the seed for a new name's creation counter: Erlang uses time(NULL). */
typedef uint32_t (*epmd_seed_cb)(void *user_data);

struct epmd_registry;

/*
 * epmd_registry_new: an empty registry that remembers up to max_old unregistered names.
 * seed may be NULL for time(NULL). Returns NULL when out of memory.
 */
struct epmd_registry *epmd_registry_new(size_t max_old, epmd_seed_cb seed, void *seed_data);
void epmd_registry_free(struct epmd_registry *reg);

/* Called for every registration, unregistration and expiry (DIST_EPMD_REGISTERED...). */
void epmd_registry_on_event(struct epmd_registry *reg, epmd_event_cb cb, void *user_data);

/* Active registration by name, or NULL. */
struct epmd_node *epmd_registry_find(const struct epmd_registry *reg, const char *name, size_t len);
/* Active or remembered entry by name, or NULL. */
struct epmd_node *epmd_registry_lookup(const struct epmd_registry *reg, const char *name,
                                       size_t len);

/*
 * epmd_registry_alive: register an Erlang (connection-bound) node. The creation follows
 * Erlang: a new name seeds its counter, a remembered one continues it; the counter goes up
 * by one and never below 4; v6 nodes get the counter, v5 nodes counter % 3 + 1.
 * Returns the node, or NULL with *result DIST_EPMD_TAKEN (name active), DIST_EPMD_INVALID
 * (name or extra fails a check) or -ENOMEM.
 */
struct epmd_node *epmd_registry_alive(struct epmd_registry *reg, const struct dist_epmd_node *n,
                                      void *owner, int fd, uint64_t now_ms, int *result);

/*
 * epmd_registry_lease: a leased registration. The same owner token replaces a live lease at
 * once, with a new creation; another owner is refused (DIST_EPMD_TAKEN) until the lease
 * expires; a lapsed lease is expired first. lease_ms 0 means default_ms; others are clamped
 * to [EPMD_LEASE_MIN_MS, EPMD_LEASE_MAX_MS].
 */
struct epmd_node *epmd_registry_lease(struct epmd_registry *reg, const struct dist_epmd_lease *l,
                                      uint32_t default_ms, uint64_t now_ms, int *result);

/* Renew (keep-alive) or unregister a lease; returns a DIST_EPMD_* result. */
int epmd_registry_renew(struct epmd_registry *reg, const uint8_t *token, size_t token_len,
                        const char *name, size_t len, uint64_t now_ms, uint32_t *lease_ms);
int epmd_registry_unlease(struct epmd_registry *reg, const uint8_t *token, size_t token_len,
                          const char *name, size_t len, uint64_t now_ms);

/* Unregister an active node: it becomes remembered. kind is the event reported. */
void epmd_registry_remove(struct epmd_registry *reg, struct epmd_node *node, int kind);

/* Expire every lease whose time has come; returns how many. */
size_t epmd_registry_sweep(struct epmd_registry *reg, uint64_t now_ms);

/*
 * Iterate: the newest active node, then ->next; the newest remembered, then ->next; the
 * oldest remembered (Erlang's DUMP order), then ->prev.
 */
struct epmd_node *epmd_registry_active(const struct epmd_registry *reg);
struct epmd_node *epmd_registry_old(const struct epmd_registry *reg);
struct epmd_node *epmd_registry_oldest(const struct epmd_registry *reg);
size_t epmd_registry_count(const struct epmd_registry *reg);
size_t epmd_registry_old_count(const struct epmd_registry *reg);
size_t epmd_registry_leased_count(const struct epmd_registry *reg);

/* ---- Server ---------------------------------------------------------------------------------- */

#define EPMD_MAX_LISTEN 16

struct epmd_config {
    uint16_t port;
    const char *addresses;  /* comma-separated, or NULL for the wildcards */
    int relaxed;            /* -relaxed_command_check */
    int systemd;            /* -systemd: listeners come from socket activation */
    int debug;              /* -d count */
    double packet_timeout;  /* seconds */
    size_t max_connections; /* 0: from RLIMIT_NOFILE */
    uint32_t default_lease_ms;
};

struct epmd_server;

/*
 * epmd_listen_open: bind and listen as Erlang's epmd does (see listen.c). Fills up to @max
 * descriptors into @fds and returns how many, or -errno (-EADDRINUSE when another daemon
 * holds the port), with nothing left open.
 */
int epmd_listen_open(const struct epmd_config *cfg, int *fds, int max);

/*
 * epmd_server_new: bind the listeners and set up the server on loop.
 * Returns NULL with *err set (-errno; -EADDRINUSE when another daemon holds the port).
 */
struct epmd_server *epmd_server_new(struct ev_loop *loop, const struct epmd_config *cfg, int *err);
/* Close every connection and listener and free the server. */
void epmd_server_free(struct epmd_server *srv);
/* Non-zero once a KILL request asked the loop to end. */
int epmd_server_killed(const struct epmd_server *srv);

/* ---- Client modes (-names, -dump, -kill, -stop) -------------------------------------------- */

/* Run one client command against the daemon on port; returns the process exit status. */
int epmd_client_names(uint16_t port);
int epmd_client_dump(uint16_t port);
int epmd_client_kill(uint16_t port);
int epmd_client_stop(uint16_t port, const char *name);

#endif /* EPMD_H */
