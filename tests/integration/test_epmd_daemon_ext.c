/*
 * test_epmd_daemon_ext.c: the epmd daemon's extension, driven over raw loopback sockets:
 * leases with tokens and metadata, RENEW and UNREG, LIST, and WATCH with its snapshot, its
 * events and the bounds on what a slow reader can make the daemon hold.
 *
 * How each test runs the daemon, and where the expected bytes come from: epmd_daemon_util.h.
 */
#include <criterion/criterion.h>

#include "dist.h"
#include "epmd_daemon_util.h"

TestSuite(epmd_daemon, .timeout = 30);

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

/* ---- WATCH_REQ ------------------------------------------------------------------------------- */

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
