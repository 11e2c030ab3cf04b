/*
 * distributed_cluster.c: N nodes that find each other through epmd. Each node runs an actor
 * registered as "member", watches epmd's registry for the other nodes, greets the member of
 * every node it discovers, and prints who joins and who leaves.
 *
 *   discovery thread (libev loop)          member actor
 *   epmd watch: PRESENT, REGISTERED  -->   "found N" --> {member, N} ! "hello"
 *                                          "hello" from P  --> monitor P, "welcome" back
 *                                          "welcome" from P --> monitor P
 *                                          DOWN of P --> "leave N (reason)"
 *
 * A member is "joined" once one of its greetings arrived: then its actor is known and
 * monitored. A node killed with kill -9 leaves with noconnection, one stopped with Ctrl-C with
 * shutdown. Start an epmd, then in as many terminals as you like (here on port 4370):
 *
 *     distributed_cluster --node n1@127.0.0.1 --epmd-port 4370 --cookie secret
 *     distributed_cluster --node n2@127.0.0.1 --epmd-port 4370 --cookie secret
 *
 * Runs until SIGINT or SIGTERM, then exits 0; 1 when it cannot join, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "actor.h"
#include "config.h"
#include "discovery.h"

/* The parsed options: the program's only globals. */
static struct {
    struct actor_dist_opts dist;
} opt;

/* ---- The member actor -------------------------------------------------------------------- */

struct member {
    struct peer peers[MAX_PEERS];
};

static int send_greeting(struct actor_system *sys, const char *word, const char *node,
                         struct dist_pid to)
{
    char *buf = malloc(NODE_MAX + 16);
    int n, rc;

    if (buf == NULL)
        return ACTOR_ENOMEM;
    n = snprintf(buf, NODE_MAX + 16, "%s from %s", word, actor_node_name(sys));
    rc = node != NULL ? actor_send_at(sys, "member", node, actor_type_raw(), buf, (size_t)n)
                      : actor_send(sys, to, actor_type_raw(), buf, (size_t)n);
    if (rc != 0)
        free(buf);
    return rc;
}

/* A greeting ("hello ..." or "welcome ...") from the member of @node. */
static void member_greeted(struct actor *self, struct member *m, const struct actor_msg *msg,
                           const char *text)
{
    struct actor_system *sys = actor_system_of(self);
    const char *node = actor_node_of(sys, msg->from);
    struct peer *p = node != NULL ? peer_find(m->peers, node, 1) : NULL;

    printf("%s says: %s\n", node != NULL ? node : "?", text);
    if (strncmp(text, "hello", 5) == 0)
        send_greeting(sys, "welcome", NULL, msg->from);
    if (p == NULL || p->joined)
        return;
    p->pid = msg->from;
    p->joined = 1;
    actor_monitor(self, msg->from, &p->ref);
    printf("join %s\n", node);
}

static void member_down(struct member *m, const struct actor_msg *msg)
{
    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *p = &m->peers[i];

        if (p->joined && memcmp(&p->ref, &msg->u.down.ref, sizeof(p->ref)) == 0) {
            printf("leave %s (%s)\n", p->node, actor_reason_name(msg->u.down.reason));
            memset(p, 0, sizeof(*p));
            return;
        }
    }
}

static int member_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct member *m = state;
    char text[NODE_MAX + 32];

    if (msg->kind == ACTOR_MSG_DOWN) {
        member_down(m, msg);
    } else if (msg->kind == ACTOR_MSG_USER && msg->type == actor_type_raw() &&
               msg->size < sizeof(text)) {
        memcpy(text, msg->payload, msg->size);
        text[msg->size] = '\0';
        if (msg->from.node == 0 && strncmp(text, "found ", 6) == 0) {
            /* A node epmd knows and we have not met: greet it (again after it left). */
            if (peer_find(m->peers, text + 6, 0) == NULL)
                send_greeting(actor_system_of(self), "hello", text + 6, msg->from);
        } else {
            member_greeted(self, m, msg, text);
        }
    }
    fflush(stdout);
    return 0;
}

static int member_init(struct actor *self, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct member));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static void member_terminate(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour member_behaviour = {"member", member_init, member_handle,
                                                        member_terminate};

/* ---- Options and main ------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: distributed_cluster --node NAME@HOST [options]\n"
            "\n"
            "Join the cluster of every node registered with the same epmd: greet each\n"
            "member, print the greetings that come in and the members that join and leave,\n"
            "until SIGINT or SIGTERM.\n"
            "\n"
            "  --node N          this node, name@host (required)\n"
            "  --epmd-port P     epmd's port (default 4369)\n"
            "  --cookie C        the cluster cookie (default $DIST_COOKIE, then ~/.dist.cookie)\n"
            "  --insecure        plain TCP instead of TLS 1.3\n"
            "  --help, --version\n");
}

/* Member and discovery up, then wait for SIGINT or SIGTERM (blocked in every thread). */
static int run(struct actor_system *sys, const sigset_t *sigs)
{
    struct actor_spawn_opts so = {.name = "member", .scheduler = -1};
    struct discovery d;
    int sig, rc = actor_spawn(sys, NULL, &member_behaviour, NULL, &so, NULL);

    /* The member exists before discovery starts, so a peer that finds us can greet it. */
    if (rc == 0)
        rc = discovery_start(&d, sys, opt.dist.name, opt.dist.epmd_host, opt.dist.epmd_port,
                             "member");
    if (rc != 0)
        return rc;
    printf("%s is up; looking for members (Ctrl-C stops it)\n", actor_node_name(sys));
    fflush(stdout);
    sigwait(sigs, &sig);
    discovery_stop(&d);
    printf("stopping\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct actor_system_opts so = {.schedulers = 1, .log = example_log_cb};
    struct actor_system *sys = NULL;
    sigset_t sigs;
    int rc = example_parse_args(argc, argv, "distributed_cluster", usage, &opt.dist);

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
        rc = run(sys, &sigs);
    if (rc != 0)
        fprintf(stderr, "distributed_cluster: %s\n", actor_strerror(rc));
    if (sys != NULL)
        actor_system_shutdown(sys, 2.0); /* ACTOR_EINVAL when it never started: nothing to do */
    actor_system_free(sys);
    return rc == 0 ? 0 : 1;
}
