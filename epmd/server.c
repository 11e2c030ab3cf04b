/*
 * server.c: the daemon's event loop side: listeners, connections, requests and replies.
 *
 * A connection's life, as in Erlang's epmd_srv.c:
 *
 *   accept --> READING --(u16 Length + body complete)--> request
 *                 |                                        |
 *                 | packet timeout, bad length,            +-- ALIVE2: reply; KEEP until the
 *                 | extra bytes, EOF: close                |   peer closes or sends a byte
 *                 v                                        +-- Erlang's others: reply, close
 *               closed                                     +-- extension: reply, read the next
 *                                                          +-- WATCH: snapshot, then events
 *
 * Erlang's replies carry no length, so a reply ends where the connection closes. The
 * extension's replies are framed (u32 Length | Tag | body), so a session may carry many.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "epmd.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* A watcher further behind than this (past its first listing) is dropped. */
#define WATCH_MAX_PENDING (1u << 20)
/* All replies waiting to be written, across connections, stay under this. */
#define OUTPUT_BUDGET (128u << 20)
/* An output buffer larger than this is freed once it drains. */
#define OUTPUT_KEEP (64u << 10)
/* After an accept error other than "try again", listeners pause this long (seconds). */
#define ACCEPT_BACKOFF 0.1
/* How often leases are swept, in seconds. */
#define SWEEP_INTERVAL 0.1
/* Accepts per listener wake-up, so one busy listener cannot starve the rest. */
#define ACCEPT_BATCH 64

struct epmd_conn {
    ev_io rio;
    ev_io wio;
    ev_timer timer; /* packet timeout while a request is awaited */
    struct epmd_server *srv;
    struct epmd_conn *prev, *next; /* every connection, or every watcher */
    int fd;
    unsigned flags;         /* CONN_* */
    struct epmd_node *node; /* the Erlang registration this connection holds */
    uint8_t *in;            /* DIST_EPMD_BUFSIZE bytes while a request is read */
    size_t in_len;
    uint8_t *out; /* reply bytes not yet written */
    size_t out_off, out_len, out_cap;
    size_t watch_slack; /* a watcher's first listing, not counted as falling behind */
};

#define CONN_LOCAL   (1u << 0) /* the peer is on this host: it may register, dump, kill, stop */
#define CONN_KEEP    (1u << 1) /* sent ALIVE2: lives until the peer closes; any byte ends it */
#define CONN_WATCH   (1u << 2) /* receives events; any byte ends it */
#define CONN_CLOSING (1u << 3) /* close once the output is written */
#define CONN_KILL    (1u << 4) /* stop the daemon once the output is written */

struct conn_list {
    struct epmd_conn *head;
    size_t count;
};

struct epmd_server {
    struct ev_loop *loop;
    struct epmd_config cfg;
    struct epmd_registry *reg;
    ev_io listeners[EPMD_MAX_LISTEN];
    int nlisten;
    struct conn_list conns;
    struct conn_list watchers;
    size_t max_conns;
    int reserve_fd;        /* spare descriptor, given up to shed a connection on EMFILE */
    ev_timer sweep;        /* runs while leases exist */
    ev_timer accept_pause; /* restarts the listeners after an accept error */
    size_t out_total;      /* bytes of output buffers, held under OUTPUT_BUDGET */
    ev_tstamp refused_at;  /* when a refusal was last logged */
    size_t refused;        /* refusals since then */
    int killed;
};

static int conn_flush(struct epmd_conn *c);
static void conn_close(struct epmd_conn *c);

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void list_add(struct conn_list *l, struct epmd_conn *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head != NULL)
        l->head->prev = c;
    l->head = c;
    l->count++;
}

static void list_del(struct conn_list *l, struct epmd_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->count--;
}

/* ---- Output --------------------------------------------------------------------------------- */

/* Room for n more output bytes; NULL when out of memory or over the daemon's budget. */
static uint8_t *conn_reserve(struct epmd_conn *c, size_t n)
{
    struct epmd_server *srv = c->srv;

    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap > 0 ? c->out_cap : 64;
        uint8_t *out;

        while (cap < c->out_len + n)
            cap *= 2;
        if (srv->out_total - c->out_cap + cap > OUTPUT_BUDGET) {
            epmd_log(EPMD_LOG_ERROR, "output budget of %u MiB reached: closing fd %d",
                     OUTPUT_BUDGET >> 20, c->fd);
            return NULL;
        }
        out = realloc(c->out, cap);
        if (out == NULL)
            return NULL;
        srv->out_total = srv->out_total - c->out_cap + cap;
        c->out = out;
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

static void conn_out_free(struct epmd_conn *c)
{
    c->srv->out_total -= c->out_cap;
    free(c->out);
    c->out = NULL;
    c->out_cap = c->out_len = c->out_off = 0;
}

static int conn_put(struct epmd_conn *c, const void *data, size_t n)
{
    uint8_t *p = conn_reserve(c, n);

    if (p == NULL)
        return -ENOMEM;
    memcpy(p, data, n);
    c->out_len += n;
    return 0;
}

/* Close after the output drains, as Erlang does after every reply but ALIVE2's. */
static int conn_finish(struct epmd_conn *c)
{
    c->flags |= CONN_CLOSING;
    ev_io_stop(c->srv->loop, &c->rio);
    return conn_flush(c);
}

/* Write what can be written now. Returns -1 when the connection was closed. */
static int conn_flush(struct epmd_conn *c)
{
    int failed = 0;

    while (c->out_off < c->out_len && !failed) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->srv->loop, &c->wio);
            return 0;
        }
        if (n < 0) {
            epmd_log(EPMD_LOG_DEBUG, "write failed on fd %d: %s", c->fd, strerror(errno));
            failed = 1;
        } else {
            c->out_off += (size_t)n;
        }
    }
    if (c->out_cap > OUTPUT_KEEP)
        conn_out_free(c);
    c->out_off = c->out_len = 0;
    c->watch_slack = 0;
    ev_io_stop(c->srv->loop, &c->wio);
    /* KILL stops the daemon whether or not its "OK" could be written, as Erlang's does. */
    if (c->flags & CONN_KILL) {
        c->srv->killed = 1;
        ev_break(c->srv->loop, EVBREAK_ALL);
    }
    if (failed || (c->flags & CONN_CLOSING)) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static int conn_process(struct epmd_conn *c);

static int output_pending(const struct epmd_conn *c)
{
    return c->out_off < c->out_len;
}

/*
 * Output drained: a session paused for backpressure serves the requests it has buffered and
 * then reads again.
 */
static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct epmd_conn *c = container_of(w, struct epmd_conn, wio);

    if (conn_flush(c) != 0 || output_pending(c))
        return;
    if (!(c->flags & (CONN_KEEP | CONN_WATCH)) && conn_process(c) != 0)
        return;
    if (!(c->flags & CONN_CLOSING) && !output_pending(c))
        ev_io_start(loop, &c->rio);
}

/* ---- Watch events ---------------------------------------------------------------------------- */

static void entry_of(const struct epmd_node *n, struct dist_epmd_entry *e)
{
    e->node = n->info;
    e->creation = n->creation;
    e->flags = (n->flags & EPMD_NODE_LEASED) ? DIST_EPMD_ENTRY_LEASED : 0;
    e->lease_ms = n->lease_ms;
    e->meta = n->meta;
}

static void event_cb(int kind, const struct epmd_node *n, void *user_data)
{
    struct epmd_server *srv = user_data;
    struct dist_epmd_entry e;
    uint8_t buf[8192];
    int len;

    if (srv->watchers.head == NULL)
        return;
    entry_of(n, &e);
    buf[5] = (uint8_t)kind;
    len = dist_epmd_entry_build(buf + 6, sizeof(buf) - 6, &e);
    if (len < 0) {
        epmd_log(EPMD_LOG_ERROR, "cannot encode event for %s: %s", n->name, dist_strerror(len));
        return;
    }
    dist_epmd_frame_header(buf, sizeof(buf), DIST_EPMD_EVENT, (size_t)len + 1);
    for (struct epmd_conn *c = srv->watchers.head, *next; c != NULL; c = next) {
        next = c->next;
        if (c->out_len - c->out_off + (size_t)len + 6 > WATCH_MAX_PENDING + c->watch_slack) {
            epmd_log(EPMD_LOG_ERROR, "dropping watcher on fd %d: %zu bytes behind", c->fd,
                     c->out_len - c->out_off);
            conn_close(c);
        } else if (conn_put(c, buf, (size_t)len + 6) != 0) {
            conn_close(c);
        } else {
            conn_flush(c);
        }
    }
}

/* ---- Erlang's requests ------------------------------------------------------------------ */

static int reply_put(struct epmd_conn *c, const uint8_t *buf, int len)
{
    if (len < 0 || conn_put(c, buf, (size_t)len) != 0) {
        conn_close(c);
        return -1;
    }
    return conn_flush(c);
}

static int handle_alive2(struct epmd_conn *c, const struct dist_epmd_node *in)
{
    struct epmd_server *srv = c->srv;
    uint8_t reply[8];
    int result, len;
    struct epmd_node *n = epmd_registry_alive(srv->reg, in, c, c->fd, now_ms(), &result);

    if (n != NULL) {
        c->node = n;
        epmd_log(EPMD_LOG_INFO, "registered %s on port %u, creation %u", n->name, in->port,
                 n->creation);
    } else {
        epmd_log(EPMD_LOG_ERROR, "refused ALIVE2_REQ for %.*s (%s)", (int)in->name_len, in->name,
                 result == DIST_EPMD_TAKEN ? "name in use" : "invalid");
    }
    /* Erlang answers a failure with creation 99. */
    len = dist_epmd_alive2_resp_build(reply, sizeof(reply), in->high_version >= 6,
                                      n != NULL ? 0 : 1, n != NULL ? n->creation : 99);
    /* The connection stays open after any ALIVE2 reply and never times out. */
    c->flags |= CONN_KEEP;
    ev_timer_stop(srv->loop, &c->timer);
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    return reply_put(c, reply, len);
}

static int handle_port2(struct epmd_conn *c, const char *name, size_t len)
{
    struct epmd_node *n = epmd_registry_find(c->srv->reg, name, len);
    size_t need = n != NULL ? 14 + n->name_len + n->info.extra_len : 2;
    uint8_t *p = conn_reserve(c, need);

    if (p == NULL) {
        conn_close(c);
        return -1;
    }
    c->out_len += (size_t)dist_epmd_port2_resp_build(p, need, n != NULL ? &n->info : NULL);
    return conn_finish(c);
}

/* The u32 listen port that opens NAMES and DUMP replies. */
static int put_port_word(struct epmd_conn *c)
{
    uint8_t word[4];
    uint16_t port = c->srv->cfg.port;

    word[0] = word[1] = 0;
    word[2] = (uint8_t)(port >> 8);
    word[3] = (uint8_t)port;
    return conn_put(c, word, 4);
}

static int handle_names(struct epmd_conn *c)
{
    int rc = put_port_word(c);

    for (struct epmd_node *n = epmd_registry_active(c->srv->reg); n && rc == 0; n = n->next) {
        size_t need = n->name_len + 32;
        uint8_t *p = conn_reserve(c, need);
        if (p == NULL) {
            rc = -ENOMEM;
            break;
        }
        c->out_len += (size_t)dist_epmd_names_line(p, need, n->name, n->name_len, n->info.port);
    }
    if (rc != 0) {
        conn_close(c);
        return -1;
    }
    return conn_finish(c);
}

/* DUMP lines: active names newest first, then remembered ones oldest first, as Erlang. */
static int put_dump_lines(struct epmd_conn *c, struct epmd_node *n, int active)
{
    while (n != NULL) {
        size_t need = n->name_len + 80;
        uint8_t *p = conn_reserve(c, need);
        if (p == NULL)
            return -ENOMEM;
        c->out_len +=
            (size_t)dist_epmd_dump_line(p, need, active, n->name, n->name_len, n->info.port, n->fd);
        n = active ? n->next : n->prev;
    }
    return 0;
}

static int handle_dump(struct epmd_conn *c)
{
    struct epmd_registry *reg = c->srv->reg;

    if (put_port_word(c) != 0 || put_dump_lines(c, epmd_registry_active(reg), 1) != 0 ||
        put_dump_lines(c, epmd_registry_oldest(reg), 0) != 0) {
        conn_close(c);
        return -1;
    }
    return conn_finish(c);
}

static int handle_kill(struct epmd_conn *c)
{
    if (!c->srv->cfg.relaxed && epmd_registry_count(c->srv->reg) > 0) {
        epmd_log(EPMD_LOG_ERROR, "Disallowed KILL_REQ, live nodes");
        if (conn_put(c, "NO", 2) != 0) {
            conn_close(c);
            return -1;
        }
        return conn_finish(c);
    }
    epmd_log(EPMD_LOG_ERROR, "got KILL_REQ - terminates normal");
    c->flags |= CONN_KILL;
    if (conn_put(c, "OK", 2) != 0) {
        conn_close(c);
        return -1;
    }
    return conn_finish(c);
}

static int handle_stop(struct epmd_conn *c, const char *name, size_t len)
{
    struct epmd_server *srv = c->srv;
    struct epmd_node *n;
    const char *reply = "STOPPED";

    if (!srv->cfg.relaxed) {
        epmd_log(EPMD_LOG_ERROR, "Disallowed STOP_REQ, no relaxed_command_check");
        conn_close(c);
        return -1;
    }
    n = epmd_registry_find(srv->reg, name, len);
    if (n == NULL) {
        /* Erlang's epmd falls through from its NOEXIST reply into its STOPPED one. */
        reply = "NOEXISTSTOPPED";
    } else if (n->owner != NULL) {
        conn_close(n->owner);
    } else {
        epmd_registry_remove(srv->reg, n, DIST_EPMD_UNREGISTERED);
    }
    if (conn_put(c, reply, strlen(reply)) != 0) {
        conn_close(c);
        return -1;
    }
    return conn_finish(c);
}

/* ---- The extension's requests ---------------------------------------------------------------- */

static int handle_lease(struct epmd_conn *c, const struct dist_epmd_lease *l)
{
    struct epmd_server *srv = c->srv;
    uint8_t reply[16];
    int result;
    struct epmd_node *n =
        epmd_registry_lease(srv->reg, l, srv->cfg.default_lease_ms, now_ms(), &result);

    if (n == NULL && result < 0) {
        conn_close(c);
        return -1;
    }
    if (n != NULL)
        ev_timer_start(srv->loop, &srv->sweep); /* runs until the last lease is gone */
    if (n != NULL)
        epmd_log(EPMD_LOG_INFO, "leased %s on port %u for %u ms, creation %u", n->name,
                 n->info.port, n->lease_ms, n->creation);
    return reply_put(c, reply,
                     dist_epmd_lease_resp_build(reply, sizeof(reply), (uint8_t)result,
                                                n != NULL ? n->creation : 0,
                                                n != NULL ? n->lease_ms : 0));
}

static int handle_owner(struct epmd_conn *c, const struct dist_epmd_req *req)
{
    struct epmd_registry *reg = c->srv->reg;
    uint8_t reply[16];
    uint32_t lease_ms = 0;
    int result;

    if (req->tag == DIST_EPMD_RENEW_REQ) {
        result = epmd_registry_renew(reg, req->u.owner.token, req->u.owner.token_len,
                                     req->u.owner.name, req->u.owner.name_len, now_ms(), &lease_ms);
        return reply_put(
            c, reply, dist_epmd_renew_resp_build(reply, sizeof(reply), (uint8_t)result, lease_ms));
    }
    result = epmd_registry_unlease(reg, req->u.owner.token, req->u.owner.token_len,
                                   req->u.owner.name, req->u.owner.name_len, now_ms());
    return reply_put(c, reply, dist_epmd_unreg_resp_build(reply, sizeof(reply), (uint8_t)result));
}

/* Append a LIST_RESP frame: u32 Count, then every active entry. */
static int put_list(struct epmd_conn *c)
{
    struct epmd_registry *reg = c->srv->reg;
    size_t start = c->out_len;
    size_t count = epmd_registry_count(reg);
    uint8_t *p = conn_reserve(c, 9);

    if (p == NULL)
        return -ENOMEM;
    c->out_len += 9;
    for (struct epmd_node *n = epmd_registry_active(reg); n != NULL; n = n->next) {
        struct dist_epmd_entry e;
        size_t need = 32 + n->name_len + n->info.extra_len + n->meta.meta_len;
        int len;

        entry_of(n, &e);
        p = conn_reserve(c, need);
        if (p == NULL)
            return -ENOMEM;
        len = dist_epmd_entry_build(p, need, &e);
        if (len < 0)
            return len;
        c->out_len += (size_t)len;
    }
    p = c->out + start;
    dist_epmd_frame_header(p, 5, DIST_EPMD_LIST_RESP, c->out_len - start - 5);
    p[5] = (uint8_t)(count >> 24);
    p[6] = (uint8_t)(count >> 16);
    p[7] = (uint8_t)(count >> 8);
    p[8] = (uint8_t)count;
    return 0;
}

/*
 * LIST, and WATCH's first listing. A remote peer gets one listing and the connection closes,
 * as for Erlang's requests, so remote peers cannot hold connections open.
 */
static int handle_list(struct epmd_conn *c, int watch)
{
    struct epmd_server *srv = c->srv;

    if (put_list(c) != 0) {
        conn_close(c);
        return -1;
    }
    if (!watch)
        return (c->flags & CONN_LOCAL) ? conn_flush(c) : conn_finish(c);
    /* A watcher only listens: it never times out, and any byte it sends ends it. */
    ev_timer_stop(srv->loop, &c->timer);
    list_del(&srv->conns, c);
    list_add(&srv->watchers, c);
    c->flags |= CONN_WATCH;
    c->watch_slack = c->out_len - c->out_off;
    epmd_log(EPMD_LOG_INFO, "watcher on fd %d", c->fd);
    return conn_flush(c);
}

/* ---- Dispatch ------------------------------------------------------------------------------- */

static int is_local_only(uint8_t tag)
{
    switch (tag) {
    case DIST_EPMD_PORT_PLEASE2_REQ:
    case DIST_EPMD_NAMES_REQ:
    case DIST_EPMD_LIST_REQ:
        return 0;
    default:
        return 1;
    }
}

static int is_extension(uint8_t tag)
{
    return tag == DIST_EPMD_LEASE_REQ || tag == DIST_EPMD_RENEW_REQ || tag == DIST_EPMD_UNREG_REQ ||
           tag == DIST_EPMD_LIST_REQ || tag == DIST_EPMD_WATCH_REQ;
}

/* Serve one complete request. Returns -1 when the connection is gone. */
static int conn_request(struct epmd_conn *c, const uint8_t *body, size_t len)
{
    struct dist_epmd_req req;
    int rc = dist_epmd_req_parse(body, len, &req);

    if (rc != 0) {
        epmd_log(EPMD_LOG_ERROR, "closing fd %d: request tag %u: %s", c->fd, body[0],
                 dist_strerror(rc));
        conn_close(c);
        return -1;
    }
    if (is_local_only(req.tag) && !(c->flags & CONN_LOCAL)) {
        epmd_log(EPMD_LOG_ERROR, "non-local request (tag %u) refused on fd %d", req.tag, c->fd);
        conn_close(c);
        return -1;
    }
    switch (req.tag) {
    case DIST_EPMD_ALIVE2_REQ:
        return handle_alive2(c, &req.u.alive);
    case DIST_EPMD_PORT_PLEASE2_REQ:
        return handle_port2(c, req.u.name.name, req.u.name.name_len);
    case DIST_EPMD_NAMES_REQ:
        return handle_names(c);
    case DIST_EPMD_DUMP_REQ:
        return handle_dump(c);
    case DIST_EPMD_KILL_REQ:
        return handle_kill(c);
    case DIST_EPMD_STOP_REQ:
        return handle_stop(c, req.u.name.name, req.u.name.name_len);
    case DIST_EPMD_LEASE_REQ:
        return handle_lease(c, &req.u.lease);
    case DIST_EPMD_RENEW_REQ:
    case DIST_EPMD_UNREG_REQ:
        return handle_owner(c, &req);
    case DIST_EPMD_LIST_REQ:
        return handle_list(c, 0);
    default:
        return handle_list(c, 1);
    }
}

/* A watcher only listens: bytes that came with its WATCH request end it at once. */
static int watch_begin(struct epmd_conn *c)
{
    if (c->in_len > 0) {
        epmd_log(EPMD_LOG_ERROR, "closing watcher on fd %d: it sent more than WATCH", c->fd);
        conn_close(c);
        return -1;
    }
    free(c->in);
    c->in = NULL;
    ev_io_start(c->srv->loop, &c->rio);
    return 0;
}

/*
 * Serve every complete request in the input buffer. Erlang's requests must arrive alone:
 * bytes past one of them close the connection without a reply, as Erlang's epmd does.
 * Returns -1 when the connection is gone.
 */
static int conn_process(struct epmd_conn *c)
{
    while (c->in_len >= 2) {
        int len;
        size_t total;

        /* Backpressure: a peer that does not read its replies gets no more of them. */
        if (output_pending(c)) {
            ev_io_stop(c->srv->loop, &c->rio);
            return 0;
        }
        len = dist_epmd_req_length(c->in);

        if (len < 0) {
            epmd_log(EPMD_LOG_ERROR, "closing fd %d: bad request length %u", c->fd,
                     (c->in[0] << 8) | c->in[1]);
            conn_close(c);
            return -1;
        }
        total = 2 + (size_t)len;
        if (c->in_len < total)
            return 0;
        if (!is_extension(c->in[2]) && c->in_len > total) {
            epmd_log(EPMD_LOG_ERROR, "closing fd %d: got more than expected", c->fd);
            conn_close(c);
            return -1;
        }
        if (conn_request(c, c->in + 2, (size_t)len) != 0)
            return -1;
        if (c->in == NULL)
            return 0;
        c->in_len -= total;
        memmove(c->in, c->in + total, c->in_len);
        if (c->flags & CONN_CLOSING)
            return 0;
        if (c->flags & CONN_WATCH)
            return watch_begin(c);
    }
    return 0;
}

/* A byte from a registered node or a watcher ends it, as in Erlang's epmd. */
static void conn_read_held(struct epmd_conn *c)
{
    uint8_t buf[64];
    ssize_t n = read(c->fd, buf, sizeof(buf));

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n > 0 && c->node != NULL)
        epmd_log(EPMD_LOG_ERROR, "got more than expected from %s: unregistering", c->node->name);
    conn_close(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct epmd_conn *c = container_of(w, struct epmd_conn, rio);
    ssize_t n;

    if (c->flags & (CONN_KEEP | CONN_WATCH)) {
        conn_read_held(c);
        return;
    }
    if (c->in == NULL) {
        c->in = malloc(DIST_EPMD_BUFSIZE);
        if (c->in == NULL) {
            conn_close(c);
            return;
        }
    }
    n = read(c->fd, c->in + c->in_len, DIST_EPMD_BUFSIZE - c->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        ev_io_start(loop, &c->rio);
        return;
    }
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    ev_timer_again(loop, &c->timer);
    /* Whatever stays open (a registration, a session, a partial request) reads on. */
    if (conn_process(c) == 0 && !(c->flags & CONN_CLOSING) &&
        (!output_pending(c) || (c->flags & (CONN_KEEP | CONN_WATCH))))
        ev_io_start(loop, &c->rio);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct epmd_conn *c = container_of(w, struct epmd_conn, timer);

    epmd_log(EPMD_LOG_DEBUG, "closing fd %d: packet timeout", c->fd);
    conn_close(c);
}

static void conn_close(struct epmd_conn *c)
{
    struct epmd_server *srv = c->srv;

    ev_io_stop(srv->loop, &c->rio);
    ev_io_stop(srv->loop, &c->wio);
    ev_timer_stop(srv->loop, &c->timer);
    list_del((c->flags & CONN_WATCH) ? &srv->watchers : &srv->conns, c);
    if (c->node != NULL) {
        epmd_log(EPMD_LOG_INFO, "unregistering %s", c->node->name);
        epmd_registry_remove(srv->reg, c->node, DIST_EPMD_UNREGISTERED);
    }
    close(c->fd);
    free(c->in);
    conn_out_free(c);
    free(c);
}

/* ---- Accepting ------------------------------------------------------------------------------ */

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Erlang counts a peer as local when it is loopback or connects from our own address. */
static int peer_is_local(int fd, const struct sockaddr_storage *peer)
{
    struct sockaddr_storage self;
    socklen_t len = sizeof(self);

    if (is_loopback((const struct sockaddr *)peer))
        return 1;
    if (getsockname(fd, (struct sockaddr *)&self, &len) != 0 || self.ss_family != peer->ss_family)
        return 0;
    if (peer->ss_family == AF_INET)
        return ((const struct sockaddr_in *)peer)->sin_addr.s_addr ==
               ((struct sockaddr_in *)&self)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)peer)->sin6_addr,
                  &((struct sockaddr_in6 *)&self)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

static void conn_start(struct epmd_server *srv, int fd, const struct sockaddr_storage *peer)
{
    struct epmd_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        epmd_log(EPMD_LOG_ERROR, "out of memory: refusing a connection");
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    if (peer_is_local(fd, peer))
        c->flags |= CONN_LOCAL;
    ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
    ev_timer_init(&c->timer, conn_timeout_cb, srv->cfg.packet_timeout, srv->cfg.packet_timeout);
    list_add(&srv->conns, c);
    ev_timer_start(srv->loop, &c->timer);
    /*
     * A client writes its request right after connecting, so it is usually here already:
     * reading now answers it without ever adding the socket to the poll set. The read
     * watcher starts only when the read would block.
     */
    conn_read_cb(srv->loop, &c->rio, EV_READ);
}

static void log_refusal(struct epmd_server *srv, const char *why)
{
    ev_tstamp now = ev_now(srv->loop);

    srv->refused++;
    if (now - srv->refused_at >= 1.0) {
        epmd_log(EPMD_LOG_ERROR, "%s: refused %zu connection(s)", why, srv->refused);
        srv->refused_at = now;
        srv->refused = 0;
    }
}

/* Out of descriptors: give up the spare one to accept and close the waiting peer. */
static void shed_one(struct epmd_server *srv, int lfd)
{
    int fd;

    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    log_refusal(srv, "out of file descriptors");
}

/* Stop accepting for a moment, so a persistent accept error cannot spin the loop. */
static void accept_pause(struct epmd_server *srv, int err)
{
    epmd_log(EPMD_LOG_ERROR, "accept: %s; pausing for %g s", strerror(err), ACCEPT_BACKOFF);
    for (int i = 0; i < srv->nlisten; i++)
        ev_io_stop(srv->loop, &srv->listeners[i]);
    ev_timer_start(srv->loop, &srv->accept_pause);
}

static void accept_resume_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct epmd_server *srv = container_of(w, struct epmd_server, accept_pause);

    if (srv->reserve_fd < 0)
        srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < srv->nlisten; i++)
        ev_io_start(loop, &srv->listeners[i]);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct epmd_server *srv = w->data;

    /* After KILL, nothing new is served: the loop is ending. */
    for (int i = 0; i < ACCEPT_BATCH && !srv->killed; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(w->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED)
                continue;
            if ((err == EMFILE || err == ENFILE) && srv->reserve_fd >= 0)
                shed_one(srv, w->fd);
            else if (err != EAGAIN && err != EWOULDBLOCK)
                accept_pause(srv, err);
            return;
        }
        if (srv->conns.count + srv->watchers.count >= srv->max_conns) {
            close(fd);
            log_refusal(srv, "connection limit reached");
            continue;
        }
        conn_start(srv, fd, &peer);
    }
}

static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct epmd_server *srv = container_of(w, struct epmd_server, sweep);
    size_t n;

    n = epmd_registry_sweep(srv->reg, now_ms());
    if (epmd_registry_leased_count(srv->reg) == 0)
        ev_timer_stop(loop, w);
    if (n > 0)
        epmd_log(EPMD_LOG_INFO, "%zu lease(s) expired", n);
}

/* ---- Listeners ------------------------------------------------------------------------------ */

static void listen_add(struct epmd_server *srv, int fd)
{
    ev_io_init(&srv->listeners[srv->nlisten], accept_cb, fd, EV_READ);
    srv->listeners[srv->nlisten].data = srv;
    ev_io_start(srv->loop, &srv->listeners[srv->nlisten]);
    srv->nlisten++;
}

static int listen_all(struct epmd_server *srv)
{
    int fds[EPMD_MAX_LISTEN];
    int n = epmd_listen_open(&srv->cfg, fds, EPMD_MAX_LISTEN);

    for (int i = 0; i < n; i++)
        listen_add(srv, fds[i]);
    return n < 0 ? n : 0;
}

struct epmd_server *epmd_server_new(struct ev_loop *loop, const struct epmd_config *cfg, int *err)
{
    struct epmd_server *srv = calloc(1, sizeof(*srv));
    int rc = -ENOMEM;

    if (srv == NULL)
        goto fail;
    srv->loop = loop;
    srv->cfg = *cfg;
    srv->max_conns = cfg->max_connections;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    srv->reg = epmd_registry_new(cfg->debug > 0 ? 5 : 1000, NULL, NULL);
    if (srv->reg == NULL)
        goto fail;
    epmd_registry_on_event(srv->reg, event_cb, srv);
    rc = listen_all(srv);
    if (rc < 0)
        goto fail;
    ev_timer_init(&srv->sweep, sweep_cb, SWEEP_INTERVAL, SWEEP_INTERVAL);
    ev_timer_init(&srv->accept_pause, accept_resume_cb, ACCEPT_BACKOFF, 0.);
    return srv;
fail:
    epmd_server_free(srv);
    *err = rc;
    return NULL;
}

static void close_list(struct conn_list *l)
{
    while (l->head != NULL)
        conn_close(l->head);
}

void epmd_server_free(struct epmd_server *srv)
{
    if (srv == NULL)
        return;
    close_list(&srv->watchers);
    close_list(&srv->conns);
    for (int i = 0; i < srv->nlisten; i++) {
        ev_io_stop(srv->loop, &srv->listeners[i]);
        close(srv->listeners[i].fd);
    }
    ev_timer_stop(srv->loop, &srv->sweep);
    ev_timer_stop(srv->loop, &srv->accept_pause);
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    epmd_registry_free(srv->reg);
    free(srv);
}

int epmd_server_killed(const struct epmd_server *srv)
{
    return srv->killed;
}
