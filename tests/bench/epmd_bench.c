/*
 * epmd_bench.c: a benchmark client for any EPMD daemon listening on 127.0.0.1:PORT, ours or
 * Erlang's. It speaks only Erlang's protocol, so both daemons run the same work.
 *
 * A registration lives exactly as long as the connection that sent ALIVE2_REQ, so every
 * registered name costs this process one open socket. Each run goes:
 *
 *     register the base names (untimed) --> N iterations of one bench --> close, wait until
 *     the daemon has dropped our names (so the next run starts from an empty registry)
 *
 *   register  register --names names in sequence (ALIVE2 v6), each holding its connection
 *   lookup_1  PORT_PLEASE2 lookups from one thread, a new connection per lookup, read until
 *             the daemon closes, reply checked for the registered port
 *   lookup_8  the same from 8 threads
 *   names     NAMES requests, read until close, checked to list every base name
 *   capacity  register until the daemon refuses or --names are held (one pass, not timed)
 *
 * Method (Savina's): 12 iterations, drop runs outside +-20 % of the median, report the median
 * of the rest. Every socket has 5 s timeouts, and every loop a bound on its count and a deadline.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "dist.h"

#define BENCH_IO_TIMEOUT_S   5     /* per socket operation */
#define BENCH_BUDGET_S       120.0 /* per iteration, per setup, per capacity pass */
#define BENCH_DRAIN_S        10.0  /* for the daemon to drop names after we close */
#define BENCH_MAX_THREADS    8
#define BENCH_MAX_NAMES      100000
#define BENCH_MAX_OPS        10000000L
#define BENCH_MAX_ITERS      100
#define BENCH_NAME_MAX       48
#define BENCH_REPLY_MAX      512 /* a PORT2_RESP for one of our names, with room to spare */
#define BENCH_NAMES_LINE_MAX 64  /* "name <our name> at port <port>\n" */
#define BENCH_FD_SLACK       64  /* descriptors kept free for stdio, lookups, NAMES */

/* This program's errors, in a block far from errno and from libdist's codes. */
#define BENCH_ERR_MAP(X)                                                                           \
    X(EREFUSED, -40001, "registration refused (Result != 0)")                                      \
    X(ECLOSED, -40002, "the daemon closed the connection before a whole reply")                    \
    X(ENOTFOUND, -40003, "PORT2_RESP says not found")                                              \
    X(EBADPORT, -40004, "PORT2_RESP carries the wrong port or name")                               \
    X(ECOUNT, -40005, "NAMES does not list the expected names")                                    \
    X(EDEADLINE, -40006, "time budget exceeded")                                                   \
    X(ETOOBIG, -40007, "reply larger than expected")                                               \
    X(ETRAILING, -40008, "bytes after the reply")

enum bench_err {
#define BENCH_ERR_ENUM_(name, value, msg) BENCH_##name = (value),
    BENCH_ERR_MAP(BENCH_ERR_ENUM_)
#undef BENCH_ERR_ENUM_
};

enum bench_kind { BENCH_REGISTER, BENCH_LOOKUP_1, BENCH_LOOKUP_8, BENCH_NAMES, BENCH_CAPACITY };

struct bench_spec {
    const char *name;
    enum bench_kind kind;
    int threads;
    long default_ops; /* operations per iteration; 0 means one per name */
    long default_names;
    int needs_base; /* the base names are registered before the timed iterations */
};

/* Sized so that a whole run against Erlang's epmd (about 1.9 k lookups/s) takes seconds. */
static const struct bench_spec bench_specs[] = {
    {.name = "register", .kind = BENCH_REGISTER, .threads = 1, .default_names = 900},
    {.name = "lookup_1",
     .kind = BENCH_LOOKUP_1,
     .threads = 1,
     .default_ops = 2000,
     .default_names = 900,
     .needs_base = 1},
    {.name = "lookup_8",
     .kind = BENCH_LOOKUP_8,
     .threads = 8,
     .default_ops = 8000,
     .default_names = 900,
     .needs_base = 1},
    {.name = "names",
     .kind = BENCH_NAMES,
     .threads = 1,
     .default_ops = 20,
     .default_names = 900,
     .needs_base = 1},
    {.name = "capacity", .kind = BENCH_CAPACITY, .threads = 1, .default_names = 10000},
};

/* Parsed options: the program's only globals. */
static struct {
    int port;
    const char *impl;
    const struct bench_spec *spec;
    long names;
    long ops;
    int iters;
    int json;
    int verbose;   /* print every iteration's time to stderr */
    double wait_s; /* > 0: only poll until the daemon answers NAMES, then exit */
} opt = {.impl = "ours", .names = -1, .iters = 12};

struct bench_ctx {
    struct sockaddr_in addr;
    char prefix[24]; /* "eb<pid>_": our names never collide with another run's */
    int *held;       /* connections holding the base names */
    long nheld;
    uint8_t *names_buf; /* room for one NAMES reply */
    size_t names_cap;
    double deadline; /* monotonic seconds at which the current phase gives up */
};

static const char *bench_strerror(int err)
{
    switch (err) {
#define BENCH_ERR_CASE_(name, value, msg)                                                          \
    case BENCH_##name:                                                                             \
        return msg;
        BENCH_ERR_MAP(BENCH_ERR_CASE_)
#undef BENCH_ERR_CASE_
    default:
        return dist_strerror(err);
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Name i of generation gen. Generation 0 is the base set; register runs use one each. */
static int name_make(const struct bench_ctx *ctx, int gen, long i, char *buf, size_t cap)
{
    return snprintf(buf, cap, "%s%d_%ld", ctx->prefix, gen, i);
}

/* The port registered for name i: distinct for neighbours, so a mixed-up reply shows. */
static uint16_t name_port(long i)
{
    return (uint16_t)(1024 + i % 60000);
}

/* ---- Sockets --------------------------------------------------------------------------------- */

static int sock_connect(const struct bench_ctx *ctx)
{
    /* SO_SNDTIMEO also bounds connect() on Linux. */
    struct timeval tv = {BENCH_IO_TIMEOUT_S, 0};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (const struct sockaddr *)&ctx->addr, sizeof ctx->addr) != 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    return fd;
}

static int send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One recv() that maps a timeout to -ETIMEDOUT. Returns bytes read, 0 at EOF, or -errno. */
static long recv_some(int fd, uint8_t *buf, size_t cap)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);

        if (n >= 0)
            return (long)n;
        if (errno != EINTR)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
}

/*
 * Read until the daemon closes: Erlang's replies carry no length, and Erlang's own client reads
 * PORT2_RESP and NAMES this way. Returns the byte count or a negative code.
 */
static long recv_until_close(int fd, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    uint8_t probe;

    while (len < cap) {
        long n = recv_some(fd, buf + len, cap - len);

        if (n <= 0)
            return n < 0 ? n : (long)len;
        len += (size_t)n;
    }
    /* The buffer is full: only an immediate EOF makes the reply whole. */
    long n = recv_some(fd, &probe, 1);

    return n < 0 ? n : (n == 0 ? (long)len : BENCH_ETOOBIG);
}

/* ---- Requests ------------------------------------------------------------------------------- */

static int alive2_reply_read(int fd)
{
    uint8_t buf[16];
    size_t len = 0;
    uint8_t result;
    uint32_t creation;

    while (len < sizeof buf) {
        long n = recv_some(fd, buf + len, sizeof buf - len);

        if (n < 0)
            return (int)n;
        if (n == 0)
            return BENCH_ECLOSED;
        len += (size_t)n;
        int rc = dist_epmd_alive2_resp_parse(buf, len, &result, &creation);

        if (rc == DIST_EAGAIN_MORE)
            continue;
        if (rc < 0)
            return rc;
        if ((size_t)rc != len)
            return BENCH_ETRAILING;
        return result == 0 ? 0 : BENCH_EREFUSED;
    }
    return BENCH_ETOOBIG;
}

/* Register a name as OTP 25 does (High 6, Low 5). On success *fd_out holds it registered. */
static int register_one(const struct bench_ctx *ctx, const char *name, size_t len, uint16_t port,
                        int *fd_out)
{
    struct dist_epmd_node node = {.port = port,
                                  .node_type = 77,
                                  .protocol = 0,
                                  .high_version = 6,
                                  .low_version = 5,
                                  .name = name,
                                  .name_len = len,
                                  .extra = NULL,
                                  .extra_len = 0};
    uint8_t req[BENCH_NAME_MAX + 32];
    int n = dist_epmd_alive2_req_build(req, sizeof req, &node);
    int fd, err;

    if (n < 0)
        return n;
    fd = sock_connect(ctx);
    if (fd < 0)
        return fd;
    err = send_all(fd, req, (size_t)n);
    if (err == 0)
        err = alive2_reply_read(fd);
    if (err != 0) {
        close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

static int lookup_check(const uint8_t *buf, long len, const char *name, size_t name_len,
                        uint16_t port)
{
    struct dist_epmd_node node;
    int found = 0;
    int rc = dist_epmd_port2_resp_parse(buf, (size_t)len, &found, &node);

    if (rc == DIST_EAGAIN_MORE)
        return BENCH_ECLOSED;
    if (rc < 0)
        return rc;
    if (rc != len)
        return BENCH_ETRAILING;
    if (!found)
        return BENCH_ENOTFOUND;
    if (node.port != port || node.name_len != name_len || memcmp(node.name, name, name_len))
        return BENCH_EBADPORT;
    return 0;
}

/* One PORT_PLEASE2 exchange on a fresh connection, as erl_epmd:port_please/3 does it. */
static int lookup_one(const struct bench_ctx *ctx, const char *name, size_t len, uint16_t port)
{
    uint8_t req[BENCH_NAME_MAX + 8];
    uint8_t reply[BENCH_REPLY_MAX];
    int n = dist_epmd_port2_req_build(req, sizeof req, name, len);
    long got;
    int fd, err;

    if (n < 0)
        return n;
    fd = sock_connect(ctx);
    if (fd < 0)
        return fd;
    err = send_all(fd, req, (size_t)n);
    got = err != 0 ? err : recv_until_close(fd, reply, sizeof reply);
    close(fd);
    if (got < 0)
        return (int)got;
    return lookup_check(reply, got, name, len, port);
}

/* Count the lines of a NAMES reply, and those that name one of ours. */
static int names_parse(const struct bench_ctx *ctx, const uint8_t *buf, size_t len, long *ours,
                       long *total)
{
    char want[sizeof ctx->prefix + 8];
    int want_len = snprintf(want, sizeof want, "name %s", ctx->prefix);
    const uint8_t *p = buf + 4;
    const uint8_t *end = buf + len;

    if (len < 4)
        return BENCH_ECLOSED;
    /* Erlang's net_adm:names() rejects a reply whose port word is not the port it dialled. */
    if (((uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3]) !=
        (uint32_t)opt.port)
        return BENCH_ECOUNT;
    *ours = 0;
    *total = 0;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));

        if (nl == NULL)
            return BENCH_ECOUNT;
        if (nl - p > want_len && memcmp(p, want, (size_t)want_len) == 0)
            (*ours)++;
        (*total)++;
        p = nl + 1;
    }
    return 0;
}

/* One NAMES exchange on a fresh connection. */
static int names_query(struct bench_ctx *ctx, long *ours, long *total)
{
    uint8_t req[8];
    int n = dist_epmd_simple_req_build(req, sizeof req, DIST_EPMD_NAMES_REQ);
    long got;
    int fd, err;

    if (n < 0)
        return n;
    fd = sock_connect(ctx);
    if (fd < 0)
        return fd;
    err = send_all(fd, req, (size_t)n);
    got = err != 0 ? err : recv_until_close(fd, ctx->names_buf, ctx->names_cap);
    close(fd);
    if (got < 0)
        return (int)got;
    return names_parse(ctx, ctx->names_buf, (size_t)got, ours, total);
}

/*
 * Poll NAMES until the daemon lists exactly @want of our names. A daemon drops a name when it
 * reads the EOF of its connection, which happens some time after our close().
 */
static int names_wait(struct bench_ctx *ctx, long want)
{
    double deadline = now_s() + BENCH_DRAIN_S;
    long ours = -1, total = 0;
    int err = 0;

    while (now_s() < deadline) {
        err = names_query(ctx, &ours, &total);
        if (err == 0 && ours == want)
            return 0;
        sleep_ms(5);
    }
    if (err == 0)
        fprintf(stderr, "epmd_bench: NAMES lists %ld of our names, expected %ld\n", ours, want);
    return err != 0 ? err : BENCH_ECOUNT;
}

static void fds_close(int *fds, long n)
{
    for (long i = 0; i < n; i++)
        close(fds[i]);
}

/*
 * Register names [0, count) of generation gen into fds, stopping at the first failure.
 * *done gets the number registered. Returns 0 or the failure.
 */
static int names_register(const struct bench_ctx *ctx, int gen, long count, int *fds, long *done)
{
    char name[BENCH_NAME_MAX];
    long n = 0;
    int err = 0;

    while (n < count) {
        int len = name_make(ctx, gen, n, name, sizeof name);

        err = register_one(ctx, name, (size_t)len, name_port(n), &fds[n]);
        if (err != 0)
            break;
        n++;
        if ((n & 63) == 0 && now_s() > ctx->deadline) {
            err = BENCH_EDEADLINE;
            break;
        }
    }
    *done = n;
    return err;
}

/* ---- Lookup workers ------------------------------------------------------------------------- */

/* Holds the workers until the clock starts, so thread creation is not timed. */
struct start_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
};

struct lookup_worker {
    const struct bench_ctx *ctx;
    struct start_gate *gate;
    long first; /* index of the first name to look up; workers spread over the set */
    long count;
    int err;
    pthread_t tid;
};

static void gate_pass(struct start_gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct start_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void *lookup_worker_run(void *arg)
{
    struct lookup_worker *w = arg;
    const struct bench_ctx *ctx = w->ctx;
    char name[BENCH_NAME_MAX];

    gate_pass(w->gate);
    for (long k = 0; k < w->count && w->err == 0; k++) {
        long i = (w->first + k) % ctx->nheld;
        int len = name_make(ctx, 0, i, name, sizeof name);

        w->err = lookup_one(ctx, name, (size_t)len, name_port(i));
        if (w->err == 0 && (k & 63) == 63 && now_s() > ctx->deadline)
            w->err = BENCH_EDEADLINE;
    }
    return NULL;
}

/* Start the workers behind the gate. On failure the started ones get no work, and run out. */
static int workers_start(struct lookup_worker *w, int threads, long ops,
                         const struct bench_ctx *ctx, struct start_gate *gate, int *started)
{
    for (int t = 0; t < threads; t++) {
        w[t] = (struct lookup_worker){.ctx = ctx,
                                      .gate = gate,
                                      .first = t * ctx->nheld / threads,
                                      .count = ops / threads + (t < ops % threads)};
        int rc = pthread_create(&w[t].tid, NULL, lookup_worker_run, &w[t]);

        if (rc != 0) {
            for (int s = 0; s < t; s++)
                w[s].count = 0;
            return -rc;
        }
        (*started)++;
    }
    return 0;
}

static int iter_lookup(struct bench_ctx *ctx, int threads, long ops, double *secs)
{
    struct lookup_worker w[BENCH_MAX_THREADS];
    struct start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int started = 0;
    int err = workers_start(w, threads, ops, ctx, &gate, &started);
    double t0 = now_s();

    gate_open(&gate);
    for (int t = 0; t < started; t++) {
        pthread_join(w[t].tid, NULL);
        if (err == 0)
            err = w[t].err;
    }
    *secs = now_s() - t0;
    return err;
}

/* ---- Iterations ----------------------------------------------------------------------------- */

static int iter_register(struct bench_ctx *ctx, int iter, long count, double *secs)
{
    int *fds = calloc((size_t)count, sizeof *fds);
    long done = 0;
    double t0;
    int err;

    if (fds == NULL)
        return -ENOMEM;
    t0 = now_s();
    err = names_register(ctx, iter + 1, count, fds, &done);
    *secs = now_s() - t0;
    fds_close(fds, done);
    free(fds);
    if (err == 0)
        err = names_wait(ctx, 0);
    return err;
}

static int iter_names(struct bench_ctx *ctx, long ops, double *secs)
{
    double t0 = now_s();
    long ours = 0, total = 0;

    for (long k = 0; k < ops; k++) {
        int err = names_query(ctx, &ours, &total);

        if (err == 0 && ours != ctx->nheld)
            err = BENCH_ECOUNT;
        if (err == 0 && now_s() > ctx->deadline)
            err = BENCH_EDEADLINE;
        if (err != 0)
            return err;
    }
    *secs = now_s() - t0;
    return 0;
}

static int iter_run(struct bench_ctx *ctx, int iter, long ops, double *secs)
{
    switch (opt.spec->kind) {
    case BENCH_REGISTER:
        return iter_register(ctx, iter, ops, secs);
    case BENCH_LOOKUP_1:
    case BENCH_LOOKUP_8:
        return iter_lookup(ctx, opt.spec->threads, ops, secs);
    case BENCH_NAMES:
        return iter_names(ctx, ops, secs);
    default:
        return DIST_EINVAL;
    }
}

/* ---- Statistics and output ------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median_sorted(const double *v, int n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Savina's method: the median of the runs that lie within +-20 % of the median of all runs. */
static double runs_summary(double *runs, int n, int *kept)
{
    double m, keep[BENCH_MAX_ITERS];
    int k = 0;

    qsort(runs, (size_t)n, sizeof *runs, cmp_double);
    m = median_sorted(runs, n);
    for (int i = 0; i < n; i++) {
        if (runs[i] >= 0.8 * m && runs[i] <= 1.2 * m)
            keep[k++] = runs[i];
    }
    *kept = k;
    /* Only a bimodal spread keeps nothing; then the plain median is the honest figure. */
    return k > 0 ? median_sorted(keep, k) : m;
}

static void report(long n, double secs, long names, int kept)
{
    double rate = secs > 0 ? (double)n / secs : 0;

    if (opt.json) {
        printf("{\"suite\":\"epmd\",\"bench\":\"%s\",\"impl\":\"%s\",\"n\":%ld,"
               "\"seconds\":%.6g,\"ops_per_s\":%.0f,\"names\":%ld,\"iters\":%d,\"kept\":%d}\n",
               opt.spec->name, opt.impl, n, secs, rate, names, opt.iters, kept);
    } else {
        printf("epmd %-8s %-6s %9.0f ops/s  n=%ld in %.4f s (median, %d of %d runs kept), "
               "%ld names\n",
               opt.spec->name, opt.impl, rate, n, secs, kept, opt.iters, names);
    }
    fflush(stdout);
}

static void report_capacity(long held, long target, double secs, int err)
{
    const char *why = err != 0 ? bench_strerror(err) : "";

    if (opt.json) {
        printf("{\"suite\":\"epmd\",\"bench\":\"capacity\",\"impl\":\"%s\",\"n\":%ld,"
               "\"seconds\":%.6g,\"ops_per_s\":%.0f,\"held\":%ld,\"target\":%ld,"
               "\"refused\":%s,\"reason\":\"%s\"}\n",
               opt.impl, held, secs, secs > 0 ? (double)held / secs : 0, held, target,
               err != 0 ? "true" : "false", why);
    } else if (err != 0) {
        printf("epmd capacity %-6s held %ld registrations, then refused (%s); target %ld\n",
               opt.impl, held, why, target);
    } else {
        printf("epmd capacity %-6s held %ld registrations (the target) in %.3f s\n", opt.impl, held,
               secs);
    }
    fflush(stdout);
}

/* ---- Runs ----------------------------------------------------------------------------------- */

static long fd_limit_raise(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    /* Every held registration is a socket here as well as in the daemon. */
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? BENCH_MAX_NAMES * 2L : (long)rl.rlim_cur;
}

static int base_register(struct bench_ctx *ctx, long count)
{
    long done = 0;
    int err;

    ctx->held = calloc((size_t)count, sizeof *ctx->held);
    if (ctx->held == NULL)
        return -ENOMEM;
    ctx->deadline = now_s() + BENCH_BUDGET_S;
    err = names_register(ctx, 0, count, ctx->held, &done);
    ctx->nheld = err == 0 ? done : 0;
    if (err != 0) {
        fds_close(ctx->held, done);
        fprintf(stderr, "epmd_bench: registering base name %ld of %ld: %s\n", done, count,
                bench_strerror(err));
        names_wait(ctx, 0);
        return err;
    }
    return names_wait(ctx, count);
}

static void base_release(struct bench_ctx *ctx)
{
    fds_close(ctx->held, ctx->nheld);
    ctx->nheld = 0;
    if (names_wait(ctx, 0) != 0)
        fprintf(stderr, "epmd_bench: the daemon still lists some of our names\n");
}

static int run_timed(struct bench_ctx *ctx)
{
    long names = opt.names;
    long ops = opt.ops > 0 ? opt.ops : (opt.spec->default_ops ? opt.spec->default_ops : names);
    double runs[BENCH_MAX_ITERS], secs;
    int err = 0, kept = 0;

    long sockets = opt.spec->kind == BENCH_REGISTER ? ops : names;

    if (sockets + BENCH_FD_SLACK > fd_limit_raise()) {
        fprintf(stderr,
                "epmd_bench: %ld registrations need more descriptors than "
                "RLIMIT_NOFILE allows\n",
                sockets);
        return 1;
    }
    if (opt.spec->needs_base && base_register(ctx, names) != 0)
        return 1;
    for (int it = 0; it < opt.iters && err == 0; it++) {
        ctx->deadline = now_s() + BENCH_BUDGET_S;
        err = iter_run(ctx, it, ops, &runs[it]);
        if (err == 0 && opt.verbose)
            fprintf(stderr, "epmd_bench: %s %s iteration %d: %.6f s\n", opt.spec->name, opt.impl,
                    it + 1, runs[it]);
        if (err != 0)
            fprintf(stderr, "epmd_bench: %s against 127.0.0.1:%d, iteration %d: %s\n",
                    opt.spec->name, opt.port, it + 1, bench_strerror(err));
    }
    if (opt.spec->needs_base)
        base_release(ctx);
    if (err != 0)
        return 1;
    secs = runs_summary(runs, opt.iters, &kept);
    report(ops, secs, names, kept);
    return 0;
}

/* Descriptors still open with nothing to read: the daemon has not dropped them. */
static long fds_alive(const int *fds, long n)
{
    long alive = 0;

    for (long i = 0; i < n; i++) {
        struct pollfd p = {fds[i], POLLIN, 0};

        if (poll(&p, 1, 0) == 0)
            alive++;
    }
    return alive;
}

/*
 * Register until the daemon refuses (Erlang's accepts and closes once its table is full) or
 * the target is held. The count reported is the registrations still held at the end.
 */
static int run_capacity(struct bench_ctx *ctx)
{
    long limit = fd_limit_raise() - BENCH_FD_SLACK;
    long target = opt.names < limit ? opt.names : limit;
    int *fds = calloc((size_t)(target > 0 ? target : 1), sizeof *fds);
    long done = 0, held;
    double t0, secs;
    int err, check = 0;

    if (fds == NULL || target <= 0) {
        free(fds);
        fprintf(stderr, "epmd_bench: no room for a capacity run\n");
        return 1;
    }
    if (target < opt.names)
        fprintf(stderr, "epmd_bench: RLIMIT_NOFILE caps the target at %ld\n", target);
    ctx->deadline = now_s() + BENCH_BUDGET_S;
    t0 = now_s();
    err = names_register(ctx, 1, target, fds, &done);
    secs = now_s() - t0;
    held = fds_alive(fds, done);
    /* With the target reached the daemon has room left, so NAMES can confirm the count. */
    if (err == 0)
        check = names_wait(ctx, held);
    if (check == 0)
        report_capacity(held, target, secs, err);
    else
        fprintf(stderr, "epmd_bench: capacity: %ld registered, NAMES disagrees: %s\n", held,
                bench_strerror(check));
    fds_close(fds, done);
    free(fds);
    return names_wait(ctx, 0) == 0 && check == 0 && held > 0 ? 0 : 1;
}

/* Poll NAMES until the daemon answers with its port: readiness for scripts, without sleeps. */
static int run_wait(struct bench_ctx *ctx)
{
    double deadline = now_s() + opt.wait_s;
    long ours, total;

    while (now_s() < deadline) {
        if (names_query(ctx, &ours, &total) == 0)
            return 0;
        sleep_ms(10);
    }
    fprintf(stderr, "epmd_bench: no epmd answered on 127.0.0.1:%d within %.1f s\n", opt.port,
            opt.wait_s);
    return 1;
}

/* ---- Options -------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: epmd_bench --port P [--impl LABEL] --bench NAME [--names N] [--ops N]\n"
            "                  [--iters N] [--json] [--verbose]\n"
            "       epmd_bench --port P --wait SECONDS\n"
            "Drives the EPMD daemon on 127.0.0.1:P (ours or Erlang's).\n"
            "  --bench   register | lookup_1 | lookup_8 | names | capacity\n"
            "  --names   names registered (default 900); for capacity, the target (10000)\n"
            "  --ops     operations per iteration (default: register = names, lookup_1 = 2000,\n"
            "            lookup_8 = 8000, names = 20)\n"
            "  --iters   iterations (default 12); the median of those within 20 %% is reported\n"
            "  --impl    label for the output: ours | erlang (default ours)\n"
            "  --json    one JSON object per line\n"
            "  --verbose every iteration's time, on stderr\n"
            "  --wait    poll until the daemon answers NAMES, at most SECONDS, then exit\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_bench(const char *s)
{
    for (size_t i = 0; i < sizeof bench_specs / sizeof bench_specs[0]; i++) {
        if (strcmp(s, bench_specs[i].name) == 0) {
            opt.spec = &bench_specs[i];
            return 0;
        }
    }
    return -1;
}

/* The label goes into JSON unescaped, so it must be plain. */
static int parse_impl(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 16 || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        return -1;
    opt.impl = s;
    return 0;
}

static int parse_one(const char *flag, const char *val)
{
    long v = 0;

    if (strcmp(flag, "--port") == 0 && parse_long(val, 1, 65535, &v) == 0)
        opt.port = (int)v;
    else if (strcmp(flag, "--names") == 0 && parse_long(val, 1, BENCH_MAX_NAMES, &v) == 0)
        opt.names = v;
    else if (strcmp(flag, "--ops") == 0 && parse_long(val, 1, BENCH_MAX_OPS, &v) == 0)
        opt.ops = v;
    else if (strcmp(flag, "--iters") == 0 && parse_long(val, 1, BENCH_MAX_ITERS, &v) == 0)
        opt.iters = (int)v;
    else if (strcmp(flag, "--wait") == 0 && parse_long(val, 1, 600, &v) == 0)
        opt.wait_s = (double)v;
    else if (strcmp(flag, "--bench") == 0 && parse_bench(val) == 0)
        ;
    else if (strcmp(flag, "--impl") == 0 && parse_impl(val) == 0)
        ;
    else
        return -1;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--json") == 0) {
            opt.json = 1;
        } else if (strcmp(argv[i], "--verbose") == 0) {
            opt.verbose = 1;
        } else if (i + 1 >= argc || parse_one(argv[i], argv[i + 1]) != 0) {
            fprintf(stderr, "epmd_bench: bad option or value: %s\n", argv[i]);
            return -1;
        } else {
            i++;
        }
    }
    if (opt.port == 0 || (opt.spec == NULL && opt.wait_s <= 0)) {
        fprintf(stderr, "epmd_bench: --port and one of --bench or --wait are required\n");
        return -1;
    }
    if (opt.spec != NULL && opt.names < 0)
        opt.names = opt.spec->default_names;
    return 0;
}

int main(int argc, char **argv)
{
    struct bench_ctx ctx = {0};
    int rc;

    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    ctx.addr.sin_family = AF_INET;
    ctx.addr.sin_port = htons((uint16_t)opt.port);
    ctx.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(ctx.prefix, sizeof ctx.prefix, "eb%ld_", (long)getpid());
    /* Room for every name we might register plus a thousand strangers' lines. */
    ctx.names_cap = 4 + (size_t)((opt.names > 0 ? opt.names : 0) + 1024) * BENCH_NAMES_LINE_MAX;
    ctx.names_buf = malloc(ctx.names_cap);
    if (ctx.names_buf == NULL)
        return 1;
    if (opt.wait_s > 0)
        rc = run_wait(&ctx);
    else if (opt.spec->kind == BENCH_CAPACITY)
        rc = run_capacity(&ctx);
    else
        rc = run_timed(&ctx);
    free(ctx.held);
    free(ctx.names_buf);
    return rc;
}
