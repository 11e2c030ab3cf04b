/*
 * test_registry.c: the epmd registry: creation numbers, the remembered-name list,
 * duplicates, leases with an injected clock, and the events it reports.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "epmd.h"

#define SEED 1795298744u

struct events {
    int kinds[64];
    char names[64][32];
    int count;
};

static uint32_t fixed_seed(void *user_data)
{
    return *(uint32_t *)user_data;
}

static void record(int kind, const struct epmd_node *n, void *user_data)
{
    struct events *ev = user_data;

    if (ev->count < 64) {
        ev->kinds[ev->count] = kind;
        snprintf(ev->names[ev->count], sizeof(ev->names[0]), "%s", n->name);
        ev->count++;
    }
}

static uint32_t seed = SEED;
static struct events ev;
static struct epmd_registry *reg;

static void setup(void)
{
    seed = SEED;
    memset(&ev, 0, sizeof(ev));
    reg = epmd_registry_new(1000, fixed_seed, &seed);
    cr_assert_not_null(reg);
    epmd_registry_on_event(reg, record, &ev);
}

static void teardown(void)
{
    epmd_registry_free(reg);
}

static struct dist_epmd_node node_of(const char *name, uint16_t port, uint16_t high)
{
    struct dist_epmd_node n = {
        .port = port,
        .node_type = 77,
        .high_version = high,
        .low_version = 5,
        .name = name,
        .name_len = strlen(name),
    };
    return n;
}

static struct epmd_node *alive(const char *name, uint16_t high, int *result)
{
    struct dist_epmd_node n = node_of(name, 4000, high);
    static int owner;

    return epmd_registry_alive(reg, &n, &owner, 7, 0, result);
}

static struct dist_epmd_lease lease_of(const char *name, const char *token, uint32_t ms)
{
    struct dist_epmd_lease l = {
        .node = node_of(name, 5000, 6),
        .lease_ms = ms,
        .token = (const uint8_t *)token,
        .token_len = strlen(token),
    };
    return l;
}

TestSuite(registry, .init = setup, .fini = teardown);

Test(registry, new_name_gets_seed_plus_one_in_v6)
{
    int result;
    struct epmd_node *n = alive("a", 6, &result);

    cr_assert_not_null(n);
    cr_assert_eq(result, DIST_EPMD_OK);
    cr_assert_eq(n->creation, SEED + 1);
    cr_assert_eq(epmd_registry_count(reg), 1);
}

Test(registry, v5_creation_is_counter_mod_3_plus_1)
{
    int result;
    struct epmd_node *n = alive("a", 5, &result);

    cr_assert_not_null(n);
    cr_assert_eq(n->creation, (SEED + 1) % 3 + 1);
    cr_assert(n->creation >= 1 && n->creation <= 3);
}

Test(registry, creation_never_below_4_even_with_a_zero_clock)
{
    int result;
    struct epmd_node *n;

    seed = 0;
    n = alive("a", 6, &result);
    cr_assert_not_null(n);
    cr_assert_eq(n->creation, 4);
}

Test(registry, reregistering_a_remembered_name_adds_one)
{
    int result;
    struct epmd_node *n = alive("a", 6, &result);
    uint32_t first = n->creation;

    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    cr_assert_eq(epmd_registry_count(reg), 0);
    cr_assert_eq(epmd_registry_old_count(reg), 1);
    seed = SEED + 1000; /* a later clock must not matter: the counter carries on */
    n = alive("a", 6, &result);
    cr_assert_not_null(n);
    cr_assert_eq(n->creation, first + 1);
    cr_assert_eq(epmd_registry_old_count(reg), 0);
}

Test(registry, duplicate_name_is_taken)
{
    int result;

    cr_assert_not_null(alive("a", 6, &result));
    cr_assert_null(alive("a", 6, &result));
    cr_assert_eq(result, DIST_EPMD_TAKEN);
    cr_assert_eq(epmd_registry_count(reg), 1);
}

Test(registry, invalid_names_are_refused)
{
    char long_name[300];
    int result;

    memset(long_name, 'a', 256);
    long_name[256] = '\0';
    cr_assert_null(alive(long_name, 6, &result));
    cr_assert_eq(result, DIST_EPMD_INVALID);
    long_name[255] = '\0';
    cr_assert_not_null(alive(long_name, 6, &result));
    cr_assert_null(alive("\xc3\x28", 6, &result));
    cr_assert_eq(result, DIST_EPMD_INVALID);
    cr_assert_null(alive("", 6, &result));
}

Test(registry, active_list_is_newest_first)
{
    int result;
    struct epmd_node *n;

    alive("a", 6, &result);
    alive("b", 6, &result);
    alive("c", 6, &result);
    n = epmd_registry_active(reg);
    cr_assert_str_eq(n->name, "c");
    cr_assert_str_eq(n->next->name, "b");
    cr_assert_str_eq(n->next->next->name, "a");
    cr_assert_null(n->next->next->next);
}

Test(registry, find_sees_active_names_only)
{
    int result;
    struct epmd_node *n = alive("a", 6, &result);

    cr_assert_eq(epmd_registry_find(reg, "a", 1), n);
    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    cr_assert_null(epmd_registry_find(reg, "a", 1));
    cr_assert_not_null(epmd_registry_lookup(reg, "a", 1));
}

Test(registry, remembered_names_are_bounded_oldest_forgotten)
{
    struct epmd_registry *small = epmd_registry_new(5, fixed_seed, &seed);
    char name[8];
    int result;

    for (int i = 0; i < 8; i++) {
        struct dist_epmd_node n;
        snprintf(name, sizeof(name), "n%d", i);
        n = node_of(name, 4000, 6);
        epmd_registry_remove(small, epmd_registry_alive(small, &n, NULL, -1, 0, &result),
                             DIST_EPMD_UNREGISTERED);
    }
    cr_assert_eq(epmd_registry_old_count(small), 5);
    cr_assert_null(epmd_registry_lookup(small, "n0", 2));
    cr_assert_null(epmd_registry_lookup(small, "n2", 2));
    cr_assert_not_null(epmd_registry_lookup(small, "n3", 2));
    cr_assert_str_eq(epmd_registry_old(small)->name, "n7");
    epmd_registry_free(small);
}

Test(registry, many_names_survive_table_growth)
{
    char name[16];
    int result;

    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "node%d", i);
        cr_assert_not_null(alive(name, 6, &result), "registering %s", name);
    }
    cr_assert_eq(epmd_registry_count(reg), 10000);
    for (int i = 0; i < 10000; i += 997) {
        snprintf(name, sizeof(name), "node%d", i);
        cr_assert_not_null(epmd_registry_find(reg, name, strlen(name)), "finding %s", name);
    }
}

Test(registry, lease_registers_with_metadata)
{
    uint8_t meta[64];
    int len = dist_epmd_meta_put(meta, sizeof(meta), "proto", 5, "tls", 3);
    struct dist_epmd_lease l = lease_of("n", "owner-1", 0);
    struct dist_epmd_meta m;
    const uint8_t *cur;
    int result;
    struct epmd_node *n;

    l.meta.meta = meta;
    l.meta.meta_len = (size_t)len;
    l.meta.meta_count = 1;
    n = epmd_registry_lease(reg, &l, 60000, 1000, &result);
    cr_assert_not_null(n);
    cr_assert_eq(result, DIST_EPMD_OK);
    cr_assert_eq(n->lease_ms, 60000);
    cr_assert_eq(n->expires_ms, 61000);
    cr_assert(n->flags & EPMD_NODE_LEASED);
    cr_assert_eq(epmd_registry_leased_count(reg), 1);
    cur = n->meta.meta;
    cr_assert_eq(dist_epmd_meta_next(&cur, n->meta.meta + n->meta.meta_len, &m), 0);
    cr_assert_eq(m.key_len, 5);
    cr_assert_eq(memcmp(m.value, "tls", 3), 0);
}

Test(registry, lease_is_clamped)
{
    struct dist_epmd_lease l = lease_of("n", "t", 1);
    int result;

    cr_assert_eq(epmd_registry_lease(reg, &l, 60000, 0, &result)->lease_ms, EPMD_LEASE_MIN_MS);
    l = lease_of("m", "t", UINT32_MAX);
    cr_assert_eq(epmd_registry_lease(reg, &l, 60000, 0, &result)->lease_ms, EPMD_LEASE_MAX_MS);
}

Test(registry, other_owner_refused_while_lease_lives)
{
    struct dist_epmd_lease a = lease_of("n", "owner-a", 1000);
    struct dist_epmd_lease b = lease_of("n", "owner-b", 1000);
    int result;

    cr_assert_not_null(epmd_registry_lease(reg, &a, 60000, 0, &result));
    cr_assert_null(epmd_registry_lease(reg, &b, 60000, 999, &result));
    cr_assert_eq(result, DIST_EPMD_TAKEN);
    /* At its expiry time the lease no longer lives, swept or not. */
    cr_assert_not_null(epmd_registry_lease(reg, &b, 60000, 1000, &result));
    cr_assert_eq(ev.kinds[1], DIST_EPMD_EXPIRED);
    cr_assert_eq(ev.kinds[2], DIST_EPMD_REGISTERED);
}

Test(registry, same_owner_replaces_at_once_with_new_creation)
{
    struct dist_epmd_lease a = lease_of("n", "owner-a", 1000);
    int result;
    struct epmd_node *n = epmd_registry_lease(reg, &a, 60000, 0, &result);
    uint32_t first = n->creation;

    n = epmd_registry_lease(reg, &a, 60000, 10, &result);
    cr_assert_not_null(n);
    cr_assert_eq(result, DIST_EPMD_OK);
    cr_assert_eq(n->creation, first + 1);
    cr_assert_eq(epmd_registry_count(reg), 1);
}

Test(registry, erlang_and_leased_share_one_name_space)
{
    struct dist_epmd_lease l = lease_of("n", "t", 1000);
    int result;

    cr_assert_not_null(epmd_registry_lease(reg, &l, 60000, 0, &result));
    cr_assert_null(alive("n", 6, &result));
    cr_assert_eq(result, DIST_EPMD_TAKEN);
    cr_assert_not_null(alive("e", 6, &result));
    l = lease_of("e", "t", 1000);
    cr_assert_null(epmd_registry_lease(reg, &l, 60000, 0, &result));
    cr_assert_eq(result, DIST_EPMD_TAKEN);
}

Test(registry, renew_extends_only_for_the_owner)
{
    struct dist_epmd_lease l = lease_of("n", "tok", 1000);
    uint32_t ms = 0;
    int result;
    struct epmd_node *n = epmd_registry_lease(reg, &l, 60000, 0, &result);

    cr_assert_eq(epmd_registry_renew(reg, (const uint8_t *)"tok", 3, "n", 1, 900, &ms),
                 DIST_EPMD_OK);
    cr_assert_eq(ms, 1000);
    cr_assert_eq(n->expires_ms, 1900);
    cr_assert_eq(epmd_registry_renew(reg, (const uint8_t *)"bad", 3, "n", 1, 950, &ms),
                 DIST_EPMD_DENIED);
    cr_assert_eq(n->expires_ms, 1900);
    cr_assert_eq(epmd_registry_renew(reg, (const uint8_t *)"tok", 3, "x", 1, 950, &ms),
                 DIST_EPMD_NOTFOUND);
    cr_assert_eq(epmd_registry_sweep(reg, 1899), 0);
    cr_assert_eq(epmd_registry_sweep(reg, 1900), 1);
    cr_assert_eq(epmd_registry_renew(reg, (const uint8_t *)"tok", 3, "n", 1, 1901, &ms),
                 DIST_EPMD_NOTFOUND);
}

Test(registry, renew_of_an_erlang_registration_is_denied)
{
    uint32_t ms;
    int result;

    alive("e", 6, &result);
    cr_assert_eq(epmd_registry_renew(reg, (const uint8_t *)"t", 1, "e", 1, 0, &ms),
                 DIST_EPMD_DENIED);
    cr_assert_eq(epmd_registry_unlease(reg, (const uint8_t *)"t", 1, "e", 1, 0), DIST_EPMD_DENIED);
    cr_assert_not_null(epmd_registry_find(reg, "e", 1));
}

Test(registry, unlease_removes_and_reports)
{
    struct dist_epmd_lease l = lease_of("n", "tok", 1000);
    int result;

    epmd_registry_lease(reg, &l, 60000, 0, &result);
    cr_assert_eq(epmd_registry_unlease(reg, (const uint8_t *)"x", 1, "n", 1, 0), DIST_EPMD_DENIED);
    cr_assert_eq(epmd_registry_unlease(reg, (const uint8_t *)"tok", 3, "n", 1, 0), DIST_EPMD_OK);
    cr_assert_null(epmd_registry_find(reg, "n", 1));
    cr_assert_eq(epmd_registry_leased_count(reg), 0);
    cr_assert_eq(ev.count, 2);
    cr_assert_eq(ev.kinds[1], DIST_EPMD_UNREGISTERED);
}

Test(registry, sweep_expires_only_lapsed_leases)
{
    struct dist_epmd_lease a = lease_of("a", "t", 1000);
    struct dist_epmd_lease b = lease_of("b", "t", 5000);
    int result;

    epmd_registry_lease(reg, &a, 60000, 0, &result);
    epmd_registry_lease(reg, &b, 60000, 0, &result);
    alive("e", 6, &result);
    cr_assert_eq(epmd_registry_sweep(reg, 999), 0);
    cr_assert_eq(epmd_registry_sweep(reg, 1000), 1);
    cr_assert_null(epmd_registry_find(reg, "a", 1));
    cr_assert_not_null(epmd_registry_find(reg, "b", 1));
    cr_assert_eq(ev.kinds[3], DIST_EPMD_EXPIRED);
    cr_assert_str_eq(ev.names[3], "a");
    cr_assert_eq(epmd_registry_sweep(reg, 1000000), 1);
    cr_assert_not_null(epmd_registry_find(reg, "e", 1), "Erlang registrations never expire");
    cr_assert_eq(epmd_registry_leased_count(reg), 0);
}

Test(registry, events_report_register_and_unregister)
{
    int result;
    struct epmd_node *n = alive("a", 6, &result);

    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    cr_assert_eq(ev.count, 2, "removing a remembered name reports nothing");
    cr_assert_eq(ev.kinds[0], DIST_EPMD_REGISTERED);
    cr_assert_eq(ev.kinds[1], DIST_EPMD_UNREGISTERED);
    cr_assert_str_eq(ev.names[1], "a");
}
