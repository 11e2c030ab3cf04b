/*
 * test_dist_node.c: libdist nodes talking to each other, as separate processes.
 *
 * Each test starts its own epmd (daemon.h) on a free loopback port and runs EMBED_BIN
 * (examples/embed_libdist) as the nodes, reading the lines they print: "ready ...", "up N",
 * "down N reason", "recv from=N ...". Some tests also run a node in the test process on a
 * loop of their own (busy), or a hand-made peer over a raw socket that uses libdist's
 * handshake pieces directly (garbage, stalls, malformed frames after auth). Tests of two
 * nodes both in the test process are in test_dist_pair.c.
 *
 * Every wait is bounded and polls; .fini kills and reaps every process started, passed or not.
 */
#include <criterion/criterion.h>

#include <ev.h>

/* daemon.h serves several test files; not every one of its helpers is used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "daemon.h"
#pragma GCC diagnostic pop

#include "dist.h"
#include "frame.h"
#include "node.h"
#include "secure.h"

#define COOKIE     "test-cookie"
#define WAIT_MS    10000 /* bound on any one wait for a node */
#define MAX_PROCS  8
#define HS_TIMEOUT "1000"
#define TICK_MS    1500
#define RAW_NAME   "raw@127.0.0.1"
#define RAW_CREATE 7
#define HIGH_WATER (256u * 1024u)
#define BUSY_MSG   (64u * 1024u)
#define BUSY_TRIES 4096

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "node_proc.h"
#pragma GCC diagnostic pop

static struct daemon d;
static char dir[64];
static struct proc procs[MAX_PROCS];
static int nprocs;
static struct ev_loop *loop;
static struct dist_node *local;

/* ---- Processes ------------------------------------------------------------------------------- */

static void setup(void)
{
    nodes_setup(&d, dir, sizeof(dir), "dist-node-test");
}

static void teardown(void)
{
    dist_node_free(local);
    local = NULL;
    if (loop != NULL)
        ev_loop_destroy(loop);
    loop = NULL;
    nodes_teardown(&d, dir, procs, &nprocs);
}

TestSuite(dist_node, .init = setup, .fini = teardown, .timeout = 60);

/* Start a node "NAME@127.0.0.1" with the common options and the NULL-terminated @extra. */
static struct proc *node_start(const char *name, const char *const *extra)
{
    char port[8];
    char *argv[40] = {EMBED_BIN,  "--name",        NULL,   "--epmd-port",
                      port,       "--cookie",      COOKIE, "--handshake-timeout",
                      HS_TIMEOUT, "--backoff-max", "300"};
    int argc = 11;
    struct proc *p = proc_add(procs, &nprocs, MAX_PROCS, dir, name);

    snprintf(port, sizeof(port), "%u", d.port);
    argv[2] = p->name;
    for (; extra != NULL && *extra != NULL && argc < 39; extra++)
        argv[argc++] = (char *)*extra;
    argv[argc] = NULL;
    proc_exec(p, argv, 0);
    return p;
}

/* Wait until @p's stderr holds @needle. */
static void wait_err(const struct proc *p, const char *needle)
{
    uint64_t deadline = mono_ms() + WAIT_MS;

    while (!file_contains(p->err, needle)) {
        if (mono_ms() >= deadline) {
            proc_show(p);
            cr_assert_fail("%s: '%s' never logged", p->name, needle);
        }
        sleep_ms(5);
    }
}

static uint16_t ready_port(const struct proc *p)
{
    char *out;
    const char *at;
    unsigned port = 0;

    wait_out(p, "ready ", 1);
    out = slurp(p->out, NULL);
    at = strstr(out, "port=");
    cr_assert_not_null(at);
    sscanf(at, "port=%u", &port);
    free(out);
    return (uint16_t)port;
}

/* SIGTERM @p: it must stop gracefully, exit 0, and leave no sanitizer report. */
static void stop_clean(struct proc *p)
{
    int status = 0;

    kill(p->pid, SIGTERM);
    cr_assert(wait_exit(p->pid, 5000, &status), "%s did not exit on SIGTERM", p->name);
    p->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || log_has_sanitizer_report(p->err)) {
        proc_show(p);
        cr_assert_fail("%s exited uncleanly (status %d)", p->name, status);
    }
}

static void stop_all_clean(void)
{
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].pid > 0)
            stop_clean(&procs[i]);
    }
}

/* ---- A raw peer ------------------------------------------------------------------------------ */

/* A hand-made peer on a blocking socket, over TLS (tls != NULL) or plain TCP. */
struct raw {
    int fd;
    struct dist__tls_ctx *ctx;
    struct dist__tls *tls;
    struct dist_frame_reader r;
};

/* Send the ciphertext TLS has made. */
static void raw_pump(struct raw *w)
{
    uint8_t buf[16384];
    size_t n;

    while ((n = dist__tls_take(w->tls, buf, sizeof(buf))) > 0)
        send_raw(w->fd, buf, n);
}

static void raw_write(struct raw *w, const void *data, size_t len)
{
    if (w->tls == NULL) {
        send_raw(w->fd, data, len);
        return;
    }
    cr_assert_eq(dist__tls_write(w->tls, data, len), 0);
    raw_pump(w);
}

/* Bytes from the socket, decrypted once TLS is up; asserts on a closed socket. */
static size_t raw_read(struct raw *w, uint8_t *buf, size_t cap)
{
    for (;;) {
        if (w->tls != NULL && dist__tls_established(w->tls)) {
            int rc = dist__tls_read(w->tls, buf, cap);
            if (rc > 0)
                return (size_t)rc;
            cr_assert_eq(rc, DIST_EAGAIN_MORE, "raw peer: %s", dist__tls_reason(w->tls));
        }
        ssize_t n = recv(w->fd, buf, cap, 0);
        cr_assert_gt(n, 0, "raw peer: the node closed the connection");
        if (w->tls == NULL || !dist__tls_established(w->tls))
            return (size_t)n;
        cr_assert_eq(dist__tls_feed(w->tls, buf, (size_t)n), 0);
    }
}

static void raw_tls_handshake(struct raw *w)
{
    uint8_t buf[16384];

    cr_assert_eq(dist__tls_ctx_new(NULL, &w->ctx, NULL, 0), 0);
    cr_assert_eq(dist__tls_new(w->ctx, 0, NULL, &w->tls), 0);
    for (;;) {
        int rc = dist__tls_handshake(w->tls);
        raw_pump(w);
        if (rc == 0)
            return;
        cr_assert_eq(rc, DIST_EAGAIN_MORE, "raw peer TLS: %s", dist__tls_reason(w->tls));
        size_t n = raw_read(w, buf, sizeof(buf));
        cr_assert_eq(dist__tls_feed(w->tls, buf, n), 0);
    }
}

static void raw_send_frame(struct raw *w, const struct dist_frame *f)
{
    struct dist_outbuf b;

    dist__outbuf_init(&b);
    cr_assert_eq(dist__frame_encode(&b, f), 0);
    raw_write(w, dist__outbuf_data(&b), dist__outbuf_pending(&b));
    dist__outbuf_done(&b);
}

/* Read until a whole frame arrives. */
static void raw_next(struct raw *w, struct dist_frame *f)
{
    uint8_t buf[4096];

    for (;;) {
        int rc = dist__frame_reader_next(&w->r, f);
        cr_assert_geq(rc, 0, "raw peer: %s", dist_strerror(rc));
        if (rc == 1)
            return;
        size_t n = raw_read(w, buf, sizeof(buf));
        cr_assert_eq(dist__frame_reader_feed(&w->r, buf, n), 0);
    }
}

/* Connect to the node at @port as RAW_NAME and authenticate. */
static void raw_connect(struct raw *w, uint16_t port, int tls)
{
    struct dist__cookie ck = {.len = strlen(COOKIE)};
    uint8_t binding[DIST__TLS_BINDING_LEN];
    struct dist__hs hs;
    struct dist__hs_hello h;
    struct dist__hs_auth a;
    struct dist_frame f = {.kind = DIST_FRAME_HELLO};

    memset(w, 0, sizeof(*w));
    w->fd = dial(port);
    if (tls) {
        raw_tls_handshake(w);
        cr_assert_eq(dist__tls_binding(w->tls, binding), 0);
    }
    memcpy(ck.data, COOKIE, ck.len);
    cr_assert_eq(dist__hs_init(&hs, &ck, RAW_NAME, RAW_CREATE, 1), 0);
    cr_assert_eq(dist__hs_hello(&hs, &h), 0);
    f.u.hello.version = h.version;
    f.u.hello.node = RAW_NAME;
    f.u.hello.creation = h.creation;
    f.u.hello.nonce = (struct dist_bytes){h.nonce, h.nonce_len};
    raw_send_frame(w, &f);
    cr_assert_eq(dist__frame_reader_init(&w->r, NULL), 0);
    raw_next(w, &f);
    cr_assert_eq(f.kind, DIST_FRAME_HELLO);
    h = (struct dist__hs_hello){f.u.hello.version,  f.u.hello.node,       strlen(f.u.hello.node),
                                f.u.hello.creation, f.u.hello.nonce.data, f.u.hello.nonce.len,
                                f.u.hello.flags};
    cr_assert_eq(dist__hs_on_hello(&hs, &h, binding, tls ? sizeof(binding) : 0, &a), 0, "%s",
                 dist__hs_reason(&hs));
    f = (struct dist_frame){.kind = DIST_FRAME_AUTH, .u.auth.mac = {a.mac, a.mac_len}};
    raw_send_frame(w, &f);
    raw_next(w, &f);
    cr_assert_eq(f.kind, DIST_FRAME_AUTH);
    cr_assert_eq(
        dist__hs_on_auth(&hs, &(struct dist__hs_auth){f.u.auth.mac.data, f.u.auth.mac.len}), 0);
    dist__hs_done(&hs);
}

static void raw_close(struct raw *w)
{
    close(w->fd);
    dist__frame_reader_done(&w->r);
    dist__tls_free(w->tls);
    dist__tls_ctx_free(w->ctx);
    memset(w, 0, sizeof(*w));
}

/* Whether the node closes the connection within @ms; what it sends meanwhile is dropped. */
static int raw_closed_within(struct raw *w, unsigned ms)
{
    uint64_t deadline = mono_ms() + ms;
    uint8_t buf[4096];

    while (mono_ms() < deadline) {
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - mono_ms())) <= 0)
            continue;
        ssize_t n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
    }
    return 0;
}

/* Milliseconds until the node closes @fd (which sends nothing), bounded by @ms; -1 if not. */
static long ms_until_closed(int fd, unsigned ms)
{
    uint64_t start = mono_ms();
    int st = peer_state(fd, ms);

    return st == 1 ? (long)(mono_ms() - start) : -1;
}

/* ---- Tests ----------------------------------------------------------------------------------- */

Test(dist_node, three_nodes_exchange_messages_both_ways_over_tls)
{
    const char *const a_args[] = {"--echo",      "--send-to", "b@127.0.0.1", "--send-to",
                                  "c@127.0.0.1", "--count",   "20",          NULL};
    const char *const b_args[] = {"--echo",      "--send-to", "a@127.0.0.1", "--send-to",
                                  "c@127.0.0.1", "--count",   "20",          NULL};
    const char *const c_args[] = {"--echo",      "--send-to", "a@127.0.0.1", "--send-to",
                                  "b@127.0.0.1", "--count",   "20",          NULL};
    struct proc *n[3] = {node_start("a", a_args), node_start("b", b_args), node_start("c", c_args)};
    char needle[160];

    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i == j)
                continue;
            snprintf(needle, sizeof(needle), "recv from=%s type=embed.Ping len=16", n[j]->name);
            wait_out(n[i], needle, 20);
            snprintf(needle, sizeof(needle), "recv from=%s type=embed.Pong len=16", n[j]->name);
            wait_out(n[i], needle, 20);
        }
        cr_assert_eq(file_count(n[i]->out, "down "), 0, "%s saw a node go down", n[i]->name);
        cr_assert_eq(file_count(n[i]->out, "up "), 2, "%s: one up per peer", n[i]->name);
        cr_assert_not(file_contains(n[i]->err, "INSECURE"));
    }
    stop_all_clean();
}

Test(dist_node, insecure_mode_works_and_warns_at_start)
{
    const char *const a_args[] = {"--insecure", "--send-to", "b@127.0.0.1", "--count", "5", NULL};
    const char *const b_args[] = {"--insecure", "--echo", NULL};
    struct proc *a = node_start("a", a_args);
    struct proc *b = node_start("b", b_args);

    wait_out(b, "recv from=a@127.0.0.1 type=embed.Ping", 5);
    wait_out(a, "recv from=b@127.0.0.1 type=embed.Pong", 5);
    cr_assert(file_contains(a->err, "[warning] INSECURE MODE"));
    cr_assert(file_contains(b->err, "[warning] INSECURE MODE"));
    stop_all_clean();
}

Test(dist_node, killed_node_is_reported_down_within_the_tick_time)
{
    char tick[16];
    snprintf(tick, sizeof(tick), "%d", TICK_MS);
    const char *const args[] = {"--tick", tick, "--send-to", "c@127.0.0.1", NULL};
    const char *const c_args[] = {"--tick", tick, NULL};
    struct proc *c = node_start("c", c_args);
    struct proc *a = node_start("a", args);
    struct proc *b = node_start("b", args);
    uint64_t killed;

    wait_out(a, "up c@127.0.0.1", 1);
    wait_out(b, "up c@127.0.0.1", 1);
    kill(c->pid, SIGKILL);
    killed = mono_ms();
    wait_out(a, "down c@127.0.0.1 ", 1);
    wait_out(b, "down c@127.0.0.1 ", 1);
    cr_assert_leq(mono_ms() - killed, TICK_MS, "down reported after the tick time");
    for (int i = 0; i < 2; i++) {
        struct proc *p = i == 0 ? a : b;
        cr_assert(file_contains(p->out, "down c@127.0.0.1 connection_closed") ||
                  file_contains(p->out, "down c@127.0.0.1 heartbeat_timeout"));
    }
    proc_reap(c);
    stop_all_clean();
}

/* Start b, then a sending one message to b, both with tick time @tick; wait until both are up. */
static void start_pair(const char *tick, struct proc **a, struct proc **b)
{
    const char *const a_args[] = {"--tick", tick, "--send-to", "b@127.0.0.1", NULL};
    const char *const b_args[] = {"--tick", tick, NULL};

    *b = node_start("b", b_args);
    *a = node_start("a", a_args);
    wait_out(*a, "up b@127.0.0.1", 1);
    wait_out(*b, "up a@127.0.0.1", 1);
}

Test(dist_node, silent_peer_is_down_with_heartbeat_timeout)
{
    struct proc *a, *b;
    uint64_t stopped;

    start_pair("1000", &a, &b);
    kill(b->pid, SIGSTOP);
    stopped = mono_ms();
    wait_out(a, "down b@127.0.0.1 heartbeat_timeout", 1);
    cr_assert_geq(mono_ms() - stopped, 700, "down before the peer could have been silent");
    cr_assert_leq(mono_ms() - stopped, 2500);
    proc_reap(b);
    stop_all_clean();
}

Test(dist_node, quiet_connection_is_kept_alive_by_ticks)
{
    struct proc *a, *b;

    start_pair("600", &a, &b);
    /*
     * An observation window of four tick times with no messages: without ticks both sides
     * would report heartbeat_timeout within the first 750 ms of it.
     */
    sleep_ms(2500);
    cr_assert_not(file_contains(a->out, "down "));
    cr_assert_not(file_contains(b->out, "down "));
    stop_all_clean();
}

Test(dist_node, graceful_stop_is_reported_as_graceful_shutdown)
{
    const char *const a_args[] = {"--send-to", "b@127.0.0.1", NULL};
    struct proc *b = node_start("b", NULL);
    struct proc *a = node_start("a", a_args);

    wait_out(a, "up b@127.0.0.1", 1);
    wait_out(b, "recv from=a@127.0.0.1", 1);
    stop_clean(b);
    wait_out(a, "down b@127.0.0.1 graceful_shutdown", 1);
    stop_all_clean();
}

Test(dist_node, wrong_cookie_is_refused_on_both_sides)
{
    const char *const a_args[] = {"--cookie", "another-cookie", "--send-to", "b@127.0.0.1", NULL};
    struct proc *b = node_start("b", NULL);
    struct proc *a = node_start("a", a_args);

    wait_out(a, "down b@127.0.0.1 auth_failed", 1);
    wait_out(b, "down a@127.0.0.1 auth_failed", 1);
    wait_err(a, "wrong MAC");
    wait_err(b, "wrong MAC");
    cr_assert_not(file_contains(a->out, "up "));
    cr_assert_not(file_contains(b->out, "up "));
    stop_all_clean();
}

Test(dist_node, plain_client_on_tls_port_is_dropped_and_others_are_served)
{
    const char *const a_args[] = {"--send-to", "b@127.0.0.1", NULL};
    static const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
    struct proc *b = node_start("b", NULL);
    int fd = dial(ready_port(b));
    long ms;

    send_raw(fd, garbage, sizeof(garbage) - 1);
    ms = ms_until_closed(fd, 3000);
    close(fd);
    cr_assert(ms >= 0 && ms <= 1500, "the plain client was kept for %ld ms", ms);
    wait_err(b, "does not speak TLS");
    node_start("a", a_args);
    wait_out(b, "recv from=a@127.0.0.1", 1);
    stop_all_clean();
}

Test(dist_node, stalled_client_is_dropped_within_the_handshake_timeout)
{
    const char *const a_args[] = {"--send-to", "b@127.0.0.1", NULL};
    struct proc *b = node_start("b", NULL);
    int fd = dial(ready_port(b));
    long ms;

    /* The node keeps serving others while the stalled client waits. */
    node_start("a", a_args);
    wait_out(b, "recv from=a@127.0.0.1", 1);
    ms = ms_until_closed(fd, 4000);
    close(fd);
    cr_assert(ms >= 0, "the stalled client was never dropped");
    cr_assert_leq(ms, 1500, "dropped after %ld ms, the timeout is %s ms", ms, HS_TIMEOUT);
    wait_err(b, "handshake not done");
    stop_all_clean();
}

Test(dist_node, simultaneous_connect_ends_with_one_connection)
{
    static const char *const names[][2] = {{"p1", "q1"}, {"p2", "q2"}, {"p3", "q3"}};

    for (int round = 0; round < 3; round++) {
        char pn[64], qn[64];
        snprintf(pn, sizeof(pn), "%s@127.0.0.1", names[round][0]);
        snprintf(qn, sizeof(qn), "%s@127.0.0.1", names[round][1]);
        const char *const p_args[] = {"--send-to", qn, "--count", "5", NULL};
        const char *const q_args[] = {"--send-to", pn, "--count", "5", NULL};
        struct proc *p = node_start(names[round][0], p_args);
        struct proc *q = node_start(names[round][1], q_args);
        char needle[160];

        snprintf(needle, sizeof(needle), "recv from=%s", qn);
        wait_out(p, needle, 5);
        snprintf(needle, sizeof(needle), "recv from=%s", pn);
        wait_out(q, needle, 5);
        cr_assert_eq(file_count(p->out, "up "), 1, "%s reported %d ups", pn,
                     file_count(p->out, "up "));
        cr_assert_eq(file_count(q->out, "up "), 1, "%s reported %d ups", qn,
                     file_count(q->out, "up "));
        cr_assert_not(file_contains(p->out, "down "));
        cr_assert_not(file_contains(q->out, "down "));
        stop_clean(p);
        stop_clean(q);
    }
}

Test(dist_node, messages_wait_for_a_node_that_starts_later)
{
    const char *const a_args[] = {"--send-to", "b@127.0.0.1", "--count", "3", NULL};
    struct proc *a = node_start("a", a_args);
    struct proc *b;

    /* b is not registered yet: the lookup fails and a retries with backoff. */
    wait_err(a, "cannot reach b@127.0.0.1");
    b = node_start("b", NULL);
    wait_out(b, "recv from=a@127.0.0.1", 3);
    wait_out(a, "up b@127.0.0.1", 1);
    stop_all_clean();
}

/* Run EMBED_BIN with @args; its exit status, with stdout and stderr in *out (freed by caller). */
static int run_example(const char *const *args, char **out)
{
    char path[128];
    char *argv[8] = {EMBED_BIN};
    int argc = 1, status = -1, fd;
    pid_t pid;

    snprintf(path, sizeof(path), "%s/example.out", dir);
    for (; *args != NULL && argc < 7; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    pid = spawn(argv, fd, fd);
    close(fd);
    if (!wait_exit(pid, 5000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        cr_assert_fail("%s did not exit", EMBED_BIN);
    }
    *out = slurp(path, NULL);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* EMBED_BIN with @args exits with @status and says @text. */
static void expect_example(const char *const *args, int status, const char *text)
{
    char *out;
    int st = run_example(args, &out);

    cr_assert_eq(st, status, "%s: exit status %d, expected %d", args[0], st, status);
    cr_assert(strstr(out, text) != NULL, "%s: no '%s' in:\n%s", args[0], text, out);
    free(out);
}

Test(dist_node, example_program_explains_itself_and_refuses_bad_input)
{
    static const char *const help[] = {"--help", NULL};
    static const char *const version[] = {"--version", NULL};
    static const char *const no_name[] = {"--count", "3", NULL};
    static const char *const bad_count[] = {"--name", "a@127.0.0.1", "--count", "many", NULL};
    static const char *const bad_name[] = {"--name", "no-host", "--cookie", "c", NULL};
    static const char *const stray[] = {"--name", "a@127.0.0.1", "extra", NULL};
    static const char *const long_poll[] = {"--name", "a@127.0.0.1", "--busy-poll", "1000001",
                                            NULL};

    expect_example(help, 0, "usage: embed_libdist");
    expect_example(version, 0, "embed_libdist ");
    expect_example(no_name, 2, "--name is required");
    expect_example(bad_count, 2, "bad number 'many'");
    expect_example(stray, 2, "unexpected argument 'extra'");
    expect_example(long_poll, 2, "bad number '1000001'");
    expect_example(bad_name, 1, "invalid node name");
}

/* c talks to b; a raw peer authenticates, then sends a frame that does not decode. */
static void malformed_case(int insecure)
{
    const char *const b_args[] = {insecure ? "--insecure" : "--echo", NULL};
    const char *const c_args[] = {"--send-to", "b@127.0.0.1", insecure ? "--insecure" : NULL, NULL};
    static const uint8_t bad[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
    struct proc *b = node_start("b", b_args);
    struct proc *c = node_start("c", c_args);
    uint16_t port = ready_port(b);
    struct dist_frame f = {.kind = DIST_FRAME_SEND};
    struct raw w;

    wait_out(b, "up c@127.0.0.1", 1);
    raw_connect(&w, port, !insecure);
    wait_out(b, "up " RAW_NAME, 1);
    raw_write(&w, bad, sizeof(bad));
    cr_assert(raw_closed_within(&w, 3000), "the node kept a malformed connection");
    raw_close(&w);
    wait_out(b, "down " RAW_NAME " protocol_error", 1);
    wait_err(b, "malformed input");

    /* The node still serves: a fresh connection delivers, and c never went down. */
    raw_connect(&w, port, !insecure);
    f.u.send.to.name = "inbox";
    f.u.send.type = "raw.Hello";
    f.u.send.payload = (struct dist_bytes){(const uint8_t *)"hi", 2};
    raw_send_frame(&w, &f);
    wait_out(b, "recv from=" RAW_NAME " type=raw.Hello len=2", 1);
    raw_close(&w);
    cr_assert_not(file_contains(b->out, "down c@127.0.0.1"));
    cr_assert_not(file_contains(c->out, "down "));
    stop_all_clean();
}

Test(dist_node, malformed_frame_after_auth_closes_only_that_connection)
{
    malformed_case(0);
}

Test(dist_node, malformed_frame_after_auth_closes_only_that_connection_insecure)
{
    malformed_case(1);
}

/* ---- The busy test runs a node in this process ----------------------------------------------- */

struct local_state {
    int ready, up;
};

static void local_ready(struct dist_node *n, uint32_t creation, void *ud)
{
    ((struct local_state *)ud)->ready = 1;
}

static void local_up(struct dist_node *n, const char *name, void *ud)
{
    ((struct local_state *)ud)->up = 1;
}

static void local_log(int level, const char *msg, void *ud)
{
    if (level <= DIST_EPMD_LOG_WARN)
        cr_log_info("local node: %s", msg);
}

/* Run the loop until *flag is set or @ms pass. */
static int run_until_flag(const int *flag, unsigned ms)
{
    uint64_t deadline = mono_ms() + ms;

    while (!*flag && mono_ms() < deadline)
        ev_run(loop, EVRUN_NOWAIT);
    return *flag;
}

Test(dist_node, send_reports_busy_past_the_high_water_mark)
{
    static const struct dist_node_handlers h = {.on_ready = local_ready, .on_node_up = local_up};
    struct dist_node_opts o = {.name = "local@127.0.0.1",
                               .epmd_port = d.port,
                               .cookie = COOKIE,
                               .queue_high_water = HIGH_WATER,
                               .log_cb = local_log};
    struct local_state st = {0};
    struct proc *b = node_start("b", NULL);
    static uint8_t payload[BUSY_MSG];
    int rc = 0, tries;

    loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_eq(dist_node_new(loop, &o, &local), 0);
    cr_assert_eq(dist_node_start(local, &h, &st), 0);
    cr_assert(run_until_flag(&st.ready, WAIT_MS), "the local node never registered");
    wait_out(b, "ready ", 1);
    cr_assert_eq(dist_node_send(local, NULL, b->name, NULL, "inbox", "t", "x", 1), 0);
    cr_assert(run_until_flag(&st.up, WAIT_MS), "b never came up");

    /* b stops reading: the socket buffers fill, then the queue, then sends are refused. */
    kill(b->pid, SIGSTOP);
    for (tries = 0; tries < BUSY_TRIES; tries++) {
        rc = dist_node_send(local, NULL, b->name, NULL, "inbox", "t", payload, sizeof(payload));
        if (rc != 0)
            break;
        ev_run(loop, EVRUN_NOWAIT);
    }
    cr_assert_eq(rc, DIST_EBUSY, "after %d sends: %s", tries, dist_strerror(rc));
    cr_assert_geq(dist_node_peer_pending(local, b->name), HIGH_WATER);
    cr_assert_lt(dist_node_peer_pending(local, b->name), HIGH_WATER + 2 * BUSY_MSG);

    /* Once b reads again the queue drains and sends are taken again. */
    kill(b->pid, SIGCONT);
    uint64_t deadline = mono_ms() + WAIT_MS;
    while (dist_node_peer_pending(local, b->name) >= HIGH_WATER && mono_ms() < deadline)
        ev_run(loop, EVRUN_NOWAIT);
    cr_assert_eq(dist_node_send(local, NULL, b->name, NULL, "inbox", "t", "x", 1), 0);
    dist_node_free(local);
    local = NULL;
    stop_all_clean();
}

/* ---- epmd restarts --------------------------------------------------------------------------- */

Test(dist_node, node_reregisters_after_epmd_restart_and_is_found)
{
    const char *const a_args[] = {"--verbose", NULL};
    const char *const c_args[] = {"--send-to", "a@127.0.0.1", NULL};
    struct proc *a = node_start("a", a_args);

    wait_out(a, "ready ", 1);
    daemon_kill(&d);
    wait_err(a, "epmd unreachable");
    daemon_restart(&d);
    wait_err(a, "registered with epmd again");
    node_start("c", c_args);
    wait_out(a, "recv from=c@127.0.0.1", 1);
    stop_all_clean();
}
