/*
 * discovery.h: what the distributed examples share: their command line, how they find their
 * peers, and the table they keep them in. A thread of its own runs a
 * libdist epmd client that watches the local epmd's registry; for every node registered there
 * (already, or from now on) other than this one, it sends "found NAME@HOST" to a local actor,
 * which greets the node's actor and monitors it. Shared by distributed_cluster.c and
 * distributed_chat.c; included once by each.
 */
#ifndef EXAMPLES_DISCOVERY_H
#define EXAMPLES_DISCOVERY_H

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "actor.h"
#include "config.h"

#define NODE_MAX 512 /* "name@host": 255 + 1 + 255, and the NUL */

/* ---- Discovery: the epmd watch on a loop of its own ------------------------------------- */

struct discovery {
    struct actor_system *sys;
    struct ev_loop *loop;
    ev_async stop;
    struct dist_epmd_client *client;
    pthread_t thread;
    const char *actor; /* the local actor told of each node found, by registered name */
    char self[256];    /* this node's name part, to skip it */
    const char *host;  /* the host part: the nodes of one epmd share it */
};

/* Tell the local actor about node @name (not NUL-terminated) of our host: "found N@H". */
static void discovery_found(struct discovery *d, const char *name, size_t len)
{
    char *buf = malloc(NODE_MAX + 8);
    int n;

    if (buf == NULL)
        return;
    n = snprintf(buf, NODE_MAX + 8, "found %.*s@%s", (int)len, name, d->host);
    if (actor_send_named(d->sys, d->actor, actor_type_raw(), buf, (size_t)n) != 0)
        free(buf);
}

static void discovery_watch_cb(struct dist_epmd_client *client,
                               const struct dist_epmd_watch_event *ev, void *user_data)
{
    struct discovery *d = user_data;
    const struct dist_epmd_node *node;

    if (ev->kind == DIST_EPMD_WATCH_LOST) {
        fprintf(stderr, "epmd watch lost (%s); retrying\n", actor_strerror(ev->reason));
        return;
    }
    if (ev->kind != DIST_EPMD_WATCH_PRESENT && ev->kind != DIST_EPMD_WATCH_REGISTERED)
        return;
    node = &ev->entry->node;
    if (node->name_len == strlen(d->self) && memcmp(node->name, d->self, node->name_len) == 0)
        return;
    discovery_found(d, node->name, node->name_len);
}

static void discovery_stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct discovery *d = w->data;

    dist_epmd_client_free(d->client);
    d->client = NULL;
    ev_break(loop, EVBREAK_ALL);
}

static void *discovery_run(void *arg)
{
    struct discovery *d = arg;

    ev_run(d->loop, 0);
    return NULL;
}

/*
 * Watch the epmd at @epmd_host:@epmd_port for every node registered there, on a thread of its
 * own, and tell the actor registered as @actor of each one but @node itself.
 */
static int discovery_start(struct discovery *d, struct actor_system *sys, const char *node,
                           const char *epmd_host, uint16_t epmd_port, const char *actor)
{
    struct dist_epmd_client_opts co = {.host = epmd_host, .port = epmd_port};
    const char *at = strchr(node, '@');
    int rc;

    snprintf(d->self, sizeof(d->self), "%.*s", (int)(at - node), node);
    d->sys = sys;
    d->actor = actor;
    d->host = at + 1;
    d->loop = ev_loop_new(EVFLAG_AUTO);
    if (d->loop == NULL)
        return ACTOR_ENOMEM;
    rc = dist_epmd_client_new(d->loop, &co, &d->client);
    if (rc == 0)
        rc = dist_epmd_client_watch(d->client, discovery_watch_cb, d);
    ev_async_init(&d->stop, discovery_stop_cb);
    d->stop.data = d;
    ev_async_start(d->loop, &d->stop);
    if (rc == 0)
        rc = -pthread_create(&d->thread, NULL, discovery_run, d);
    if (rc != 0) {
        dist_epmd_client_free(d->client);
        ev_loop_destroy(d->loop);
    }
    return rc;
}

static void discovery_stop(struct discovery *d)
{
    ev_async_send(d->loop, &d->stop);
    pthread_join(d->thread, NULL);
    ev_loop_destroy(d->loop);
}

/* ---- The peers a node knows ------------------------------------------------------------------ */

#define MAX_PEERS 64

struct peer {
    char node[NODE_MAX];
    struct dist_pid pid; /* its actor, once a greeting came from it */
    struct actor_ref ref;
    int joined;
};

/* The entry of @node in @peers (MAX_PEERS of them); with @add, a free one made its own. */
static struct peer *peer_find(struct peer *peers, const char *node, int add)
{
    struct peer *free_slot = NULL;

    for (int i = 0; i < MAX_PEERS; i++) {
        if (peers[i].node[0] == '\0') {
            free_slot = free_slot != NULL ? free_slot : &peers[i];
        } else if (strcmp(peers[i].node, node) == 0) {
            return &peers[i];
        }
    }
    if (add && free_slot != NULL)
        snprintf(free_slot->node, sizeof(free_slot->node), "%s", node);
    return add ? free_slot : NULL;
}

/* ---- The command line ---------------------------------------------------------------------- */

/*
 * The command line both examples take: --node, --epmd-port, --cookie, --insecure, --help and
 * --version, into @dist. Returns 0 to run, 1 to exit 0 (help, version), -1 on a usage error.
 */
static int example_parse_args(int argc, char **argv, const char *prog, void (*usage)(FILE *out),
                              struct actor_dist_opts *dist)
{
    static const struct option longopts[] = {
        {"node", required_argument, NULL, 'n'},
        {"epmd-port", required_argument, NULL, 'p'},
        {"cookie", required_argument, NULL, 'c'},
        {"insecure", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    long v;
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'n' || c == 'c') {
            *(c == 'n' ? &dist->name : &dist->cookie) = optarg;
        } else if (c == 'i') {
            dist->insecure = 1;
        } else if (c == 'h' || c == 'V') {
            if (c == 'h')
                usage(stdout);
            else
                printf("%s %s\n", prog, PROJECT_VERSION);
            return 1;
        } else if (c == 'p') {
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || v < 1 || v > 65535) {
                fprintf(stderr, "%s: bad port '%s'\n", prog, optarg);
                return -1;
            }
            dist->epmd_port = (uint16_t)v;
        } else {
            return -1;
        }
    }
    if (optind < argc || dist->name == NULL || dist_node_name_check(dist->name) != 0) {
        fprintf(stderr, "%s: %s\n", prog,
                optind < argc        ? "unexpected argument"
                : dist->name == NULL ? "--node is required"
                                     : "--node must be name@host");
        return -1;
    }
    return 0;
}

static void example_log_cb(int level, const char *msg, void *user_data)
{
    if (level <= 1) /* warnings and errors */
        fprintf(stderr, "%s\n", msg);
}

#endif /* EXAMPLES_DISCOVERY_H */
