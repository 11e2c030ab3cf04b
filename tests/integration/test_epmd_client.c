/*
 * test_epmd_client.c: the asynchronous epmd client against the real daemon.
 *
 * Each test starts EPMD_BIN on a free port of 127.0.0.1 (daemon.h) and a libev loop of its
 * own, which it runs in bounded steps until what it waits for has happened. .fini frees every
 * client and lookup still alive, then stops and reaps every daemon started, failed test or not.
 * One test runs the lookup against Erlang's own epmd, and is skipped when it is not installed.
 */
#include <criterion/criterion.h>

#include <ev.h>

/* daemon.h serves several test files; not every one of its helpers is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#include "dist.h"

#define ERL_EPMD      "/usr/bin/epmd"
#define WAIT_MS       5000 /* bound on any one wait */
#define MAX_CLIENTS   8
#define MAX_EVENTS    64
#define MAX_WATCHED   256
#define ALPHA_PORT    41029
#define BETA_PORT     41030
#define SHORT_LEASE   1000 /* ms */
#define BACKOFF_MIN   20
#define BACKOFF_MAX   300
#define LOOKUP_TMO_MS 2000

/* What a client reported, in order. */
struct recorder {
    struct dist_epmd_client_event ev[MAX_EVENTS];
    int n;
    int free_on_register; /* free the client from inside its REGISTERED callback */
};

/* What a watch reported, with the entry copied out. */
struct watched {
    int kind;
    int reason;
    char name[64];
    uint16_t port;
    uint32_t creation;
    uint8_t flags;
    char meta[256]; /* "k=v;k=v;" */
};

struct watch_rec {
    struct watched ev[MAX_WATCHED];
    int n;
};

struct lookup_result {
    int done;
    int status;
    uint16_t port, high, low;
    char name[64];
};

static struct daemon d;
static struct daemon erl;
static struct ev_loop *loop;
static struct dist_epmd_client *clients[MAX_CLIENTS];
static struct recorder recs[MAX_CLIENTS];
static struct watch_rec wrec;
static struct lookup_result lr;
static struct dist_epmd_lookup *pending_lookup;

/* A fake epmd on the test's loop: it reads a request and answers fixed bytes, then closes. */
static struct fake {
    ev_io w;
    int fd;
    const void *reply;
    size_t len;
    int accepted;
} fake = {.fd = -1};

/* Erlang's epmd ends with its own status on SIGTERM: reap it without judging that. */
static void erl_epmd_stop(void)
{
    daemon_kill(&erl);
    if (erl.dir[0] == '\0')
        return;
    unlink(erl.log);
    rmdir(erl.dir);
    erl.dir[0] = '\0';
}

static void setup(void)
{
    daemon_start(&d, NULL);
    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(loop);
}

static void teardown(void)
{
    if (pending_lookup != NULL)
        dist_epmd_lookup_cancel(pending_lookup);
    for (int i = 0; i < MAX_CLIENTS; i++)
        dist_epmd_client_free(clients[i]);
    if (fake.fd >= 0)
        close(fake.fd);
    if (loop != NULL)
        ev_loop_destroy(loop);
    erl_epmd_stop();
    daemon_stop(&d);
}

TestSuite(epmd_client, .init = setup, .fini = teardown, .timeout = 30);

/* ---- Running the loop ---------------------------------------------------------------------- */

static void guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/* Run the loop until done(arg) or ms have passed; returns done(arg). */
static int run_until(int (*done)(const void *), const void *arg, unsigned ms)
{
    ev_timer guard;
    int expired = 0;

    ev_now_update(loop);
    ev_timer_init(&guard, guard_cb, ms / 1000.0, 0.);
    guard.data = &expired;
    ev_timer_start(loop, &guard);
    while (!done(arg) && !expired)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    return done(arg);
}

static int never(const void *arg)
{
    return 0;
}

static void run_for(unsigned ms)
{
    run_until(never, NULL, ms);
}

/* ---- Clients --------------------------------------------------------------------------------- */

static void log_cb(int level, const char *msg, void *user_data)
{
    if (level <= DIST_EPMD_LOG_WARN)
        cr_log_info("client %ld: %s", (long)(intptr_t)user_data, msg);
}

static void event_cb(struct dist_epmd_client *c, const struct dist_epmd_client_event *ev, void *ud)
{
    struct recorder *r = ud;

    cr_assert_lt(r->n, MAX_EVENTS, "too many client events");
    r->ev[r->n++] = *ev;
    if (r->free_on_register && ev->kind == DIST_EPMD_CLIENT_REGISTERED) {
        dist_epmd_client_free(c);
        clients[r - recs] = NULL;
    }
}

static struct dist_epmd_client_opts opts_for(const char *name, uint16_t listen_port, long slot)
{
    struct dist_epmd_client_opts o = {
        .host = "127.0.0.1",
        .port = d.port,
        .name = name,
        .listen_port = listen_port,
        .timeout_ms = 2000,
        .backoff_min_ms = BACKOFF_MIN,
        .backoff_max_ms = BACKOFF_MAX,
        .log_cb = log_cb,
        .log_user_data = (void *)(intptr_t)slot,
    };
    return o;
}

/* Make client number slot from o. */
static struct dist_epmd_client *client_make(int slot, const struct dist_epmd_client_opts *o)
{
    int rc = dist_epmd_client_new(loop, o, &clients[slot]);

    cr_assert_eq(rc, 0, "dist_epmd_client_new: %s", dist_strerror(rc));
    return clients[slot];
}

/* Make and start client number slot registering name. */
static struct dist_epmd_client *client_run(int slot, struct dist_epmd_client_opts o)
{
    struct dist_epmd_client *c = client_make(slot, &o);
    int rc = dist_epmd_client_start(c, event_cb, &recs[slot]);

    cr_assert_eq(rc, 0, "dist_epmd_client_start: %s", dist_strerror(rc));
    return c;
}

static void client_drop(int slot)
{
    dist_epmd_client_free(clients[slot]);
    clients[slot] = NULL;
}

struct want {
    int slot;
    int kind;
    int count;
};

static int count_kind(int slot, int kind)
{
    int n = 0;

    for (int i = 0; i < recs[slot].n; i++)
        n += recs[slot].ev[i].kind == kind;
    return n;
}

static int have_events(const void *arg)
{
    const struct want *w = arg;

    return count_kind(w->slot, w->kind) >= w->count;
}

/* Wait for the count-th event of kind from client slot; returns it. */
static const struct dist_epmd_client_event *wait_event(int slot, int kind, int count)
{
    struct want w = {slot, kind, count};

    cr_assert(run_until(have_events, &w, WAIT_MS), "client %d: no event %d (#%d) within %d ms",
              slot, kind, count, WAIT_MS);
    for (int i = 0, seen = 0; i < recs[slot].n; i++) {
        if (recs[slot].ev[i].kind == kind && ++seen == count)
            return &recs[slot].ev[i];
    }
    return NULL;
}

/* ---- Watching -------------------------------------------------------------------------------- */

static void watch_cb(struct dist_epmd_client *c, const struct dist_epmd_watch_event *ev, void *ud)
{
    struct watch_rec *w = ud;
    struct watched *out;

    cr_assert_lt(w->n, MAX_WATCHED, "too many watch events");
    out = &w->ev[w->n++];
    memset(out, 0, sizeof(*out));
    out->kind = ev->kind;
    out->reason = ev->reason;
    if (ev->entry == NULL)
        return;
    snprintf(out->name, sizeof(out->name), "%.*s", (int)ev->entry->node.name_len,
             ev->entry->node.name);
    out->port = ev->entry->node.port;
    out->creation = ev->entry->creation;
    out->flags = ev->entry->flags;
    const uint8_t *cur = ev->entry->meta.meta, *end = cur + ev->entry->meta.meta_len;
    struct dist_epmd_meta m;
    while (dist_epmd_meta_next(&cur, end, &m) == 0) {
        size_t len = strlen(out->meta);
        snprintf(out->meta + len, sizeof(out->meta) - len, "%.*s=%.*s;", (int)m.key_len, m.key,
                 (int)m.value_len, m.value);
    }
}

struct want_watch {
    int kind;
    const char *name; /* NULL: any */
    int from;         /* first index to look at */
};

static int find_watched(const struct want_watch *w)
{
    for (int i = w->from; i < wrec.n; i++) {
        if (wrec.ev[i].kind == w->kind &&
            (w->name == NULL || strcmp(wrec.ev[i].name, w->name) == 0))
            return i;
    }
    return -1;
}

static int have_watched(const void *arg)
{
    return find_watched(arg) >= 0;
}

/* Wait for a watch event of kind (about name, if not NULL) at index from or later. */
static const struct watched *wait_watched(int kind, const char *name, int from)
{
    struct want_watch w = {kind, name, from};

    cr_assert(run_until(have_watched, &w, WAIT_MS), "no watch event %d for %s within %d ms", kind,
              name != NULL ? name : "(any)", WAIT_MS);
    return &wrec.ev[find_watched(&w)];
}

/* A watch-only client in slot, synced. */
static void watcher_run(int slot)
{
    struct dist_epmd_client_opts o = opts_for(NULL, 0, slot);
    struct dist_epmd_client *c = client_make(slot, &o);

    cr_assert_eq(dist_epmd_client_watch(c, watch_cb, &wrec), 0);
    wait_watched(DIST_EPMD_WATCH_SYNCED, NULL, 0);
}

/* ---- Lookups --------------------------------------------------------------------------------- */

static void lookup_cb(int status, const struct dist_epmd_node *node, void *ud)
{
    struct lookup_result *r = ud;

    cr_assert_not(r->done, "a lookup called back twice");
    r->done = 1;
    r->status = status;
    pending_lookup = NULL;
    if (node == NULL)
        return;
    r->port = node->port;
    r->high = node->high_version;
    r->low = node->low_version;
    snprintf(r->name, sizeof(r->name), "%.*s", (int)node->name_len, node->name);
}

static int lookup_done(const void *arg)
{
    return lr.done;
}

/* Start a lookup; asserts it started. */
static void lookup_start(const char *host, uint16_t port, const char *name, uint32_t tmo)
{
    int rc;

    memset(&lr, 0, sizeof(lr));
    rc = dist_epmd_lookup(loop, host, port, name, tmo, lookup_cb, &lr, &pending_lookup);
    cr_assert_eq(rc, 0, "dist_epmd_lookup: %s", dist_strerror(rc));
    cr_assert_not(lr.done, "the lookup called back from within dist_epmd_lookup");
}

/* A whole lookup; returns its status, with lr filled. */
static int lookup(const char *host, uint16_t port, const char *name)
{
    lookup_start(host, port, name, LOOKUP_TMO_MS);
    cr_assert(run_until(lookup_done, NULL, LOOKUP_TMO_MS + 1000), "the lookup never finished");
    return lr.status;
}

static void assert_found(const char *name, uint16_t port)
{
    int rc = lookup("127.0.0.1", d.port, name);

    cr_assert_eq(rc, 0, "lookup of %s: %s", name, dist_strerror(rc));
    cr_assert_eq(lr.port, port, "lookup of %s gave port %u, expected %u", name, lr.port, port);
    cr_assert_str_eq(lr.name, name);
}

/* ---- Raw leases, for a registration nobody renews ------------------------------------------- */

static void raw_lease(const char *name, const char *token, uint32_t lease_ms, uint16_t port)
{
    struct dist_epmd_lease l = {
        .node = {.port = port,
                 .node_type = 77,
                 .high_version = 6,
                 .low_version = 5,
                 .name = name,
                 .name_len = strlen(name)},
        .lease_ms = lease_ms,
        .token = (const uint8_t *)token,
        .token_len = strlen(token),
    };
    uint8_t buf[DIST_EPMD_BUFSIZE], reply[14];
    int len = dist_epmd_lease_req_build(buf, sizeof(buf), &l);
    int fd = dial(d.port);

    cr_assert_gt(len, 0);
    send_raw(fd, buf, (size_t)len);
    cr_assert_eq(recv_upto(fd, reply, sizeof(reply), NULL), sizeof(reply), "short LEASE_RESP");
    close(fd);
    cr_assert_eq(reply[4], DIST_EPMD_LEASE_RESP);
    cr_assert_eq(reply[5], DIST_EPMD_OK, "raw lease of %s refused (%u)", name, reply[5]);
}

/* ---- Registration ---------------------------------------------------------------------------- */

Test(epmd_client, register_then_lookup_finds_port_and_creation)
{
    const struct dist_epmd_client_event *ev;
    const struct watched *w;

    client_run(0, opts_for("alpha@localhost", ALPHA_PORT, 0));
    ev = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_neq(ev->creation, 0);
    cr_assert_eq(ev->creation, ev->epmd_creation);
    cr_assert_eq(ev->lease_ms, 60000, "default lease %u ms, epmd's default is 60 s", ev->lease_ms);
    cr_assert_eq(dist_epmd_client_creation(clients[0]), ev->creation);

    assert_found("alpha", ALPHA_PORT);
    cr_assert_eq(lr.high, 6);
    cr_assert_eq(lr.low, 5);

    /* PORT2_RESP carries no creation; epmd's listing does. */
    watcher_run(1);
    w = wait_watched(DIST_EPMD_WATCH_PRESENT, "alpha", 0);
    cr_assert_eq(w->creation, ev->creation);
    cr_assert_eq(w->port, ALPHA_PORT);
    cr_assert(w->flags & DIST_EPMD_ENTRY_LEASED);
}

Test(epmd_client, watch_snapshot_carries_metadata)
{
    static const struct dist_epmd_kv meta[] = {
        {"proto", "dist/1"}, {"tls", "1.3"}, {"version", "0.1.0"}, {"listen", "127.0.0.1:41029"}};
    struct dist_epmd_client_opts o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    const struct watched *reset, *w;

    o.meta = meta;
    o.meta_count = 4;
    client_run(0, o);
    wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    watcher_run(1);
    reset = wait_watched(DIST_EPMD_WATCH_RESET, NULL, 0);
    w = wait_watched(DIST_EPMD_WATCH_PRESENT, "alpha", 0);
    cr_assert_lt(reset - wrec.ev, w - wrec.ev, "PRESENT came before RESET");
    cr_assert_str_eq(w->meta, "proto=dist/1;tls=1.3;version=0.1.0;listen=127.0.0.1:41029;");
    cr_assert_lt(w - wrec.ev, wait_watched(DIST_EPMD_WATCH_SYNCED, NULL, 0) - wrec.ev);
}

Test(epmd_client, keepalive_holds_registration_past_the_lease)
{
    struct dist_epmd_client_opts o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    const struct dist_epmd_client_event *ev;
    struct want_watch gone = {DIST_EPMD_WATCH_EXPIRED, "alpha", 0};

    watcher_run(1);
    o.lease_ms = SHORT_LEASE;
    client_run(0, o);
    ev = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_eq(ev->lease_ms, SHORT_LEASE, "granted %u ms", ev->lease_ms);

    /* The control: the same lease without keep-alives lapses within this window. */
    raw_lease("gamma", "tok-gamma", SHORT_LEASE, 5000);
    run_for(3 * SHORT_LEASE + 500);
    wait_watched(DIST_EPMD_WATCH_EXPIRED, "gamma", 0);

    cr_assert_eq(find_watched(&gone), -1, "alpha's lease expired despite the keep-alives");
    gone.kind = DIST_EPMD_WATCH_UNREGISTERED;
    cr_assert_eq(find_watched(&gone), -1, "alpha was unregistered");
    cr_assert_eq(recs[0].n, 1, "events besides REGISTERED: %d", recs[0].n);
    assert_found("alpha", ALPHA_PORT);
}

static int alpha_back(const void *arg)
{
    int from = (int)(*(const struct watched *const *)arg - wrec.ev);
    struct want_watch present = {DIST_EPMD_WATCH_PRESENT, "alpha", from};
    struct want_watch registered = {DIST_EPMD_WATCH_REGISTERED, "alpha", from};

    return find_watched(&present) >= 0 || find_watched(&registered) >= 0;
}

Test(epmd_client, reregisters_after_epmd_restart)
{
    struct dist_epmd_client_opts o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    const struct dist_epmd_client_event *ev;
    const struct watched *lost;
    struct dist_epmd_client *c;
    uint32_t creation;

    o.lease_ms = 2000;
    c = client_run(0, o);
    creation = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1)->creation;
    cr_assert_eq(dist_epmd_client_watch(c, watch_cb, &wrec), 0);
    wait_watched(DIST_EPMD_WATCH_PRESENT, "alpha", 0);

    daemon_kill(&d);
    ev = wait_event(0, DIST_EPMD_CLIENT_LOST, 1);
    cr_assert_lt(ev->reason, 0);
    lost = wait_watched(DIST_EPMD_WATCH_LOST, NULL, 0);
    cr_assert_eq(lookup("127.0.0.1", d.port, "alpha"), -ECONNREFUSED);

    daemon_restart(&d);
    ev = wait_event(0, DIST_EPMD_CLIENT_REREGISTERED, 1);
    cr_assert_eq(ev->creation, creation, "the node's creation changed");
    cr_assert_neq(ev->epmd_creation, 0);
    cr_assert_eq(dist_epmd_client_creation(c), creation);
    assert_found("alpha", ALPHA_PORT);
    /* The watch re-synced; alpha is in its snapshot or, if it came back later, announced. */
    wait_watched(DIST_EPMD_WATCH_RESET, NULL, (int)(lost - wrec.ev));
    wait_watched(DIST_EPMD_WATCH_SYNCED, NULL, (int)(lost - wrec.ev));
    cr_assert(run_until(alpha_back, &lost, WAIT_MS), "the watch never showed alpha again");
    cr_assert_eq(count_kind(0, DIST_EPMD_CLIENT_LOST), 1, "LOST reported more than once");
}

Test(epmd_client, watch_reports_registered_unregistered_and_expired)
{
    const struct dist_epmd_client_event *ev;
    const struct watched *w;

    watcher_run(0);
    client_run(1, opts_for("beta@localhost", BETA_PORT, 1));
    ev = wait_event(1, DIST_EPMD_CLIENT_REGISTERED, 1);
    w = wait_watched(DIST_EPMD_WATCH_REGISTERED, "beta", 0);
    cr_assert_eq(w->port, BETA_PORT);
    cr_assert_eq(w->creation, ev->creation);

    /* Freeing a client unregisters its name at once. */
    client_drop(1);
    wait_watched(DIST_EPMD_WATCH_UNREGISTERED, "beta", 0);
    cr_assert_eq(lookup("127.0.0.1", d.port, "beta"), DIST_ENOTFOUND);

    raw_lease("gamma", "tok-gamma", 200, 5000);
    wait_watched(DIST_EPMD_WATCH_REGISTERED, "gamma", 0);
    wait_watched(DIST_EPMD_WATCH_EXPIRED, "gamma", 0);
}

Test(epmd_client, taken_name_is_refused_until_it_is_freed)
{
    struct dist_epmd_client_opts a = opts_for("alpha@localhost", ALPHA_PORT, 0);
    struct dist_epmd_client_opts b = opts_for("alpha@otherhost", BETA_PORT, 1);
    const struct dist_epmd_client_event *ev;

    a.token = (const uint8_t *)"owner-a";
    a.token_len = 7;
    b.token = (const uint8_t *)"owner-b";
    b.token_len = 7;
    client_run(0, a);
    wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    client_run(1, b);
    ev = wait_event(1, DIST_EPMD_CLIENT_REFUSED, 1);
    cr_assert_eq(ev->reason, DIST_ETAKEN, "refused with %s", dist_err_name(ev->reason));
    run_for(10 * BACKOFF_MAX / 3);
    cr_assert_eq(count_kind(1, DIST_EPMD_CLIENT_REFUSED), 1, "REFUSED reported more than once");
    assert_found("alpha", ALPHA_PORT);

    /* B keeps trying: once A lets the name go, B gets it. */
    dist_epmd_client_stop(clients[0]);
    ev = wait_event(1, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_neq(ev->creation, 0);
    assert_found("alpha", BETA_PORT);
}

Test(epmd_client, same_owner_replaces_its_registration_at_once)
{
    struct dist_epmd_client_opts o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    const struct dist_epmd_client_event *first, *second;

    o.token = (const uint8_t *)"stable-token";
    o.token_len = 12;
    o.lease_ms = 60000;
    client_run(0, o);
    first = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    o.listen_port = BETA_PORT;
    client_run(1, o);
    second = wait_event(1, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_eq(count_kind(1, DIST_EPMD_CLIENT_REFUSED), 0);
    cr_assert_neq(second->creation, first->creation, "a new incarnation got the old creation");
    assert_found("alpha", BETA_PORT);
}

Test(epmd_client, free_from_inside_the_callback)
{
    recs[0].free_on_register = 1;
    client_run(0, opts_for("alpha@localhost", ALPHA_PORT, 0));
    wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_null(clients[0]);
    run_for(200);
    cr_assert_eq(recs[0].n, 1, "an event after the client was freed");
}

Test(epmd_client, stop_then_start_keeps_the_node_creation)
{
    struct dist_epmd_client *c = client_run(0, opts_for("alpha@localhost", ALPHA_PORT, 0));
    uint32_t creation = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1)->creation;
    const struct dist_epmd_client_event *ev;

    dist_epmd_client_stop(c);
    cr_assert_eq(dist_epmd_client_start(c, event_cb, &recs[0]), 0);
    cr_assert_eq(dist_epmd_client_start(c, event_cb, &recs[0]), DIST_EINVAL);
    ev = wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 2);
    cr_assert_eq(ev->creation, creation);
    cr_assert_neq(ev->epmd_creation, creation, "epmd reused a creation for a new registration");
}

/* ---- Lookups --------------------------------------------------------------------------------- */

Test(epmd_client, lookup_of_unknown_name_is_not_found)
{
    cr_assert_eq(lookup("127.0.0.1", d.port, "nosuch"), DIST_ENOTFOUND);
}

Test(epmd_client, lookup_against_closed_port_is_unreachable)
{
    uint16_t port = pick_port();

    cr_assert_neq(port, 0);
    cr_assert_eq(lookup("127.0.0.1", port, "alpha"), -ECONNREFUSED);
}

/* A listener that never accepts: connects complete, nothing answers. */
static int silent_listener(uint16_t *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

Test(epmd_client, lookup_of_silent_peer_times_out)
{
    uint16_t port;
    int fd = silent_listener(&port);
    uint64_t t0 = mono_ms();

    lookup_start("127.0.0.1", port, "alpha", 300);
    cr_assert(run_until(lookup_done, NULL, 3000), "the lookup outlived its timeout");
    close(fd);
    cr_assert_eq(lr.status, -ETIMEDOUT, "status %s", dist_err_name(lr.status));
    cr_assert_geq(mono_ms() - t0, 250, "timed out before its timeout");
}

Test(epmd_client, lookup_can_be_cancelled)
{
    uint16_t port;
    int fd = silent_listener(&port);
    struct dist_epmd_lookup *q;

    lookup_start("127.0.0.1", port, "alpha", 5000);
    q = pending_lookup;
    dist_epmd_lookup_cancel(q);
    cr_assert(lr.done);
    cr_assert_eq(lr.status, -ECANCELED);
    run_for(100);
    close(fd);
}

static void fake_cb(struct ev_loop *l, ev_io *w, int revents)
{
    uint8_t req[DIST_EPMD_BUFSIZE];
    int fd = accept4(fake.fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    fake.accepted++;
    sock_timeouts(fd, 1000);
    (void)!recv(fd, req, sizeof(req), 0);
    (void)!send(fd, fake.reply, fake.len, MSG_NOSIGNAL);
    close(fd);
}

static uint16_t fake_start(const void *reply, size_t len)
{
    uint16_t port;

    fake.fd = silent_listener(&port);
    fake.reply = reply;
    fake.len = len;
    ev_io_init(&fake.w, fake_cb, fake.fd, EV_READ);
    ev_io_start(loop, &fake.w);
    return port;
}

static const char http_reply[] = "HTTP/1.0 400 Bad Request\r\n\r\n";

Test(epmd_client, lookup_of_garbage_reply_is_malformed)
{
    uint16_t port = fake_start(http_reply, sizeof(http_reply) - 1);

    cr_assert_eq(lookup("127.0.0.1", port, "alpha"), DIST_EMALFORMED, "status %s",
                 dist_err_name(lr.status));
}

static int accepted_twice(const void *arg)
{
    return fake.accepted >= 2;
}

Test(epmd_client, garbage_from_epmd_is_lost_and_retried)
{
    struct dist_epmd_client_opts o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    const struct dist_epmd_client_event *ev;

    o.port = fake_start(http_reply, sizeof(http_reply) - 1);
    client_run(0, o);
    ev = wait_event(0, DIST_EPMD_CLIENT_LOST, 1);
    cr_assert_eq(ev->reason, DIST_EMALFORMED, "lost with %s", dist_err_name(ev->reason));
    cr_assert(run_until(accepted_twice, NULL, WAIT_MS), "the client did not retry");
    cr_assert_eq(count_kind(0, DIST_EPMD_CLIENT_LOST), 1, "LOST reported more than once");
}

Test(epmd_client, watch_refuses_a_frame_over_its_limit)
{
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, DIST_EPMD_LIST_RESP};
    struct dist_epmd_client_opts o = opts_for(NULL, 0, 0);
    const struct watched *w;

    o.port = fake_start(huge, sizeof(huge));
    o.max_frame = 4096;
    cr_assert_eq(dist_epmd_client_watch(client_make(0, &o), watch_cb, &wrec), 0);
    w = wait_watched(DIST_EPMD_WATCH_LOST, NULL, 0);
    cr_assert_eq(w->reason, DIST_ELENGTH, "lost with %s", dist_err_name(w->reason));
    cr_assert_eq(find_watched(&(struct want_watch){DIST_EPMD_WATCH_RESET, NULL, 0}), -1);
}

Test(epmd_client, idle_session_closed_by_epmd_is_reopened_quietly)
{
    static const char *const flags[] = {"-packet_timeout", "1", NULL};
    struct dist_epmd_client_opts o;

    daemon_stop(&d);
    daemon_start(&d, flags);
    o = opts_for("alpha@localhost", ALPHA_PORT, 0);
    o.lease_ms = 6000; /* renewed every 2 s: epmd closes the idle session after 1 s */
    client_run(0, o);
    wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    run_for(4500);
    cr_assert_eq(recs[0].n, 1, "%d events; the first after REGISTERED is %d", recs[0].n,
                 recs[0].n > 1 ? recs[0].ev[1].kind : 0);
    assert_found("alpha", ALPHA_PORT);
}

Test(epmd_client, lookup_resolves_host_names)
{
    client_run(0, opts_for("alpha@localhost", ALPHA_PORT, 0));
    wait_event(0, DIST_EPMD_CLIENT_REGISTERED, 1);
    cr_assert_eq(lookup(NULL, d.port, "alpha@localhost"), 0, "status %s", dist_err_name(lr.status));
    cr_assert_eq(lr.port, ALPHA_PORT);
}

Test(epmd_client, lookup_of_unresolvable_host_fails)
{
    cr_assert_eq(lookup("no-such-host.invalid", d.port, "alpha"), DIST_ERESOLVE);
}

Test(epmd_client, lookup_refuses_bad_arguments)
{
    struct dist_epmd_lookup *q = NULL;

    cr_assert_eq(dist_epmd_lookup(loop, NULL, d.port, "alpha", 0, lookup_cb, &lr, &q), DIST_EINVAL);
    cr_assert_eq(dist_epmd_lookup(loop, "127.0.0.1", d.port, "", 0, lookup_cb, &lr, &q),
                 DIST_EBADNAME);
    cr_assert_eq(dist_epmd_lookup(loop, "127.0.0.1", d.port, "a", DIST_EPMD_MAX_TIMEOUT_MS + 1,
                                  lookup_cb, &lr, &q),
                 DIST_EINVAL);
    cr_assert_null(q);
    run_for(50);
    cr_assert_not(lr.done, "a refused lookup called back");
}

/* Erlang's epmd on a free port, or a skip when it is not installed. */
static void erl_epmd_start(void)
{
    char port[8];
    char *argv[] = {ERL_EPMD, "-port", port, "-address", "127.0.0.1", NULL};

    if (access(ERL_EPMD, X_OK) != 0) {
        daemon_stop(&d);
        ev_loop_destroy(loop);
        loop = NULL;
        cr_skip_test("%s is not installed", ERL_EPMD);
    }
    snprintf(erl.dir, sizeof(erl.dir), "/tmp/erl-epmd-XXXXXX");
    cr_assert_not_null(mkdtemp(erl.dir));
    snprintf(erl.log, sizeof(erl.log), "%s/stderr.log", erl.dir);
    for (int tries = 0; tries < DAEMON_START_TRIES; tries++) {
        int fd = open(erl.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        cr_assert_geq(fd, 0);
        erl.port = pick_port();
        snprintf(port, sizeof(port), "%u", erl.port);
        erl.pid = spawn(argv, fd, fd);
        close(fd);
        if (erl.pid > 0 && daemon_wait_ready(&erl) == 0)
            return;
        daemon_kill(&erl);
    }
    cr_assert_fail("Erlang's epmd never answered");
}

Test(epmd_client, lookup_works_against_erlang_epmd)
{
    struct dist_epmd_node n = {.port = ALPHA_PORT,
                               .node_type = 77,
                               .high_version = 6,
                               .low_version = 5,
                               .name = "erlnode",
                               .name_len = 7};
    uint8_t buf[64], reply[6];
    int len, fd;

    erl_epmd_start();
    len = dist_epmd_alive2_req_build(buf, sizeof(buf), &n);
    cr_assert_gt(len, 0);
    fd = dial(erl.port);
    send_raw(fd, buf, (size_t)len);
    cr_assert_eq(recv_upto(fd, reply, 6, NULL), 6);
    cr_assert_eq(reply[1], 0, "Erlang's epmd refused the registration");

    cr_assert_eq(lookup("127.0.0.1", erl.port, "erlnode"), 0, "%s", dist_err_name(lr.status));
    cr_assert_eq(lr.port, ALPHA_PORT);
    cr_assert_eq(lr.high, 6);
    cr_assert_str_eq(lr.name, "erlnode");
    cr_assert_eq(lookup("127.0.0.1", erl.port, "nosuch"), DIST_ENOTFOUND);
    close(fd);
}

/* ---- Names and options ----------------------------------------------------------------------- */

Test(epmd_client, node_names_follow_erlang_rules)
{
    char longname[300];

    cr_assert_eq(dist_node_name_check("a@b"), 0);
    cr_assert_eq(dist_node_name_check("node_1-X@host.example.com"), 0);
    cr_assert_eq(dist_node_name_check("a@127.0.0.1"), 0);
    cr_assert_eq(dist_node_name_check(NULL), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("alpha"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("@host"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("alpha@"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("al pha@host"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("al.pha@host"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("a@b@c"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("a@ho st"), DIST_EBADNAME);
    cr_assert_eq(dist_node_name_check("\xc3\xa9@host"), DIST_EBADNAME);
    memset(longname, 'a', 255);
    strcpy(longname + 255, "@h");
    cr_assert_eq(dist_node_name_check(longname), 0);
    memset(longname, 'a', 256);
    strcpy(longname + 256, "@h");
    cr_assert_eq(dist_node_name_check(longname), DIST_EBADNAME);
}

static int new_fails(const struct dist_epmd_client_opts *o)
{
    struct dist_epmd_client *c = (struct dist_epmd_client *)&c;
    int rc = dist_epmd_client_new(loop, o, &c);

    cr_assert(rc == 0 || c == (struct dist_epmd_client *)&c, "a failed new wrote its output");
    if (rc == 0)
        dist_epmd_client_free(c);
    return rc;
}

Test(epmd_client, new_refuses_bad_options)
{
    static char big[DIST_EPMD_MAX_META_VALUE + 2];
    struct dist_epmd_kv many[DIST_EPMD_MAX_META + 1];
    struct dist_epmd_kv three_big[3];
    struct dist_epmd_client_opts o = opts_for("a b@host", 1, 0);
    struct dist_epmd_client *c = NULL;

    cr_assert_eq(new_fails(&o), DIST_EBADNAME);
    o.name = "alpha";
    cr_assert_eq(new_fails(&o), 0, "a bare name is accepted");
    o.backoff_min_ms = 500;
    o.backoff_max_ms = 100;
    cr_assert_eq(new_fails(&o), DIST_EINVAL);
    o = opts_for("alpha@h", 1, 0);
    o.timeout_ms = DIST_EPMD_MAX_TIMEOUT_MS + 1;
    cr_assert_eq(new_fails(&o), DIST_EINVAL);

    o = opts_for("alpha@h", 1, 0);
    for (int i = 0; i <= DIST_EPMD_MAX_META; i++)
        many[i] = (struct dist_epmd_kv){"k", "v"};
    o.meta = many;
    o.meta_count = DIST_EPMD_MAX_META + 1;
    cr_assert_eq(new_fails(&o), DIST_ELIMIT);
    o.meta_count = DIST_EPMD_MAX_META;
    cr_assert_eq(new_fails(&o), 0);
    memset(big, 'v', DIST_EPMD_MAX_META_VALUE + 1);
    many[0].value = big; /* one byte over a value's limit */
    cr_assert_eq(new_fails(&o), DIST_ELIMIT);
    big[DIST_EPMD_MAX_META_VALUE] = '\0'; /* at the limit */
    cr_assert_eq(new_fails(&o), 0);
    for (int i = 0; i < 3; i++)
        three_big[i] = (struct dist_epmd_kv){"key", big};
    o.meta = three_big;
    o.meta_count = 3; /* each pair fits, but not the three in one request */
    cr_assert_eq(new_fails(&o), DIST_ELIMIT);

    o = opts_for(NULL, 0, 0);
    c = client_make(0, &o);
    cr_assert_eq(dist_epmd_client_start(c, event_cb, &recs[0]), DIST_EINVAL,
                 "a watch-only client started");
    cr_assert_eq(dist_epmd_client_watch(c, NULL, NULL), DIST_EINVAL);
}
