/*
 * test_epmd_codec_common.c: black-box tests of what both protocols of the EPMD codec share:
 * the error codes and their names (dist_strerror(), dist_err_name()), the node-name check
 * (dist_epmd_name_check(): UTF-8, 255 characters), and the buffer contract every builder
 * keeps (DIST_ENOBUFS, never a byte past the capacity).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "epmd_codec_util.h"

#define GUARD 16

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
    static const int codes[] = {-30000, -30998, -30999, 12345, -99999};
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
