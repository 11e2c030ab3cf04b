/*
 * daemon.h: run the epmd daemon under test and talk to it over raw loopback sockets.
 * Shared by the integration tests (test_epmd_daemon_*.c, test_epmd_client.c); every helper
 * is static.
 *
 *   daemon_start: pick a free port --> fork/exec EPMD_BIN (stderr to a temp file)
 *                 --> poll connect + NAMES until it answers (bounded), else retry a new port
 *   daemon_stop:  SIGTERM --> wait (bounded) --> SIGKILL --> waitpid --> remove the temp dir
 *
 * The child asks the kernel for SIGKILL when the test process dies, so a test that crashes or
 * times out before its .fini still leaves no daemon behind. Every socket has send and receive
 * timeouts and every wait loop is bounded, so a wrong daemon fails a test instead of hanging it.
 */
#ifndef TEST_DAEMON_H
#define TEST_DAEMON_H

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DAEMON_START_TRIES 5
#define DAEMON_READY_TRIES 200 /* x 10 ms */
#define DAEMON_TERM_MS     3000
#define SOCK_TIMEOUT_MS    2000

struct daemon {
    pid_t pid;  /* 0 when not running or already reaped */
    int status; /* wait status, once reaped */
    uint16_t port;
    char dir[64]; /* temporary directory */
    char log[96]; /* the daemon's stdout and stderr */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- Processes ------------------------------------------------------------------------------ */

/* fork/exec argv with stdout to out_fd and stderr to err_fd; the child dies with the test. */
static pid_t spawn(char *const argv[], int out_fd, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execv(argv[0], argv);
    _exit(127);
}

/* Reap pid if it exits within ms. Returns 1 with *status set, or 0 if it still runs. */
static int wait_exit(pid_t pid, unsigned ms, int *status)
{
    uint64_t deadline = mono_ms() + ms;

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return 1;
        if (mono_ms() >= deadline)
            return 0;
        sleep_ms(2);
    }
}

/* Read a whole small file into a NUL-terminated malloc'd buffer (empty on error). */
static char *slurp(const char *path, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    cr_assert_not_null(buf);
    for (ssize_t n = 1; fd >= 0 && n > 0 && len < (1u << 24);) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        n = read(fd, buf + len, cap - 1 - len);
        if (n > 0)
            len += (size_t)n;
    }
    if (fd >= 0)
        close(fd);
    buf[len] = '\0';
    if (len_out != NULL)
        *len_out = len;
    return buf;
}

/* How many times needle occurs in the file. */
static int file_count(const char *path, const char *needle)
{
    char *text = slurp(path, NULL);
    int n = 0;

    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    free(text);
    return n;
}

static int file_contains(const char *path, const char *needle)
{
    return file_count(path, needle) > 0;
}

/* Lines a sanitizer or a crash leaves on the daemon's stderr. */
static int log_has_sanitizer_report(const char *path)
{
    return file_contains(path, "Sanitizer") || file_contains(path, "runtime error:");
}

/* ---- Sockets -------------------------------------------------------------------------------- */

static void sock_timeouts(int fd, unsigned ms)
{
    struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};
    int one = 1;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A connected socket to 127.0.0.1:port with timeouts set, or -1. rcvbuf 0: the default. */
static int sock_dial_rcvbuf(uint16_t port, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    sock_timeouts(fd, SOCK_TIMEOUT_MS);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int sock_dial(uint16_t port)
{
    return sock_dial_rcvbuf(port, 0);
}

static int dial(uint16_t port)
{
    int fd = sock_dial(port);

    cr_assert_geq(fd, 0, "cannot connect to 127.0.0.1:%u: %s", port, strerror(errno));
    return fd;
}

/* Send all n bytes; 0 or -1 (never SIGPIPE). */
static int send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_raw(int fd, const void *buf, size_t n)
{
    cr_assert_eq(send_all(fd, buf, n), 0, "send of %zu bytes failed: %s", n, strerror(errno));
}

/*
 * Read until n bytes arrived, the peer closed, or the receive timeout ran out.
 * Returns the bytes read; *eof (may be NULL) says whether the peer closed or reset.
 */
static size_t recv_upto(int fd, uint8_t *buf, size_t n, int *eof)
{
    size_t got = 0;

    if (eof != NULL)
        *eof = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE))) {
            if (eof != NULL)
                *eof = 1;
            break;
        }
        if (r < 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* Read a whole reply: until the peer closes (asserted) or cap bytes. */
static size_t recv_to_close(int fd, uint8_t *buf, size_t cap)
{
    int eof = 0;
    size_t n = recv_upto(fd, buf, cap, &eof);

    cr_assert(eof, "the daemon did not close the connection after %zu reply bytes", n);
    return n;
}

/*
 * Watch fd for up to ms. Returns 1 if the peer closed (or reset) without sending anything,
 * 0 if it stayed open and silent, or -1 if bytes arrived.
 */
static int peer_state(int fd, unsigned ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint8_t byte;
    ssize_t r;
    int rc;

    do {
        rc = poll(&p, 1, (int)ms);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return 0;
    r = recv(fd, &byte, 1, MSG_DONTWAIT);
    if (r > 0)
        return -1;
    return r == 0 || errno == ECONNRESET ? 1 : 0;
}

static void expect_closed_silently(int fd, unsigned ms, const char *what)
{
    int st = peer_state(fd, ms);

    cr_assert_neq(st, -1, "%s: the daemon sent a reply, expected a silent close", what);
    cr_assert_eq(st, 1, "%s: the daemon kept the connection open for %u ms", what, ms);
}

static void expect_open(int fd, unsigned ms, const char *what)
{
    int st = peer_state(fd, ms);

    cr_assert_neq(st, -1, "%s: unexpected bytes from the daemon", what);
    cr_assert_eq(st, 0, "%s: the daemon closed the connection", what);
}

/* ---- The daemon ----------------------------------------------------------------------------- */

/* A port that was free on 127.0.0.1 a moment ago, or 0. */
static uint16_t pick_port(void)
{
    for (int tries = 0; tries < 20; tries++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok;

        if (fd < 0)
            continue;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
             getsockname(fd, (struct sockaddr *)&sa, &len) == 0;
        close(fd);
        if (ok && ntohs(sa.sin_port) != 0)
            return ntohs(sa.sin_port);
    }
    return 0;
}

/* NAMES answered with our port word: it is our daemon and it serves. */
static int daemon_answers(uint16_t port)
{
    static const uint8_t names[] = {0x00, 0x01, 'n'};
    uint8_t word[4];
    int eof = 0;
    int fd = sock_dial(port);
    int ok;

    if (fd < 0)
        return 0;
    ok = send_all(fd, names, sizeof(names)) == 0 && recv_upto(fd, word, 4, &eof) == 4 &&
         word[0] == 0 && word[1] == 0 && word[2] == (port >> 8) && word[3] == (port & 0xff);
    close(fd);
    return ok;
}

/* Poll until the daemon answers; 0, or -1 if it exited or never answered. */
static int daemon_wait_ready(struct daemon *d)
{
    for (int i = 0; i < DAEMON_READY_TRIES; i++) {
        if (waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
            d->pid = 0;
            return -1;
        }
        if (daemon_answers(d->port))
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static void daemon_kill(struct daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    if (!wait_exit(d->pid, DAEMON_TERM_MS, &d->status)) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &d->status, 0);
        d->status = -1; /* needed SIGKILL */
    }
    d->pid = 0;
}

static int daemon_try(struct daemon *d, const char *const *flags)
{
    char port[8];
    char *argv[24] = {EPMD_BIN, "-port", port, "-address", "127.0.0.1"};
    int argc = 5, fd, rc;

    d->port = pick_port();
    if (d->port == 0)
        return -1;
    snprintf(port, sizeof(port), "%u", d->port);
    for (; flags != NULL && *flags != NULL && argc < 23; flags++)
        argv[argc++] = (char *)*flags;
    argv[argc] = NULL;
    fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    d->pid = spawn(argv, fd, fd);
    close(fd);
    if (d->pid < 0) {
        d->pid = 0;
        return -1;
    }
    rc = daemon_wait_ready(d);
    if (rc != 0)
        daemon_kill(d);
    return rc;
}

static void show_log(const struct daemon *d, const char *why)
{
    char *text = slurp(d->log, NULL);

    cr_log_error("epmd daemon log (%s):\n%s", why, text);
    free(text);
}

/* Start the daemon with extra flags (NULL-terminated, may be NULL); asserts it answers. */
static void daemon_start(struct daemon *d, const char *const *flags)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/epmd-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir), "mkdtemp: %s", strerror(errno));
    snprintf(d->log, sizeof(d->log), "%s/stderr.log", d->dir);
    for (int i = 0; i < DAEMON_START_TRIES; i++) {
        if (daemon_try(d, flags) == 0)
            return;
    }
    show_log(d, "it never answered");
    /* A failed .init skips .fini, so clean up here. */
    unlink(d->log);
    rmdir(d->dir);
    d->dir[0] = '\0';
    cr_assert_fail("the daemon %s never answered on 127.0.0.1", EPMD_BIN);
}

/* Still running (not exited, not reaped)? */
static int daemon_running(struct daemon *d)
{
    if (d->pid <= 0)
        return 0;
    if (waitpid(d->pid, &d->status, WNOHANG) == d->pid) {
        d->pid = 0;
        return 0;
    }
    return 1;
}

/* Descriptors the daemon holds open, from /proc, or -1. */
static int daemon_fd_count(const struct daemon *d)
{
    char path[64];
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    dir = opendir(path);
    if (dir == NULL)
        return -1;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir))
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* The daemon's resident memory in KiB, from /proc, or -1. */
static long daemon_rss_kib(const struct daemon *d)
{
    char path[64], line[128];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    f = fopen(path, "re");
    if (f == NULL)
        return -1;
    while (kib < 0 && fgets(line, sizeof(line), f) != NULL)
        sscanf(line, "VmRSS: %ld kB", &kib);
    fclose(f);
    return kib;
}

/* Start the daemon again on the port it had (after daemon_kill). */
static __attribute__((unused)) void daemon_restart(struct daemon *dm)
{
    char port[8];
    char *argv[] = {EPMD_BIN, "-port", port, "-address", "127.0.0.1", NULL};
    int fd = open(dm->log, O_WRONLY | O_APPEND | O_CLOEXEC);

    cr_assert_geq(fd, 0);
    snprintf(port, sizeof(port), "%u", dm->port);
    dm->pid = spawn(argv, fd, fd);
    close(fd);
    cr_assert_gt(dm->pid, 0);
    cr_assert_eq(daemon_wait_ready(dm), 0, "epmd did not come back on port %u", dm->port);
}

/* Stop and reap the daemon, show any sanitizer report, and remove the temporary files. */
static void daemon_stop(struct daemon *d)
{
    int started = d->pid > 0;
    int running = daemon_running(d);
    int crashed = started && !running;
    int unclean;

    daemon_kill(d);
    if (d->dir[0] == '\0')
        return;
    /* SIGTERM ends the daemon with status 0; anything else (a leak report, say) is shown. */
    unclean = running && !(WIFEXITED(d->status) && WEXITSTATUS(d->status) == 0);
    if (crashed || unclean || log_has_sanitizer_report(d->log))
        show_log(d, crashed ? "it died on its own" : "unclean exit or sanitizer report");
    unlink(d->log);
    rmdir(d->dir);
    d->dir[0] = '\0';
}

#endif /* TEST_DAEMON_H */
