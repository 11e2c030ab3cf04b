/*
 * envelope.c: the envelopes that carry every message and signal, and their recycling.
 *
 * Each scheduler keeps a cache of free envelopes, so a send and its delivery cost no malloc()
 * in the steady state. An envelope remembers the scheduler that made it (its home) and goes
 * back there when it is freed, wherever that happens:
 *
 *   home scheduler:  env_new --> send --> ... --> env_free on home    --> home's cache
 *                                               \-> env_free elsewhere --> a batch per home
 *                                                        (64 at a time) --> home's returned stack
 *   home's env_new, cache empty: take the whole returned stack with one exchange
 *
 * Without the way back, a producer on one scheduler feeding consumers on another would
 * malloc() every envelope while the consumers' caches grew, and malloc would pay for the
 * cross-thread free() of each one. The returned stack is pushed by many threads and emptied
 * by one (whole, with an exchange), so it needs no ABA care. Threads that are not schedulers
 * use malloc() and free(), and hand a scheduler's envelope straight back to its stack.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ENV_CACHE_MAX (1u << 22) /* cached envelopes past this go back to malloc */
#define ENV_BATCH     64         /* envelopes gathered for another home before handing over */

/* Push the list @first..@last onto @home's returned stack, linked through their payload. */
static void returned_push(struct scheduler *home, struct envelope *first, struct envelope *last)
{
    struct envelope *top = atomic_load_explicit(&home->env_returned, memory_order_relaxed);

    do
        last->payload = top;
    while (!atomic_compare_exchange_weak_explicit(&home->env_returned, &top, first,
                                                  memory_order_release, memory_order_relaxed));
}

/*
 * Refill an empty cache with what other threads gave back. The list is not counted here:
 * walking it would touch every envelope now, one cache miss after another; env_cached stays
 * a lower bound until the next trim counts.
 */
static void cache_refill(struct scheduler *s)
{
    s->env_cache = atomic_exchange_explicit(&s->env_returned, NULL, memory_order_acquire);
}

struct envelope *actor__env_new(struct actor_system *sys, enum env_kind kind, struct dist_pid from)
{
    struct scheduler *s = actor__tls_sched;
    struct envelope *env;

    if (s != NULL && s->sys != sys)
        s = NULL; /* another system's thread: its envelopes stay in its own system */
    if (s != NULL && s->env_cache == NULL)
        cache_refill(s);
    if (s != NULL && s->env_cache != NULL) {
        env = s->env_cache;
        s->env_cache = env->payload;
        /* The next one may sit in another core's cache: start fetching it now. */
        __builtin_prefetch(s->env_cache, 1);
        if (s->env_cached > 0)
            s->env_cached--;
    } else {
        env = malloc(sizeof(*env));
        if (env == NULL)
            return NULL;
        env->home = s;
    }
    env->kind = (uint8_t)kind;
    env->flags = 0;
    env->reason = 0;
    env->from = from;
    env->type = NULL;
    env->payload = NULL;
    env->size = 0;
    return env;
}

static void batch_flush(struct scheduler *home, struct env_batch *b)
{
    if (b->n == 0)
        return;
    returned_push(home, b->first, b->last);
    b->first = b->last = NULL;
    b->n = 0;
}

void actor__env_free(struct envelope *env)
{
    struct scheduler *s = actor__tls_sched;
    struct scheduler *home = env->home;

    if (env->payload != NULL && !(env->flags & ENV_INLINE))
        actor_payload_free(env->type, env->payload);
    if (home == NULL) { /* made outside any scheduler: adopted by this one, if any */
        if (s == NULL || s->env_cached >= ENV_CACHE_MAX) {
            free(env);
            return;
        }
        env->home = home = s;
    }
    if (home == s) {
        if (s->env_cached >= ENV_CACHE_MAX) {
            free(env);
            return;
        }
        env->payload = s->env_cache;
        s->env_cache = env;
        s->env_cached++;
        return;
    }
    if (s == NULL || s->sys != home->sys) {
        returned_push(home, env, env);
        return;
    }
    struct env_batch *b = &s->env_out[home->index];
    env->payload = b->first;
    b->first = env;
    if (b->n++ == 0)
        b->last = env;
    if (b->n >= ENV_BATCH)
        batch_flush(home, b);
}

void actor__env_flush(struct scheduler *s)
{
    for (unsigned i = 0; i < s->sys->nsched; i++)
        batch_flush(&s->sys->scheds[i], &s->env_out[i]);
}

static void list_free(struct envelope *env)
{
    while (env != NULL) {
        struct envelope *next = env->payload;
        free(env);
        env = next;
    }
}

void actor__env_trim(struct scheduler *s)
{
    struct envelope *list = atomic_exchange_explicit(&s->env_returned, NULL, memory_order_acquire);
    struct envelope **link = &s->env_cache;
    unsigned kept = 0;

    while (list != NULL) { /* what came back joins the cache */
        struct envelope *next = list->payload;
        list->payload = s->env_cache;
        s->env_cache = list;
        list = next;
    }
    while (*link != NULL && kept < ENV_CACHE_KEEP) {
        link = (struct envelope **)&(*link)->payload;
        kept++;
    }
    list = *link;
    *link = NULL;
    s->env_cached = kept;
    list_free(list);
}

void actor__env_release_all(struct scheduler *s)
{
    list_free(s->env_cache);
    s->env_cache = NULL;
    s->env_cached = 0;
    list_free(atomic_exchange(&s->env_returned, NULL));
    for (unsigned i = 0; i < MAX_SCHEDULERS; i++) {
        list_free(s->env_out[i].first);
        s->env_out[i] = (struct env_batch){0};
    }
}

int actor_send_copy(struct actor_system *sys, struct dist_pid to, const void *data, size_t size)
{
    struct envelope *env;
    void *copy;
    int rc;

    if (sys == NULL || (data == NULL && size > 0))
        return ACTOR_EINVAL;
    if (size > ACTOR_INLINE_MAX) {
        copy = malloc(size);
        if (copy == NULL)
            return ACTOR_ENOMEM;
        memcpy(copy, data, size);
        rc = actor_send(sys, to, actor_type_raw(), copy, size);
        if (rc != 0)
            free(copy);
        return rc;
    }
    env = actor__env_new(sys, ENV_USER, actor__current_pid(sys));
    if (env == NULL)
        return ACTOR_ENOMEM;
    env->type = actor_type_raw();
    env->size = size;
    if (size > 0) {
        memcpy(env->data, data, size);
        env->payload = env->data;
        env->flags = ENV_INLINE;
    }
    rc = actor__deliver(sys, to, env, 1);
    if (rc != 0)
        actor__env_free(env);
    return rc;
}
