/*
 * node.h: the node and its connections, shared between node.c and conn.c.
 *
 * A node owns a listener, an epmd client, a table of interned node names, one peer per known
 * node, and every connection. A peer holds what outlives one connection: the queue of frames
 * for that node (a frame writer), the reconnect backoff and a pending epmd lookup. A connection
 * is one socket and its state machine (conn.c):
 *
 *     outbound: CONNECTING --TCP up--+                      +--Auth ok--> UP --> CLOSED
 *                                    +--> TLS --> HELLO ----+
 *     inbound:  accept --------------+    (TLS skipped when insecure)   failure --> CLOSED
 *
 * Closed connections are kept on a list and freed from the node's prepare watcher, so a
 * connection may be closed from inside its own callbacks.
 */
#ifndef DIST_NODE_INTERNAL_H
#define DIST_NODE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#include "dist.h"
#include "frame.h"
#include "secure.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Bytes read from a socket in one call, and decrypted in one call. */
#define DIST__NODE_RX_SIZE (256u * 1024u)
/* Plain bytes moved into TLS (or written to the socket) in one step. */
#define DIST__NODE_TX_CHUNK (256u * 1024u)
/* Unsent bytes a connection leaves in the kernel (TCP_NOTSENT_LOWAT). */
#define DIST__NODE_NOTSENT (128 * 1024)
/* Inbound connections not yet authenticated, at most; more are closed at once. */
#define DIST__NODE_MAX_PENDING_IN 256u
/* Limits of the reader before the peer is authenticated: a hello and an auth fit. */
#define DIST__HS_FRAME_MAX 4096u

enum dist__conn_state {
    DIST__CONN_CONNECTING, /* nonblocking TCP connect in progress */
    DIST__CONN_TLS,        /* TLS 1.3 handshake */
    DIST__CONN_HELLO,      /* hello and auth */
    DIST__CONN_UP,         /* authenticated: frames flow */
    DIST__CONN_CLOSED,     /* socket closed; waiting to be freed */
};

/* Connection flags. */
#define DIST__CONN_OUTBOUND (1u << 0) /* we dialled it */
#define DIST__CONN_DIRTY    (1u << 1) /* has bytes to flush at the next prepare */
#define DIST__CONN_HELLO_IN (1u << 2) /* the peer's hello was taken */
#define DIST__CONN_PENDING  (1u << 3) /* inbound and counted in node->pending_in */

struct dist_peer;

struct dist_conn {
    struct dist_node *node;
    struct dist_peer *peer; /* NULL for an inbound connection until its hello names it */
    struct dist_conn *next; /* the node's live or dead list */
    struct dist_conn *prev;
    int fd;
    int state;
    unsigned flags;
    ev_io rio;
    ev_io wio;
    ev_timer timer; /* handshake deadline, then heartbeat */
    ev_tstamp last_rx, last_tx;
    struct dist__tls *tls; /* NULL when insecure */
    uint8_t binding[DIST__TLS_BINDING_LEN];
    size_t binding_len;
    struct dist__hs hs;
    struct dist_frame_reader rd;
    struct dist_outbuf hsout; /* handshake frames, before UP */
    struct dist_outbuf wire;  /* ciphertext the socket has not taken yet */
    char addr[64];            /* "host:port", for the log */
};

/* A known node and its outbound queue. */
struct dist_peer {
    struct dist_node *node;
    uint32_t index;
    const char *name;       /* interned; lives as long as the node */
    struct dist_conn *conn; /* the connection in use or in the making, or NULL */
    struct dist_frame_writer w;
    struct dist_epmd_lookup *lookup;
    ev_timer retry;
    uint32_t backoff_ms;
    int up; /* an up event was reported and no down since */
};

/* Interned node names: index -> name, and an open-addressing hash name -> index + 1. */
struct dist_names {
    char **names;
    uint32_t count, cap;
    uint32_t *slots;
    uint32_t nslots; /* a power of two, at least twice count */
};

struct dist_node {
    struct ev_loop *loop;
    char *name;
    char *host; /* the part after '@' */
    char *listen_host;
    uint16_t listen_port;
    char *epmd_host;
    uint16_t epmd_port;
    int insecure;
    int tls_mtls; /* a CA file was given: peers' certificates name their hosts */
    double tick;  /* seconds */
    double hs_timeout;
    uint32_t max_frame;
    size_t high_water;
    uint32_t backoff_min_ms, backoff_max_ms;
    dist_epmd_log_cb log_cb;
    void *log_user_data;
    struct dist_node_handlers h;
    void *user_data;
    int started;
    uint32_t creation;
    struct dist__cookie cookie;
    struct dist__tls_ctx *tls_ctx;
    struct dist_epmd_client *epmd;
    int lfd;
    ev_io accept_io;
    ev_prepare prepare;
    ev_idle spin;            /* active while busy-polling: the loop does not block */
    double busy_poll;        /* seconds; 0: never */
    ev_tstamp spin_until;    /* when busy-polling stops, unless traffic comes first */
    struct dist_conn *conns; /* live connections */
    struct dist_conn *dead;  /* closed, to be freed */
    unsigned pending_in;     /* inbound connections not yet UP */
    struct dist_names names;
    struct dist_peer **peers; /* by name index; NULL where none */
    uint32_t npeers;
    uint8_t *rxbuf;    /* DIST__NODE_RX_SIZE: socket reads */
    uint8_t *plainbuf; /* DIST__NODE_RX_SIZE: decrypted bytes */
};

/* ---- node.c ---- */

/* Traffic on a connection: busy-poll the loop a while, as a reply is likely soon. */
void dist__node_busy(struct dist_node *node);

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void dist__node_log(struct dist_node *node, int level, const char *fmt, ...);

/* The peer named @index (creating it), or NULL when memory runs out. */
struct dist_peer *dist__peer_get(struct dist_node *node, uint32_t index);

/* The connection @c of @peer went up: report it and flush the queue. */
void dist__peer_on_up(struct dist_peer *peer);

/*
 * The connection of @peer closed: @was_up says whether it had been UP, @reason is a
 * DIST_DOWN_* value. Reports the down, drops the queue or schedules a reconnect.
 */
void dist__peer_on_close(struct dist_peer *peer, int was_up, int reason);

/* Cancel a pending lookup and retry of @peer. */
void dist__peer_quiet(struct dist_peer *peer);

/* Deliver a frame received from the authenticated peer of @c. Returns 0 or an error. */
int dist__node_deliver(struct dist_conn *c, const struct dist_frame *f);

/* Make sure the node's prepare watcher runs before the loop next blocks. */
void dist__node_wake(struct dist_node *node);

/* ---- conn.c ---- */

/* Start dialling @addr for @peer; the connection becomes peer->conn. */
int dist__conn_dial(struct dist_node *node, struct dist_peer *peer, const struct sockaddr *addr,
                    unsigned addr_len);

/* Take an accepted socket. */
int dist__conn_accept(struct dist_node *node, int fd);

/* Mark @c to be flushed at the next prepare. */
void dist__conn_mark(struct dist_conn *c);

/* Write out what @c has pending, as far as the socket takes it. */
void dist__conn_flush(struct dist_conn *c);

/*
 * Close @c: log @why at @level, and tell its peer (@reason, a DIST_DOWN_* value) unless
 * @quiet. The memory is freed later by dist__conn_reap().
 */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
void dist__conn_close(struct dist_conn *c, int quiet, int reason, int level, const char *fmt, ...);

/* Send a goodbye, flush as far as the socket takes it, and close without telling the peer. */
void dist__conn_goodbye(struct dist_conn *c, const char *why);

/* Free the closed connections. */
void dist__conn_reap(struct dist_node *node);

/* Bytes waiting to be written for @peer: its queue and its connection's ciphertext. */
size_t dist__peer_pending(const struct dist_peer *peer);

#endif /* DIST_NODE_INTERNAL_H */
