/*
 * node.c: a node on the caller's libev loop: options, the listener, epmd registration, the
 * table of interned node names, the peers (queue, lookup, reconnect backoff), and the
 * translation between struct dist_msg and wire frames. conn.c runs each connection.
 *
 *     send(to_node) --> peer queue --(no connection)--> PORT_PLEASE2 lookup --> dial
 *                          |                                  | failure
 *                          |                         backoff timer (doubling, jittered)
 *                          +--(connection UP)--> flushed by the prepare watcher
 *
 * A peer reconnects by itself only while it has frames queued: after an attempt fails it
 * retries with backoff. When an UP connection goes down its queue is dropped, as Erlang drops
 * what was in flight; the next send dials again.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "internal.h"
#include "node.h"

#define NAMES_MAX            65536u
#define DEFAULT_TICK_MS      60000u
#define DEFAULT_HS_MS        5000u
#define DEFAULT_HIGH_WATER   (64u * 1024u * 1024u)
#define DEFAULT_BACKOFF_MIN  100u
#define DEFAULT_BACKOFF_MAX  30000u
#define DEFAULT_BUSY_POLL_US 50
#define MAX_BUSY_POLL_US     1000000
#define MIN_MAX_FRAME        1024u
#define LISTEN_BACKLOG       128
#define ACCEPTS_PER_WAKE     64

/* ---- Small helpers --------------------------------------------------------------------------- */

void dist__node_log(struct dist_node *node, int level, const char *fmt, ...)
{
    char msg[640];
    va_list ap;

    if (node->log_cb == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    node->log_cb(level, msg, node->log_user_data);
}

const char *dist_down_reason_name(int reason)
{
    switch (reason) {
    case DIST_DOWN_CONNECTION_CLOSED:
        return "connection_closed";
    case DIST_DOWN_HEARTBEAT_TIMEOUT:
        return "heartbeat_timeout";
    case DIST_DOWN_GRACEFUL_SHUTDOWN:
        return "graceful_shutdown";
    case DIST_DOWN_AUTH_FAILED:
        return "auth_failed";
    case DIST_DOWN_PROTOCOL_ERROR:
        return "protocol_error";
    default:
        return "unknown";
    }
}

/* A numeric address for @host ("localhost" is 127.0.0.1) and @port, or DIST_ERESOLVE. */
static int numeric_addr(const char *host, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return DIST_ERESOLVE;
}

/* ---- Interned names -------------------------------------------------------------------------- */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int names_find(const struct dist_names *t, const char *s)
{
    uint32_t mask = t->nslots - 1;

    if (t->nslots == 0)
        return -1;
    for (uint32_t i = name_hash(s) & mask; t->slots[i] != 0; i = (i + 1) & mask) {
        if (strcmp(t->names[t->slots[i] - 1], s) == 0)
            return (int)(t->slots[i] - 1);
    }
    return -1;
}

static void names_place(struct dist_names *t, uint32_t index)
{
    uint32_t mask = t->nslots - 1;
    uint32_t i = name_hash(t->names[index]) & mask;

    while (t->slots[i] != 0)
        i = (i + 1) & mask;
    t->slots[i] = index + 1;
}

static int names_grow(struct dist_node *node)
{
    struct dist_names *t = &node->names;
    uint32_t cap = t->cap == 0 ? 16 : t->cap * 2;
    char **names = realloc(t->names, cap * sizeof(*names));
    struct dist_peer **peers;
    uint32_t *slots;

    if (names == NULL)
        return -ENOMEM;
    t->names = names;
    peers = realloc(node->peers, cap * sizeof(*peers));
    if (peers == NULL)
        return -ENOMEM;
    memset(peers + t->cap, 0, (cap - t->cap) * sizeof(*peers));
    node->peers = peers;
    slots = calloc(cap * 2, sizeof(*slots));
    if (slots == NULL)
        return -ENOMEM;
    free(t->slots);
    t->slots = slots;
    t->nslots = cap * 2;
    t->cap = cap;
    for (uint32_t i = 0; i < t->count; i++)
        names_place(t, i);
    return 0;
}

int dist_node_intern(struct dist_node *node, const char *name)
{
    struct dist_names *t;
    int idx;

    if (node == NULL || name == NULL)
        return DIST_EBADNAME;
    t = &node->names;
    idx = names_find(t, name);
    if (idx >= 0)
        return idx;
    if (dist_node_name_check(name) != 0)
        return DIST_EBADNAME;
    if (t->count >= NAMES_MAX)
        return DIST_ELIMIT;
    if (t->count == t->cap && names_grow(node) != 0)
        return -ENOMEM;
    t->names[t->count] = strdup(name);
    if (t->names[t->count] == NULL)
        return -ENOMEM;
    names_place(t, t->count);
    return (int)t->count++;
}

const char *dist_node_name_of(const struct dist_node *node, uint32_t index)
{
    return node != NULL && index < node->names.count ? node->names.names[index] : NULL;
}

/* ---- Peers ----------------------------------------------------------------------------------- */

static void peer_kick(struct dist_peer *p);

static int peer_writer_init(struct dist_peer *p)
{
    struct dist_node *node = p->node;
    struct dist_frame_limits lim = {.max_frame = node->max_frame};
    size_t frag =
        node->max_frame + 4u < DIST_FRAME_FRAG_SIZE ? node->max_frame + 4u : DIST_FRAME_FRAG_SIZE;

    return dist__frame_writer_init(&p->w, frag, &lim);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    peer_kick(container_of(w, struct dist_peer, retry));
}

struct dist_peer *dist__peer_get(struct dist_node *node, uint32_t index)
{
    struct dist_peer *p = node->peers[index];

    if (p != NULL)
        return p;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->node = node;
    p->index = index;
    p->name = node->names.names[index];
    p->backoff_ms = node->backoff_min_ms;
    ev_timer_init(&p->retry, retry_cb, 0., 0.);
    if (peer_writer_init(p) != 0) {
        free(p);
        return NULL;
    }
    node->peers[index] = p;
    return p;
}

static void peer_free(struct dist_peer *p)
{
    if (p == NULL)
        return;
    dist__peer_quiet(p);
    dist__frame_writer_done(&p->w);
    free(p);
}

/* Schedule the next attempt: a random delay between half the backoff and all of it. */
static void peer_retry(struct dist_peer *p)
{
    struct dist_node *node = p->node;
    uint32_t r = 0;
    double ms;

    if (!node->started || ev_is_active(&p->retry))
        return;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)rand();
    ms = p->backoff_ms / 2.0 + (double)(r % (p->backoff_ms / 2 + 1));
    ev_timer_set(&p->retry, ms / 1000.0, 0.);
    ev_timer_start(node->loop, &p->retry);
    p->backoff_ms =
        p->backoff_ms * 2 < node->backoff_max_ms ? p->backoff_ms * 2 : node->backoff_max_ms;
}

static void lookup_cb(int status, const struct dist_epmd_node *en, void *user_data)
{
    struct dist_peer *p = user_data;
    struct dist_node *node = p->node;
    struct dist_epmd_lookup *l = p->lookup;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int rc = status;

    if (status == -ECANCELED)
        return;
    p->lookup = NULL;
    /* A host name: the node listens where its epmd answered, as with Erlang. */
    if (rc == 0 && numeric_addr(strchr(p->name, '@') + 1, en->port, &ss, &len) != 0)
        rc = dist__epmd_lookup_peer(l, en->port, &ss, &len);
    if (rc == 0)
        rc = dist__conn_dial(node, p, (struct sockaddr *)&ss, len);
    if (rc != 0) {
        dist__node_log(node, DIST_EPMD_LOG_WARN, "cannot reach %s: %s; retrying", p->name,
                       dist_strerror(rc));
        peer_retry(p);
    }
}

/* Start connecting when frames wait and nothing is under way. */
static void peer_kick(struct dist_peer *p)
{
    struct dist_node *node = p->node;
    int rc;

    if (!node->started || node->creation == 0 || p->conn != NULL || p->lookup != NULL ||
        ev_is_active(&p->retry) || dist__frame_writer_pending(&p->w) == 0)
        return;
    rc = dist_epmd_lookup(node->loop, NULL, node->epmd_port, p->name,
                          (uint32_t)(node->hs_timeout * 1000), lookup_cb, p, &p->lookup);
    if (rc != 0) {
        dist__node_log(node, DIST_EPMD_LOG_WARN, "lookup of %s: %s", p->name, dist_strerror(rc));
        peer_retry(p);
    }
}

void dist__peer_quiet(struct dist_peer *p)
{
    struct dist_epmd_lookup *l = p->lookup;

    ev_timer_stop(p->node->loop, &p->retry);
    p->lookup = NULL;
    if (l != NULL)
        dist_epmd_lookup_cancel(l);
}

void dist__peer_on_up(struct dist_peer *p)
{
    struct dist_node *node = p->node;

    p->backoff_ms = node->backoff_min_ms;
    p->up = 1;
    dist__conn_mark(p->conn);
    if (node->started && node->h.on_node_up != NULL)
        node->h.on_node_up(node, p->name, node->user_data);
}

void dist__peer_on_close(struct dist_peer *p, int was_up, int reason)
{
    struct dist_node *node = p->node;
    int report = reason != 0 && (was_up || reason == DIST_DOWN_AUTH_FAILED);

    if (was_up || reason == DIST_DOWN_AUTH_FAILED) {
        dist__frame_writer_done(&p->w);
        if (peer_writer_init(p) != 0)
            memset(&p->w, 0, sizeof(p->w));
    }
    if (report)
        p->up = 0;
    if (reason != 0 && !was_up)
        peer_retry(p);
    if (report && node->started && node->h.on_node_down != NULL)
        node->h.on_node_down(node, p->name, reason, node->user_data);
}

size_t dist_node_peer_pending(struct dist_node *node, const char *to_node)
{
    int idx = node != NULL && to_node != NULL ? names_find(&node->names, to_node) : -1;

    return idx > 0 && node->peers[idx] != NULL ? dist__peer_pending(node->peers[idx]) : 0;
}

/* ---- Loop watchers --------------------------------------------------------------------------- */

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct dist_node *node = container_of(w, struct dist_node, prepare);
    struct dist_conn *next;

    for (struct dist_conn *c = node->conns; c != NULL; c = next) {
        next = c->next;
        if (c->flags & DIST__CONN_DIRTY)
            dist__conn_flush(c);
    }
    dist__conn_reap(node);
    ev_prepare_stop(loop, w);
}

static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct dist_node *node = container_of(w, struct dist_node, spin);

    (void)revents;
    if (ev_now(loop) >= node->spin_until)
        ev_idle_stop(loop, w);
}

void dist__node_busy(struct dist_node *node)
{
    if (node->busy_poll <= 0)
        return;
    node->spin_until = ev_now(node->loop) + node->busy_poll;
    if (!ev_is_active(&node->spin))
        ev_idle_start(node->loop, &node->spin);
}

void dist__node_wake(struct dist_node *node)
{
    if (!ev_is_active(&node->prepare))
        ev_prepare_start(node->loop, &node->prepare);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dist_node *node = container_of(w, struct dist_node, accept_io);

    for (int i = 0; i < ACCEPTS_PER_WAKE && node->started; i++) {
        int fd = accept4(node->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                dist__node_log(node, DIST_EPMD_LOG_WARN, "accept: %s", strerror(errno));
            return;
        }
        dist__conn_accept(node, fd);
    }
}

static void epmd_cb(struct dist_epmd_client *client, const struct dist_epmd_client_event *ev,
                    void *user_data)
{
    struct dist_node *node = user_data;

    switch (ev->kind) {
    case DIST_EPMD_CLIENT_REGISTERED:
        node->creation = ev->creation;
        dist__node_log(node, DIST_EPMD_LOG_INFO, "%s registered with epmd, creation %u", node->name,
                       (unsigned)ev->creation);
        if (node->h.on_ready != NULL)
            node->h.on_ready(node, node->creation, node->user_data);
        for (uint32_t i = 1; node->started && i < node->names.count; i++) {
            if (node->peers[i] != NULL)
                peer_kick(node->peers[i]);
        }
        break;
    case DIST_EPMD_CLIENT_REREGISTERED:
        dist__node_log(node, DIST_EPMD_LOG_INFO, "%s registered with epmd again", node->name);
        break;
    case DIST_EPMD_CLIENT_LOST:
        dist__node_log(node, DIST_EPMD_LOG_WARN, "epmd unreachable (%s); retrying",
                       dist_strerror(ev->reason));
        break;
    default:
        dist__node_log(node, DIST_EPMD_LOG_ERROR, "epmd refused %s (%s); retrying", node->name,
                       dist_strerror(ev->reason));
    }
}

/* ---- Life ------------------------------------------------------------------------------------ */

static int opts_check(const struct dist_node_opts *o)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (o->name == NULL || dist_node_name_check(o->name) != 0 ||
        dist__node_name_check(o->name, strlen(o->name)) != 0)
        return DIST_EBADNAME;
    if (o->max_frame != 0 && o->max_frame < MIN_MAX_FRAME)
        return DIST_EINVAL;
    if (o->listen_host != NULL && numeric_addr(o->listen_host, 0, &ss, &len) != 0)
        return DIST_EINVAL;
    if (o->tick_ms > DIST_EPMD_MAX_TIMEOUT_MS ||
        o->handshake_timeout_ms > DIST_EPMD_MAX_TIMEOUT_MS ||
        o->backoff_min_ms > DIST_EPMD_MAX_TIMEOUT_MS ||
        o->backoff_max_ms > DIST_EPMD_MAX_TIMEOUT_MS || o->busy_poll_us > MAX_BUSY_POLL_US)
        return DIST_EINVAL;
    if (o->backoff_min_ms != 0 && o->backoff_max_ms != 0 && o->backoff_min_ms > o->backoff_max_ms)
        return DIST_EINVAL;
    return 0;
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v != 0 ? v : def;
}

static char *listen_host_of(const struct dist_node_opts *o)
{
    const char *host = strchr(o->name, '@') + 1;
    struct sockaddr_storage ss;
    socklen_t len;

    if (o->listen_host != NULL)
        return strdup(o->listen_host);
    if (numeric_addr(host, 0, &ss, &len) == 0)
        return strdup(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host);
    return strdup("0.0.0.0");
}

static void node_settings(struct dist_node *node, const struct dist_node_opts *o)
{
    node->epmd_port = o->epmd_port;
    node->insecure = o->insecure != 0;
    node->tls_mtls = o->ca_file != NULL;
    node->listen_port = o->listen_port;
    node->tick = or_default(o->tick_ms, DEFAULT_TICK_MS) / 1000.0;
    node->hs_timeout = or_default(o->handshake_timeout_ms, DEFAULT_HS_MS) / 1000.0;
    node->max_frame = or_default(o->max_frame, DIST_FRAME_MAX_FRAME);
    node->high_water = o->queue_high_water != 0 ? o->queue_high_water : DEFAULT_HIGH_WATER;
    node->backoff_min_ms = or_default(o->backoff_min_ms, DEFAULT_BACKOFF_MIN);
    node->backoff_max_ms = or_default(o->backoff_max_ms, DEFAULT_BACKOFF_MAX);
    if (node->backoff_max_ms < node->backoff_min_ms)
        node->backoff_max_ms = node->backoff_min_ms;
    if (o->busy_poll_us >= 0)
        node->busy_poll = (o->busy_poll_us != 0 ? o->busy_poll_us : DEFAULT_BUSY_POLL_US) / 1e6;
    node->log_cb = o->log_cb;
    node->log_user_data = o->log_user_data;
    node->lfd = -1;
}

/* The cookie and the TLS context: configuration the node refuses to start without. */
static int node_secrets(struct dist_node *node, const struct dist_node_opts *o)
{
    struct dist__tls_opts topts = {o->ca_file, o->cert_file, o->key_file};
    const char *source = NULL;
    char why[DIST__REASON_MAX] = "";
    int rc =
        dist__cookie_resolve(o->cookie, o->cookie_file, &node->cookie, &source, why, sizeof(why));

    if (rc != 0) {
        dist__node_log(node, DIST_EPMD_LOG_ERROR, "cookie: %s", *why ? why : dist_strerror(rc));
        return rc;
    }
    dist__node_log(node, DIST_EPMD_LOG_DEBUG, "cookie from %s", source);
    if (node->insecure)
        return 0;
    rc = dist__tls_ctx_new(&topts, &node->tls_ctx, why, sizeof(why));
    if (rc != 0)
        dist__node_log(node, DIST_EPMD_LOG_ERROR, "TLS: %s", *why ? why : dist_strerror(rc));
    return rc;
}

int dist_node_new(struct ev_loop *loop, const struct dist_node_opts *opts, struct dist_node **out)
{
    struct dist_node *node;
    int rc;

    if (loop == NULL || opts == NULL || out == NULL)
        return DIST_EINVAL;
    rc = opts_check(opts);
    if (rc != 0)
        return rc;
    node = calloc(1, sizeof(*node));
    if (node == NULL)
        return -ENOMEM;
    node->loop = loop;
    node_settings(node, opts);
    ev_prepare_init(&node->prepare, prepare_cb);
    ev_idle_init(&node->spin, spin_cb);
    rc = -ENOMEM;
    node->name = strdup(opts->name);
    node->listen_host = listen_host_of(opts);
    node->epmd_host = strdup(opts->epmd_host != NULL ? opts->epmd_host : "127.0.0.1");
    node->rxbuf = malloc(DIST__NODE_RX_SIZE);
    node->plainbuf = malloc(DIST__NODE_RX_SIZE);
    if (node->name == NULL || node->listen_host == NULL || node->epmd_host == NULL ||
        node->rxbuf == NULL || node->plainbuf == NULL)
        goto fail;
    rc = dist_node_intern(node, node->name);
    if (rc < 0)
        goto fail;
    rc = node_secrets(node, opts);
    if (rc != 0)
        goto fail;
    *out = node;
    return 0;
fail:
    dist_node_free(node);
    return rc;
}

static int listen_open(struct dist_node *node)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;
    int fd;

    if (numeric_addr(node->listen_host, node->listen_port, &ss, &len) != 0)
        return DIST_EINVAL;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    node->listen_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
    node->lfd = fd;
    return 0;
}

static int epmd_open(struct dist_node *node)
{
    struct dist_epmd_client_opts eo = {
        .host = node->epmd_host,
        .port = node->epmd_port,
        .name = node->name,
        .listen_port = node->listen_port,
        .timeout_ms = (uint32_t)(node->hs_timeout * 1000),
        .backoff_min_ms = node->backoff_min_ms,
        .backoff_max_ms = node->backoff_max_ms,
        .log_cb = node->log_cb,
        .log_user_data = node->log_user_data,
    };

    if (node->epmd == NULL) {
        int rc = dist_epmd_client_new(node->loop, &eo, &node->epmd);
        if (rc != 0)
            return rc;
    }
    return dist_epmd_client_start(node->epmd, epmd_cb, node);
}

int dist_node_start(struct dist_node *node, const struct dist_node_handlers *h, void *user_data)
{
    int rc;

    if (node == NULL || node->started || node->lfd >= 0 || node->epmd != NULL)
        return DIST_EINVAL;
    rc = listen_open(node);
    if (rc != 0)
        return rc;
    rc = epmd_open(node);
    if (rc != 0) {
        dist_epmd_client_free(node->epmd);
        node->epmd = NULL;
        close(node->lfd);
        node->lfd = -1;
        return rc;
    }
    if (h != NULL)
        node->h = *h;
    node->user_data = user_data;
    node->started = 1;
    ev_io_init(&node->accept_io, accept_cb, node->lfd, EV_READ);
    ev_io_start(node->loop, &node->accept_io);
    if (node->insecure)
        dist__node_log(node, DIST_EPMD_LOG_WARN,
                       "INSECURE MODE: %s speaks plain TCP without encryption; anyone on the "
                       "network can read and forge its traffic",
                       node->name);
    dist__node_log(node, DIST_EPMD_LOG_INFO, "%s listening on %s port %u (%s)", node->name,
                   node->listen_host, (unsigned)node->listen_port,
                   node->insecure ? "plain TCP" : "TLS 1.3");
    return 0;
}

void dist_node_stop(struct dist_node *node)
{
    if (node == NULL || !node->started)
        return;
    node->started = 0;
    ev_io_stop(node->loop, &node->accept_io);
    ev_idle_stop(node->loop, &node->spin);
    close(node->lfd);
    dist_epmd_client_stop(node->epmd);
    for (uint32_t i = 1; i < node->names.count; i++) {
        if (node->peers[i] != NULL)
            dist__peer_quiet(node->peers[i]);
    }
    while (node->conns != NULL)
        dist__conn_goodbye(node->conns, "node stopping");
    dist__node_log(node, DIST_EPMD_LOG_INFO, "%s stopped", node->name);
}

void dist_node_free(struct dist_node *node)
{
    if (node == NULL)
        return;
    dist_node_stop(node);
    dist_epmd_client_free(node->epmd);
    for (uint32_t i = 0; i < node->names.count; i++) {
        peer_free(node->peers[i]);
        free(node->names.names[i]);
    }
    dist__conn_reap(node);
    ev_prepare_stop(node->loop, &node->prepare);
    ev_idle_stop(node->loop, &node->spin);
    dist__tls_ctx_free(node->tls_ctx);
    dist__cookie_done(&node->cookie);
    free(node->names.names);
    free(node->names.slots);
    free(node->peers);
    free(node->name);
    free(node->listen_host);
    free(node->epmd_host);
    free(node->rxbuf);
    free(node->plainbuf);
    free(node);
}

uint32_t dist_node_creation(const struct dist_node *node)
{
    return node != NULL ? node->creation : 0;
}

uint16_t dist_node_port(const struct dist_node *node)
{
    return node != NULL && node->lfd >= 0 ? node->listen_port : 0;
}

/* ---- Messages in ----------------------------------------------------------------------------- */

/* The index of a node named on the wire by @c's peer: "" is the peer itself. */
static int wire_node(struct dist_conn *c, const char *name)
{
    if (name[0] == '\0')
        return (int)c->peer->index;
    if (strcmp(name, c->node->name) == 0)
        return 0;
    return dist_node_intern(c->node, name);
}

static int pid_in(struct dist_conn *c, const struct dist_wire_pid *w, struct dist_pid *out)
{
    int idx;

    *out = DIST_PID_NONE;
    if (w->id == 0)
        return 0;
    idx = wire_node(c, w->node);
    if (idx < 0)
        return idx;
    *out = (struct dist_pid){.id = w->id, .node = (uint32_t)idx, .creation = w->creation};
    return 0;
}

static int ref_in(struct dist_conn *c, const struct dist_wire_ref *w, struct dist_ref *out)
{
    int idx;

    memset(out, 0, sizeof(*out));
    if ((w->n[0] | w->n[1] | w->n[2]) == 0)
        return 0;
    idx = wire_node(c, w->node);
    if (idx < 0)
        return idx;
    *out = (struct dist_ref){(uint32_t)idx, w->creation, {w->n[0], w->n[1], w->n[2]}};
    return 0;
}

/* A PID and a registered name: the target of a Send, Monitor or Demonitor. */
static int target_in(struct dist_conn *c, const struct dist_wire_target *t, struct dist_msg *m)
{
    m->to_name = t->name;
    return t->name != NULL ? 0 : pid_in(c, &t->pid, &m->to);
}

static int msg_in(struct dist_conn *c, const struct dist_frame *f, struct dist_msg *m)
{
    switch (f->kind) {
    case DIST_FRAME_SEND:
        m->type = f->u.send.type;
        m->payload = f->u.send.payload.data;
        m->len = f->u.send.payload.len;
        m->send_kind = (int)f->u.send.kind;
        return pid_in(c, &f->u.send.from, &m->from) || target_in(c, &f->u.send.to, m) ||
               ref_in(c, &f->u.send.ref, &m->ref);
    case DIST_FRAME_LINK:
    case DIST_FRAME_UNLINK:
    case DIST_FRAME_EXIT:
        m->reason = f->u.link.reason;
        m->flags = f->u.link.link ? DIST_EXIT_LINK : 0;
        return pid_in(c, &f->u.link.from, &m->from) || pid_in(c, &f->u.link.to, &m->to);
    case DIST_FRAME_MONITOR:
    case DIST_FRAME_DEMONITOR:
        return pid_in(c, &f->u.monitor.from, &m->from) || target_in(c, &f->u.monitor.to, m) ||
               ref_in(c, &f->u.monitor.ref, &m->ref);
    case DIST_FRAME_DOWN:
        m->reason = f->u.down.reason;
        return pid_in(c, &f->u.down.from, &m->from) || pid_in(c, &f->u.down.to, &m->to) ||
               ref_in(c, &f->u.down.ref, &m->ref);
    case DIST_FRAME_SPAWN_REQUEST:
        m->req_id = f->u.spawn_request.req_id;
        m->behaviour = f->u.spawn_request.behaviour;
        m->type = f->u.spawn_request.arg_type;
        m->payload = f->u.spawn_request.arg.data;
        m->len = f->u.spawn_request.arg.len;
        m->flags = f->u.spawn_request.flags;
        return pid_in(c, &f->u.spawn_request.from, &m->from);
    case DIST_FRAME_SPAWN_REPLY:
        m->req_id = f->u.spawn_reply.req_id;
        m->error = f->u.spawn_reply.error;
        return pid_in(c, &f->u.spawn_reply.to, &m->to) || pid_in(c, &f->u.spawn_reply.pid, &m->pid);
    default:
        return DIST_EFRAME_BAD;
    }
}

int dist__node_deliver(struct dist_conn *c, const struct dist_frame *f)
{
    struct dist_node *node = c->node;
    struct dist_msg m = {.kind = (int)f->kind};

    if (msg_in(c, f, &m) != 0)
        return DIST_EFRAME_BAD;
    if (node->started && node->h.on_message != NULL)
        node->h.on_message(node, &m, c->peer->name, node->user_data);
    return 0;
}

/* ---- Messages out ---------------------------------------------------------------------------- */

static int pid_out(const struct dist_node *node, const struct dist_pid *p, struct dist_wire_pid *w)
{
    *w = (struct dist_wire_pid){"", 0, 0};
    if (p->id == 0)
        return 0;
    if (p->node >= node->names.count)
        return DIST_EINVAL;
    *w = (struct dist_wire_pid){p->node == 0 ? "" : node->names.names[p->node], p->id, p->creation};
    return 0;
}

static int ref_out(const struct dist_node *node, const struct dist_ref *r, struct dist_wire_ref *w)
{
    *w = (struct dist_wire_ref){.node = ""};
    if ((r->n[0] | r->n[1] | r->n[2]) == 0)
        return 0;
    if (r->node >= node->names.count)
        return DIST_EINVAL;
    *w = (struct dist_wire_ref){
        r->node == 0 ? "" : node->names.names[r->node], r->creation, {r->n[0], r->n[1], r->n[2]}};
    return 0;
}

static int target_out(const struct dist_node *node, const struct dist_msg *m,
                      struct dist_wire_target *t)
{
    t->name = m->to_name;
    return m->to_name != NULL ? pid_out(node, &DIST_PID_NONE, &t->pid)
                              : pid_out(node, &m->to, &t->pid);
}

static int send_out(const struct dist_node *node, const struct dist_msg *m, struct dist_frame *f)
{
    if (m->send_kind < DIST_SEND_KIND_PLAIN || m->send_kind > DIST_SEND_KIND_REPLY)
        return DIST_EINVAL;
    f->u.send.type = m->type;
    f->u.send.payload = (struct dist_bytes){m->payload, m->len};
    f->u.send.kind = (enum dist_send_kind)m->send_kind;
    return pid_out(node, &m->from, &f->u.send.from) || target_out(node, m, &f->u.send.to) ||
           ref_out(node, &m->ref, &f->u.send.ref);
}

/* Whether @m has the processes its kind cannot go without (the receiver refuses it otherwise). */
static int msg_complete(const struct dist_msg *m)
{
    switch (m->kind) {
    case DIST_MSG_SEND:
    case DIST_MSG_MONITOR:
    case DIST_MSG_DEMONITOR:
        return m->to_name != NULL || m->to.id != 0;
    case DIST_MSG_SPAWN_REQUEST:
        return 1;
    case DIST_MSG_SPAWN_REPLY:
        return m->to.id != 0;
    default:
        return m->from.id != 0 && m->to.id != 0;
    }
}

static int msg_out(const struct dist_node *node, const struct dist_msg *m, struct dist_frame *f)
{
    if (!msg_complete(m))
        return DIST_EINVAL;
    f->kind = (enum dist_frame_kind)m->kind;
    switch (m->kind) {
    case DIST_MSG_SEND:
        return send_out(node, m, f);
    case DIST_MSG_LINK:
    case DIST_MSG_UNLINK:
    case DIST_MSG_EXIT:
        f->u.link.reason = m->reason;
        f->u.link.link = (m->flags & DIST_EXIT_LINK) != 0;
        return pid_out(node, &m->from, &f->u.link.from) || pid_out(node, &m->to, &f->u.link.to);
    case DIST_MSG_MONITOR:
    case DIST_MSG_DEMONITOR:
        return pid_out(node, &m->from, &f->u.monitor.from) ||
               target_out(node, m, &f->u.monitor.to) || ref_out(node, &m->ref, &f->u.monitor.ref);
    case DIST_MSG_DOWN:
        f->u.down.reason = m->reason;
        return pid_out(node, &m->from, &f->u.down.from) || pid_out(node, &m->to, &f->u.down.to) ||
               ref_out(node, &m->ref, &f->u.down.ref);
    case DIST_MSG_SPAWN_REQUEST:
        f->u.spawn_request.req_id = m->req_id;
        f->u.spawn_request.behaviour = m->behaviour;
        f->u.spawn_request.arg_type = m->type;
        f->u.spawn_request.arg = (struct dist_bytes){m->payload, m->len};
        f->u.spawn_request.flags = m->flags;
        return pid_out(node, &m->from, &f->u.spawn_request.from);
    case DIST_MSG_SPAWN_REPLY:
        f->u.spawn_reply.req_id = m->req_id;
        f->u.spawn_reply.error = m->error;
        return pid_out(node, &m->to, &f->u.spawn_reply.to) ||
               pid_out(node, &m->pid, &f->u.spawn_reply.pid);
    default:
        return DIST_EINVAL;
    }
}

/* Queue @m for the node at @index and get it moving. */
static int post_to(struct dist_node *node, int index, const struct dist_msg *m)
{
    struct dist_frame f;
    struct dist_peer *p;
    int rc;

    if (index < 0)
        return index;
    if (index == 0 || !node->started)
        return DIST_EINVAL;
    memset(&f, 0, sizeof(f));
    if (msg_out(node, m, &f) != 0)
        return DIST_EINVAL;
    p = dist__peer_get(node, (uint32_t)index);
    if (p == NULL)
        return -ENOMEM;
    if (dist__peer_pending(p) >= node->high_water)
        return DIST_EBUSY;
    /* One lane per sender keeps a sender's messages in order behind its large ones. */
    rc = dist__frame_writer_put(&p->w, &f, m->from.id != 0 ? m->from.id : 1);
    if (rc != 0)
        return rc;
    if (p->conn != NULL && p->conn->state == DIST__CONN_UP)
        dist__conn_mark(p->conn);
    else
        peer_kick(p);
    return 0;
}

int dist_node_post(struct dist_node *node, const char *to_node, const struct dist_msg *msg)
{
    if (node == NULL || to_node == NULL || msg == NULL)
        return DIST_EINVAL;
    return post_to(node, dist_node_intern(node, to_node), msg);
}

int dist_node_send(struct dist_node *node, const struct dist_pid *from, const char *to_node,
                   const struct dist_pid *to, const char *to_name, const char *type,
                   const void *payload, size_t len)
{
    struct dist_msg m = {
        .kind = DIST_MSG_SEND,
        .from = from != NULL ? *from : DIST_PID_NONE,
        .to = to != NULL ? *to : DIST_PID_NONE,
        .to_name = to_name,
        .type = type,
        .payload = payload,
        .len = len,
    };

    if (node == NULL || (to_name == NULL && (to == NULL || to->id == 0)))
        return DIST_EINVAL;
    if (to_node != NULL)
        return post_to(node, dist_node_intern(node, to_node), &m);
    return post_to(node, to != NULL && to->node != 0 ? (int)to->node : DIST_EINVAL, &m);
}
