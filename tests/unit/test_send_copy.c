/*
 * test_send_copy.c: sends by copy (actor_send_copy): small copies inside the envelope, large
 * ones malloc()ed, taking an inline payload, the errors, and a fan-out across schedulers that
 * checks every message and its per-sender order while envelopes travel back to the scheduler
 * that made them; and the mailbox depth that a bounded mailbox is checked against.
 */
#include <criterion/criterion.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor.h"
#include "internal.h"

#define WAIT_S 20

static struct actor_system *sys;

static void setup(void)
{
    struct actor_system_opts o = {.schedulers = 2};

    cr_assert_eq(actor_system_new(&o, &sys), 0);
    cr_assert_eq(actor_system_start(sys), 0);
}

static void teardown(void)
{
    cr_assert_eq(actor_system_shutdown(sys, 10.0), 0);
    actor_system_free(sys);
}

TestSuite(send_copy, .init = setup, .fini = teardown, .timeout = 60);

static void sem_wait_bounded(sem_t *sem)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    cr_assert_eq(sem_timedwait(sem, &ts), 0, "timed out waiting for the actor");
}

/* ---- A recorder: keeps the first message it gets, then posts ---------------------------- */

struct recorder {
    sem_t got;
    int take; /* take the payload with actor_msg_take() */
    unsigned char bytes[8192];
    size_t size;
    unsigned flags;
    void *taken;
    const struct actor_type *type;
    int seen;
};

static int rec_init(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int rec_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct recorder *r = state;

    if (r->seen++ != 0)
        return 0;
    r->size = msg->size;
    r->flags = msg->flags;
    r->type = msg->type;
    if (msg->payload != NULL && msg->size <= sizeof(r->bytes))
        memcpy(r->bytes, msg->payload, msg->size);
    if (r->take)
        r->taken = actor_msg_take(msg);
    sem_post(&r->got);
    return 0;
}

static const struct actor_behaviour rec_behaviour = {"recorder", rec_init, rec_handle, NULL};

static struct dist_pid spawn_recorder(struct recorder *r)
{
    struct dist_pid pid;

    sem_init(&r->got, 0, 0);
    cr_assert_eq(actor_spawn(sys, NULL, &rec_behaviour, r, NULL, &pid), 0);
    return pid;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

Test(send_copy, small_copy_travels_inline_and_is_a_copy)
{
    static struct recorder r;
    unsigned char buf[ACTOR_INLINE_MAX], want[ACTOR_INLINE_MAX];
    struct dist_pid pid = spawn_recorder(&r);

    fill(buf, sizeof buf, 3);
    memcpy(want, buf, sizeof buf);
    cr_assert_eq(actor_send_copy(sys, pid, buf, sizeof buf), 0);
    memset(buf, 0xee, sizeof buf); /* the sender's buffer is its own again at once */
    sem_wait_bounded(&r.got);
    cr_assert_eq(r.size, sizeof want);
    cr_assert(r.flags & ACTOR_MSG_INLINE, "a copy of %zu bytes was not inline", sizeof want);
    cr_assert_eq(r.type, actor_type_raw());
    cr_assert_arr_eq(r.bytes, want, sizeof want);
}

Test(send_copy, large_copy_is_allocated_and_arrives_whole)
{
    static struct recorder r;
    static unsigned char buf[4096];
    struct dist_pid pid = spawn_recorder(&r);

    fill(buf, sizeof buf, 11);
    cr_assert_eq(actor_send_copy(sys, pid, buf, sizeof buf), 0);
    sem_wait_bounded(&r.got);
    cr_assert_eq(r.size, sizeof buf);
    cr_assert_eq(r.flags & ACTOR_MSG_INLINE, 0, "4096 bytes cannot be inline");
    cr_assert_arr_eq(r.bytes, buf, sizeof buf);
}

Test(send_copy, taking_an_inline_payload_gives_an_owned_copy)
{
    static struct recorder r = {.take = 1};
    unsigned char buf[24];
    struct dist_pid pid = spawn_recorder(&r);

    fill(buf, sizeof buf, 5);
    cr_assert_eq(actor_send_copy(sys, pid, buf, sizeof buf), 0);
    sem_wait_bounded(&r.got);
    cr_assert_not_null(r.taken);
    /* Later sends recycle the envelope; the taken copy must not change with it. */
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(actor_send_copy(sys, pid, "xxxxxxxxxxxxxxxxxxxxxxxx", 24), 0);
    cr_assert_arr_eq(r.taken, buf, sizeof buf);
    free(r.taken);
}

Test(send_copy, empty_copies_and_errors)
{
    static struct recorder r;
    struct dist_pid pid = spawn_recorder(&r);

    cr_assert_eq(actor_send_copy(sys, pid, NULL, 5), ACTOR_EINVAL);
    cr_assert_eq(actor_send_copy(NULL, pid, "a", 1), ACTOR_EINVAL);
    cr_assert_eq(actor_send_copy(sys, pid, NULL, 0), 0);
    sem_wait_bounded(&r.got);
    cr_assert_eq(r.size, 0);
    cr_assert_eq(actor_kill(sys, pid), 0);
    for (int i = 0; i < 2000 && actor_send_copy(sys, pid, "a", 1) == 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(actor_send_copy(sys, pid, "a", 1), ACTOR_ENOPROC);
    static const unsigned char big[ACTOR_INLINE_MAX + 1];
    cr_assert_eq(actor_send_copy(sys, pid, big, sizeof big), ACTOR_ENOPROC);
}

/* ---- Fan-out: one producer, many consumers, on two schedulers --------------------------- */

#define FAN_CONSUMERS 16
#define FAN_PER       20000

struct seq_msg {
    uint32_t consumer;
    uint32_t seq;
};

struct fan {
    sem_t done;
    atomic_int bad;
    atomic_int finished;
    struct dist_pid consumers[FAN_CONSUMERS];
};

struct consumer {
    struct fan *fan;
    uint32_t index;
    uint32_t next; /* the sequence number expected next */
};

static int consumer_init(struct actor *self, void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int consumer_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct consumer *c = state;
    struct seq_msg m;

    if (msg->size != sizeof m || !(msg->flags & ACTOR_MSG_INLINE)) {
        atomic_fetch_add(&c->fan->bad, 1);
        return 0;
    }
    memcpy(&m, msg->payload, sizeof m);
    if (m.consumer != c->index || m.seq != c->next)
        atomic_fetch_add(&c->fan->bad, 1);
    c->next = m.seq + 1;
    if (c->next == FAN_PER && atomic_fetch_add(&c->fan->finished, 1) + 1 == FAN_CONSUMERS)
        sem_post(&c->fan->done);
    return 0;
}

static const struct actor_behaviour consumer_behaviour = {"consumer", consumer_init,
                                                          consumer_handle, NULL};

/* One handler sends everything round-robin: long enough for its scheduler to hand over. */
static int producer_handle(struct actor *self, void *state, struct actor_msg *msg)
{
    struct fan *f = state;

    for (uint32_t k = 0; k < FAN_PER; k++)
        for (uint32_t i = 0; i < FAN_CONSUMERS; i++) {
            struct seq_msg m = {i, k};
            if (actor_send_copy(actor_system_of(self), f->consumers[i], &m, sizeof m) != 0)
                atomic_fetch_add(&f->bad, 1);
        }
    return 0;
}

static const struct actor_behaviour producer_behaviour = {"producer", consumer_init,
                                                          producer_handle, NULL};

Test(send_copy, fan_out_across_schedulers_keeps_every_message_in_order)
{
    static struct fan f;
    static struct consumer cs[FAN_CONSUMERS];
    struct actor_spawn_opts pin = {.scheduler = 0};
    struct dist_pid producer;

    sem_init(&f.done, 0, 0);
    for (uint32_t i = 0; i < FAN_CONSUMERS; i++) {
        cs[i] = (struct consumer){&f, i, 0};
        cr_assert_eq(actor_spawn(sys, NULL, &consumer_behaviour, &cs[i], &pin, &f.consumers[i]), 0);
    }
    cr_assert_eq(actor_spawn(sys, NULL, &producer_behaviour, &f, &pin, &producer), 0);
    for (int round = 0; round < 3; round++) {
        atomic_store(&f.finished, 0);
        for (uint32_t i = 0; i < FAN_CONSUMERS; i++)
            cs[i].next = 0; /* written before the go message, read after it */
        cr_assert_eq(actor_send_copy(sys, producer, NULL, 0), 0);
        sem_wait_bounded(&f.done);
        cr_assert_eq(atomic_load(&f.bad), 0,
                     "round %d: %d messages lost, unexpected or out of "
                     "order",
                     round, atomic_load(&f.bad));
    }
}

/* ---- Mailbox depth as another thread reads it ------------------------------------------- */

Test(send_copy, depth_read_mid_pop_is_floored_not_wrapped)
{
    /* Popped read newer than pushed (a push and its pop between the two loads): 0, not 4e9. */
    _Atomic uint32_t pushed = 5, popped = 6;
    cr_assert_eq(actor__depth(&pushed, &popped), 0);
    /* Counters that wrapped still give the right difference. */
    atomic_store(&pushed, 2);
    atomic_store(&popped, UINT32_MAX - 1);
    cr_assert_eq(actor__depth(&pushed, &popped), 4);
    atomic_store(&pushed, 100);
    atomic_store(&popped, 40);
    cr_assert_eq(actor__depth(&pushed, &popped), 60);
}
