/*
 * distributed_chat.c: a chat between nodes that find each other through epmd. Each node runs
 * an actor registered as "chat"; the lines typed on stdin go to the chat actor of every node
 * that has joined, and the lines of the others are printed as "<bob> hello".
 *
 *   main thread: stdin lines --> "say TEXT" --> chat actor --> "msg TEXT" to each joined peer
 *   discovery thread: epmd watch --> "found N" --> chat actor --> {chat, N} ! "hello"
 *   a "hello" or "welcome" from a peer's chat actor: it joined, and is monitored from then on
 *
 * A peer that stops (EOF, Ctrl-C), or was gone by the time it was monitored, is reported as
 * "* bob left"; one that dies (kill -9) as "* bob died (noconnection)". Start an epmd, then in two or more terminals (port 4370):
 *
 *     distributed_chat --node alice@127.0.0.1 --epmd-port 4370 --cookie secret
 *     distributed_chat --node bob@127.0.0.1 --epmd-port 4370 --cookie secret
 *
 * Runs until EOF on stdin, SIGINT or SIGTERM, then exits 0; 1 when it cannot join, 2 on bad
 * usage.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <ev.h>

#include "actor.h"
#include "config.h"
#include "discovery.h"

#define LINE_MAX_ 1024 /* a longer line goes out in pieces */

/* The parsed options: the program's only globals. */
static struct {
    struct actor_dist_opts dist;
} opt;

/* ---- The chat actor ---------------------------------------------------------------------- */

struct chat {
    struct peer peers[MAX_PEERS];
};

/* "bob" of "bob@127.0.0.1", into @buf. */
static const char *short_name(const char *node, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.*s", (int)strcspn(node, "@"), node);
    return buf;
}

/* "@word @text" to {chat, @node} (by name) or else to @to. */
static int chat_send(struct actor_system *sys, const char *word, const char *text, const char *node,
                     struct dist_pid to)
{
    size_t cap = strlen(word) + strlen(text) + 2;
    char *buf = malloc(cap);
    int n, rc;

    if (buf == NULL)
        return ACTOR_ENOMEM;
    n = snprintf(buf, cap, "%s %s", word, text);
    rc = node != NULL ? actor_send_at(sys, "chat", node, actor_type_raw(), buf, (size_t)n)
                      : actor_send(sys, to, actor_type_raw(), buf, (size_t)n);
    if (rc != 0)
        free(buf);
    return rc;
}

/* A message from the chat actor of another node: a greeting or a line. */
static void chat_remote(struct actor *self, struct chat *c, const struct actor_msg *msg,
                        const char *text)
{
    struct actor_system *sys = actor_system_of(self);
    const char *node = actor_node_of(sys, msg->from);
    struct peer *p = node != NULL ? peer_find(c->peers, node, 1) : NULL;
    char who[256];

    if (node == NULL)
        return;
    short_name(node, who, sizeof(who));
    if (strncmp(text, "msg ", 4) == 0)
        printf("<%s> %s\n", who, text + 4);
    if (strcmp(text, "hello") == 0)
        chat_send(sys, "welcome", "", NULL, msg->from);
    if (p == NULL || p->joined)
        return;
    p->pid = msg->from;
    p->joined = 1;
    actor_monitor(self, msg->from, &p->ref);
    printf("* %s joined\n", who);
}

static void chat_down(struct chat *c, const struct actor_msg *msg)
{
    int reason = msg->u.down.reason;
    char who[256];

    for (int i = 0; i < MAX_PEERS; i++) {
        struct peer *p = &c->peers[i];

        if (!p->joined || memcmp(&p->ref, &msg->u.down.ref, sizeof(p->ref)) != 0)
            continue;
        short_name(p->node, who, sizeof(who));
        /* noproc: it was gone before our monitor reached it, as when it leaves at once. */
        if (reason == ACTOR_SHUTDOWN || reason == ACTOR_NORMAL || reason == ACTOR_NOPROC)
            printf("* %s left\n", who);
        else
            printf("* %s died (%s)\n", who, actor_reason_name(reason));
        memset(p, 0, sizeof(*p));
        return;
    }
}

/* A message from this node: "found N" from discovery, "say TEXT" from stdin. */
static void chat_local(struct actor *self, struct chat *c, const char *text)
{
    struct actor_system *sys = actor_system_of(self);

    if (strncmp(text, "found ", 6) == 0 && peer_find(c->peers, text + 6, 0) == NULL) {
        chat_send(sys, "hello", "", text + 6, DIST_PID_NONE);
    } else if (strncmp(text, "say ", 4) == 0) {
        for (int i = 0; i < MAX_PEERS; i++) {
            if (c->peers[i].joined)
                chat_send(sys, "msg", text + 4, NULL, c->peers[i].pid);
        }
    }
}

static int chat_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct chat *c = state;
    char text[LINE_MAX_ + NODE_MAX];

    if (msg->kind == ACTOR_MSG_DOWN) {
        chat_down(c, msg);
    } else if (msg->kind == ACTOR_MSG_USER && msg->type == actor_type_raw() &&
               msg->size < sizeof(text)) {
        memcpy(text, msg->payload, msg->size);
        text[msg->size] = '\0';
        /* "hello" and "welcome" go out as "hello " and "welcome ": trim the space. */
        if (msg->size > 0 && text[msg->size - 1] == ' ')
            text[msg->size - 1] = '\0';
        if (msg->from.node == 0)
            chat_local(self, c, text);
        else
            chat_remote(self, c, msg, text);
    }
    fflush(stdout);
    return 0;
}

static int chat_init(struct actor *self, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct chat));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static void chat_terminate(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour chat_behaviour = {"chat", chat_init, chat_handle,
                                                      chat_terminate};

/* ---- stdin ------------------------------------------------------------------------------- */

/* Hand the line @line (@len bytes, no newline) to the chat actor. */
static void say(struct actor_system *sys, const char *line, size_t len)
{
    char *buf = malloc(len + 5);

    if (buf == NULL || len == 0) {
        free(buf);
        return;
    }
    memcpy(buf, "say ", 4);
    memcpy(buf + 4, line, len);
    if (actor_send_named(sys, "chat", actor_type_raw(), buf, len + 4) != 0)
        free(buf);
}

/* Read stdin line by line until EOF or a signal of @sigfd. */
static void read_lines(struct actor_system *sys, int sigfd)
{
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                            {.fd = sigfd, .events = POLLIN}};
    char buf[LINE_MAX_];
    size_t have = 0;

    for (;;) {
        ssize_t n;
        char *nl;

        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            return;
        if (fds[1].revents != 0)
            return;
        if (fds[0].revents == 0)
            continue;
        n = read(STDIN_FILENO, buf + have, sizeof(buf) - have);
        if (n <= 0)
            return; /* EOF, or stdin is gone */
        have += (size_t)n;
        while ((nl = memchr(buf, '\n', have)) != NULL) {
            say(sys, buf, (size_t)(nl - buf));
            have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have);
        }
        if (have == sizeof(buf)) {
            say(sys, buf, have);
            have = 0;
        }
    }
}

/* ---- Options and main ------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: distributed_chat --node NAME@HOST [options]\n"
            "\n"
            "Chat with every node registered with the same epmd: each line read on stdin\n"
            "goes to all of them; theirs are printed as <name> text. EOF, SIGINT or\n"
            "SIGTERM leave the chat.\n"
            "\n"
            "  --node N          this node, name@host (required)\n"
            "  --epmd-port P     epmd's port (default 4369)\n"
            "  --cookie C        the cluster cookie (default $DIST_COOKIE, then ~/.dist.cookie)\n"
            "  --insecure        plain TCP instead of TLS 1.3\n"
            "  --help, --version\n");
}

/* The chat actor and discovery up, then stdin until EOF or a signal. */
static int run(struct actor_system *sys, int sigfd)
{
    struct actor_spawn_opts so = {.name = "chat", .scheduler = -1};
    struct discovery d;
    int rc = actor_spawn(sys, NULL, &chat_behaviour, NULL, &so, NULL);

    /* The actor exists before discovery starts, so a peer that finds us can greet it. */
    if (rc == 0)
        rc =
            discovery_start(&d, sys, opt.dist.name, opt.dist.epmd_host, opt.dist.epmd_port, "chat");
    if (rc != 0)
        return rc;
    printf("* %s is in the chat; type lines, end with Ctrl-D\n", actor_node_name(sys));
    fflush(stdout);
    read_lines(sys, sigfd);
    discovery_stop(&d);
    printf("* leaving\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct actor_system_opts so = {.schedulers = 1, .log = example_log_cb};
    struct actor_system *sys = NULL;
    sigset_t sigs;
    int sigfd, rc = example_parse_args(argc, argv, "distributed_chat", usage, &opt.dist);

    if (rc != 0) {
        if (rc < 0)
            usage(stderr);
        return rc < 0 ? 2 : 0;
    }
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    rc = sigfd < 0 ? -errno : actor_system_new(&so, &sys);
    if (rc == 0)
        rc = actor_dist_start(sys, &opt.dist);
    if (rc == 0)
        rc = actor_system_start(sys);
    if (rc == 0)
        rc = run(sys, sigfd);
    if (rc != 0)
        fprintf(stderr, "distributed_chat: %s\n", actor_strerror(rc));
    if (sys != NULL)
        actor_system_shutdown(sys, 2.0); /* ACTOR_EINVAL when it never started: nothing to do */
    actor_system_free(sys);
    if (sigfd >= 0)
        close(sigfd);
    return rc == 0 ? 0 : 1;
}
