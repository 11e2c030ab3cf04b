/*
 * test_handshake.c: the cookie handshake between two nodes, driven in memory: success both
 * ways, a wrong cookie, replayed, reflected and relayed Auths, tampered hellos, and the hello
 * checks. Messages travel as the structs the wire codec would carry; each message is copied
 * out of its sender before delivery, as decoding a frame would.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "dist.h"
#include "secure.h"

/* A message off the wire: its own copy of the bytes. */
struct wire_hello {
    struct dist__hs_hello h;
    char node[DIST__NODE_MAX + 2];
    uint8_t nonce[DIST__HS_NONCE_LEN + 1];
};

struct wire_auth {
    struct dist__hs_auth a;
    uint8_t mac[DIST__HS_MAC_LEN];
};

static struct dist__cookie cookie(const char *s)
{
    struct dist__cookie c = {.len = strlen(s)};
    memcpy(c.data, s, c.len);
    return c;
}

static void wire_hello(struct wire_hello *w, const struct dist__hs_hello *h)
{
    cr_assert_leq(h->node_len, DIST__NODE_MAX);
    cr_assert_eq(h->nonce_len, DIST__HS_NONCE_LEN);
    memcpy(w->node, h->node, h->node_len);
    memcpy(w->nonce, h->nonce, h->nonce_len);
    w->h = *h;
    w->h.node = w->node;
    w->h.nonce = w->nonce;
}

static void wire_auth(struct wire_auth *w, const struct dist__hs_auth *a)
{
    cr_assert_eq(a->mac_len, DIST__HS_MAC_LEN);
    memcpy(w->mac, a->mac, a->mac_len);
    w->a.mac = w->mac;
    w->a.mac_len = a->mac_len;
}

/* One side: its handshake and what it has sent. */
struct side {
    struct dist__hs hs;
    struct wire_hello hello;
    struct wire_auth auth;
};

static void side_start(struct side *s, const char *secret, const char *name, uint32_t creation,
                       int initiator)
{
    struct dist__cookie c = cookie(secret);
    struct dist__hs_hello h;

    cr_assert_eq(dist__hs_init(&s->hs, &c, name, creation, initiator), 0);
    cr_assert_eq(dist__hs_hello(&s->hs, &h), 0);
    wire_hello(&s->hello, &h);
}

/* Deliver @from's hello to @to with channel binding @b; @to's Auth is kept in @to->auth. */
static int give_hello(struct side *to, const struct wire_hello *from, const char *b)
{
    struct dist__hs_auth out;
    int rc = dist__hs_on_hello(&to->hs, &from->h, (const uint8_t *)b, b ? strlen(b) : 0, &out);

    if (rc == 0)
        wire_auth(&to->auth, &out);
    return rc;
}

/* A full exchange between @a and @b; the results of each side's Auth check. */
static void exchange(struct side *a, struct side *b, const char *bind_a, const char *bind_b,
                     int *rc_a, int *rc_b)
{
    cr_assert_eq(give_hello(b, &a->hello, bind_b), 0);
    cr_assert_eq(give_hello(a, &b->hello, bind_a), 0);
    *rc_b = dist__hs_on_auth(&b->hs, &a->auth.a);
    *rc_a = dist__hs_on_auth(&a->hs, &b->auth.a);
}

static void done2(struct side *a, struct side *b)
{
    dist__hs_done(&a->hs);
    dist__hs_done(&b->hs);
}

/*
 * A whole handshake between alpha@h (the initiator, cookie "secret") and beta@h, and how it
 * departs from a clean one.
 */
struct run {
    const char *b_cookie; /* NULL: "secret" */
    const char *a_name;   /* NULL: "alpha@h" */
    const char *b_name;   /* NULL: "beta@h" */
    int b_initiates;
    const char *bind_a;
    const char *bind_b;
    void (*tamper)(struct wire_hello *); /* applied to alpha's hello in flight */
};

static void run(const struct run *r, int *rc_a, int *rc_b)
{
    struct side a, b;

    side_start(&a, "secret", r->a_name ? r->a_name : "alpha@h", 1, 1);
    side_start(&b, r->b_cookie ? r->b_cookie : "secret", r->b_name ? r->b_name : "beta@h", 2,
               r->b_initiates);
    if (r->tamper != NULL)
        r->tamper(&a.hello);
    exchange(&a, &b, r->bind_a, r->bind_b, rc_a, rc_b);
    if (*rc_a != 0)
        cr_assert(strstr(dist__hs_reason(&a.hs), "wrong MAC") != NULL, "%s",
                  dist__hs_reason(&a.hs));
    done2(&a, &b);
}

static void expect_refused(const struct run *r)
{
    int rc_a, rc_b;

    run(r, &rc_a, &rc_b);
    cr_assert_eq(rc_a, DIST_EAUTH, "initiator accepted");
    cr_assert_eq(rc_b, DIST_EAUTH, "responder accepted");
}

/* ---- Success ------------------------------------------------------------------------------ */

Test(handshake, same_cookie_authenticates_both_sides)
{
    struct side a, b;
    size_t len;
    const char *peer;
    int rc_a, rc_b;

    side_start(&a, "secret", "alpha@host1", 7, 1);
    side_start(&b, "secret", "beta@host2", 9, 0);
    exchange(&a, &b, "binding-bytes", "binding-bytes", &rc_a, &rc_b);
    cr_assert_eq(rc_a, 0, "initiator: %s", dist__hs_reason(&a.hs));
    cr_assert_eq(rc_b, 0, "responder: %s", dist__hs_reason(&b.hs));

    peer = dist__hs_peer(&a.hs, &len);
    cr_assert_eq(len, strlen("beta@host2"));
    cr_assert_eq(memcmp(peer, "beta@host2", len), 0);
    cr_assert_eq(dist__hs_peer_creation(&a.hs), 9);
    peer = dist__hs_peer(&b.hs, &len);
    cr_assert_eq(len, strlen("alpha@host1"));
    cr_assert_eq(memcmp(peer, "alpha@host1", len), 0);
    cr_assert_eq(dist__hs_peer_creation(&b.hs), 7);
    cr_assert_str_eq(dist__hs_reason(&a.hs), "");
    /* The two directions never share a MAC. */
    cr_assert_neq(memcmp(a.auth.mac, b.auth.mac, DIST__HS_MAC_LEN), 0);
    done2(&a, &b);
}

Test(handshake, hello_order_does_not_matter_and_insecure_mode_has_no_binding)
{
    struct side a, b;
    int rc_a, rc_b;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    /* The initiator hears the responder first this time. */
    cr_assert_eq(give_hello(&a, &b.hello, NULL), 0);
    cr_assert_eq(give_hello(&b, &a.hello, NULL), 0);
    rc_a = dist__hs_on_auth(&a.hs, &b.auth.a);
    rc_b = dist__hs_on_auth(&b.hs, &a.auth.a);
    cr_assert_eq(rc_a, 0, "%s", dist__hs_reason(&a.hs));
    cr_assert_eq(rc_b, 0, "%s", dist__hs_reason(&b.hs));
    done2(&a, &b);
}

/* Both sides may even carry one name, as a node dialling itself would. */
Test(handshake, same_names_authenticate)
{
    int rc_a, rc_b;

    run(&(struct run){.a_name = "same@h", .b_name = "same@h", .bind_a = "b", .bind_b = "b"}, &rc_a,
        &rc_b);
    cr_assert_eq(rc_a, 0);
    cr_assert_eq(rc_b, 0);
}

Test(handshake, fresh_nonces_every_time)
{
    struct side a1, a2;

    side_start(&a1, "secret", "alpha@h", 1, 1);
    side_start(&a2, "secret", "alpha@h", 1, 1);
    cr_assert_neq(memcmp(a1.hello.nonce, a2.hello.nonce, DIST__HS_NONCE_LEN), 0);
    done2(&a1, &a2);
}

/* ---- Attacks ------------------------------------------------------------------------------ */

Test(handshake, wrong_cookie_fails_on_both_sides)
{
    expect_refused(&(struct run){.b_cookie = "Secret", .bind_a = "bind", .bind_b = "bind"});
}

Test(handshake, cookie_prefix_is_not_the_cookie)
{
    expect_refused(&(struct run){.b_cookie = "secre"});
}

/* Two TLS sessions spliced by a relay export different bindings: neither side accepts. */
Test(handshake, different_channel_bindings_fail)
{
    expect_refused(&(struct run){.bind_a = "session-1", .bind_b = "session-2"});
}

Test(handshake, binding_on_one_side_only_fails)
{
    expect_refused(&(struct run){.bind_a = "session-1"});
}

Test(handshake, two_initiators_fail)
{
    expect_refused(&(struct run){.b_initiates = 1});
}

static void bump_creation(struct wire_hello *h)
{
    h->h.creation++;
}

static void bump_version(struct wire_hello *h)
{
    h->h.version++;
}

static void set_flag(struct wire_hello *h)
{
    h->h.flags |= 1u;
}

/*
 * A relay that rewrites a field of a hello is caught by the MAC. A newer version than ours is
 * accepted in a hello (the exchange checks that), so only the MAC catches a rewritten one.
 */
Test(handshake, rewritten_hello_fails)
{
    expect_refused(&(struct run){.tamper = bump_creation});
    expect_refused(&(struct run){.tamper = bump_version});
    expect_refused(&(struct run){.tamper = set_flag});
}

/*
 * An eavesdropper records a whole handshake, then plays one side's recorded hello and Auth into
 * a new handshake of the other side. That side's fresh nonce makes the old Auth wrong, even
 * over the same channel binding, as if the attacker could repeat that too.
 */
static int replay_into(int victim_initiates)
{
    struct side a, b, victim;
    struct side *recorded = victim_initiates ? &b : &a;
    struct wire_hello old_hello;
    struct wire_auth old_auth;
    int rc_a, rc_b, rc;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    exchange(&a, &b, "bind", "bind", &rc_a, &rc_b);
    cr_assert(rc_a == 0 && rc_b == 0);
    wire_hello(&old_hello, &recorded->hello.h);
    wire_auth(&old_auth, &recorded->auth.a);

    side_start(&victim, "secret", victim_initiates ? "alpha@h" : "beta@h", 1, victim_initiates);
    cr_assert_eq(give_hello(&victim, &old_hello, "bind"), 0);
    rc = dist__hs_on_auth(&victim.hs, &old_auth.a);
    done2(&a, &b);
    dist__hs_done(&victim.hs);
    return rc;
}

Test(handshake, replayed_auth_fails_against_responder)
{
    cr_assert_eq(replay_into(0), DIST_EAUTH);
}

Test(handshake, replayed_auth_fails_against_initiator)
{
    cr_assert_eq(replay_into(1), DIST_EAUTH);
}

/*
 * Reflection: a man in the middle who knows no cookie sends a side's own Auth back to it. Both
 * sides carry one node name and creation here; the MAC still differs by direction, as the
 * sender's hello comes first and the label names the sender's role.
 */
Test(handshake, reflected_mac_fails)
{
    struct side a, b;

    side_start(&a, "secret", "same@h", 1, 1);
    side_start(&b, "secret", "same@h", 1, 0);
    cr_assert_eq(give_hello(&a, &b.hello, "bind"), 0);
    cr_assert_eq(give_hello(&b, &a.hello, "bind"), 0);
    cr_assert_eq(dist__hs_on_auth(&a.hs, &a.auth.a), DIST_EAUTH);
    cr_assert_eq(dist__hs_on_auth(&b.hs, &b.auth.a), DIST_EAUTH);
    done2(&a, &b);
}

Test(handshake, hello_sent_back_is_refused)
{
    struct side a;
    struct dist__hs_auth out;

    side_start(&a, "secret", "alpha@h", 1, 1);
    cr_assert_eq(dist__hs_on_hello(&a.hs, &a.hello.h, NULL, 0, &out), DIST_EHANDSHAKE);
    cr_assert(strstr(dist__hs_reason(&a.hs), "own nonce") != NULL, "%s", dist__hs_reason(&a.hs));
    dist__hs_done(&a.hs);
}

Test(handshake, mac_of_wrong_length_fails)
{
    struct side a, b;
    struct dist__hs_auth shortmac;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    cr_assert_eq(give_hello(&a, &b.hello, NULL), 0);
    cr_assert_eq(give_hello(&b, &a.hello, NULL), 0);
    /* The right bytes, one short: a prefix check would pass it. */
    shortmac = (struct dist__hs_auth){.mac = b.auth.mac, .mac_len = DIST__HS_MAC_LEN - 1};
    cr_assert_eq(dist__hs_on_auth(&a.hs, &shortmac), DIST_EAUTH);
    done2(&a, &b);
}

/* After a failure nothing more is accepted, not even the right MAC. */
Test(handshake, failure_is_final)
{
    struct side a, b;
    uint8_t bad[DIST__HS_MAC_LEN] = {0};
    struct dist__hs_auth wrong = {.mac = bad, .mac_len = sizeof(bad)};

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    cr_assert_eq(give_hello(&a, &b.hello, NULL), 0);
    cr_assert_eq(give_hello(&b, &a.hello, NULL), 0);
    cr_assert_eq(dist__hs_on_auth(&a.hs, &wrong), DIST_EAUTH);
    cr_assert_eq(dist__hs_on_auth(&a.hs, &b.auth.a), DIST_EHANDSHAKE);
    done2(&a, &b);
}

/* ---- Hello checks and order --------------------------------------------------------------- */

/* Deliver a modified copy of b's hello to a fresh a; the result of a's check. */
static int try_hello(void (*edit)(struct wire_hello *), char *reason, size_t cap)
{
    struct side a, b;
    struct wire_hello h;
    int rc;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    wire_hello(&h, &b.hello.h);
    edit(&h);
    rc = give_hello(&a, &h, NULL);
    snprintf(reason, cap, "%s", dist__hs_reason(&a.hs));
    if (rc != 0)
        cr_assert_eq(dist__hs_on_auth(&a.hs, &b.auth.a), DIST_EHANDSHAKE);
    done2(&a, &b);
    return rc;
}

static void edit_version0(struct wire_hello *h)
{
    h->h.version = 0;
}

static void edit_creation0(struct wire_hello *h)
{
    h->h.creation = 0;
}

static void edit_nonce_short(struct wire_hello *h)
{
    h->h.nonce_len = DIST__HS_NONCE_LEN - 1;
}

static void edit_nonce_long(struct wire_hello *h)
{
    h->h.nonce_len = DIST__HS_NONCE_LEN + 1;
}

static void edit_nonce_null(struct wire_hello *h)
{
    h->h.nonce = NULL;
    h->h.nonce_len = 0;
}

static void edit_name_no_at(struct wire_hello *h)
{
    memcpy(h->node, "betah", 5);
    h->h.node_len = 5;
}

static void edit_name_nul(struct wire_hello *h)
{
    h->node[2] = '\0';
}

static void edit_name_long(struct wire_hello *h)
{
    memset(h->node, 'n', DIST__NAME_MAX + 1);
    memcpy(h->node + DIST__NAME_MAX + 1, "@h", 2);
    h->h.node_len = DIST__NAME_MAX + 3;
}

Test(handshake, bad_hellos_are_refused)
{
    static const struct {
        void (*edit)(struct wire_hello *);
        const char *reason;
    } cases[] = {
        {edit_version0, "version"}, {edit_creation0, "creation"}, {edit_nonce_short, "nonce"},
        {edit_nonce_long, "nonce"}, {edit_nonce_null, "nonce"},   {edit_name_no_at, "name"},
        {edit_name_nul, "name"},    {edit_name_long, "name"},
    };
    char reason[DIST__REASON_MAX];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(try_hello(cases[i].edit, reason, sizeof(reason)), DIST_EHANDSHAKE,
                     "case %zu accepted", i);
        cr_assert(strstr(reason, cases[i].reason) != NULL, "case %zu: %s", i, reason);
    }
}

Test(handshake, unknown_flags_are_ignored)
{
    char reason[DIST__REASON_MAX];

    cr_assert_eq(try_hello(set_flag, reason, sizeof(reason)), 0);
}

Test(handshake, dialled_node_must_answer)
{
    struct side a, b;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    cr_assert_eq(dist__hs_expect(&a.hs, "gamma@h"), 0);
    cr_assert_eq(give_hello(&a, &b.hello, NULL), DIST_EHANDSHAKE);
    cr_assert(strstr(dist__hs_reason(&a.hs), "dialled") != NULL);
    done2(&a, &b);

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    cr_assert_eq(dist__hs_expect(&a.hs, "beta@h"), 0);
    cr_assert_eq(give_hello(&a, &b.hello, NULL), 0);
    cr_assert_eq(dist__hs_expect(&a.hs, "not a name"), DIST_EBADNAME);
    done2(&a, &b);
}

Test(handshake, calls_out_of_order_fail)
{
    struct dist__cookie c = cookie("secret");
    struct dist__hs a;
    struct side b;
    struct dist__hs_auth out;
    struct dist__hs_hello h;

    side_start(&b, "secret", "beta@h", 2, 0);
    /* A hello taken before our own was sent. */
    cr_assert_eq(dist__hs_init(&a, &c, "alpha@h", 1, 1), 0);
    cr_assert_eq(dist__hs_on_hello(&a, &b.hello.h, NULL, 0, &out), DIST_EHANDSHAKE);
    dist__hs_done(&a);
    /* An Auth before any hello. */
    cr_assert_eq(dist__hs_init(&a, &c, "alpha@h", 1, 1), 0);
    cr_assert_eq(dist__hs_hello(&a, &h), 0);
    cr_assert_eq(dist__hs_on_auth(&a, &b.auth.a), DIST_EHANDSHAKE);
    dist__hs_done(&a);
    /* Two hellos from us, and two from the peer. */
    cr_assert_eq(dist__hs_init(&a, &c, "alpha@h", 1, 1), 0);
    cr_assert_eq(dist__hs_hello(&a, &h), 0);
    cr_assert_eq(dist__hs_hello(&a, &h), DIST_EHANDSHAKE);
    dist__hs_done(&a);
    cr_assert_eq(dist__hs_init(&a, &c, "alpha@h", 1, 1), 0);
    cr_assert_eq(dist__hs_hello(&a, &h), 0);
    cr_assert_eq(dist__hs_on_hello(&a, &b.hello.h, NULL, 0, &out), 0);
    cr_assert_eq(dist__hs_on_hello(&a, &b.hello.h, NULL, 0, &out), DIST_EHANDSHAKE);
    dist__hs_done(&a);
    dist__hs_done(&b.hs);
}

Test(handshake, oversized_binding_is_refused)
{
    struct side a, b;
    uint8_t big[DIST__HS_BINDING_MAX + 1] = {0};
    struct dist__hs_auth out;

    side_start(&a, "secret", "alpha@h", 1, 1);
    side_start(&b, "secret", "beta@h", 2, 0);
    cr_assert_eq(dist__hs_on_hello(&a.hs, &b.hello.h, big, sizeof(big), &out), DIST_EHANDSHAKE);
    done2(&a, &b);
}

Test(handshake, init_checks_its_arguments)
{
    struct dist__cookie c = cookie("secret");
    struct dist__cookie empty = {.len = 0};
    struct dist__hs hs;

    cr_assert_eq(dist__hs_init(&hs, &c, "alpha@h", 0, 1), DIST_EINVAL);
    cr_assert_eq(dist__hs_init(&hs, &empty, "alpha@h", 1, 1), DIST_EINVAL);
    cr_assert_eq(dist__hs_init(&hs, &c, "alpha", 1, 1), DIST_EBADNAME);
    cr_assert_eq(dist__hs_init(&hs, &c, "al pha@h", 1, 1), DIST_EBADNAME);
}

/* ---- Node names --------------------------------------------------------------------------- */

static int check(const char *s)
{
    return dist__node_name_check(s, strlen(s));
}

Test(handshake, node_names)
{
    static const char *good[] = {
        "a@b",
        "node_1@host.example.com",
        "Node-X@127.0.0.1",
        "x@my-host_2",
    };
    static const char *bad[] = {
        "",      "@",     "a@",     "@b",   "ab",         "a@b@c",
        "a.b@h", "a b@h", "a@h st", "a@h/", "\xc3\xa9@h", "a@\xc3\xa9",
    };
    char buf[DIST__NODE_MAX + 2];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(check(good[i]), 0, "%s refused", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(check(bad[i]), DIST_EBADNAME, "%s accepted", bad[i]);

    /* 255 characters of name and 255 of host are the limits. */
    memset(buf, 'n', DIST__NAME_MAX);
    buf[DIST__NAME_MAX] = '@';
    memset(buf + DIST__NAME_MAX + 1, 'h', DIST__HOST_MAX);
    cr_assert_eq(dist__node_name_check(buf, DIST__NODE_MAX), 0);
    buf[DIST__NODE_MAX] = 'h';
    cr_assert_eq(dist__node_name_check(buf, DIST__NODE_MAX + 1), DIST_EBADNAME);
    cr_assert_eq(dist__node_name_check("a@b", 2), DIST_EBADNAME);
}
