/*
 * actor_node.c: a distributed actor system driven by commands on stdin, for the tests of
 * test_actor_dist.c. It runs two registered actors and prints one line per event:
 *
 *   echo  answers "ping" with "pong", checks the order of "seq I N" runs per sender, prints
 *         typed test.Text messages, and answers calls ("echo X" -> "X"; "silent": never)
 *   ctl   runs the commands read from stdin (one per line, below), monitors nodes, traps
 *         exits, and prints what comes back
 *
 *   ping NODE                 {echo, NODE} ! "ping"; the pong records NODE's echo PID
 *   burst NODE N              N x "seq I N" to NODE's echo PID (after a ping)
 *   burstname NODE N          the same through {echo, NODE}
 *   text NODE WORD            a test.Text to {echo, NODE}
 *   secret NODE               a test.Secret to {echo, NODE} (needs --secret)
 *   spawn NODE NAME FLAGS     spawn NAME on NODE; FLAGS: none, link or monitor
 *   die REASON                the last spawned actor ends with REASON (a number)
 *   call NODE MODE [T]        call NODE's echo with "echo MODE" or "silent", timeout T s
 *   callwait NODE MODE [T]    the same from a plain thread, blocked in actor_call_wait()
 *   callvictim                call the last spawned actor
 *   monitor NODE / link NODE  monitor / link NODE's echo
 *   stats                     the distribution's counters
 *   hog NODE MS               {echo, NODE} ! "hog MS": that echo keeps its scheduler busy for
 *                             MS milliseconds, then prints "hogged ms=MS"
 *   quit                      shut down and exit 0 (so does the end of stdin)
 *
 * Output lines: "ready name=N creation=C", "pong from=N pid=P", "order from=N total=T ok|bad",
 * "text from=N text=W", "spawned node=N pid=P", "spawn-error node=N err=E", "call-ok reply=R",
 * "call-error err=E", "callwait-ok ...", "callwait-error ...", "down from=N reason=R", "exit from=N
 * reason=R", "nodeup N", "nodedown N reason=R", "stats ...". Errors are named timeout, noproc,
 * unreachable, nospawn.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "actor_node.pb-c.h"

#define MAX_PEERS 16
#define MAX_WAITS 8 /* callwait threads a node runs */
#define LINE_MAX_ 256

static struct {
    struct actor_dist_opts dist;
    int secret;
    unsigned schedulers;
} opt;

static const struct actor_type *text_type, *secret_type;

/* ---- Printing -------------------------------------------------------------------------------- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;

    flockfile(stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
}

static const char *err_name(int err)
{
    switch (err) {
    case ACTOR_ETIMEDOUT:
        return "timeout";
    case ACTOR_ENOPROC:
        return "noproc";
    case ACTOR_ENOTCONN:
        return "unreachable";
    case ACTOR_ENOSPAWN:
        return "nospawn";
    default:
        return actor_strerror(err);
    }
}

static const char *node_of(struct actor *self, struct dist_pid pid)
{
    const char *n = actor_node_of(actor_system_of(self), pid);

    return n != NULL ? n : "?";
}

static void log_cb(int level, const char *msg, void *user_data)
{
    fprintf(stderr, "log%d: %s\n", level, msg);
}

/* ---- echo ------------------------------------------------------------------------------------ */

struct order {
    struct dist_pid from;
    long next;
    int bad;
};

struct echo {
    struct order v[MAX_PEERS];
    int n;
};

static int echo_init(struct actor *self, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct echo));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static void echo_seq(struct actor *self, struct echo *e, struct dist_pid from, long i, long total)
{
    struct order *o = NULL;

    for (int k = 0; k < e->n; k++) {
        if (dist_pid_eq(e->v[k].from, from))
            o = &e->v[k];
    }
    if (o == NULL && e->n < MAX_PEERS) {
        o = &e->v[e->n++];
        *o = (struct order){from, 1, 0};
    }
    if (o == NULL)
        return;
    if (i != o->next)
        o->bad = 1;
    o->next = i + 1;
    if (i == total) {
        say("order from=%s total=%ld %s", node_of(self, from), total, o->bad ? "bad" : "ok");
        o->next = 1;
        o->bad = 0;
    }
}

static int echo_call(struct actor *self, struct actor_msg *msg, const char *text)
{
    if (strncmp(text, "echo ", 5) != 0)
        return 0; /* "silent": the caller times out */
    return actor_reply(self, msg, actor_type_raw(), strdup(text + 5), strlen(text + 5) + 1);
}

/* Keep this scheduler from everything else for @ms, as a long computation would. */
static void echo_hog(long ms)
{
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L < ms);
    say("hogged ms=%ld", ms);
}

static int echo_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    char text[LINE_MAX_];
    long i, total;

    if (msg->type == text_type) {
        say("text from=%s text=%s", node_of(self, msg->from), ((Test__Text *)msg->payload)->text);
        return 0;
    }
    if (msg->type != actor_type_raw() || msg->size == 0 || msg->size >= sizeof(text))
        return 0;
    memcpy(text, msg->payload, msg->size);
    text[msg->size] = '\0';
    if (msg->kind == ACTOR_MSG_CALL)
        return echo_call(self, msg, text);
    if (strcmp(text, "ping") == 0)
        return actor_send_copy(actor_system_of(self), msg->from, "pong", 4);
    if (sscanf(text, "seq %ld %ld", &i, &total) == 2)
        echo_seq(self, state, msg->from, i, total);
    else if (sscanf(text, "hog %ld", &i) == 1)
        echo_hog(i);
    return 0;
}

static void free_state(struct actor *self, void *state, int reason)
{
    free(state);
}

static const struct actor_behaviour echo_behaviour = {"echo", echo_init, echo_handle, free_state};

/* ---- victim: the spawnable ------------------------------------------------------------------ */

static int victim_init(struct actor *self, void *arg, void **state)
{
    free(arg); /* the spawn's argument is ours */
    return 0;
}

static int victim_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    int reason;

    if (msg->kind == ACTOR_MSG_USER && msg->type == actor_type_raw() && msg->size < 32) {
        char text[32];
        memcpy(text, msg->payload, msg->size);
        text[msg->size] = '\0';
        if (sscanf(text, "die %d", &reason) == 1)
            return reason;
    }
    if (msg->kind == ACTOR_MSG_CALL)
        return actor_reply(self, msg, actor_type_raw(), strdup("alive"), 6);
    return 0;
}

static const struct actor_behaviour victim_behaviour = {"victim", victim_init, victim_handle, NULL};

/* ---- ctl ------------------------------------------------------------------------------------- */

/* A call from a plain thread (actor_call_wait), started by "callwait". */
struct waiter {
    pthread_t thread;
    struct actor_system *sys;
    struct dist_pid to;
    char text[64];
    double timeout;
};

struct ctl {
    char names[MAX_PEERS][64];
    struct dist_pid echo[MAX_PEERS];
    int n;
    struct dist_pid victim;
    struct waiter waits[MAX_WAITS];
    int nwaits;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    struct actor_msg *reply = NULL;
    char *copy = strdup(w->text);
    int rc =
        actor_call_wait(w->sys, w->to, actor_type_raw(), copy, strlen(w->text), w->timeout, &reply);

    if (rc == 0)
        say("callwait-ok reply=%s", (const char *)reply->payload);
    else
        say("callwait-error err=%s", err_name(rc));
    actor_msg_free(reply);
    return NULL;
}

/* Call @to from a thread of its own, which blocks in actor_call_wait(). */
static int ctl_callwait(struct actor *self, struct ctl *c, struct dist_pid to, const char *mode,
                        double timeout)
{
    struct waiter *w;

    if (c->nwaits == MAX_WAITS)
        return ACTOR_EBUSY;
    w = &c->waits[c->nwaits];
    w->sys = actor_system_of(self);
    w->to = to;
    w->timeout = timeout;
    snprintf(w->text, sizeof(w->text), "%s%s", strcmp(mode, "silent") ? "echo " : "", mode);
    if (pthread_create(&w->thread, NULL, waiter_main, w) != 0)
        return ACTOR_ENOMEM;
    c->nwaits++;
    return 0;
}

/* The waiters' calls are bounded by their timeouts, so this wait is too. */
static void ctl_terminate(struct actor *self, void *state, int reason)
{
    struct ctl *c = state;

    for (int i = 0; i < c->nwaits; i++)
        pthread_join(c->waits[i].thread, NULL);
    free(c);
}

static struct dist_pid *echo_of(struct ctl *c, const char *node, int add)
{
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->names[i], node) == 0)
            return &c->echo[i];
    }
    if (!add || c->n == MAX_PEERS)
        return NULL;
    snprintf(c->names[c->n], sizeof(c->names[0]), "%s", node);
    c->echo[c->n] = DIST_PID_NONE;
    return &c->echo[c->n++];
}

static int ctl_init(struct actor *self, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct ctl));
    if (*state == NULL)
        return ACTOR_ENOMEM;
    actor_trap_exit(self, 1);
    return actor_monitor_nodes(self, 1);
}

static int on_spawned(struct actor *self, void *state, int err, struct dist_pid pid, void *cb_data)
{
    struct ctl *c = state;
    char buf[DIST_PID_STRLEN];

    if (err != 0) {
        say("spawn-error node=%s err=%s", c->names[(intptr_t)cb_data], err_name(err));
        return 0;
    }
    c->victim = pid;
    dist_pid_format(buf, sizeof(buf), pid);
    say("spawned node=%s pid=%s", node_of(self, pid), buf);
    return 0;
}

static int on_reply(struct actor *self, void *state, int err, struct actor_msg *reply,
                    void *cb_data)
{
    if (err != 0)
        say("call-error err=%s", err_name(err));
    else
        say("call-ok reply=%s", (const char *)reply->payload);
    return 0;
}

/* A test.Text or test.Secret holding @word, as protobuf-c unpacks one (it owns its string). */
static void *text_new(const struct actor_type *type, const char *word)
{
    if (type == secret_type) {
        Test__Secret *s = malloc(sizeof(*s));
        if (s != NULL) {
            test__secret__init(s);
            s->text = strdup(word);
        }
        return s;
    }
    Test__Text *t = malloc(sizeof(*t));
    if (t != NULL) {
        test__text__init(t);
        t->text = strdup(word);
    }
    return t;
}

static int send_text(struct actor_system *sys, const char *node, const struct actor_type *type,
                     const char *word)
{
    void *m = text_new(type, word);
    int rc = m != NULL ? actor_send_at(sys, "echo", node, type, m, 0) : ACTOR_ENOMEM;

    if (rc != 0)
        actor_payload_free(type, m);
    return rc;
}

static int send_raw_at(struct actor_system *sys, const char *node, const char *text)
{
    char *copy = strdup(text);
    int rc = copy != NULL ? actor_send_at(sys, "echo", node, actor_type_raw(), copy, strlen(text))
                          : ACTOR_ENOMEM;

    if (rc != 0)
        free(copy);
    return rc;
}

static int ctl_burst(struct actor *self, struct ctl *c, const char *node, long n, int by_name)
{
    struct actor_system *sys = actor_system_of(self);
    struct dist_pid *echo = echo_of(c, node, 0);
    char text[64];
    int rc = 0;

    if (!by_name && (echo == NULL || dist_pid_is_none(*echo)))
        return ACTOR_EINVAL;
    for (long i = 1; i <= n && rc == 0; i++) {
        int len = snprintf(text, sizeof(text), "seq %ld %ld", i, n);
        rc =
            by_name ? send_raw_at(sys, node, text) : actor_send_copy(sys, *echo, text, (size_t)len);
    }
    say("burst to=%s n=%ld rc=%d", node, n, rc);
    return 0;
}

static int ctl_spawn(struct actor *self, struct ctl *c, const char *node, const char *name,
                     const char *flags)
{
    unsigned f = strcmp(flags, "link") == 0      ? ACTOR_SPAWN_LINK
                 : strcmp(flags, "monitor") == 0 ? ACTOR_SPAWN_MONITOR
                                                 : 0;
    struct dist_pid *slot = echo_of(c, node, 1);
    intptr_t idx = slot != NULL ? slot - c->echo : 0;
    char *arg = strdup("hi");
    int rc = actor_spawn_remote(self, node, name, actor_type_raw(), arg, 2, f, 5.0, on_spawned,
                                (void *)idx, NULL);

    if (rc != 0)
        free(arg);
    if (rc != 0)
        say("spawn-error node=%s err=%s", node, err_name(rc));
    return 0;
}

static int ctl_call(struct actor *self, struct dist_pid to, const char *mode, double timeout)
{
    char text[64];
    int len = snprintf(text, sizeof(text), "%s%s", strcmp(mode, "silent") ? "echo " : "", mode);
    char *copy = strdup(text);
    int rc = actor_call(self, to, actor_type_raw(), copy, (size_t)len, timeout, on_reply, NULL);

    if (rc != 0)
        free(copy);
    if (rc != 0)
        say("call-error err=%s", err_name(rc));
    return 0;
}

static void ctl_stats(struct actor_system *sys)
{
    struct actor_dist_stats s;

    actor_dist_stats(sys, &s);
    say("stats sent=%llu received=%llu unknown=%llu bad=%llu undeliverable=%llu dropped=%llu",
        (unsigned long long)s.sent, (unsigned long long)s.received,
        (unsigned long long)s.unknown_type, (unsigned long long)s.bad_payload,
        (unsigned long long)s.undeliverable, (unsigned long long)s.dropped);
}

static int ctl_hog(struct actor_system *sys, const char *node, const char *ms)
{
    char text[80];

    snprintf(text, sizeof(text), "hog %s", ms);
    return send_raw_at(sys, node, text);
}

/* One command line. */
static int ctl_command(struct actor *self, struct ctl *c, const char *line)
{
    struct actor_system *sys = actor_system_of(self);
    char a[64] = "", b[64] = "", d[64] = "";
    double t = 5.0;
    int n = sscanf(line, "%*s %63s %63s %63s", a, b, d);
    struct dist_pid *echo = n >= 1 ? echo_of(c, a, 0) : NULL;
    struct dist_pid none = DIST_PID_NONE, target = echo != NULL ? *echo : none;
    int rc = 0;

    if (strncmp(line, "ping ", 5) == 0)
        rc = send_raw_at(sys, a, "ping");
    else if (strncmp(line, "burst ", 6) == 0)
        rc = ctl_burst(self, c, a, atol(b), 0);
    else if (strncmp(line, "burstname ", 10) == 0)
        rc = ctl_burst(self, c, a, atol(b), 1);
    else if (strncmp(line, "text ", 5) == 0)
        rc = send_text(sys, a, text_type, b);
    else if (strncmp(line, "secret ", 7) == 0)
        rc = secret_type != NULL ? send_text(sys, a, secret_type, "hush") : ACTOR_ETYPE;
    else if (strncmp(line, "spawn ", 6) == 0)
        rc = ctl_spawn(self, c, a, b, d);
    else if (strncmp(line, "die ", 4) == 0)
        rc = actor_send_copy(sys, c->victim, line, strlen(line));
    else if (strncmp(line, "call ", 5) == 0)
        rc = ctl_call(self, target, b, (n == 3 && sscanf(d, "%lf", &t) == 1) ? t : 5.0);
    else if (strncmp(line, "callwait ", 9) == 0)
        rc = ctl_callwait(self, c, target, b, (n == 3 && sscanf(d, "%lf", &t) == 1) ? t : 5.0);
    else if (strcmp(line, "callvictim") == 0)
        rc = ctl_call(self, c->victim, "x", 5.0);
    else if (strncmp(line, "monitor ", 8) == 0)
        rc = actor_monitor(self, target, NULL);
    else if (strncmp(line, "link ", 5) == 0)
        rc = actor_link(self, target);
    else if (strcmp(line, "stats") == 0)
        ctl_stats(sys);
    else if (strncmp(line, "hog ", 4) == 0)
        rc = ctl_hog(sys, a, b);
    else
        rc = ACTOR_EINVAL;
    if (rc != 0)
        say("error cmd=\"%s\" err=%s", line, err_name(rc));
    return 0;
}

static const char *reason_of(int reason, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s(%d)", actor_reason_name(reason), reason);
    return buf;
}

static int ctl_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct ctl *c = state;
    char line[LINE_MAX_], rb[64], pb[DIST_PID_STRLEN];

    switch (msg->kind) {
    case ACTOR_MSG_EXIT:
        if (dist_pid_is_none(msg->u.exit.pid))
            return msg->u.exit.reason; /* the system shuts down: ctl traps exits, so it obeys */
        say("exit from=%s reason=%s", node_of(self, msg->u.exit.pid),
            reason_of(msg->u.exit.reason, rb, sizeof(rb)));
        return 0;
    case ACTOR_MSG_DOWN:
        say("down from=%s reason=%s", node_of(self, msg->u.down.pid),
            reason_of(msg->u.down.reason, rb, sizeof(rb)));
        return 0;
    case ACTOR_MSG_NODEUP:
        say("nodeup %s", msg->u.node.name);
        return 0;
    case ACTOR_MSG_NODEDOWN:
        say("nodedown %s reason=%s", msg->u.node.name, dist_down_reason_name(msg->u.node.reason));
        return 0;
    default:
        break;
    }
    if (msg->type != actor_type_raw() || msg->size >= sizeof(line))
        return 0;
    memcpy(line, msg->payload, msg->size);
    line[msg->size] = '\0';
    if (strcmp(line, "pong") == 0 && !dist_pid_is_none(msg->from)) {
        struct dist_pid *slot = echo_of(c, node_of(self, msg->from), 1);
        if (slot != NULL)
            *slot = msg->from;
        dist_pid_format(pb, sizeof(pb), msg->from);
        say("pong from=%s pid=%s", node_of(self, msg->from), pb);
        return 0;
    }
    return ctl_command(self, c, line);
}

static const struct actor_behaviour ctl_behaviour = {"ctl", ctl_init, ctl_handle, ctl_terminate};

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out, "usage: actor_node --name NAME@HOST --epmd-port P --cookie C [--tick MS]\n"
                 "                  [--connect-timeout MS] [--secret] [--schedulers N]\n"
                 "Commands are read from stdin; see the top of actor_node.c.\n");
}

static int parse(int argc, char **argv)
{
    static const struct option longs[] = {{"name", required_argument, NULL, 'n'},
                                          {"epmd-port", required_argument, NULL, 'p'},
                                          {"cookie", required_argument, NULL, 'c'},
                                          {"tick", required_argument, NULL, 't'},
                                          {"connect-timeout", required_argument, NULL, 'o'},
                                          {"secret", no_argument, NULL, 's'},
                                          {"schedulers", required_argument, NULL, 'S'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int ch;

    opt.dist.insecure = 0;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 'n':
            opt.dist.name = optarg;
            break;
        case 'p':
            opt.dist.epmd_port = (uint16_t)atoi(optarg);
            break;
        case 'c':
            opt.dist.cookie = optarg;
            break;
        case 't':
            opt.dist.tick_ms = (uint32_t)atoi(optarg);
            break;
        case 'o':
            opt.dist.connect_timeout_ms = (uint32_t)atoi(optarg);
            break;
        case 's':
            opt.secret = 1;
            break;
        case 'S':
            opt.schedulers = (unsigned)atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    opt.dist.handshake_timeout_ms = 1000;
    opt.dist.backoff_max_ms = 300;
    return opt.dist.name != NULL ? 0 : -1;
}

static int start(struct actor_system **out)
{
    struct actor_system_opts so = {.schedulers = opt.schedulers ? opt.schedulers : 2,
                                   .log = log_cb};
    struct actor_system *sys;
    int rc = actor_type_register("test.Text", &test__text__descriptor, &text_type);

    if (rc == 0 && opt.secret)
        rc = actor_type_register("test.Secret", &test__secret__descriptor, &secret_type);
    if (rc == 0)
        rc = actor_system_new(&so, &sys);
    if (rc != 0)
        return rc;
    *out = sys;
    rc = actor_dist_start(sys, &opt.dist);
    if (rc == 0)
        rc = actor_spawnable_register(sys, "victim", &victim_behaviour, actor_type_raw());
    if (rc == 0)
        rc = actor_system_start(sys);
    if (rc == 0)
        rc = actor_spawn(sys, NULL, &echo_behaviour, NULL,
                         &(struct actor_spawn_opts){.name = "echo", .scheduler = -1}, NULL);
    if (rc == 0)
        rc = actor_spawn(sys, NULL, &ctl_behaviour, NULL,
                         &(struct actor_spawn_opts){.name = "ctl", .scheduler = -1}, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    struct actor_system *sys = NULL;
    struct dist_pid ctl = DIST_PID_NONE;
    char line[LINE_MAX_];
    int rc;

    if (parse(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    rc = start(&sys);
    if (rc != 0) {
        fprintf(stderr, "actor_node: %s\n", actor_strerror(rc));
        actor_system_free(sys);
        return 1;
    }
    actor_whereis(sys, "ctl", &ctl);
    say("ready name=%s creation=%u", actor_node_name(sys), (unsigned)ctl.creation);
    while (fgets(line, sizeof(line), stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0)
            break;
        if (line[0] != '\0' && actor_send_copy(sys, ctl, line, strlen(line)) != 0)
            say("error cmd=\"%s\" err=noctl", line);
    }
    actor_system_shutdown(sys, 2.0);
    actor_system_free(sys);
    say("bye");
    return 0;
}
