/*
 * dist_bench_peer.c: the peer process of dist_bench. The driver (dist_bench.c) execs itself
 * with --peer and --driver; this side starts its node, says Ready to the driver's inbox, then
 * answers: a Pong for each Ping, a Reply (same ref) for each Call, and for Last a Done with how
 * many Data came since the last Last. It stops on Quit, or when the driver's node goes down.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "dist.h"
#include "dist_bench.h"

struct peer {
    struct ev_loop *loop;
    uint32_t creation;
    uint64_t count; /* Data since the last Last */
};

static void peer_send(struct dist_node *node, struct peer *p, const struct dist_msg *in,
                      const char *type, const void *data, size_t len, int send_kind)
{
    struct dist_msg m = {
        .kind = DIST_MSG_SEND,
        .from = {1, 0, p->creation},
        .to = in->from,
        .type = type,
        .payload = data,
        .len = len,
        .send_kind = send_kind,
        .ref = in->ref,
    };
    int rc = dist_node_post(node, dist_node_name_of(node, in->from.node), &m);

    if (rc != 0) {
        fprintf(stderr, "dist_bench (peer): sending %s: %s\n", type, dist_strerror(rc));
        exit(1);
    }
}

static void peer_message(struct dist_node *node, const struct dist_msg *m, const char *from_node,
                         void *user_data)
{
    struct peer *p = user_data;

    (void)from_node;
    if (m->kind != DIST_MSG_SEND || m->from.id == 0)
        return;
    if (strcmp(m->type, T_DATA) == 0) {
        p->count++;
    } else if (strcmp(m->type, T_PING) == 0) {
        peer_send(node, p, m, T_PONG, m->payload, m->len, DIST_SEND_KIND_PLAIN);
    } else if (strcmp(m->type, T_CALL) == 0) {
        peer_send(node, p, m, T_REPLY, m->payload, m->len, DIST_SEND_KIND_REPLY);
    } else if (strcmp(m->type, T_LAST) == 0) {
        peer_send(node, p, m, T_DONE, &p->count, sizeof p->count, DIST_SEND_KIND_PLAIN);
        p->count = 0;
    } else if (strcmp(m->type, T_QUIT) == 0) {
        dist_node_stop(node);
        ev_break(p->loop, EVBREAK_ALL);
    }
}

static void peer_ready(struct dist_node *node, uint32_t creation, void *user_data)
{
    struct peer *p = user_data;
    struct dist_pid me = {1, 0, creation};
    int rc;

    p->creation = creation;
    rc = dist_node_send(node, &me, opt.driver, NULL, BENCH_INBOX, T_READY, NULL, 0);
    if (rc != 0) {
        fprintf(stderr, "dist_bench (peer): ready: %s\n", dist_strerror(rc));
        exit(1);
    }
}

static void peer_down(struct dist_node *node, const char *name, int reason, void *user_data)
{
    struct peer *p = user_data;

    (void)node;
    (void)reason;
    if (strcmp(name, opt.driver) == 0)
        ev_break(p->loop, EVBREAK_ALL);
}

int bench_peer_main(void)
{
    static const struct dist_node_handlers h = {peer_ready, peer_message, NULL, peer_down};
    struct peer p = {.loop = ev_default_loop(EVFLAG_AUTO)};
    struct dist_node_opts o = bench_node_opts(opt.peer);
    struct dist_node *node = NULL;
    int rc;

    if (p.loop == NULL)
        return 1;
    rc = dist_node_new(p.loop, &o, &node);
    if (rc == 0)
        rc = dist_node_start(node, &h, &p);
    if (rc != 0) {
        fprintf(stderr, "dist_bench (peer): starting %s: %s\n", opt.peer, dist_strerror(rc));
        dist_node_free(node);
        return 1;
    }
    ev_run(p.loop, 0);
    dist_node_free(node);
    return 0;
}
