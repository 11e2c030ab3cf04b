/*
 * test_epmd_codec_erlang.c: black-box tests of the EPMD codec on Erlang's own protocol: the
 * u16 Length framing, the requests (ALIVE2, PORT_PLEASE2, NAMES, DUMP, KILL, STOP) and the
 * replies (ALIVE2_X/ALIVE2_RESP, PORT2_RESP, the NAMES and DUMP lines), parsed and built.
 *
 * The expected bytes come from the header's contract and from the exchanges observed against
 * a real epmd (PROTOCOL-EPMD-ERLANG.md, section 7), never from the codec itself. Inputs the
 * parsers must reject are copied into buffers of exactly their length, so a parser that reads
 * past its input trips a sanitizer when one is enabled.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "epmd_codec_util.h"

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

/* ---- Round trips --------------------------------------------------------------------------- */

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
