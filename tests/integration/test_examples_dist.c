/*
 * test_examples_dist.c: the distributed examples do what the README shows. Each test starts its
 * own epmd (daemon.h) on a free loopback port and runs CLUSTER_BIN (distributed_cluster) or
 * CHAT_BIN (distributed_chat) as nodes that find each other through it, then waits on the lines
 * they print: joins, greetings, chat lines, and what a kill -9 leaves behind.
 *
 * Every wait is bounded and polls; .fini kills and reaps every process started, passed or not.
 */
#include <criterion/criterion.h>

/* daemon.h serves several test files; not every one of its helpers is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#define COOKIE    "examples-dist-cookie"
#define WAIT_MS   20000 /* bound on any one wait for a node */
#define MAX_PROCS 4

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "node_proc.h"
#pragma GCC diagnostic pop

#define CLUSTER proc_bin("CLUSTER_BIN", CLUSTER_BIN)
#define CHAT    proc_bin("CHAT_BIN", CHAT_BIN)

static struct daemon d;
static char dir[64];
static struct proc procs[MAX_PROCS];
static int nprocs;

static void setup(void)
{
    nodes_setup(&d, dir, sizeof(dir), "examples-dist-test");
}

static void teardown(void)
{
    nodes_teardown(&d, dir, procs, &nprocs);
}

TestSuite(examples_dist, .init = setup, .fini = teardown, .timeout = 120);

/* Start @bin as node "NAME@127.0.0.1" (stdin on a pipe) and wait for its first line. */
static struct proc *node_start(const char *bin, const char *name, const char *ready)
{
    char port[8];
    char *argv[] = {(char *)bin, "--node", NULL,         "--epmd-port", port,
                    "--cookie",  COOKIE,   "--insecure", NULL};
    struct proc *p = proc_add(procs, &nprocs, MAX_PROCS, dir, name);

    snprintf(port, sizeof(port), "%u", d.port);
    argv[2] = p->name;
    proc_exec(p, argv, 1);
    wait_out(p, ready, 1);
    return p;
}

static void kill_9(struct proc *p)
{
    int status;

    kill(p->pid, SIGKILL);
    cr_assert(wait_exit(p->pid, 5000, &status));
    p->pid = 0;
}

/* After @sig (0: close its stdin) @p exits 0 with no sanitizer report. */
static void stop_clean(struct proc *p, int sig)
{
    int status = 0;

    if (sig != 0) {
        kill(p->pid, sig);
    } else {
        close(p->in);
        p->in = 0;
    }
    cr_assert(wait_exit(p->pid, 10000, &status), "%s did not exit", p->name);
    p->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || log_has_sanitizer_report(p->err)) {
        proc_show(p);
        cr_assert_fail("%s exited uncleanly (status %d)", p->name, status);
    }
}

/* Wait until @p prints @pre, then @node, then @post, as one run of text. */
static void wait_node(const struct proc *p, const char *pre, const char *node, const char *post)
{
    char needle[160];

    snprintf(needle, sizeof(needle), "%s%s%s", pre, node, post);
    wait_out(p, needle, 1);
}

Test(examples_dist, cluster_members_join_greet_and_leave)
{
    const char *ready = "looking for members";
    struct proc *n[3] = {node_start(CLUSTER, "n1", ready), node_start(CLUSTER, "n2", ready),
                         node_start(CLUSTER, "n3", ready)};

    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i == j)
                continue;
            wait_node(n[i], "join ", n[j]->name, "\n");
            wait_node(n[i], "", n[j]->name, " says: ");
        }
    }
    kill_9(n[2]);
    wait_node(n[0], "leave ", n[2]->name, " (noconnection)\n");
    wait_node(n[1], "leave ", n[2]->name, " (noconnection)\n");
    stop_clean(n[1], SIGTERM);
    wait_node(n[0], "leave ", n[1]->name, " (shutdown)\n");
    stop_clean(n[0], SIGINT);
}

Test(examples_dist, chat_lines_travel_and_a_killed_peer_dies)
{
    const char *ready = "is in the chat";
    struct proc *a = node_start(CHAT, "alice", ready);
    struct proc *b = node_start(CHAT, "bob", ready);
    static const char line[] = "hello from the other terminal\n";

    wait_out(a, "* bob joined\n", 1);
    wait_out(b, "* alice joined\n", 1);
    cr_assert_eq(write(a->in, line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
    wait_out(b, "<alice> hello from the other terminal\n", 1);
    cr_assert_eq(write(b->in, "hi\n", 3), 3);
    wait_out(a, "<bob> hi\n", 1);
    cr_expect_eq(file_count(a->out, "<alice>"), 0, "alice got her own line back");

    kill_9(a);
    wait_out(b, "* alice died (noconnection)\n", 1);

    /* A newcomer joins the survivor; when it reaches EOF, it leaves cleanly. */
    struct proc *c = node_start(CHAT, "carol", ready);
    wait_out(b, "* carol joined\n", 1);
    /* bob's monitor of carol went out before this line: once carol has the line, she has it. */
    cr_assert_eq(write(b->in, "welcome carol\n", 14), 14);
    wait_out(c, "<bob> welcome carol\n", 1);
    stop_clean(c, 0);
    wait_out(b, "* carol left\n", 1);
    stop_clean(b, SIGTERM);
}
