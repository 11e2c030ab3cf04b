/*
 * epmd_client.c: the asynchronous epmd client: leased registration, watch, and lookups.
 *
 * Everything runs on the caller's libev loop. Three users share one connection helper (a
 * "link": resolve, nonblocking connect under a deadline, buffered reads, one request out):
 *
 *   registration  (the extension, on one connection that is re-opened as needed)
 *
 *     start --> dial --> LEASE_REQ --r OK--> held --(lease/3)--> RENEW_REQ --e OK--> held
 *                  ^                                                  |
 *                  |                     e NOTFOUND (epmd restarted) -+-> LEASE_REQ
 *                  +-- backoff timer <-- any failure, r TAKEN (REFUSED)
 *
 *     An idle connection that epmd closes (its packet timeout, or epmd going away) is re-opened
 *     within backoff_min with a RENEW_REQ: that keeps the lease, and finds out if epmd restarted.
 *
 *   watch         dial --> WATCH_REQ --> 'l' snapshot --> 'c' events ... --> EOF --> backoff
 *
 *   lookup        dial --> PORT_PLEASE2_REQ --> PORT2_RESP --> callback (one connection each)
 *
 * Numeric hosts are parsed inline. Host names go to getaddrinfo() on a thread of their own
 * (resolve.c), which signals an eventfd.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "internal.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define DEFAULT_HOST           "127.0.0.1"
#define DEFAULT_TIMEOUT_MS     5000u
#define DEFAULT_BACKOFF_MIN_MS 100u
#define DEFAULT_BACKOFF_MAX_MS 30000u
#define DEFAULT_MAX_FRAME      (64u << 20)
#define DEFAULT_TOKEN_LEN      16
#define REPLY_MAX              64 /* the extension's fixed replies are 2..10 bytes */
#define READ_CHUNK             4096
#define LEASE_MIN_MS           100u /* epmd grants no shorter lease */
#define MAX_HOST               255

/* ---- Small helpers -------------------------------------------------------------------------- */

/* $ERL_EPMD_PORT when it is a valid port number, else 4369, as Erlang's tools do. */
static uint16_t epmd_port_or_default(uint16_t port)
{
    const char *env = getenv("ERL_EPMD_PORT");
    char *end = NULL;
    long v = env != NULL ? strtol(env, &end, 10) : 0;

    if (port != 0)
        return port;
    return end != env && *end == '\0' && v > 0 && v <= UINT16_MAX ? (uint16_t)v : DIST_EPMD_PORT;
}

/* The name part of a node name: 1..255 of [A-Za-z0-9_-]. */
static int alive_check(const char *name, size_t len)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

    return len == 0 || len > DIST_EPMD_MAX_NAME_CHARS || strspn(name, ok) < len ? DIST_EBADNAME : 0;
}

int dist_node_name_check(const char *name)
{
    const char *at = name != NULL ? strchr(name, '@') : NULL;
    size_t hlen;

    if (at == NULL || alive_check(name, (size_t)(at - name)) != 0)
        return DIST_EBADNAME;
    hlen = strlen(at + 1);
    if (hlen == 0 || hlen > MAX_HOST)
        return DIST_EBADNAME;
    for (const unsigned char *h = (const unsigned char *)at + 1; *h != '\0'; h++) {
        if (*h <= ' ' || *h == '@' || *h == 0x7f)
            return DIST_EBADNAME;
    }
    return 0;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v != 0 ? v : def;
}

/* (Re)arm a one-shot timer. */
static void timer_in(struct ev_loop *loop, ev_timer *t, double after)
{
    ev_timer_stop(loop, t);
    ev_timer_set(t, after, 0.);
    ev_timer_start(loop, t);
}

/* ---- Links: one connection to an epmd ------------------------------------------------------- */

enum link_state { LINK_IDLE, LINK_RESOLVING, LINK_CONNECTING, LINK_UP };

/* What a link reports to its user, besides a negative error after which the link is closed. */
#define LINK_CONNECTED 1 /* the connection is up */
#define LINK_DATA      2 /* bytes were appended to in */

struct link {
    struct ev_loop *loop;
    void (*cb)(struct link *l, int status);
    ev_io io;       /* the resolver's eventfd; then the socket, writable until connected */
    ev_timer timer; /* bounds the dial, then whatever the user awaits */
    enum link_state state;
    int fd;
    int err; /* the last connect error, reported when no address is left */
    struct dist__resolve *res;
    struct addrinfo *ais, *ai; /* the addresses, and the next to try */
    uint8_t *in;
    size_t in_len, in_cap, in_max;
};

static void link_close(struct link *l)
{
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->timer);
    if (l->fd >= 0)
        close(l->fd);
    if (l->res != NULL)
        dist__resolve_release(l->res);
    if (l->ais != NULL)
        freeaddrinfo(l->ais);
    free(l->in);
    l->fd = -1;
    l->res = NULL;
    l->ais = l->ai = NULL;
    l->in = NULL;
    l->in_len = l->in_cap = 0;
    l->state = LINK_IDLE;
}

/* Close, then tell the user why; the user's callback is the last thing that runs. */
static void link_fail(struct link *l, int err)
{
    link_close(l);
    l->cb(l, err);
}

static void link_up(struct link *l)
{
    ev_io_stop(l->loop, &l->io);
    ev_io_set(&l->io, l->fd, EV_READ);
    ev_io_start(l->loop, &l->io);
    freeaddrinfo(l->ais);
    l->ais = l->ai = NULL;
    l->state = LINK_UP;
    l->cb(l, LINK_CONNECTED);
}

/* Check the connect in flight, if any, then try the next addresses; the last error counts. */
static void link_connect(struct link *l)
{
    socklen_t len = sizeof(int);
    int soerr = 0;

    ev_io_stop(l->loop, &l->io);
    if (l->fd >= 0 && getsockopt(l->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    while (l->fd < 0 || soerr != 0) {
        struct addrinfo *ai = l->ai;

        if (l->fd >= 0) {
            close(l->fd);
            l->fd = -1;
            l->err = -soerr;
        }
        if (ai == NULL) {
            link_fail(l, l->err);
            return;
        }
        l->ai = ai->ai_next;
        l->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        soerr = l->fd < 0 || connect(l->fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
        if (l->fd < 0)
            l->err = -errno;
        if (soerr == EINPROGRESS) {
            ev_io_set(&l->io, l->fd, EV_WRITE);
            ev_io_start(l->loop, &l->io);
            return;
        }
    }
    link_up(l);
}

/* Append what the socket has to in, growing it up to in_max. */
static void link_read(struct link *l)
{
    size_t cap = l->in_cap == 0 ? READ_CHUNK : l->in_cap * 2;
    uint8_t *p;
    ssize_t n;

    if (l->in_len == l->in_cap) {
        cap = cap < l->in_max ? cap : l->in_max;
        p = cap > l->in_len ? realloc(l->in, cap) : NULL;
        if (p == NULL) {
            link_fail(l, cap > l->in_len ? -ENOMEM : DIST_ELENGTH);
            return;
        }
        l->in = p;
        l->in_cap = cap;
    }
    n = recv(l->fd, l->in + l->in_len, l->in_cap - l->in_len, 0);
    if (n > 0) {
        l->in_len += (size_t)n;
        l->cb(l, LINK_DATA);
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        link_fail(l, n == 0 ? DIST_ECLOSED : -errno);
    }
}

/* The resolver thread is done: try its addresses, or report why there are none. */
static void link_resolved(struct link *l)
{
    struct dist__resolve *r = l->res;
    uint64_t v;

    (void)!read(r->efd, &v, sizeof(v));
    if (!atomic_load_explicit(&r->done, memory_order_acquire))
        return;
    ev_io_stop(l->loop, &l->io);
    l->res = NULL;
    l->ais = l->ai = r->rc == 0 ? r->res : NULL;
    r->res = r->rc == 0 ? NULL : r->res;
    l->err = r->rc != 0 ? r->rc : DIST_ERESOLVE;
    dist__resolve_release(r);
    l->state = LINK_CONNECTING;
    link_connect(l);
}

static void link_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct link *l = container_of(w, struct link, io);

    if (l->state == LINK_UP)
        link_read(l);
    else if (l->state == LINK_RESOLVING)
        link_resolved(l);
    else
        link_connect(l); /* link_dial feeds the first call, so that it runs from the loop */
}

static void link_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    link_fail(container_of(w, struct link, timer), -ETIMEDOUT);
}

static void link_init(struct link *l, struct ev_loop *loop, void (*cb)(struct link *, int),
                      size_t in_max)
{
    l->loop = loop; /* the rest of *l is zeroed by its owner's calloc() */
    l->cb = cb;
    l->fd = -1;
    l->in_max = in_max;
    ev_io_init(&l->io, link_io_cb, -1, EV_WRITE);
    ev_init(&l->timer, link_timer_cb);
}

/* Connect to host:port within timeout_ms. The first attempt runs from the loop, never here. */
static int link_dial(struct link *l, const char *host, uint16_t port, uint32_t timeout_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    char portstr[8];
    int rc;

    link_close(l);
    snprintf(portstr, sizeof(portstr), "%u", port);
    rc = getaddrinfo(host, portstr, &hints, &l->ais);
    if (rc == 0) {
        l->ai = l->ais;
        l->state = LINK_CONNECTING;
        l->err = DIST_ERESOLVE;
        ev_feed_event(l->loop, &l->io, EV_CUSTOM);
    } else if (rc == EAI_NONAME) {
        l->ais = NULL;
        rc = dist__resolve_start(host, portstr, &l->res);
        if (rc != 0)
            return rc;
        ev_io_set(&l->io, l->res->efd, EV_READ);
        ev_io_start(l->loop, &l->io);
        l->state = LINK_RESOLVING;
    } else {
        l->ais = NULL;
        return dist__resolve_error(rc);
    }
    timer_in(l->loop, &l->timer, timeout_ms / 1000.0);
    return 0;
}

/*
 * Write one request: at most DIST_EPMD_BUFSIZE bytes, sent once the previous one was answered,
 * so into an empty, larger send buffer. A short write means a broken connection.
 */
static int link_send(struct link *l, const uint8_t *buf, size_t len)
{
    ssize_t n = l->state == LINK_UP ? send(l->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;

    if (n == (ssize_t)len)
        return 0;
    return n < 0 ? -errno : DIST_ECLOSED;
}

/* Drop the first n bytes of in. */
static void link_consume(struct link *l, size_t n)
{
    memmove(l->in, l->in + n, l->in_len - n);
    l->in_len -= n;
}

/* ---- Lookups -------------------------------------------------------------------------------- */

struct dist_epmd_lookup {
    struct link link;
    dist_epmd_lookup_cb cb;
    void *user_data;
    int done; /* the callback is running */
    size_t req_len;
    uint8_t req[2 + 1 + DIST_EPMD_MAX_SYMLEN];
};

int dist__epmd_lookup_peer(const struct dist_epmd_lookup *q, uint16_t port,
                           struct sockaddr_storage *ss, socklen_t *len)
{
    *len = sizeof(*ss);
    if (q->link.fd < 0 || getpeername(q->link.fd, (struct sockaddr *)ss, len) != 0)
        return DIST_ERESOLVE;
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        return DIST_ERESOLVE;
    return 0;
}

static void lookup_finish(struct dist_epmd_lookup *q, int status, const struct dist_epmd_node *n)
{
    q->done = 1;
    q->cb(status, n, q->user_data);
    link_close(&q->link);
    free(q);
}

static void lookup_link_cb(struct link *l, int status)
{
    struct dist_epmd_lookup *q = container_of(l, struct dist_epmd_lookup, link);
    struct dist_epmd_node node;
    int found = 0;
    int rc = status == LINK_CONNECTED ? link_send(l, q->req, q->req_len)
             : status == LINK_DATA    ? dist_epmd_port2_resp_parse(l->in, l->in_len, &found, &node)
                                      : status;

    if (rc == DIST_EAGAIN_MORE || (status == LINK_CONNECTED && rc == 0))
        return; /* the request is out, or the reply is still incomplete */
    lookup_finish(q, rc < 0 ? rc : found ? 0 : DIST_ENOTFOUND, rc >= 0 && found ? &node : NULL);
}

int dist_epmd_lookup(struct ev_loop *loop, const char *host, uint16_t port, const char *name,
                     uint32_t timeout_ms, dist_epmd_lookup_cb cb, void *user_data,
                     struct dist_epmd_lookup **out)
{
    size_t nlen = name != NULL ? strcspn(name, "@") : 0;
    struct dist_epmd_lookup *q;
    int rc;

    if (host == NULL && name != NULL && name[nlen] == '@' && name[nlen + 1] != '\0')
        host = name + nlen + 1;
    if (loop == NULL || name == NULL || host == NULL || cb == NULL ||
        timeout_ms > DIST_EPMD_MAX_TIMEOUT_MS)
        return DIST_EINVAL;
    if (dist_epmd_name_check(name, nlen) != 0)
        return DIST_EBADNAME;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    link_init(&q->link, loop, lookup_link_cb, DIST_EPMD_BUFSIZE);
    rc = dist_epmd_port2_req_build(q->req, sizeof(q->req), name, nlen);
    q->req_len = rc > 0 ? (size_t)rc : 0;
    rc = rc < 0 ? rc
                : link_dial(&q->link, host, epmd_port_or_default(port),
                            or_default(timeout_ms, DEFAULT_TIMEOUT_MS));
    if (rc < 0) {
        link_close(&q->link);
        free(q);
        return rc;
    }
    q->cb = cb;
    q->user_data = user_data;
    if (out != NULL)
        *out = q;
    return 0;
}

void dist_epmd_lookup_cancel(struct dist_epmd_lookup *q)
{
    if (q != NULL && !q->done)
        lookup_finish(q, -ECANCELED, NULL);
}

/* ---- The client ----------------------------------------------------------------------------- */

#define CL_STARTED (1u << 0) /* registering: dist_epmd_client_start() was called */
#define CL_HELD    (1u << 1) /* epmd granted a lease that we have not seen it lose */
#define CL_EVER    (1u << 2) /* registered at least once since start */
#define CL_LOST    (1u << 3) /* a LOST event was reported and no success followed */
#define CL_REFUSED (1u << 4) /* a REFUSED event was reported and no success followed */
#define CL_WLOST   (1u << 5) /* the watch reported LOST and has not synced since */
#define CL_SYNCED  (1u << 6) /* the watch stream delivered its snapshot */

struct dist_epmd_client {
    struct ev_loop *loop;
    struct link reg;      /* the registration's connection */
    struct link watch;    /* the watch stream */
    ev_timer reg_timer;   /* the next renew, or the next retry */
    ev_timer watch_timer; /* the next watch retry */
    dist_epmd_client_cb cb;
    void *cb_data;
    dist_epmd_watch_cb watch_cb;
    void *watch_data;
    dist_epmd_log_cb log_cb;
    void *log_data;
    char *host;
    uint16_t port;
    uint32_t timeout_ms, backoff_min_ms, backoff_max_ms;
    unsigned flags; /* CL_* */
    unsigned reg_failures, watch_failures;
    unsigned watch_gen; /* bumped when a watch ends, to stop delivering its frames */
    int busy;           /* user callbacks running */
    int dead;           /* freed while busy: release when the callbacks return */
    uint8_t pending;    /* tag of the request awaiting its reply, or 0 */
    uint32_t creation, epmd_creation, lease_ms;
    uint64_t rng;
    size_t lease_len, renew_len, unreg_len;
    uint8_t lease_req[DIST_EPMD_BUFSIZE];
    uint8_t renew_req[2 + 2 + DIST_EPMD_MAX_TOKEN + 2 + DIST_EPMD_MAX_SYMLEN];
    uint8_t unreg_req[2 + 2 + DIST_EPMD_MAX_TOKEN + 2 + DIST_EPMD_MAX_SYMLEN];
};

__attribute__((format(printf, 3, 4))) static void client_log(struct dist_epmd_client *c, int level,
                                                             const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (c->log_cb == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->log_cb(level, msg, c->log_data);
}

static void client_destroy(struct dist_epmd_client *c)
{
    free(c->host);
    free(c);
}

/* After a user callback: non-zero when the client was freed in it (return at once). */
static int client_leave(struct dist_epmd_client *c)
{
    if (--c->busy == 0 && c->dead) {
        client_destroy(c);
        return 1;
    }
    return c->dead;
}

static void emit(struct dist_epmd_client *c, int kind, int reason)
{
    struct dist_epmd_client_event ev = {kind, reason, c->creation, c->epmd_creation, c->lease_ms};

    c->busy++;
    c->cb(c, &ev, c->cb_data);
    client_leave(c);
}

/* Non-zero when the watch may not go on: the client was freed, or the watch ended. */
static int emit_watch(struct dist_epmd_client *c, int kind, int reason,
                      const struct dist_epmd_entry *e)
{
    struct dist_epmd_watch_event ev = {kind, reason, e};
    unsigned gen = c->watch_gen;

    c->busy++;
    c->watch_cb(c, &ev, c->watch_data);
    return client_leave(c) || gen != c->watch_gen;
}

/*
 * Delay before retry n (1-based), in seconds: the first is drawn from 0..min, so nodes that lost
 * one epmd do not all return at once; then from [base/2, base], base doubling from min to max.
 */
static double backoff(struct dist_epmd_client *c, unsigned n)
{
    uint64_t base = c->backoff_min_ms, r;

    c->rng ^= c->rng >> 12; /* xorshift64*: jitter needs no more than this */
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    r = (c->rng * 0x2545F4914F6CDD1DULL) >> 32;
    if (n <= 1)
        return (double)(r % (base + 1)) / 1000.0;
    for (unsigned i = 2; i < n && base < c->backoff_max_ms; i++)
        base *= 2;
    base = base < c->backoff_max_ms ? base : c->backoff_max_ms;
    return (double)(base / 2 + r % (base - base / 2 + 1)) / 1000.0;
}

/* ---- Registration --------------------------------------------------------------------------- */

/* Schedule the next attempt after a failure, and report it once per run of failures. */
static void reg_retry(struct dist_epmd_client *c, int kind, int reason)
{
    unsigned flag = kind == DIST_EPMD_CLIENT_LOST ? CL_LOST : CL_REFUSED;

    link_close(&c->reg);
    c->pending = 0;
    timer_in(c->loop, &c->reg_timer, backoff(c, ++c->reg_failures));
    if (c->flags & flag)
        return;
    c->flags |= flag;
    client_log(c, DIST_EPMD_LOG_WARN, "epmd %s:%u: registration %s: %s", c->host, c->port,
               kind == DIST_EPMD_CLIENT_LOST ? "lost" : "refused", dist_strerror(reason));
    emit(c, kind, reason);
}

/*
 * The connection failed. The first failure of a held lease (often epmd's idle timeout) is
 * retried within backoff_min before anything is reported; others count and are reported.
 */
static void reg_failed(struct dist_epmd_client *c, int err)
{
    if (c->reg_failures > 0 || !(c->flags & CL_HELD)) {
        reg_retry(c, DIST_EPMD_CLIENT_LOST, err);
        return;
    }
    c->pending = 0;
    c->reg_failures = 1;
    timer_in(c->loop, &c->reg_timer, backoff(c, 1));
}

/* Send a RENEW_REQ while we believe epmd holds our lease, else a LEASE_REQ. */
static void reg_send(struct dist_epmd_client *c)
{
    int held = (c->flags & CL_HELD) != 0;
    int rc = held ? link_send(&c->reg, c->renew_req, c->renew_len)
                  : link_send(&c->reg, c->lease_req, c->lease_len);

    if (rc < 0) {
        link_close(&c->reg);
        reg_failed(c, rc);
        return;
    }
    c->pending = held ? DIST_EPMD_RENEW_REQ : DIST_EPMD_LEASE_REQ;
    timer_in(c->loop, &c->reg.timer, c->timeout_ms / 1000.0);
}

static void reg_granted(struct dist_epmd_client *c, uint32_t creation, uint32_t lease_ms)
{
    int fresh = !(c->flags & CL_HELD) || creation != c->epmd_creation;
    int kind = !(c->flags & CL_EVER)                          ? DIST_EPMD_CLIENT_REGISTERED
               : fresh || (c->flags & (CL_LOST | CL_REFUSED)) ? DIST_EPMD_CLIENT_REREGISTERED
                                                              : 0;

    c->flags = (c->flags | CL_HELD | CL_EVER) & ~(CL_LOST | CL_REFUSED);
    c->reg_failures = 0;
    c->epmd_creation = creation;
    c->lease_ms = lease_ms;
    if (c->creation == 0)
        c->creation = creation;
    /* Renew at a third of the lease: two renewals may fail before it lapses. */
    timer_in(c->loop, &c->reg_timer, (lease_ms < LEASE_MIN_MS ? LEASE_MIN_MS : lease_ms) / 3000.0);
    if (kind == 0)
        return;
    client_log(c, DIST_EPMD_LOG_INFO, "epmd %s:%u: registered, creation %u, lease %u ms", c->host,
               c->port, creation, lease_ms);
    emit(c, kind, 0);
}

/* Exactly one reply frame answers the pending request. */
static void reg_reply(struct dist_epmd_client *c)
{
    struct link *l = &c->reg;
    const uint8_t *body;
    size_t blen;
    uint8_t tag, result;
    uint32_t creation = c->epmd_creation, lease_ms = 0;
    uint8_t want = c->pending == DIST_EPMD_LEASE_REQ ? DIST_EPMD_LEASE_RESP : DIST_EPMD_RENEW_RESP;
    int rc = dist_epmd_frame_parse(l->in, l->in_len, REPLY_MAX, &tag, &body, &blen);

    if (rc == DIST_EAGAIN_MORE)
        return;
    if (rc < 0 || (size_t)rc != l->in_len || c->pending == 0 || tag != want ||
        dist_epmd_result_parse(body, blen, tag, &result, &creation, &lease_ms) < 0) {
        reg_retry(c, DIST_EPMD_CLIENT_LOST, DIST_EMALFORMED);
        return;
    }
    link_consume(l, (size_t)rc);
    c->pending = 0;
    ev_timer_stop(l->loop, &l->timer);
    if (result == DIST_EPMD_OK && creation != 0) {
        reg_granted(c, creation, lease_ms);
    } else if (tag == DIST_EPMD_RENEW_RESP) {
        /* epmd lost the lease (it restarted, or the lease lapsed): register afresh. */
        c->flags &= ~CL_HELD;
        reg_send(c);
    } else {
        c->flags &= ~CL_HELD;
        reg_retry(c, DIST_EPMD_CLIENT_REFUSED,
                  result == DIST_EPMD_TAKEN ? DIST_ETAKEN : DIST_EMALFORMED);
    }
}

static void reg_link_cb(struct link *l, int status)
{
    struct dist_epmd_client *c = container_of(l, struct dist_epmd_client, reg);

    if (status == LINK_DATA) {
        reg_reply(c);
    } else if (status == LINK_CONNECTED) {
        reg_send(c);
    } else {
        reg_failed(c, status);
    }
}

/* Renew time, or retry time. */
static void reg_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dist_epmd_client *c = container_of(w, struct dist_epmd_client, reg_timer);
    int rc;

    if (c->reg.state == LINK_UP && c->pending == 0) {
        reg_send(c);
    } else if (c->reg.state == LINK_IDLE) {
        rc = link_dial(&c->reg, c->host, c->port, c->timeout_ms);
        if (rc < 0)
            reg_failed(c, rc);
    }
}

int dist_epmd_client_start(struct dist_epmd_client *c, dist_epmd_client_cb cb, void *user_data)
{
    if (c == NULL || cb == NULL || c->lease_len == 0 || (c->flags & CL_STARTED))
        return DIST_EINVAL;
    c->cb = cb;
    c->cb_data = user_data;
    c->flags |= CL_STARTED;
    c->reg_failures = 0;
    /* The first attempt runs from the loop, so that no event is reported from within. */
    timer_in(c->loop, &c->reg_timer, 0.);
    return 0;
}

void dist_epmd_client_stop(struct dist_epmd_client *c)
{
    if (c == NULL || !(c->flags & CL_STARTED))
        return;
    if (c->reg.state == LINK_UP && c->pending == 0 && (c->flags & CL_HELD))
        (void)link_send(&c->reg, c->unreg_req, c->unreg_len); /* best effort, unanswered */
    link_close(&c->reg);
    ev_timer_stop(c->loop, &c->reg_timer);
    c->flags &= ~(CL_STARTED | CL_HELD | CL_EVER | CL_LOST | CL_REFUSED);
    c->pending = 0;
    c->cb = NULL;
}

uint32_t dist_epmd_client_creation(const struct dist_epmd_client *c)
{
    return c != NULL ? c->creation : 0;
}

/* ---- Watch ---------------------------------------------------------------------------------- */

static void watch_retry(struct dist_epmd_client *c, int reason)
{
    link_close(&c->watch);
    timer_in(c->loop, &c->watch_timer, backoff(c, ++c->watch_failures));
    if (c->flags & CL_WLOST)
        return;
    c->flags = (c->flags | CL_WLOST) & ~CL_SYNCED;
    client_log(c, DIST_EPMD_LOG_WARN, "epmd %s:%u: watch lost: %s", c->host, c->port,
               dist_strerror(reason));
    emit_watch(c, DIST_EPMD_WATCH_LOST, reason, NULL);
}

/*
 * Deliver one frame. Returns 0 to go on, 1 when the watch or the client ended, or an error.
 * A snapshot found malformed part way ends without SYNCED: a consumer keeps what it knew.
 */
static int watch_frame(struct dist_epmd_client *c, uint8_t tag, const uint8_t *body, size_t len)
{
    struct dist_epmd_entry e;
    size_t off = 4;

    if (c->flags & CL_SYNCED) {
        if (tag != DIST_EPMD_EVENT || len < 1 ||
            dist_epmd_entry_parse(body + 1, len - 1, &e) != (int)(len - 1))
            return DIST_EMALFORMED;
        if (body[0] < DIST_EPMD_REGISTERED || body[0] > DIST_EPMD_EXPIRED)
            return 0; /* a kind this client does not know yet */
        /* The three changes are declared in the order of epmd's kinds. */
        return emit_watch(c, DIST_EPMD_WATCH_REGISTERED + body[0] - DIST_EPMD_REGISTERED, 0, &e);
    }
    if (tag != DIST_EPMD_LIST_RESP || len < 4)
        return DIST_EMALFORMED;
    ev_timer_stop(c->loop, &c->watch.timer);
    if (emit_watch(c, DIST_EPMD_WATCH_RESET, 0, NULL))
        return 1;
    for (uint32_t i = 0, n = dist__get32(body); i < n; i++) {
        int rc = dist_epmd_entry_parse(body + off, len - off, &e);
        if (rc < 0)
            return rc;
        off += (size_t)rc;
        if (emit_watch(c, DIST_EPMD_WATCH_PRESENT, 0, &e))
            return 1;
    }
    if (off != len)
        return DIST_EMALFORMED;
    c->flags = (c->flags | CL_SYNCED) & ~CL_WLOST;
    c->watch_failures = 0;
    return emit_watch(c, DIST_EPMD_WATCH_SYNCED, 0, NULL);
}

static void watch_read(struct dist_epmd_client *c)
{
    struct link *l = &c->watch;
    const uint8_t *body;
    size_t blen;
    uint8_t tag;
    int n, rc = 0;

    while (rc == 0) {
        n = dist_epmd_frame_parse(l->in, l->in_len, l->in_max - 4, &tag, &body, &blen);
        if (n == DIST_EAGAIN_MORE)
            return;
        rc = n < 0 ? n : watch_frame(c, tag, body, blen);
        if (rc == 0)
            link_consume(l, (size_t)n);
    }
    if (rc < 0)
        watch_retry(c, rc);
}

static void watch_link_cb(struct link *l, int status)
{
    struct dist_epmd_client *c = container_of(l, struct dist_epmd_client, watch);
    uint8_t req[3];
    int rc = status != LINK_CONNECTED
                 ? status
                 : dist_epmd_simple_req_build(req, sizeof(req), DIST_EPMD_WATCH_REQ);

    if (status == LINK_CONNECTED && rc > 0)
        rc = link_send(l, req, (size_t)rc);
    if (status == LINK_DATA)
        watch_read(c);
    else if (rc == 0)
        timer_in(l->loop, &l->timer, c->timeout_ms / 1000.0); /* bounds the snapshot */
    else
        watch_retry(c, rc);
}

static void watch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dist_epmd_client *c = container_of(w, struct dist_epmd_client, watch_timer);
    int rc = link_dial(&c->watch, c->host, c->port, c->timeout_ms);

    if (rc < 0)
        watch_retry(c, rc);
}

int dist_epmd_client_watch(struct dist_epmd_client *c, dist_epmd_watch_cb cb, void *user_data)
{
    if (c == NULL || cb == NULL || c->watch_cb != NULL)
        return DIST_EINVAL;
    c->watch_cb = cb;
    c->watch_data = user_data;
    c->watch_failures = 0;
    c->flags &= ~(CL_WLOST | CL_SYNCED);
    timer_in(c->loop, &c->watch_timer, 0.);
    return 0;
}

void dist_epmd_client_unwatch(struct dist_epmd_client *c)
{
    if (c == NULL || c->watch_cb == NULL)
        return;
    link_close(&c->watch);
    ev_timer_stop(c->loop, &c->watch_timer);
    c->watch_cb = NULL;
    c->watch_gen++;
}

/* ---- Making and freeing --------------------------------------------------------------------- */

static int opts_check(const struct dist_epmd_client_opts *o)
{
    uint32_t hi = or_default(o->backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);

    if (o->token_len > DIST_EPMD_MAX_TOKEN || (o->token != NULL && o->token_len == 0) ||
        o->timeout_ms > DIST_EPMD_MAX_TIMEOUT_MS || hi > DIST_EPMD_MAX_TIMEOUT_MS ||
        or_default(o->backoff_min_ms, DEFAULT_BACKOFF_MIN_MS) > hi ||
        (o->host != NULL && (*o->host == '\0' || strlen(o->host) > MAX_HOST)))
        return DIST_EINVAL;
    if (o->name != NULL && (strchr(o->name, '@') != NULL ? dist_node_name_check(o->name)
                                                         : alive_check(o->name, strlen(o->name))))
        return DIST_EBADNAME;
    return 0;
}

/* Encode the metadata pairs into buf; returns the bytes or DIST_ELIMIT. */
static int meta_encode(const struct dist_epmd_client_opts *o, uint8_t *buf, size_t cap)
{
    size_t len = 0;

    if (o->meta_count > DIST_EPMD_MAX_META || (o->meta_count > 0 && o->meta == NULL))
        return DIST_ELIMIT;
    for (size_t i = 0; i < o->meta_count; i++) {
        const char *k = o->meta[i].key != NULL ? o->meta[i].key : ""; /* "": refused below */
        const char *v = o->meta[i].value != NULL ? o->meta[i].value : "";
        int rc = dist_epmd_meta_put(buf + len, cap - len, k, strlen(k), v, strlen(v));
        if (rc < 0)
            return DIST_ELIMIT; /* over a pair's limits, or past what one request holds */
        len += (size_t)rc;
    }
    return (int)len;
}

/* Build the three requests the registration sends, which never change. */
static int requests_build(struct dist_epmd_client *c, const struct dist_epmd_client_opts *o,
                          const uint8_t *token, size_t token_len)
{
    uint8_t meta[DIST_EPMD_BUFSIZE];
    int mlen = meta_encode(o, meta, sizeof(meta));
    size_t nlen = strcspn(o->name, "@");
    struct dist_epmd_lease l = {
        .node = {o->listen_port, o->node_type != 0 ? o->node_type : 77, 0,
                 (uint16_t)or_default(o->high_version, 6), (uint16_t)or_default(o->low_version, 5),
                 o->name, nlen, NULL, 0},
        .lease_ms = o->lease_ms,
        .token = token,
        .token_len = token_len,
        .meta = {meta, mlen > 0 ? (size_t)mlen : 0, o->meta_count},
    };
    int a = mlen < 0 ? mlen : dist_epmd_lease_req_build(c->lease_req, sizeof(c->lease_req), &l);
    int b = dist_epmd_owner_req_build(c->renew_req, sizeof(c->renew_req), DIST_EPMD_RENEW_REQ,
                                      token, token_len, o->name, nlen);
    int u = dist_epmd_owner_req_build(c->unreg_req, sizeof(c->unreg_req), DIST_EPMD_UNREG_REQ,
                                      token, token_len, o->name, nlen);

    /* The name and token were checked: only the size of the registration can fail here. */
    if (a < 0 || b < 0 || u < 0 || a - 2 > DIST_EPMD_MAX_LENGTH)
        return DIST_ELIMIT;
    c->lease_len = (size_t)a;
    c->renew_len = (size_t)b;
    c->unreg_len = (size_t)u;
    return 0;
}

static int random_fill(void *buf, size_t n)
{
    ssize_t got = getrandom(buf, n, 0);

    return got == (ssize_t)n ? 0 : got < 0 ? -errno : -EIO;
}

int dist_epmd_client_new(struct ev_loop *loop, const struct dist_epmd_client_opts *o,
                         struct dist_epmd_client **out)
{
    uint8_t token[DEFAULT_TOKEN_LEN];
    struct dist_epmd_client *c;
    int rc = loop == NULL || o == NULL || out == NULL ? DIST_EINVAL : opts_check(o);

    if (rc != 0)
        return rc;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->host = strdup(o->host != NULL ? o->host : DEFAULT_HOST);
    rc = c->host == NULL ? -ENOMEM : random_fill(&c->rng, sizeof(c->rng));
    if (rc == 0 && o->name != NULL && o->token == NULL)
        rc = random_fill(token, sizeof(token));
    if (rc == 0 && o->name != NULL)
        rc = o->token != NULL ? requests_build(c, o, o->token, o->token_len)
                              : requests_build(c, o, token, sizeof(token));
    if (rc != 0)
        goto fail;
    c->loop = loop;
    c->port = epmd_port_or_default(o->port);
    c->timeout_ms = or_default(o->timeout_ms, DEFAULT_TIMEOUT_MS);
    c->backoff_min_ms = or_default(o->backoff_min_ms, DEFAULT_BACKOFF_MIN_MS);
    c->backoff_max_ms = or_default(o->backoff_max_ms, DEFAULT_BACKOFF_MAX_MS);
    c->log_cb = o->log_cb;
    c->log_data = o->log_user_data;
    c->rng |= 1; /* xorshift never leaves 0 */
    link_init(&c->reg, loop, reg_link_cb, REPLY_MAX);
    link_init(&c->watch, loop, watch_link_cb,
              (o->max_frame != 0 ? o->max_frame : DEFAULT_MAX_FRAME) + 4);
    ev_init(&c->reg_timer, reg_timer_cb);
    ev_init(&c->watch_timer, watch_timer_cb);
    *out = c;
    return 0;
fail:
    client_destroy(c);
    return rc;
}

void dist_epmd_client_free(struct dist_epmd_client *c)
{
    if (c == NULL || c->dead)
        return;
    dist_epmd_client_stop(c);
    dist_epmd_client_unwatch(c);
    if (c->busy > 0)
        c->dead = 1;
    else
        client_destroy(c);
}
