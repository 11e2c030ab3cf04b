/*
 * epmd_probe.c: one scripted sequence of raw EPMD probes, printed as a transcript to diff.
 *
 *     epmd_probe PORT strict     the sequence for a daemon started without -relaxed_command_check
 *     epmd_probe PORT relaxed    the sequence for a daemon started with it
 *
 * differential.sh runs the same sequence against Erlang's epmd and ours and diffs the two
 * transcripts. Each step dials 127.0.0.1:PORT and prints:
 *
 *     ## title
 *     > 00 01 6e                       each write of the request, in hex
 *     < 00 00 38 21          |..8!|    every reply byte, 16 a row, with ASCII; NAMES and DUMP
 *                                      replies start a new row at each text line
 *     = closed                         closed | reset | open after 300ms
 *
 * Only what differs between two correct daemons is masked, nothing else:
 *  - the creation of a new name is time based: "<time>" (v6) or "<1..3>" (v5), after checking
 *    the range; a re-registration prints its difference from the previous creation;
 *  - the u32 port word of NAMES and DUMP prints as "port=<self>" when it is the dialled port;
 *  - DUMP's "fd = N" prints as "fd = #".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"

#define IDLE_MS      300  /* this much silence after the last byte means "left open" */
#define REPLY_CAP_MS 3000 /* bound on reading one reply */
#define GAP_MS       50   /* pause between the two writes of a split request */
#define POLL_MS      20   /* pause between two polls of the daemon's state */
#define REQ_MAX      3200
#define REPLY_MAX    16384
#define HELD_MAX     16

enum conn_state {
    CONN_OPEN,   /* no close after IDLE_MS of silence */
    CONN_CLOSED, /* orderly close: recv() returned 0 */
    CONN_RESET,  /* recv() failed: ECONNRESET or another error in err */
};

struct buf {
    size_t len;
    uint8_t data[REQ_MAX];
};

struct reply {
    size_t len;
    enum conn_state state;
    int err;
    uint8_t data[REPLY_MAX];
};

/* What a successful ALIVE2 reply handed out, to print the next one relative to it. */
struct creation {
    int known;
    uint32_t value;
};

/* One ALIVE2_REQ. The name is bytes, not a C string: it may hold NULs or invalid UTF-8. */
struct alive {
    const char *name;
    size_t nlen;
    unsigned port;
    unsigned type;
    unsigned high;
    unsigned low;
    const char *extra;
    size_t elen;
};

struct probe {
    uint16_t port;      /* the daemon under test, on 127.0.0.1 */
    int held[HELD_MAX]; /* registration sockets kept open until the teardown */
    size_t nheld;
    int alpha;               /* alpha's registration socket, also in held */
    int gamma;               /* gamma's, also in held */
    struct reply r;          /* the last reply */
    uint8_t line[REPLY_MAX]; /* scratch for one masked line of a DUMP reply */
};

static void fail(const char *what)
{
    fprintf(stderr, "epmd_probe: %s: %s\n", what, strerror(errno));
    exit(2);
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- Building requests ------------------------------------------------------------------ */

static void buf_mem(struct buf *b, const void *p, size_t n)
{
    if (n > REQ_MAX - b->len) {
        fprintf(stderr, "epmd_probe: request over %d bytes\n", REQ_MAX);
        exit(2);
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_u8(struct buf *b, unsigned v)
{
    uint8_t x = (uint8_t)v;

    buf_mem(b, &x, 1);
}

static void buf_u16(struct buf *b, unsigned v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};

    buf_mem(b, x, 2);
}

/* A well-framed request: u16 Length, then Tag and the n bytes at p. */
static void tagged_frame(struct buf *out, unsigned tag, const void *p, size_t n)
{
    out->len = 0;
    buf_u16(out, (unsigned)(n + 1));
    buf_u8(out, tag);
    buf_mem(out, p, n);
}

static void alive_frame(struct buf *out, const struct alive *a)
{
    out->len = 0;
    buf_u16(out, (unsigned)(13 + a->nlen + a->elen));
    buf_u8(out, DIST_EPMD_ALIVE2_REQ);
    buf_u16(out, a->port);
    buf_u8(out, a->type);
    buf_u8(out, 0); /* protocol: TCP/IPv4 */
    buf_u16(out, a->high);
    buf_u16(out, a->low);
    buf_u16(out, (unsigned)a->nlen);
    buf_mem(out, a->name, a->nlen);
    buf_u16(out, (unsigned)a->elen);
    buf_mem(out, a->extra, a->elen);
}

/* A normal node as OTP 25 registers it: type 'M', versions 6..5. */
static struct alive alive_v6(const char *name, unsigned port)
{
    struct alive a = {.name = name, .nlen = strlen(name), .port = port, .type = 77};

    a.high = 6;
    a.low = 5;
    return a;
}

/* A node before OTP 23: versions 5..5, so the reply is the 16-bit ALIVE2_RESP. */
static struct alive alive_v5(const char *name, unsigned port)
{
    struct alive a = alive_v6(name, port);

    a.high = 5;
    return a;
}

/* ---- Printing ------------------------------------------------------------------------------ */

static void print_rows(const char *prefix, const uint8_t *p, size_t n)
{
    if (n == 0) {
        printf("%s (nothing)\n", prefix);
        return;
    }
    for (size_t row = 0; row < n; row += 16) {
        size_t end = row + 16 < n ? row + 16 : n;

        printf("%s", prefix);
        for (size_t i = row; i < end; i++)
            printf(" %02x", p[i]);
        printf("%*s  |", (int)(3 * (16 - (end - row))), "");
        for (size_t i = row; i < end; i++)
            putchar(p[i] >= 32 && p[i] <= 126 ? p[i] : '.');
        printf("|\n");
    }
}

/* A request is ours and the same on both sides, so a long one prints only its start. */
static void print_write(const uint8_t *p, size_t n)
{
    if (n <= 32) {
        print_rows(">", p, n);
        return;
    }
    print_rows(">", p, 32);
    printf("> ... %zu bytes in this write\n", n);
}

static void print_state(const struct reply *r)
{
    if (r->state == CONN_OPEN)
        printf("= open after %dms\n", IDLE_MS);
    else if (r->state == CONN_CLOSED)
        printf("= closed\n");
    else if (r->err == ECONNRESET)
        printf("= reset\n");
    else
        printf("= read error: %s\n", strerror(r->err));
}

/* Copies a DUMP line, turning each "fd = <digits>" into "fd = #". Returns the new length. */
static size_t mask_fds(uint8_t *out, const uint8_t *in, size_t n)
{
    static const char key[] = "fd = ";
    size_t k = sizeof(key) - 1;
    size_t len = 0;

    for (size_t i = 0; i < n;) {
        if (n - i > k && memcmp(in + i, key, k) == 0 && in[i + k] >= '0' && in[i + k] <= '9') {
            memcpy(out + len, key, k);
            len += k;
            out[len++] = '#';
            for (i += k; i < n && in[i] >= '0' && in[i] <= '9'; i++)
                ;
            continue;
        }
        out[len++] = in[i++];
    }
    return len;
}

/* NAMES or DUMP: the u32 port word, then one row group per text line ("\n", and DUMP's NUL). */
static void print_text_reply(struct probe *p, const struct reply *r, int mask)
{
    uint8_t *line = p->line;
    size_t i = 4;

    if (r->len < 4) {
        print_rows("<", r->data, r->len);
        return;
    }
    if (get_u32(r->data) == p->port)
        printf("< port=<self>\n");
    else
        print_rows("<", r->data, 4);
    while (i < r->len) {
        size_t end = i;
        size_t n;

        while (end < r->len && r->data[end] != '\n')
            end++;
        if (end < r->len)
            end++;
        if (end < r->len && r->data[end] == '\0')
            end++;
        n = end - i;
        if (mask)
            n = mask_fds(line, r->data + i, n);
        else
            memcpy(line, r->data + i, n);
        print_rows("<", line, n);
        i = end;
    }
}

/* Prints a creation: range-checked and masked when new, relative to prev otherwise. */
static void print_creation(uint32_t c, int v6, const struct creation *prev)
{
    long long now = (long long)time(NULL);

    if (v6 && prev->known)
        printf("creation=<prev>%+lld\n", (long long)c - prev->value);
    else if (v6 && c >= 4 && (long long)c >= now - 600 && (long long)c <= now + 600)
        printf("creation=<time>\n");
    else if (v6)
        printf("creation=%u, not the clock\n", c);
    else if (c < 1 || c > 3)
        printf("creation=%u, out of 1..3\n", c);
    else if (prev->known)
        printf("creation=<prev>%+d mod 3\n", (int)((c + 3 - prev->value % 3) % 3));
    else
        printf("creation=<1..3>\n");
}

/*
 * Prints an ALIVE2 reply. A success shows its tag and result in hex and its creation masked;
 * anything else is printed raw. *out gets the creation of a success.
 */
static void print_alive_reply(const struct reply *r, const struct creation *prev,
                              struct creation *out)
{
    const uint8_t *d = r->data;

    out->known = 0;
    if (r->len == 6 && d[0] == DIST_EPMD_ALIVE2_X_RESP && d[1] == 0) {
        out->value = get_u32(d + 2);
        printf("< 76 00 ");
    } else if (r->len == 4 && d[0] == DIST_EPMD_ALIVE2_RESP && d[1] == 0) {
        out->value = (uint32_t)d[2] << 8 | d[3];
        printf("< 79 00 ");
    } else {
        print_rows("<", d, r->len);
        return;
    }
    out->known = 1;
    print_creation(out->value, d[0] == DIST_EPMD_ALIVE2_X_RESP, prev);
}

/* ---- Talking to the daemon ----------------------------------------------------------------- */

static int dial(const struct probe *p)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p->port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        fail("socket");
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    /* Each write must leave as its own segment, or a split request would not be split. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the daemon closes, or until idle_ms pass without a byte. */
static void reply_read(int fd, struct reply *r, int idle_ms)
{
    long long start = now_ms();
    long long last = start;

    r->len = 0;
    r->err = 0;
    for (;;) {
        long long now = now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint8_t tmp[4096];
        ssize_t n;

        if (now - last >= idle_ms || now - start >= REPLY_CAP_MS) {
            r->state = CONN_OPEN;
            return;
        }
        if (poll(&pfd, 1, (int)(last + idle_ms - now)) <= 0)
            continue;
        n = recv(fd, tmp, sizeof(tmp), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            r->state = n == 0 ? CONN_CLOSED : CONN_RESET;
            r->err = n == 0 ? 0 : errno;
            return;
        }
        if ((size_t)n > REPLY_MAX - r->len)
            n = (ssize_t)(REPLY_MAX - r->len);
        memcpy(r->data + r->len, tmp, (size_t)n);
        r->len += (size_t)n;
        last = now_ms();
    }
}

/*
 * Dials, writes req (as two writes GAP_MS apart when split is nonzero) and reads the reply
 * into p->r. quiet leaves the transcript alone. Returns the socket, still open, or -1 when the
 * dial failed.
 */
static int exchange(struct probe *p, const struct buf *req, size_t split, int quiet)
{
    size_t first = split > 0 ? split : req->len;
    int fd = dial(p);
    int rc;

    if (fd < 0) {
        if (!quiet)
            printf("= connect failed: %s\n", strerror(errno));
        return -1;
    }
    if (!quiet)
        print_write(req->data, first);
    rc = send_all(fd, req->data, first);
    if (rc == 0 && first < req->len) {
        sleep_ms(GAP_MS);
        if (!quiet)
            print_write(req->data + first, req->len - first);
        rc = send_all(fd, req->data + first, req->len - first);
    }
    if (rc < 0 && !quiet)
        printf("= write failed: %s\n", strerror(-rc));
    reply_read(fd, &p->r, IDLE_MS);
    return fd;
}

/* A step whose reply is printed raw, and whose socket is closed afterwards. */
static void step_raw(struct probe *p, const char *title, const struct buf *req, size_t split)
{
    int fd;

    printf("## %s\n", title);
    fd = exchange(p, req, split, 0);
    if (fd < 0)
        return;
    print_rows("<", p->r.data, p->r.len);
    print_state(&p->r);
    close(fd);
}

/* NAMES or DUMP (mask set: DUMP's fd numbers are masked). */
static void step_text(struct probe *p, const char *title, const struct buf *req, int mask)
{
    int fd;

    printf("## %s\n", title);
    fd = exchange(p, req, 0, 0);
    if (fd < 0)
        return;
    print_text_reply(p, &p->r, mask);
    print_state(&p->r);
    close(fd);
}

static void step_tag(struct probe *p, const char *title, unsigned tag, const void *arg, size_t n)
{
    struct buf req;

    tagged_frame(&req, tag, arg, n);
    if (tag == DIST_EPMD_NAMES_REQ || tag == DIST_EPMD_DUMP_REQ)
        step_text(p, title, &req, tag == DIST_EPMD_DUMP_REQ);
    else
        step_raw(p, title, &req, 0);
}

/*
 * An ALIVE2 step. A socket the daemon left open is returned, to keep the registration (or to
 * close); otherwise it is closed and -1 returned. prev may be NULL for a new name.
 */
static int step_alive(struct probe *p, const char *title, const struct alive *a,
                      const struct creation *prev, struct creation *out, size_t split)
{
    static const struct creation none = {0, 0};
    struct creation scratch;
    struct buf req;
    int fd;

    printf("## %s\n", title);
    alive_frame(&req, a);
    fd = exchange(p, &req, split, 0);
    if (fd < 0)
        return -1;
    print_alive_reply(&p->r, prev ? prev : &none, out ? out : &scratch);
    print_state(&p->r);
    if (p->r.state == CONN_OPEN)
        return fd;
    close(fd);
    return -1;
}

static void drop(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* Keeps a registration socket open until the teardown, and returns it. */
static int hold(struct probe *p, int fd)
{
    if (fd < 0)
        return fd;
    if (p->nheld == HELD_MAX) {
        fprintf(stderr, "epmd_probe: more than %d registrations held\n", HELD_MAX);
        exit(2);
    }
    p->held[p->nheld++] = fd;
    return fd;
}

/* Closes a held registration socket before the teardown. */
static void unhold(struct probe *p, int fd)
{
    for (size_t i = 0; fd >= 0 && i < p->nheld; i++) {
        if (p->held[i] == fd)
            p->held[i] = -1;
    }
    drop(fd);
}

/* Waits up to ms for the daemon to close fd, reading and printing anything it sends. */
static void wait_closed(struct probe *p, int fd, int ms, const char *what)
{
    if (fd < 0) {
        printf("= %s: no socket\n", what);
        return;
    }
    reply_read(fd, &p->r, ms);
    if (p->r.len > 0)
        print_rows("<", p->r.data, p->r.len);
    if (p->r.state == CONN_OPEN)
        printf("= %s: open after %dms\n", what, ms);
    else
        printf("= %s: closed by the daemon\n", what);
}

/* Polls PORT_PLEASE2 until the daemon no longer knows name (a C string), for up to 2 s. */
static void wait_unregistered(struct probe *p, const char *name)
{
    struct buf req;
    long long deadline = now_ms() + 2000;

    tagged_frame(&req, DIST_EPMD_PORT_PLEASE2_REQ, name, strlen(name));
    for (;;) {
        int fd = exchange(p, &req, 0, 1);

        drop(fd);
        if (fd >= 0 && p->r.len == 2 && p->r.data[0] == DIST_EPMD_PORT2_RESP && p->r.data[1] == 1) {
            printf("= %s: unregistered\n", name);
            return;
        }
        if (now_ms() >= deadline) {
            printf("= %s: still registered after 2s\n", name);
            return;
        }
        sleep_ms(POLL_MS);
    }
}

/* Closes every held registration and polls NAMES until the registry is empty (2 s at most). */
static void release_all(struct probe *p)
{
    struct buf req;
    long long deadline = now_ms() + 2000;

    for (size_t i = 0; i < p->nheld; i++)
        drop(p->held[i]);
    p->nheld = 0;
    tagged_frame(&req, DIST_EPMD_NAMES_REQ, NULL, 0);
    for (;;) {
        int fd = exchange(p, &req, 0, 1);

        drop(fd);
        if (fd >= 0 && p->r.len == 4) {
            printf("= every registration closed: NAMES lists nothing\n");
            return;
        }
        if (now_ms() >= deadline) {
            printf("= every registration closed: NAMES still lists names after 2s\n");
            return;
        }
        sleep_ms(POLL_MS);
    }
}

/* After a KILL: waits up to 2 s for connections to 127.0.0.1:port to be refused. */
static void wait_refused(struct probe *p)
{
    long long deadline = now_ms() + 2000;

    for (;;) {
        int fd = dial(p);

        if (fd < 0 && errno == ECONNREFUSED) {
            printf("= daemon: connections refused\n");
            return;
        }
        drop(fd);
        if (now_ms() >= deadline) {
            printf("= daemon: still accepting after 2s\n");
            return;
        }
        sleep_ms(POLL_MS);
    }
}

/* ---- The strict sequence ------------------------------------------------------------------- */

static void seq_register(struct probe *p)
{
    struct alive a;

    step_tag(p, "NAMES, nothing registered", DIST_EPMD_NAMES_REQ, NULL, 0);
    a = alive_v6("alpha", 40961);
    p->alpha = hold(p, step_alive(p, "ALIVE2 v6 alpha (kept open)", &a, NULL, NULL, 0));
    a = alive_v5("beta", 40962);
    hold(p, step_alive(p, "ALIVE2 v5 beta (kept open)", &a, NULL, NULL, 0));
    a = alive_v6("hidden", 40964);
    a.type = 104;
    hold(p, step_alive(p, "ALIVE2 v6 hidden, node type 104 'h'", &a, NULL, NULL, 0));
    a = alive_v6("gamma", 40963);
    a.extra = "xyz";
    a.elen = 3;
    p->gamma = hold(p, step_alive(p, "ALIVE2 v6 gamma, Extra \"xyz\"", &a, NULL, NULL, 0));
}

static void seq_port_please(struct probe *p)
{
    char name[256];
    struct buf req;

    step_tag(p, "PORT_PLEASE2 alpha (found)", DIST_EPMD_PORT_PLEASE2_REQ, "alpha", 5);
    step_tag(p, "PORT_PLEASE2 beta (v5 registration)", DIST_EPMD_PORT_PLEASE2_REQ, "beta", 4);
    step_tag(p, "PORT_PLEASE2 hidden (type 104 echoed)", DIST_EPMD_PORT_PLEASE2_REQ, "hidden", 6);
    step_tag(p, "PORT_PLEASE2 gamma (Extra echoed)", DIST_EPMD_PORT_PLEASE2_REQ, "gamma", 5);
    step_tag(p, "PORT_PLEASE2 nosuch (not found)", DIST_EPMD_PORT_PLEASE2_REQ, "nosuch", 6);
    step_tag(p, "PORT_PLEASE2 \"alpha\\0\" (trailing NUL)", DIST_EPMD_PORT_PLEASE2_REQ, "alpha", 6);
    step_tag(p, "PORT_PLEASE2 empty name", DIST_EPMD_PORT_PLEASE2_REQ, NULL, 0);
    step_tag(p, "PORT_PLEASE2 \"\\0\" (only a NUL)", DIST_EPMD_PORT_PLEASE2_REQ, "", 1);
    step_tag(p, "PORT_PLEASE2 \"al\\0pha\" (embedded NUL)", DIST_EPMD_PORT_PLEASE2_REQ, "al\0pha",
             6);
    step_tag(p, "PORT_PLEASE2 \"alpha\\0\\0\" (two trailing NULs)", DIST_EPMD_PORT_PLEASE2_REQ,
             "alpha\0", 7);
    step_tag(p, "PORT_PLEASE2 invalid UTF-8", DIST_EPMD_PORT_PLEASE2_REQ, "\xff\xfe", 2);
    memset(name, 'q', sizeof(name));
    step_tag(p, "PORT_PLEASE2 256-character name", DIST_EPMD_PORT_PLEASE2_REQ, name, 256);
    tagged_frame(&req, DIST_EPMD_PORT_PLEASE2_REQ, "alpha", 5);
    step_raw(p, "PORT_PLEASE2 alpha split after the first length byte", &req, 1);
}

static void seq_lists(struct probe *p)
{
    static const uint8_t pad[DIST_EPMD_MAX_LENGTH - 1];
    struct buf req;

    step_tag(p, "NAMES, four registered", DIST_EPMD_NAMES_REQ, NULL, 0);
    step_tag(p, "DUMP, four registered", DIST_EPMD_DUMP_REQ, NULL, 0);
    tagged_frame(&req, DIST_EPMD_NAMES_REQ, "", 1);
    step_text(p, "NAMES with one trailing byte (Length 2)", &req, 0);
    tagged_frame(&req, DIST_EPMD_NAMES_REQ, pad, sizeof(pad));
    step_text(p, "NAMES padded to Length 3057 (the largest accepted)", &req, 0);
}

static void seq_duplicates(struct probe *p)
{
    struct alive a = alive_v6("alpha", 40971);
    struct buf req;
    int fd;

    fd = step_alive(p, "ALIVE2 v6 alpha again (duplicate name)", &a, NULL, NULL, 0);
    printf("## ALIVE2 v6 zeta on the duplicate's socket, left open after the failure\n");
    a = alive_v6("zeta", 40974);
    alive_frame(&req, &a);
    if (fd >= 0) {
        print_write(req.data, req.len);
        send_all(fd, req.data, req.len);
    }
    wait_closed(p, fd, IDLE_MS, "the duplicate's socket");
    drop(fd);
    step_tag(p, "PORT_PLEASE2 zeta", DIST_EPMD_PORT_PLEASE2_REQ, "zeta", 4);
    a = alive_v6("alpha", 40971);
    a = alive_v5("alpha", 40972);
    drop(step_alive(p, "ALIVE2 v5 alpha again (duplicate name)", &a, NULL, NULL, 0));
    a = alive_v6("beta", 40973);
    drop(step_alive(p, "ALIVE2 v6 beta again (duplicate of a v5 registration)", &a, NULL, NULL, 0));
}

/* A second write on a registered socket ends the registration; the name comes back +1. */
static void seq_second_write(struct probe *p, const char *name, int v6)
{
    struct alive a = v6 ? alive_v6(name, 40981) : alive_v5(name, 40982);
    struct creation first;
    struct creation again;
    struct buf req;
    char title[128];
    int fd;

    snprintf(title, sizeof(title), "ALIVE2 v%d %s (kept open)", v6 ? 6 : 5, name);
    fd = step_alive(p, title, &a, NULL, &first, 0);
    printf("## the same ALIVE2 again on %s's registered socket\n", name);
    if (fd >= 0) {
        alive_frame(&req, &a);
        print_write(req.data, req.len);
        send_all(fd, req.data, req.len);
    }
    wait_closed(p, fd, 1000, "registration socket");
    drop(fd);
    tagged_frame(&req, DIST_EPMD_PORT_PLEASE2_REQ, name, strlen(name));
    snprintf(title, sizeof(title), "PORT_PLEASE2 %s after the second write", name);
    step_raw(p, title, &req, 0);
    snprintf(title, sizeof(title), "ALIVE2 v%d %s re-registered (creation+1)", v6 ? 6 : 5, name);
    hold(p, step_alive(p, title, &a, first.known ? &first : NULL, &again, 0));
}

static void seq_names_limits(struct probe *p)
{
    char name[1100];
    struct alive a;

    memset(name, 'n', 256);
    a = alive_v6(name, 40991);
    a.nlen = 255;
    hold(p, step_alive(p, "ALIVE2 255-character name", &a, NULL, NULL, 0));
    a.nlen = 256;
    drop(step_alive(p, "ALIVE2 256-character name", &a, NULL, NULL, 0));
    for (size_t i = 0; i < 256; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    a.port = 40992;
    a.nlen = 510;
    hold(p, step_alive(p, "ALIVE2 255 x U+00E9 (510 bytes)", &a, NULL, NULL, 0));
    a.nlen = 512;
    drop(step_alive(p, "ALIVE2 256 x U+00E9 (512 bytes)", &a, NULL, NULL, 0));
    a = alive_v6("bad\xff\xfe", 40993);
    drop(step_alive(p, "ALIVE2 invalid UTF-8 name", &a, NULL, NULL, 0));
    a = alive_v6("\xc0\xaf", 40994);
    drop(step_alive(p, "ALIVE2 overlong UTF-8 name C0 AF", &a, NULL, NULL, 0));
    a = alive_v6("\xed\xa0\x80", 40995);
    drop(step_alive(p, "ALIVE2 UTF-16 surrogate name ED A0 80", &a, NULL, NULL, 0));
    a = alive_v6("nu\0l", 40996);
    a.nlen = 4;
    drop(step_alive(p, "ALIVE2 name with a NUL", &a, NULL, NULL, 0));
    memset(name, 'x', 1021);
    a = alive_v6("extra", 40997);
    a.extra = name;
    a.elen = 1021;
    drop(step_alive(p, "ALIVE2 Extra of 1021 bytes", &a, NULL, NULL, 0));
    a.elen = 1020;
    hold(p, step_alive(p, "ALIVE2 Extra of 1020 bytes", &a, NULL, NULL, 0));
}

static void seq_alive_malformed(struct probe *p)
{
    struct alive a = alive_v6("", 41001);
    struct buf req;

    drop(step_alive(p, "ALIVE2 body of exactly 13 bytes (empty name)", &a, NULL, NULL, 0));
    a = alive_v6("abc", 41002);
    alive_frame(&req, &a);
    req.data[12] = 200; /* Nlen says 200, but only "abc" and Elen follow */
    step_raw(p, "ALIVE2 Nlen 200 larger than the body", &req, 0);
    a = alive_v6("abc", 41003);
    alive_frame(&req, &a);
    req.data[req.len - 1] = 50; /* Elen says 50, but nothing follows */
    step_raw(p, "ALIVE2 Elen 50 larger than the body", &req, 0);
    a = alive_v6("future", 41005);
    a.high = 7;
    a.low = 6;
    hold(p, step_alive(p, "ALIVE2 future, versions 7..6", &a, NULL, NULL, 0));
    step_tag(p, "PORT_PLEASE2 future", DIST_EPMD_PORT_PLEASE2_REQ, "future", 6);
    a = alive_v6("splitnode", 41004);
    hold(p, step_alive(p, "ALIVE2 v6 splitnode split over two writes", &a, NULL, NULL, 9));
    step_tag(p, "PORT_PLEASE2 splitnode", DIST_EPMD_PORT_PLEASE2_REQ, "splitnode", 9);
}

static void seq_framing(struct probe *p)
{
    static const uint8_t zero[] = {0x00, 0x00};
    static const uint8_t big[] = {0x0b, 0xf2, 0x6e}; /* Length 3058 */
    static const uint8_t two[] = {0x00, 0x01, 0x6e, 0x00, 0x01, 0x6e};
    static const uint8_t pp_names[] = {0x00, 0x06, 0x7a, 'a', 'l', 'p', 'h', 'a', 0x00, 0x01, 0x6e};
    struct buf req = {0};

    buf_mem(&req, zero, sizeof(zero));
    step_raw(p, "Length 0", &req, 0);
    req.len = 0;
    buf_mem(&req, big, sizeof(big));
    step_raw(p, "Length 3058 (too large), only the tag sent", &req, 0);
    req.len = 0;
    buf_mem(&req, two, sizeof(two));
    step_raw(p, "two NAMES requests pipelined in one write", &req, 0);
    req.len = 0;
    buf_mem(&req, pp_names, sizeof(pp_names));
    step_raw(p, "PORT_PLEASE2 and NAMES pipelined in one write", &req, 0);
    step_tag(p, "unknown tag 'Q'", 'Q', NULL, 0);
    step_tag(p, "obsolete PORT_PLEASE 'p' alpha", 'p', "alpha", 5);
}

static void seq_admin_strict(struct probe *p, int incomplete)
{
    step_tag(p, "KILL with names registered", DIST_EPMD_KILL_REQ, NULL, 0);
    step_tag(p, "STOP alpha (strict)", DIST_EPMD_STOP_REQ, "alpha", 5);
    wait_closed(p, p->alpha, IDLE_MS, "alpha's registration socket");
    step_tag(p, "STOP nosuch (strict)", DIST_EPMD_STOP_REQ, "nosuch", 6);
    step_tag(p, "PORT_PLEASE2 alpha after STOP", DIST_EPMD_PORT_PLEASE2_REQ, "alpha", 5);
    printf("## the incomplete request, seconds later (daemons run with -packet_timeout 1)\n");
    wait_closed(p, incomplete, 5000, "incomplete request");
    drop(incomplete);
}

/* Opens a connection with an incomplete request, to see the packet timeout close it later. */
static int start_incomplete(struct probe *p)
{
    static const uint8_t part[] = {0x00, 0x05, 0x6e};
    struct buf req = {0};
    int fd;

    printf("## incomplete request: Length 5, only the tag sent\n");
    buf_mem(&req, part, sizeof(part));
    fd = exchange(p, &req, 0, 0);
    if (fd >= 0) {
        print_rows("<", p->r.data, p->r.len);
        print_state(&p->r);
    }
    return fd;
}

static void run_strict(struct probe *p)
{
    int incomplete;

    seq_register(p);
    incomplete = start_incomplete(p);
    seq_port_please(p);
    seq_lists(p);
    seq_duplicates(p);
    seq_second_write(p, "delta", 1);
    seq_second_write(p, "epsilon", 0);
    printf("## gamma's registration socket closed by us\n");
    unhold(p, p->gamma);
    wait_unregistered(p, "gamma");
    seq_names_limits(p);
    seq_alive_malformed(p);
    seq_framing(p);
    step_tag(p, "NAMES, everything registered", DIST_EPMD_NAMES_REQ, NULL, 0);
    step_tag(p, "DUMP, everything registered, gamma old", DIST_EPMD_DUMP_REQ, NULL, 0);
    seq_admin_strict(p, incomplete);
    printf("## teardown\n");
    release_all(p);
    step_tag(p, "KILL with nothing registered", DIST_EPMD_KILL_REQ, NULL, 0);
    wait_refused(p);
}

/* ---- The relaxed sequence ------------------------------------------------------------------ */

static void run_relaxed(struct probe *p)
{
    struct alive a = alive_v6("alpha", 42001);
    struct creation first;
    int alpha;
    int beta;

    alpha = step_alive(p, "ALIVE2 v6 alpha (kept open)", &a, NULL, &first, 0);
    a = alive_v6("beta", 42002);
    beta = step_alive(p, "ALIVE2 v6 beta (kept open)", &a, NULL, NULL, 0);
    step_tag(p, "STOP alpha (relaxed)", DIST_EPMD_STOP_REQ, "alpha", 5);
    wait_closed(p, alpha, 1000, "alpha's registration socket");
    drop(alpha);
    step_tag(p, "PORT_PLEASE2 alpha after STOP", DIST_EPMD_PORT_PLEASE2_REQ, "alpha", 5);
    step_tag(p, "STOP nosuch (relaxed)", DIST_EPMD_STOP_REQ, "nosuch", 6);
    step_tag(p, "STOP with an empty name (relaxed)", DIST_EPMD_STOP_REQ, NULL, 0);
    step_tag(p, "STOP \"\\0\" (relaxed)", DIST_EPMD_STOP_REQ, "", 1);
    step_tag(p, "STOP \"beta\\0\" (trailing NUL)", DIST_EPMD_STOP_REQ, "beta", 5);
    wait_closed(p, beta, IDLE_MS, "beta's registration socket");
    drop(beta);
    a = alive_v6("alpha", 42003);
    alpha = step_alive(p, "ALIVE2 v6 alpha re-registered after STOP", &a,
                       first.known ? &first : NULL, NULL, 0);
    step_tag(p, "NAMES", DIST_EPMD_NAMES_REQ, NULL, 0);
    step_tag(p, "DUMP", DIST_EPMD_DUMP_REQ, NULL, 0);
    step_tag(p, "KILL with alpha registered (relaxed)", DIST_EPMD_KILL_REQ, NULL, 0);
    wait_closed(p, alpha, 1000, "alpha's registration socket");
    drop(alpha);
    wait_refused(p);
}

int main(int argc, char **argv)
{
    struct probe p = {.alpha = -1, .gamma = -1};
    char *end = NULL;
    long port = argc == 3 ? strtol(argv[1], &end, 10) : 0;
    int relaxed = argc == 3 && strcmp(argv[2], "relaxed") == 0;

    if (argc != 3 || *end != '\0' || port < 1 || port > 65535 ||
        (!relaxed && strcmp(argv[2], "strict") != 0)) {
        fprintf(stderr, "usage: epmd_probe PORT strict|relaxed\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    p.port = (uint16_t)port;
    printf("# epmd_probe, %s sequence\n", relaxed ? "relaxed" : "strict");
    if (relaxed)
        run_relaxed(&p);
    else
        run_strict(&p);
    printf("# end\n");
    return 0;
}
