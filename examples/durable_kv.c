/*
 * durable_kv.c: a key-value store whose data survives kill -9. One durable actor holds the
 * map; every set and del is an event in an LMDB journal, and is acknowledged only once it is
 * on disk. A restart rebuilds the map from the latest snapshot and the events after it.
 *
 *   main thread --actor_call_wait("set k v")--> kv actor --persist(event)--> journal writer
 *        ^                                         |  (the call waits; later calls stash)   |
 *        +---------------- reply "ok, seq N" <-----+<---------- on disk: apply, reply ------+
 *
 * Run:
 *   durable_kv --dir /var/tmp/kv set greeting hello
 *   durable_kv --dir /var/tmp/kv get greeting
 *   durable_kv --dir /var/tmp/kv load 100000 &  sleep 2; kill -9 $!
 *   durable_kv --dir /var/tmp/kv count          # every "stored" line printed is still there
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "config.h"

#define KEY_MAX       1024
#define VALUE_MAX     (64 * 1024)
#define BUCKETS       4096
#define SNAPSHOT_EVRY 10000 /* events between snapshots; the events they cover are deleted */
#define CALL_TIMEOUT  30.0

/*
 * A request, and the event that a set or del persists, share one layout:
 *   op (1 byte: 'S' set, 'D' del, 'G' get, 'C' count, 'L' list) | u16 key length | key | value
 */
struct entry {
    struct entry *next;
    size_t klen, vlen;
    char *key, *value;
};

struct kv {
    struct entry *buckets[BUCKETS];
    size_t count;
};

/* ---- The map ---------------------------------------------------------------------------- */

static size_t hash(const char *key, size_t len)
{
    size_t h = 1469598103934665603u;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211u;
    return h % BUCKETS;
}

static struct entry **kv_find(struct kv *kv, const char *key, size_t klen)
{
    struct entry **e = &kv->buckets[hash(key, klen)];

    while (*e != NULL && ((*e)->klen != klen || memcmp((*e)->key, key, klen) != 0))
        e = &(*e)->next;
    return e;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e);
}

static int kv_set(struct kv *kv, const char *key, size_t klen, const char *value, size_t vlen)
{
    struct entry **slot = kv_find(kv, key, klen);
    struct entry *e = malloc(sizeof(*e));
    char *buf = malloc(klen + vlen + 1); /* the key, then the value with a NUL */

    if (e == NULL || buf == NULL) {
        free(e);
        free(buf);
        return ACTOR_ENOMEM;
    }
    e->key = buf;
    memcpy(e->key, key, klen);
    e->value = e->key + klen;
    memcpy(e->value, value, vlen);
    e->value[vlen] = '\0';
    e->klen = klen;
    e->vlen = vlen;
    if (*slot != NULL) {
        e->next = (*slot)->next;
        entry_free(*slot);
        kv->count--;
    } else {
        e->next = NULL;
    }
    *slot = e;
    kv->count++;
    return 0;
}

static void kv_del(struct kv *kv, const char *key, size_t klen)
{
    struct entry **slot = kv_find(kv, key, klen);
    struct entry *e = *slot;

    if (e != NULL) {
        *slot = e->next;
        entry_free(e);
        kv->count--;
    }
}

/* ---- Records: requests and events ------------------------------------------------------- */

struct record {
    char op;
    const char *key, *value;
    size_t klen, vlen;
};

static int record_parse(const void *data, size_t len, struct record *r)
{
    const unsigned char *p = data;

    if (len < 3)
        return ACTOR_EINVAL;
    r->op = (char)p[0];
    r->klen = (size_t)p[1] << 8 | p[2];
    if (r->klen > len - 3)
        return ACTOR_EINVAL;
    r->key = (const char *)p + 3;
    r->value = r->key + r->klen;
    r->vlen = len - 3 - r->klen;
    return 0;
}

/* A malloc()ed record of @op, @key and @value; *len is its size. */
static void *record_make(char op, const char *key, const char *value, size_t *len)
{
    size_t klen = strlen(key), vlen = value != NULL ? strlen(value) : 0;
    unsigned char *p = malloc(3 + klen + vlen + 1);

    if (p == NULL)
        return NULL;
    p[0] = (unsigned char)op;
    p[1] = (unsigned char)(klen >> 8);
    p[2] = (unsigned char)klen;
    memcpy(p + 3, key, klen);
    if (vlen > 0)
        memcpy(p + 3 + klen, value, vlen);
    *len = 3 + klen + vlen;
    return p;
}

/* ---- The actor ------------------------------------------------------------------------- */

static int kv_init(struct actor_durable *d, void *arg, void **state)
{
    *state = calloc(1, sizeof(struct kv));
    return *state != NULL ? 0 : ACTOR_ENOMEM;
}

static int kv_apply(struct actor_durable *d, void *state, uint64_t seq, const void *event,
                    size_t len)
{
    struct record r;
    int rc = record_parse(event, len, &r);

    if (rc != 0)
        return rc;
    if (r.op == 'S')
        return kv_set(state, r.key, r.klen, r.value, r.vlen);
    if (r.op == 'D')
        kv_del(state, r.key, r.klen);
    return r.op == 'S' || r.op == 'D' ? 0 : ACTOR_EINVAL;
}

/* A snapshot: the map as a sequence of set events, each behind its u32 length. */
static int kv_snapshot(struct actor_durable *d, void *state, void **data, size_t *len)
{
    struct kv *kv = state;
    size_t size = 0, off = 0;
    unsigned char *buf;

    for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry *e = kv->buckets[b]; e != NULL; e = e->next)
            size += 4 + 3 + e->klen + e->vlen;
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return ACTOR_ENOMEM;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (struct entry *e = kv->buckets[b]; e != NULL; e = e->next) {
            uint32_t n = (uint32_t)(3 + e->klen + e->vlen);

            memcpy(buf + off, &n, 4);
            buf[off + 4] = 'S';
            buf[off + 5] = (unsigned char)(e->klen >> 8);
            buf[off + 6] = (unsigned char)e->klen;
            memcpy(buf + off + 7, e->key, e->klen);
            memcpy(buf + off + 7 + e->klen, e->value, e->vlen);
            off += 4 + n;
        }
    }
    *data = buf;
    *len = size;
    return 0;
}

static int kv_restore(struct actor_durable *d, void *state, uint64_t seq, const void *data,
                      size_t len)
{
    const unsigned char *p = data;
    size_t off = 0;
    int rc = 0;

    while (rc == 0 && off + 4 <= len) {
        uint32_t n;

        memcpy(&n, p + off, 4);
        if (n > len - off - 4)
            return ACTOR_EINVAL;
        rc = kv_apply(d, state, seq, p + off + 4, n);
        off += 4 + n;
    }
    return rc != 0 ? rc : off == len ? 0 : ACTOR_EINVAL;
}

/* Reply to @req with a status and @len bytes of @data. */
static void reply(struct actor_durable *d, const struct actor_msg *req, int32_t status,
                  const void *data, size_t len)
{
    char *buf = malloc(sizeof(status) + len);

    if (buf == NULL)
        return;
    memcpy(buf, &status, sizeof(status));
    if (len > 0)
        memcpy(buf + sizeof(status), data, len);
    if (actor_reply(actor_durable_actor(d), req, actor_type_raw(), buf, sizeof(status) + len) != 0)
        free(buf);
}

/* The continuation of a set or del: the event is on disk; answer with its seq. */
static int kv_stored(struct actor_durable *d, void *state, int err, uint64_t seq, void *cb_data)
{
    struct actor_msg *req = cb_data;

    reply(d, req, err, &seq, sizeof(seq));
    free(req);
    return 0;
}

static void kv_list(struct actor_durable *d, struct kv *kv, const struct actor_msg *req)
{
    size_t size = 0, off = 0;
    char *text;

    for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry *e = kv->buckets[b]; e != NULL; e = e->next)
            size += e->klen + e->vlen + 2;
    text = malloc(size + 1);
    if (text == NULL) {
        reply(d, req, ACTOR_ENOMEM, NULL, 0);
        return;
    }
    for (size_t b = 0; b < BUCKETS; b++)
        for (struct entry *e = kv->buckets[b]; e != NULL; e = e->next)
            off += (size_t)sprintf(text + off, "%.*s\t%s\n", (int)e->klen, e->key, e->value);
    reply(d, req, 0, text, off);
    free(text);
}

static int kv_handle(struct actor_durable *d, void *state, struct actor_msg *msg)
{
    struct kv *kv = state;
    struct actor_msg *copy;
    struct entry **e;
    struct record r;
    int rc;

    if (msg->kind != ACTOR_MSG_CALL || record_parse(msg->payload, msg->size, &r) != 0)
        return 0; /* not ours: ignore */
    switch (r.op) {
    case 'S':
    case 'D':
        copy = malloc(sizeof(*copy));
        if (copy == NULL)
            return ACTOR_ENOMEM;
        *copy = *msg; /* actor_reply needs only its sender and reference */
        rc = actor_durable_persist(d, msg->payload, msg->size, kv_stored, copy);
        if (rc != 0) {
            reply(d, msg, rc, NULL, 0);
            free(copy);
        }
        return 0;
    case 'G':
        e = kv_find(kv, r.key, r.klen);
        if (*e != NULL)
            reply(d, msg, 0, (*e)->value, (*e)->vlen);
        else
            reply(d, msg, ACTOR_ENONAME, NULL, 0);
        return 0;
    case 'C':
        reply(d, msg, 0, &kv->count, sizeof(kv->count));
        return 0;
    case 'L':
        kv_list(d, kv, msg);
        return 0;
    default:
        reply(d, msg, ACTOR_EINVAL, NULL, 0);
        return 0;
    }
}

static void kv_terminate(struct actor_durable *d, void *state, int reason)
{
    struct kv *kv = state;

    for (size_t b = 0; b < BUCKETS; b++) {
        while (kv->buckets[b] != NULL) {
            struct entry *e = kv->buckets[b];

            kv->buckets[b] = e->next;
            entry_free(e);
        }
    }
    free(kv);
}

static const struct actor_durable_behaviour kv_behaviour = {
    .name = "kv",
    .init = kv_init,
    .restore = kv_restore,
    .apply = kv_apply,
    .handle = kv_handle,
    .snapshot = kv_snapshot,
    .terminate = kv_terminate,
};

/* ---- The program ------------------------------------------------------------------------ */

struct app {
    struct actor_journal *journal;
    struct actor_system *sys;
    struct actor_durable_spec spec;
    struct dist_pid kv;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: durable_kv --dir DIR [--nosync] COMMAND\n"
            "       durable_kv --help | --version\n"
            "\n"
            "A key-value store whose data survives kill -9, kept in an LMDB journal in DIR.\n"
            "\n"
            "Commands:\n"
            "  set KEY VALUE   store VALUE under KEY; prints the event's sequence number once\n"
            "                  it is on disk\n"
            "  get KEY         print KEY's value (exit 1 when it has none)\n"
            "  del KEY         remove KEY\n"
            "  count           print how many keys are stored\n"
            "  list            print every key and value, tab-separated, in no order\n"
            "  load N          set key-0 .. key-(N-1), printing \"stored key-I\" as each one\n"
            "                  reaches the disk: kill -9 it, and every printed key is there\n"
            "\n"
            "Options:\n"
            "  --dir DIR       the journal's directory (created if missing)\n"
            "  --nosync        do not sync each commit (survives kill -9, not a power cut)\n");
}

static void log_line(int level, const char *msg, void *user_data)
{
    if (level <= 1)
        fprintf(stderr, "durable_kv: %s\n", msg);
}

/* Call the kv actor with a record; prints an error and returns non-zero on failure. */
static int kv_call(struct app *app, char op, const char *key, const char *value,
                   struct actor_msg **out)
{
    size_t len;
    void *req = record_make(op, key, value, &len);
    int32_t status;
    int rc;

    if (req == NULL)
        return ACTOR_ENOMEM;
    rc = actor_call_wait(app->sys, app->kv, actor_type_raw(), req, len, CALL_TIMEOUT, out);
    if (rc == ACTOR_EINVAL)
        free(req);
    if (rc != 0)
        return rc;
    memcpy(&status, (*out)->payload, sizeof(status));
    if (status != 0)
        actor_msg_free(*out);
    return status;
}

static int app_start(struct app *app, const char *dir, unsigned flags)
{
    struct actor_journal_opts jo = {.dir = dir, .flags = flags, .log = log_line};
    struct actor_system_opts so = {.schedulers = 1, .log = log_line};
    int rc = actor_journal_open(&jo, &app->journal);

    if (rc != 0) {
        fprintf(stderr, "durable_kv: cannot open the journal in %s: %s\n", dir, actor_strerror(rc));
        return rc;
    }
    app->spec = (struct actor_durable_spec){.journal = app->journal,
                                            .behaviour = &kv_behaviour,
                                            .persistence_id = "kv",
                                            .snapshot_every = SNAPSHOT_EVRY,
                                            .flags = ACTOR_DURABLE_DELETE_ON_SNAPSHOT};
    rc = actor_system_new(&so, &app->sys);
    if (rc == 0)
        rc = actor_system_start(app->sys);
    if (rc == 0)
        rc = actor_durable_spawn(app->sys, NULL, &app->spec, NULL, &app->kv);
    if (rc != 0)
        fprintf(stderr, "durable_kv: cannot start: %s\n", actor_strerror(rc));
    return rc;
}

static void app_stop(struct app *app)
{
    if (app->sys != NULL) {
        actor_system_shutdown(app->sys, 5.0);
        actor_system_free(app->sys);
    }
    actor_journal_close(app->journal);
}

static int cmd_load(struct app *app, const char *arg)
{
    char *end, key[32], value[32];
    long n;

    errno = 0;
    n = strtol(arg, &end, 10);
    if (errno != 0 || *end != '\0' || n < 0) {
        fprintf(stderr, "durable_kv: load: not a count: %s\n", arg);
        return 2;
    }
    for (long i = 0; i < n; i++) {
        struct actor_msg *reply_msg;
        int rc;

        snprintf(key, sizeof(key), "key-%ld", i);
        snprintf(value, sizeof(value), "value-%ld", i);
        rc = kv_call(app, 'S', key, value, &reply_msg);
        if (rc != 0) {
            fprintf(stderr, "durable_kv: set %s: %s\n", key, actor_strerror(rc));
            return 1;
        }
        actor_msg_free(reply_msg);
        printf("stored %s\n", key);
        fflush(stdout);
    }
    return 0;
}

struct command {
    const char *name;
    char op;  /* the record's op, or 0 for load */
    int argc; /* with the command's name */
};

static const struct command commands[] = {
    {"set", 'S', 3},   {"get", 'G', 2},  {"del", 'D', 2},
    {"count", 'C', 1}, {"list", 'L', 1}, {"load", 0, 2},
};

/* The command that argv names, checked; NULL (after a message) when it is not one. */
static const struct command *command_check(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) != 0)
            continue;
        if (argc != commands[i].argc) {
            fprintf(stderr, "durable_kv: %s takes %d argument(s)\n", argv[0], commands[i].argc - 1);
            return NULL;
        }
        if (commands[i].op != 0 && argc > 1 && strlen(argv[1]) > KEY_MAX) {
            fprintf(stderr, "durable_kv: keys are at most %d bytes\n", KEY_MAX);
            return NULL;
        }
        if (argc > 2 && strlen(argv[2]) > VALUE_MAX) {
            fprintf(stderr, "durable_kv: values are at most %d bytes\n", VALUE_MAX);
            return NULL;
        }
        return &commands[i];
    }
    fprintf(stderr, "durable_kv: unknown command: %s\n", argv[0]);
    return NULL;
}

/* Run one checked command; returns the exit status. */
static int run(struct app *app, const struct command *c, char **argv)
{
    struct actor_msg *r = NULL;
    uint64_t seq;
    size_t count;
    int rc;

    if (c->op == 0)
        return cmd_load(app, argv[1]);
    rc = kv_call(app, c->op, c->argc > 1 ? argv[1] : "", c->argc > 2 ? argv[2] : NULL, &r);
    if (rc != 0) {
        fprintf(stderr, "durable_kv: %s: %s\n", c->name,
                rc == ACTOR_ENONAME ? "no such key" : actor_strerror(rc));
        return 1;
    }
    if (c->op == 'S' || c->op == 'D') {
        memcpy(&seq, (char *)r->payload + 4, sizeof(seq));
        printf("ok (event %llu on disk)\n", (unsigned long long)seq);
    } else if (c->op == 'C') {
        memcpy(&count, (char *)r->payload + 4, sizeof(count));
        printf("%zu\n", count);
    } else {
        printf(c->op == 'G' ? "%.*s\n" : "%.*s", (int)(r->size - 4), (char *)r->payload + 4);
    }
    actor_msg_free(r);
    return 0;
}

int main(int argc, char **argv)
{
    struct app app = {0};
    const struct command *c;
    const char *dir = NULL;
    unsigned flags = ACTOR_JOURNAL_SYNC;
    int i, status;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("durable_kv %s\n", PROJECT_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--nosync") == 0) {
            flags = ACTOR_JOURNAL_NOSYNC;
        } else {
            fprintf(stderr, "durable_kv: unknown option or missing value: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (dir == NULL || i == argc) {
        fprintf(stderr, "durable_kv: %s\n", dir == NULL ? "--dir is required" : "no command");
        usage(stderr);
        return 2;
    }
    c = command_check(argc - i, argv + i);
    if (c == NULL)
        return 2;
    if (app_start(&app, dir, flags) != 0) {
        app_stop(&app);
        return 1;
    }
    status = run(&app, c, argv + i);
    app_stop(&app);
    return status;
}
