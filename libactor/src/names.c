/*
 * names.c: registered names, one table per system behind one lock. Names are not on the hot
 * path of a send; a send by name looks the name up, then sends to the PID.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct name_entry {
    struct name_entry *next;
    struct dist_pid pid;
    struct actor *actor;
    char name[];
};

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s != '\0') {
        h ^= (uint8_t)*s++;
        h *= 16777619u;
    }
    return h;
}

/* The slot of @name in its chain (where it is, or where it would go). Under names_lock. */
static struct name_entry **find(struct actor_system *sys, const char *name)
{
    struct name_entry **pp;

    if (sys->names == NULL)
        return NULL;
    pp = &sys->names[name_hash(name) & sys->names_mask];
    while (*pp != NULL && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int grow(struct actor_system *sys)
{
    size_t size = sys->names == NULL ? 64 : (sys->names_mask + 1) * 2;
    struct name_entry **t = calloc(size, sizeof(*t));

    if (t == NULL)
        return ACTOR_ENOMEM;
    for (size_t i = 0; sys->names != NULL && i <= sys->names_mask; i++) {
        struct name_entry *e = sys->names[i];
        while (e != NULL) {
            struct name_entry *next = e->next;
            size_t b = name_hash(e->name) & (size - 1);
            e->next = t[b];
            t[b] = e;
            e = next;
        }
    }
    free(sys->names);
    sys->names = t;
    sys->names_mask = size - 1;
    return 0;
}

int actor__names_insert(struct actor_system *sys, const char *name, struct actor *a,
                        struct dist_pid pid)
{
    size_t len = strlen(name);
    struct name_entry **pp, *e;
    int rc = 0;

    if (len == 0)
        return ACTOR_EINVAL;
    pthread_mutex_lock(&sys->names_lock);
    if (a->name != NULL)
        rc = ACTOR_ENAMETAKEN; /* one name per actor, as in Erlang */
    else if (sys->names == NULL || sys->names_count >= sys->names_mask)
        rc = grow(sys);
    if (rc == 0) {
        pp = find(sys, name);
        e = *pp == NULL ? malloc(sizeof(*e) + len + 1) : NULL;
        if (*pp != NULL) {
            rc = ACTOR_ENAMETAKEN;
        } else if (e == NULL) {
            rc = ACTOR_ENOMEM;
        } else {
            memcpy(e->name, name, len + 1);
            e->pid = pid;
            e->actor = a;
            e->next = NULL;
            *pp = e;
            a->name = e->name;
            sys->names_count++;
        }
    }
    pthread_mutex_unlock(&sys->names_lock);
    return rc;
}

int actor_register(struct actor_system *sys, const char *name, struct dist_pid pid)
{
    struct actor *a;

    if (sys == NULL || name == NULL)
        return ACTOR_EINVAL;
    a = actor__lookup(sys, pid);
    if (a == NULL || (atomic_load(&a->gate) & GATE_CLOSED))
        return ACTOR_ENOPROC;
    return actor__names_insert(sys, name, a, pid);
}

int actor_whereis(struct actor_system *sys, const char *name, struct dist_pid *pid)
{
    struct name_entry **pp;
    int rc = ACTOR_ENONAME;

    if (sys == NULL || name == NULL)
        return ACTOR_EINVAL;
    pthread_mutex_lock(&sys->names_lock);
    pp = find(sys, name);
    if (pp != NULL && *pp != NULL) {
        *pid = (*pp)->pid;
        rc = 0;
    }
    pthread_mutex_unlock(&sys->names_lock);
    return rc;
}

static void unlink_entry(struct actor_system *sys, struct name_entry **pp)
{
    struct name_entry *e = *pp;

    *pp = e->next;
    e->actor->name = NULL;
    sys->names_count--;
    free(e);
}

int actor_unregister(struct actor_system *sys, const char *name)
{
    struct name_entry **pp;
    int rc = ACTOR_ENONAME;

    if (sys == NULL || name == NULL)
        return ACTOR_EINVAL;
    pthread_mutex_lock(&sys->names_lock);
    pp = find(sys, name);
    if (pp != NULL && *pp != NULL) {
        unlink_entry(sys, pp);
        rc = 0;
    }
    pthread_mutex_unlock(&sys->names_lock);
    return rc;
}

void actor__names_release(struct actor_system *sys, struct actor *a)
{
    if (a->name == NULL)
        return;
    pthread_mutex_lock(&sys->names_lock);
    if (a->name != NULL) {
        struct name_entry **pp = find(sys, a->name);
        if (pp != NULL && *pp != NULL && (*pp)->actor == a)
            unlink_entry(sys, pp);
    }
    pthread_mutex_unlock(&sys->names_lock);
}

int actor_send_named(struct actor_system *sys, const char *name, const struct actor_type *type,
                     void *payload, size_t size)
{
    struct dist_pid pid;
    int rc = actor_whereis(sys, name, &pid);

    return rc != 0 ? rc : actor_send(sys, pid, type, payload, size);
}

void actor__names_free(struct actor_system *sys)
{
    for (size_t i = 0; sys->names != NULL && i <= sys->names_mask; i++) {
        struct name_entry *e = sys->names[i];
        while (e != NULL) {
            struct name_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(sys->names);
    sys->names = NULL;
}
