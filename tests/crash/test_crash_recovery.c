/*
 * test_crash_recovery.c: no acknowledged event is ever lost, however a process dies.
 *
 *   parent                                    child (this program, --child DIR FD)
 *   ------                                    -----
 *   start child  ------------------------->   open the journal, spawn the durable actor:
 *                <-- RECOVERED seq hash ---   snapshot + replay, report the state it rebuilt
 *                <-- ACK seq, ACK seq ... --   persist as fast as it can (64 in flight),
 *   SIGKILL at a random moment                report each seq once its continuation runs
 *   reap, then read the journal itself:
 *     seqs 1..N contiguous, no duplicate, each event's bytes as written,
 *     every acknowledged seq <= N, and its own fold of the events (the state hash),
 *     which the next child must rebuild exactly (through its snapshot and replay)
 *
 * ROUNDS rounds, each bounded in time. Every child is killed and reaped, and the directory
 * removed, on success and on failure alike. Prints "ok <what>" or "FAIL <what>: <why>"; the
 * exit status is non-zero on any failure. CRASH_SEED=n repeats a run's kill times.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actor.h"
#include "../unit/journal_util.h"

#define ROUNDS      50
#define IN_FLIGHT   64
#define SNAP_EVERY  1000
#define KILL_MAX_MS 150   /* the child runs up to this long after its recovery */
#define START_MS    20000 /* the longest a child may take to report its recovery */
#define ID          "crash-1"

enum { REC_RECOVERED = 1, REC_ACK = 2 };

struct record {
    uint64_t type, a, b;
};

/* The event of @seq: its bytes are a function of seq, so the parent can check each one. */
static uint64_t event_value(uint64_t seq)
{
    return seq * 0x9e3779b97f4a7c15ull ^ 0x5bd1e995u;
}

/* The state: a fold of the events in order. A lost, doubled or reordered event changes it. */
static uint64_t fold(uint64_t hash, uint64_t value)
{
    return (hash ^ value) * 0x100000001b3ull + 1;
}

/* ---- The child ---------------------------------------------------------------------------- */

struct crasher {
    int fd;        /* the pipe to the parent */
    uint64_t sum;  /* the state: a hash of every event applied */
    uint64_t next; /* the seq of the next event to persist */
};

static void report(int fd, uint64_t type, uint64_t a, uint64_t b)
{
    struct record r = {type, a, b};

    if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
        _exit(3);
}

static int c_restore(struct actor_durable *d, void *state, uint64_t seq, const void *data,
                     size_t len)
{
    struct crasher *c = state;

    if (len != sizeof(c->sum))
        return ACTOR_EINVAL;
    memcpy(&c->sum, data, sizeof(c->sum));
    return 0;
}

static int c_apply(struct actor_durable *d, void *state, uint64_t seq, const void *event,
                   size_t len)
{
    struct crasher *c = state;
    uint64_t v;

    if (len != sizeof(v))
        return ACTOR_EINVAL;
    memcpy(&v, event, sizeof(v));
    if (v != event_value(seq))
        return ACTOR_EINVAL;
    c->sum = fold(c->sum, v);
    return 0;
}

static int c_snapshot(struct actor_durable *d, void *state, void **data, size_t *len)
{
    struct crasher *c = state;

    *data = malloc(sizeof(c->sum));
    if (*data == NULL)
        return ACTOR_ENOMEM;
    memcpy(*data, &c->sum, sizeof(c->sum));
    *len = sizeof(c->sum);
    return 0;
}

static int c_persist_next(struct actor_durable *d, struct crasher *c);

/* The continuation: the event is on disk; tell the parent, then persist another. */
static int c_done(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    struct crasher *c = state;

    if (err != 0)
        return err;
    report(c->fd, REC_ACK, seq, 0);
    return c_persist_next(d, c);
}

static int c_persist_next(struct actor_durable *d, struct crasher *c)
{
    uint64_t v;

    if (c->next <= actor_durable_last_seq(d))
        c->next = actor_durable_last_seq(d) + 1;
    v = event_value(c->next++);
    return actor_durable_persist_async(d, &v, sizeof(v), c_done, NULL);
}

static int c_recovered(struct actor_durable *d, void *state)
{
    struct crasher *c = state;
    int rc = 0;

    report(c->fd, REC_RECOVERED, actor_durable_last_seq(d), c->sum);
    for (int i = 0; i < IN_FLIGHT && rc == 0; i++)
        rc = c_persist_next(d, c);
    return rc;
}

static int c_handle(struct actor_durable *d, void *state, struct actor_msg *msg)
{
    return 0;
}

static const struct actor_durable_behaviour crasher = {
    .name = "crasher",
    .restore = c_restore,
    .apply = c_apply,
    .recovered = c_recovered,
    .handle = c_handle,
    .snapshot = c_snapshot,
};

static int c_init(struct actor_durable *d, void *arg, void **state)
{
    *state = arg; /* lives in child_main's frame, as long as the process */
    return 0;
}

static int child_main(const char *dir, int fd)
{
    struct actor_durable_behaviour b = crasher;
    struct crasher c = {.fd = fd};
    struct actor_journal_opts jo = {.dir = dir};
    struct actor_durable_spec spec = {
        .behaviour = &b, .persistence_id = ID, .snapshot_every = SNAP_EVERY, .arg = &c};
    struct actor_system *sys;
    int rc;

    b.init = c_init;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a parent that died */
    if (getppid() == 1)
        return 2;
    rc = actor_journal_open(&jo, &spec.journal);
    if (rc == 0)
        rc = actor_system_new(NULL, &sys);
    if (rc == 0)
        rc = actor_system_start(sys);
    if (rc == 0)
        rc = actor_durable_spawn(sys, NULL, &spec, NULL, NULL);
    if (rc != 0) {
        fprintf(stderr, "child: %s\n", actor_strerror(rc));
        return 2;
    }
    for (;;)
        pause(); /* until the parent's SIGKILL */
}

/* ---- The parent --------------------------------------------------------------------------- */

static pid_t child = -1;
static char dir[PATH_MAX];

static void child_reap(void)
{
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        child = -1;
    }
}

static void die(const char *why)
{
    jutil_check(0, "crash recovery", why);
    child_reap();
    jutil_rmdir(dir);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Read one record within @ms; 1, 0 at end of file, -1 on timeout. */
static int record_read(int fd, struct record *r, double ms)
{
    size_t got = 0;
    double end = now_ms() + ms;

    while (got < sizeof(*r)) {
        struct pollfd p = {fd, POLLIN, 0};
        double left = end - now_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left + 1) == 0)
            return -1;
        n = read(fd, (char *)r + got, sizeof(*r) - got);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR)
            die("read from the child's pipe failed");
        if (n > 0)
            got += (size_t)n;
    }
    return 1;
}

static void child_start(int *rfd, const char *self)
{
    int p[2];
    char fdarg[16];

    if (pipe(p) != 0)
        die("pipe failed");
    child = fork();
    if (child < 0)
        die("fork failed");
    if (child == 0) {
        close(p[0]);
        snprintf(fdarg, sizeof(fdarg), "%d", p[1]);
        execl(self, self, "--child", dir, fdarg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *rfd = p[0];
}

struct verdict {
    uint64_t highest;
    uint64_t hash;
    char why[256];
};

struct walk {
    uint64_t expect;
    uint64_t hash;
    char *why;
};

static int walk_event(uint64_t seq, const void *data, size_t len, void *user_data)
{
    struct walk *w = user_data;
    uint64_t v;

    if (seq != w->expect) {
        snprintf(w->why, 256, "seq %llu where %llu was due (a gap or a duplicate)",
                 (unsigned long long)seq, (unsigned long long)w->expect);
        return 1;
    }
    memcpy(&v, data, len == sizeof(v) ? sizeof(v) : 0);
    if (len != sizeof(v) || v != event_value(seq)) {
        snprintf(w->why, 256, "event %llu holds other bytes", (unsigned long long)seq);
        return 1;
    }
    w->hash = fold(w->hash, v);
    w->expect++;
    return 0;
}

/* Read the journal as the killed child left it. 0, or -1 with v->why set. */
static int journal_verify(struct verdict *v)
{
    struct actor_journal_opts o = {.dir = dir, .log = jutil_log};
    struct actor_journal *j;
    struct walk w = {.expect = 1, .why = v->why};
    uint64_t highest = 0;
    int rc = actor_journal_open(&o, &j);

    if (rc != 0) {
        snprintf(v->why, sizeof(v->why), "open after the kill: %s", actor_strerror(rc));
        return -1;
    }
    rc = actor_journal_replay(j, ID, 1, walk_event, &w);
    if (rc == 0)
        rc = actor_journal_highest(j, ID, &highest);
    actor_journal_close(j);
    if (rc != 0) {
        if (v->why[0] == '\0')
            snprintf(v->why, sizeof(v->why), "read: %s", actor_strerror(rc));
        return -1;
    }
    if (highest != w.expect - 1) {
        snprintf(v->why, sizeof(v->why), "highest %llu, but events run to %llu",
                 (unsigned long long)highest, (unsigned long long)(w.expect - 1));
        return -1;
    }
    v->highest = highest;
    v->hash = w.hash;
    return 0;
}

struct totals {
    uint64_t acked;      /* acknowledgements seen over all rounds */
    uint64_t events;     /* events in the journal at the end */
    int recovered_equal; /* rounds whose child rebuilt the journal's state */
    int early;           /* rounds whose child was killed while it started */
    int verified;        /* rounds whose journal passed journal_verify() */
    int acks_kept;       /* rounds whose acknowledged events were all in the journal */
};

/* What one round has seen of its child. */
struct round {
    int n;
    int recovered;     /* the child reported its recovery */
    uint64_t last_ack; /* the highest seq acknowledged, or the journal's before the round */
    const struct verdict *before;
};

/* Check one record against what came before it; 0, or -1 with @why set. */
static int record_check(struct round *rd, const struct record *r, char *why, size_t size)
{
    if (r->type == REC_RECOVERED && !rd->recovered) {
        rd->recovered = 1;
        if (r->a == rd->before->highest && r->b == rd->before->hash)
            return 0;
        snprintf(why, size,
                 "round %d: the child rebuilt seq %llu hash %016llx, the journal says %llu %016llx",
                 rd->n, (unsigned long long)r->a, (unsigned long long)r->b,
                 (unsigned long long)rd->before->highest, (unsigned long long)rd->before->hash);
        return -1;
    }
    if (r->type == REC_ACK && rd->recovered && r->a == rd->last_ack + 1) {
        rd->last_ack = r->a;
        return 0;
    }
    snprintf(why, size, "round %d: record %llu (%llu) after ack %llu%s", rd->n,
             (unsigned long long)r->type, (unsigned long long)r->a,
             (unsigned long long)rd->last_ack, rd->recovered ? "" : ", before the recovery");
    return -1;
}

/*
 * Run a child and kill it at a random moment: most rounds some time after its recovery, one
 * in five while it starts (opening the environment, recovering). Returns the highest seq it
 * acknowledged.
 */
static uint64_t round_run(int n, const char *self, unsigned *seed, const struct verdict *before,
                          struct totals *t)
{
    struct round rd = {.n = n, .last_ack = before->highest, .before = before};
    int early = rand_r(seed) % 5 == 0, killed = 0, fd, rc;
    double start = now_ms(), kill_at = early ? start + rand_r(seed) % 30 : start + START_MS;
    struct record r;
    char why[256];

    child_start(&fd, self);
    for (;;) {
        if (!killed && now_ms() >= kill_at) {
            kill(child, SIGKILL);
            killed = 1;
        }
        rc = record_read(fd, &r, killed ? START_MS : kill_at - now_ms());
        if (rc == 0 || (rc == -1 && killed)) {
            close(fd);
            if (!killed)
                die(rd.recovered ? "the child ended by itself" : "no recovery report in time");
            if (rc == -1)
                die("the pipe stayed open after the kill");
            break;
        }
        if (rc == -1)
            continue;
        if (record_check(&rd, &r, why, sizeof(why)) != 0) {
            close(fd);
            die(why);
        }
        if (r.type == REC_ACK) {
            t->acked++;
        } else {
            t->recovered_equal++;
            if (!early)
                kill_at = now_ms() + (double)(rand_r(seed) % (KILL_MAX_MS + 1));
        }
    }
    t->early += early;
    child_reap();
    if (!early && !rd.recovered)
        die("no recovery report in time");
    return rd.last_ack;
}

static int parent_main(const char *self)
{
    struct verdict v = {0};
    struct totals t = {0};
    unsigned seed = (unsigned)time(NULL);
    const char *env = getenv("CRASH_SEED");
    char why[300];

    if (env != NULL)
        seed = (unsigned)strtoul(env, NULL, 10);
    if (jutil_tmpdir("test-crash", dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    printf("# seed %u, %d rounds, journal in %s\n", seed, ROUNDS, dir);
    for (int round = 1; round <= ROUNDS; round++) {
        uint64_t acked = round_run(round, self, &seed, &v, &t);

        if (journal_verify(&v) != 0) {
            snprintf(why, sizeof(why), "round %d: %s", round, v.why);
            die(why);
        }
        t.verified++;
        if (acked > v.highest) {
            snprintf(why, sizeof(why),
                     "round %d: seq %llu was acknowledged, the journal ends at %llu", round,
                     (unsigned long long)acked, (unsigned long long)v.highest);
            die(why);
        }
        t.acks_kept++;
    }
    t.events = v.highest;
    printf("# %llu acknowledgements, %llu events in the journal after %d kills\n",
           (unsigned long long)t.acked, (unsigned long long)t.events, ROUNDS);
    jutil_check(t.acked > 0, "children acknowledged events", "no acknowledgement in any round");
    jutil_check(t.acks_kept == ROUNDS, "every acknowledged event survived each kill",
                "a round unchecked");
    jutil_check(t.verified == ROUNDS, "sequence numbers contiguous, no duplicate, bytes intact",
                "a round unchecked");
    printf("# %d children aimed at while starting, %d reported their recovery\n", t.early,
           t.recovered_equal);
    jutil_check(t.recovered_equal >= ROUNDS - t.early && t.recovered_equal > 0,
                "each restart that recovered rebuilt the journal's state exactly",
                "a child was killed before it recovered");
    jutil_rmdir(dir);
    return jutil_failures != 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2], atoi(argv[3]));
    if (argc != 1) {
        fprintf(stderr, "usage: %s (the child runs as: %s --child DIR FD)\n", argv[0], argv[0]);
        return 2;
    }
    return parent_main("/proc/self/exe");
}
