/*
 * test_pid.c: PIDs (libdist/src/pid.c): the total order, equality, hashing, Erlang's
 * <N.ID.SERIAL> text form and its parser, and the PIDs an actor system hands out.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "actor.h"
#include "dist.h"

static int sign(int v)
{
    return (v > 0) - (v < 0);
}

static struct dist_pid pid_of(uint32_t node, uint64_t id, uint32_t creation)
{
    return (struct dist_pid){.id = id, .node = node, .creation = creation};
}

/* Values at the edges, where a subtraction-based compare or a truncation would go wrong. */
static const struct dist_pid samples[] = {
    {.id = 1, .node = 0, .creation = 1},
    {.id = 2, .node = 0, .creation = 1},
    {.id = UINT32_MAX, .node = 0, .creation = 1},
    {.id = (uint64_t)UINT32_MAX + 1, .node = 0, .creation = 1},
    {.id = UINT64_MAX, .node = 0, .creation = 1},
    {.id = 1, .node = 0, .creation = 2},
    {.id = 1, .node = 0, .creation = UINT32_MAX},
    {.id = 1, .node = 1, .creation = 0},
    {.id = 0, .node = 1, .creation = 1},
    {.id = 1, .node = 2, .creation = 1},
    {.id = UINT64_MAX, .node = UINT32_MAX, .creation = UINT32_MAX},
    {.id = 0x8000000000000000ull, .node = 0x80000000u, .creation = 0x80000000u},
    {.id = 5, .node = 0x80000000u, .creation = 1},
};

#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

Test(pid, cmp_is_a_total_order)
{
    for (size_t i = 0; i < N_SAMPLES; i++) {
        cr_assert_eq(dist_pid_cmp(samples[i], samples[i]), 0, "sample %zu vs itself", i);
        for (size_t j = 0; j < N_SAMPLES; j++) {
            int ij = sign(dist_pid_cmp(samples[i], samples[j]));
            int ji = sign(dist_pid_cmp(samples[j], samples[i]));

            cr_assert_eq(ij, -ji, "cmp(%zu,%zu) and cmp(%zu,%zu) disagree", i, j, j, i);
            cr_assert_eq(ij == 0, i == j, "distinct samples %zu and %zu compare equal", i, j);
            for (size_t k = 0; k < N_SAMPLES; k++) {
                int jk = sign(dist_pid_cmp(samples[j], samples[k]));

                if (ij < 0 && jk < 0)
                    cr_assert_lt(dist_pid_cmp(samples[i], samples[k]), 0,
                                 "not transitive: %zu < %zu < %zu", i, j, k);
            }
        }
    }
}

Test(pid, cmp_orders_by_node_then_creation_then_id)
{
    /* The documented order: node first, then creation, then id. */
    cr_assert_lt(dist_pid_cmp(pid_of(0, UINT64_MAX, UINT32_MAX), pid_of(1, 0, 0)), 0);
    cr_assert_lt(dist_pid_cmp(pid_of(3, UINT64_MAX, 1), pid_of(3, 0, 2)), 0);
    cr_assert_lt(dist_pid_cmp(pid_of(3, 7, 2), pid_of(3, 8, 2)), 0);
    cr_assert_gt(dist_pid_cmp(pid_of(3, (uint64_t)1 << 32, 2), pid_of(3, UINT32_MAX, 2)), 0);
    cr_assert_gt(dist_pid_cmp(pid_of(UINT32_MAX, 1, 1), pid_of(0, 1, 1)), 0);
}

Test(pid, eq_compares_all_three_fields)
{
    struct dist_pid a = pid_of(4, 0x123456789ull, 9);

    cr_assert(dist_pid_eq(a, pid_of(4, 0x123456789ull, 9)));
    cr_assert_not(dist_pid_eq(a, pid_of(5, 0x123456789ull, 9)), "node ignored");
    cr_assert_not(dist_pid_eq(a, pid_of(4, 0x123456788ull, 9)), "id ignored");
    cr_assert_not(dist_pid_eq(a, pid_of(4, 0x023456789ull, 9)), "high bits of id ignored");
    cr_assert_not(dist_pid_eq(a, pid_of(4, 0x123456789ull, 10)), "creation ignored");
    for (size_t i = 0; i < N_SAMPLES; i++)
        for (size_t j = 0; j < N_SAMPLES; j++)
            cr_assert_eq(dist_pid_eq(samples[i], samples[j]) != 0,
                         dist_pid_cmp(samples[i], samples[j]) == 0, "eq and cmp disagree");
}

Test(pid, none_is_id_zero)
{
    cr_assert(dist_pid_is_none(DIST_PID_NONE));
    cr_assert(dist_pid_is_none(pid_of(3, 0, 7)));
    cr_assert_not(dist_pid_is_none(pid_of(0, 1, 0)));
    cr_assert_not(dist_pid_is_none(pid_of(0, (uint64_t)1 << 32, 1)));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

Test(pid, hash_differs_for_different_pids)
{
    enum { N = 3 * 20000 + 6 };
    static uint64_t h[N];
    size_t n = 0;

    for (uint64_t i = 1; i <= 20000; i++) {
        h[n++] = dist_pid_hash(pid_of(0, i, 1));                 /* consecutive ids */
        h[n++] = dist_pid_hash(pid_of((uint32_t)i, 1, 1));       /* nodes */
        h[n++] = dist_pid_hash(pid_of(0, i << 32, (uint32_t)i)); /* serials and creations */
    }
    /* Fields swapped between node and creation, and between id halves. */
    h[n++] = dist_pid_hash(pid_of(2, 1, 3));
    h[n++] = dist_pid_hash(pid_of(3, 1, 2));
    h[n++] = dist_pid_hash(pid_of(0, 5, 9));
    h[n++] = dist_pid_hash(pid_of(0, 9, 5));
    h[n++] = dist_pid_hash(pid_of(0, 5ull << 32, 1));
    h[n++] = dist_pid_hash(pid_of(5, 0, 1));
    cr_assert_eq(n, (size_t)N);
    qsort(h, n, sizeof(h[0]), cmp_u64);
    for (size_t i = 1; i < n; i++)
        cr_assert_neq(h[i], h[i - 1], "two different PIDs share the hash %llx",
                      (unsigned long long)h[i]);
}

Test(pid, hash_is_stable_and_mixes_every_field)
{
    struct dist_pid p = pid_of(7, 0x0123456789abcdefull, 42);
    uint64_t base = dist_pid_hash(p);
    int low_bits_seen = 0;

    cr_assert_eq(dist_pid_hash(p), base);
    cr_assert_eq(dist_pid_hash(pid_of(7, 0x0123456789abcdefull, 42)), base);
    /* Flipping any single input bit changes the hash, and moves its low bits too (buckets). */
    for (int b = 0; b < 64 + 32 + 32; b++) {
        struct dist_pid q = p;

        if (b < 64)
            q.id ^= (uint64_t)1 << b;
        else if (b < 96)
            q.node ^= 1u << (b - 64);
        else
            q.creation ^= 1u << (b - 96);
        cr_assert_neq(dist_pid_hash(q), base, "bit %d does not reach the hash", b);
        if ((dist_pid_hash(q) & 0xff) != (base & 0xff))
            low_bits_seen++;
    }
    cr_assert_gt(low_bits_seen, 100, "only %d of 128 bit flips change the low byte", low_bits_seen);
}

Test(pid, format_like_erlang)
{
    char buf[DIST_PID_STRLEN];

    cr_assert_eq(dist_pid_format(buf, sizeof(buf), pid_of(0, 5, 1)), 7);
    cr_assert_str_eq(buf, "<0.5.0>");
    cr_assert_eq(dist_pid_format(buf, sizeof(buf), pid_of(3, (7ull << 32) | 42, 9)), 8);
    cr_assert_str_eq(buf, "<3.42.7>", "the high 32 bits are the serial; creation not shown");
    cr_assert_eq(dist_pid_format(buf, sizeof(buf), pid_of(UINT32_MAX, UINT64_MAX, 1)), 34);
    cr_assert_str_eq(buf, "<4294967295.4294967295.4294967295>");
    cr_assert_lt(strlen(buf), (size_t)DIST_PID_STRLEN);
}

Test(pid, format_reports_a_short_buffer)
{
    char buf[8];

    /* "<0.5.0>" needs 8 bytes with its NUL. */
    cr_assert_eq(dist_pid_format(buf, 8, pid_of(0, 5, 1)), 7);
    cr_assert_str_eq(buf, "<0.5.0>");
    cr_assert_eq(dist_pid_format(buf, 7, pid_of(0, 5, 1)), DIST_ENOBUFS);
    cr_assert_eq(dist_pid_format(buf, 1, pid_of(0, 5, 1)), DIST_ENOBUFS);
    cr_assert_eq(dist_pid_format(NULL, 0, pid_of(0, 5, 1)), DIST_ENOBUFS);
}

Test(pid, parse_round_trips_format)
{
    char buf[DIST_PID_STRLEN];

    for (size_t i = 0; i < N_SAMPLES; i++) {
        struct dist_pid out = DIST_PID_NONE;

        cr_assert_gt(dist_pid_format(buf, sizeof(buf), samples[i]), 0);
        cr_assert_eq(dist_pid_parse(buf, samples[i].creation, &out), 0, "parse %s", buf);
        cr_assert(dist_pid_eq(out, samples[i]), "%s did not round trip", buf);
    }
}

Test(pid, parse_reads_the_parts)
{
    struct dist_pid out = DIST_PID_NONE;

    cr_assert_eq(dist_pid_parse("<2.42.7>", 11, &out), 0);
    cr_assert_eq(out.node, 2u);
    cr_assert_eq(out.id, (7ull << 32) | 42);
    cr_assert_eq(out.creation, 11u);
    cr_assert_eq(dist_pid_parse("<0.0.0>", 1, &out), 0);
    cr_assert(dist_pid_is_none(out));
}

Test(pid, parse_rejects_junk_and_overflow)
{
    static const char *const bad[] = {
        "",
        "<",
        "<>",
        "<0.5>",
        "<0.5.0",
        "0.5.0>",
        "<0.5.0> ",
        " <0.5.0>",
        "<0.5.0>x",
        "<0..0>",
        "<.5.0>",
        "<0.5.>",
        "<a.5.0>",
        "<0.5.0.1>",
        "<-1.5.0>",
        "<+1.5.0>",
        "< 0.5.0>",
        "<0.5 .0>",
        "<0x1.5.0>",
        "<0,5,0>",
        "(0.5.0)",
        "<4294967296.0.0>",
        "<0.4294967296.0>",
        "<0.0.4294967296>",
        "<0.0.18446744073709551616>",
        "<0.99999999999999999999999.0>",
        "<0.5.0>\n",
    };
    const struct dist_pid sentinel = pid_of(0xdead, 0xbeef, 0xcafe);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct dist_pid out = sentinel;

        cr_assert_eq(dist_pid_parse(bad[i], 1, &out), DIST_EINVAL, "accepted \"%s\"", bad[i]);
        cr_assert(dist_pid_eq(out, sentinel), "\"%s\" touched the output", bad[i]);
    }
    {
        struct dist_pid out = sentinel;

        cr_assert_eq(dist_pid_parse(NULL, 1, &out), DIST_EINVAL);
        cr_assert(dist_pid_eq(out, sentinel));
    }
}

/* ---- PIDs handed out by an actor system ----------------------------------------------------- */

static struct actor_system *sys;

static void setup(void)
{
    struct actor_system_opts o = {.schedulers = 2, .creation = 7};

    cr_assert_eq(actor_system_new(&o, &sys), 0);
    cr_assert_eq(actor_system_start(sys), 0);
}

static void teardown(void)
{
    if (sys != NULL) {
        actor_system_shutdown(sys, 5.0);
        actor_system_free(sys);
        sys = NULL;
    }
}

static const struct actor_behaviour idle_behaviour = {.name = "idle"};

Test(pid, spawned_pids_are_local_unique_and_stamped, .init = setup, .fini = teardown, .timeout = 30)
{
    enum { N = 1000 };
    static struct dist_pid pids[N];
    char buf[DIST_PID_STRLEN];

    for (int i = 0; i < N; i++) {
        int rc = actor_spawn(sys, NULL, &idle_behaviour, NULL, NULL, &pids[i]);

        cr_assert_eq(rc, 0, "spawn %d: %s", i, actor_strerror(rc));
        cr_assert_not(dist_pid_is_none(pids[i]));
        cr_assert_eq(pids[i].node, 0u, "a local PID has node 0");
        cr_assert_eq(pids[i].creation, 7u, "the system's creation is stamped in its PIDs");
        cr_assert_gt(dist_pid_format(buf, sizeof(buf), pids[i]), 0);
        cr_assert_eq(strncmp(buf, "<0.", 3), 0, "%s", buf);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            cr_assert_not(dist_pid_eq(pids[i], pids[j]), "PID handed out twice");
}

Test(pid, creation_zero_means_one, .timeout = 30)
{
    struct actor_system *s = NULL;
    struct dist_pid pid = DIST_PID_NONE;

    cr_assert_eq(actor_system_new(NULL, &s), 0);
    cr_assert_eq(actor_system_start(s), 0);
    cr_assert_eq(actor_spawn(s, NULL, &idle_behaviour, NULL, NULL, &pid), 0);
    cr_assert_eq(pid.creation, 1u);
    cr_assert_eq(actor_system_shutdown(s, 5.0), 0);
    actor_system_free(s);
}
