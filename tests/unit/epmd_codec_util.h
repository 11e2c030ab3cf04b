/*
 * epmd_codec_util.h: what the EPMD codec's test programs share: a cursor for writing wire
 * bytes by hand, exact-length copies (so a parser that reads past its input trips a
 * sanitizer), and the assertions on parsed requests, names and built bytes. Each program
 * includes it once.
 */
#ifndef TEST_EPMD_CODEC_UTIL_H
#define TEST_EPMD_CODEC_UTIL_H

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"

#define CODEC_FN static __attribute__((unused))

#define SENTINEL 0xA5

/* U+1F600, one character in four bytes. */
#define EMOJI "\xF0\x9F\x98\x80"

/* A cursor for writing raw wire bytes by hand, independently of the builders under test. */
struct wr {
    uint8_t *p;
    size_t n;
    size_t cap;
};

CODEC_FN void w_mem(struct wr *w, const void *src, size_t n)
{
    cr_assert_leq(w->n + n, w->cap, "test buffer too small");
    if (n > 0)
        memcpy(w->p + w->n, src, n);
    w->n += n;
}

CODEC_FN void w_u8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    w_mem(w, &b, 1);
}

CODEC_FN void w_u16(struct wr *w, unsigned v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    w_mem(w, b, 2);
}

CODEC_FN void w_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    w_mem(w, b, 4);
}

CODEC_FN void hex(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && off + 4 < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%02x ", p[i]);
}

/* Assert that a builder returned exactly the bytes in want. */
CODEC_FN void expect_bytes(int rc, const uint8_t *got, const void *want, size_t wn)
{
    char g[512], w[512];
    hex(w, sizeof w, want, wn);
    cr_assert_eq(rc, (int)wn, "builder returned %d (%s), want %zu bytes: %s", rc, dist_err_name(rc),
                 wn, w);
    hex(g, sizeof g, got, wn);
    cr_assert(memcmp(got, want, wn) == 0, "bytes differ\n got: %s\nwant: %s", g, w);
}

/* A heap copy of exactly n bytes, so that reading past n is an overread. */
CODEC_FN uint8_t *dup_exact(const void *src, size_t n)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    cr_assert_not_null(p);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

CODEC_FN int req_parse_exact(const void *body, size_t len, struct dist_epmd_req *req)
{
    uint8_t *copy = dup_exact(body, len);
    int rc = dist_epmd_req_parse(copy, len, req);
    free(copy);
    return rc;
}

/* Parse a request that must fail with want_a (or want_b, when the contract allows both). */
CODEC_FN void expect_req_fail2(const void *body, size_t len, int want_a, int want_b)
{
    struct dist_epmd_req req, ref;
    memset(&req, SENTINEL, sizeof req);
    memset(&ref, SENTINEL, sizeof ref);
    int rc = req_parse_exact(body, len, &req);
    cr_assert(rc == want_a || rc == want_b, "parse of %zu bytes gave %d (%s), want %s", len, rc,
              dist_err_name(rc), dist_err_name(want_a));
    cr_assert(memcmp(&req, &ref, sizeof req) == 0, "a failed parse wrote to its output");
}

CODEC_FN void expect_req_fail(const void *body, size_t len, int want)
{
    expect_req_fail2(body, len, want, want);
}

CODEC_FN void expect_req_ok(const void *body, size_t len, struct dist_epmd_req *req)
{
    int rc = dist_epmd_req_parse(body, len, req);
    cr_assert_eq(rc, 0, "parse of %zu bytes gave %d (%s), want 0", len, rc, dist_err_name(rc));
}

CODEC_FN void expect_name(const char *got, size_t got_len, const char *want, size_t want_len)
{
    cr_assert_eq(got_len, want_len, "name length %zu, want %zu", got_len, want_len);
    cr_assert(memcmp(got, want, want_len) == 0, "name differs");
}

CODEC_FN char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    cr_assert_not_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

/* Check the Length header of a built request and parse its body. */
CODEC_FN void parse_built(const uint8_t *buf, int n, struct dist_epmd_req *req)
{
    cr_assert_gt(n, 2, "builder gave %d (%s)", n, dist_err_name(n));
    cr_assert_eq(dist_epmd_req_length(buf), n - 2);
    expect_req_ok(buf + 2, (size_t)n - 2, req);
}

CODEC_FN void expect_same_node(const struct dist_epmd_node *got, const struct dist_epmd_node *want)
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

#endif /* TEST_EPMD_CODEC_UTIL_H */
