/*
 * test_epmd_daemon.c: the epmd daemon, driven over raw loopback sockets.
 *
 * Each test starts the real binary (EPMD_BIN) on a free port of 127.0.0.1 in its .init and
 * stops and reaps it in its .fini (daemon.h). Expected bytes come from Erlang's protocol as
 * observed against a real epmd (PROTOCOL-EPMD-ERLANG.md) and from the extension's contract in
 * dist.h and epmd/README.md, never from the daemon's code. Requests are built with the codec
 * where the point is the daemon's behaviour, and written by hand where the point is the exact
 * bytes.
 */
#include <criterion/criterion.h>

#include <sys/resource.h>

#include "daemon.h"
#include "dist.h"

#define NODE_PORT     41029 /* 0xa045, the port in the protocol reference's exchanges */
#define MANY_IDLE     2000
#define MANY_NODES    10000
#define GARBAGE_CONNS 1000
#define POLL_TRIES    300 /* x 10 ms */

static struct daemon d;

static const char *const relaxed_flags[] = {"-relaxed_command_check", NULL};
static const char *const timeout_flags[] = {"-packet_timeout", "1", NULL};
static const char *const limit_flags[] = {"-max_connections", "5", NULL};

static void start_default(void)
{
    daemon_start(&d, NULL);
}

static void start_relaxed(void)
{
    daemon_start(&d, relaxed_flags);
}

static void start_timeout(void)
{
    daemon_start(&d, timeout_flags);
}

static void start_limited(void)
{
    daemon_start(&d, limit_flags);
}

static void stop_daemon(void)
{
    daemon_stop(&d);
}

TestSuite(epmd_daemon, .timeout = 30);

/* Criterion skips .fini after cr_skip_test, so the daemon is stopped first. */
#define SKIP_TEST(...)                                                                             \
    do {                                                                                           \
        daemon_stop(&d);                                                                           \
        cr_skip_test(__VA_ARGS__);                                                                 \
    } while (0)

/* ---- Helpers: Erlang's requests ------------------------------------------------------------ */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void assert_bytes(const uint8_t *got, size_t got_len, const void *want, size_t want_len,
                         const char *what)
{
    cr_assert_eq(got_len, want_len, "%s: %zu reply bytes, expected %zu", what, got_len, want_len);
    cr_assert_arr_eq(got, want, want_len, "%s: wrong reply bytes", what);
}

/* The daemon runs, answers NAMES with its port, and has reported no sanitizer error. */
static void assert_healthy(void)
{
    cr_assert(daemon_running(&d), "the daemon is not running (wait status 0x%x)", d.status);
    cr_assert(daemon_answers(d.port), "the daemon no longer answers NAMES");
    cr_assert_not(log_has_sanitizer_report(d.log), "the daemon logged a sanitizer report");
}

static void assert_port_word(const uint8_t *p, size_t len)
{
    cr_assert_geq(len, 4, "reply shorter than the u32 port word");
    cr_assert_eq(get32(p), d.port, "port word %u, expected the dialled port %u", get32(p), d.port);
}

static struct dist_epmd_node node_of(const char *name, uint16_t port, uint16_t high)
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

static void send_alive2(int fd, const struct dist_epmd_node *n)
{
    uint8_t buf[DIST_EPMD_BUFSIZE];
    int len = dist_epmd_alive2_req_build(buf, sizeof(buf), n);

    cr_assert_gt(len, 0, "cannot build ALIVE2_REQ: %s", dist_strerror(len));
    send_raw(fd, buf, (size_t)len);
}

/* ALIVE2 on a new connection; reads the 6- or 4-byte reply into reply. Returns the fd. */
static int alive2(const struct dist_epmd_node *n, uint8_t reply[6])
{
    size_t want = n->high_version >= 6 ? 6 : 4;
    int fd = dial(d.port);

    send_alive2(fd, n);
    cr_assert_eq(recv_upto(fd, reply, want, NULL), want, "short ALIVE2 reply for %.*s",
                 (int)n->name_len, n->name);
    return fd;
}

/* Register a v6 node; asserts success. Returns the registration's socket. */
static int register_node(const char *name, uint16_t port, uint32_t *creation)
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
static size_t exchange(const void *req, size_t len, uint8_t *reply, size_t cap)
{
    int fd = dial(d.port);
    size_t n;

    send_raw(fd, req, len);
    n = recv_to_close(fd, reply, cap);
    close(fd);
    return n;
}

static void send_expect_silent_close(const void *req, size_t len, const char *what)
{
    int fd = dial(d.port);

    send_raw(fd, req, len);
    expect_closed_silently(fd, 2000, what);
    close(fd);
}

static size_t tag_req(uint8_t *reply, size_t cap, uint8_t tag)
{
    const uint8_t req[] = {0x00, 0x01, tag};

    return exchange(req, sizeof(req), reply, cap);
}

/* NAMES answers exactly the port word and then lines. */
static void expect_names(const char *lines)
{
    uint8_t reply[1024], want[1024] = {0, 0, (uint8_t)(d.port >> 8), (uint8_t)d.port};
    size_t len = strlen(lines);

    cr_assert_leq(4 + len, sizeof(want));
    memcpy(want + 4, lines, len);
    assert_bytes(reply, tag_req(reply, sizeof(reply), 'n'), want, 4 + len, "NAMES");
}

/* PORT_PLEASE2 for name; the reply must be well formed and fill what was received. */
static int lookup(const char *name, struct dist_epmd_node *node, uint8_t *buf, size_t cap)
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

static int is_registered(const char *name)
{
    struct dist_epmd_node node;
    uint8_t buf[2 * DIST_EPMD_MAX_SYMLEN + 32];

    return lookup(name, &node, buf, sizeof(buf));
}

/* Unregistration follows a close asynchronously: poll, bounded. */
static int wait_unregistered(const char *name)
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
static void read_frame(int fd, uint8_t *buf, size_t cap, uint8_t *tag, const uint8_t **body,
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

static struct dist_epmd_lease lease_of(const char *name, const char *token, uint32_t ms)
{
    struct dist_epmd_lease l = {
        .node = node_of(name, 5555, 6),
        .lease_ms = ms,
        .token = (const uint8_t *)token,
        .token_len = strlen(token),
    };
    return l;
}

static struct lease_resp lease_on(int fd, const struct dist_epmd_lease *l)
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
static int lease_new(const char *name, const char *token, uint32_t ms, uint32_t *creation)
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
static uint8_t owner_on(int fd, uint8_t tag, const char *token, const char *name,
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

static void read_listing(int fd, struct listing *l)
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

static void list_on(int fd, struct listing *l)
{
    static const uint8_t req[] = {0x00, 0x01, DIST_EPMD_LIST_REQ};

    send_raw(fd, req, sizeof(req));
    read_listing(fd, l);
}

static int name_is(const struct dist_epmd_node *n, const char *name)
{
    return n->name_len == strlen(name) && memcmp(n->name, name, n->name_len) == 0;
}

/* Walk every entry (each must parse, together they fill the body); find name in them. */
static int find_entry(const struct listing *l, const char *name, struct dist_epmd_entry *out)
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
static int listed(int fd, const char *name, struct dist_epmd_entry *out)
{
    static struct listing l;
    struct dist_epmd_entry e;

    list_on(fd, &l);
    return find_entry(&l, name, out != NULL ? out : &e);
}

/* The next watch event: its kind, with its entry in e (views into buf). */
static uint8_t read_event(int fd, uint8_t *buf, size_t cap, struct dist_epmd_entry *e)
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

static void expect_event(int fd, uint8_t kind, const char *name)
{
    uint8_t buf[8192];
    struct dist_epmd_entry e;
    uint8_t got = read_event(fd, buf, sizeof(buf), &e);

    cr_assert_eq(got, kind, "event kind %u for %.*s, expected %u for %s", got, (int)e.node.name_len,
                 e.node.name, kind, name);
    cr_assert(name_is(&e.node, name), "event %u names %.*s, expected %s", kind,
              (int)e.node.name_len, e.node.name, name);
}

/* ---- ALIVE2_REQ ---------------------------------------------------------------------------- */

Test(epmd_daemon, alive2_v6_reply_is_x_form_with_time_seeded_creation, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("a", NODE_PORT, 6);
    uint8_t reply[6];
    uint32_t now = (uint32_t)time(NULL);
    int fd = alive2(&n, reply);
    uint32_t creation = get32(reply + 2);

    cr_assert_eq(reply[0], 0x76, "tag %u, expected 'v' (118)", reply[0]);
    cr_assert_eq(reply[1], 0, "result %u", reply[1]);
    cr_assert_geq(creation, 4, "v6 creation %u must never be 0..3", creation);
    cr_assert(creation >= now - 5 && creation <= now + 5,
              "creation %u is not Erlang's time(NULL) + 1 (now %u)", creation, now);
    expect_open(fd, 200, "registered socket");
    cr_assert(is_registered("a"));
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, alive2_v5_reply_is_y_form_with_creation_1_to_3, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("b", NODE_PORT, 5);
    uint8_t reply[6];
    int fd = alive2(&n, reply);
    uint16_t creation = (uint16_t)(reply[2] << 8 | reply[3]);

    cr_assert_eq(reply[0], 0x79, "tag %u, expected 'y' (121)", reply[0]);
    cr_assert_eq(reply[1], 0, "result %u", reply[1]);
    cr_assert(creation >= 1 && creation <= 3, "v5 creation %u not in 1..3", creation);
    expect_open(fd, 200, "registered v5 socket (a 4-byte reply, then nothing)");
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, reregistering_a_remembered_name_continues_its_creation, .init = start_default,
     .fini = stop_daemon)
{
    uint32_t first, second, third;
    int fd = register_node("a", NODE_PORT, &first);

    close(fd);
    cr_assert(wait_unregistered("a"), "closing the socket did not unregister a");
    fd = register_node("a", NODE_PORT, &second);
    close(fd);
    cr_assert(wait_unregistered("a"));
    fd = register_node("a", NODE_PORT, &third);
    cr_assert_eq(second, first + 1, "creations %u then %u", first, second);
    cr_assert_eq(third, second + 1, "creations %u then %u", second, third);
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, reregistering_v5_cycles_through_1_2_3, .init = start_default, .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("v5node", NODE_PORT, 5);
    uint16_t prev = 0;

    for (int i = 0; i < 4; i++) {
        uint8_t reply[6];
        int fd = alive2(&n, reply);
        uint16_t cr = (uint16_t)(reply[2] << 8 | reply[3]);

        cr_assert_eq(reply[0], 0x79);
        cr_assert_eq(reply[1], 0, "round %d refused", i);
        cr_assert(cr >= 1 && cr <= 3, "v5 creation %u", cr);
        if (prev != 0)
            cr_assert_eq(cr, prev % 3 + 1, "v5 creation %u after %u", cr, prev);
        prev = cr;
        close(fd);
        cr_assert(wait_unregistered("v5node"));
    }
    assert_healthy();
}

Test(epmd_daemon, duplicate_name_gets_result_1_creation_99_and_stays_open, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t dup6[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
    static const uint8_t dup5[] = {0x79, 0x01, 0x00, 0x63};
    struct dist_epmd_node n6 = node_of("a", 1111, 6), n5 = node_of("a", 2222, 5), found;
    uint8_t reply[6], buf[64];
    int owner = register_node("a", NODE_PORT, NULL);
    int fd6 = alive2(&n6, reply);

    assert_bytes(reply, 6, dup6, sizeof(dup6), "duplicate v6");
    expect_open(fd6, 300, "socket after a refused ALIVE2");
    int fd5 = alive2(&n5, reply);
    assert_bytes(reply, 4, dup5, sizeof(dup5), "duplicate v5");
    expect_open(fd5, 100, "socket after a refused v5 ALIVE2");
    cr_assert(lookup("a", &found, buf, sizeof(buf)));
    cr_assert_eq(found.port, NODE_PORT, "the refused ALIVE2 replaced the registration");
    close(fd6);
    close(fd5);
    sleep_ms(50);
    cr_assert(is_registered("a"), "closing a refused socket unregistered the owner");
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, closing_the_registered_socket_unregisters, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t not_found[] = {0x77, 0x01};
    uint8_t buf[64];
    struct dist_epmd_node node;
    int fd = register_node("a", NODE_PORT, NULL);

    cr_assert(lookup("a", &node, buf, sizeof(buf)));
    close(fd);
    cr_assert(wait_unregistered("a"), "a is still registered after its socket closed");
    cr_assert_eq(lookup("a", &node, buf, sizeof(buf)), 0);
    cr_assert_arr_eq(buf, not_found, 2);
    assert_healthy();
}

Test(epmd_daemon, any_byte_on_a_registered_socket_unregisters_it, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node again = node_of("b", NODE_PORT, 6);
    int a = register_node("a", NODE_PORT, NULL);
    int b = register_node("b", NODE_PORT, NULL);

    send_raw(a, "!", 1);
    expect_closed_silently(a, 2000, "registered socket after one extra byte");
    cr_assert_not(is_registered("a"), "a still registered after an extra byte");
    /* A second ALIVE2 on the same socket is "more than expected" too. */
    send_alive2(b, &again);
    expect_closed_silently(b, 2000, "registered socket after a second ALIVE2");
    cr_assert_not(is_registered("b"), "b still registered after a second ALIVE2");
    close(a);
    close(b);
    assert_healthy();
}

Test(epmd_daemon, node_type_and_extra_are_stored_and_echoed, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t extra[] = {0x01, 0x02, 0x03};
    static const uint8_t req[] = {0x00, 0x02, 'z', 'c'};
    static const uint8_t want[] = {0x77, 0x00, 0x12, 0x34, 104,  0x00, 0x00, 0x06, 0x00,
                                   0x05, 0x00, 0x01, 'c',  0x00, 0x03, 0x01, 0x02, 0x03};
    struct dist_epmd_node n = node_of("c", 0x1234, 6);
    uint8_t reply[64];
    int fd;

    n.node_type = 104;
    n.extra = extra;
    n.extra_len = sizeof(extra);
    fd = alive2(&n, reply);
    cr_assert_eq(reply[1], 0, "ei-style registration refused");
    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for an ei node");
    close(fd);
    assert_healthy();
}

/* One ALIVE2 with a given name and extra length; returns the reply's result byte. */
static uint8_t alive2_result(const char *name, size_t name_len, size_t extra_len)
{
    static uint8_t extra[DIST_EPMD_MAX_SYMLEN + 8];
    struct dist_epmd_node n = node_of("", NODE_PORT, 6);
    uint8_t reply[6];
    int fd;

    n.name = name;
    n.name_len = name_len;
    n.extra = extra;
    n.extra_len = extra_len;
    fd = alive2(&n, reply);
    close(fd);
    if (reply[1] != 0) {
        static const uint8_t refused[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
        assert_bytes(reply, 6, refused, sizeof(refused), "refused ALIVE2");
    }
    return reply[1];
}

Test(epmd_daemon, alive2_name_checks_answer_result_1, .init = start_default, .fini = stop_daemon)
{
    char name[2 * 256 + 1];

    memset(name, 'a', 256);
    cr_assert_eq(alive2_result(name, 255, 0), 0, "255 'a' must be accepted");
    cr_assert_eq(alive2_result(name, 256, 0), 1, "256 characters must be refused");
    for (int i = 0; i < 255; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    cr_assert_eq(alive2_result(name, 510, 0), 0, "255 two-byte characters must be accepted");
    cr_assert_eq(alive2_result("\xc3\x28", 2, 0), 1, "invalid UTF-8 must be refused");
    cr_assert_eq(alive2_result("e", 1, DIST_EPMD_MAX_SYMLEN + 1), 1, "Elen 1021 refused");
    cr_assert_eq(alive2_result("f", 1, DIST_EPMD_MAX_SYMLEN), 0, "Elen 1020 accepted");
    assert_healthy();
}

Test(epmd_daemon, malformed_alive2_and_port_please_are_closed_silently, .init = start_default,
     .fini = stop_daemon)
{
    static const struct {
        const char *what;
        uint8_t bytes[20];
        size_t len;
    } cases[] = {
        {"ALIVE2 body of 13 bytes", {0, 13, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 0, 0, 0}, 15},
        {"ALIVE2 Nlen overrun", {0, 14, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 5, 'a', 0, 0}, 16},
        {"ALIVE2 Elen overrun", {0, 14, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 1, 'a', 0, 9}, 16},
        {"ALIVE2 NUL in name", {0, 15, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 2, 'a', 0, 0, 0}, 17},
        {"PORT_PLEASE2 empty name", {0, 1, 'z'}, 3},
        {"PORT_PLEASE2 embedded NUL", {0, 4, 'z', 'a', 0, 'b'}, 6},
        {"PORT_PLEASE2 invalid UTF-8", {0, 2, 'z', 0xff}, 4},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        send_expect_silent_close(cases[i].bytes, cases[i].len, cases[i].what);
    assert_healthy();
}

/* ---- PORT_PLEASE2_REQ ---------------------------------------------------------------------- */

Test(epmd_daemon, port_please_found_echoes_registration_and_closes, .init = start_default,
     .fini = stop_daemon)
{
    /* Section 7 of the protocol reference, byte for byte. */
    static const uint8_t alive[] = {0x00, 0x0e, 0x78, 0xa0, 0x45, 0x4d, 0x00, 0x00,
                                    0x06, 0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    static const uint8_t req[] = {0x00, 0x02, 0x7a, 0x61};
    static const uint8_t want[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t reply[64];
    int fd = dial(d.port);

    send_raw(fd, alive, sizeof(alive));
    cr_assert_eq(recv_upto(fd, reply, 6, NULL), 6);
    cr_assert_eq(reply[0], 0x76);
    cr_assert_eq(reply[1], 0x00);
    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for a");
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, port_please_not_found_is_77_01_then_close, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x07, 'z', 'n', 'o', 's', 'u', 'c', 'h'};
    static const uint8_t want[] = {0x77, 0x01};
    uint8_t reply[64];

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for an unknown name");
    assert_healthy();
}

Test(epmd_daemon, port_please_strips_one_trailing_nul, .init = start_default, .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x03, 'z', 'a', 0x00};
    static const uint8_t want[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t reply[64];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT_PLEASE2 for \"a\\0\"");
    close(fd);
    assert_healthy();
}

/* ---- NAMES_REQ and DUMP_REQ ---------------------------------------------------------------- */

Test(epmd_daemon, names_empty_is_the_port_word_alone, .init = start_default, .fini = stop_daemon)
{
    expect_names("");
    assert_healthy();
}

Test(epmd_daemon, names_lists_nodes_newest_first, .init = start_default, .fini = stop_daemon)
{
    int a = register_node("a", 41029, NULL);
    int b = register_node("b", 41030, NULL);

    expect_names("name b at port 41030\nname a at port 41029\n");
    close(a);
    close(b);
    assert_healthy();
}

/* line is prefix, a decimal fd, then suffix, and nothing else. */
static int line_matches(const char *line, const char *prefix, const char *suffix)
{
    const char *p = line + strlen(prefix);

    if (strncmp(line, prefix, strlen(prefix)) != 0)
        return 0;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return strcmp(p, suffix) == 0;
}

Test(epmd_daemon, dump_lists_active_and_old_names_each_nul_terminated, .init = start_default,
     .fini = stop_daemon)
{
    uint8_t reply[512];
    int a = register_node("a", 41029, NULL);
    int b = register_node("b", 41030, NULL);
    size_t n, first;

    close(b);
    cr_assert(wait_unregistered("b"));
    n = tag_req(reply, sizeof(reply) - 1, 'd');
    assert_port_word(reply, n);
    cr_assert_gt(n, 4);
    cr_assert_eq(reply[n - 1], '\0', "the last DUMP line does not end with NUL");
    reply[n] = '\0';
    first = strlen((char *)reply + 4);
    cr_assert_lt(4 + first + 1, n, "only one DUMP line: %s", reply + 4);
    cr_assert(line_matches((char *)reply + 4, "active name     <a> at port 41029, fd = ", "\n"),
              "active line: [%s]", reply + 4);
    cr_assert(
        line_matches((char *)reply + 5 + first, "old/unused name <b>, port = 41030, fd = ", " \n"),
        "old line: [%s]", reply + 5 + first);
    cr_assert_eq(5 + first + strlen((char *)reply + 5 + first) + 1, n, "more than two lines");
    close(a);
    assert_healthy();
}

Test(epmd_daemon, dump_lists_old_names_oldest_first_as_erlang, .init = start_default,
     .fini = stop_daemon)
{
    static const char *const names[] = {"x", "y", "z"};
    uint8_t reply[512];
    size_t n;
    char *text, *px, *py, *pz;

    for (size_t i = 0; i < 3; i++) {
        int fd = register_node(names[i], (uint16_t)(42000 + i), NULL);
        close(fd);
        cr_assert(wait_unregistered(names[i]));
    }
    n = tag_req(reply, sizeof(reply) - 1, 'd');
    assert_port_word(reply, n);
    for (size_t i = 4; i < n; i++)
        reply[i] = reply[i] == '\0' ? '|' : reply[i];
    reply[n] = '\0';
    text = (char *)reply + 4;
    px = strstr(text, "<x>");
    py = strstr(text, "<y>");
    pz = strstr(text, "<z>");
    cr_assert(px && py && pz, "DUMP lacks an old name: %s", text);
    cr_assert(px < py && py < pz, "old names not oldest first: %s", text);
}

Test(epmd_daemon, a_255_character_name_registers_but_is_not_looked_up, .init = start_default,
     .fini = stop_daemon)
{
    char name[256];
    uint8_t req[300];
    int fd, len, q;

    memset(name, 'n', 255);
    name[255] = '\0';
    fd = register_node(name, 43000, NULL);
    name[254] = '\0';
    cr_assert_eq(is_registered(name), 0, "a 254-character lookup found the 255 one");
    name[254] = 'n';
    len = dist_epmd_port2_req_build(req, sizeof(req), name, 255);
    cr_assert_gt(len, 0);
    q = dial(d.port);
    send_raw(q, req, (size_t)len);
    expect_closed_silently(q, 2000, "PORT_PLEASE2 of a 255-character name (Erlang closes)");
    close(q);
    close(fd);
}

Test(epmd_daemon, a_repeated_listen_address_is_served_once, .fini = stop_daemon)
{
    static const char *const flags[] = {"-address", "127.0.0.1,127.0.0.1,::1", NULL};

    daemon_start(&d, flags);
    cr_assert(daemon_running(&d), "the daemon did not start with a repeated address");
    cr_assert_eq(is_registered("nobody"), 0);
}

Test(epmd_daemon, a_watcher_that_closes_after_events_is_noticed, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t watch[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ};
    uint8_t buf[4096];
    int w = dial(d.port), eof = 0, fds, a;
    size_t n;

    send_raw(w, watch, sizeof(watch));
    n = recv_upto(w, buf, 9, &eof);
    cr_assert_eq(n, 9, "no snapshot");
    a = register_node("ev", 43001, NULL);
    n = recv_upto(w, buf, 5, &eof);
    cr_assert_eq(n, 5, "no event header");
    fds = daemon_fd_count(&d);
    close(w);
    for (int i = 0; i < POLL_TRIES && daemon_fd_count(&d) >= fds; i++)
        sleep_ms(10);
    cr_assert_lt(daemon_fd_count(&d), fds, "the daemon kept a closed watcher's socket");
    close(a);
}

/* ---- KILL_REQ and STOP_REQ ----------------------------------------------------------------- */

static void expect_daemon_exit_0(const char *why)
{
    int status = 0;

    cr_assert(wait_exit(d.pid, 3000, &status), "the daemon did not exit after %s", why);
    d.pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the daemon ended with wait status 0x%x after %s", status, why);
}

Test(epmd_daemon, kill_with_live_nodes_says_no, .init = start_default, .fini = stop_daemon)
{
    uint8_t reply[16];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "NO", 2, "KILL, live nodes");
    cr_assert(daemon_running(&d), "the daemon exited on a refused KILL");
    cr_assert(is_registered("a"));
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, kill_without_nodes_says_ok_and_exits_0, .init = start_default,
     .fini = stop_daemon)
{
    uint8_t reply[16];

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "OK", 2, "KILL, no nodes");
    expect_daemon_exit_0("KILL");
}

Test(epmd_daemon, strict_stop_closes_without_reply, .init = start_default, .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x02, 's', 'a'};
    int owner = register_node("a", NODE_PORT, NULL);
    int fd = dial(d.port);

    send_raw(fd, req, sizeof(req));
    expect_closed_silently(fd, 2000, "STOP without -relaxed_command_check");
    expect_open(owner, 100, "the node's socket after a refused STOP");
    cr_assert(is_registered("a"), "strict STOP unregistered a");
    close(fd);
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, relaxed_stop_known_name_says_stopped_and_drops_it, .init = start_relaxed,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x02, 's', 'a'};
    uint8_t reply[32];
    int owner = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), "STOPPED", 7,
                 "relaxed STOP a");
    expect_closed_silently(owner, 2000, "the stopped node's socket");
    cr_assert_not(is_registered("a"), "a still registered after STOPPED");
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, relaxed_stop_unknown_name_says_noexiststopped, .init = start_relaxed,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x06, 's', 'g', 'h', 'o', 's', 't'};
    uint8_t reply[32];

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), "NOEXISTSTOPPED", 14,
                 "relaxed STOP ghost");
    assert_healthy();
}

Test(epmd_daemon, relaxed_kill_with_live_nodes_says_ok_and_exits_0, .init = start_relaxed,
     .fini = stop_daemon)
{
    uint8_t reply[16];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "OK", 2, "relaxed KILL");
    expect_daemon_exit_0("a relaxed KILL");
    close(fd);
}

/* ---- Bad input ----------------------------------------------------------------------------- */

Test(epmd_daemon, lengths_0_3058_and_65535_are_closed_3057_is_served, .init = start_default,
     .fini = stop_daemon)
{
    static uint8_t big[2 + 65535];
    static const uint16_t bad[] = {0, 3058, 65535};
    uint8_t reply[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = dial(d.port);

        big[0] = (uint8_t)(bad[i] >> 8);
        big[1] = (uint8_t)bad[i];
        big[2] = 'n';
        send_all(fd, big, bad[i] > 3058 ? 64 : 2 + (size_t)bad[i]); /* may meet a reset */
        expect_closed_silently(fd, 2000, "a request with a bad Length");
        close(fd);
    }
    send_expect_silent_close("GET / HTTP/1.1\r\n\r\n", 18, "an HTTP request (Length 18245)");
    memset(big, 0, sizeof(big));
    big[0] = 3057 >> 8;
    big[1] = 3057 & 0xff;
    big[2] = 'n';
    assert_port_word(reply, exchange(big, 2 + 3057, reply, sizeof(reply)));
    assert_healthy();
}

static int is_served_tag(int tag)
{
    return tag != 0 && strchr("xzndksREULW", tag) != NULL;
}

Test(epmd_daemon, unknown_and_obsolete_tags_are_closed_silently, .init = start_default,
     .fini = stop_daemon)
{
    for (int tag = 0; tag < 256; tag++) {
        uint8_t req[] = {0x00, 0x02, (uint8_t)tag, 'a'};
        char what[32];

        if (is_served_tag(tag))
            continue;
        snprintf(what, sizeof(what), "tag %d", tag);
        send_expect_silent_close(req, sizeof(req), what);
    }
    assert_healthy();
}

Test(epmd_daemon, pipelined_requests_are_closed_without_reply, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t two_names[] = {0x00, 0x01, 'n', 0x00, 0x01, 'n'};
    static const uint8_t port_names[] = {0x00, 0x02, 'z', 'a', 0x00, 0x01, 'n'};
    static const uint8_t names_junk[] = {0x00, 0x01, 'n', 0x00};
    static const uint8_t alive_junk[] = {0x00, 0x0e, 'x',  0xa0, 0x45, 77,   0,    0,  6,
                                         0,    5,    0x00, 0x01, 'q',  0x00, 0x00, '!'};
    const struct {
        const uint8_t *bytes;
        size_t len;
        const char *what;
    } cases[] = {
        {two_names, sizeof(two_names), "NAMES twice"},
        {port_names, sizeof(port_names), "PORT_PLEASE2 then NAMES"},
        {names_junk, sizeof(names_junk), "NAMES plus one byte"},
        {alive_junk, sizeof(alive_junk), "ALIVE2 plus one byte"},
    };
    int owner = register_node("a", NODE_PORT, NULL);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        send_expect_silent_close(cases[i].bytes, cases[i].len, cases[i].what);
    cr_assert_not(is_registered("q"), "an ALIVE2 with a byte too many registered q");
    close(owner);
    assert_healthy();
}

/* Send bytes one write at a time, a few ms apart. */
static void dribble(int fd, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        send_raw(fd, p + i, 1);
        sleep_ms(3);
    }
}

Test(epmd_daemon, requests_dribbled_one_byte_at_a_time_are_answered, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x09, 'z', 'd', 'r', 'i', 'b', 'b', 'l', 'e', 'r'};
    struct dist_epmd_node n = node_of("dribbler", NODE_PORT, 6), node;
    uint8_t buf[DIST_EPMD_BUFSIZE], reply[64];
    int len = dist_epmd_alive2_req_build(buf, sizeof(buf), &n);
    int owner = dial(d.port), fd, found = 0;
    size_t got;

    cr_assert_gt(len, 0);
    dribble(owner, buf, (size_t)len);
    cr_assert_eq(recv_upto(owner, reply, 6, NULL), 6, "no reply to a dribbled ALIVE2");
    cr_assert_eq(reply[1], 0, "dribbled ALIVE2 refused");
    fd = dial(d.port);
    dribble(fd, req, sizeof(req));
    got = recv_to_close(fd, reply, sizeof(reply));
    cr_assert_eq(dist_epmd_port2_resp_parse(reply, got, &found, &node), (int)got);
    cr_assert(found, "dribbled PORT_PLEASE2 did not find dribbler");
    cr_assert_eq(node.port, NODE_PORT);
    close(fd);
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, truncated_requests_close_after_the_packet_timeout, .init = start_timeout,
     .fini = stop_daemon)
{
    static const uint8_t partial[] = {0x00, 0x05, 'z', 'a'};
    static struct listing l;
    int cut = dial(d.port), half = dial(d.port), idle = dial(d.port), session = dial(d.port);
    uint64_t t0 = mono_ms(), waited;

    send_raw(cut, partial, sizeof(partial));
    send_raw(half, partial, 1);
    list_on(session, &l);
    expect_open(cut, 500, "a truncated request before the 1 s timeout");
    expect_closed_silently(cut, 4000, "a truncated request");
    expect_closed_silently(half, 1000, "half a length header");
    expect_closed_silently(idle, 1000, "a connection that sent nothing");
    expect_closed_silently(session, 1000, "an extension session silent past the timeout");
    waited = mono_ms() - t0;
    cr_assert_geq(waited, 900, "closed after %llu ms, before -packet_timeout 1",
                  (unsigned long long)waited);
    close(cut);
    close(half);
    close(idle);
    close(session);
    assert_healthy();
}

Test(epmd_daemon, registrations_and_watchers_never_time_out, .init = start_timeout,
     .fini = stop_daemon)
{
    static const uint8_t watch[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ};
    static struct listing l;
    int owner = register_node("a", NODE_PORT, NULL);
    int w = dial(d.port);

    send_raw(w, watch, sizeof(watch));
    read_listing(w, &l);
    expect_open(owner, 2500, "a registration idle past -packet_timeout 1");
    expect_open(w, 10, "a watcher idle past -packet_timeout 1");
    cr_assert(is_registered("a"));
    close(w);
    close(owner);
    assert_healthy();
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Random bytes that cannot spell KILL_REQ, which would legitimately stop the daemon. */
static size_t garbage(uint32_t *seed, uint8_t *buf, size_t cap)
{
    size_t n = 1 + xorshift(seed) % cap;

    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)xorshift(seed);
    if (n > 2 && buf[2] == DIST_EPMD_KILL_REQ)
        buf[2] = 0xee;
    return n;
}

/* Poll until the daemon holds at most / at least want descriptors (bounded). */
static int wait_fd_count(int want, int at_most)
{
    int n = -1;

    for (int i = 0; i < 500; i++) {
        n = daemon_fd_count(&d);
        if (n >= 0 && (at_most ? n <= want : n >= want))
            return n;
        sleep_ms(10);
    }
    return n;
}

Test(epmd_daemon, a_thousand_garbage_connections_leave_it_serving, .init = start_default,
     .fini = stop_daemon)
{
    uint32_t seed = 0x5eed1234u;
    uint8_t buf[64];
    int base = daemon_fd_count(&d), now;

    cr_assert_gt(base, 0, "cannot read /proc/%d/fd", (int)d.pid);
    for (int i = 0; i < GARBAGE_CONNS; i++) {
        int fd = dial(d.port);
        size_t n = garbage(&seed, buf, sizeof(buf));

        send_all(fd, buf, n); /* the daemon may already have closed */
        close(fd);
    }
    assert_healthy();
    now = wait_fd_count(base, 1);
    cr_assert_leq(now, base, "the daemon holds %d descriptors, %d before the garbage", now, base);
}

/* ---- Scale and limits ---------------------------------------------------------------------- */

static rlim_t raise_nofile(void)
{
    struct rlimit rl;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

Test(epmd_daemon, thousands_of_idle_connections_do_not_block_lookups, .init = start_default,
     .fini = stop_daemon)
{
    static int fds[MANY_IDLE];
    uint8_t reply[256];
    int base = daemon_fd_count(&d), held;
    int owner = register_node("a", NODE_PORT, NULL), late;

    if (raise_nofile() < MANY_IDLE + 64)
        SKIP_TEST("RLIMIT_NOFILE below %d", MANY_IDLE + 64);
    for (int i = 0; i < MANY_IDLE; i++)
        fds[i] = dial(d.port);
    held = wait_fd_count(base + MANY_IDLE, 0);
    cr_assert_geq(held, base + MANY_IDLE, "the daemon holds %d descriptors", held);
    cr_assert(is_registered("a"), "lookup failed with %d idle connections", MANY_IDLE);
    late = register_node("b", 41030, NULL);
    cr_assert(is_registered("b"));
    cr_assert_gt(tag_req(reply, sizeof(reply), 'n'), 4);
    for (int i = 0; i < MANY_IDLE; i++)
        close(fds[i]);
    close(late);
    close(owner);
    assert_healthy();
}

/* Parse one NAMES line "name nNNNNN at port P\n"; returns the node index or -1. */
static int names_line_index(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    int idx = -1, port = -1, used = 0;

    if (nl == NULL)
        return -1;
    if (sscanf(*p, "name n%5d at port %d%n", &idx, &port, &used) != 2 || *p + used != nl ||
        port != 10000 + idx)
        idx = -1;
    *p = nl + 1;
    return idx;
}

static void assert_all_names_listed(int count)
{
    const size_t cap = 64 + (size_t)count * 32;
    uint8_t *reply = malloc(cap);
    char *seen = calloc((size_t)count, 1);
    size_t n;
    int lines = 0;

    cr_assert(reply != NULL && seen != NULL);
    n = tag_req(reply, cap, 'n');
    assert_port_word(reply, n);
    for (const char *p = (char *)reply + 4, *end = (char *)reply + n; p < end; lines++) {
        int idx = names_line_index(&p, end);

        cr_assert(idx >= 0 && idx < count, "bad NAMES line %d", lines);
        cr_assert_not(seen[idx], "n%05d listed twice", idx);
        seen[idx] = 1;
    }
    cr_assert_eq(lines, count, "NAMES listed %d of %d nodes", lines, count);
    free(seen);
    free(reply);
}

/* Poll NAMES until it lists nobody (bounded). */
static int wait_names_empty(void)
{
    static uint8_t reply[64 + MANY_NODES * 32];

    for (int i = 0; i < POLL_TRIES; i++) {
        if (tag_req(reply, sizeof(reply), 'n') == 4)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

Test(epmd_daemon, ten_thousand_registrations_held_and_listed, .init = start_default,
     .fini = stop_daemon, .timeout = 60)
{
    static int fds[MANY_NODES];
    char name[16];

    if (raise_nofile() < MANY_NODES + 100)
        SKIP_TEST("%d held registrations need RLIMIT_NOFILE >= %d; the hard limit is lower",
                  MANY_NODES, MANY_NODES + 100);
    for (int i = 0; i < MANY_NODES; i++) {
        snprintf(name, sizeof(name), "n%05d", i);
        fds[i] = register_node(name, (uint16_t)(10000 + i), NULL);
    }
    assert_all_names_listed(MANY_NODES);
    cr_assert(is_registered("n00000") && is_registered("n09999") && is_registered("n04321"));
    for (int i = 0; i < MANY_NODES; i++)
        close(fds[i]);
    cr_assert(wait_names_empty(), "names left after closing all %d sockets", MANY_NODES);
    assert_healthy();
}

Test(epmd_daemon, max_connections_refuses_the_sixth_and_logs_it, .init = start_limited,
     .fini = stop_daemon)
{
    static struct listing l;
    int fds[5], sixth, ok = 0, logged = 0;

    for (int i = 0; i < 5; i++) {
        fds[i] = dial(d.port);
        list_on(fds[i], &l); /* answered: the daemon holds this connection */
    }
    sixth = dial(d.port);
    expect_closed_silently(sixth, 2000, "the sixth connection with -max_connections 5");
    close(sixth);
    for (int i = 0; i < POLL_TRIES && !logged; i++) {
        logged = file_contains(d.log, "connection limit");
        if (!logged)
            sleep_ms(10);
    }
    cr_assert(logged, "no log line about the connection limit in the daemon's stderr");
    for (int i = 0; i < 30; i++) {
        sixth = dial(d.port);
        expect_closed_silently(sixth, 2000, "a refused connection in a burst");
        close(sixth);
    }
    logged = file_count(d.log, "connection limit");
    cr_assert_leq(logged, 2, "31 refusals in under a second logged %d times", logged);
    close(fds[0]);
    for (int i = 0; i < POLL_TRIES && !ok; i++) {
        ok = daemon_answers(d.port);
        if (!ok)
            sleep_ms(10);
    }
    cr_assert(ok, "no connection accepted after one of the five closed");
    for (int i = 1; i < 5; i++)
        close(fds[i]);
    assert_healthy();
}

Test(epmd_daemon, address_flag_also_serves_the_ipv6_loopback, .init = start_default,
     .fini = stop_daemon)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(d.port)};
    static const uint8_t req[] = {0x00, 0x01, 'n'};
    uint8_t reply[16];
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin6_addr = in6addr_loopback;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin6_port = 0;
        if (probe < 0 || bind(probe, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            SKIP_TEST("no IPv6 loopback here");
        cr_assert_fail("connect to [::1]:%u failed: %s", d.port, strerror(errno));
    }
    sock_timeouts(fd, SOCK_TIMEOUT_MS);
    send_raw(fd, req, sizeof(req));
    assert_port_word(reply, recv_to_close(fd, reply, sizeof(reply)));
    close(fd);
}

Test(epmd_daemon, out_of_descriptors_it_sheds_connections_and_recovers, .init = start_default,
     .fini = stop_daemon)
{
    struct rlimit lim;
    int fds[24], base = daemon_fd_count(&d), shed = 0, ok = 0;

    cr_assert_gt(base, 0);
    lim.rlim_cur = lim.rlim_max = (rlim_t)base + 8;
    cr_assert_eq(prlimit(d.pid, RLIMIT_NOFILE, &lim, NULL), 0, "prlimit: %s", strerror(errno));
    for (int i = 0; i < 24; i++)
        fds[i] = dial(d.port);
    for (int i = 0; i < 24; i++)
        shed += peer_state(fds[i], i < 8 ? 300 : 2000) == 1;
    cr_assert(daemon_running(&d), "the daemon died when it ran out of descriptors");
    cr_assert(shed >= 24 - 8, "only %d of 24 connections shed with room for 8", shed);
    cr_assert(shed < 24, "every connection shed with room for 8");
    cr_assert(file_contains(d.log, "descriptors"), "running out of descriptors was not logged");
    for (int i = 0; i < 24; i++)
        close(fds[i]);
    for (int i = 0; i < POLL_TRIES && !ok; i++) {
        ok = daemon_answers(d.port);
        if (!ok)
            sleep_ms(10);
    }
    cr_assert(ok, "the daemon does not answer once descriptors are free again");
    assert_healthy();
}

/* ---- The extension ------------------------------------------------------------------------- */

static void expect_meta(const uint8_t **cur, const uint8_t *end, const char *key, const char *value)
{
    struct dist_epmd_meta m;

    cr_assert_eq(dist_epmd_meta_next(cur, end, &m), 0, "metadata %s missing", key);
    cr_assert(m.key_len == strlen(key) && memcmp(m.key, key, m.key_len) == 0,
              "key %.*s, expected %s", (int)m.key_len, m.key, key);
    cr_assert(m.value_len == strlen(value) && memcmp(m.value, value, m.value_len) == 0,
              "value %.*s, expected %s", (int)m.value_len, m.value, value);
}

static size_t two_meta(uint8_t *buf, size_t cap)
{
    int a = dist_epmd_meta_put(buf, cap, "role", 4, "web", 3);
    int b = dist_epmd_meta_put(buf + a, cap - (size_t)a, "zone", 4, "eu-1", 4);

    cr_assert(a > 0 && b > 0);
    return (size_t)(a + b);
}

Test(epmd_daemon, lease_with_metadata_is_listed_and_found_by_port_please, .init = start_default,
     .fini = stop_daemon)
{
    uint8_t meta[64], buf[64];
    struct dist_epmd_lease l = lease_of("svc", "tok-A", 5000);
    struct dist_epmd_entry e;
    struct dist_epmd_node node;
    int fd = dial(d.port);
    struct lease_resp r;
    const uint8_t *cur;

    l.meta.meta = meta;
    l.meta.meta_len = two_meta(meta, sizeof(meta));
    l.meta.meta_count = 2;
    r = lease_on(fd, &l);
    cr_assert_eq(r.result, DIST_EPMD_OK, "LEASE refused (result %u)", r.result);
    cr_assert_geq(r.creation, 4, "lease creation %u", r.creation);
    cr_assert_eq(r.lease_ms, 5000, "granted %u ms, asked 5000", r.lease_ms);
    cr_assert(listed(fd, "svc", &e), "svc not in LIST on the leasing session");
    cr_assert_eq(e.node.port, 5555);
    cr_assert_eq(e.node.node_type, 77);
    cr_assert(e.node.high_version == 6 && e.node.low_version == 5);
    cr_assert_eq(e.creation, r.creation, "listed creation %u, leased %u", e.creation, r.creation);
    cr_assert(e.flags & DIST_EPMD_ENTRY_LEASED, "flags 0x%x lack LEASED", e.flags);
    cr_assert_eq(e.lease_ms, 5000);
    cr_assert_eq(e.meta.meta_count, 2);
    cur = e.meta.meta;
    expect_meta(&cur, e.meta.meta + e.meta.meta_len, "role", "web");
    expect_meta(&cur, e.meta.meta + e.meta.meta_len, "zone", "eu-1");
    cr_assert_eq(cur, e.meta.meta + e.meta.meta_len, "bytes after the last pair");
    cr_assert(lookup("svc", &node, buf, sizeof(buf)), "PORT_PLEASE2 does not see the lease");
    cr_assert(node.port == 5555 && node.node_type == 77 && node.high_version == 6);
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, lease_is_refused_to_another_token_and_replaced_by_its_own, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_lease other = lease_of("svc", "tok-B", 5000);
    struct dist_epmd_lease same = lease_of("svc", "tok-A", 5000);
    struct dist_epmd_entry e;
    uint32_t first;
    int fd = lease_new("svc", "tok-A", 5000, &first);
    int fd2 = dial(d.port);
    struct lease_resp r = lease_on(fd2, &other);

    cr_assert_eq(r.result, DIST_EPMD_TAKEN, "another token got result %u", r.result);
    cr_assert(listed(fd, "svc", &e));
    cr_assert_eq(e.creation, first, "a refused LEASE changed the creation");
    r = lease_on(fd2, &same);
    cr_assert_eq(r.result, DIST_EPMD_OK, "the owner's own token got result %u", r.result);
    cr_assert_eq(r.creation, first + 1, "the replacement got creation %u after %u", r.creation,
                 first);
    cr_assert(listed(fd, "svc", &e));
    cr_assert_eq(e.creation, r.creation, "listed %u, replacement got %u", e.creation, r.creation);
    close(fd);
    close(fd2);
    assert_healthy();
}

Test(epmd_daemon, renew_and_unregister_check_the_token, .init = start_default, .fini = stop_daemon)
{
    struct dist_epmd_lease again = lease_of("svc", "tok-B", 5000);
    uint32_t ms = 0, first;
    int fd = lease_new("svc", "tok-A", 5000, &first);
    struct lease_resp r;

    cr_assert_eq(owner_on(fd, DIST_EPMD_RENEW_REQ, "tok-A", "svc", &ms), DIST_EPMD_OK);
    cr_assert_eq(ms, 5000, "RENEW granted %u ms", ms);
    cr_assert_eq(owner_on(fd, DIST_EPMD_RENEW_REQ, "tok-B", "svc", &ms), DIST_EPMD_DENIED);
    cr_assert_eq(owner_on(fd, DIST_EPMD_RENEW_REQ, "tok-A", "nosuch", &ms), DIST_EPMD_NOTFOUND);
    cr_assert_eq(owner_on(fd, DIST_EPMD_UNREG_REQ, "tok-B", "svc", NULL), DIST_EPMD_DENIED);
    cr_assert(is_registered("svc"), "a denied UNREG removed svc");
    cr_assert_eq(owner_on(fd, DIST_EPMD_UNREG_REQ, "tok-A", "svc", NULL), DIST_EPMD_OK);
    cr_assert_not(listed(fd, "svc", NULL), "svc listed after UNREG");
    cr_assert_not(is_registered("svc"), "PORT_PLEASE2 finds svc after UNREG");
    cr_assert_eq(owner_on(fd, DIST_EPMD_UNREG_REQ, "tok-A", "svc", NULL), DIST_EPMD_NOTFOUND);
    r = lease_on(fd, &again);
    cr_assert_eq(r.result, DIST_EPMD_OK, "svc not free after UNREG (result %u)", r.result);
    cr_assert_eq(r.creation, first + 1, "a remembered name got creation %u after %u", r.creation,
                 first);
    close(fd);
    assert_healthy();
}

/* Poll LIST until name is gone (bounded); returns the ms waited, or 0 if it stayed. */
static uint64_t wait_unlisted(int fd, const char *name, uint64_t since)
{
    for (int i = 0; i < POLL_TRIES; i++) {
        if (!listed(fd, name, NULL))
            return mono_ms() - since;
        sleep_ms(10);
    }
    return 0;
}

Test(epmd_daemon, lease_without_renewal_expires, .init = start_default, .fini = stop_daemon)
{
    struct dist_epmd_lease other = lease_of("svc", "tok-B", 5000);
    uint64_t t0 = mono_ms(), waited;
    int fd = lease_new("svc", "tok-A", 200, NULL);
    struct lease_resp r;

    cr_assert(listed(fd, "svc", NULL), "svc not listed right after LEASE");
    waited = wait_unlisted(fd, "svc", t0);
    cr_assert_gt(waited, 0, "a 200 ms lease still listed after 3 s");
    cr_assert_geq(waited, 190, "a 200 ms lease expired after %llu ms", (unsigned long long)waited);
    cr_assert_leq(waited, 700, "a 200 ms lease was swept only after %llu ms",
                  (unsigned long long)waited);
    cr_assert_not(is_registered("svc"), "PORT_PLEASE2 still finds the expired lease");
    r = lease_on(fd, &other);
    cr_assert_eq(r.result, DIST_EPMD_OK, "another token refused (%u) after expiry", r.result);
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, renewals_keep_a_lease_alive, .init = start_default, .fini = stop_daemon)
{
    uint32_t ms = 0;
    uint64_t t0;
    int fd = lease_new("svc", "tok-A", 300, NULL);

    for (int i = 0; i < 8; i++) {
        sleep_ms(100);
        cr_assert_eq(owner_on(fd, DIST_EPMD_RENEW_REQ, "tok-A", "svc", &ms), DIST_EPMD_OK,
                     "renewal %d refused", i);
        cr_assert_eq(ms, 300);
    }
    cr_assert(listed(fd, "svc", NULL), "a renewed lease expired");
    t0 = mono_ms();
    cr_assert_gt(wait_unlisted(fd, "svc", t0), 0, "the lease outlived its last renewal");
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, lease_length_is_clamped_and_0_means_60_s, .init = start_default,
     .fini = stop_daemon)
{
    static const struct {
        const char *name;
        uint32_t asked, granted;
    } cases[] = {
        {"quick", 1, 100},
        {"edge", 100, 100},
        {"deflt", 0, 60000},
        {"long", 0xffffffffu, 3600000},
    };
    int fd = dial(d.port);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dist_epmd_lease l = lease_of(cases[i].name, "t", cases[i].asked);
        struct lease_resp r = lease_on(fd, &l);
        struct dist_epmd_entry e;

        cr_assert_eq(r.result, DIST_EPMD_OK);
        cr_assert_eq(r.lease_ms, cases[i].granted, "asked %u ms, granted %u, expected %u",
                     cases[i].asked, r.lease_ms, cases[i].granted);
        if (cases[i].granted > 100) {
            cr_assert(listed(fd, cases[i].name, &e));
            cr_assert_eq(e.lease_ms, cases[i].granted, "LIST says %u ms", e.lease_ms);
        }
    }
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, leases_and_alive2_share_one_name_space, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t refused[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
    struct dist_epmd_node n = node_of("svc", NODE_PORT, 6);
    struct dist_epmd_lease l = lease_of("node", "tok-A", 5000);
    uint8_t reply[6];
    int fd = lease_new("svc", "tok-A", 5000, NULL);
    int a = alive2(&n, reply);
    int owner = register_node("node", NODE_PORT, NULL);

    assert_bytes(reply, 6, refused, sizeof(refused), "ALIVE2 for a leased name");
    cr_assert_eq(lease_on(fd, &l).result, DIST_EPMD_TAKEN, "LEASE took an ALIVE2 name");
    cr_assert_eq(owner_on(fd, DIST_EPMD_UNREG_REQ, "tok-A", "node", NULL), DIST_EPMD_DENIED,
                 "UNREG of an Erlang registration is not DENIED");
    cr_assert_eq(owner_on(fd, DIST_EPMD_RENEW_REQ, "tok-A", "node", NULL), DIST_EPMD_DENIED,
                 "RENEW of an Erlang registration is not DENIED");
    cr_assert(is_registered("node"));
    close(a);
    close(owner);
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, extension_requests_share_one_session, .init = start_default, .fini = stop_daemon)
{
    static struct listing l;
    uint8_t req[512], frame[64], tag;
    const uint8_t *body;
    size_t n = 0, len;
    int fd = lease_new("svc", "tok-A", 5000, NULL);

    n += (size_t)dist_epmd_owner_req_build(req, sizeof(req), DIST_EPMD_RENEW_REQ,
                                           (const uint8_t *)"tok-A", 5, "svc", 3);
    n += (size_t)dist_epmd_simple_req_build(req + n, sizeof(req) - n, DIST_EPMD_LIST_REQ);
    send_raw(fd, req, n); /* two requests in one write */
    read_frame(fd, frame, sizeof(frame), &tag, &body, &len);
    cr_assert_eq(tag, DIST_EPMD_RENEW_RESP, "first reply tag %u", tag);
    read_listing(fd, &l);
    cr_assert_eq(l.count, 1);
    close(fd);
    assert_healthy();
}

/* The names of a listing's entries, in order, joined by commas. */
static void listing_names(const struct listing *l, char *out, size_t cap)
{
    const uint8_t *p = l->entries;
    size_t left = l->len, used = 0;

    out[0] = '\0';
    for (uint32_t i = 0; i < l->count; i++) {
        struct dist_epmd_entry e;
        int n = dist_epmd_entry_parse(p, left, &e);

        cr_assert_gt(n, 0, "LIST entry %u does not parse", i);
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", i ? "," : "",
                                 (int)e.node.name_len, e.node.name);
        cr_assert_lt(used, cap);
        p += n;
        left -= (size_t)n;
    }
}

Test(epmd_daemon, list_and_names_report_both_kinds_newest_first, .init = start_default,
     .fini = stop_daemon)
{
    static const char lines[] = "name c at port 41029\nname b at port 5555\n"
                                "name a at port 5555\n";
    static const uint8_t extra[] = {0xee};
    static struct listing l;
    struct dist_epmd_node n = node_of("c", NODE_PORT, 6);
    struct dist_epmd_entry e;
    uint8_t alive_reply[6];
    char order[64];
    int a = lease_new("a", "tok", 5000, NULL);
    int b = lease_new("b", "tok", 5000, NULL), c;

    n.extra = extra;
    n.extra_len = 1;
    c = alive2(&n, alive_reply);
    cr_assert_eq(alive_reply[1], 0);
    list_on(a, &l);
    listing_names(&l, order, sizeof(order));
    cr_assert_str_eq(order, "c,b,a", "LIST order");
    cr_assert(find_entry(&l, "c", &e));
    cr_assert_eq(e.flags & DIST_EPMD_ENTRY_LEASED, 0, "an ALIVE2 entry flagged leased");
    cr_assert_eq(e.lease_ms, 0, "an ALIVE2 entry with lease %u", e.lease_ms);
    cr_assert(e.node.extra_len == 1 && e.node.extra[0] == 0xee, "Extra not echoed by LIST");
    cr_assert_eq(e.meta.meta_count, 0);
    expect_names(lines);
    close(a);
    close(b);
    close(c);
    assert_healthy();
}

/* Hand-written requests, for what the builders refuse to write. */
struct wr {
    uint8_t buf[DIST_EPMD_BUFSIZE];
    size_t n;
};

static void w_mem(struct wr *w, const void *p, size_t n)
{
    cr_assert_leq(w->n + n, sizeof(w->buf), "test request too large");
    memcpy(w->buf + w->n, p, n);
    w->n += n;
}

static void w_u8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;

    w_mem(w, &b, 1);
}

static void w_u16(struct wr *w, unsigned v)
{
    w_u8(w, v >> 8);
    w_u8(w, v);
}

static void w_fill(struct wr *w, int byte, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w_u8(w, (unsigned)byte);
}

/* Start a request at tag, leaving room for its Length. */
static void w_begin(struct wr *w, uint8_t tag)
{
    w->n = 2;
    w_u8(w, tag);
}

static void w_seal(struct wr *w)
{
    w->buf[0] = (uint8_t)((w->n - 2) >> 8);
    w->buf[1] = (uint8_t)(w->n - 2);
}

/* LEASE_REQ up to its name: the token and name bytes are filled with 't' and 'n'. */
static void w_lease_head(struct wr *w, size_t token_len, size_t name_len)
{
    w_begin(w, DIST_EPMD_LEASE_REQ);
    w_u16(w, 5555);
    w_u8(w, 77);
    w_u8(w, 0);
    w_u16(w, 6);
    w_u16(w, 5);
    w_u16(w, 0);
    w_u16(w, 5000);
    w_u8(w, (unsigned)token_len);
    w_fill(w, 't', token_len);
    w_u16(w, (unsigned)name_len);
    w_fill(w, 'n', name_len);
}

/* One metadata pair with a key of klen 'k' and a value of vlen 'v'. */
static void w_pair(struct wr *w, size_t klen, size_t vlen)
{
    w_u8(w, (unsigned)klen);
    w_fill(w, 'k', klen);
    w_u16(w, (unsigned)vlen);
    w_fill(w, 'v', vlen);
}

/* Malformed LEASE requests: fields as declared, then the pairs as written. */
static const struct bad_lease {
    const char *what;
    uint8_t token_len;
    uint16_t name_len;
    uint16_t meta_count, meta_len; /* declared */
    uint8_t pairs, key_len;        /* written */
    uint16_t value_len;
    uint8_t trailing;
} bad_leases[] = {
    {"LEASE with a trailing byte", 3, 3, 0, 0, 0, 0, 0, 1},
    {"LEASE whose MetaLen overruns the body", 3, 3, 1, 20, 1, 1, 2, 0},
    {"LEASE with MetaCount 2 and one pair", 3, 3, 2, 6, 1, 1, 2, 0},
    {"LEASE with 33 metadata pairs", 3, 3, 33, 33 * 4, 33, 1, 0, 0},
    {"LEASE with a 65-byte key", 3, 3, 1, 68, 1, 65, 0, 0},
    {"LEASE with a 1025-byte value", 3, 3, 1, 1029, 1, 1, 1025, 0},
    {"LEASE with an empty token", 0, 3, 0, 0, 0, 0, 0, 0},
    {"LEASE with a 65-byte token", 65, 3, 0, 0, 0, 0, 0, 0},
    {"LEASE with a 256-character name", 3, 256, 0, 0, 0, 0, 0, 0},
};

static void w_bad_lease(struct wr *w, const struct bad_lease *b)
{
    w_lease_head(w, b->token_len, b->name_len);
    w_u16(w, b->meta_count);
    w_u16(w, b->meta_len);
    for (int i = 0; i < b->pairs; i++)
        w_pair(w, b->key_len, b->value_len);
    w_fill(w, 0, b->trailing);
    w_seal(w);
}

/* Other malformed extension requests, Length included. */
static const struct {
    const char *what;
    uint8_t bytes[12];
    size_t len;
} bad_ext[] = {
    {"RENEW with a trailing byte", {0, 7, 'E', 1, 't', 0, 1, 'a', 0}, 9},
    {"RENEW whose Nlen overruns the body", {0, 6, 'E', 1, 't', 0, 9, 'a'}, 8},
    {"UNREG with an empty token", {0, 5, 'U', 0, 0, 1, 'a'}, 7},
    {"LIST with a trailing byte", {0, 2, 'L', 0}, 4},
    {"WATCH with a trailing byte", {0, 2, 'W', 0}, 4},
};

Test(epmd_daemon, malformed_extension_requests_close_without_reply, .init = start_default,
     .fini = stop_daemon)
{
    static struct wr w;
    int session;

    for (size_t i = 0; i < sizeof(bad_leases) / sizeof(bad_leases[0]); i++) {
        w_bad_lease(&w, &bad_leases[i]);
        send_expect_silent_close(w.buf, w.n, bad_leases[i].what);
    }
    for (size_t i = 0; i < sizeof(bad_ext) / sizeof(bad_ext[0]); i++)
        send_expect_silent_close(bad_ext[i].bytes, bad_ext[i].len, bad_ext[i].what);
    cr_assert_not(is_registered("nnn"), "a malformed LEASE registered its name");
    session = lease_new("svc", "tok", 5000, NULL);
    send_raw(session, bad_ext[0].bytes, bad_ext[0].len);
    expect_closed_silently(session, 2000, "a malformed RENEW on a leasing session");
    cr_assert(is_registered("svc"), "closing the session dropped its lease");
    close(session);
    assert_healthy();
}

Test(epmd_daemon, watch_sends_a_snapshot_then_events, .init = start_default, .fini = stop_daemon)
{
    static const uint8_t watch[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ};
    static struct listing l;
    struct dist_epmd_entry e;
    int pre = lease_new("pre", "tok-P", 60000, NULL);
    int w = dial(d.port), owner, lease;

    send_raw(w, watch, sizeof(watch));
    read_listing(w, &l);
    cr_assert_eq(l.count, 1, "snapshot of %u entries", l.count);
    cr_assert(find_entry(&l, "pre", &e), "the snapshot lacks pre");
    owner = register_node("w1", NODE_PORT, NULL);
    expect_event(w, DIST_EPMD_REGISTERED, "w1");
    close(owner);
    expect_event(w, DIST_EPMD_UNREGISTERED, "w1");
    lease = lease_new("w2", "tok-W", 200, NULL);
    expect_event(w, DIST_EPMD_REGISTERED, "w2");
    expect_event(w, DIST_EPMD_EXPIRED, "w2");
    cr_assert_eq(owner_on(pre, DIST_EPMD_UNREG_REQ, "tok-P", "pre", NULL), DIST_EPMD_OK);
    expect_event(w, DIST_EPMD_UNREGISTERED, "pre");
    send_raw(w, "?", 1);
    expect_closed_silently(w, 2000, "a watcher that sent a byte");
    close(lease);
    close(pre);
    close(w);
    assert_healthy();
}

/* Read and discard until the peer closes; 1 if it did within the bound, else 0. */
static int drain_to_close(int fd, size_t max_bytes)
{
    static uint8_t sink[1 << 16];
    size_t total = 0;
    int eof = 0;

    while (!eof && total < max_bytes) {
        size_t n = recv_upto(fd, sink, sizeof(sink), &eof);
        if (n == 0 && !eof)
            return 0; /* timed out with the connection still open */
        total += n;
    }
    return eof;
}

Test(epmd_daemon, a_watcher_1_mib_behind_is_dropped, .init = start_default, .fini = stop_daemon)
{
    static struct listing l;
    static const uint8_t watch[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ};
    static const char value[1024] = {'v'};
    uint8_t meta[3000];
    struct dist_epmd_lease big = lease_of("big", "tok", 60000);
    int w = sock_dial_rcvbuf(d.port, 4096), gen = dial(d.port), a, b, c;

    cr_assert_geq(w, 0);
    a = dist_epmd_meta_put(meta, sizeof(meta), "a", 1, value, 1024);
    b = dist_epmd_meta_put(meta + a, sizeof(meta) - (size_t)a, "b", 1, value, 1024);
    c = dist_epmd_meta_put(meta + a + b, sizeof(meta) - (size_t)(a + b), "c", 1, value, 800);
    cr_assert(a > 0 && b > 0 && c > 0);
    big.meta.meta = meta;
    big.meta.meta_len = (size_t)(a + b + c);
    big.meta.meta_count = 3;
    send_raw(w, watch, sizeof(watch));
    read_listing(w, &l);
    /* Each same-token LEASE is two ~3 KB events; 2000 of them outrun any socket buffer. */
    for (int i = 0; i < 2000; i++)
        cr_assert_eq(lease_on(gen, &big).result, DIST_EPMD_OK, "LEASE %d refused", i);
    cr_assert(drain_to_close(w, 64u << 20), "a watcher that never read was kept");
    cr_assert(file_contains(d.log, "watcher"), "dropping the watcher was not logged");
    close(w);
    close(gen);
    assert_healthy();
}

/* 100 leases with 1000 bytes of metadata each: a LIST_RESP of about 100 KB. */
static int lease_bulk(void)
{
    static const char value[1000] = {'v'};
    uint8_t meta[1100];
    int len = dist_epmd_meta_put(meta, sizeof(meta), "k", 1, value, sizeof(value));
    int fd = dial(d.port);

    cr_assert_gt(len, 0);
    for (int i = 0; i < 100; i++) {
        char name[8];
        struct dist_epmd_lease l;

        snprintf(name, sizeof(name), "n%03d", i);
        l = lease_of(name, "t", 60000);
        l.meta.meta = meta;
        l.meta.meta_len = (size_t)len;
        l.meta.meta_count = 1;
        cr_assert_eq(lease_on(fd, &l).result, DIST_EPMD_OK);
    }
    return fd;
}

Test(epmd_daemon, a_session_that_never_reads_cannot_grow_the_daemon_without_bound,
     .init = start_default, .fini = stop_daemon)
{
    static uint8_t lists[3 * 2000];
    int owner = lease_bulk(), greedy;
    long before = daemon_rss_kib(&d), peak = before;

    for (size_t i = 0; i < sizeof(lists); i += 3)
        memcpy(lists + i, "\x00\x01L", 3);
    cr_assert_gt(before, 0, "cannot read the daemon's VmRSS");
    /* 6 KB of LIST requests, never read: 200 MB of replies if all were buffered. */
    greedy = sock_dial_rcvbuf(d.port, 4096);
    cr_assert_geq(greedy, 0);
    send_raw(greedy, lists, sizeof(lists));
    for (int i = 0; i < 100; i++) {
        long rss = daemon_rss_kib(&d);
        peak = rss > peak ? rss : peak;
        sleep_ms(10);
    }
    cr_assert_lt(peak - before, 64 * 1024,
                 "6 KB of unread LIST requests grew the daemon by %ld MiB (no output cap or "
                 "backpressure on sessions)",
                 (peak - before) / 1024);
    close(greedy);
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, a_byte_sent_with_the_watch_request_ends_the_watch, .init = start_default,
     .fini = stop_daemon)
{
    /* The same bytes as WATCH and then "!" in a second write, which ends the watch. */
    static const uint8_t req[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ, '!'};
    int w = dial(d.port);

    send_raw(w, req, sizeof(req));
    cr_assert(drain_to_close(w, 1u << 20),
              "a watcher that sent a byte right behind WATCH was kept (README: any byte ends it)");
    close(w);
    assert_healthy();
}

/* ---- The command line ---------------------------------------------------------------------- */

struct cli_run {
    int status;
    char *out;
    char *err;
};

/* Run epmd with up to 5 arguments (NULL-terminated); it must exit within 5 s. */
static struct cli_run run_cli(const char *const *args)
{
    char dir[] = "/tmp/epmd-cli-XXXXXX", out[64], err[64];
    char *argv[8] = {EPMD_BIN};
    struct cli_run r = {0};
    int ofd, efd;
    pid_t pid;

    for (int i = 0; i < 5 && args[i] != NULL; i++)
        argv[i + 1] = (char *)args[i];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(err, sizeof(err), "%s/err", dir);
    ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(ofd >= 0 && efd >= 0);
    pid = spawn(argv, ofd, efd);
    close(ofd);
    close(efd);
    cr_assert_gt(pid, 0);
    if (!wait_exit(pid, 5000, &r.status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("epmd %s did not exit within 5 s", args[0]);
    }
    r.out = slurp(out, NULL);
    r.err = slurp(err, NULL);
    unlink(out);
    unlink(err);
    rmdir(dir);
    return r;
}

static int exit_code(const struct cli_run *r)
{
    return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

static void cli_free(struct cli_run *r)
{
    free(r->out);
    free(r->err);
}

Test(epmd_daemon, help_and_version_exit_0_and_print)
{
    static const char *const help_args[] = {"--help", NULL};
    static const char *const version_args[] = {"--version", NULL};
    struct cli_run help = run_cli(help_args);
    struct cli_run version = run_cli(version_args);

    cr_assert_eq(exit_code(&help), 0, "--help: wait status 0x%x", help.status);
    cr_assert(strstr(help.out, "-port") != NULL, "--help printed: [%s]", help.out);
    cr_assert_eq(exit_code(&version), 0, "--version: wait status 0x%x", version.status);
    cr_assert(strstr(version.out, "epmd") != NULL, "--version printed: [%s]", version.out);
    cli_free(&help);
    cli_free(&version);
}

Test(epmd_daemon, bad_options_exit_nonzero_with_a_message)
{
    static const char *const unknown_args[] = {"-no_such_option", NULL};
    static const char *const port_args[] = {"-port", "abc", NULL};
    struct cli_run unknown = run_cli(unknown_args);
    struct cli_run port = run_cli(port_args);

    cr_assert_neq(exit_code(&unknown), 0, "an unknown option exited 0");
    cr_assert(strstr(unknown.err, "-no_such_option") != NULL, "stderr: [%s]", unknown.err);
    cr_assert_neq(exit_code(&port), 0, "-port abc exited 0");
    cr_assert(strstr(port.err, "abc") != NULL, "stderr: [%s]", port.err);
    cli_free(&unknown);
    cli_free(&port);
}

Test(epmd_daemon, a_second_daemon_on_a_taken_port_says_so_and_exits_0, .init = start_default,
     .fini = stop_daemon)
{
    char port[8];
    const char *const args[] = {"-port", port, "-address", "127.0.0.1", NULL};
    struct cli_run second;

    snprintf(port, sizeof(port), "%u", d.port);
    second = run_cli(args);
    cr_assert_eq(exit_code(&second), 0, "wait status 0x%x", second.status);
    cr_assert(second.err[0] != '\0', "nothing said on stderr about the taken port");
    cli_free(&second);
    assert_healthy();
}
