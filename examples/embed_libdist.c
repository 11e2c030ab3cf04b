/*
 * embed_libdist.c: a C program that joins a cluster with libdist alone, without the actor
 * runtime. It starts a node on its own libev loop, sends typed messages to a registered name
 * on other nodes, and prints what happens, one machine-readable line per event:
 *
 *     ready name=a@127.0.0.1 port=41029 creation=3
 *     up b@127.0.0.1
 *     recv from=b@127.0.0.1 type=embed.Ping len=16
 *     sent to=b@127.0.0.1 count=100
 *     busy to=b@127.0.0.1 pending=67108864
 *     down b@127.0.0.1 heartbeat_timeout
 *
 * Diagnostics from the library go to stderr. SIGTERM or SIGINT stops the node gracefully
 * (its peers see graceful_shutdown) and exits 0.
 *
 * Try it with an epmd running (here on port 4370):
 *     embed_libdist --name b@127.0.0.1 --epmd-port 4370 --cookie secret --echo
 *     embed_libdist --name a@127.0.0.1 --epmd-port 4370 --cookie secret \
 *                   --send-to b@127.0.0.1 --count 3
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "config.h"
#include "dist.h"

#define MAX_TARGETS 8
#define PING_TYPE   "embed.Ping"
#define PONG_TYPE   "embed.Pong"
#define INBOX       "inbox"
#define BUSY_WAIT_S 0.01
#define MAX_SIZE    (64u * 1024u * 1024u)

/* The parsed options: the program's only globals. */
static struct {
    struct dist_node_opts node;
    const char *targets[MAX_TARGETS];
    int ntargets;
    long count;
    size_t size;
    int echo;
    int verbose;
} opt = {.count = 1, .size = 16};

struct app {
    struct ev_loop *loop;
    struct dist_node *node;
    ev_signal sigterm, sigint;
    ev_idle pump;       /* sends while the queues take it */
    ev_timer pump_wait; /* after a busy, try again a little later */
    long sent[MAX_TARGETS];
    int busy_told[MAX_TARGETS];
    uint8_t *payload;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: embed_libdist --name NAME@HOST [options]\n"
            "\n"
            "Start a libdist node and exchange messages with other nodes.\n"
            "\n"
            "  --name N              this node, name@host (required)\n"
            "  --epmd-port P         epmd's port (default $ERL_EPMD_PORT, else 4369)\n"
            "  --listen-port P       port to listen on (default: ephemeral)\n"
            "  --cookie C            the cluster cookie (default $DIST_COOKIE, then the file)\n"
            "  --cookie-file F       cookie file (default ~/.dist.cookie)\n"
            "  --insecure            plain TCP instead of TLS 1.3\n"
            "  --tick MS             a peer silent this long is down (default 60000)\n"
            "  --handshake-timeout MS  bound on connect and handshake (default 5000)\n"
            "  --high-water BYTES    per-peer queue before sends are busy (default 64 MiB)\n"
            "  --backoff-max MS      largest reconnect and re-register delay (default 30000)\n"
            "  --busy-poll US        after traffic, poll this long before sleeping: lower\n"
            "                        latency for a busier core (default 50; 0: never)\n"
            "  --send-to NODE        send to the registered name \"inbox\" on NODE (repeatable)\n"
            "  --count N             messages per target (default 1)\n"
            "  --size BYTES          payload size (default 16)\n"
            "  --echo                answer every " PING_TYPE " with a " PONG_TYPE "\n"
            "  --verbose             log everything the library says\n"
            "  --help, --version\n");
}

static int parse_num(const char *s, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* An option that takes a number: check it against its bound and store it. */
static int parse_numeric(int c, const char *arg)
{
    uint32_t *u32 = c == 't'   ? &opt.node.tick_ms
                    : c == 'H' ? &opt.node.handshake_timeout_ms
                    : c == 'b' ? &opt.node.backoff_max_ms
                               : NULL;
    long max = c == 'p' || c == 'l' ? 65535
               : c == 'B'           ? 1000000
               : c == 'C'           ? LONG_MAX
               : c == 'S'           ? MAX_SIZE
                                    : UINT32_MAX;
    long v;

    if (parse_num(arg, max, &v) != 0)
        return -1;
    if (u32 != NULL)
        *u32 = (uint32_t)v;
    else if (c == 'p' || c == 'l')
        *(c == 'p' ? &opt.node.epmd_port : &opt.node.listen_port) = (uint16_t)v;
    else if (c == 'w')
        opt.node.queue_high_water = (size_t)v;
    else if (c == 'B')
        opt.node.busy_poll_us = v != 0 ? (int32_t)v : -1;
    else if (c == 'C')
        opt.count = v;
    else
        opt.size = (size_t)v;
    return 0;
}

static const struct option longopts[] = {
    {"name", required_argument, NULL, 'n'},
    {"epmd-port", required_argument, NULL, 'p'},
    {"listen-port", required_argument, NULL, 'l'},
    {"cookie", required_argument, NULL, 'c'},
    {"cookie-file", required_argument, NULL, 'f'},
    {"insecure", no_argument, NULL, 'i'},
    {"tick", required_argument, NULL, 't'},
    {"handshake-timeout", required_argument, NULL, 'H'},
    {"high-water", required_argument, NULL, 'w'},
    {"backoff-max", required_argument, NULL, 'b'},
    {"busy-poll", required_argument, NULL, 'B'},
    {"send-to", required_argument, NULL, 's'},
    {"count", required_argument, NULL, 'C'},
    {"size", required_argument, NULL, 'S'},
    {"echo", no_argument, NULL, 'e'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Returns 0 to run, 1 to exit 0 (help, version), -1 on a usage error. */
static int parse_args(int argc, char **argv)
{
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            opt.node.name = optarg;
            break;
        case 'c':
            opt.node.cookie = optarg;
            break;
        case 'f':
            opt.node.cookie_file = optarg;
            break;
        case 'i':
            opt.node.insecure = 1;
            break;
        case 'e':
            opt.echo = 1;
            break;
        case 'v':
            opt.verbose = 1;
            break;
        case 's':
            if (opt.ntargets == MAX_TARGETS) {
                fprintf(stderr, "embed_libdist: at most %d --send-to\n", MAX_TARGETS);
                return -1;
            }
            opt.targets[opt.ntargets++] = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("embed_libdist %s\n", PROJECT_VERSION);
            return 1;
        case '?':
            return -1;
        default:
            if (parse_numeric(c, optarg) != 0) {
                fprintf(stderr, "embed_libdist: bad number '%s'\n", optarg);
                return -1;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "embed_libdist: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (opt.node.name == NULL) {
        fprintf(stderr, "embed_libdist: --name is required\n");
        return -1;
    }
    return 0;
}

/* ---- Node callbacks -------------------------------------------------------------------------- */

static void log_cb(int level, const char *msg, void *user_data)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};

    if (level <= DIST_EPMD_LOG_WARN || opt.verbose)
        fprintf(stderr, "[%s] %s\n", names[level & 3], msg);
}

static void on_ready(struct dist_node *node, uint32_t creation, void *user_data)
{
    struct app *app = user_data;

    printf("ready name=%s port=%u creation=%u\n", opt.node.name, (unsigned)dist_node_port(node),
           (unsigned)creation);
    if (opt.ntargets > 0)
        ev_idle_start(app->loop, &app->pump);
}

static void on_message(struct dist_node *node, const struct dist_msg *msg, const char *from_node,
                       void *user_data)
{
    if (msg->kind != DIST_MSG_SEND)
        return;
    printf("recv from=%s type=%s len=%zu\n", from_node, msg->type, msg->len);
    if (opt.echo && strcmp(msg->type, PING_TYPE) == 0) {
        int rc =
            dist_node_send(node, NULL, from_node, NULL, INBOX, PONG_TYPE, msg->payload, msg->len);
        if (rc != 0)
            printf("error echo to=%s %s\n", from_node, dist_err_name(rc));
    }
}

static void on_node_up(struct dist_node *node, const char *name, void *user_data)
{
    printf("up %s\n", name);
}

static void on_node_down(struct dist_node *node, const char *name, int reason, void *user_data)
{
    printf("down %s %s\n", name, dist_down_reason_name(reason));
}

/* ---- Sending --------------------------------------------------------------------------------- */

/* Send what the queue of target @i takes; 1 when target i is done. */
static int pump_target(struct app *app, int i)
{
    while (app->sent[i] < opt.count) {
        int rc = dist_node_send(app->node, NULL, opt.targets[i], NULL, INBOX, PING_TYPE,
                                app->payload, opt.size);
        if (rc == DIST_EBUSY) {
            if (!app->busy_told[i]++)
                printf("busy to=%s pending=%zu\n", opt.targets[i],
                       dist_node_peer_pending(app->node, opt.targets[i]));
            return 0;
        }
        if (rc != 0) {
            printf("error send to=%s %s\n", opt.targets[i], dist_err_name(rc));
            app->sent[i] = opt.count;
            return 1;
        }
        if (++app->sent[i] == opt.count)
            printf("sent to=%s count=%ld\n", opt.targets[i], opt.count);
    }
    return 1;
}

static void pump_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct app *app = w->data;
    int done = 1;

    for (int i = 0; i < opt.ntargets; i++)
        done &= pump_target(app, i);
    ev_idle_stop(loop, w);
    if (!done)
        ev_timer_start(loop, &app->pump_wait);
}

static void pump_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct app *app = w->data;

    ev_idle_start(loop, &app->pump);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *app = w->data;

    dist_node_stop(app->node);
    ev_break(loop, EVBREAK_ALL);
}

/* ---- Main ------------------------------------------------------------------------------------ */

static void app_watchers(struct app *app)
{
    ev_signal_init(&app->sigterm, signal_cb, SIGTERM);
    ev_signal_init(&app->sigint, signal_cb, SIGINT);
    ev_idle_init(&app->pump, pump_cb);
    ev_timer_init(&app->pump_wait, pump_wait_cb, BUSY_WAIT_S, 0.);
    app->sigterm.data = app->sigint.data = app->pump.data = app->pump_wait.data = app;
    ev_signal_start(app->loop, &app->sigterm);
    ev_signal_start(app->loop, &app->sigint);
}

int main(int argc, char **argv)
{
    static const struct dist_node_handlers handlers = {on_ready, on_message, on_node_up,
                                                       on_node_down};
    struct app app = {0};
    int rc = parse_args(argc, argv);

    if (rc != 0)
        return rc > 0 ? 0 : 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    app.loop = ev_default_loop(EVFLAG_AUTO);
    app.payload = calloc(1, opt.size > 0 ? opt.size : 1);
    if (app.loop == NULL || app.payload == NULL) {
        fprintf(stderr, "embed_libdist: out of memory\n");
        return 1;
    }
    opt.node.log_cb = log_cb;
    rc = dist_node_new(app.loop, &opt.node, &app.node);
    if (rc == 0)
        rc = dist_node_start(app.node, &handlers, &app);
    if (rc != 0) {
        fprintf(stderr, "embed_libdist: cannot start %s: %s\n", opt.node.name, dist_strerror(rc));
        dist_node_free(app.node);
        free(app.payload);
        return 1;
    }
    app_watchers(&app);
    ev_run(app.loop, 0);
    dist_node_free(app.node);
    free(app.payload);
    return 0;
}
