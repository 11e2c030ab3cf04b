/*
 * test_types.c: the message type registry: the raw type, protobuf-c types registered by name
 * and descriptor, duplicates and conflicts, lookups, and protobuf payloads on the way through
 * an actor. Also the error and exit-reason names.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "dist.h"

#include "harness.h"

/* ---- Two protobuf-c message types, as protoc-c generates them ------------------------------- */

/* package test; message Ping { uint32 seq = 1; string note = 2; } message Pong { uint32 seq = 1; }
 */
struct test_ping {
    ProtobufCMessage base;
    uint32_t seq;
    char *note;
};

struct test_pong {
    ProtobufCMessage base;
    uint32_t seq;
};

static const ProtobufCMessageDescriptor ping_descriptor;
static const ProtobufCMessageDescriptor pong_descriptor;

static void ping_init(ProtobufCMessage *m)
{
    struct test_ping *p = (struct test_ping *)m;

    memset(p, 0, sizeof(*p));
    p->base.descriptor = &ping_descriptor;
    p->note = (char *)protobuf_c_empty_string;
}

static void pong_init(ProtobufCMessage *m)
{
    struct test_pong *p = (struct test_pong *)m;

    memset(p, 0, sizeof(*p));
    p->base.descriptor = &pong_descriptor;
}

static const ProtobufCFieldDescriptor ping_fields[2] = {
    {"seq", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0, offsetof(struct test_ping, seq),
     NULL, NULL, 0, 0, NULL, NULL},
    {"note", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, offsetof(struct test_ping, note),
     NULL, &protobuf_c_empty_string, 0, 0, NULL, NULL},
};
static const unsigned ping_fields_by_name[] = {1, 0};
static const ProtobufCIntRange ping_ranges[2] = {{1, 0}, {0, 2}};

static const ProtobufCMessageDescriptor ping_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Ping",
    "Ping",
    "Test__Ping",
    "test",
    sizeof(struct test_ping),
    2,
    ping_fields,
    ping_fields_by_name,
    1,
    ping_ranges,
    ping_init,
    NULL,
    NULL,
    NULL,
};

static const ProtobufCFieldDescriptor pong_fields[1] = {
    {"seq", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0, offsetof(struct test_pong, seq),
     NULL, NULL, 0, 0, NULL, NULL},
};
static const unsigned pong_fields_by_name[] = {0};
static const ProtobufCIntRange pong_ranges[2] = {{1, 0}, {0, 1}};

static const ProtobufCMessageDescriptor pong_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Pong",
    "Pong",
    "Test__Pong",
    "test",
    sizeof(struct test_pong),
    1,
    pong_fields,
    pong_fields_by_name,
    1,
    pong_ranges,
    pong_init,
    NULL,
    NULL,
    NULL,
};

/* An unpacked Ping: it owns its fields, as the runtime's free expects. */
static struct test_ping *ping_new(uint32_t seq, const char *note)
{
    struct test_ping src;
    uint8_t buf[256];
    size_t len;

    ping_init(&src.base);
    src.seq = seq;
    src.note = (char *)note;
    len = protobuf_c_message_pack(&src.base, buf);
    cr_assert_lt(len, sizeof(buf));
    return (struct test_ping *)protobuf_c_message_unpack(&ping_descriptor, NULL, len, buf);
}

TestSuite(types, .init = setup, .fini = teardown, .timeout = 30);

Test(types, raw_type_is_builtin)
{
    const struct actor_type *raw = actor_type_raw();

    cr_assert_not_null(raw);
    cr_assert_str_eq(actor_type_name(raw), "actor.Raw");
    cr_assert_null(actor_type_descriptor(raw));
    cr_assert_eq(actor_type_find("actor.Raw"), raw);
    cr_assert_eq(actor_type_raw(), raw, "one raw type");
}

Test(types, find_unknown_is_null)
{
    cr_assert_null(actor_type_find("test.Nope"));
    cr_assert_null(actor_type_find(""));
    cr_assert_null(actor_type_find("actor.raw"), "names are case-sensitive");
}

Test(types, register_protobuf_type)
{
    const struct actor_type *t = NULL;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &t), 0);
    cr_assert_not_null(t);
    cr_assert_neq(t, actor_type_raw());
    cr_assert_str_eq(actor_type_name(t), "test.Ping");
    cr_assert_eq(actor_type_descriptor(t), &ping_descriptor);
    cr_assert_eq(actor_type_find("test.Ping"), t);
}

Test(types, register_twice_with_same_descriptor_returns_same_type)
{
    const struct actor_type *a = NULL, *b = NULL, *c = NULL;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &a), 0);
    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &b), 0);
    cr_assert_eq(a, b);
    /* One descriptor may carry several names; each name is its own type. */
    cr_assert_eq(actor_type_register("test.PingAlias", &ping_descriptor, &c), 0);
    cr_assert_neq(c, a);
    cr_assert_eq(actor_type_find("test.Ping"), a);
    cr_assert_eq(actor_type_find("test.PingAlias"), c);
}

Test(types, register_with_other_descriptor_is_etype)
{
    const struct actor_type *a = NULL;
    const struct actor_type *untouched = (const struct actor_type *)&pong_descriptor;
    const struct actor_type *out = untouched;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &a), 0);
    cr_assert_eq(actor_type_register("test.Ping", &pong_descriptor, &out), ACTOR_ETYPE);
    cr_assert_eq(out, untouched, "a failed register left its output untouched");
    cr_assert_eq(actor_type_find("test.Ping"), a);
    cr_assert_eq(actor_type_descriptor(a), &ping_descriptor);
}

Test(types, raw_name_cannot_be_taken_by_a_descriptor)
{
    const struct actor_type *out = NULL;

    cr_assert_eq(actor_type_register("actor.Raw", &ping_descriptor, &out), ACTOR_ETYPE);
    cr_assert_null(out);
    cr_assert_null(actor_type_descriptor(actor_type_find("actor.Raw")));
}

Test(types, register_rejects_invalid_arguments)
{
    const struct actor_type *out = NULL;

    cr_assert_eq(actor_type_register(NULL, &ping_descriptor, &out), ACTOR_EINVAL);
    cr_assert_eq(actor_type_register("test.Ping", NULL, &out), ACTOR_EINVAL);
    cr_assert_null(out);
    cr_assert_null(actor_type_find("test.Ping"), "a failed register registered nothing");
}

Test(types, register_copies_the_name)
{
    char name[32];
    const struct actor_type *t = NULL;

    snprintf(name, sizeof(name), "test.%s", "Transient");
    cr_assert_eq(actor_type_register(name, &pong_descriptor, &t), 0);
    memset(name, 'x', sizeof(name) - 1);
    cr_assert_eq(actor_type_find("test.Transient"), t);
    cr_assert_str_eq(actor_type_name(t), "test.Transient");
}

struct reg_race {
    pthread_barrier_t *start;
    const struct actor_type *out[16];
    int rc[16];
};

static void *reg_thread(void *arg)
{
    struct reg_race *r = arg;
    static atomic_int slot;
    int me = atomic_fetch_add(&slot, 1);

    pthread_barrier_wait(r->start);
    for (int i = 0; i < 16; i++) {
        char name[32];

        snprintf(name, sizeof(name), "race.T%d", i);
        r[me].rc[i] = actor_type_register(name, &ping_descriptor, &r[me].out[i]);
    }
    return NULL;
}

Test(types, concurrent_registration_agrees)
{
    enum { T = 8 };
    pthread_barrier_t start;
    struct reg_race r[T];
    pthread_t th[T];

    memset(r, 0, sizeof(r));
    pthread_barrier_init(&start, NULL, T);
    for (int i = 0; i < T; i++)
        r[i].start = &start;
    for (int i = 0; i < T; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reg_thread, r), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    for (int n = 0; n < 16; n++) {
        char name[32];

        snprintf(name, sizeof(name), "race.T%d", n);
        for (int i = 0; i < T; i++) {
            cr_assert_eq(r[i].rc[n], 0);
            cr_assert_eq(r[i].out[n], r[0].out[n], "two threads got two types for %s", name);
        }
        cr_assert_eq(actor_type_find(name), r[0].out[n]);
    }
}

static const struct actor_type *ping_type;

/* Reports each Ping: seq, and a = 1 when its note arrived intact. Takes odd ones. */
static int ping_sink_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct test_ping *p = msg->payload;

    if (msg->kind != ACTOR_MSG_USER || msg->type != ping_type ||
        p->base.descriptor != &ping_descriptor) {
        report(EV_OTHER, (int)msg->kind, 0, 0, msg->from);
        return 0;
    }
    report(EV_MSG, 0, p->seq, strcmp(p->note, "hello") == 0, msg->from);
    if (p->seq % 2 == 1) {
        if (actor_msg_take(msg) != p)
            report(EV_BAD, 4, 0, 0, DIST_PID_NONE);
        actor_payload_free(ping_type, p);
    }
    return 0;
}

Test(types, protobuf_payload_is_delivered_and_freed)
{
    static const struct actor_behaviour sink = {.name = "ping_sink", .handle = ping_sink_handle};
    struct dist_pid pid;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &ping_type), 0);
    cr_assert_eq(actor_spawn(sys, NULL, &sink, NULL, NULL, &pid), 0);
    for (uint32_t i = 1; i <= 10; i++) {
        struct test_ping *p = ping_new(i, "hello");

        cr_assert_not_null(p);
        cr_assert_eq(actor_send(sys, pid, ping_type, p, 0), 0);
    }
    for (int i = 0; i < 10; i++) {
        struct event e = event_wait(EV_MSG, pid, i);

        cr_assert_eq(e.seq, (uint64_t)i + 1, "Pings out of order");
        cr_assert_eq(e.a, 1u, "Ping %d lost its note", i + 1);
        cr_assert(dist_pid_is_none(e.pid), "a send from the test thread has no sender");
    }
    cr_assert_eq(event_count(EV_OTHER, pid), 0);
    assert_clean();
}

static pthread_mutex_t taken_lock = PTHREAD_MUTEX_INITIALIZER;
static struct test_ping *taken[8];
static int n_taken;

/* Takes every Ping and keeps it past the handler's return. */
static int ping_keeper_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    if (msg->kind == ACTOR_MSG_USER && msg->type == ping_type) {
        struct test_ping *p = actor_msg_take(msg);

        if (p == NULL || msg->payload != NULL)
            report(EV_BAD, 8, 0, 0, DIST_PID_NONE); /* take clears the message's payload */
        pthread_mutex_lock(&taken_lock);
        if (n_taken < 8)
            taken[n_taken++] = p;
        pthread_mutex_unlock(&taken_lock);
    }
    return 0;
}

static int handled_by(struct dist_pid pid)
{
    struct find_ctx ctx = {.pid = pid};

    actor_system_list(sys, find_cb, &ctx);
    return ctx.found ? (int)ctx.info.handled : -1;
}

Test(types, a_taken_payload_outlives_its_handler)
{
    static const struct actor_behaviour keeper = {.name = "keeper", .handle = ping_keeper_handle};
    struct dist_pid pid;

    cr_assert_eq(actor_type_register("test.Ping", &ping_descriptor, &ping_type), 0);
    cr_assert_eq(actor_spawn(sys, NULL, &keeper, NULL, NULL, &pid), 0);
    for (uint32_t i = 1; i <= 3; i++)
        cr_assert_eq(actor_send(sys, pid, ping_type, ping_new(i, "kept"), 0), 0);
    WAIT_UNTIL(handled_by(pid) == 3); /* the handlers have returned */
    cr_assert_eq(handled_by(pid), 3);
    pthread_mutex_lock(&taken_lock);
    cr_assert_eq(n_taken, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(taken[i]->base.descriptor, &ping_descriptor);
        cr_assert_eq(taken[i]->seq, (uint32_t)i + 1);
        cr_assert_str_eq(taken[i]->note, "kept");
        actor_payload_free(ping_type, taken[i]);
    }
    pthread_mutex_unlock(&taken_lock);
    actor_payload_free(ping_type, NULL);
    actor_payload_free(actor_type_raw(), NULL);
    assert_clean();
}

Test(types, send_rejects_a_missing_type)
{
    struct dist_pid pid = spawn_probe(0);
    void *payload = malloc(16);

    cr_assert_eq(actor_send(sys, pid, NULL, payload, 16), ACTOR_EINVAL);
    free(payload); /* a failed send leaves the payload with the caller */
    barrier(pid);
    cr_assert_eq(event_count(EV_OTHER, pid), 0, "the rejected message was delivered");
}

Test(types, strerror_and_reason_names)
{
    cr_assert_str_eq(actor_strerror(ACTOR_ENOPROC), "no such process");
    cr_assert_str_eq(actor_strerror(ACTOR_ETIMEDOUT), "timed out");
    cr_assert_str_eq(actor_strerror(ACTOR_EBUSY), "mailbox full");
    cr_assert_str_eq(actor_strerror(ACTOR_ENAMETAKEN), "name already registered");
    cr_assert_str_eq(actor_strerror(ACTOR_ETYPE), "unknown or mismatched message type");
    cr_assert_not_null(actor_strerror(-ENOENT));
    cr_assert_neq(actor_strerror(-ENOENT)[0], '\0');
    cr_assert_str_eq(actor_strerror(DIST_ENOBUFS), dist_strerror(DIST_ENOBUFS),
                     "libdist's codes are named too");
    cr_assert_not_null(actor_strerror(-99999));
    cr_assert_str_eq(actor_reason_name(ACTOR_NORMAL), "normal");
    cr_assert_str_eq(actor_reason_name(ACTOR_KILL), "kill");
    cr_assert_str_eq(actor_reason_name(ACTOR_KILLED), "killed");
    cr_assert_str_eq(actor_reason_name(ACTOR_SHUTDOWN), "shutdown");
    cr_assert_str_eq(actor_reason_name(ACTOR_NOPROC), "noproc");
    cr_assert_str_eq(actor_reason_name(ACTOR_ENOPROC), "no such process");
    cr_assert_str_eq(actor_reason_name(42), "custom");
}
