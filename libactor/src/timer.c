/*
 * timer.c: an actor's timers, as ev_timers on its home scheduler's loop. They fire on that
 * thread between dispatches, turn into envelopes, and die with their actor.
 *
 * A tag timer that fires stays listed (marked fired) until its ACTOR_MSG_TIMER is dequeued,
 * so a cancel in between still stops the delivery.
 */
#include <stdlib.h>

#include "internal.h"

enum { TIMER_TAG, TIMER_SEND };

struct timer {
    ev_timer w;
    struct timer *next;
    struct actor *owner;
    uint64_t id;
    uint64_t tag;
    int kind;
    int fired;
    struct dist_pid to;
    const struct actor_type *type;
    void *payload;
    size_t size;
};

static void timer_unlink(struct actor *a, struct timer *t)
{
    struct timer **pp = &a->ext->timers;

    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
}

static void timer_free(struct actor *a, struct timer *t)
{
    ev_timer_stop(a->home->loop, &t->w);
    if (t->payload != NULL)
        actor_payload_free(t->type, t->payload);
    free(t);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct timer *t = (struct timer *)w;
    struct actor *a = t->owner;
    struct actor_system *sys = a->home->sys;
    struct dist_pid me = actor__pid(sys, a);
    struct envelope *env = actor__env_new(sys, t->kind == TIMER_TAG ? ENV_TIMER : ENV_USER, me);

    if (env == NULL)
        return;
    if (t->kind == TIMER_TAG) {
        env->ref = t->id;
        env->tag = t->tag;
        if (t->w.repeat <= 0.)
            t->fired = 1;
        if (actor__deliver(sys, me, env, 0) != 0)
            actor__env_free(env);
        return;
    }
    env->type = t->type;
    env->payload = t->payload;
    env->size = t->size;
    t->payload = NULL;
    if (actor__deliver(sys, t->to, env, 1) != 0)
        actor__env_free(env);
    timer_unlink(a, t);
    timer_free(a, t);
}

static int timer_add(struct actor *self, double after, double repeat, struct timer **out)
{
    struct actor_ext *ext = actor__ext(self);
    struct timer *t;

    if (after < 0. || repeat < 0.)
        return ACTOR_EINVAL;
    t = ext != NULL ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL)
        return ACTOR_ENOMEM;
    t->owner = self;
    t->id = actor__ref_new(self->home->sys);
    ev_timer_init(&t->w, timer_cb, after, repeat);
    t->next = ext->timers;
    ext->timers = t;
    ev_timer_start(self->home->loop, &t->w);
    *out = t;
    return 0;
}

int actor_timer_start(struct actor *self, double after, double repeat, uint64_t tag, uint64_t *id)
{
    struct timer *t;
    int rc = timer_add(self, after, repeat, &t);

    if (rc != 0)
        return rc;
    t->kind = TIMER_TAG;
    t->tag = tag;
    if (id != NULL)
        *id = t->id;
    return 0;
}

int actor_send_after(struct actor *self, double after, struct dist_pid to,
                     const struct actor_type *type, void *payload, size_t size, uint64_t *id)
{
    struct timer *t;
    int rc;

    if (type == NULL)
        return ACTOR_EINVAL;
    rc = timer_add(self, after, 0., &t);
    if (rc != 0)
        return rc;
    t->kind = TIMER_SEND;
    t->to = to;
    t->type = type;
    t->payload = payload;
    t->size = size;
    if (id != NULL)
        *id = t->id;
    return 0;
}

static struct timer *timer_find(struct actor *a, uint64_t id)
{
    struct timer *t = a->ext != NULL ? a->ext->timers : NULL;

    while (t != NULL && t->id != id)
        t = t->next;
    return t;
}

int actor_timer_cancel(struct actor *self, uint64_t id)
{
    struct timer *t = timer_find(self, id);

    if (t == NULL)
        return ACTOR_EINVAL;
    timer_unlink(self, t);
    timer_free(self, t);
    return 0;
}

int actor__timer_fired(struct actor *a, uint64_t id)
{
    struct timer *t = timer_find(a, id);

    if (t == NULL)
        return 0;
    if (t->fired) {
        timer_unlink(a, t);
        timer_free(a, t);
    }
    return 1;
}

void actor__timers_cancel_all(struct actor *a)
{
    while (a->ext != NULL && a->ext->timers != NULL) {
        struct timer *t = a->ext->timers;
        a->ext->timers = t->next;
        timer_free(a, t);
    }
}
