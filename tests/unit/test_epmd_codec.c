/*
 * test_epmd_codec.c: black-box tests of the EPMD wire codec and the error names in dist.h.
 *
 * The expected bytes come from the header's contract and from the exchanges observed against
 * a real epmd (PROTOCOL-EPMD-ERLANG.md, section 7), never from the codec itself. Inputs the
 * parsers must reject are copied into buffers of exactly their length, so a parser that reads
 * past its input trips a sanitizer when one is enabled.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

#define SENTINEL 0xA5
#define GUARD    16

/* U+1F600, one character in four bytes. */
#define EMOJI "\xF0\x9F\x98\x80"

/* ---- Helpers ------------------------------------------------------------------------------- */

/* A cursor for writing raw wire bytes by hand, independently of the builders under test. */
struct wr {
    uint8_t *p;
    size_t n;
    size_t cap;
};

static void w_mem(struct wr *w, const void *src, size_t n)
{
    cr_assert_leq(w->n + n, w->cap, "test buffer too small");
    if (n > 0)
        memcpy(w->p + w->n, src, n);
    w->n += n;
}

static void w_u8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    w_mem(w, &b, 1);
}

static void w_u16(struct wr *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_mem(w, b, 2);
}

static void w_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_mem(w, b, 4);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void hex(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && off + 4 < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%02x ", p[i]);
}

/* Assert that a builder returned exactly the bytes in want. */
static void expect_bytes(int rc, const uint8_t *got, const void *want, size_t wn)
{
    char g[512], w[512];
    hex(w, sizeof w, want, wn);
    cr_assert_eq(rc, (int)wn, "builder returned %d (%s), want %zu bytes: %s", rc, dist_err_name(rc),
                 wn, w);
    hex(g, sizeof g, got, wn);
    cr_assert(memcmp(got, want, wn) == 0, "bytes differ\n got: %s\nwant: %s", g, w);
}

/* A heap copy of exactly n bytes, so that reading past n is an overread. */
static uint8_t *dup_exact(const void *src, size_t n)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    cr_assert_not_null(p);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

static int req_parse_exact(const void *body, size_t len, struct dist_epmd_req *req)
{
    uint8_t *copy = dup_exact(body, len);
    int rc = dist_epmd_req_parse(copy, len, req);
    free(copy);
    return rc;
}

/* Parse a request that must fail with want_a (or want_b, when the contract allows both). */
static void expect_req_fail2(const void *body, size_t len, int want_a, int want_b)
{
    struct dist_epmd_req req, ref;
    memset(&req, SENTINEL, sizeof req);
    memset(&ref, SENTINEL, sizeof ref);
    int rc = req_parse_exact(body, len, &req);
    cr_assert(rc == want_a || rc == want_b, "parse of %zu bytes gave %d (%s), want %s", len, rc,
              dist_err_name(rc), dist_err_name(want_a));
    cr_assert(memcmp(&req, &ref, sizeof req) == 0, "a failed parse wrote to its output");
}

static void expect_req_fail(const void *body, size_t len, int want)
{
    expect_req_fail2(body, len, want, want);
}

static void expect_req_ok(const void *body, size_t len, struct dist_epmd_req *req)
{
    int rc = dist_epmd_req_parse(body, len, req);
    cr_assert_eq(rc, 0, "parse of %zu bytes gave %d (%s), want 0", len, rc, dist_err_name(rc));
}

static void expect_name(const char *got, size_t got_len, const char *want, size_t want_len)
{
    cr_assert_eq(got_len, want_len, "name length %zu, want %zu", got_len, want_len);
    cr_assert(memcmp(got, want, want_len) == 0, "name differs");
}

/* An ALIVE2_REQ body written by hand; the length fields are given separately from the data. */
static size_t alive2_body(uint8_t *buf, size_t cap, unsigned high, unsigned nlen_field,
                          const char *name, size_t name_len, unsigned elen_field, const void *extra,
                          size_t extra_len)
{
    struct wr w = {buf, 0, cap};
    w_u8(&w, 'x');
    w_u16(&w, 41029);
    w_u8(&w, 77);
    w_u8(&w, 0);
    w_u16(&w, high);
    w_u16(&w, 5);
    w_u16(&w, nlen_field);
    w_mem(&w, name, name_len);
    w_u16(&w, elen_field);
    w_mem(&w, extra, extra_len);
    return w.n;
}

/* One raw metadata pair: u8 KeyLen | Key | u16 ValueLen | Value. */
static void w_pair(struct wr *w, const char *key, size_t key_len, const char *val, size_t val_len)
{
    w_u8(w, (unsigned)key_len);
    w_mem(w, key, key_len);
    w_u16(w, (unsigned)val_len);
    w_mem(w, val, val_len);
}

/* A LEASE_REQ body written by hand, with the given token, name and raw metadata. */
static size_t lease_body(uint8_t *buf, size_t cap, const void *tok, size_t tok_len,
                         const char *name, size_t name_len, unsigned meta_count,
                         const uint8_t *meta, size_t meta_len)
{
    struct wr w = {buf, 0, cap};
    w_u8(&w, 'R');
    w_u16(&w, 0x1234);
    w_u8(&w, 72);
    w_u8(&w, 0);
    w_u16(&w, 6);
    w_u16(&w, 5);
    w_u32(&w, 30000);
    w_u8(&w, (unsigned)tok_len);
    w_mem(&w, tok, tok_len);
    w_u16(&w, (unsigned)name_len);
    w_mem(&w, name, name_len);
    w_u16(&w, meta_count);
    w_u16(&w, (unsigned)meta_len);
    w_mem(&w, meta, meta_len);
    return w.n;
}

/* A RENEW_REQ or UNREG_REQ body written by hand. */
static size_t owner_body(uint8_t *buf, size_t cap, uint8_t tag, const void *tok, size_t tok_len,
                         const char *name, size_t name_len)
{
    struct wr w = {buf, 0, cap};
    w_u8(&w, tag);
    w_u8(&w, (unsigned)tok_len);
    w_mem(&w, tok, tok_len);
    w_u16(&w, (unsigned)name_len);
    w_mem(&w, name, name_len);
    return w.n;
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    cr_assert_not_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

/* ---- Errors -------------------------------------------------------------------------------- */

struct err_row {
    int code;
    const char *name;
    const char *msg;
};

static const struct err_row err_rows[] = {
#define ROW_(name, value, msg) {DIST_##name, "DIST_" #name, msg},
    DIST_ERR_MAP(ROW_)
#undef ROW_
};

Test(epmd_codec, strerror_and_err_name_cover_every_code)
{
    size_t n = sizeof err_rows / sizeof err_rows[0];
    for (size_t i = 0; i < n; i++) {
        const char *msg = dist_strerror(err_rows[i].code);
        const char *name = dist_err_name(err_rows[i].code);
        cr_assert_not_null(msg);
        cr_assert_not_null(name);
        cr_assert_str_eq(msg, err_rows[i].msg, "code %d", err_rows[i].code);
        cr_assert_str_eq(name, err_rows[i].name, "code %d", err_rows[i].code);
    }
}

Test(epmd_codec, err_name_of_negated_errno)
{
    cr_assert_str_eq(dist_err_name(-ECONNREFUSED), "ECONNREFUSED");
    cr_assert_str_eq(dist_err_name(-ENOENT), "ENOENT");
    /* Same words as two of our own codes, but these are errno values. */
    cr_assert_str_eq(dist_err_name(-EINVAL), "EINVAL");
    cr_assert_str_eq(dist_err_name(-ENOBUFS), "ENOBUFS");
}

Test(epmd_codec, strerror_of_negated_errno)
{
    const char *refused = dist_strerror(-ECONNREFUSED);
    const char *noent = dist_strerror(-ENOENT);
    cr_assert_not_null(refused);
    cr_assert_not_null(noent);
    cr_assert_str_neq(refused, "unknown error");
    cr_assert_str_neq(noent, "unknown error");
    cr_assert_str_neq(refused, noent);
    cr_assert_gt(strlen(refused), 0);
}

Test(epmd_codec, unknown_codes_have_fallback_text)
{
    static const int codes[] = {-30000, -30009, -30999, 12345, -99999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cr_assert_str_eq(dist_strerror(codes[i]), "unknown error", "code %d", codes[i]);
        cr_assert_str_eq(dist_err_name(codes[i]), "UNKNOWN", "code %d", codes[i]);
    }
}

Test(epmd_codec, strerror_of_an_errno_value_that_does_not_exist)
{
    /* Linux has no errno 200 or 4000: these are unknown codes, and the name agrees. */
    cr_assert_str_eq(dist_err_name(-200), "UNKNOWN");
    cr_assert_str_eq(dist_strerror(-200), "unknown error");
    cr_assert_str_eq(dist_strerror(-4000), "unknown error");
}

/* ---- Request framing ----------------------------------------------------------------------- */

static int req_length_of(unsigned v)
{
    uint8_t hdr[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return dist_epmd_req_length(hdr);
}

Test(epmd_codec, req_length_bounds)
{
    cr_assert_eq(DIST_EPMD_MAX_LENGTH, 3057);
    cr_assert_eq(req_length_of(0), DIST_ELENGTH);
    cr_assert_eq(req_length_of(1), 1);
    cr_assert_eq(req_length_of(0x000e), 14);
    cr_assert_eq(req_length_of(0x0102), 258, "Length is big-endian");
    cr_assert_eq(req_length_of(3057), 3057);
    cr_assert_eq(req_length_of(3058), DIST_ELENGTH);
    cr_assert_eq(req_length_of(3059), DIST_ELENGTH);
    cr_assert_eq(req_length_of(3060), DIST_ELENGTH);
    cr_assert_eq(req_length_of(0xffff), DIST_ELENGTH);
}

/* ---- Parsing Erlang's requests ------------------------------------------------------------- */

/* The ALIVE2_REQ of a real `erl -sname a` (section 7), after its 00 0e Length. */
static const uint8_t real_alive2_body[] = {0x78, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                           0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};

Test(epmd_codec, parse_alive2_v6_of_real_node)
{
    struct dist_epmd_req req;
    expect_req_ok(real_alive2_body, sizeof real_alive2_body, &req);
    cr_assert_eq(req.tag, DIST_EPMD_ALIVE2_REQ);
    cr_assert_eq(req.u.alive.port, 41029);
    cr_assert_eq(req.u.alive.node_type, 77);
    cr_assert_eq(req.u.alive.protocol, 0);
    cr_assert_eq(req.u.alive.high_version, 6);
    cr_assert_eq(req.u.alive.low_version, 5);
    expect_name(req.u.alive.name, req.u.alive.name_len, "a", 1);
    cr_assert_eq((const void *)req.u.alive.name, (const void *)(real_alive2_body + 11),
                 "name must be a view into the body");
    cr_assert_eq(req.u.alive.extra_len, 0);
}

Test(epmd_codec, parse_alive2_v5_with_extra)
{
    static const uint8_t extra[] = {0x01, 0x00, 0xfe};
    uint8_t b[64];
    size_t n = alive2_body(b, sizeof b, 5, 5, "node1", 5, 3, extra, 3);
    b[3] = 104; /* ei_publish's 'h', stored unchecked */
    b[4] = 7;   /* protocol, stored unchecked */
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.tag, DIST_EPMD_ALIVE2_REQ);
    cr_assert_eq(req.u.alive.node_type, 104);
    cr_assert_eq(req.u.alive.protocol, 7);
    cr_assert_eq(req.u.alive.high_version, 5);
    cr_assert_eq(req.u.alive.low_version, 5);
    expect_name(req.u.alive.name, req.u.alive.name_len, "node1", 5);
    cr_assert_eq(req.u.alive.extra_len, 3);
    cr_assert_eq((const void *)req.u.alive.extra, (const void *)(b + 18));
    cr_assert(memcmp(req.u.alive.extra, extra, 3) == 0);
}

Test(epmd_codec, parse_alive2_ignores_trailing_bytes)
{
    uint8_t b[64];
    size_t n = alive2_body(b, sizeof b, 6, 2, "ab", 2, 1, "X", 1);
    b[n++] = 'Y';
    b[n++] = 'Z';
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    expect_name(req.u.alive.name, req.u.alive.name_len, "ab", 2);
    cr_assert_eq(req.u.alive.extra_len, 1);
    cr_assert_eq(req.u.alive.extra[0], 'X');
}

Test(epmd_codec, parse_alive2_body_of_13_bytes_is_malformed)
{
    uint8_t b[64];
    size_t n = alive2_body(b, sizeof b, 6, 0, "", 0, 0, "", 0);
    cr_assert_eq(n, 13);
    expect_req_fail(b, n, DIST_EMALFORMED);
    /* Every shorter ALIVE2 body too. */
    for (size_t len = 1; len < 13; len++)
        expect_req_fail(b, len, DIST_EMALFORMED);
    /* The smallest well-formed body is 14 bytes. */
    n = alive2_body(b, sizeof b, 6, 1, "a", 1, 0, "", 0);
    cr_assert_eq(n, 14);
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
}

Test(epmd_codec, parse_alive2_name_past_body_is_malformed)
{
    uint8_t b[64];
    /* Nlen = 3 but only "ab" and an Elen follow: Nlen + 13 = 16 > 15. */
    size_t n = alive2_body(b, sizeof b, 6, 3, "ab", 2, 0, "", 0);
    cr_assert_eq(n, 15);
    expect_req_fail(b, n, DIST_EMALFORMED);
    /* Nlen far past the end. */
    n = alive2_body(b, sizeof b, 6, 0xffff, "ab", 2, 0, "", 0);
    expect_req_fail(b, n, DIST_EMALFORMED);
}

Test(epmd_codec, parse_alive2_extra_past_body_is_malformed)
{
    uint8_t b[64];
    /* Elen = 2 with one byte of Extra: Nlen + Elen + 13 = 16 > 15. */
    size_t n = alive2_body(b, sizeof b, 6, 1, "a", 1, 2, "E", 1);
    cr_assert_eq(n, 15);
    expect_req_fail(b, n, DIST_EMALFORMED);
    n = alive2_body(b, sizeof b, 6, 1, "a", 1, 0xffff, "E", 1);
    expect_req_fail(b, n, DIST_EMALFORMED);
    /* Exactly enough Extra is fine. */
    n = alive2_body(b, sizeof b, 6, 1, "a", 1, 1, "E", 1);
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.alive.extra_len, 1);
}

Test(epmd_codec, parse_alive2_every_truncation_is_malformed)
{
    uint8_t b[64];
    size_t n = alive2_body(b, sizeof b, 6, 4, "node", 4, 2, "xy", 2);
    for (size_t len = 0; len < n; len++)
        expect_req_fail(b, len, DIST_EMALFORMED);
}

Test(epmd_codec, parse_alive2_nul_in_name_is_malformed)
{
    uint8_t b[64];
    size_t n = alive2_body(b, sizeof b, 6, 3, "a\0b", 3, 0, "", 0);
    expect_req_fail(b, n, DIST_EMALFORMED);
    n = alive2_body(b, sizeof b, 6, 2, "a\0", 2, 0, "", 0);
    expect_req_fail(b, n, DIST_EMALFORMED);
}

Test(epmd_codec, parse_alive2_checks_structure_only)
{
    /* Erlang answers Result=1 for these names, so the parser must let them through. */
    char *long_name = repeat("a", 256);
    uint8_t *b = malloc(512);
    cr_assert_not_null(b);
    size_t n = alive2_body(b, 512, 6, 256, long_name, 256, 0, "", 0);
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.alive.name_len, 256);
    cr_assert_eq(dist_epmd_name_check(req.u.alive.name, req.u.alive.name_len), DIST_EBADNAME);

    n = alive2_body(b, 512, 6, 2, "\xC0\x80", 2, 0, "", 0);
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.alive.name_len, 2);
    cr_assert_eq(dist_epmd_name_check(req.u.alive.name, req.u.alive.name_len), DIST_EBADNAME);
    free(b);
    free(long_name);
}

Test(epmd_codec, parse_port_please2)
{
    static const uint8_t body[] = {0x7a, 0x61};
    struct dist_epmd_req req;
    expect_req_ok(body, sizeof body, &req);
    cr_assert_eq(req.tag, DIST_EPMD_PORT_PLEASE2_REQ);
    expect_name(req.u.name.name, req.u.name.name_len, "a", 1);
    cr_assert_eq((const void *)req.u.name.name, (const void *)(body + 1));
}

Test(epmd_codec, parse_port_please2_strips_one_trailing_nul)
{
    struct dist_epmd_req req;
    expect_req_ok("znode\0", 6, &req);
    expect_name(req.u.name.name, req.u.name.name_len, "node", 4);
    /* Only one NUL is stripped: the second is a NUL inside the name. */
    expect_req_fail2("znode\0\0", 7, DIST_EMALFORMED, DIST_EBADNAME);
}

Test(epmd_codec, parse_port_please2_empty_name_is_rejected)
{
    expect_req_fail("z", 1, DIST_EBADNAME);
    expect_req_fail("z\0", 2, DIST_EBADNAME);
}

Test(epmd_codec, parse_port_please2_embedded_nul_is_rejected)
{
    /* The header lists a NUL in a name under DIST_EMALFORMED, and dist_epmd_name_check()
     * (DIST_EBADNAME) also rejects NUL, so either code honours the contract. */
    expect_req_fail2("za\0b", 4, DIST_EMALFORMED, DIST_EBADNAME);
    expect_req_fail2("z\0a", 3, DIST_EMALFORMED, DIST_EBADNAME);
}

Test(epmd_codec, parse_port_please2_checks_the_name)
{
    uint8_t b[1100];
    struct dist_epmd_req req;

    b[0] = 'z';
    memset(b + 1, 'a', 256);
    expect_req_fail(b, 1 + 256, DIST_EBADNAME);
    /* Erlang's epmd registers 255 characters but looks up at most 254. */
    expect_req_fail(b, 1 + 255, DIST_EBADNAME);
    b[1 + 255] = '\0';
    expect_req_fail(b, 1 + 256, DIST_EBADNAME);
    expect_req_ok(b, 1 + 254, &req);
    cr_assert_eq(req.u.name.name_len, 254);

    char *emoji = repeat(EMOJI, 255);
    memcpy(b + 1, emoji, 1020);
    expect_req_fail(b, 1 + 1020, DIST_EBADNAME);
    expect_req_ok(b, 1 + 1016, &req);
    cr_assert_eq(req.u.name.name_len, 1016);
    free(emoji);

    expect_req_fail("z\xC0\x80", 3, DIST_EBADNAME);
    expect_req_fail("za\xED\xA0\x80", 5, DIST_EBADNAME);
    expect_req_fail("z\xE2\x82", 3, DIST_EBADNAME);
}

Test(epmd_codec, parse_names_dump_kill)
{
    static const uint8_t tags[] = {DIST_EPMD_NAMES_REQ, DIST_EPMD_DUMP_REQ, DIST_EPMD_KILL_REQ};
    for (size_t i = 0; i < sizeof tags; i++) {
        struct dist_epmd_req req;
        memset(&req, SENTINEL, sizeof req);
        int rc = req_parse_exact(&tags[i], 1, &req);
        cr_assert_eq(rc, 0, "tag '%c' gave %s", tags[i], dist_err_name(rc));
        cr_assert_eq(req.tag, tags[i]);
    }
}

Test(epmd_codec, parse_stop)
{
    static const uint8_t body[] = {0x73, 0x6e, 0x6f, 0x64, 0x65};
    struct dist_epmd_req req;
    expect_req_ok(body, sizeof body, &req);
    cr_assert_eq(req.tag, DIST_EPMD_STOP_REQ);
    expect_name(req.u.name.name, req.u.name.name_len, "node", 4);
    cr_assert_eq((const void *)req.u.name.name, (const void *)(body + 1));
}

Test(epmd_codec, parse_stop_without_a_name_is_malformed)
{
    struct dist_epmd_req req;

    /* Erlang's epmd closes on a bare 's' in every mode; a lone NUL is a (missing) name. */
    expect_req_fail("s", 1, DIST_EMALFORMED);
    expect_req_ok((const uint8_t *)"s\0", 2, &req);
    cr_assert_eq(req.u.name.name_len, 0);
}

Test(epmd_codec, parse_unknown_tag_is_badtag)
{
    expect_req_fail("Q", 1, DIST_EBADTAG);
    expect_req_fail("Qabc", 4, DIST_EBADTAG);
    expect_req_fail("\x00", 1, DIST_EBADTAG);
    expect_req_fail("\xff\x01", 2, DIST_EBADTAG);
    /* Reply tags are not requests. */
    expect_req_fail("y\x00\x00\x01", 4, DIST_EBADTAG);
    expect_req_fail("w\x01", 2, DIST_EBADTAG);
    expect_req_fail("v\x00\x00\x00\x00\x01", 6, DIST_EBADTAG);
}

Test(epmd_codec, parse_obsolete_tags_are_badtag)
{
    /* Pre-R6 ALIVE_REQ ('a' | u16 Port | Name), PORT_PLEASE_REQ ('p' | Name), ALIVE_OK_RESP. */
    expect_req_fail("a\xa0\x45node", 7, DIST_EBADTAG);
    expect_req_fail("a", 1, DIST_EBADTAG);
    expect_req_fail("pnode", 5, DIST_EBADTAG);
    expect_req_fail("p", 1, DIST_EBADTAG);
    expect_req_fail("Y\x00\x01", 3, DIST_EBADTAG);
}

Test(epmd_codec, parse_empty_body_is_malformed)
{
    expect_req_fail("", 0, DIST_EMALFORMED);
}

/* ---- Parsing the extension's requests ------------------------------------------------------ */

Test(epmd_codec, parse_lease_with_metadata)
{
    uint8_t meta[64], b[256];
    struct wr m = {meta, 0, sizeof meta};
    w_pair(&m, "proto", 5, "tcp", 3);
    w_pair(&m, "tls", 3, "", 0);
    size_t n = lease_body(b, sizeof b, "tok", 3, "svc", 3, 2, meta, m.n);

    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.tag, DIST_EPMD_LEASE_REQ);
    const struct dist_epmd_lease *l = &req.u.lease;
    cr_assert_eq(l->node.port, 0x1234);
    cr_assert_eq(l->node.node_type, 72);
    cr_assert_eq(l->node.protocol, 0);
    cr_assert_eq(l->node.high_version, 6);
    cr_assert_eq(l->node.low_version, 5);
    expect_name(l->node.name, l->node.name_len, "svc", 3);
    cr_assert_eq(l->node.extra_len, 0);
    cr_assert_eq(l->lease_ms, 30000);
    cr_assert_eq(l->token_len, 3);
    cr_assert(memcmp(l->token, "tok", 3) == 0);
    cr_assert_eq(l->meta.meta_count, 2);
    cr_assert_eq(l->meta.meta_len, m.n);
    cr_assert_eq((const void *)l->meta.meta, (const void *)(b + n - m.n));

    const uint8_t *cur = l->meta.meta, *end = l->meta.meta + l->meta.meta_len;
    struct dist_epmd_meta kv;
    cr_assert_eq(dist_epmd_meta_next(&cur, end, &kv), 0);
    expect_name(kv.key, kv.key_len, "proto", 5);
    expect_name(kv.value, kv.value_len, "tcp", 3);
    cr_assert_eq(dist_epmd_meta_next(&cur, end, &kv), 0);
    expect_name(kv.key, kv.key_len, "tls", 3);
    cr_assert_eq(kv.value_len, 0);
    cr_assert_eq(cur, end);
    cr_assert_eq(dist_epmd_meta_next(&cur, end, &kv), DIST_EMALFORMED);
}

Test(epmd_codec, parse_lease_without_metadata)
{
    uint8_t b[64];
    size_t n = lease_body(b, sizeof b, "t", 1, "a", 1, 0, NULL, 0);
    struct dist_epmd_req req;
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.lease.meta.meta_count, 0);
    cr_assert_eq(req.u.lease.meta.meta_len, 0);
    expect_name(req.u.lease.node.name, req.u.lease.node.name_len, "a", 1);
}

Test(epmd_codec, parse_renew_and_unreg)
{
    static const uint8_t tags[] = {DIST_EPMD_RENEW_REQ, DIST_EPMD_UNREG_REQ};
    for (size_t i = 0; i < sizeof tags; i++) {
        uint8_t b[64];
        size_t n = owner_body(b, sizeof b, tags[i], "\x00\x01\xff", 3, "node", 4);
        struct dist_epmd_req req;
        expect_req_ok(b, n, &req);
        cr_assert_eq(req.tag, tags[i]);
        cr_assert_eq(req.u.owner.token_len, 3);
        cr_assert(memcmp(req.u.owner.token, "\x00\x01\xff", 3) == 0);
        cr_assert_eq((const void *)req.u.owner.token, (const void *)(b + 2));
        expect_name(req.u.owner.name, req.u.owner.name_len, "node", 4);
    }
}

Test(epmd_codec, parse_extension_trailing_bytes_are_malformed)
{
    uint8_t meta[32], b[128];
    struct wr m = {meta, 0, sizeof meta};
    w_pair(&m, "k", 1, "v", 1);
    size_t n = lease_body(b, sizeof b, "tok", 3, "svc", 3, 1, meta, m.n);
    b[n] = 0;
    expect_req_fail(b, n + 1, DIST_EMALFORMED);

    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, "tok", 3, "svc", 3);
    b[n] = 'x';
    expect_req_fail(b, n + 1, DIST_EMALFORMED);

    n = owner_body(b, sizeof b, DIST_EPMD_UNREG_REQ, "tok", 3, "svc", 3);
    b[n] = 'x';
    expect_req_fail(b, n + 1, DIST_EMALFORMED);
}

Test(epmd_codec, parse_extension_every_truncation_is_malformed)
{
    uint8_t meta[32], b[128];
    struct wr m = {meta, 0, sizeof meta};
    w_pair(&m, "k", 1, "val", 3);
    w_pair(&m, "k2", 2, "", 0);
    size_t n = lease_body(b, sizeof b, "tok", 3, "svc", 3, 2, meta, m.n);
    for (size_t len = 1; len < n; len++)
        expect_req_fail(b, len, DIST_EMALFORMED);

    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, "tok", 3, "svc", 3);
    for (size_t len = 1; len < n; len++)
        expect_req_fail(b, len, DIST_EMALFORMED);

    n = owner_body(b, sizeof b, DIST_EPMD_UNREG_REQ, "tok", 3, "svc", 3);
    for (size_t len = 1; len < n; len++)
        expect_req_fail(b, len, DIST_EMALFORMED);
}

Test(epmd_codec, parse_token_length_limits)
{
    uint8_t tok[65], b[256];
    struct dist_epmd_req req;
    memset(tok, 't', sizeof tok);

    size_t n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, tok, 0, "a", 1);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, tok, 65, "a", 1);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = owner_body(b, sizeof b, DIST_EPMD_UNREG_REQ, tok, 0, "a", 1);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, tok, 64, "a", 1);
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.owner.token_len, 64);
    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, tok, 1, "a", 1);
    expect_req_ok(b, n, &req);

    n = lease_body(b, sizeof b, tok, 0, "a", 1, 0, NULL, 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = lease_body(b, sizeof b, tok, 65, "a", 1, 0, NULL, 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = lease_body(b, sizeof b, tok, 64, "a", 1, 0, NULL, 0);
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.lease.token_len, 64);
}

Test(epmd_codec, parse_extension_names_are_checked)
{
    uint8_t b[512];
    char *long_name = repeat("a", 256);
    size_t n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, "t", 1, long_name, 256);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = owner_body(b, sizeof b, DIST_EPMD_UNREG_REQ, "t", 1, "", 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = owner_body(b, sizeof b, DIST_EPMD_RENEW_REQ, "t", 1, "\xED\xA0\x80", 3);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = lease_body(b, sizeof b, "t", 1, long_name, 256, 0, NULL, 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = lease_body(b, sizeof b, "t", 1, "\xC0\x80", 2, 0, NULL, 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    n = lease_body(b, sizeof b, "t", 1, "", 0, 0, NULL, 0);
    expect_req_fail(b, n, DIST_EBADNAME);
    free(long_name);
}

Test(epmd_codec, parse_lease_meta_pair_count_limit)
{
    uint8_t meta[512], b[1024];
    struct wr m = {meta, 0, sizeof meta};
    struct dist_epmd_req req;
    for (int i = 0; i < 33; i++) {
        char key[8];
        int kl = snprintf(key, sizeof key, "k%d", i);
        w_pair(&m, key, (size_t)kl, "v", 1);
    }
    size_t all = m.n;
    size_t last = 1 + 3 + 2 + 1; /* "k32" = "v" */

    size_t n = lease_body(b, sizeof b, "t", 1, "a", 1, 33, meta, all);
    expect_req_fail(b, n, DIST_ELIMIT);
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 32, meta, all - last);
    expect_req_ok(b, n, &req);
    cr_assert_eq(req.u.lease.meta.meta_count, 32);
}

Test(epmd_codec, parse_lease_meta_key_and_value_limits)
{
    uint8_t meta[1200], b[1400];
    char big[1025];
    struct dist_epmd_req req;
    memset(big, 'k', sizeof big);

    struct wr m = {meta, 0, sizeof meta};
    w_pair(&m, big, 65, "v", 1);
    size_t n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, m.n);
    expect_req_fail(b, n, DIST_ELIMIT);

    m.n = 0;
    w_pair(&m, big, 64, "v", 1);
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, m.n);
    expect_req_ok(b, n, &req);

    m.n = 0;
    w_pair(&m, "k", 1, big, 1025);
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, m.n);
    expect_req_fail(b, n, DIST_ELIMIT);

    m.n = 0;
    w_pair(&m, "k", 1, big, 1024);
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, m.n);
    expect_req_ok(b, n, &req);
    const uint8_t *cur = req.u.lease.meta.meta;
    struct dist_epmd_meta kv;
    cr_assert_eq(dist_epmd_meta_next(&cur, cur + req.u.lease.meta.meta_len, &kv), 0);
    cr_assert_eq(kv.value_len, 1024);
}

Test(epmd_codec, parse_lease_meta_inconsistent_lengths_are_malformed)
{
    uint8_t meta[64], b[128];
    struct wr m = {meta, 0, sizeof meta};
    w_pair(&m, "key", 3, "value", 5);
    size_t pair = m.n;

    /* MetaCount says two pairs, the bytes hold one. */
    size_t n = lease_body(b, sizeof b, "t", 1, "a", 1, 2, meta, pair);
    expect_req_fail(b, n, DIST_EMALFORMED);

    /* MetaLen one byte longer than the pairs (the extra byte is inside MetaLen). */
    meta[pair] = 0;
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, pair + 1);
    expect_req_fail(b, n, DIST_EMALFORMED);

    /* The pair's ValueLen runs past MetaLen. */
    m.n = 0;
    w_pair(&m, "key", 3, "value", 5);
    meta[5] = 6;
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, pair);
    expect_req_fail(b, n, DIST_EMALFORMED);

    /* MetaLen runs past the body. */
    meta[5] = 5;
    n = lease_body(b, sizeof b, "t", 1, "a", 1, 1, meta, pair);
    b[n - pair - 1] = (uint8_t)(pair + 1);
    expect_req_fail(b, n, DIST_EMALFORMED);
}

/* ---- Names --------------------------------------------------------------------------------- */

static int check_str(const char *s)
{
    return dist_epmd_name_check(s, strlen(s));
}

Test(epmd_codec, name_check_character_limit)
{
    char *a255 = repeat("a", 255), *a256 = repeat("a", 256);
    cr_assert_eq(check_str("a"), 0);
    cr_assert_eq(check_str(a255), 0);
    cr_assert_eq(check_str(a256), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check("", 0), DIST_EBADNAME);
    free(a255);
    free(a256);
}

Test(epmd_codec, name_check_four_byte_char_counts_once)
{
    char *e255 = repeat(EMOJI, 255), *e256 = repeat(EMOJI, 256);
    cr_assert_eq(check_str(EMOJI), 0);
    cr_assert_eq(strlen(e255), 1020);
    cr_assert_eq(check_str(e255), 0, "255 characters in 1020 bytes");
    cr_assert_eq(check_str(e256), DIST_EBADNAME);

    /* 254 four-byte characters and one 'a': 255 characters in 1017 bytes. */
    char *mix = repeat(EMOJI, 255);
    memcpy(mix + 254 * 4, "a", 2);
    cr_assert_eq(check_str(mix), 0);
    free(mix);

    char *e2 = repeat("\xC3\xA9", 255), *e2x = repeat("\xC3\xA9", 256);
    char *e3 = repeat("\xE2\x82\xAC", 255), *e3x = repeat("\xE2\x82\xAC", 256);
    cr_assert_eq(check_str(e2), 0);
    cr_assert_eq(check_str(e2x), DIST_EBADNAME);
    cr_assert_eq(check_str(e3), 0);
    cr_assert_eq(check_str(e3x), DIST_EBADNAME);
    free(e2);
    free(e2x);
    free(e3);
    free(e3x);
    free(e255);
    free(e256);
}

Test(epmd_codec, name_check_byte_limit)
{
    /* 1020 bytes pass; 1021 bytes cannot be 255 characters and fail. */
    char *e255a = malloc(1022);
    cr_assert_not_null(e255a);
    char *e255 = repeat(EMOJI, 255);
    memcpy(e255a, e255, 1020);
    memcpy(e255a + 1020, "a", 2);
    cr_assert_eq(dist_epmd_name_check(e255a, 1020), 0);
    cr_assert_eq(dist_epmd_name_check(e255a, 1021), DIST_EBADNAME);
    char *a4096 = repeat("a", 4096);
    cr_assert_eq(check_str(a4096), DIST_EBADNAME);
    free(a4096);
    free(e255);
    free(e255a);
}

Test(epmd_codec, name_check_rejects_nul)
{
    cr_assert_eq(dist_epmd_name_check("a\0b", 3), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check("\0", 1), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check("ab\0", 3), DIST_EBADNAME);
    /* The length is what counts, not a terminator. */
    cr_assert_eq(dist_epmd_name_check("ab\xff", 2), 0);
}

static const char *const bad_utf8[] = {
    "\x80",             /* lone continuation */
    "\xBF",             /* lone continuation */
    "\xC0\x80",         /* overlong NUL */
    "\xC0\xAF",         /* overlong '/' */
    "\xC1\xBF",         /* overlong U+007F */
    "\xE0\x80\x80",     /* overlong NUL, three bytes */
    "\xE0\x9F\xBF",     /* overlong U+07FF */
    "\xF0\x80\x80\x80", /* overlong NUL, four bytes */
    "\xF0\x8F\xBF\xBF", /* overlong U+FFFF */
    "\xED\xA0\x80",     /* U+D800, high surrogate */
    "\xED\xAD\xBF",     /* U+DB7F */
    "\xED\xB0\x80",     /* U+DC00, low surrogate */
    "\xED\xBF\xBF",     /* U+DFFF */
    "\xF4\x90\x80\x80", /* U+110000 */
    "\xF5\x80\x80\x80", /* past U+10FFFF */
    "\xF7\xBF\xBF\xBF", /* past U+10FFFF */
    "\xF8\x88\x80\x80\x80",
    "\xFC\x84\x80\x80\x80\x80",
    "\xFE",
    "\xFF",
    "\xC3",             /* truncated two-byte */
    "\xE2\x82",         /* truncated three-byte */
    "\xE2",             /* truncated three-byte */
    "\xF0\x9F\x98",     /* truncated four-byte */
    "\xF0\x9F",         /* truncated four-byte */
    "\xC3\x28",         /* bad continuation */
    "\xE2\x28\xA1",     /* bad continuation */
    "\xE2\x82\x28",     /* bad continuation */
    "\xF0\x9F\x28\x80", /* bad continuation */
    "\xF0\x9F\x98\x28", /* bad continuation */
};

Test(epmd_codec, name_check_rejects_invalid_utf8)
{
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char buf[32];
        const char *s = bad_utf8[i];
        cr_assert_eq(check_str(s), DIST_EBADNAME, "sequence %zu alone", i);
        /* The same sequence between valid characters. */
        int n = snprintf(buf, sizeof buf, "ab%scd", s);
        cr_assert_eq(dist_epmd_name_check(buf, (size_t)n), DIST_EBADNAME, "sequence %zu", i);
        /* At the very end, where a truncated sequence must not read past the length. */
        n = snprintf(buf, sizeof buf, "ab%s", s);
        char *exact = (char *)dup_exact(buf, (size_t)n);
        cr_assert_eq(dist_epmd_name_check(exact, (size_t)n), DIST_EBADNAME, "sequence %zu", i);
        free(exact);
    }
}

Test(epmd_codec, name_check_stops_at_its_length)
{
    /* The bytes after the length would complete each sequence; the length cuts it short. */
    cr_assert_eq(dist_epmd_name_check("ab\xC3\xA9", 3), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check("ab\xE2\x82\xAC", 4), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check(EMOJI, 1), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check(EMOJI, 2), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check(EMOJI, 3), DIST_EBADNAME);
    cr_assert_eq(dist_epmd_name_check(EMOJI, 4), 0);
}

Test(epmd_codec, name_check_accepts_valid_utf8_edges)
{
    static const char *const good[] = {
        "\x01",             /* control characters are valid UTF-8 */
        "\x7F",             /* U+007F */
        "\xC2\x80",         /* U+0080, smallest two-byte */
        "\xDF\xBF",         /* U+07FF */
        "\xE0\xA0\x80",     /* U+0800, smallest three-byte */
        "\xED\x9F\xBF",     /* U+D7FF, just below the surrogates */
        "\xEE\x80\x80",     /* U+E000, just above them */
        "\xEF\xBF\xBF",     /* U+FFFF */
        "\xF0\x90\x80\x80", /* U+10000, smallest four-byte */
        "\xF4\x8F\xBF\xBF", /* U+10FFFF */
        "n\xC3\xB6"
        "de_1",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(check_str(good[i]), 0, "sequence %zu", i);
}

/* ---- Builders: Erlang's requests ----------------------------------------------------------- */

static const struct dist_epmd_node real_node = {
    .port = 41029,
    .node_type = 77,
    .protocol = 0,
    .high_version = 6,
    .low_version = 5,
    .name = "a",
    .name_len = 1,
    .extra = NULL,
    .extra_len = 0,
};

Test(epmd_codec, build_alive2_of_real_node)
{
    static const uint8_t want[] = {0x00, 0x0e, 0x78, 0xa0, 0x45, 0x4d, 0x00, 0x00,
                                   0x06, 0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t buf[64];
    expect_bytes(dist_epmd_alive2_req_build(buf, sizeof buf, &real_node), buf, want, sizeof want);
}

Test(epmd_codec, build_alive2_with_extra)
{
    static const uint8_t extra[] = {0xde, 0xad};
    static const uint8_t want[] = {0x00, 0x11, 0x78, 0x12, 0x34, 0x68, 0x00, 0x00, 0x05, 0x00,
                                   0x05, 0x00, 0x02, 0x6e, 0x31, 0x00, 0x02, 0xde, 0xad};
    struct dist_epmd_node node = {0x1234, 104, 0, 5, 5, "n1", 2, extra, 2};
    uint8_t buf[64];
    expect_bytes(dist_epmd_alive2_req_build(buf, sizeof buf, &node), buf, want, sizeof want);
}

Test(epmd_codec, build_alive2_name_too_long_is_einval)
{
    size_t big = 70000;
    uint8_t *buf = malloc(2 * big);
    char *name = malloc(big);
    cr_assert_not_null(buf);
    cr_assert_not_null(name);
    memset(name, 'a', big);
    struct dist_epmd_node node = real_node;
    node.name = name;
    node.name_len = 65536;
    cr_assert_eq(dist_epmd_alive2_req_build(buf, 2 * big, &node), DIST_EINVAL);
    node.name_len = 1;
    node.extra = (const uint8_t *)name;
    node.extra_len = 65536;
    cr_assert_eq(dist_epmd_alive2_req_build(buf, 2 * big, &node), DIST_EINVAL);
    free(name);
    free(buf);
}

Test(epmd_codec, build_port_please2)
{
    uint8_t buf[32];
    expect_bytes(dist_epmd_port2_req_build(buf, sizeof buf, "a", 1), buf, "\x00\x02\x7a\x61", 4);
    /* name_len counts, not a terminator. */
    expect_bytes(dist_epmd_port2_req_build(buf, sizeof buf, "nosuchXX", 6), buf, "\x00\x07znosuch",
                 9);
}

Test(epmd_codec, build_simple_requests)
{
    static const uint8_t tags[] = {DIST_EPMD_NAMES_REQ, DIST_EPMD_DUMP_REQ, DIST_EPMD_KILL_REQ,
                                   DIST_EPMD_LIST_REQ, DIST_EPMD_WATCH_REQ};
    for (size_t i = 0; i < sizeof tags; i++) {
        uint8_t buf[8], want[3] = {0x00, 0x01, tags[i]};
        expect_bytes(dist_epmd_simple_req_build(buf, sizeof buf, tags[i]), buf, want, 3);
    }
    uint8_t buf[8];
    expect_bytes(dist_epmd_simple_req_build(buf, sizeof buf, DIST_EPMD_NAMES_REQ), buf,
                 "\x00\x01\x6e", 3);
}

Test(epmd_codec, build_stop)
{
    uint8_t buf[32];
    expect_bytes(dist_epmd_stop_req_build(buf, sizeof buf, "a", 1), buf, "\x00\x02\x73\x61", 4);
}

/* ---- Builders: Erlang's replies ------------------------------------------------------------ */

Test(epmd_codec, build_alive2_resp_forms)
{
    uint8_t buf[16];
    expect_bytes(dist_epmd_alive2_resp_build(buf, sizeof buf, 1, 0, 1795298745), buf,
                 "\x76\x00\x6b\x02\x15\xb9", 6);
    expect_bytes(dist_epmd_alive2_resp_build(buf, sizeof buf, 1, 1, 99), buf,
                 "\x76\x01\x00\x00\x00\x63", 6);
    expect_bytes(dist_epmd_alive2_resp_build(buf, sizeof buf, 0, 1, 99), buf, "\x79\x01\x00\x63",
                 4);
    expect_bytes(dist_epmd_alive2_resp_build(buf, sizeof buf, 0, 0, 3), buf, "\x79\x00\x00\x03", 4);
}

Test(epmd_codec, build_port2_resp_found_and_not_found)
{
    static const uint8_t want[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t buf[64];
    expect_bytes(dist_epmd_port2_resp_build(buf, sizeof buf, &real_node), buf, want, sizeof want);
    expect_bytes(dist_epmd_port2_resp_build(buf, sizeof buf, NULL), buf, "\x77\x01", 2);
}

Test(epmd_codec, build_port2_resp_echoes_extra)
{
    static const uint8_t extra[] = {0x00, 0x01, 0x02};
    static const uint8_t want[] = {0x77, 0x00, 0x00, 0x50, 0x68, 0x01, 0x00, 0x06, 0x00, 0x06,
                                   0x00, 0x02, 0x6e, 0x31, 0x00, 0x03, 0x00, 0x01, 0x02};
    struct dist_epmd_node node = {80, 104, 1, 6, 6, "n1", 2, extra, 3};
    uint8_t buf[64];
    expect_bytes(dist_epmd_port2_resp_build(buf, sizeof buf, &node), buf, want, sizeof want);
}

Test(epmd_codec, build_names_line)
{
    uint8_t buf[64];
    static const char want[] = "name a at port 41029\n";
    expect_bytes(dist_epmd_names_line(buf, sizeof buf, "a", 1, 41029), buf, want, sizeof want - 1);
    static const char want2[] = "name ab at port 0\n";
    expect_bytes(dist_epmd_names_line(buf, sizeof buf, "abc", 2, 0), buf, want2, sizeof want2 - 1);
    static const char want3[] = "name x at port 65535\n";
    expect_bytes(dist_epmd_names_line(buf, sizeof buf, "x", 1, 65535), buf, want3,
                 sizeof want3 - 1);
}

Test(epmd_codec, build_dump_lines_end_with_nul)
{
    uint8_t buf[128];
    /* sizeof includes the string's NUL, which is the NUL byte epmd sends after each line. */
    static const char active[] = "active name     <a> at port 41029, fd = 7\n";
    static const char old[] = "old/unused name <a>, port = 41029, fd = 7 \n";
    memset(buf, SENTINEL, sizeof buf);
    expect_bytes(dist_epmd_dump_line(buf, sizeof buf, 1, "a", 1, 41029, 7), buf, active,
                 sizeof active);
    memset(buf, SENTINEL, sizeof buf);
    expect_bytes(dist_epmd_dump_line(buf, sizeof buf, 0, "a", 1, 41029, 7), buf, old, sizeof old);
    static const char active2[] = "active name     <node> at port 80, fd = 12\n";
    expect_bytes(dist_epmd_dump_line(buf, sizeof buf, 1, "nodeXYZ", 4, 80, 12), buf, active2,
                 sizeof active2);
}

/* ---- Builders: the extension --------------------------------------------------------------- */

Test(epmd_codec, build_owner_requests)
{
    uint8_t buf[32];
    expect_bytes(dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_RENEW_REQ,
                                           (const uint8_t *)"tk", 2, "a", 1),
                 buf, "\x00\x07\x45\x02tk\x00\x01\x61", 9);
    expect_bytes(dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_UNREG_REQ,
                                           (const uint8_t *)"t", 1, "node", 4),
                 buf, "\x00\x09\x55\x01t\x00\x04node", 11);
}

Test(epmd_codec, build_lease_request)
{
    static const uint8_t meta[] = {0x01, 'k', 0x00, 0x02, 'v', 'v'};
    static const uint8_t want[] = {
        0x00, 0x1d,             /* Length 29 */
        0x52,                   /* 'R' */
        0x12, 0x34, 0x48, 0x00, /* Port, NodeType 'H', Protocol */
        0x00, 0x06, 0x00, 0x05, /* High, Low */
        0x00, 0x00, 0x75, 0x30, /* LeaseMs 30000 */
        0x02, 't',  'k',        /* Token */
        0x00, 0x01, 'a',        /* Name */
        0x00, 0x01, 0x00, 0x06, /* MetaCount, MetaLen */
        0x01, 'k',  0x00, 0x02, 'v', 'v',
    };
    struct dist_epmd_lease lease = {
        .node = {0x1234, 72, 0, 6, 5, "a", 1, NULL, 0},
        .lease_ms = 30000,
        .token = (const uint8_t *)"tk",
        .token_len = 2,
        .meta = {meta, sizeof meta, 1},
    };
    uint8_t buf[64];
    expect_bytes(dist_epmd_lease_req_build(buf, sizeof buf, &lease), buf, want, sizeof want);
}

Test(epmd_codec, build_owner_request_rejects_bad_token)
{
    uint8_t buf[512], tok[65];
    memset(tok, 't', sizeof tok);
    int rc = dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_RENEW_REQ, tok, 0, "a", 1);
    cr_assert_eq(rc, DIST_EINVAL, "token of 0 bytes gave %d", rc);
    rc = dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_UNREG_REQ, tok, 65, "a", 1);
    cr_assert_eq(rc, DIST_EINVAL, "token of 65 bytes gave %d", rc);
    rc = dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_RENEW_REQ, tok, 64, "a", 1);
    cr_assert_eq(rc, 2 + 1 + 1 + 64 + 2 + 1, "token of 64 bytes gave %d", rc);
}

Test(epmd_codec, build_lease_request_rejects_bad_token)
{
    uint8_t buf[512], tok[65];
    memset(tok, 't', sizeof tok);
    struct dist_epmd_lease lease = {
        .node = {1, 77, 0, 6, 5, "a", 1, NULL, 0},
        .token = tok,
        .token_len = 0,
    };
    int rc = dist_epmd_lease_req_build(buf, sizeof buf, &lease);
    cr_assert_eq(rc, DIST_EINVAL, "token of 0 bytes gave %d", rc);
    lease.token_len = 65;
    rc = dist_epmd_lease_req_build(buf, sizeof buf, &lease);
    cr_assert_eq(rc, DIST_EINVAL, "token of 65 bytes gave %d", rc);
    lease.token_len = 64;
    cr_assert_gt(dist_epmd_lease_req_build(buf, sizeof buf, &lease), 0);
}

Test(epmd_codec, build_extension_requests_reject_bad_names)
{
    /* Extension names must pass dist_epmd_name_check(); the header leaves the code open. */
    uint8_t buf[512];
    const uint8_t *tok = (const uint8_t *)"t";
    int rc = dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_RENEW_REQ, tok, 1, "", 0);
    cr_assert(rc < 0 && rc != DIST_ENOBUFS, "empty name gave %d", rc);
    rc = dist_epmd_owner_req_build(buf, sizeof buf, DIST_EPMD_UNREG_REQ, tok, 1, "\xC0\x80", 2);
    cr_assert(rc < 0 && rc != DIST_ENOBUFS, "overlong name gave %d", rc);
    struct dist_epmd_lease lease = {
        .node = {1, 77, 0, 6, 5, "\xED\xA0\x80", 3, NULL, 0},
        .token = tok,
        .token_len = 1,
    };
    rc = dist_epmd_lease_req_build(buf, sizeof buf, &lease);
    cr_assert(rc < 0 && rc != DIST_ENOBUFS, "surrogate name gave %d", rc);
}

Test(epmd_codec, meta_put_layout_and_limits)
{
    uint8_t buf[2048];
    char big[1025];
    memset(big, 'x', sizeof big);
    expect_bytes(dist_epmd_meta_put(buf, sizeof buf, "k", 1, "vv", 2), buf, "\x01k\x00\x02vv", 6);
    expect_bytes(dist_epmd_meta_put(buf, sizeof buf, "key", 3, "", 0), buf, "\x03key\x00\x00", 6);
    cr_assert_eq(dist_epmd_meta_put(buf, sizeof buf, big, 64, "v", 1), 64 + 4);
    cr_assert_eq(dist_epmd_meta_put(buf, sizeof buf, big, 65, "v", 1), DIST_ELIMIT);
    cr_assert_eq(dist_epmd_meta_put(buf, sizeof buf, "k", 1, big, 1024), 1024 + 4);
    cr_assert_eq(dist_epmd_meta_put(buf, sizeof buf, "k", 1, big, 1025), DIST_ELIMIT);
    int rc = dist_epmd_meta_put(buf, sizeof buf, "", 0, "v", 1);
    cr_assert(rc < 0 && rc != DIST_ENOBUFS, "an empty key (KeyLen 1..64) gave %d", rc);
}

/* epmd/README.md: extension frames are u32 Length | u8 Tag | body, Length counting the tag. */
Test(epmd_codec, build_extension_replies)
{
    uint8_t buf[32];
    expect_bytes(dist_epmd_lease_resp_build(buf, sizeof buf, DIST_EPMD_OK, 0x01020304, 30000), buf,
                 "\x00\x00\x00\x0a\x72\x00\x01\x02\x03\x04\x00\x00\x75\x30", 14);
    expect_bytes(dist_epmd_renew_resp_build(buf, sizeof buf, DIST_EPMD_DENIED, 0xdeadbeef), buf,
                 "\x00\x00\x00\x06\x65\x03\xde\xad\xbe\xef", 10);
    expect_bytes(dist_epmd_unreg_resp_build(buf, sizeof buf, DIST_EPMD_NOTFOUND), buf,
                 "\x00\x00\x00\x02\x75\x02", 6);
}

Test(epmd_codec, build_frame_header)
{
    uint8_t buf[8];
    expect_bytes(dist_epmd_frame_header(buf, sizeof buf, DIST_EPMD_LIST_RESP, 100), buf,
                 "\x00\x00\x00\x65\x6c", 5);
    expect_bytes(dist_epmd_frame_header(buf, sizeof buf, DIST_EPMD_EVENT, 0x12345), buf,
                 "\x00\x01\x23\x46\x63", 5);
}

Test(epmd_codec, frame_parse_of_hand_written_frame)
{
    static const uint8_t frame[] = {0x00, 0x00, 0x00, 0x06, 0x65, 0x00, 0x00, 0x00, 0xea, 0x60};
    uint8_t tag, result = 0xff;
    const uint8_t *body;
    size_t blen;
    uint32_t lease_ms = 0;
    cr_assert_eq(dist_epmd_frame_parse(frame, sizeof frame, 64, &tag, &body, &blen), 10);
    cr_assert_eq(tag, DIST_EPMD_RENEW_RESP);
    cr_assert_eq(body, frame + 5);
    cr_assert_eq(blen, 5);
    cr_assert_eq(dist_epmd_result_parse(body, blen, tag, &result, NULL, &lease_ms), 5);
    cr_assert_eq(result, DIST_EPMD_OK);
    cr_assert_eq(lease_ms, 60000);
}

Test(epmd_codec, build_entry_layout)
{
    static const uint8_t meta[] = {0x01, 'k', 0x00, 0x01, 'v'};
    static const uint8_t want[] = {
        0x00, 0x50, 0x4d, 0x00, /* Port 80, NodeType 'M', Protocol */
        0x00, 0x06, 0x00, 0x05, /* High, Low */
        0x00, 0x00, 0x00, 0x07, /* Creation */
        0x01,                   /* Flags: leased */
        0x00, 0x00, 0x27, 0x10, /* LeaseMs 10000 */
        0x00, 0x02, 'a',  'b',  /* Name */
        0x00, 0x01, 0xee,       /* Extra */
        0x00, 0x01, 0x00, 0x05, /* MetaCount, MetaLen */
        0x01, 'k',  0x00, 0x01, 'v',
    };
    struct dist_epmd_entry e = {
        .node = {80, 77, 0, 6, 5, "ab", 2, (const uint8_t *)"\xee", 1},
        .creation = 7,
        .flags = DIST_EPMD_ENTRY_LEASED,
        .lease_ms = 10000,
        .meta = {meta, sizeof meta, 1},
    };
    uint8_t buf[64];
    expect_bytes(dist_epmd_entry_build(buf, sizeof buf, &e), buf, want, sizeof want);
}

/* ---- Builders: buffer capacity ------------------------------------------------------------- */

enum builder {
    B_ALIVE2,
    B_PORT2_REQ,
    B_SIMPLE,
    B_STOP,
    B_LEASE,
    B_OWNER,
    B_META,
    B_ALIVE2_X,
    B_ALIVE2_Y,
    B_PORT2_FOUND,
    B_PORT2_NONE,
    B_NAMES,
    B_DUMP_ACTIVE,
    B_DUMP_OLD,
    B_LEASE_RESP,
    B_RENEW_RESP,
    B_UNREG_RESP,
    B_ENTRY,
    B_FRAME,
    B_COUNT
};

static int run_builder(int which, uint8_t *buf, size_t cap)
{
    static const uint8_t meta[] = {0x01, 'k', 0x00, 0x01, 'v'};
    static const struct dist_epmd_lease lease = {
        .node = {1, 77, 0, 6, 5, "node", 4, NULL, 0},
        .lease_ms = 5,
        .token = (const uint8_t *)"token",
        .token_len = 5,
        .meta = {meta, sizeof meta, 1},
    };
    static const struct dist_epmd_entry entry = {
        .node = {1, 77, 0, 6, 5, "node", 4, (const uint8_t *)"ex", 2},
        .creation = 9,
        .flags = 0,
        .lease_ms = 0,
        .meta = {meta, sizeof meta, 1},
    };
    switch (which) {
    case B_ALIVE2:
        return dist_epmd_alive2_req_build(buf, cap, &entry.node);
    case B_PORT2_REQ:
        return dist_epmd_port2_req_build(buf, cap, "node", 4);
    case B_SIMPLE:
        return dist_epmd_simple_req_build(buf, cap, DIST_EPMD_NAMES_REQ);
    case B_STOP:
        return dist_epmd_stop_req_build(buf, cap, "node", 4);
    case B_LEASE:
        return dist_epmd_lease_req_build(buf, cap, &lease);
    case B_OWNER:
        return dist_epmd_owner_req_build(buf, cap, DIST_EPMD_RENEW_REQ, lease.token, 5, "n", 1);
    case B_META:
        return dist_epmd_meta_put(buf, cap, "key", 3, "value", 5);
    case B_ALIVE2_X:
        return dist_epmd_alive2_resp_build(buf, cap, 1, 0, 1795298745);
    case B_ALIVE2_Y:
        return dist_epmd_alive2_resp_build(buf, cap, 0, 0, 3);
    case B_PORT2_FOUND:
        return dist_epmd_port2_resp_build(buf, cap, &entry.node);
    case B_PORT2_NONE:
        return dist_epmd_port2_resp_build(buf, cap, NULL);
    case B_NAMES:
        return dist_epmd_names_line(buf, cap, "node", 4, 41029);
    case B_DUMP_ACTIVE:
        return dist_epmd_dump_line(buf, cap, 1, "node", 4, 41029, 12);
    case B_DUMP_OLD:
        return dist_epmd_dump_line(buf, cap, 0, "node", 4, 41029, 12);
    case B_LEASE_RESP:
        return dist_epmd_lease_resp_build(buf, cap, 0, 1, 2);
    case B_RENEW_RESP:
        return dist_epmd_renew_resp_build(buf, cap, 0, 2);
    case B_UNREG_RESP:
        return dist_epmd_unreg_resp_build(buf, cap, 0);
    case B_ENTRY:
        return dist_epmd_entry_build(buf, cap, &entry);
    case B_FRAME:
        return dist_epmd_frame_header(buf, cap, DIST_EPMD_LIST_RESP, 100);
    }
    return 0;
}

Test(epmd_codec, builders_report_enobufs_and_stay_within_cap)
{
    for (int which = 0; which < B_COUNT; which++) {
        uint8_t full[256];
        int n = run_builder(which, full, sizeof full);
        cr_assert_gt(n, 0, "builder %d gave %d (%s)", which, n, dist_err_name(n));
        for (size_t cap = 0; cap < (size_t)n; cap++) {
            uint8_t buf[256 + GUARD];
            memset(buf, SENTINEL, sizeof buf);
            int rc = run_builder(which, buf, cap);
            cr_assert_eq(rc, DIST_ENOBUFS, "builder %d, cap %zu of %d: %d", which, cap, n, rc);
            for (size_t i = cap; i < cap + GUARD; i++)
                cr_assert_eq(buf[i], SENTINEL, "builder %d wrote past cap %zu", which, cap);
        }
        uint8_t buf[256 + GUARD];
        memset(buf, SENTINEL, sizeof buf);
        cr_assert_eq(run_builder(which, buf, (size_t)n), n, "builder %d at exact cap", which);
        cr_assert(memcmp(buf, full, (size_t)n) == 0, "builder %d output differs", which);
        for (size_t i = (size_t)n; i < (size_t)n + GUARD; i++)
            cr_assert_eq(buf[i], SENTINEL, "builder %d wrote past its length", which);
    }
}

/* ---- Round trips --------------------------------------------------------------------------- */

/* Check the Length header of a built request and parse its body. */
static void parse_built(const uint8_t *buf, int n, struct dist_epmd_req *req)
{
    cr_assert_gt(n, 2, "builder gave %d (%s)", n, dist_err_name(n));
    cr_assert_eq(dist_epmd_req_length(buf), n - 2);
    expect_req_ok(buf + 2, (size_t)n - 2, req);
}

static void expect_same_node(const struct dist_epmd_node *got, const struct dist_epmd_node *want)
{
    cr_assert_eq(got->port, want->port);
    cr_assert_eq(got->node_type, want->node_type);
    cr_assert_eq(got->protocol, want->protocol);
    cr_assert_eq(got->high_version, want->high_version);
    cr_assert_eq(got->low_version, want->low_version);
    expect_name(got->name, got->name_len, want->name, want->name_len);
    cr_assert_eq(got->extra_len, want->extra_len);
    if (want->extra_len > 0)
        cr_assert(memcmp(got->extra, want->extra, want->extra_len) == 0);
}

Test(epmd_codec, roundtrip_alive2)
{
    static const uint8_t extra[] = {0, 1, 2, 3, 255};
    char *long_name = repeat(EMOJI, 255);
    struct dist_epmd_node nodes[] = {
        {41029, 77, 0, 6, 5, "a", 1, NULL, 0},
        {1, 72, 0, 5, 5, "v5node", 6, extra, sizeof extra},
        {65535, 104, 9, 6, 6, long_name, 1020, extra, 1},
    };
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        uint8_t buf[1200];
        struct dist_epmd_req req;
        parse_built(buf, dist_epmd_alive2_req_build(buf, sizeof buf, &nodes[i]), &req);
        cr_assert_eq(req.tag, DIST_EPMD_ALIVE2_REQ);
        expect_same_node(&req.u.alive, &nodes[i]);
    }
    free(long_name);
}

Test(epmd_codec, roundtrip_name_requests)
{
    uint8_t buf[64];
    struct dist_epmd_req req;
    parse_built(buf,
                dist_epmd_port2_req_build(buf, sizeof buf,
                                          "n\xC3\xB6"
                                          "de",
                                          5),
                &req);
    cr_assert_eq(req.tag, DIST_EPMD_PORT_PLEASE2_REQ);
    expect_name(req.u.name.name, req.u.name.name_len,
                "n\xC3\xB6"
                "de",
                5);

    parse_built(buf, dist_epmd_stop_req_build(buf, sizeof buf, "node", 4), &req);
    cr_assert_eq(req.tag, DIST_EPMD_STOP_REQ);
    expect_name(req.u.name.name, req.u.name.name_len, "node", 4);
}

Test(epmd_codec, roundtrip_simple_requests)
{
    static const uint8_t tags[] = {DIST_EPMD_NAMES_REQ, DIST_EPMD_DUMP_REQ, DIST_EPMD_KILL_REQ,
                                   DIST_EPMD_LIST_REQ, DIST_EPMD_WATCH_REQ};
    for (size_t i = 0; i < sizeof tags; i++) {
        uint8_t buf[8];
        struct dist_epmd_req req;
        parse_built(buf, dist_epmd_simple_req_build(buf, sizeof buf, tags[i]), &req);
        cr_assert_eq(req.tag, tags[i]);
    }
}

Test(epmd_codec, roundtrip_lease)
{
    uint8_t meta[256], tok[64], buf[512];
    size_t mlen = 0;
    static const char *const kv[][2] = {{"proto", "tcp"}, {"tls", ""}, {"v\xC3\xA9rsion", "1.2"}};
    for (size_t i = 0; i < 3; i++) {
        int rc = dist_epmd_meta_put(meta + mlen, sizeof meta - mlen, kv[i][0], strlen(kv[i][0]),
                                    kv[i][1], strlen(kv[i][1]));
        cr_assert_gt(rc, 0);
        mlen += (size_t)rc;
    }
    for (size_t i = 0; i < sizeof tok; i++)
        tok[i] = (uint8_t)(i * 37);
    struct dist_epmd_lease lease = {
        .node = {4242, 72, 0, 6, 5, "svc", 3, NULL, 0},
        .lease_ms = 0xfedcba98,
        .token = tok,
        .token_len = sizeof tok,
        .meta = {meta, mlen, 3},
    };
    struct dist_epmd_req req;
    parse_built(buf, dist_epmd_lease_req_build(buf, sizeof buf, &lease), &req);
    cr_assert_eq(req.tag, DIST_EPMD_LEASE_REQ);
    expect_same_node(&req.u.lease.node, &lease.node);
    cr_assert_eq(req.u.lease.lease_ms, 0xfedcba98);
    cr_assert_eq(req.u.lease.token_len, sizeof tok);
    cr_assert(memcmp(req.u.lease.token, tok, sizeof tok) == 0);
    cr_assert_eq(req.u.lease.meta.meta_count, 3);
    cr_assert_eq(req.u.lease.meta.meta_len, mlen);
    cr_assert(memcmp(req.u.lease.meta.meta, meta, mlen) == 0);

    const uint8_t *cur = req.u.lease.meta.meta, *end = cur + req.u.lease.meta.meta_len;
    for (size_t i = 0; i < 3; i++) {
        struct dist_epmd_meta m;
        cr_assert_eq(dist_epmd_meta_next(&cur, end, &m), 0, "pair %zu", i);
        expect_name(m.key, m.key_len, kv[i][0], strlen(kv[i][0]));
        expect_name(m.value, m.value_len, kv[i][1], strlen(kv[i][1]));
    }
    cr_assert_eq(cur, end);
}

Test(epmd_codec, roundtrip_owner_requests)
{
    static const uint8_t tags[] = {DIST_EPMD_RENEW_REQ, DIST_EPMD_UNREG_REQ};
    static const uint8_t tok[] = {0x00, 0xff, 0x10};
    for (size_t i = 0; i < sizeof tags; i++) {
        uint8_t buf[64];
        struct dist_epmd_req req;
        parse_built(
            buf, dist_epmd_owner_req_build(buf, sizeof buf, tags[i], tok, sizeof tok, "worker", 6),
            &req);
        cr_assert_eq(req.tag, tags[i]);
        cr_assert_eq(req.u.owner.token_len, sizeof tok);
        cr_assert(memcmp(req.u.owner.token, tok, sizeof tok) == 0);
        expect_name(req.u.owner.name, req.u.owner.name_len, "worker", 6);
    }
}

static size_t put_meta(uint8_t *buf, size_t cap, const char *const (*kv)[2], size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = dist_epmd_meta_put(buf + len, cap - len, kv[i][0], strlen(kv[i][0]), kv[i][1],
                                    strlen(kv[i][1]));
        cr_assert_gt(rc, 0, "meta_put %zu gave %d", i, rc);
        len += (size_t)rc;
    }
    return len;
}

static void expect_same_entry(const struct dist_epmd_entry *got, const struct dist_epmd_entry *want)
{
    expect_same_node(&got->node, &want->node);
    cr_assert_eq(got->creation, want->creation);
    cr_assert_eq(got->flags, want->flags);
    cr_assert_eq(got->lease_ms, want->lease_ms);
    cr_assert_eq(got->meta.meta_count, want->meta.meta_count);
    cr_assert_eq(got->meta.meta_len, want->meta.meta_len);
    if (want->meta.meta_len > 0)
        cr_assert(memcmp(got->meta.meta, want->meta.meta, want->meta.meta_len) == 0);
}

Test(epmd_codec, roundtrip_entry_with_metadata)
{
    static const char *const kv[][2] = {{"role", "db"}, {"zone", "eu-1"}, {"empty", ""}};
    uint8_t meta[128], buf[256];
    size_t mlen = put_meta(meta, sizeof meta, kv, 3);
    struct dist_epmd_entry e = {
        .node = {41029, 77, 0, 6, 5, "db1", 3, (const uint8_t *)"\x01\x02", 2},
        .creation = 1795298745,
        .flags = DIST_EPMD_ENTRY_LEASED,
        .lease_ms = 15000,
        .meta = {meta, mlen, 3},
    };
    int n = dist_epmd_entry_build(buf, sizeof buf, &e);
    cr_assert_gt(n, 0);
    struct dist_epmd_entry got;
    cr_assert_eq(dist_epmd_entry_parse(buf, (size_t)n, &got), n);
    expect_same_entry(&got, &e);
    cr_assert_eq((const void *)got.node.name, (const void *)(buf + 19));

    const uint8_t *cur = got.meta.meta, *end = got.meta.meta + got.meta.meta_len;
    for (size_t i = 0; i < 3; i++) {
        struct dist_epmd_meta m;
        cr_assert_eq(dist_epmd_meta_next(&cur, end, &m), 0, "pair %zu", i);
        expect_name(m.key, m.key_len, kv[i][0], strlen(kv[i][0]));
        expect_name(m.value, m.value_len, kv[i][1], strlen(kv[i][1]));
    }
    cr_assert_eq(cur, end);
}

Test(epmd_codec, entry_parse_consumes_one_entry)
{
    uint8_t buf[256];
    struct dist_epmd_entry a = {.node = {1, 77, 0, 6, 5, "first", 5, NULL, 0}, .creation = 4};
    struct dist_epmd_entry b = {
        .node = {2, 72, 0, 6, 6, "second", 6, NULL, 0},
        .creation = 5,
        .flags = DIST_EPMD_ENTRY_LEASED,
        .lease_ms = 1,
    };
    int na = dist_epmd_entry_build(buf, sizeof buf, &a);
    cr_assert_gt(na, 0);
    int nb = dist_epmd_entry_build(buf + na, sizeof buf - (size_t)na, &b);
    cr_assert_gt(nb, 0);

    struct dist_epmd_entry got;
    cr_assert_eq(dist_epmd_entry_parse(buf, (size_t)(na + nb), &got), na);
    expect_same_entry(&got, &a);
    cr_assert_eq(dist_epmd_entry_parse(buf + na, (size_t)nb, &got), nb);
    expect_same_entry(&got, &b);
}

Test(epmd_codec, entry_parse_rejects_truncation_untouched)
{
    static const char *const kv[][2] = {{"k", "v"}};
    uint8_t meta[16], buf[128];
    size_t mlen = put_meta(meta, sizeof meta, kv, 1);
    struct dist_epmd_entry e = {
        .node = {7, 77, 0, 6, 5, "node", 4, (const uint8_t *)"x", 1},
        .creation = 4,
        .meta = {meta, mlen, 1},
    };
    int n = dist_epmd_entry_build(buf, sizeof buf, &e);
    cr_assert_gt(n, 0);
    for (size_t len = 0; len < (size_t)n; len++) {
        struct dist_epmd_entry got, ref;
        memset(&got, SENTINEL, sizeof got);
        memset(&ref, SENTINEL, sizeof ref);
        uint8_t *copy = dup_exact(buf, len);
        int rc = dist_epmd_entry_parse(copy, len, &got);
        free(copy);
        cr_assert(rc == DIST_EAGAIN_MORE || rc == DIST_EMALFORMED, "len %zu gave %d", len, rc);
        cr_assert(memcmp(&got, &ref, sizeof got) == 0, "len %zu wrote to its output", len);
    }
}

Test(epmd_codec, roundtrip_list_response)
{
    uint8_t body[256], frame[300];
    struct dist_epmd_entry e[2] = {
        {.node = {10, 77, 0, 6, 5, "a", 1, NULL, 0}, .creation = 100},
        {.node = {11, 77, 0, 6, 5, "b", 1, NULL, 0},
         .creation = 200,
         .lease_ms = 9,
         .flags = DIST_EPMD_ENTRY_LEASED},
    };
    struct wr w = {body, 0, sizeof body};
    w_u32(&w, 2);
    for (size_t i = 0; i < 2; i++) {
        int n = dist_epmd_entry_build(body + w.n, sizeof body - w.n, &e[i]);
        cr_assert_gt(n, 0);
        w.n += (size_t)n;
    }
    int h = dist_epmd_frame_header(frame, sizeof frame, DIST_EPMD_LIST_RESP, w.n);
    cr_assert_eq(h, 5);
    cr_assert_eq(frame[4], DIST_EPMD_LIST_RESP);
    memcpy(frame + h, body, w.n);
    size_t total = (size_t)h + w.n;

    uint8_t tag;
    const uint8_t *b;
    size_t blen;
    cr_assert_eq(dist_epmd_frame_parse(frame, total, 4096, &tag, &b, &blen), (int)total);
    cr_assert_eq(tag, DIST_EPMD_LIST_RESP);
    cr_assert_eq(blen, w.n);
    cr_assert_eq(b, frame + 5);
    cr_assert_eq(get_u32(b), 2);
    size_t off = 4;
    for (size_t i = 0; i < 2; i++) {
        struct dist_epmd_entry got;
        int n = dist_epmd_entry_parse(b + off, blen - off, &got);
        cr_assert_gt(n, 0, "entry %zu gave %d", i, n);
        expect_same_entry(&got, &e[i]);
        off += (size_t)n;
    }
    cr_assert_eq(off, blen);
}

Test(epmd_codec, roundtrip_event)
{
    uint8_t frame[128];
    struct dist_epmd_entry e = {.node = {12, 77, 0, 6, 5, "gone", 4, NULL, 0}, .creation = 6};
    int n = dist_epmd_entry_build(frame + 6, sizeof frame - 6, &e);
    cr_assert_gt(n, 0);
    frame[5] = DIST_EPMD_EXPIRED;
    cr_assert_eq(dist_epmd_frame_header(frame, sizeof frame, DIST_EPMD_EVENT, (size_t)n + 1), 5);

    uint8_t tag;
    const uint8_t *b;
    size_t blen;
    int total = 5 + 1 + n;
    cr_assert_eq(dist_epmd_frame_parse(frame, (size_t)total, 4096, &tag, &b, &blen), total);
    cr_assert_eq(tag, DIST_EPMD_EVENT);
    cr_assert_eq(blen, (size_t)n + 1);
    cr_assert_eq(b[0], DIST_EPMD_EXPIRED);
    struct dist_epmd_entry got;
    cr_assert_eq(dist_epmd_entry_parse(b + 1, blen - 1, &got), n);
    expect_same_entry(&got, &e);
}

/* ---- Metadata iteration -------------------------------------------------------------------- */

Test(epmd_codec, meta_next_walks_pairs_and_stops_at_end)
{
    static const char *const kv[][2] = {{"a", "1"}, {"bb", ""}, {"ccc", "333"}};
    uint8_t meta[64];
    size_t mlen = put_meta(meta, sizeof meta, kv, 3);
    const uint8_t *cur = meta, *end = meta + mlen;
    for (size_t i = 0; i < 3; i++) {
        struct dist_epmd_meta m;
        const uint8_t *before = cur;
        cr_assert_eq(dist_epmd_meta_next(&cur, end, &m), 0);
        cr_assert_gt(cur, before, "the cursor must advance");
        cr_assert_eq((const void *)m.key, (const void *)(before + 1), "views into the buffer");
        expect_name(m.key, m.key_len, kv[i][0], strlen(kv[i][0]));
        expect_name(m.value, m.value_len, kv[i][1], strlen(kv[i][1]));
    }
    cr_assert_eq(cur, end);

    struct dist_epmd_meta m, ref;
    memset(&m, SENTINEL, sizeof m);
    memset(&ref, SENTINEL, sizeof ref);
    cr_assert_eq(dist_epmd_meta_next(&cur, end, &m), DIST_EMALFORMED);
    cr_assert_eq(cur, end, "a failed step must not move the cursor");
    cr_assert(memcmp(&m, &ref, sizeof m) == 0);
    const uint8_t *past = end + 1;
    cr_assert_eq(dist_epmd_meta_next(&past, end, &m), DIST_EMALFORMED);
}

Test(epmd_codec, meta_next_rejects_a_pair_past_the_end)
{
    /* ValueLen 5 with four value bytes: every prefix, the whole array included, is short. */
    static const uint8_t meta[] = {0x03, 'k', 'e', 'y', 0x00, 0x05, 'v', 'a', 'l', 'u'};
    for (size_t len = 1; len <= sizeof meta; len++) {
        uint8_t *copy = dup_exact(meta, len);
        const uint8_t *cur = copy;
        struct dist_epmd_meta m, ref;
        memset(&m, SENTINEL, sizeof m);
        memset(&ref, SENTINEL, sizeof ref);
        cr_assert_eq(dist_epmd_meta_next(&cur, copy + len, &m), DIST_EMALFORMED, "len %zu", len);
        cr_assert_eq(cur, copy, "len %zu moved the cursor", len);
        cr_assert(memcmp(&m, &ref, sizeof m) == 0);
        free(copy);
    }
}

/* ---- Reply parsers ------------------------------------------------------------------------- */

static void expect_alive2_resp_prefixes_need_more(const uint8_t *full, size_t n)
{
    for (size_t len = 0; len < n; len++) {
        uint8_t result = SENTINEL;
        uint32_t creation = 0xa5a5a5a5;
        uint8_t *copy = dup_exact(full, len);
        int rc = dist_epmd_alive2_resp_parse(copy, len, &result, &creation);
        free(copy);
        cr_assert_eq(rc, DIST_EAGAIN_MORE, "prefix of %zu bytes gave %d", len, rc);
        cr_assert_eq(result, SENTINEL, "prefix of %zu bytes wrote result", len);
        cr_assert_eq(creation, 0xa5a5a5a5, "prefix of %zu bytes wrote creation", len);
    }
}

Test(epmd_codec, alive2_resp_parse_x_form)
{
    static const uint8_t full[] = {0x76, 0x00, 0x6b, 0x02, 0x15, 0xb9, 0xee};
    uint8_t result = 0xff;
    uint32_t creation = 0;
    cr_assert_eq(dist_epmd_alive2_resp_parse(full, 6, &result, &creation), 6);
    cr_assert_eq(result, 0);
    cr_assert_eq(creation, 1795298745);
    /* Bytes after the reply are not consumed. */
    cr_assert_eq(dist_epmd_alive2_resp_parse(full, 7, &result, &creation), 6);
    expect_alive2_resp_prefixes_need_more(full, 6);

    static const uint8_t dup[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
    cr_assert_eq(dist_epmd_alive2_resp_parse(dup, 6, &result, &creation), 6);
    cr_assert_eq(result, 1);
    cr_assert_eq(creation, 99);
}

Test(epmd_codec, alive2_resp_parse_y_form)
{
    static const uint8_t full[] = {0x79, 0x00, 0x00, 0x03};
    uint8_t result = 0xff;
    uint32_t creation = 0;
    cr_assert_eq(dist_epmd_alive2_resp_parse(full, 4, &result, &creation), 4);
    cr_assert_eq(result, 0);
    cr_assert_eq(creation, 3);
    expect_alive2_resp_prefixes_need_more(full, 4);

    static const uint8_t dup[] = {0x79, 0x01, 0x00, 0x63};
    cr_assert_eq(dist_epmd_alive2_resp_parse(dup, 4, &result, &creation), 4);
    cr_assert_eq(result, 1);
    cr_assert_eq(creation, 99);
}

Test(epmd_codec, alive2_resp_parse_rejects_other_tags)
{
    static const uint8_t bad[][6] = {
        {0x77, 0x00, 0x00, 0x00, 0x00, 0x01},
        {0x00, 0x00, 0x00, 0x00, 0x00, 0x01},
        {'Y', 0x00, 0x00, 0x01, 0x00, 0x00},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t result = SENTINEL;
        uint32_t creation = 0xa5a5a5a5;
        cr_assert_eq(dist_epmd_alive2_resp_parse(bad[i], 6, &result, &creation), DIST_EMALFORMED);
        cr_assert_eq(result, SENTINEL);
        cr_assert_eq(creation, 0xa5a5a5a5);
    }
}

static void expect_port2_resp_prefixes_need_more(const uint8_t *full, size_t n)
{
    for (size_t len = 0; len < n; len++) {
        int found = 42;
        struct dist_epmd_node node, ref;
        memset(&node, SENTINEL, sizeof node);
        memset(&ref, SENTINEL, sizeof ref);
        uint8_t *copy = dup_exact(full, len);
        int rc = dist_epmd_port2_resp_parse(copy, len, &found, &node);
        free(copy);
        cr_assert_eq(rc, DIST_EAGAIN_MORE, "prefix of %zu bytes gave %d", len, rc);
        cr_assert_eq(found, 42, "prefix of %zu bytes wrote found", len);
        cr_assert(memcmp(&node, &ref, sizeof node) == 0, "prefix of %zu wrote node", len);
    }
}

Test(epmd_codec, port2_resp_parse_found)
{
    static const uint8_t full[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    int found = 0;
    struct dist_epmd_node node;
    cr_assert_eq(dist_epmd_port2_resp_parse(full, sizeof full, &found, &node), 15);
    cr_assert_eq(found, 1);
    expect_same_node(&node, &real_node);
    cr_assert_eq((const void *)node.name, (const void *)(full + 12));
    expect_port2_resp_prefixes_need_more(full, sizeof full);
}

Test(epmd_codec, port2_resp_parse_not_found)
{
    static const uint8_t full[] = {0x77, 0x01};
    int found = 42;
    struct dist_epmd_node node;
    cr_assert_eq(dist_epmd_port2_resp_parse(full, sizeof full, &found, &node), 2);
    cr_assert_eq(found, 0);
    expect_port2_resp_prefixes_need_more(full, sizeof full);
}

Test(epmd_codec, port2_resp_parse_roundtrip_with_extra)
{
    static const uint8_t extra[] = {9, 8, 7, 6};
    struct dist_epmd_node want = {8080,
                                  104,
                                  0,
                                  6,
                                  6,
                                  "n\xC3\xB6"
                                  "de",
                                  5,
                                  extra,
                                  4};
    uint8_t buf[64];
    int n = dist_epmd_port2_resp_build(buf, sizeof buf, &want);
    cr_assert_gt(n, 0);
    int found = 0;
    struct dist_epmd_node node;
    cr_assert_eq(dist_epmd_port2_resp_parse(buf, (size_t)n, &found, &node), n);
    cr_assert_eq(found, 1);
    expect_same_node(&node, &want);
    expect_port2_resp_prefixes_need_more(buf, (size_t)n);
}

Test(epmd_codec, port2_resp_parse_rejects_other_tags)
{
    static const uint8_t bad[] = {0x79, 0x00, 0x00, 0x03};
    int found = 42;
    struct dist_epmd_node node, ref;
    memset(&node, SENTINEL, sizeof node);
    memset(&ref, SENTINEL, sizeof ref);
    cr_assert_eq(dist_epmd_port2_resp_parse(bad, sizeof bad, &found, &node), DIST_EMALFORMED);
    cr_assert_eq(found, 42);
    cr_assert(memcmp(&node, &ref, sizeof node) == 0);
}

Test(epmd_codec, frame_parse_needs_more_on_every_prefix)
{
    uint8_t frame[64];
    int n = dist_epmd_lease_resp_build(frame, sizeof frame, DIST_EPMD_TAKEN, 77, 30000);
    cr_assert_eq(n, 14);
    for (size_t len = 0; len < (size_t)n; len++) {
        uint8_t tag = SENTINEL;
        const uint8_t *body = (const uint8_t *)&tag;
        size_t blen = 12345;
        uint8_t *copy = dup_exact(frame, len);
        int rc = dist_epmd_frame_parse(copy, len, 4096, &tag, &body, &blen);
        free(copy);
        cr_assert_eq(rc, DIST_EAGAIN_MORE, "prefix of %zu bytes gave %d", len, rc);
        cr_assert_eq(tag, SENTINEL);
        cr_assert_eq(body, (const uint8_t *)&tag);
        cr_assert_eq(blen, 12345);
    }
    uint8_t tag;
    const uint8_t *body;
    size_t blen;
    frame[n] = 0xee;
    cr_assert_eq(dist_epmd_frame_parse(frame, (size_t)n + 1, 4096, &tag, &body, &blen), n,
                 "a following byte is not consumed");
    cr_assert_eq(tag, DIST_EPMD_LEASE_RESP);
    cr_assert_eq(body, frame + 5);
    cr_assert_eq(blen, 9);
}

Test(epmd_codec, frame_parse_rejects_frames_over_max_len)
{
    uint8_t frame[600];
    cr_assert_eq(dist_epmd_frame_header(frame, sizeof frame, DIST_EPMD_LIST_RESP, 500), 5);
    memset(frame + 5, 0, 500);
    uint8_t tag = SENTINEL;
    const uint8_t *body = NULL;
    size_t blen = 12345;
    cr_assert_eq(dist_epmd_frame_parse(frame, 505, 100, &tag, &body, &blen), DIST_ELENGTH);
    cr_assert_eq(tag, SENTINEL);
    cr_assert_null(body);
    cr_assert_eq(blen, 12345);
    cr_assert_eq(dist_epmd_frame_parse(frame, 505, 4096, &tag, &body, &blen), 505);
    cr_assert_eq(blen, 500);
}

Test(epmd_codec, result_parse_extension_replies)
{
    uint8_t frame[32], tag;
    const uint8_t *body;
    size_t blen;
    uint8_t result;
    uint32_t creation, lease_ms;

    int n = dist_epmd_lease_resp_build(frame, sizeof frame, DIST_EPMD_OK, 0x01020304, 30000);
    cr_assert_eq(dist_epmd_frame_parse(frame, (size_t)n, 64, &tag, &body, &blen), n);
    cr_assert_eq(dist_epmd_result_parse(body, blen, tag, &result, &creation, &lease_ms), 9);
    cr_assert_eq(result, DIST_EPMD_OK);
    cr_assert_eq(creation, 0x01020304);
    cr_assert_eq(lease_ms, 30000);

    n = dist_epmd_renew_resp_build(frame, sizeof frame, DIST_EPMD_DENIED, 1234567);
    cr_assert_eq(dist_epmd_frame_parse(frame, (size_t)n, 64, &tag, &body, &blen), n);
    lease_ms = 0;
    cr_assert_eq(dist_epmd_result_parse(body, blen, tag, &result, NULL, &lease_ms), 5);
    cr_assert_eq(result, DIST_EPMD_DENIED);
    cr_assert_eq(lease_ms, 1234567);

    n = dist_epmd_unreg_resp_build(frame, sizeof frame, DIST_EPMD_NOTFOUND);
    cr_assert_eq(dist_epmd_frame_parse(frame, (size_t)n, 64, &tag, &body, &blen), n);
    cr_assert_eq(dist_epmd_result_parse(body, blen, tag, &result, NULL, NULL), 1);
    cr_assert_eq(result, DIST_EPMD_NOTFOUND);
}
