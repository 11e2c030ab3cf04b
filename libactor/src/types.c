/*
 * types.c: the process-wide message type registry, payload destructors, and the names of
 * libactor's error codes and exit reasons.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct actor_type {
    struct actor_type *next;
    const ProtobufCMessageDescriptor *desc; /* NULL: raw bytes */
    char name[];
};

static struct {
    pthread_mutex_t lock;
    struct actor_type *head;
} registry = {PTHREAD_MUTEX_INITIALIZER, NULL};

static struct actor_type raw_type = {NULL, NULL};

const struct actor_type *actor_type_raw(void)
{
    return &raw_type;
}

static const char RAW_NAME[] = "actor.Raw";

const char *actor_type_name(const struct actor_type *type)
{
    return type == &raw_type ? RAW_NAME : type->name;
}

const ProtobufCMessageDescriptor *actor_type_descriptor(const struct actor_type *type)
{
    return type->desc;
}

static struct actor_type *find_locked(const char *name)
{
    for (struct actor_type *t = registry.head; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}

const struct actor_type *actor_type_find(const char *name)
{
    struct actor_type *t;

    if (name == NULL)
        return NULL;
    if (strcmp(name, RAW_NAME) == 0)
        return &raw_type;
    pthread_mutex_lock(&registry.lock);
    t = find_locked(name);
    pthread_mutex_unlock(&registry.lock);
    return t;
}

int actor_type_register(const char *name, const ProtobufCMessageDescriptor *desc,
                        const struct actor_type **out)
{
    struct actor_type *t;
    size_t len;
    int rc = 0;

    if (name == NULL || desc == NULL || out == NULL || name[0] == '\0')
        return ACTOR_EINVAL;
    if (strcmp(name, RAW_NAME) == 0)
        return ACTOR_ETYPE; /* the raw type holds this name with no descriptor */
    len = strlen(name);
    pthread_mutex_lock(&registry.lock);
    t = find_locked(name);
    if (t != NULL && t->desc != desc) {
        rc = ACTOR_ETYPE;
    } else if (t == NULL) {
        t = malloc(sizeof(*t) + len + 1);
        if (t == NULL) {
            rc = ACTOR_ENOMEM;
        } else {
            memcpy(t->name, name, len + 1);
            t->desc = desc;
            t->next = registry.head;
            registry.head = t;
        }
    }
    pthread_mutex_unlock(&registry.lock);
    if (rc == 0)
        *out = t;
    return rc;
}

void actor_payload_free(const struct actor_type *type, void *payload)
{
    if (payload == NULL)
        return;
    if (type == NULL || type->desc == NULL)
        free(payload);
    else
        protobuf_c_message_free_unpacked(payload, NULL);
}

const char *actor_strerror(int err)
{
    switch (err) {
#define ACTOR_ERR_MSG_(name, value, msg)                                                           \
    case ACTOR_##name:                                                                             \
        return msg;
        ACTOR_ERR_MAP(ACTOR_ERR_MSG_)
#undef ACTOR_ERR_MSG_
    default:
        return dist_strerror(err);
    }
}

const char *actor_reason_name(int reason)
{
    switch (reason) {
    case ACTOR_NORMAL:
        return "normal";
    case ACTOR_KILL:
        return "kill";
    case ACTOR_KILLED:
        return "killed";
    case ACTOR_SHUTDOWN:
        return "shutdown";
    case ACTOR_NOPROC:
        return "noproc";
    case ACTOR_NOCONNECTION:
        return "noconnection";
    default:
        return reason < 0 && strcmp(actor_strerror(reason), "unknown error") != 0
                   ? actor_strerror(reason)
                   : "custom";
    }
}
