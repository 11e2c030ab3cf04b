/*
 * test_epmd_daemon_limits.c: the epmd daemon under bad input and load, and its command line:
 * malformed, pipelined, dribbled and truncated requests, garbage connections, thousands of
 * connections and registrations, its connection and descriptor limits, the addresses it
 * listens on, and how it starts and exits.
 *
 * How each test runs the daemon, and where the expected bytes come from: epmd_daemon_util.h.
 */
#include <criterion/criterion.h>

#include <sys/resource.h>

#include "dist.h"
#include "epmd_daemon_util.h"

#define MANY_IDLE     2000
#define MANY_NODES    10000
#define GARBAGE_CONNS 1000

static const char *const timeout_flags[] = {"-packet_timeout", "1", NULL};
static const char *const limit_flags[] = {"-max_connections", "5", NULL};

static void start_timeout(void)
{
    daemon_start(&d, timeout_flags);
}

static void start_limited(void)
{
    daemon_start(&d, limit_flags);
}

TestSuite(epmd_daemon, .timeout = 30);

/* Criterion skips .fini after cr_skip_test, so the daemon is stopped first. */
#define SKIP_TEST(...)                                                                             \
    do {                                                                                           \
        daemon_stop(&d);                                                                           \
        cr_skip_test(__VA_ARGS__);                                                                 \
    } while (0)

/* ---- Bad input ----------------------------------------------------------------------------- */

Test(epmd_daemon, lengths_0_3058_and_65535_are_closed_3057_is_served, .init = start_default,
     .fini = stop_daemon)
{
    static uint8_t big[2 + 65535];
    static const uint16_t bad[] = {0, 3058, 65535};
    uint8_t reply[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = dial(d.port);

        big[0] = (uint8_t)(bad[i] >> 8);
        big[1] = (uint8_t)bad[i];
        big[2] = 'n';
        send_all(fd, big, bad[i] > 3058 ? 64 : 2 + (size_t)bad[i]); /* may meet a reset */
        expect_closed_silently(fd, 2000, "a request with a bad Length");
        close(fd);
    }
    send_expect_silent_close("GET / HTTP/1.1\r\n\r\n", 18, "an HTTP request (Length 18245)");
    memset(big, 0, sizeof(big));
    big[0] = 3057 >> 8;
    big[1] = 3057 & 0xff;
    big[2] = 'n';
    assert_port_word(reply, exchange(big, 2 + 3057, reply, sizeof(reply)));
    assert_healthy();
}

static int is_served_tag(int tag)
{
    return tag != 0 && strchr("xzndksREULW", tag) != NULL;
}

Test(epmd_daemon, unknown_and_obsolete_tags_are_closed_silently, .init = start_default,
     .fini = stop_daemon)
{
    for (int tag = 0; tag < 256; tag++) {
        uint8_t req[] = {0x00, 0x02, (uint8_t)tag, 'a'};
        char what[32];

        if (is_served_tag(tag))
            continue;
        snprintf(what, sizeof(what), "tag %d", tag);
        send_expect_silent_close(req, sizeof(req), what);
    }
    assert_healthy();
}

Test(epmd_daemon, pipelined_requests_are_closed_without_reply, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t two_names[] = {0x00, 0x01, 'n', 0x00, 0x01, 'n'};
    static const uint8_t port_names[] = {0x00, 0x02, 'z', 'a', 0x00, 0x01, 'n'};
    static const uint8_t names_junk[] = {0x00, 0x01, 'n', 0x00};
    static const uint8_t alive_junk[] = {0x00, 0x0e, 'x',  0xa0, 0x45, 77,   0,    0,  6,
                                         0,    5,    0x00, 0x01, 'q',  0x00, 0x00, '!'};
    const struct {
        const uint8_t *bytes;
        size_t len;
        const char *what;
    } cases[] = {
        {two_names, sizeof(two_names), "NAMES twice"},
        {port_names, sizeof(port_names), "PORT_PLEASE2 then NAMES"},
        {names_junk, sizeof(names_junk), "NAMES plus one byte"},
        {alive_junk, sizeof(alive_junk), "ALIVE2 plus one byte"},
    };
    int owner = register_node("a", NODE_PORT, NULL);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        send_expect_silent_close(cases[i].bytes, cases[i].len, cases[i].what);
    cr_assert_not(is_registered("q"), "an ALIVE2 with a byte too many registered q");
    close(owner);
    assert_healthy();
}

/* Send bytes one write at a time, a few ms apart. */
static void dribble(int fd, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        send_raw(fd, p + i, 1);
        sleep_ms(3);
    }
}

Test(epmd_daemon, requests_dribbled_one_byte_at_a_time_are_answered, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x09, 'z', 'd', 'r', 'i', 'b', 'b', 'l', 'e', 'r'};
    struct dist_epmd_node n = node_of("dribbler", NODE_PORT, 6), node;
    uint8_t buf[DIST_EPMD_BUFSIZE], reply[64];
    int len = dist_epmd_alive2_req_build(buf, sizeof(buf), &n);
    int owner = dial(d.port), fd, found = 0;
    size_t got;

    cr_assert_gt(len, 0);
    dribble(owner, buf, (size_t)len);
    cr_assert_eq(recv_upto(owner, reply, 6, NULL), 6, "no reply to a dribbled ALIVE2");
    cr_assert_eq(reply[1], 0, "dribbled ALIVE2 refused");
    fd = dial(d.port);
    dribble(fd, req, sizeof(req));
    got = recv_to_close(fd, reply, sizeof(reply));
    cr_assert_eq(dist_epmd_port2_resp_parse(reply, got, &found, &node), (int)got);
    cr_assert(found, "dribbled PORT_PLEASE2 did not find dribbler");
    cr_assert_eq(node.port, NODE_PORT);
    close(fd);
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, truncated_requests_close_after_the_packet_timeout, .init = start_timeout,
     .fini = stop_daemon)
{
    static const uint8_t partial[] = {0x00, 0x05, 'z', 'a'};
    static struct listing l;
    int cut = dial(d.port), half = dial(d.port), idle = dial(d.port), session = dial(d.port);
    uint64_t t0 = mono_ms(), waited;

    send_raw(cut, partial, sizeof(partial));
    send_raw(half, partial, 1);
    list_on(session, &l);
    expect_open(cut, 500, "a truncated request before the 1 s timeout");
    expect_closed_silently(cut, 4000, "a truncated request");
    expect_closed_silently(half, 1000, "half a length header");
    expect_closed_silently(idle, 1000, "a connection that sent nothing");
    expect_closed_silently(session, 1000, "an extension session silent past the timeout");
    waited = mono_ms() - t0;
    cr_assert_geq(waited, 900, "closed after %llu ms, before -packet_timeout 1",
                  (unsigned long long)waited);
    close(cut);
    close(half);
    close(idle);
    close(session);
    assert_healthy();
}

Test(epmd_daemon, registrations_and_watchers_never_time_out, .init = start_timeout,
     .fini = stop_daemon)
{
    static const uint8_t watch[] = {0x00, 0x01, DIST_EPMD_WATCH_REQ};
    static struct listing l;
    int owner = register_node("a", NODE_PORT, NULL);
    int w = dial(d.port);

    send_raw(w, watch, sizeof(watch));
    read_listing(w, &l);
    expect_open(owner, 2500, "a registration idle past -packet_timeout 1");
    expect_open(w, 10, "a watcher idle past -packet_timeout 1");
    cr_assert(is_registered("a"));
    close(w);
    close(owner);
    assert_healthy();
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Random bytes that cannot spell KILL_REQ, which would legitimately stop the daemon. */
static size_t garbage(uint32_t *seed, uint8_t *buf, size_t cap)
{
    size_t n = 1 + xorshift(seed) % cap;

    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)xorshift(seed);
    if (n > 2 && buf[2] == DIST_EPMD_KILL_REQ)
        buf[2] = 0xee;
    return n;
}

/* Poll until the daemon holds at most / at least want descriptors (bounded). */
static int wait_fd_count(int want, int at_most)
{
    int n = -1;

    for (int i = 0; i < 500; i++) {
        n = daemon_fd_count(&d);
        if (n >= 0 && (at_most ? n <= want : n >= want))
            return n;
        sleep_ms(10);
    }
    return n;
}

Test(epmd_daemon, a_thousand_garbage_connections_leave_it_serving, .init = start_default,
     .fini = stop_daemon)
{
    uint32_t seed = 0x5eed1234u;
    uint8_t buf[64];
    int base = daemon_fd_count(&d), now;

    cr_assert_gt(base, 0, "cannot read /proc/%d/fd", (int)d.pid);
    for (int i = 0; i < GARBAGE_CONNS; i++) {
        int fd = dial(d.port);
        size_t n = garbage(&seed, buf, sizeof(buf));

        send_all(fd, buf, n); /* the daemon may already have closed */
        close(fd);
    }
    assert_healthy();
    now = wait_fd_count(base, 1);
    cr_assert_leq(now, base, "the daemon holds %d descriptors, %d before the garbage", now, base);
}

/* ---- Scale and limits ---------------------------------------------------------------------- */

static rlim_t raise_nofile(void)
{
    struct rlimit rl;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

Test(epmd_daemon, thousands_of_idle_connections_do_not_block_lookups, .init = start_default,
     .fini = stop_daemon)
{
    static int fds[MANY_IDLE];
    uint8_t reply[256];
    int base = daemon_fd_count(&d), held;
    int owner = register_node("a", NODE_PORT, NULL), late;

    if (raise_nofile() < MANY_IDLE + 64)
        SKIP_TEST("RLIMIT_NOFILE below %d", MANY_IDLE + 64);
    for (int i = 0; i < MANY_IDLE; i++)
        fds[i] = dial(d.port);
    held = wait_fd_count(base + MANY_IDLE, 0);
    cr_assert_geq(held, base + MANY_IDLE, "the daemon holds %d descriptors", held);
    cr_assert(is_registered("a"), "lookup failed with %d idle connections", MANY_IDLE);
    late = register_node("b", 41030, NULL);
    cr_assert(is_registered("b"));
    cr_assert_gt(tag_req(reply, sizeof(reply), 'n'), 4);
    for (int i = 0; i < MANY_IDLE; i++)
        close(fds[i]);
    close(late);
    close(owner);
    assert_healthy();
}

/* Parse one NAMES line "name nNNNNN at port P\n"; returns the node index or -1. */
static int names_line_index(const char **p, const char *end)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    int idx = -1, port = -1, used = 0;

    if (nl == NULL)
        return -1;
    if (sscanf(*p, "name n%5d at port %d%n", &idx, &port, &used) != 2 || *p + used != nl ||
        port != 10000 + idx)
        idx = -1;
    *p = nl + 1;
    return idx;
}

static void assert_all_names_listed(int count)
{
    const size_t cap = 64 + (size_t)count * 32;
    uint8_t *reply = malloc(cap);
    char *seen = calloc((size_t)count, 1);
    size_t n;
    int lines = 0;

    cr_assert(reply != NULL && seen != NULL);
    n = tag_req(reply, cap, 'n');
    assert_port_word(reply, n);
    for (const char *p = (char *)reply + 4, *end = (char *)reply + n; p < end; lines++) {
        int idx = names_line_index(&p, end);

        cr_assert(idx >= 0 && idx < count, "bad NAMES line %d", lines);
        cr_assert_not(seen[idx], "n%05d listed twice", idx);
        seen[idx] = 1;
    }
    cr_assert_eq(lines, count, "NAMES listed %d of %d nodes", lines, count);
    free(seen);
    free(reply);
}

/* Poll NAMES until it lists nobody (bounded). */
static int wait_names_empty(void)
{
    static uint8_t reply[64 + MANY_NODES * 32];

    for (int i = 0; i < POLL_TRIES; i++) {
        if (tag_req(reply, sizeof(reply), 'n') == 4)
            return 1;
        sleep_ms(10);
    }
    return 0;
}

Test(epmd_daemon, ten_thousand_registrations_held_and_listed, .init = start_default,
     .fini = stop_daemon, .timeout = 60)
{
    static int fds[MANY_NODES];
    char name[16];

    if (raise_nofile() < MANY_NODES + 100)
        SKIP_TEST("%d held registrations need RLIMIT_NOFILE >= %d; the hard limit is lower",
                  MANY_NODES, MANY_NODES + 100);
    for (int i = 0; i < MANY_NODES; i++) {
        snprintf(name, sizeof(name), "n%05d", i);
        fds[i] = register_node(name, (uint16_t)(10000 + i), NULL);
    }
    assert_all_names_listed(MANY_NODES);
    cr_assert(is_registered("n00000") && is_registered("n09999") && is_registered("n04321"));
    for (int i = 0; i < MANY_NODES; i++)
        close(fds[i]);
    cr_assert(wait_names_empty(), "names left after closing all %d sockets", MANY_NODES);
    assert_healthy();
}

Test(epmd_daemon, max_connections_refuses_the_sixth_and_logs_it, .init = start_limited,
     .fini = stop_daemon)
{
    static struct listing l;
    int fds[5], sixth, ok = 0, logged = 0;

    for (int i = 0; i < 5; i++) {
        fds[i] = dial(d.port);
        list_on(fds[i], &l); /* answered: the daemon holds this connection */
    }
    sixth = dial(d.port);
    expect_closed_silently(sixth, 2000, "the sixth connection with -max_connections 5");
    close(sixth);
    for (int i = 0; i < POLL_TRIES && !logged; i++) {
        logged = file_contains(d.log, "connection limit");
        if (!logged)
            sleep_ms(10);
    }
    cr_assert(logged, "no log line about the connection limit in the daemon's stderr");
    for (int i = 0; i < 30; i++) {
        sixth = dial(d.port);
        expect_closed_silently(sixth, 2000, "a refused connection in a burst");
        close(sixth);
    }
    logged = file_count(d.log, "connection limit");
    cr_assert_leq(logged, 2, "31 refusals in under a second logged %d times", logged);
    close(fds[0]);
    for (int i = 0; i < POLL_TRIES && !ok; i++) {
        ok = daemon_answers(d.port);
        if (!ok)
            sleep_ms(10);
    }
    cr_assert(ok, "no connection accepted after one of the five closed");
    for (int i = 1; i < 5; i++)
        close(fds[i]);
    assert_healthy();
}

Test(epmd_daemon, address_flag_also_serves_the_ipv6_loopback, .init = start_default,
     .fini = stop_daemon)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(d.port)};
    static const uint8_t req[] = {0x00, 0x01, 'n'};
    uint8_t reply[16];
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin6_addr = in6addr_loopback;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sa.sin6_port = 0;
        if (probe < 0 || bind(probe, (struct sockaddr *)&sa, sizeof(sa)) != 0)
            SKIP_TEST("no IPv6 loopback here");
        cr_assert_fail("connect to [::1]:%u failed: %s", d.port, strerror(errno));
    }
    sock_timeouts(fd, SOCK_TIMEOUT_MS);
    send_raw(fd, req, sizeof(req));
    assert_port_word(reply, recv_to_close(fd, reply, sizeof(reply)));
    close(fd);
}

Test(epmd_daemon, out_of_descriptors_it_sheds_connections_and_recovers, .init = start_default,
     .fini = stop_daemon)
{
    struct rlimit lim;
    int fds[24], base = daemon_fd_count(&d), shed = 0, ok = 0;

    cr_assert_gt(base, 0);
    lim.rlim_cur = lim.rlim_max = (rlim_t)base + 8;
    cr_assert_eq(prlimit(d.pid, RLIMIT_NOFILE, &lim, NULL), 0, "prlimit: %s", strerror(errno));
    for (int i = 0; i < 24; i++)
        fds[i] = dial(d.port);
    for (int i = 0; i < 24; i++)
        shed += peer_state(fds[i], i < 8 ? 300 : 2000) == 1;
    cr_assert(daemon_running(&d), "the daemon died when it ran out of descriptors");
    cr_assert(shed >= 24 - 8, "only %d of 24 connections shed with room for 8", shed);
    cr_assert(shed < 24, "every connection shed with room for 8");
    cr_assert(file_contains(d.log, "descriptors"), "running out of descriptors was not logged");
    for (int i = 0; i < 24; i++)
        close(fds[i]);
    for (int i = 0; i < POLL_TRIES && !ok; i++) {
        ok = daemon_answers(d.port);
        if (!ok)
            sleep_ms(10);
    }
    cr_assert(ok, "the daemon does not answer once descriptors are free again");
    assert_healthy();
}

/* ---- The command line ---------------------------------------------------------------------- */

struct cli_run {
    int status;
    char *out;
    char *err;
};

/* Run epmd with up to 5 arguments (NULL-terminated); it must exit within 5 s. */
static struct cli_run run_cli(const char *const *args)
{
    char dir[] = "/tmp/epmd-cli-XXXXXX", out[64], err[64];
    char *argv[8] = {EPMD_BIN};
    struct cli_run r = {0};
    int ofd, efd;
    pid_t pid;

    for (int i = 0; i < 5 && args[i] != NULL; i++)
        argv[i + 1] = (char *)args[i];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(err, sizeof(err), "%s/err", dir);
    ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    efd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(ofd >= 0 && efd >= 0);
    pid = spawn(argv, ofd, efd);
    close(ofd);
    close(efd);
    cr_assert_gt(pid, 0);
    if (!wait_exit(pid, 5000, &r.status)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("epmd %s did not exit within 5 s", args[0]);
    }
    r.out = slurp(out, NULL);
    r.err = slurp(err, NULL);
    unlink(out);
    unlink(err);
    rmdir(dir);
    return r;
}

static int exit_code(const struct cli_run *r)
{
    return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

static void cli_free(struct cli_run *r)
{
    free(r->out);
    free(r->err);
}

Test(epmd_daemon, help_and_version_exit_0_and_print)
{
    static const char *const help_args[] = {"--help", NULL};
    static const char *const version_args[] = {"--version", NULL};
    struct cli_run help = run_cli(help_args);
    struct cli_run version = run_cli(version_args);

    cr_assert_eq(exit_code(&help), 0, "--help: wait status 0x%x", help.status);
    cr_assert(strstr(help.out, "-port") != NULL, "--help printed: [%s]", help.out);
    cr_assert_eq(exit_code(&version), 0, "--version: wait status 0x%x", version.status);
    cr_assert(strstr(version.out, "epmd") != NULL, "--version printed: [%s]", version.out);
    cli_free(&help);
    cli_free(&version);
}

Test(epmd_daemon, bad_options_exit_nonzero_with_a_message)
{
    static const char *const unknown_args[] = {"-no_such_option", NULL};
    static const char *const port_args[] = {"-port", "abc", NULL};
    struct cli_run unknown = run_cli(unknown_args);
    struct cli_run port = run_cli(port_args);

    cr_assert_neq(exit_code(&unknown), 0, "an unknown option exited 0");
    cr_assert(strstr(unknown.err, "-no_such_option") != NULL, "stderr: [%s]", unknown.err);
    cr_assert_neq(exit_code(&port), 0, "-port abc exited 0");
    cr_assert(strstr(port.err, "abc") != NULL, "stderr: [%s]", port.err);
    cli_free(&unknown);
    cli_free(&port);
}

Test(epmd_daemon, a_second_daemon_on_a_taken_port_says_so_and_exits_0, .init = start_default,
     .fini = stop_daemon)
{
    char port[8];
    const char *const args[] = {"-port", port, "-address", "127.0.0.1", NULL};
    struct cli_run second;

    snprintf(port, sizeof(port), "%u", d.port);
    second = run_cli(args);
    cr_assert_eq(exit_code(&second), 0, "wait status 0x%x", second.status);
    cr_assert(second.err[0] != '\0', "nothing said on stderr about the taken port");
    cli_free(&second);
    assert_healthy();
}

Test(epmd_daemon, a_repeated_listen_address_is_served_once, .fini = stop_daemon)
{
    static const char *const flags[] = {"-address", "127.0.0.1,127.0.0.1,::1", NULL};

    daemon_start(&d, flags);
    cr_assert(daemon_running(&d), "the daemon did not start with a repeated address");
    cr_assert_eq(is_registered("nobody"), 0);
}
