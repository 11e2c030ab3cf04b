/*
 * epmd_daemon_util.h: what the tests of the epmd daemon share: the daemon each test starts in
 * its .init and stops in its .fini, and a client side of both of its protocols over raw
 * loopback sockets (Erlang's requests, and the extension's u32 Length | Tag frames, leases,
 * listings and watch events). Each test program includes it once.
 *
 * Each test starts the real binary (EPMD_BIN) on a free port of 127.0.0.1 in its .init and
 * stops and reaps it in its .fini (daemon.h). Expected bytes come from Erlang's protocol as
 * observed against a real epmd (PROTOCOL-EPMD-ERLANG.md) and from the extension's contract in
 * dist.h and epmd/README.md, never from the daemon's code. Requests are built with the codec
 * where the point is the daemon's behaviour, and written by hand where the point is the exact
 * bytes.
 *
 * Criterion's fixtures take no arguments, so the daemon under test is this file's one static,
 * d: each test program has its own.
 */
#ifndef TEST_EPMD_DAEMON_UTIL_H
#define TEST_EPMD_DAEMON_UTIL_H

#include <criterion/criterion.h>

/* daemon.h serves several test files; not every one of its helpers is used by each. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#include "dist.h"

#define DAEMON_UTIL_FN static __attribute__((unused))

#define NODE_PORT  41029 /* 0xa045, the port in the protocol reference's exchanges */
#define POLL_TRIES 300   /* x 10 ms */

static struct daemon d;

DAEMON_UTIL_FN void start_default(void)
{
    daemon_start(&d, NULL);
}

DAEMON_UTIL_FN void stop_daemon(void)
{
    daemon_stop(&d);
}

/* ---- Helpers: Erlang's requests ------------------------------------------------------------ */

DAEMON_UTIL_FN uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

DAEMON_UTIL_FN void assert_bytes(const uint8_t *got, size_t got_len, const void *want,
                                 size_t want_len, const char *what)
{
    cr_assert_eq(got_len, want_len, "%s: %zu reply bytes, expected %zu", what, got_len, want_len);
    cr_assert_arr_eq(got, want, want_len, "%s: wrong reply bytes", what);
}

/* The daemon runs, answers NAMES with its port, and has reported no sanitizer error. */
DAEMON_UTIL_FN void assert_healthy(void)
{
    cr_assert(daemon_running(&d), "the daemon is not running (wait status 0x%x)", d.status);
    cr_assert(daemon_answers(d.port), "the daemon no longer answers NAMES");
    cr_assert_not(log_has_sanitizer_report(d.log), "the daemon logged a sanitizer report");
}

DAEMON_UTIL_FN void assert_port_word(const uint8_t *p, size_t len)
{
    cr_assert_geq(len, 4, "reply shorter than the u32 port word");
    cr_assert_eq(get32(p), d.port, "port word %u, expected the dialled port %u", get32(p), d.port);
}

DAEMON_UTIL_FN struct dist_epmd_node node_of(const char *name, uint16_t port, uint16_t high)
{
    struct dist_epmd_node n = {
        .port = port,
        .node_type = 77,
        .protocol = 0,
        .high_version = high,
        .low_version = 5,
        .name = name,
        .name_len = strlen(name),
    };
    return n;
}

DAEMON_UTIL_FN void send_alive2(int fd, const struct dist_epmd_node *n)
{
    uint8_t buf[DIST_EPMD_BUFSIZE];
    int len = dist_epmd_alive2_req_build(buf, sizeof(buf), n);

    cr_assert_gt(len, 0, "cannot build ALIVE2_REQ: %s", dist_strerror(len));
    send_raw(fd, buf, (size_t)len);
}

/* ALIVE2 on a new connection; reads the 6- or 4-byte reply into reply. Returns the fd. */
DAEMON_UTIL_FN int alive2(const struct dist_epmd_node *n, uint8_t reply[6])
{
    size_t want = n->high_version >= 6 ? 6 : 4;
    int fd = dial(d.port);

    send_alive2(fd, n);
    cr_assert_eq(recv_upto(fd, reply, want, NULL), want, "short ALIVE2 reply for %.*s",
                 (int)n->name_len, n->name);
    return fd;
}

/* Register a v6 node; asserts success. Returns the registration's socket. */
DAEMON_UTIL_FN int register_node(const char *name, uint16_t port, uint32_t *creation)
{
    struct dist_epmd_node n = node_of(name, port, 6);
    uint8_t reply[6], result = 0xff;
    uint32_t cr = 0;
    int fd = alive2(&n, reply);

    cr_assert_eq(reply[0], DIST_EPMD_ALIVE2_X_RESP, "ALIVE2 v6 answered with tag %u", reply[0]);
    cr_assert_eq(dist_epmd_alive2_resp_parse(reply, 6, &result, &cr), 6);
    cr_assert_eq(result, 0, "ALIVE2 for %s refused (result %u)", name, result);
    if (creation != NULL)
        *creation = cr;
    return fd;
}

/* One request on its own connection; the whole reply, up to the daemon's close. */
DAEMON_UTIL_FN size_t exchange(const void *req, size_t len, uint8_t *reply, size_t cap)
{
    int fd = dial(d.port);
    size_t n;

    send_raw(fd, req, len);
    n = recv_to_close(fd, reply, cap);
    close(fd);
    return n;
}

DAEMON_UTIL_FN void send_expect_silent_close(const void *req, size_t len, const char *what)
{
    int fd = dial(d.port);

    send_raw(fd, req, len);
    expect_closed_silently(fd, 2000, what);
    close(fd);
}

DAEMON_UTIL_FN size_t tag_req(uint8_t *reply, size_t cap, uint8_t tag)
{
    const uint8_t req[] = {0x00, 0x01, tag};

    return exchange(req, sizeof(req), reply, cap);
}

/* NAMES answers exactly the port word and then lines. */
DAEMON_UTIL_FN void expect_names(const char *lines)
{
    uint8_t reply[1024], want[1024] = {0, 0, (uint8_t)(d.port >> 8), (uint8_t)d.port};
    size_t len = strlen(lines);

    cr_assert_leq(4 + len, sizeof(want));
    memcpy(want + 4, lines, len);
    assert_bytes(reply, tag_req(reply, sizeof(reply), 'n'), want, 4 + len, "NAMES");
}

/* PORT_PLEASE2 for name; the reply must be well formed and fill what was received. */
DAEMON_UTIL_FN int lookup(const char *name, struct dist_epmd_node *node, uint8_t *buf, size_t cap)
{
    uint8_t req[DIST_EPMD_BUFSIZE];
    int len = dist_epmd_port2_req_build(req, sizeof(req), name, strlen(name));
    int found = -1;
    size_t n;

    cr_assert_gt(len, 0);
    n = exchange(req, (size_t)len, buf, cap);
    cr_assert_eq(dist_epmd_port2_resp_parse(buf, n, &found, node), (int)n,
                 "malformed PORT2_RESP of %zu bytes for %s", n, name);
    return found;
}

DAEMON_UTIL_FN int is_registered(const char *name)
{
    struct dist_epmd_node node;
    uint8_t buf[2 * DIST_EPMD_MAX_SYMLEN + 32];

    return lookup(name, &node, buf, sizeof(buf));
}

/* Unregistration follows a close asynchronously: poll, bounded. */
DAEMON_UTIL_FN int wait_unregistered(const char *name)
{
    for (int i = 0; i < POLL_TRIES; i++) {
        if (!is_registered(name))
            return 1;
        sleep_ms(10);
    }
    return 0;
}

/* ---- Helpers: the extension ---------------------------------------------------------------- */

/* Read one u32 Length | Tag | body frame into buf. */
DAEMON_UTIL_FN void read_frame(int fd, uint8_t *buf, size_t cap, uint8_t *tag, const uint8_t **body,
                               size_t *body_len)
{
    size_t got = recv_upto(fd, buf, 4, NULL);
    size_t total;

    cr_assert_eq(got, 4, "no extension frame (got %zu header bytes)", got);
    total = 4 + (size_t)get32(buf);
    cr_assert_leq(total, cap, "frame of %zu bytes", total);
    got = recv_upto(fd, buf + 4, total - 4, NULL);
    cr_assert_eq(got, total - 4, "frame cut short: %zu of %zu bytes", got + 4, total);
    cr_assert_eq(dist_epmd_frame_parse(buf, total, cap, tag, body, body_len), (int)total,
                 "malformed frame");
}

struct lease_resp {
    uint8_t result;
    uint32_t creation;
    uint32_t lease_ms;
};

DAEMON_UTIL_FN struct dist_epmd_lease lease_of(const char *name, const char *token, uint32_t ms)
{
    struct dist_epmd_lease l = {
        .node = node_of(name, 5555, 6),
        .lease_ms = ms,
        .token = (const uint8_t *)token,
        .token_len = strlen(token),
    };
    return l;
}

DAEMON_UTIL_FN struct lease_resp lease_on(int fd, const struct dist_epmd_lease *l)
{
    uint8_t buf[DIST_EPMD_BUFSIZE], tag;
    const uint8_t *body;
    size_t len;
    struct lease_resp r = {0xff, 0, 0};
    int n = dist_epmd_lease_req_build(buf, sizeof(buf), l);

    cr_assert_gt(n, 0, "cannot build LEASE_REQ: %s", dist_strerror(n));
    send_raw(fd, buf, (size_t)n);
    read_frame(fd, buf, sizeof(buf), &tag, &body, &len);
    cr_assert_eq(tag, DIST_EPMD_LEASE_RESP, "LEASE_REQ answered with tag %u", tag);
    cr_assert_eq(dist_epmd_result_parse(body, len, tag, &r.result, &r.creation, &r.lease_ms), 9,
                 "LEASE_RESP body of %zu bytes", len);
    return r;
}

/* LEASE on a fresh session; asserts success. Returns the session. */
DAEMON_UTIL_FN int lease_new(const char *name, const char *token, uint32_t ms, uint32_t *creation)
{
    struct dist_epmd_lease l = lease_of(name, token, ms);
    int fd = dial(d.port);
    struct lease_resp r = lease_on(fd, &l);

    cr_assert_eq(r.result, DIST_EPMD_OK, "LEASE of %s refused (result %u)", name, r.result);
    if (creation != NULL)
        *creation = r.creation;
    return fd;
}

/* RENEW_REQ or UNREG_REQ; returns the result, and the lease for RENEW. */
DAEMON_UTIL_FN uint8_t owner_on(int fd, uint8_t tag, const char *token, const char *name,
                                uint32_t *lease_ms)
{
    uint8_t buf[512], rtag, result = 0xff;
    uint8_t want = tag == DIST_EPMD_RENEW_REQ ? DIST_EPMD_RENEW_RESP : DIST_EPMD_UNREG_RESP;
    const uint8_t *body;
    size_t len;
    int n = dist_epmd_owner_req_build(buf, sizeof(buf), tag, (const uint8_t *)token, strlen(token),
                                      name, strlen(name));

    cr_assert_gt(n, 0);
    send_raw(fd, buf, (size_t)n);
    read_frame(fd, buf, sizeof(buf), &rtag, &body, &len);
    cr_assert_eq(rtag, want, "request %c answered with tag %u", tag, rtag);
    cr_assert_gt(dist_epmd_result_parse(body, len, rtag, &result, NULL, lease_ms), 0,
                 "bad reply body of %zu bytes", len);
    return result;
}

struct listing {
    uint8_t buf[1 << 16];
    const uint8_t *entries;
    size_t len;
    uint32_t count;
};

DAEMON_UTIL_FN void read_listing(int fd, struct listing *l)
{
    uint8_t tag;
    const uint8_t *body;
    size_t len;

    read_frame(fd, l->buf, sizeof(l->buf), &tag, &body, &len);
    cr_assert_eq(tag, DIST_EPMD_LIST_RESP, "expected LIST_RESP, got tag %u", tag);
    cr_assert_geq(len, 4, "LIST_RESP without a count");
    l->count = get32(body);
    l->entries = body + 4;
    l->len = len - 4;
}

DAEMON_UTIL_FN void list_on(int fd, struct listing *l)
{
    static const uint8_t req[] = {0x00, 0x01, DIST_EPMD_LIST_REQ};

    send_raw(fd, req, sizeof(req));
    read_listing(fd, l);
}

DAEMON_UTIL_FN int name_is(const struct dist_epmd_node *n, const char *name)
{
    return n->name_len == strlen(name) && memcmp(n->name, name, n->name_len) == 0;
}

/* Walk every entry (each must parse, together they fill the body); find name in them. */
DAEMON_UTIL_FN int find_entry(const struct listing *l, const char *name,
                              struct dist_epmd_entry *out)
{
    const uint8_t *p = l->entries;
    size_t left = l->len;
    int found = 0;

    for (uint32_t i = 0; i < l->count; i++) {
        struct dist_epmd_entry e;
        int n = dist_epmd_entry_parse(p, left, &e);

        cr_assert_gt(n, 0, "LIST entry %u of %u does not parse", i, l->count);
        if (name_is(&e.node, name)) {
            *out = e;
            found++;
        }
        p += n;
        left -= (size_t)n;
    }
    cr_assert_eq(left, 0, "%zu bytes after the last LIST entry", left);
    cr_assert_leq(found, 1, "%s listed %d times", name, found);
    return found;
}

/* Is name in a LIST taken on session fd? */
DAEMON_UTIL_FN int listed(int fd, const char *name, struct dist_epmd_entry *out)
{
    static struct listing l;
    struct dist_epmd_entry e;

    list_on(fd, &l);
    return find_entry(&l, name, out != NULL ? out : &e);
}

/* The next watch event: its kind, with its entry in e (views into buf). */
DAEMON_UTIL_FN uint8_t read_event(int fd, uint8_t *buf, size_t cap, struct dist_epmd_entry *e)
{
    uint8_t tag;
    const uint8_t *body;
    size_t len;

    read_frame(fd, buf, cap, &tag, &body, &len);
    cr_assert_eq(tag, DIST_EPMD_EVENT, "expected an EVENT frame, got tag %u", tag);
    cr_assert_geq(len, 1, "EVENT without a kind");
    cr_assert_eq(dist_epmd_entry_parse(body + 1, len - 1, e), (int)(len - 1),
                 "EVENT entry does not fill its frame");
    return body[0];
}

DAEMON_UTIL_FN void expect_event(int fd, uint8_t kind, const char *name)
{
    uint8_t buf[8192];
    struct dist_epmd_entry e;
    uint8_t got = read_event(fd, buf, sizeof(buf), &e);

    cr_assert_eq(got, kind, "event kind %u for %.*s, expected %u for %s", got, (int)e.node.name_len,
                 e.node.name, kind, name);
    cr_assert(name_is(&e.node, name), "event %u names %.*s, expected %s", kind,
              (int)e.node.name_len, e.node.name, name);
}

#endif /* TEST_EPMD_DAEMON_UTIL_H */
