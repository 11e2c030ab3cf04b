/*
 * test_dist_pair.c: two libdist nodes in the test process, on one libev loop, with their own
 * epmd (daemon.h) on a free loopback port: simultaneous connects, messages carrying PIDs and
 * references, busy polling, host names, and epmd restarts under live connections. Every wait
 * runs the loop without blocking until a bound; .fini frees the nodes and stops epmd.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>

#include <criterion/criterion.h>

#include <ev.h>

/* daemon.h serves several test files; not every one of its helpers is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#include "dist.h"
#include "node.h"

#define COOKIE  "test-cookie"
#define WAIT_MS 10000 /* bound on any one wait */

static struct daemon d;
static struct ev_loop *loop;
static int simultaneous_logged, reregistered_logged;

static void local_log(int level, const char *msg, void *ud)
{
    simultaneous_logged += strstr(msg, "simultaneous connect") != NULL;
    reregistered_logged += strstr(msg, "registered with epmd again") != NULL;
    if (level <= DIST_EPMD_LOG_WARN)
        cr_log_info("local node: %s", msg);
}

struct pair_rec {
    int ready, ups, downs, msgs;
    struct dist_msg last;
    char last_from[64];
};

static struct pair_rec recs[2];
static struct dist_node *pair[2];
static int32_t pair_busy_poll_us; /* busy_poll_us of the next pair_start() */

static void pair_ready(struct dist_node *n, uint32_t creation, void *ud)
{
    ((struct pair_rec *)ud)->ready = 1;
}

static void pair_up(struct dist_node *n, const char *name, void *ud)
{
    ((struct pair_rec *)ud)->ups++;
}

static void pair_down(struct dist_node *n, const char *name, int reason, void *ud)
{
    ((struct pair_rec *)ud)->downs++;
}

static void pair_msg(struct dist_node *n, const struct dist_msg *m, const char *from, void *ud)
{
    struct pair_rec *r = ud;

    r->msgs++;
    r->last = *m;
    r->last.type = r->last.to_name = r->last.behaviour = NULL;
    r->last.payload = NULL;
    snprintf(r->last_from, sizeof(r->last_from), "%s", from);
}

static int both(const int *a, const int *b, unsigned ms)
{
    uint64_t deadline = mono_ms() + ms;

    while (!(*a && *b) && mono_ms() < deadline)
        ev_run(loop, EVRUN_NOWAIT);
    return *a && *b;
}

/* Start nodes @names on this process's loop, listening on 127.0.0.1; wait until registered. */
static void pair_start_as(const char *const names[2])
{
    static const struct dist_node_handlers h = {pair_ready, pair_msg, pair_up, pair_down};

    loop = ev_loop_new(EVFLAG_AUTO);
    for (int i = 0; i < 2; i++) {
        struct dist_node_opts o = {.name = names[i],
                                   .listen_host = "127.0.0.1",
                                   .epmd_port = d.port,
                                   .cookie = COOKIE,
                                   .busy_poll_us = pair_busy_poll_us,
                                   .log_cb = local_log};
        cr_assert_eq(dist_node_new(loop, &o, &pair[i]), 0);
        cr_assert_eq(dist_node_start(pair[i], &h, &recs[i]), 0);
    }
    cr_assert(both(&recs[0].ready, &recs[1].ready, WAIT_MS), "the nodes never registered");
}

/* Start "l1@127.0.0.1" and "l2@127.0.0.1". */
static void pair_start(void)
{
    static const char *const names[2] = {"l1@127.0.0.1", "l2@127.0.0.1"};

    pair_start_as(names);
}

static void pair_free(void)
{
    for (int i = 0; i < 2; i++) {
        dist_node_free(pair[i]);
        pair[i] = NULL;
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    daemon_start(&d, NULL);
}

static void teardown(void)
{
    pair_free();
    if (loop != NULL)
        ev_loop_destroy(loop);
    loop = NULL;
    memset(recs, 0, sizeof(recs));
    daemon_stop(&d);
}

TestSuite(dist_pair, .init = setup, .fini = teardown, .timeout = 60);

/* Live connections of @n in state UP, and how many of them @n dialled. */
static int up_conns(const struct dist_node *n, int *dialled)
{
    int count = 0;

    *dialled = 0;
    for (const struct dist_conn *c = n->conns; c != NULL; c = c->next) {
        if (c->state == DIST__CONN_UP) {
            count++;
            *dialled += (c->flags & DIST__CONN_OUTBOUND) != 0;
        }
    }
    return count;
}

Test(dist_pair, dialling_each_other_at_once_keeps_the_lower_names_connection)
{
    int dialled[2];

    pair_start();
    /* Both sends start a lookup and a dial before either side runs: a true simultaneous connect. */
    cr_assert_eq(dist_node_send(pair[0], NULL, "l2@127.0.0.1", NULL, "inbox", "t", "a", 1), 0);
    cr_assert_eq(dist_node_send(pair[1], NULL, "l1@127.0.0.1", NULL, "inbox", "t", "b", 1), 0);
    cr_assert(both(&recs[0].msgs, &recs[1].msgs, WAIT_MS), "the messages never crossed");
    cr_assert_eq(up_conns(pair[0], &dialled[0]), 1);
    cr_assert_eq(up_conns(pair[1], &dialled[1]), 1);
    cr_assert_eq(dialled[0], 1, "l1 sorts lower: its connection is the one kept");
    cr_assert_eq(dialled[1], 0);
    cr_assert_eq(recs[0].ups, 1);
    cr_assert_eq(recs[1].ups, 1);
    cr_assert_eq(recs[0].downs + recs[1].downs, 0);
    cr_assert_geq(simultaneous_logged, 1, "the two dials never met");
    pair_free();
}

Test(dist_pair, posted_messages_carry_pids_and_refs_across_nodes)
{
    struct dist_msg link = {.kind = DIST_MSG_LINK};
    struct dist_msg down = {.kind = DIST_MSG_DOWN, .reason = -42};
    uint32_t c1, c2;
    int l2_on_1, z_on_1, l1_on_2, z_on_2;

    pair_start();
    c1 = dist_node_creation(pair[0]);
    c2 = dist_node_creation(pair[1]);
    l2_on_1 = dist_node_intern(pair[0], "l2@127.0.0.1");
    z_on_1 = dist_node_intern(pair[0], "z@127.0.0.1");
    cr_assert(l2_on_1 > 0 && z_on_1 > 0);
    cr_assert_str_eq(dist_node_name_of(pair[0], (uint32_t)z_on_1), "z@127.0.0.1");

    link.from = (struct dist_pid){.id = 5, .node = 0, .creation = c1};
    link.to = (struct dist_pid){.id = 9, .node = (uint32_t)l2_on_1, .creation = c2};
    cr_assert_eq(dist_node_post(pair[0], "l2@127.0.0.1", &link), 0);
    cr_assert(both(&recs[1].msgs, &recs[1].ups, WAIT_MS));
    l1_on_2 = dist_node_intern(pair[1], "l1@127.0.0.1");
    cr_assert_eq(recs[1].last.kind, DIST_MSG_LINK);
    cr_assert_str_eq(recs[1].last_from, "l1@127.0.0.1");
    cr_assert(dist_pid_eq(recs[1].last.from, (struct dist_pid){5, (uint32_t)l1_on_2, c1}));
    cr_assert(dist_pid_eq(recs[1].last.to, (struct dist_pid){9, 0, c2}), "our own PID is node 0");

    /* A third node's PID and a reference travel by name too. */
    down.from = (struct dist_pid){.id = 77, .node = (uint32_t)z_on_1, .creation = 3};
    down.to = link.to;
    down.ref = (struct dist_ref){.node = 0, .creation = c1, .n = {1, 2, 3}};
    cr_assert_eq(dist_node_post(pair[0], "l2@127.0.0.1", &down), 0);
    recs[1].msgs = 0;
    cr_assert(both(&recs[1].msgs, &recs[1].ups, WAIT_MS));
    z_on_2 = dist_node_intern(pair[1], "z@127.0.0.1");
    cr_assert_eq(recs[1].last.kind, DIST_MSG_DOWN);
    cr_assert_eq(recs[1].last.reason, -42);
    cr_assert(dist_pid_eq(recs[1].last.from, (struct dist_pid){77, (uint32_t)z_on_2, 3}));
    cr_assert_eq(recs[1].last.ref.node, (uint32_t)l1_on_2);
    cr_assert_eq(recs[1].last.ref.n[2], 3);

    /* What the receiver would refuse is refused at the sender. */
    link.from = DIST_PID_NONE;
    cr_assert_eq(dist_node_post(pair[0], "l2@127.0.0.1", &link), DIST_EINVAL);
    cr_assert_eq(dist_node_send(pair[0], NULL, "l1@127.0.0.1", NULL, "inbox", "t", "x", 1),
                 DIST_EINVAL, "a send to the local node");
    cr_assert_eq(dist_node_send(pair[0], NULL, "bad name", NULL, "inbox", "t", "x", 1),
                 DIST_EBADNAME);
    pair_free();
}

static void timer_fired(struct ev_loop *l, ev_timer *w, int revents)
{
    *(int *)w->data = 1;
}

/*
 * How many blocking loop iterations pass before a @wait_s timer fires: a few when the loop
 * sleeps until its next event, very many when it polls.
 */
static unsigned iterations_until(double wait_s)
{
    ev_timer t;
    int fired = 0;
    unsigned n = 0;

    ev_timer_init(&t, timer_fired, wait_s, 0.);
    t.data = &fired;
    ev_timer_start(loop, &t);
    while (!fired && n < 10000000) {
        ev_run(loop, EVRUN_ONCE);
        n++;
    }
    ev_timer_stop(loop, &t);
    return n;
}

/* Exchange one message between the pair and wait for it; true if it arrived. */
static int exchange(void)
{
    recs[1].msgs = 0;
    if (dist_node_send(pair[0], NULL, "l2@127.0.0.1", NULL, "inbox", "t", "p", 1) != 0)
        return 0;
    return both(&recs[1].msgs, &recs[1].msgs, WAIT_MS);
}

Test(dist_pair, busy_poll_keeps_the_loop_awake_only_after_traffic)
{
    struct dist_node_opts o = {.name = "l3@127.0.0.1", .busy_poll_us = 1000001};
    struct dist_node *n = NULL;

    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_eq(dist_node_new(loop, &o, &n), DIST_EINVAL, "over a second of polling is refused");
    cr_assert_null(n);
    ev_loop_destroy(loop);
    loop = NULL;

    /* 300 ms of polling after traffic: the loop does not block meanwhile, then it does. */
    pair_busy_poll_us = 300000;
    pair_start();
    cr_assert(exchange(), "the message never arrived");
    cr_assert(ev_is_active(&pair[0]->spin) && ev_is_active(&pair[1]->spin));
    cr_assert_gt(iterations_until(0.05), 100, "the loop slept while polling");
    uint64_t deadline = mono_ms() + WAIT_MS;
    while ((ev_is_active(&pair[0]->spin) || ev_is_active(&pair[1]->spin)) && mono_ms() < deadline)
        ev_run(loop, EVRUN_NOWAIT);
    cr_assert(!ev_is_active(&pair[0]->spin) && !ev_is_active(&pair[1]->spin),
              "polling never stopped");
    cr_assert_leq(iterations_until(0.05), 5, "an idle loop did not sleep");
    pair_free();
    ev_loop_destroy(loop);
    loop = NULL;

    /* Negative: never. */
    pair_busy_poll_us = -1;
    pair_start();
    cr_assert(exchange(), "the message never arrived");
    cr_assert(!ev_is_active(&pair[0]->spin) && !ev_is_active(&pair[1]->spin));
    pair_free();
    pair_busy_poll_us = 0;
}

/* This machine's host name in @buf when it resolves to a loopback address only; else NULL. */
static const char *loopback_host_name(char *buf, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ais = NULL;
    int loopback = 0;

    if (gethostname(buf, cap) != 0 || getaddrinfo(buf, NULL, &hints, &ais) != 0)
        return NULL;
    for (struct addrinfo *ai = ais; ai != NULL; ai = ai->ai_next) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ai->ai_addr;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ai->ai_addr;
        int lo = (ai->ai_family == AF_INET && (ntohl(in->sin_addr.s_addr) >> 24) == 127) ||
                 (ai->ai_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
        loopback = lo && loopback >= 0 ? 1 : -1;
    }
    freeaddrinfo(ais);
    return loopback > 0 ? buf : NULL;
}

Test(dist_pair, nodes_named_by_host_name_find_and_reach_each_other)
{
    char host[200], n1[256], n2[256];
    const char *const names[2] = {n1, n2};

    if (loopback_host_name(host, sizeof(host)) == NULL) {
        cr_skip_test("this machine's host name does not resolve to loopback addresses only");
        return;
    }
    snprintf(n1, sizeof(n1), "h1@%s", host);
    snprintf(n2, sizeof(n2), "h2@%s", host);
    pair_start_as(names);
    cr_assert_eq(dist_node_send(pair[0], NULL, n2, NULL, "inbox", "t", "hi", 2), 0);
    cr_assert(both(&recs[1].msgs, &recs[0].ups, WAIT_MS), "%s never reached %s", n1, n2);
    cr_assert_str_eq(recs[1].last_from, n1);
    pair_free();
}

/* ---- epmd restarts --------------------------------------------------------------------------- */

Test(dist_pair, connections_go_on_while_epmd_restarts)
{
    uint64_t deadline;

    pair_start();
    cr_assert(exchange(), "no message before the restart");
    daemon_kill(&d);
    cr_assert(exchange(), "no message while epmd was down");
    reregistered_logged = 0;
    daemon_restart(&d);
    deadline = mono_ms() + WAIT_MS;
    while (reregistered_logged < 2 && mono_ms() < deadline)
        ev_run(loop, EVRUN_NOWAIT);
    cr_assert_eq(reregistered_logged, 2, "both nodes register again");
    cr_assert(exchange(), "no message after the restart");
    cr_assert_eq(recs[0].downs + recs[1].downs, 0, "the connection went down");
    cr_assert_eq(recs[0].ups, 1);
    cr_assert_eq(recs[1].ups, 1);
    pair_free();
}
