/*
 * conn.c: one connection between two nodes, on the node's libev loop.
 *
 *     outbound: CONNECTING --connected--+
 *     inbound:  accepted ---------------+--> TLS --established--> HELLO --auth ok--> UP
 *                                           (skipped when insecure)    |               |
 *     any failure, the handshake deadline, EOF, a bad frame, silence, goodbye --> CLOSED
 *
 * Reads take up to DIST__NODE_RX_SIZE bytes at once; TLS decrypts into a buffer of that size
 * and the frame reader joins the frames. Until the peer is authenticated the reader accepts
 * only small frames and no fragments, so an unauthenticated peer cannot make it allocate.
 *
 * Writes are coalesced: frames land in a buffer (the handshake's, then the peer's writer) and
 * the node's prepare watcher flushes every marked connection once per loop iteration. A flush
 * moves up to DIST__NODE_TX_CHUNK bytes at a time through TLS into the wire buffer and to the
 * socket, and waits for the socket to drain before encrypting more, so the peer's queue stays
 * the one place where backpressure shows.
 *
 * When an inbound hello names a node that we are dialling or connected to already, conn_claim()
 * decides which connection stays: in a simultaneous connect, the one dialled by the node whose
 * name sorts lower, on both sides.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "node.h"

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
static int flush_now(struct dist_conn *c);

/* ---- Lists ----------------------------------------------------------------------------------- */

static void list_push(struct dist_conn **head, struct dist_conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head != NULL)
        (*head)->prev = c;
    *head = c;
}

static void list_remove(struct dist_conn **head, struct dist_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

/* ---- Life ------------------------------------------------------------------------------------ */

static const char *conn_who(const struct dist_conn *c)
{
    return c->peer != NULL ? c->peer->name : c->addr;
}

static struct dist_frame_limits hs_limits(void)
{
    return (struct dist_frame_limits){
        .max_frame = DIST__HS_FRAME_MAX,
        .max_message = 1,
        .max_streams = 1,
        .max_pending = 1,
    };
}

/* A connection on @fd, which it takes: on failure (NULL) @fd is closed. */
static struct dist_conn *conn_new(struct dist_node *node, int fd, unsigned flags)
{
    struct dist_conn *c = calloc(1, sizeof(*c));
    struct dist_frame_limits lim = hs_limits();

    if (c == NULL || dist__frame_reader_init(&c->rd, &lim) != 0) {
        free(c);
        close(fd);
        return NULL;
    }
    c->node = node;
    c->fd = fd;
    c->flags = flags;
    c->state = DIST__CONN_CONNECTING;
    dist__outbuf_init(&c->hsout);
    dist__outbuf_init(&c->wire);
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timer_cb, node->hs_timeout, 0.);
    c->last_rx = c->last_tx = ev_now(node->loop);
    ev_timer_start(node->loop, &c->timer);
    list_push(&node->conns, c);
    return c;
}

static void conn_free(struct dist_conn *c)
{
    dist__tls_free(c->tls);
    dist__hs_done(&c->hs);
    dist__frame_reader_done(&c->rd);
    dist__outbuf_done(&c->hsout);
    dist__outbuf_done(&c->wire);
    free(c);
}

void dist__conn_reap(struct dist_node *node)
{
    while (node->dead != NULL) {
        struct dist_conn *c = node->dead;
        list_remove(&node->dead, c);
        conn_free(c);
    }
}

/* @c no longer counts against the node's cap on inbound connections in their handshake. */
static void pending_done(struct dist_conn *c)
{
    if (c->flags & DIST__CONN_PENDING) {
        c->flags &= ~DIST__CONN_PENDING;
        c->node->pending_in--;
    }
}

void dist__conn_close(struct dist_conn *c, int quiet, int reason, int level, const char *fmt, ...)
{
    struct dist_node *node = c->node;
    struct dist_peer *p = c->peer;
    int was_up = c->state == DIST__CONN_UP;
    char msg[512];
    va_list ap;

    if (c->state == DIST__CONN_CLOSED)
        return;
    pending_done(c);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dist__node_log(node, level, "connection %s %s: %s",
                   c->flags & DIST__CONN_OUTBOUND ? "to" : "from", conn_who(c), msg);
    /* Our last handshake bytes (a TLS alert, an auth the peer will refuse) still go out. */
    if (c->state == DIST__CONN_HELLO || c->state == DIST__CONN_TLS)
        flush_now(c);
    ev_io_stop(node->loop, &c->rio);
    ev_io_stop(node->loop, &c->wio);
    ev_timer_stop(node->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    c->state = DIST__CONN_CLOSED;
    list_remove(&node->conns, c);
    list_push(&node->dead, c);
    dist__node_wake(node);
    if (p != NULL && p->conn == c) {
        p->conn = NULL;
        dist__peer_on_close(p, was_up, quiet ? 0 : reason);
    }
}

/* ---- Writing --------------------------------------------------------------------------------- */

void dist__conn_mark(struct dist_conn *c)
{
    if (c->flags & DIST__CONN_DIRTY)
        return;
    c->flags |= DIST__CONN_DIRTY;
    dist__node_wake(c->node);
}

/* Move the ciphertext TLS has made into the wire buffer. */
static int tls_pump(struct dist_conn *c)
{
    size_t n = dist__tls_want_write(c->tls);
    uint8_t *p;

    if (n == 0)
        return 0;
    p = dist__outbuf_append(&c->wire, n);
    if (p == NULL)
        return -ENOMEM;
    c->wire.tail -= n - dist__tls_take(c->tls, p, n);
    return 0;
}

/* Write from @b; returns 1 when the socket took everything, 0 when it is full, or -errno. */
static int sock_write(struct dist_conn *c, struct dist_outbuf *b, size_t max)
{
    size_t n = dist__outbuf_pending(b) < max ? dist__outbuf_pending(b) : max;
    ssize_t w = send(c->fd, dist__outbuf_data(b), n, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    dist__outbuf_consume(b, (size_t)w);
    c->last_tx = ev_now(c->node->loop);
    dist__node_busy(c->node);
    return (size_t)w == n;
}

/* The plain bytes to send next: the handshake's, then the peer's queue once UP. */
static struct dist_outbuf *conn_source(struct dist_conn *c)
{
    struct dist_frame_writer *w;

    if (dist__outbuf_pending(&c->hsout) > 0)
        return &c->hsout;
    if (c->state != DIST__CONN_UP)
        return NULL;
    w = &c->peer->w;
    if (dist__outbuf_pending(&w->out) < DIST__NODE_TX_CHUNK &&
        dist__frame_writer_fill(w, DIST__NODE_TX_CHUNK) != 0)
        return NULL;
    return dist__outbuf_pending(&w->out) > 0 ? &w->out : NULL;
}

/* One step of a flush: 1 to go on, 0 when done or blocked, or a negative error. */
static int flush_step(struct dist_conn *c)
{
    struct dist_outbuf *src;
    size_t n;
    int rc;

    if (c->tls != NULL) {
        rc = tls_pump(c);
        if (rc != 0)
            return rc;
        if (dist__outbuf_pending(&c->wire) > 0) {
            rc = sock_write(c, &c->wire, SIZE_MAX);
            if (rc <= 0)
                return rc;
        }
    }
    src = conn_source(c);
    if (src == NULL)
        return 0;
    if (c->tls == NULL)
        return sock_write(c, src, DIST__NODE_TX_CHUNK);
    n = dist__outbuf_pending(src) < DIST__NODE_TX_CHUNK ? dist__outbuf_pending(src)
                                                        : DIST__NODE_TX_CHUNK;
    rc = dist__tls_write(c->tls, dist__outbuf_data(src), n);
    if (rc != 0)
        return rc;
    dist__outbuf_consume(src, n);
    return 1;
}

/* Whether anything is left to write once the socket drains. */
static int flush_pending(struct dist_conn *c)
{
    if (dist__outbuf_pending(&c->wire) > 0 || dist__outbuf_pending(&c->hsout) > 0)
        return 1;
    return c->state == DIST__CONN_UP && dist__frame_writer_pending(&c->peer->w) > 0;
}

/* Write as far as the socket takes it; 0, or a negative error. */
static int flush_now(struct dist_conn *c)
{
    int rc;

    do {
        rc = flush_step(c);
    } while (rc > 0);
    return rc;
}

void dist__conn_flush(struct dist_conn *c)
{
    int rc;

    c->flags &= ~DIST__CONN_DIRTY;
    if (c->state == DIST__CONN_CONNECTING || c->state == DIST__CONN_CLOSED)
        return;
    rc = flush_now(c);
    if (rc < 0) {
        dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_WARN, "write: %s",
                         dist_strerror(rc));
        return;
    }
    if (flush_pending(c))
        ev_io_start(c->node->loop, &c->wio);
    else
        ev_io_stop(c->node->loop, &c->wio);
}

/* Queue a handshake frame. */
static int send_hs_frame(struct dist_conn *c, const struct dist_frame *f)
{
    int rc = dist__frame_encode(&c->hsout, f);

    if (rc == 0)
        dist__conn_mark(c);
    return rc;
}

size_t dist__peer_pending(const struct dist_peer *peer)
{
    size_t n = dist__frame_writer_pending(&peer->w);

    if (peer->conn != NULL)
        n += dist__outbuf_pending(&peer->conn->wire);
    return n;
}

/* ---- Handshake ------------------------------------------------------------------------------- */

static void fail(struct dist_conn *c, int reason, const char *what, int err)
{
    dist__conn_close(c, 0, reason, DIST_EPMD_LOG_WARN, "%s: %s", what, dist_strerror(err));
}

static int send_hello(struct dist_conn *c)
{
    struct dist__hs_hello h;
    struct dist_frame f = {.kind = DIST_FRAME_HELLO};
    int rc = dist__hs_hello(&c->hs, &h);

    if (rc != 0)
        return rc;
    f.u.hello.version = h.version;
    f.u.hello.node = c->node->name;
    f.u.hello.creation = h.creation;
    f.u.hello.nonce = (struct dist_bytes){h.nonce, h.nonce_len};
    f.u.hello.flags = h.flags;
    c->state = DIST__CONN_HELLO;
    return send_hs_frame(c, &f);
}

/* Drive the TLS handshake; on completion take the channel binding and say hello. */
static void tls_step(struct dist_conn *c)
{
    int rc = dist__tls_handshake(c->tls);

    if (tls_pump(c) != 0) {
        fail(c, DIST_DOWN_CONNECTION_CLOSED, "TLS", -ENOMEM);
        return;
    }
    dist__conn_mark(c);
    if (rc == DIST_EAGAIN_MORE)
        return;
    if (rc == 0)
        rc = dist__tls_binding(c->tls, c->binding);
    if (rc == 0) {
        c->binding_len = DIST__TLS_BINDING_LEN;
        rc = send_hello(c);
    }
    if (rc != 0)
        dist__conn_close(
            c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_WARN, "TLS handshake failed: %s",
            *dist__tls_reason(c->tls) != '\0' ? dist__tls_reason(c->tls) : dist_strerror(rc));
}

static int session_start(struct dist_conn *c)
{
    struct dist_node *node = c->node;
    int outbound = (c->flags & DIST__CONN_OUTBOUND) != 0;
    int one = 1, notsent = DIST__NODE_NOTSENT;
    int rc;

    if (node->creation == 0)
        return DIST_EINVAL;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /*
     * Keep little unsent data in the kernel: what waits, waits in the peer's queue, where
     * small frames overtake the fragments of large ones. A deep kernel queue would hold a
     * heartbeat or a small message behind megabytes of a bulk stream.
     */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent, sizeof(notsent));
    rc = dist__hs_init(&c->hs, &node->cookie, node->name, node->creation, outbound);
    if (rc == 0 && outbound)
        rc = dist__hs_expect(&c->hs, c->peer->name);
    if (rc == 0 && !node->insecure)
        rc = dist__tls_new(node->tls_ctx, !outbound, NULL, &c->tls);
    if (rc != 0)
        return rc;
    ev_io_start(node->loop, &c->rio);
    if (node->insecure)
        return send_hello(c);
    c->state = DIST__CONN_TLS;
    if (outbound)
        tls_step(c);
    return 0;
}

/*
 * An inbound hello names @name, of incarnation @creation: decide whether this connection is
 * the one to keep for that node. Returns 1 when it is, now attached to its peer, or 0 when it
 * was closed.
 *
 *   we dial it too (lookup or connection in progress)  the connection dialled by the lower
 *                                                      name wins, on both sides
 *   an UP connection to the same incarnation           ours stays: the new one is the loser
 *                                                      of a simultaneous connect
 *   an UP connection to an older incarnation           the peer restarted: the new one wins
 */
static int conn_claim(struct dist_conn *c, const char *name, uint32_t creation)
{
    struct dist_node *node = c->node;
    int idx = strcmp(name, node->name) == 0 ? DIST_EBADNAME : dist_node_intern(node, name);
    struct dist_peer *p = idx > 0 ? dist__peer_get(node, (uint32_t)idx) : NULL;
    struct dist_conn *old = p != NULL ? p->conn : NULL;
    int old_up = old != NULL && old->state == DIST__CONN_UP;
    int dialling = old != NULL && (old->flags & DIST__CONN_OUTBOUND) && !old_up;

    if (p == NULL) {
        dist__conn_close(c, 1, 0, DIST_EPMD_LOG_WARN, "hello from '%s' refused: %s", name,
                         idx < 0 ? dist_strerror(idx) : "out of memory");
        return 0;
    }
    dialling |= p->lookup != NULL;
    if ((dialling && strcmp(node->name, name) < 0) ||
        (old_up && dist__hs_peer_creation(&old->hs) == creation)) {
        dist__conn_close(c, 1, 0, DIST_EPMD_LOG_INFO, "simultaneous connect with %s: keeping %s",
                         name, old_up ? "the connection up" : "ours");
        return 0;
    }
    if (dialling)
        dist__node_log(node, DIST_EPMD_LOG_INFO, "simultaneous connect with %s: keeping theirs",
                       name);
    if (old != NULL)
        dist__conn_close(old, !old_up, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_INFO,
                         "replaced by a connection from %s", name);
    dist__peer_quiet(p);
    c->peer = p;
    p->conn = c;
    return 1;
}

static void on_hello(struct dist_conn *c, const struct dist_frame *f)
{
    const char *name = f->u.hello.node;
    struct dist__hs_hello h = {
        .version = f->u.hello.version,
        .node = name,
        .node_len = strlen(name),
        .creation = f->u.hello.creation,
        .nonce = f->u.hello.nonce.data,
        .nonce_len = f->u.hello.nonce.len,
        .flags = f->u.hello.flags,
    };
    struct dist__hs_auth auth;
    struct dist_frame out = {.kind = DIST_FRAME_AUTH};
    int rc;

    if (c->flags & DIST__CONN_HELLO_IN) {
        dist__conn_close(c, 0, DIST_DOWN_PROTOCOL_ERROR, DIST_EPMD_LOG_WARN, "a second hello");
        return;
    }
    c->flags |= DIST__CONN_HELLO_IN;
    if (dist__node_name_check(name, h.node_len) != 0) {
        dist__conn_close(c, 0, 0, DIST_EPMD_LOG_WARN, "hello with a malformed node name");
        return;
    }
    if (!(c->flags & DIST__CONN_OUTBOUND) && !conn_claim(c, name, h.creation))
        return;
    rc = dist__hs_on_hello(&c->hs, &h, c->binding, c->binding_len, &auth);
    if (rc == 0 && c->node->tls_mtls)
        rc = dist__tls_check_host(c->tls, strchr(name, '@') + 1);
    if (rc != 0) {
        dist__conn_close(c, 0, rc == DIST_EAUTH ? DIST_DOWN_AUTH_FAILED : DIST_DOWN_PROTOCOL_ERROR,
                         DIST_EPMD_LOG_WARN, "handshake failed: %s",
                         *dist__hs_reason(&c->hs) ? dist__hs_reason(&c->hs) : dist_strerror(rc));
        return;
    }
    out.u.auth.mac = (struct dist_bytes){auth.mac, auth.mac_len};
    if (send_hs_frame(c, &out) != 0)
        fail(c, DIST_DOWN_CONNECTION_CLOSED, "auth", -ENOMEM);
}

/* Authenticated: open the reader to the node's limits, keeping the bytes it holds. */
static int reader_open(struct dist_conn *c)
{
    struct dist_frame_limits lim = {.max_frame = c->node->max_frame};
    struct dist_frame_reader r;
    int rc = dist__frame_reader_init(&r, &lim);

    if (rc != 0)
        return rc;
    rc = dist__frame_reader_feed(&r, c->rd.buf + c->rd.start, c->rd.end - c->rd.start);
    if (rc != 0) {
        dist__frame_reader_done(&r);
        return rc;
    }
    dist__frame_reader_done(&c->rd);
    c->rd = r;
    return 0;
}

static void on_auth(struct dist_conn *c, const struct dist_frame *f)
{
    struct dist__hs_auth a = {f->u.auth.mac.data, f->u.auth.mac.len};
    struct dist_node *node = c->node;
    int rc = dist__hs_on_auth(&c->hs, &a);

    if (rc != 0) {
        dist__conn_close(c, 0, rc == DIST_EAUTH ? DIST_DOWN_AUTH_FAILED : DIST_DOWN_PROTOCOL_ERROR,
                         DIST_EPMD_LOG_WARN, "authentication failed: %s", dist__hs_reason(&c->hs));
        return;
    }
    rc = reader_open(c);
    if (rc != 0) {
        fail(c, DIST_DOWN_PROTOCOL_ERROR, "after auth", rc);
        return;
    }
    c->state = DIST__CONN_UP;
    pending_done(c);
    ev_timer_stop(node->loop, &c->timer);
    ev_timer_set(&c->timer, node->tick / 4, node->tick / 4);
    ev_timer_start(node->loop, &c->timer);
    dist__node_log(node, DIST_EPMD_LOG_INFO, "connection %s %s is up (%s)",
                   c->flags & DIST__CONN_OUTBOUND ? "to" : "from", c->peer->name,
                   c->tls != NULL ? "TLS 1.3" : "plain TCP");
    dist__peer_on_up(c->peer);
}

/* ---- Reading --------------------------------------------------------------------------------- */

static void on_frame(struct dist_conn *c, const struct dist_frame *f)
{
    int rc;

    if (c->state != DIST__CONN_UP) {
        if (f->kind == DIST_FRAME_HELLO)
            on_hello(c, f);
        else if (f->kind == DIST_FRAME_AUTH && (c->flags & DIST__CONN_HELLO_IN))
            on_auth(c, f);
        else
            dist__conn_close(c, 0, DIST_DOWN_PROTOCOL_ERROR, DIST_EPMD_LOG_WARN,
                             "frame of kind %d before authentication", (int)f->kind);
        return;
    }
    switch (f->kind) {
    case DIST_FRAME_TICK:
        return;
    case DIST_FRAME_GOODBYE:
        dist__conn_close(c, 0, DIST_DOWN_GRACEFUL_SHUTDOWN, DIST_EPMD_LOG_INFO, "goodbye (%s)",
                         f->u.goodbye.reason);
        return;
    case DIST_FRAME_HELLO:
    case DIST_FRAME_AUTH:
        dist__conn_close(c, 0, DIST_DOWN_PROTOCOL_ERROR, DIST_EPMD_LOG_WARN,
                         "handshake frame after authentication");
        return;
    default:
        rc = dist__node_deliver(c, f);
        if (rc != 0)
            fail(c, DIST_DOWN_PROTOCOL_ERROR, "bad message", rc);
    }
}

/* Take decrypted (or plain) bytes and act on every whole frame. */
static void plain_in(struct dist_conn *c, const uint8_t *data, size_t len)
{
    struct dist_frame f;
    int rc = dist__frame_reader_feed(&c->rd, data, len);

    while (rc == 0 && c->state != DIST__CONN_CLOSED) {
        rc = dist__frame_reader_next(&c->rd, &f);
        if (rc <= 0)
            break;
        on_frame(c, &f);
        rc = 0;
    }
    if (rc < 0 && c->state != DIST__CONN_CLOSED)
        fail(c, DIST_DOWN_PROTOCOL_ERROR, "malformed input", rc);
}

/* The most plain text one TLS record holds. */
#define TLS_RECORD_MAX 16384u

static void tls_in(struct dist_conn *c, const uint8_t *data, size_t len)
{
    uint8_t *buf = c->node->plainbuf;
    int rc = dist__tls_feed(c->tls, data, len);

    if (rc != 0) {
        dist__conn_close(c, 0, DIST_DOWN_PROTOCOL_ERROR, DIST_EPMD_LOG_WARN, "%s",
                         *dist__tls_reason(c->tls) ? dist__tls_reason(c->tls) : dist_strerror(rc));
        return;
    }
    if (c->state == DIST__CONN_TLS)
        tls_step(c);
    while (c->state == DIST__CONN_HELLO || c->state == DIST__CONN_UP) {
        /* Gather many records before the frame reader sees them: one feed per buffer. */
        size_t fill = 0;
        do {
            rc = dist__tls_read(c->tls, buf + fill, DIST__NODE_RX_SIZE - fill);
            fill += rc > 0 ? (size_t)rc : 0;
        } while (rc > 0 && DIST__NODE_RX_SIZE - fill >= TLS_RECORD_MAX);
        if (fill > 0)
            plain_in(c, buf, fill);
        if (rc > 0 || c->state == DIST__CONN_CLOSED)
            continue;
        if (rc == 0)
            dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_INFO,
                             "TLS session closed by the peer");
        else if (rc != DIST_EAGAIN_MORE)
            dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_WARN, "%s",
                             dist__tls_reason(c->tls));
        break;
    }
    if (c->state != DIST__CONN_CLOSED && dist__tls_want_write(c->tls) > 0)
        dist__conn_mark(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dist_conn *c = container_of(w, struct dist_conn, rio);
    ssize_t n = read(c->fd, c->node->rxbuf, DIST__NODE_RX_SIZE);

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_INFO, "%s",
                         n == 0 ? "closed by the peer" : strerror(errno));
        return;
    }
    c->last_rx = ev_now(loop);
    dist__node_busy(c->node);
    if (c->tls != NULL)
        tls_in(c, c->node->rxbuf, (size_t)n);
    else
        plain_in(c, c->node->rxbuf, (size_t)n);
}

/* ---- Connecting, timers ---------------------------------------------------------------------- */

static void connected(struct dist_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    int rc;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_WARN, "connect to %s: %s",
                         c->addr, strerror(err));
        return;
    }
    ev_io_stop(c->node->loop, &c->wio);
    rc = session_start(c);
    if (rc != 0)
        fail(c, DIST_DOWN_CONNECTION_CLOSED, "session", rc);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dist_conn *c = container_of(w, struct dist_conn, wio);

    if (c->state == DIST__CONN_CONNECTING)
        connected(c);
    else
        dist__conn_flush(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dist_conn *c = container_of(w, struct dist_conn, timer);
    struct dist_node *node = c->node;
    struct dist_frame tick = {.kind = DIST_FRAME_TICK};
    ev_tstamp now = ev_now(loop);

    if (c->state != DIST__CONN_UP) {
        dist__conn_close(c, 0, DIST_DOWN_CONNECTION_CLOSED, DIST_EPMD_LOG_WARN,
                         "handshake not done within %.3g s", node->hs_timeout);
        return;
    }
    if (now - c->last_rx >= node->tick) {
        dist__conn_close(c, 0, DIST_DOWN_HEARTBEAT_TIMEOUT, DIST_EPMD_LOG_WARN,
                         "nothing received for %.3g s", now - c->last_rx);
        return;
    }
    if (now - c->last_tx >= node->tick / 4 && dist__frame_writer_pending(&c->peer->w) == 0 &&
        dist__frame_writer_put(&c->peer->w, &tick, 0) == 0)
        dist__conn_mark(c);
}

static void addr_format(char *buf, size_t cap, const struct sockaddr *sa)
{
    char host[64] = "?";
    unsigned port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(buf, cap, "%s:%u", host, port);
}

int dist__conn_dial(struct dist_node *node, struct dist_peer *peer, const struct sockaddr *addr,
                    unsigned addr_len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct dist_conn *c;

    if (fd < 0)
        return -errno;
    if (connect(fd, addr, addr_len) != 0 && errno != EINPROGRESS) {
        int err = -errno;
        close(fd);
        return err;
    }
    c = conn_new(node, fd, DIST__CONN_OUTBOUND);
    if (c == NULL)
        return -ENOMEM;
    addr_format(c->addr, sizeof(c->addr), addr);
    c->peer = peer;
    peer->conn = c;
    ev_io_start(node->loop, &c->wio);
    return 0;
}

int dist__conn_accept(struct dist_node *node, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct dist_conn *c;
    int rc;

    if (node->pending_in >= DIST__NODE_MAX_PENDING_IN) {
        dist__node_log(node, DIST_EPMD_LOG_WARN,
                       "refused a connection: %u are in their handshake already", node->pending_in);
        close(fd);
        return DIST_ELIMIT;
    }
    c = conn_new(node, fd, DIST__CONN_PENDING);
    if (c == NULL)
        return -ENOMEM;
    node->pending_in++;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        addr_format(c->addr, sizeof(c->addr), (struct sockaddr *)&ss);
    rc = session_start(c);
    if (rc != 0)
        dist__conn_close(c, 1, 0, DIST_EPMD_LOG_WARN, "refused: %s",
                         rc == DIST_EINVAL ? "not registered with epmd yet" : dist_strerror(rc));
    return 0;
}

/* Read and drop what the peer sent, so that close() sends a FIN rather than a reset. */
static void drain(int fd, uint8_t *buf)
{
    for (int i = 0; i < 16; i++) {
        if (recv(fd, buf, DIST__NODE_RX_SIZE, MSG_DONTWAIT) <= 0)
            return;
    }
}

void dist__conn_goodbye(struct dist_conn *c, const char *why)
{
    struct dist_frame bye = {.kind = DIST_FRAME_GOODBYE, .u.goodbye.reason = why};

    /* Best effort: a peer that is gone already makes the writes fail, and that is fine. */
    if (c->state == DIST__CONN_UP && dist__frame_writer_put(&c->peer->w, &bye, 0) == 0 &&
        flush_now(c) == 0 && c->tls != NULL && dist__tls_close(c->tls) == 0)
        flush_now(c);
    if (c->state != DIST__CONN_CLOSED) {
        drain(c->fd, c->node->rxbuf);
        shutdown(c->fd, SHUT_WR);
        dist__conn_close(c, 1, 0, DIST_EPMD_LOG_INFO, "goodbye sent (%s)", why);
    }
}
