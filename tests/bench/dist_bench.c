/*
 * dist_bench.c: our side of the dist suite: two libdist nodes in two processes on 127.0.0.1,
 * over TLS 1.3 (the default) or plain TCP (--insecure), using the node API of dist.h directly.
 * tests/bench/erlang/dist_bench.erl does the same work between two Erlang nodes; scripts/bench
 * runs both side by side. See /work/shared/BENCHMARKS.md.
 *
 * This file is the driver: the options, the benches, the method and the report. The peer's side
 * is in dist_bench_peer.c, and what the two share in dist_bench.h.
 *
 * The driver starts its node, then forks and execs itself as the peer, which says ready:
 *
 *     driver  bench_a_PID@127.0.0.1                  peer  bench_b_PID@127.0.0.1
 *       <------------------------------------ Ready (its pid; the peer dialled)
 *       Ping (seq) ------------------------------>   Pong (the same payload)
 *       Call (ref) ------------------------------>   Reply (the same ref)
 *       Data x N ... Last ------------------------>  counts; Done (the count)
 *       Quit ------------------------------------->  stops its node and exits
 *
 *   rtt           50,000 strictly sequential Ping/Pong round trips
 *   call          20,000 calls: a Send of kind call carrying a reference, answered by a Send
 *                 of kind reply carrying it back. At this layer that is the same round trip as
 *                 rtt; there is no monitor.
 *   stream_small  1,000,000 one-way 16-byte messages, then Last; timed until Done arrives
 *   stream_1k     300,000 one-way 1 KiB messages, the same way
 *   stream_64k    10,000 one-way 64 KiB messages, the same way (MB/s, 1 MB = 10^6 bytes)
 *   hol_p99       a Ping due every millisecond from one sender (2,000 of them), each timed
 *                 from when it was due to its Pong, while a second sender streams 1 MiB
 *                 messages, one per loop iteration, as fast as the queue takes them; the 99th
 *                 percentile of the round trips. A ping with no Pong 10 s after the last was
 *                 due counts as 10 s (a lower bound), and the row says how many were lost.
 *   connect       100 cycles: a fresh node (made and registered with epmd before the clock
 *                 starts) sends to the peer, which looks the peer up in epmd, connects and
 *                 shakes hands; the clock stops when the node has said goodbye and closed
 *
 * Senders honour DIST_EBUSY: when the queue is over its high-water mark, the driver runs the
 * loop until the socket drains and tries again. Between bursts it runs the loop without
 * blocking, so frames go out while more are made.
 *
 * Method (Savina's): --iterations runs (default 5), drop those outside +-20 % of the median,
 * report the median of the rest. Every wait has a deadline (--timeout, 120 s per run), an
 * alarm ends a process that overruns it by far, and the peer dies with the driver
 * (PR_SET_PDEATHSIG); the driver kills and reaps it on every way out.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <ev.h>

#include "bench_stats.h"
#include "dist.h"
#include "dist_bench.h"

#define BENCH_TIMEOUT_S   120.0 /* default bound on one run */
#define BENCH_ITERS       5
#define BENCH_MAX_ITERS   100
#define BENCH_START_S     30.0 /* bound on starting a node, the peer, each connect cycle */
#define BENCH_QUIT_S      5.0  /* for the peer to leave before it is killed */
#define BENCH_BATCH_BYTES (256u * 1024u) /* queued between two non-blocking loop runs */
#define BENCH_COOKIE      "dist-bench-cookie"
#define RTT_N             50000u
#define CALL_N            20000u
#define SMALL_N           1000000u
#define SMALL_SIZE        16u
#define K1_N              300000u
#define K1_SIZE           1024u
#define K64_N             10000u
#define K64_SIZE          (64u * 1024u)
#define HOL_PINGS         2000u
#define HOL_BULK_SIZE     (1024u * 1024u)
#define HOL_INTERVAL_S    0.001
#define HOL_GRACE_S       10.0 /* how long after the last ping's due time pongs may come */
#define CONNECT_N         100u
#define PID_PING          1u /* the driver's senders, by process id */
#define PID_BULK          2u

/* The parsed options: this program's only globals. */
struct bench_opts opt = {.iters = BENCH_ITERS, .timeout = BENCH_TIMEOUT_S};

/* The driver's state, passed to every callback. */
struct bench {
    struct ev_loop *loop;
    struct dist_node *node;
    char name[64];
    char peer_name[64];
    struct dist_pid peer_pid; /* the peer's process, from its Ready */
    pid_t child;
    uint32_t creation;
    ev_timer deadline; /* the current wait's bound */
    int expired;
    int peer_down;
    char error[256];
    /* rtt, call */
    uint64_t replies;
    uint32_t call_tag; /* the ref's second word: which run a reply belongs to */
    /* streams */
    int done;
    uint64_t done_count;
    /* hol_p99 */
    ev_timer ping_timer;
    double *sent_at, *rtt;
    uint32_t pings_sent, pongs;
    double hol_start;  /* when ping 0 is due */
    int ping_waiting;  /* a due ping waits for room in the queue */
    uint64_t hol_lost; /* pings never answered, over every run */
    /* connect: the cycle's node */
    int cycle_ready, cycle_up;
};

struct result {
    double value; /* the median of the kept runs: seconds, or hol_p99's p99 in seconds */
    int kept;
    double extra;  /* hol_p99: the bulk stream's MB/s, median */
    uint64_t lost; /* hol_p99: pings never answered, over every run */
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *role(void)
{
    return opt.peer != NULL ? "peer" : "driver";
}

static void log_cb(int level, const char *msg, void *user_data)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    (void)user_data;
    /* Insecure mode is what --insecure asks for: its warning says nothing new here. */
    if (level > DIST_EPMD_LOG_WARN && !opt.verbose)
        return;
    if (strncmp(msg, "INSECURE MODE", 13) == 0 && !opt.verbose)
        return;
    fprintf(stderr, "dist_bench (%s) [%s] %s\n", role(), names[level & 3], msg);
}

static int fail(struct bench *b, const char *what, int err)
{
    if (b->error[0] == '\0') {
        if (err != 0)
            snprintf(b->error, sizeof b->error, "%s: %s", what, dist_strerror(err));
        else
            snprintf(b->error, sizeof b->error, "%s", what);
    }
    return -1;
}

struct dist_node_opts bench_node_opts(const char *name)
{
    return (struct dist_node_opts){
        .name = name,
        .epmd_port = opt.epmd_port,
        .cookie = BENCH_COOKIE,
        .insecure = opt.insecure,
        .log_cb = log_cb,
    };
}

/* ---- Waiting ------------------------------------------------------------------------------- */

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bench *b = w->data;

    (void)loop;
    (void)revents;
    b->expired = 1;
}

/* Bound the waits that follow by @seconds from now. */
static void deadline_arm(struct bench *b, double seconds)
{
    b->expired = 0;
    ev_timer_stop(b->loop, &b->deadline);
    ev_timer_set(&b->deadline, seconds, 0.);
    ev_timer_start(b->loop, &b->deadline);
    alarm((unsigned)seconds + 30); /* a hang where the loop never returns */
}

/* One loop iteration (@flags: EVRUN_ONCE blocks, EVRUN_NOWAIT does not); 0, or -1 on failure. */
static int step(struct bench *b, int flags)
{
    ev_run(b->loop, flags);
    if (b->error[0] != '\0')
        return -1;
    if (b->peer_down)
        return fail(b, "the peer went down", 0);
    if (b->expired)
        return fail(b, "no result within the deadline", 0);
    return 0;
}

static int send_to_peer(struct bench *b, uint64_t from_id, const char *type, const void *data,
                        size_t len)
{
    struct dist_pid from = {from_id, 0, b->creation};

    return dist_node_send(b->node, &from, NULL, &b->peer_pid, NULL, type, data, len);
}

/* Send, running the loop while the queue is busy. */
static int send_retry(struct bench *b, uint64_t from_id, const char *type, const void *data,
                      size_t len)
{
    for (;;) {
        int rc = send_to_peer(b, from_id, type, data, len);
        if (rc == 0)
            return 0;
        if (rc != DIST_EBUSY)
            return fail(b, type, rc);
        if (step(b, EVRUN_ONCE) != 0)
            return -1;
    }
}

/* ---- The driver's node ---------------------------------------------------------------------- */

static void hol_pong(struct bench *b, const struct dist_msg *m)
{
    uint32_t seq;

    if (m->len != sizeof seq)
        return;
    memcpy(&seq, m->payload, sizeof seq);
    if (seq < b->pings_sent && b->rtt[seq] < 0) {
        b->rtt[seq] = now_s() - b->sent_at[seq];
        b->pongs++;
    }
}

static void driver_message(struct dist_node *node, const struct dist_msg *m, const char *from_node,
                           void *user_data)
{
    struct bench *b = user_data;

    (void)node;
    (void)from_node;
    if (m->kind != DIST_MSG_SEND)
        return;
    if (strcmp(m->type, T_PONG) == 0) {
        if (b->rtt != NULL)
            hol_pong(b, m);
        else
            b->replies++;
    } else if (strcmp(m->type, T_REPLY) == 0) {
        if (m->send_kind != DIST_SEND_KIND_REPLY || m->ref.n[0] != b->replies + 1 ||
            m->ref.n[1] != b->call_tag || m->ref.node != 0)
            fail(b, "a reply with the wrong kind or reference", 0);
        b->replies++;
    } else if (strcmp(m->type, T_DONE) == 0 && m->len == sizeof b->done_count) {
        memcpy(&b->done_count, m->payload, sizeof b->done_count);
        b->done = 1;
    } else if (strcmp(m->type, T_READY) == 0) {
        b->peer_pid = m->from;
    }
}

static void driver_ready(struct dist_node *node, uint32_t creation, void *user_data)
{
    struct bench *b = user_data;

    (void)node;
    b->creation = creation;
}

static void driver_down(struct dist_node *node, const char *name, int reason, void *user_data)
{
    struct bench *b = user_data;

    (void)node;
    if (strcmp(name, b->peer_name) == 0) {
        b->peer_down = 1;
        if (opt.verbose)
            fprintf(stderr, "dist_bench: the peer went down: %s\n", dist_down_reason_name(reason));
    }
}

/* ---- rtt and call --------------------------------------------------------------------------- */

static int run_rtt(struct bench *b, double *secs)
{
    double t0 = now_s();

    b->replies = 0;
    for (uint64_t i = 0; i < RTT_N; i++) {
        if (send_retry(b, PID_PING, T_PING, &i, sizeof i) != 0)
            return -1;
        while (b->replies <= i) {
            if (step(b, EVRUN_ONCE) != 0)
                return -1;
        }
    }
    *secs = now_s() - t0;
    return 0;
}

static int run_call(struct bench *b, double *secs)
{
    struct dist_msg m = {
        .kind = DIST_MSG_SEND,
        .from = {PID_PING, 0, b->creation},
        .to = b->peer_pid,
        .type = T_CALL,
        .send_kind = DIST_SEND_KIND_CALL,
        .ref = {0, b->creation, {0, 0, 0}},
    };
    double t0 = now_s();

    b->replies = 0;
    b->call_tag++;
    for (uint32_t i = 0; i < CALL_N; i++) {
        m.ref.n[0] = i + 1;
        m.ref.n[1] = b->call_tag;
        m.payload = &i;
        m.len = sizeof i;
        int rc = dist_node_post(b->node, b->peer_name, &m);
        if (rc != 0)
            return fail(b, "call", rc);
        while (b->replies <= i) {
            if (step(b, EVRUN_ONCE) != 0)
                return -1;
        }
    }
    *secs = now_s() - t0;
    return 0;
}

/* ---- Streams -------------------------------------------------------------------------------- */

/* Send @n messages of @size from @payload, as fast as the queue takes them. */
static int stream_send(struct bench *b, uint64_t from_id, const uint8_t *payload, size_t size,
                       uint64_t n)
{
    size_t burst = 0;

    for (uint64_t i = 0; i < n;) {
        int rc = send_to_peer(b, from_id, T_DATA, payload, size);
        if (rc == DIST_EBUSY) {
            burst = 0;
            if (step(b, EVRUN_ONCE) != 0)
                return -1;
            continue;
        }
        if (rc != 0)
            return fail(b, "stream", rc);
        i++;
        burst += size + 64;
        if (burst >= BENCH_BATCH_BYTES) {
            burst = 0;
            if (step(b, EVRUN_NOWAIT) != 0)
                return -1;
        }
    }
    return 0;
}

/* Send Last and wait for Done; check that the peer counted @n messages. */
static int stream_end(struct bench *b, uint64_t from_id, uint64_t n)
{
    b->done = 0;
    if (send_retry(b, from_id, T_LAST, NULL, 0) != 0)
        return -1;
    while (!b->done) {
        if (step(b, EVRUN_ONCE) != 0)
            return -1;
    }
    if (b->done_count != n) {
        snprintf(b->error, sizeof b->error, "the peer counted %" PRIu64 " messages of %" PRIu64,
                 b->done_count, n);
        return -1;
    }
    return 0;
}

static int run_stream(struct bench *b, size_t size, uint64_t n, double *secs)
{
    uint8_t *payload = calloc(1, size);
    double t0 = now_s();
    int rc;

    if (payload == NULL)
        return fail(b, "out of memory", 0);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)i;
    rc = stream_send(b, PID_PING, payload, size, n);
    if (rc == 0)
        rc = stream_end(b, PID_PING, n);
    *secs = now_s() - t0;
    free(payload);
    return rc;
}

static int run_small(struct bench *b, double *secs)
{
    return run_stream(b, SMALL_SIZE, SMALL_N, secs);
}

static int run_1k(struct bench *b, double *secs)
{
    return run_stream(b, K1_SIZE, K1_N, secs);
}

static int run_64k(struct bench *b, double *secs)
{
    return run_stream(b, K64_SIZE, K64_N, secs);
}

/* ---- hol_p99 -------------------------------------------------------------------------------- */

/*
 * Ping i is due at hol_start + i ms, and its round trip counts from then, so the time it
 * waits for room in a busy queue counts too. Send every ping that is due, in order.
 */
static void ping_due(struct bench *b)
{
    double now = now_s();

    b->ping_waiting = 0;
    while (b->pings_sent < HOL_PINGS) {
        uint32_t seq = b->pings_sent;
        double due = b->hol_start + seq * HOL_INTERVAL_S;
        int rc;
        if (due > now)
            return;
        rc = send_to_peer(b, PID_PING, T_PING, &seq, sizeof seq);
        if (rc == DIST_EBUSY) {
            b->ping_waiting = 1;
            return;
        }
        if (rc != 0) {
            fail(b, "hol ping", rc);
            return;
        }
        b->sent_at[seq] = due;
        b->pings_sent++;
    }
}

static void ping_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bench *b = w->data;

    (void)revents;
    ping_due(b);
    if (b->pings_sent == HOL_PINGS)
        ev_timer_stop(loop, w);
}

/*
 * Stream 1 MiB messages until every ping has its pong, or HOL_GRACE_S after the last ping was
 * due; @bulk gets how many went.
 */
static int hol_stream(struct bench *b, const uint8_t *big, uint64_t *bulk)
{
    double end = b->hol_start + HOL_PINGS * HOL_INTERVAL_S + HOL_GRACE_S;

    while (b->pongs < HOL_PINGS && now_s() < end) {
        int flags = EVRUN_ONCE;
        if (b->ping_waiting)
            ping_due(b);
        /* One message per loop iteration, as an actor sends one per turn, so the loop (and
           the ping timer) keeps turning; none while a ping waits for room, so that the
           stream does not take the room first. */
        if (!b->ping_waiting) {
            int rc = send_to_peer(b, PID_BULK, T_DATA, big, HOL_BULK_SIZE);
            if (rc != 0 && rc != DIST_EBUSY)
                return fail(b, "hol stream", rc);
            if (rc == 0) {
                (*bulk)++;
                flags = EVRUN_NOWAIT;
            }
        }
        if (step(b, flags) != 0)
            return -1;
    }
    return 0;
}

/* The p99 of the round trips; a ping never answered counts as HOL_GRACE_S, a lower bound. */
static double hol_p99_of(struct bench *b)
{
    for (uint32_t i = 0; i < HOL_PINGS; i++) {
        if (b->rtt[i] < 0) {
            b->rtt[i] = HOL_GRACE_S;
            b->hol_lost++;
        }
    }
    qsort(b->rtt, HOL_PINGS, sizeof *b->rtt, cmp_double);
    if (opt.verbose)
        fprintf(stderr, "dist_bench: hol_p99: p50 %.0f us, p90 %.0f us, max %.0f us\n",
                b->rtt[HOL_PINGS / 2] * 1e6, b->rtt[HOL_PINGS * 9 / 10] * 1e6,
                b->rtt[HOL_PINGS - 1] * 1e6);
    return b->rtt[(size_t)ceil(0.99 * HOL_PINGS) - 1];
}

static int run_hol(struct bench *b, double *p99, double *mb_per_s)
{
    uint8_t *big = calloc(1, HOL_BULK_SIZE);
    uint64_t bulk = 0;
    double t0 = now_s(), secs;
    int rc = -1;

    b->sent_at = calloc(HOL_PINGS, sizeof *b->sent_at);
    b->rtt = malloc(HOL_PINGS * sizeof *b->rtt);
    b->pings_sent = b->pongs = 0;
    b->ping_waiting = 0;
    if (big == NULL || b->sent_at == NULL || b->rtt == NULL) {
        fail(b, "out of memory", 0);
        goto out;
    }
    for (uint32_t i = 0; i < HOL_PINGS; i++)
        b->rtt[i] = -1;
    b->hol_start = now_s() + HOL_INTERVAL_S;
    ev_timer_set(&b->ping_timer, HOL_INTERVAL_S, HOL_INTERVAL_S);
    ev_timer_start(b->loop, &b->ping_timer);
    rc = hol_stream(b, big, &bulk);
    ev_timer_stop(b->loop, &b->ping_timer);
    if (rc == 0)
        rc = stream_end(b, PID_BULK, bulk);
    secs = now_s() - t0;
    if (rc == 0) {
        *p99 = hol_p99_of(b);
        *mb_per_s = (double)bulk * HOL_BULK_SIZE / secs / 1e6;
    }
out:
    free(big);
    free(b->sent_at);
    free(b->rtt);
    b->sent_at = b->rtt = NULL;
    return rc;
}

/* ---- connect -------------------------------------------------------------------------------- */

static void cycle_ready(struct dist_node *node, uint32_t creation, void *user_data)
{
    (void)node;
    (void)creation;
    ((struct bench *)user_data)->cycle_ready = 1;
}

static void cycle_up(struct dist_node *node, const char *name, void *user_data)
{
    (void)node;
    (void)name;
    ((struct bench *)user_data)->cycle_up = 1;
}

/* One cycle; @secs gets the time from the first send to the node's stop. */
static int connect_cycle(struct bench *b, unsigned i, double *secs)
{
    static const struct dist_node_handlers h = {cycle_ready, NULL, cycle_up, NULL};
    char name[64];
    struct dist_node_opts o;
    struct dist_node *node = NULL;
    double t0;
    int rc;

    snprintf(name, sizeof name, "bench_c%u_%ld@127.0.0.1", i, (long)getpid());
    o = bench_node_opts(name);
    b->cycle_ready = b->cycle_up = 0;
    rc = dist_node_new(b->loop, &o, &node);
    if (rc == 0)
        rc = dist_node_start(node, &h, b);
    if (rc != 0) {
        dist_node_free(node);
        return fail(b, "a connect cycle's node", rc);
    }
    while (rc == 0 && !b->cycle_ready)
        rc = step(b, EVRUN_ONCE);
    t0 = now_s();
    if (rc == 0) {
        int err = dist_node_send(node, NULL, b->peer_name, NULL, BENCH_INBOX, T_HELLO, NULL, 0);
        if (err != 0)
            rc = fail(b, "connect send", err);
    }
    while (rc == 0 && !b->cycle_up)
        rc = step(b, EVRUN_ONCE);
    dist_node_stop(node);
    *secs += now_s() - t0;
    dist_node_free(node);
    return rc;
}

static int run_connect(struct bench *b, double *secs)
{
    *secs = 0;
    for (unsigned i = 0; i < CONNECT_N; i++) {
        if (connect_cycle(b, i, secs) != 0)
            return -1;
    }
    return 0;
}

/* ---- The method and the report ------------------------------------------------------------ */

struct bench_spec {
    const char *name;
    uint64_t n;
    size_t size; /* payload bytes per message of a stream, else 0 */
    int (*run)(struct bench *b, double *secs);
};

static const struct bench_spec bench_specs[] = {
    {"rtt", RTT_N, 0, run_rtt},
    {"call", CALL_N, 0, run_call},
    {"stream_small", SMALL_N, SMALL_SIZE, run_small},
    {"stream_1k", K1_N, K1_SIZE, run_1k},
    {"stream_64k", K64_N, K64_SIZE, run_64k},
    {"hol_p99", HOL_PINGS, 0, NULL},
    {"connect", CONNECT_N, 0, run_connect},
};

#define BENCH_COUNT (sizeof bench_specs / sizeof bench_specs[0])

/* The fields a bench adds to its row, as JSON (",\"key\":value...") into @buf. */
static void report_extra(const struct bench_spec *s, const struct result *r, char *buf, size_t cap)
{
    if (s->run == NULL)
        snprintf(buf, cap, ",\"p99_us\":%.1f,\"bulk_mb_per_s\":%.1f,\"lost\":%" PRIu64,
                 r->value * 1e6, r->extra, r->lost);
    else if (s->size > 0)
        snprintf(buf, cap, ",\"mb_per_s\":%.1f", (double)s->n * (double)s->size / r->value / 1e6);
    else
        snprintf(buf, cap, ",\"us_per_op\":%.2f", r->value * 1e6 / (double)s->n);
}

/* One row: JSON with --json, else a line of text with the same fields. */
static void report(const struct bench_spec *s, const struct result *r)
{
    const char *tr = opt.insecure ? "tcp" : "tls";
    /* hol_p99's seconds is its p99 round trip, so its rate is one over that. */
    double rate = s->run == NULL ? 1.0 / r->value : (double)s->n / r->value;
    char extra[160], text[160];
    size_t k = 0;

    report_extra(s, r, extra, sizeof extra);
    if (opt.json) {
        printf("{\"suite\":\"dist\",\"bench\":\"%s\",\"impl\":\"ours\",\"transport\":\"%s\","
               "\"n\":%" PRIu64 ",\"seconds\":%.7f,\"ops_per_s\":%.0f,\"iterations\":%d,"
               "\"kept\":%d%s}\n",
               s->name, tr, s->n, r->value, rate, opt.iters, r->kept, extra);
    } else {
        for (const char *c = extra; *c != '\0'; c++) {
            if (*c != '"')
                text[k++] = *c == ',' ? ' ' : *c == ':' ? '=' : *c;
        }
        text[k] = '\0';
        printf("%-13s %s n=%-8" PRIu64 " %11.6f s  (%d of %d runs kept)%s\n", s->name, tr, s->n,
               r->value, r->kept, opt.iters, text);
    }
    fflush(stdout);
}

static int run_spec(struct bench *b, const struct bench_spec *s)
{
    double runs[BENCH_MAX_ITERS], extras[BENCH_MAX_ITERS];
    struct result r;
    int kept;

    b->hol_lost = 0;
    for (int it = 0; it < opt.iters; it++) {
        int rc;
        deadline_arm(b, opt.timeout);
        extras[it] = 0;
        rc = s->run != NULL ? s->run(b, &runs[it]) : run_hol(b, &runs[it], &extras[it]);
        if (rc != 0) {
            fprintf(stderr, "dist_bench: %s, run %d: %s\n", s->name, it + 1, b->error);
            return -1;
        }
        if (opt.verbose)
            fprintf(stderr, "dist_bench: %s run %d: %.6f s\n", s->name, it + 1, runs[it]);
    }
    r.value = savina_median(runs, opt.iters, &r.kept);
    r.extra = savina_median(extras, opt.iters, &kept);
    r.lost = b->hol_lost;
    report(s, &r);
    return 0;
}

/* ---- The driver ----------------------------------------------------------------------------- */

static int spawn_peer(struct bench *b)
{
    char port[8];
    pid_t parent = getpid();
    pid_t pid;

    snprintf(port, sizeof port, "%u", (unsigned)opt.epmd_port);
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return fail(b, "fork failed", -errno);
    if (pid == 0) {
        char *argv[] = {"dist_bench",  "--peer", b->peer_name, "--driver", b->name,
                        "--epmd-port", port,     NULL,         NULL,       NULL};
        int k = 7;
        if (opt.insecure)
            argv[k++] = "--insecure";
        if (opt.verbose)
            argv[k++] = "--verbose";
        /* The peer must not outlive the driver, however the driver ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execv("/proc/self/exe", argv);
        perror("dist_bench: exec of the peer");
        _exit(127);
    }
    b->child = pid;
    return 0;
}

static void stop_peer(struct bench *b)
{
    double end = now_s() + BENCH_QUIT_S;
    int status;

    if (b->child <= 0)
        return;
    if (b->peer_pid.id != 0 && !b->peer_down && send_to_peer(b, PID_PING, T_QUIT, NULL, 0) == 0) {
        b->error[0] = '\0';
        deadline_arm(b, BENCH_QUIT_S);
        while (step(b, EVRUN_ONCE) == 0)
            ;
    }
    while (waitpid(b->child, &status, WNOHANG) == 0) {
        if (now_s() > end) {
            kill(b->child, SIGKILL);
            waitpid(b->child, &status, 0);
            break;
        }
        usleep(10000);
    }
    b->child = 0;
}

/* Start our node, then the peer, and wait for the peer's Ready. */
static int driver_up(struct bench *b)
{
    static const struct dist_node_handlers h = {driver_ready, driver_message, NULL, driver_down};
    struct dist_node_opts o;
    int rc;

    snprintf(b->name, sizeof b->name, "bench_a_%ld@127.0.0.1", (long)getpid());
    snprintf(b->peer_name, sizeof b->peer_name, "bench_b_%ld@127.0.0.1", (long)getpid());
    o = bench_node_opts(b->name);
    rc = dist_node_new(b->loop, &o, &b->node);
    if (rc == 0)
        rc = dist_node_start(b->node, &h, b);
    if (rc != 0)
        return fail(b, "starting the driver's node", rc);
    deadline_arm(b, BENCH_START_S);
    while (b->creation == 0) {
        if (step(b, EVRUN_ONCE) != 0)
            return -1;
    }
    if (spawn_peer(b) != 0)
        return -1;
    while (b->peer_pid.id == 0) {
        if (step(b, EVRUN_ONCE) != 0)
            return -1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dist_bench --epmd-port PORT [--insecure] [--json] [--verbose]\n"
                 "                  [--iterations N] [--timeout SECONDS] [BENCH...]\n"
                 "BENCH: rtt call stream_small stream_1k stream_64k hol_p99 connect, or all\n"
                 "       (the default). An epmd must listen on 127.0.0.1:PORT.\n"
                 "Defaults: TLS 1.3, 5 iterations (Savina's median), 120 s per run.\n");
}

/* An option with a value at argv[*i]; 0, or -1 when unknown or bad. */
static int parse_valued(int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long v;

    if (val == NULL)
        return -1;
    (*i)++;
    if (strcmp(a, "--peer") == 0)
        opt.peer = val;
    else if (strcmp(a, "--driver") == 0)
        opt.driver = val;
    else if (strcmp(a, "--epmd-port") == 0 && parse_long(val, 1, 65535, &v) == 0)
        opt.epmd_port = (uint16_t)v;
    else if (strcmp(a, "--iterations") == 0 && parse_long(val, 1, BENCH_MAX_ITERS, &v) == 0)
        opt.iters = (int)v;
    else if (strcmp(a, "--timeout") == 0 && parse_long(val, 1, 3600, &v) == 0)
        opt.timeout = (double)v;
    else
        return -1;
    return 0;
}

/* Parse argv into opt and @selected; 0, 1 for help, or -1. */
static int parse_args(int argc, char **argv, int *selected)
{
    int any = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        size_t k = 0;
        if (strcmp(a, "--json") == 0) {
            opt.json = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            opt.verbose = 1;
        } else if (strcmp(a, "--insecure") == 0) {
            opt.insecure = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return 1;
        } else if (strncmp(a, "--", 2) == 0) {
            if (parse_valued(argc, argv, &i) != 0)
                return -1;
        } else if (strcmp(a, "all") == 0) {
            for (k = 0; k < BENCH_COUNT; k++)
                selected[k] = any = 1;
        } else {
            while (k < BENCH_COUNT && strcmp(a, bench_specs[k].name) != 0)
                k++;
            if (k == BENCH_COUNT)
                return -1;
            selected[k] = any = 1;
        }
    }
    for (size_t k = 0; !any && k < BENCH_COUNT; k++)
        selected[k] = 1;
    if (opt.epmd_port == 0 || (opt.peer != NULL && opt.driver == NULL))
        return -1;
    return 0;
}

static int driver_main(const int *selected)
{
    struct bench b = {.loop = ev_default_loop(EVFLAG_AUTO)};
    int rc = 0;

    if (b.loop == NULL)
        return 1;
    ev_timer_init(&b.deadline, deadline_cb, 0., 0.);
    ev_timer_init(&b.ping_timer, ping_timer_cb, 0., 0.);
    b.deadline.data = b.ping_timer.data = &b;
    if (driver_up(&b) != 0) {
        fprintf(stderr, "dist_bench: start: %s\n", b.error);
        rc = 1;
    }
    for (size_t k = 0; k < BENCH_COUNT && rc == 0; k++) {
        if (selected[k] && run_spec(&b, &bench_specs[k]) != 0)
            rc = 1;
    }
    stop_peer(&b);
    ev_timer_stop(b.loop, &b.deadline);
    alarm(0);
    dist_node_free(b.node);
    return rc;
}

int main(int argc, char **argv)
{
    int selected[BENCH_COUNT] = {0};
    int rc = parse_args(argc, argv, selected);

    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "dist_bench: bad option, value or bench (--epmd-port is required)\n");
        usage(rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (opt.peer != NULL)
        return bench_peer_main();
    return driver_main(selected);
}
