/*
 * test_epmd_codec_ext.c: black-box tests of the EPMD codec on our extension (epmd/README.md):
 * LEASE, RENEW and UNREG requests with their tokens and metadata, the u32 Length | Tag frames
 * of the replies, LIST entries and watch events, parsed and built.
 *
 * The expected bytes come from the contract in dist.h and epmd/README.md, never from the codec
 * itself. Inputs the parsers must reject are copied into buffers of exactly their length, so a
 * parser that reads past its input trips a sanitizer when one is enabled.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "epmd_codec_util.h"

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
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

/* ---- Round trips --------------------------------------------------------------------------- */

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
