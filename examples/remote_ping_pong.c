/*
 * remote_ping_pong.c: two actors on two nodes, in two terminals. The server node runs an actor
 * registered as "pong" that answers every "ping N" with "pong N". The client node runs a "ping"
 * actor that sends its first ping to {pong, Node} by name, then the next ones to the PID the
 * answer came from: the same actor_send() as for a local actor.
 *
 * Start an epmd, then (here on port 4370, with plain TCP left off: TLS 1.3 is the default):
 *
 *     terminal 1:  remote_ping_pong --node pong@127.0.0.1 --epmd-port 4370 --cookie secret
 *     terminal 2:  remote_ping_pong --node ping@127.0.0.1 --epmd-port 4370 --cookie secret \
 *                                   --peer pong@127.0.0.1 --count 5
 *
 * The client prints each pong (up to 20 of them) and a summary, then exits 0; it exits 1 when
 * the server does not answer within --timeout seconds or its node goes down. The server runs
 * until SIGINT or SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "config.h"

#define SHOW_MAX 20 /* pongs printed one by one; past this, only the summary */
#define CHECKS   4  /* the client looks for progress this many times per --timeout */

/* The parsed options: the program's only globals. */
static struct {
    struct actor_dist_opts dist;
    const char *peer;
    long count;
    long timeout;
} opt = {.count = 3, .timeout = 5};

/* How the client's ping actor ended, for the main thread. */
struct outcome {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int ok;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The N of a raw message "@word N", or 0 when @msg is anything else. */
static long number_after(const struct actor_msg *msg, const char *word)
{
    size_t wl = strlen(word);
    char buf[32], *end;
    long n;

    if (msg->type != actor_type_raw() || msg->size <= wl + 1 || msg->size >= sizeof(buf) ||
        memcmp(msg->payload, word, wl) != 0 || ((const char *)msg->payload)[wl] != ' ')
        return 0;
    memcpy(buf, (const char *)msg->payload + wl + 1, msg->size - wl - 1);
    buf[msg->size - wl - 1] = '\0';
    n = strtol(buf, &end, 10);
    return *end == '\0' && n > 0 ? n : 0;
}

/* Send "@word @n" as a raw message: "ping 3", "pong 3". */
static int send_text(struct actor_system *sys, struct dist_pid to, const char *word, long n)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%s %ld", word, n);

    return actor_send_copy(sys, to, buf, (size_t)len);
}

/* ---- The server: pong -------------------------------------------------------------------- */

static int pong_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct actor_system *sys = actor_system_of(self);
    char pid[DIST_PID_STRLEN];
    long n = number_after(msg, "ping");

    if (n == 0)
        return 0;
    if (n <= SHOW_MAX) {
        dist_pid_format(pid, sizeof(pid), msg->from);
        printf("ping %ld from %s on %s\n", n, pid, actor_node_of(sys, msg->from));
        fflush(stdout);
    }
    send_text(sys, msg->from, "pong", n); /* a sender gone meanwhile misses its pong */
    return 0;
}

static const struct actor_behaviour pong_behaviour = {"pong", NULL, pong_handle, NULL};

/* ---- The client: ping -------------------------------------------------------------------- */

struct ping {
    struct outcome *out;
    double started;
    long last; /* the last pong's number */
    long seen; /* last, at the previous progress check */
    int quiet; /* progress checks in a row that found no new pong */
};

static int ping_init(struct actor *self, void *arg, void **state)
{
    struct ping *p = calloc(1, sizeof(*p));
    char *first = strdup("ping 1");
    int rc;

    if (p == NULL || first == NULL) {
        free(p);
        free(first);
        return ACTOR_ENOMEM;
    }
    p->out = arg;
    p->started = now_s();
    *state = p;
    actor_monitor_nodes(self, 1);
    /* The first one by name: {pong, Peer} ! "ping 1". */
    rc = actor_send_at(actor_system_of(self), "pong", opt.peer, actor_type_raw(), first, 6);
    if (rc != 0) {
        free(first);
        return rc;
    }
    /* Checked a few times per --timeout, rather than a timer re-armed on every pong. */
    return actor_timer_start(self, (double)opt.timeout / CHECKS, (double)opt.timeout / CHECKS, 0,
                             NULL);
}

/* A progress check: true when no pong came for --timeout seconds. */
static int ping_stalled(struct ping *p)
{
    p->quiet = p->last == p->seen ? p->quiet + 1 : 0;
    p->seen = p->last;
    return p->quiet >= CHECKS;
}

static int ping_finish(struct ping *p, int ok)
{
    pthread_mutex_lock(&p->out->lock);
    p->out->done = 1;
    p->out->ok = ok;
    pthread_cond_signal(&p->out->cond);
    pthread_mutex_unlock(&p->out->lock);
    return ok ? 0 : ACTOR_SHUTDOWN;
}

static int ping_pong(struct actor *self, struct ping *p, struct actor_msg *msg, long n)
{
    struct actor_system *sys = actor_system_of(self);
    char pid[DIST_PID_STRLEN];
    double took;

    if (n <= SHOW_MAX) {
        dist_pid_format(pid, sizeof(pid), msg->from);
        printf("pong %ld from %s on %s\n", n, pid, actor_node_of(sys, msg->from));
    }
    p->last = n;
    if (n < opt.count) /* the next ones to the PID that answered: location transparency */
        return send_text(sys, msg->from, "ping", n + 1);
    took = now_s() - p->started;
    printf("done: %ld round trips in %.1f ms (%.1f us each)\n", n, took * 1e3, took * 1e6 / n);
    actor_exit(self, ACTOR_NORMAL);
    return ping_finish(p, 1);
}

static int ping_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct ping *p = state;
    long n;

    switch (msg->kind) {
    case ACTOR_MSG_TIMER:
        if (!ping_stalled(p))
            return 0;
        fprintf(stderr, "no answer from %s within %ld s (after %ld pongs)\n", opt.peer, opt.timeout,
                p->last);
        return ping_finish(p, 0);
    case ACTOR_MSG_NODEUP:
        printf("connected to %s\n", msg->u.node.name);
        return 0;
    case ACTOR_MSG_NODEDOWN:
        fprintf(stderr, "node %s went down (%s)\n", msg->u.node.name,
                dist_down_reason_name(msg->u.node.reason));
        return ping_finish(p, 0);
    default:
        n = number_after(msg, "pong");
        return n > 0 ? ping_pong(self, p, msg, n) : 0;
    }
}

static void ping_terminate(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour ping_behaviour = {"ping", ping_init, ping_handle,
                                                      ping_terminate};

/* ---- Options and main ------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: remote_ping_pong --node NAME@HOST [--peer NODE [--count N]] [options]\n"
            "\n"
            "Without --peer, run the server: an actor registered as \"pong\" that answers\n"
            "pings, until SIGINT or SIGTERM. With --peer, ping the pong of that node.\n"
            "\n"
            "  --node N          this node, name@host (required)\n"
            "  --peer N          the server's node: run the client\n"
            "  --count N         round trips (default 3)\n"
            "  --timeout S       client: give up after S seconds without an answer (checked\n"
            "                    every S/4 s; default 5)\n"
            "  --epmd-port P     epmd's port (default 4369)\n"
            "  --cookie C        the cluster cookie (default $DIST_COOKIE, then ~/.dist.cookie)\n"
            "  --insecure        plain TCP instead of TLS 1.3\n"
            "  --help, --version\n");
}

static int parse_num(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Returns 0 to run, 1 to exit 0 (help, version), -1 on a usage error. */
static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"node", required_argument, NULL, 'n'},      {"peer", required_argument, NULL, 'P'},
        {"count", required_argument, NULL, 'C'},     {"timeout", required_argument, NULL, 'T'},
        {"epmd-port", required_argument, NULL, 'p'}, {"cookie", required_argument, NULL, 'c'},
        {"insecure", no_argument, NULL, 'i'},        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},         {NULL, 0, NULL, 0},
    };
    long v;
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'n' || c == 'P' || c == 'c') {
            *(c == 'n' ? &opt.dist.name : c == 'P' ? &opt.peer : &opt.dist.cookie) = optarg;
        } else if (c == 'i') {
            opt.dist.insecure = 1;
        } else if (c == 'h' || c == 'V') {
            if (c == 'h')
                usage(stdout);
            else
                printf("remote_ping_pong %s\n", PROJECT_VERSION);
            return 1;
        } else if (c == 'C' || c == 'T' || c == 'p') {
            if (parse_num(optarg, 1, c == 'p' ? 65535 : c == 'T' ? 3600 : LONG_MAX, &v) != 0) {
                fprintf(stderr, "remote_ping_pong: bad number '%s'\n", optarg);
                return -1;
            }
            if (c == 'p')
                opt.dist.epmd_port = (uint16_t)v;
            else
                *(c == 'C' ? &opt.count : &opt.timeout) = v;
        } else {
            return -1;
        }
    }
    if (optind < argc || opt.dist.name == NULL) {
        fprintf(stderr, "remote_ping_pong: %s\n",
                optind < argc ? "unexpected argument" : "--node is required");
        return -1;
    }
    return 0;
}

static void log_cb(int level, const char *msg, void *user_data)
{
    if (level <= 1) /* warnings and errors */
        fprintf(stderr, "%s\n", msg);
}

/* The server: until SIGINT or SIGTERM (blocked in every thread, taken here). */
static int run_server(struct actor_system *sys, const sigset_t *sigs)
{
    struct actor_spawn_opts so = {.name = "pong", .scheduler = -1};
    int sig, rc = actor_spawn(sys, NULL, &pong_behaviour, NULL, &so, NULL);

    if (rc != 0)
        return rc;
    printf("%s is up; its actor \"pong\" waits for pings (Ctrl-C stops it)\n",
           actor_node_name(sys));
    fflush(stdout);
    sigwait(sigs, &sig);
    printf("stopping\n");
    return 0;
}

static int run_client(struct actor_system *sys)
{
    struct outcome out = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int rc = actor_spawn(sys, NULL, &ping_behaviour, &out, NULL, NULL);

    if (rc != 0)
        return rc;
    pthread_mutex_lock(&out.lock);
    while (!out.done)
        pthread_cond_wait(&out.cond, &out.lock);
    pthread_mutex_unlock(&out.lock);
    return out.ok ? 0 : ACTOR_ETIMEDOUT;
}

int main(int argc, char **argv)
{
    struct actor_system_opts so = {.schedulers = 1, .log = log_cb};
    struct actor_system *sys = NULL;
    sigset_t sigs;
    int rc = parse_args(argc, argv);

    if (rc != 0) {
        if (rc < 0)
            usage(stderr);
        return rc < 0 ? 2 : 0;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    rc = actor_system_new(&so, &sys);
    if (rc == 0)
        rc = actor_dist_start(sys, &opt.dist);
    if (rc == 0)
        rc = actor_system_start(sys);
    if (rc == 0)
        rc = opt.peer != NULL ? run_client(sys) : run_server(sys, &sigs);
    if (rc != 0 && rc != ACTOR_ETIMEDOUT)
        fprintf(stderr, "remote_ping_pong: %s\n", actor_strerror(rc));
    if (sys != NULL)
        actor_system_shutdown(sys, 2.0); /* ACTOR_EINVAL when it never started: nothing to do */
    actor_system_free(sys);
    return rc == 0 ? 0 : 1;
}
