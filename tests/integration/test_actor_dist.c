/*
 * test_actor_dist.c: actor systems on separate nodes, talking through libdist.
 *
 * Each test starts its own epmd (daemon.h) on a free loopback port and runs ACTOR_NODE_BIN
 * (tests/integration/actor_node.c) as the nodes: it writes commands to a node's stdin and
 * waits for the lines the node prints ("pong from=...", "down from=... reason=...").
 *
 * Every wait is bounded and polls; .fini kills and reaps every process started, passed or not.
 */
#include <criterion/criterion.h>

/* daemon.h serves several test files; not every one of its helpers is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#define COOKIE     "actor-dist-cookie"
#define WAIT_MS    15000 /* bound on any one wait for a node */
#define MAX_PROCS  6
#define TICK_MS    3000
#define CONNECT_MS "1000"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "node_proc.h"
#pragma GCC diagnostic pop

static struct daemon d;
static char dir[64];
static struct proc procs[MAX_PROCS];
static int nprocs;

/* ---- Processes ------------------------------------------------------------------------------- */

static void setup(void)
{
    nodes_setup(&d, dir, sizeof(dir), "actor-dist-test");
}

static void teardown(void)
{
    nodes_teardown(&d, dir, procs, &nprocs);
}

TestSuite(actor_dist, .init = setup, .fini = teardown, .timeout = 120);

/* Start node "NAME@127.0.0.1" with its stdin on a pipe, and wait until it is registered. */
static struct proc *node_start(const char *name, const char *extra)
{
    char port[8], tick[16];
    char *argv[16] = {NULL,   "--name", NULL, "--epmd-port",       port,      "--cookie",
                      COOKIE, "--tick", tick, "--connect-timeout", CONNECT_MS};
    struct proc *p = proc_add(procs, &nprocs, MAX_PROCS, dir, name);

    argv[0] = proc_bin("ACTOR_NODE_BIN", ACTOR_NODE_BIN);
    snprintf(port, sizeof(port), "%u", d.port);
    snprintf(tick, sizeof(tick), "%u", TICK_MS);
    argv[2] = p->name;
    argv[11] = (char *)extra;
    proc_exec(p, argv, 1);
    wait_out(p, "ready name=", 1);
    return p;
}

/* Send one command line to @p. */
static void cmd(struct proc *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    cr_assert_eq(write(p->in, line, (size_t)n), n, "%s: cannot write a command", p->name);
}

/* "quit" on stdin: the node shuts down, exits 0 and leaves no sanitizer report. */
static void quit_clean(struct proc *p)
{
    int status = 0;

    cmd(p, "quit");
    cr_assert(wait_exit(p->pid, 10000, &status), "%s did not exit on quit", p->name);
    p->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || log_has_sanitizer_report(p->err)) {
        proc_show(p);
        cr_assert_fail("%s exited uncleanly (status %d)", p->name, status);
    }
}

/*
 * @a learns @b's echo PID: {echo, b} ! ping, and the pong comes back from that PID. Since a's
 * messages to b keep their order, it is also a round trip after everything a sent b before.
 */
static void learn(struct proc *a, const struct proc *b)
{
    char needle[96];

    snprintf(needle, sizeof(needle), "pong from=%s pid=<", b->name);
    int seen = file_count(a->out, needle);
    cmd(a, "ping %s", b->name);
    wait_out(a, needle, seen + 1);
}

/* ---- Tests ----------------------------------------------------------------------------------- */

Test(actor_dist, messages_both_ways_between_three_nodes_keep_order)
{
    struct proc *n[3] = {node_start("a", NULL), node_start("b", NULL), node_start("c", NULL)};
    char needle[128];

    /* {name, node} sends both ways, and the replies go to the sender's remote PID. */
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i != j)
                learn(n[i], n[j]);
        }
    }
    /* Bursts between every pair at once, by PID and by name: each arrives whole, in order. */
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i != j)
                cmd(n[i], "%s %s 2000", i < j ? "burst" : "burstname", n[j]->name);
        }
    }
    for (int j = 0; j < 3; j++) {
        for (int i = 0; i < 3; i++) {
            if (i == j)
                continue;
            snprintf(needle, sizeof(needle), "order from=%s total=2000 ok", n[i]->name);
            wait_out(n[j], needle, 1);
        }
        cr_expect_eq(file_count(n[j]->out, "total=2000 bad"), 0, "%s saw a reordering", n[j]->name);
    }
    /* A typed (protobuf) message is packed once, unpacked at the receiver. */
    cmd(n[0], "text %s hello", n[2]->name);
    snprintf(needle, sizeof(needle), "text from=%s text=hello", n[0]->name);
    wait_out(n[2], needle, 1);
    for (int i = 0; i < 3; i++)
        quit_clean(n[i]);
}

Test(actor_dist, kill_9_fires_links_and_monitors_with_noconnection)
{
    struct proc *a = node_start("a", NULL), *b = node_start("b", NULL);
    struct proc *c = node_start("c", NULL);
    char needle[128];
    uint64_t took;
    int status;

    learn(a, c);
    learn(b, c);
    cmd(a, "monitor %s", c->name);
    cmd(a, "spawn %s victim link", c->name);
    wait_out(a, "spawned node=c@127.0.0.1", 1);
    cmd(b, "link %s", c->name);
    cmd(b, "spawn %s victim monitor", c->name);
    wait_out(b, "spawned node=c@127.0.0.1", 1);
    learn(b, c); /* the link and the monitor reached c before it dies: a round trip after them */
    learn(a, c);

    kill(c->pid, SIGKILL);
    cr_assert(wait_exit(c->pid, 5000, &status));
    c->pid = 0;
    snprintf(needle, sizeof(needle), "down from=%s reason=noconnection", c->name);
    took = wait_out(a, needle, 1);
    cr_expect_lt(took, TICK_MS, "the DOWN took %llu ms", (unsigned long long)took);
    wait_out(b, needle, 1);
    snprintf(needle, sizeof(needle), "exit from=%s reason=noconnection", c->name);
    wait_out(a, needle, 1);
    wait_out(b, needle, 1);
    snprintf(needle, sizeof(needle), "nodedown %s reason=", c->name);
    wait_out(a, needle, 1);
    /* a's own link to b is unaffected. */
    learn(a, b);
    cr_expect_eq(file_count(a->out, "nodedown b@"), 0);

    /* A call to an actor of the dead node: node unreachable, not a timeout. */
    cmd(a, "call %s hello 10", c->name);
    wait_out(a, "call-error err=unreachable", 1);
    cmd(a, "callwait %s hello 10", c->name);
    wait_out(a, "callwait-error err=unreachable", 1);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, a_node_whose_only_scheduler_is_busy_keeps_its_connections)
{
    struct proc *a = node_start("a", "--schedulers=1"), *b = node_start("b", NULL);

    learn(a, b);
    learn(b, a);
    /*
     * Longer than twice the tick time: a's I/O thread must answer b's ticks meanwhile, though
     * the scheduler that polls its loop while idle takes the hog in: a burst just before
     * keeps it polling.
     */
    cmd(b, "burst %s 20000", a->name);
    cmd(b, "hog %s %d", a->name, 2 * TICK_MS + 1000);
    wait_out(a, "hogged ms=", 1);
    learn(b, a);
    learn(a, b);
    cr_expect_eq(file_count(b->out, "nodedown a@"), 0, "b took a for dead while it computed");
    cr_expect_eq(file_count(a->out, "nodedown b@"), 0);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, remote_exits_and_downs_carry_real_reasons)
{
    struct proc *a = node_start("a", NULL), *b = node_start("b", NULL);
    char needle[128];

    cmd(a, "spawn %s victim monitor", b->name);
    wait_out(a, "spawned node=b@127.0.0.1", 1);
    cmd(a, "die 42");
    snprintf(needle, sizeof(needle), "down from=%s reason=custom(42)", b->name);
    wait_out(a, needle, 1);

    cmd(a, "spawn %s victim link", b->name);
    wait_out(a, "spawned node=b@127.0.0.1", 2);
    cmd(a, "die 43");
    snprintf(needle, sizeof(needle), "exit from=%s reason=custom(43)", b->name);
    wait_out(a, needle, 1);
    cr_expect_eq(file_count(a->out, "nodedown"), 0);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, remote_call_reply_timeout_and_noproc_are_distinct)
{
    struct proc *a = node_start("a", NULL), *b = node_start("b", NULL);

    learn(a, b);
    cmd(a, "call %s hello 5", b->name);
    wait_out(a, "call-ok reply=hello", 1);
    cmd(a, "call %s silent 0.3", b->name);
    wait_out(a, "call-error err=timeout", 1);
    /* The same from a plain thread, blocked in actor_call_wait(). */
    cmd(a, "callwait %s hello2 5", b->name);
    wait_out(a, "callwait-ok reply=hello2", 1);
    cmd(a, "callwait %s silent 0.3", b->name);
    wait_out(a, "callwait-error err=timeout", 1);
    cmd(a, "spawn %s victim none", b->name);
    wait_out(a, "spawned node=b@127.0.0.1", 1);
    cmd(a, "callvictim");
    wait_out(a, "call-ok reply=alive", 1);
    cmd(a, "die 1");
    cmd(a, "callvictim");
    wait_out(a, "call-error err=noproc", 1);
    cr_expect_eq(file_count(a->out, "call-error err=unreachable"), 0);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, remote_spawn_success_and_errors)
{
    struct proc *a = node_start("a", NULL), *b = node_start("b", NULL);

    cmd(a, "spawn %s victim none", b->name);
    wait_out(a, "spawned node=b@127.0.0.1 pid=<", 1);
    cmd(a, "spawn %s nosuch none", b->name);
    wait_out(a, "spawn-error node=b@127.0.0.1 err=nospawn", 1);
    cmd(a, "spawn ghost@127.0.0.1 victim none");
    wait_out(a, "spawn-error node=ghost@127.0.0.1 err=unreachable", 1);
    /* A spawn on the node itself takes the same path. */
    cmd(a, "spawn %s victim none", a->name);
    wait_out(a, "spawned node=a@127.0.0.1 pid=<0.", 1);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, unknown_type_is_dropped_and_counted_connection_stays)
{
    struct proc *a = node_start("a", "--secret"), *b = node_start("b", NULL);
    char needle[128];

    learn(a, b);
    cmd(a, "secret %s", b->name);
    cmd(a, "secret %s", b->name);
    cmd(a, "text %s after", b->name);
    snprintf(needle, sizeof(needle), "text from=%s text=after", a->name);
    wait_out(b, needle, 1);
    cmd(b, "stats");
    wait_out(b, "stats ", 1);
    cr_expect_eq(file_count(b->out, "unknown=2 "), 1, "both unknown messages counted");
    cr_expect_eq(file_count(b->err, "unknown type \"test.Secret\""), 1, "logged once per type");
    /* The connection stayed up: no node went down, and pings still go through. */
    learn(a, b);
    cr_expect_eq(file_count(a->out, "nodedown"), 0);
    cr_expect_eq(file_count(b->out, "nodedown"), 0);
    quit_clean(a);
    quit_clean(b);
}

Test(actor_dist, pids_of_a_dead_node_or_an_old_incarnation_are_harmless)
{
    struct proc *a = node_start("a", NULL), *c = node_start("c", NULL);
    char needle[128];
    unsigned long undeliverable = 0;
    char *out;

    learn(a, c);
    /* c leaves (it unregisters, so that its name is free at once for the next incarnation). */
    quit_clean(c);
    wait_out(a, "nodedown c@127.0.0.1 reason=graceful_shutdown", 1);
    /* To the dead node: queued, never delivered, and a goes on. */
    cmd(a, "burst %s 3", c->name);
    wait_out(a, "burst to=c@127.0.0.1 n=3 rc=0", 1);

    /* A new incarnation of c: a's PID of the old echo names the same slot, another creation. */
    c = node_start("c", NULL);
    cmd(a, "burst %s 5", c->name);
    learn(a, c); /* a round trip behind the burst, and a's PID of the new echo */
    cmd(c, "stats");
    wait_out(c, "stats ", 1);
    out = slurp(c->out, NULL);
    cr_assert_not_null(strstr(out, "undeliverable="));
    sscanf(strstr(out, "undeliverable="), "undeliverable=%lu", &undeliverable);
    free(out);
    cr_expect_geq(undeliverable, 5, "the old incarnation's messages were not refused");
    cr_expect_eq(file_count(c->out, "order from="), 0, "a message to an old PID was delivered");

    /* The new PID works. */
    cmd(a, "burst %s 5", c->name);
    snprintf(needle, sizeof(needle), "order from=%s total=5 ok", a->name);
    wait_out(c, needle, 1);
    quit_clean(a);
    quit_clean(c);
}

/* Run examples/remote_ping_pong with @args (NULL-terminated after the common ones). */
static struct proc *ping_pong_start(const char *name, const char *const *args)
{
    char port[8];
    char *argv[16] = {NULL, "--node", NULL, "--epmd-port", port, "--cookie", COOKIE};
    int argc = 7;
    struct proc *p = proc_add(procs, &nprocs, MAX_PROCS, dir, name);

    argv[0] = proc_bin("PING_PONG_BIN", PING_PONG_BIN);
    snprintf(port, sizeof(port), "%u", d.port);
    argv[2] = p->name;
    for (; *args != NULL && argc < 15; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    proc_exec(p, argv, 0);
    return p;
}

/* The example's exit status, within 15 s. */
static int ping_pong_status(struct proc *p)
{
    int status = 0;

    cr_assert(wait_exit(p->pid, 15000, &status), "%s did not exit", p->name);
    p->pid = 0;
    if (log_has_sanitizer_report(p->err))
        proc_show(p);
    cr_expect(!log_has_sanitizer_report(p->err));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(actor_dist, remote_ping_pong_example_server_and_client)
{
    const char *server_args[] = {NULL};
    const char *client_args[] = {"--peer", "pong@127.0.0.1", "--count", "50", NULL};
    const char *lost_args[] = {"--peer", "nobody@127.0.0.1", "--timeout", "1", NULL};
    const char *bad_args[] = {"--count", "many", NULL};
    struct proc *server = ping_pong_start("pong", server_args), *client;
    int status = 0;

    wait_out(server, "waits for pings", 1);
    client = ping_pong_start("ping", client_args);
    cr_expect_eq(ping_pong_status(client), 0);
    wait_out(client, "pong 20 from <1.", 1);
    wait_out(client, "done: 50 round trips", 1);
    wait_out(server, "ping 1 from <1.", 1);
    /* No answer: a clear message and a failure status. */
    client = ping_pong_start("lost", lost_args);
    cr_expect_eq(ping_pong_status(client), 1);
    cr_expect(file_contains(client->err, "no answer from nobody@127.0.0.1"));
    client = ping_pong_start("bad", bad_args);
    cr_expect_eq(ping_pong_status(client), 2);
    /* The server stops cleanly on SIGTERM. */
    kill(server->pid, SIGTERM);
    cr_assert(wait_exit(server->pid, 10000, &status));
    server->pid = 0;
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server status %d", status);
    cr_expect(!log_has_sanitizer_report(server->err));
}
