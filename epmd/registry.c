/*
 * registry.c: the names epmd knows, Erlang's and leased ones in one name space.
 *
 *            register                 unregister / stop / expiry
 *   (none) ------------> ACTIVE ----------------------------------> OLD (remembered)
 *                          ^                                         |
 *                          +------------- register again ------------+
 *
 * Every entry is in one hash table by name, and in the active or the old list, newest first.
 * NAMES walks the active list; the old list keeps the creation counter of names that left,
 * up to max_old of them, the oldest forgotten first. Nothing here does I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "epmd.h"

struct node_list {
    struct epmd_node *head;
    struct epmd_node *tail;
    size_t count;
};

struct epmd_registry {
    struct epmd_node **table;
    size_t mask; /* table size - 1; the size is a power of two */
    size_t entries;
    struct node_list active;
    struct node_list old;
    size_t max_old;
    size_t leased;
    epmd_seed_cb seed;
    void *seed_data;
    epmd_event_cb event;
    void *event_data;
};

#define INITIAL_BUCKETS 1024

static uint32_t name_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 16777619u;
    }
    return h;
}

static uint32_t time_seed(void *user_data)
{
    return (uint32_t)time(NULL);
}

struct epmd_registry *epmd_registry_new(size_t max_old, epmd_seed_cb seed, void *seed_data)
{
    struct epmd_registry *reg = calloc(1, sizeof(*reg));

    if (reg == NULL)
        return NULL;
    reg->table = calloc(INITIAL_BUCKETS, sizeof(*reg->table));
    if (reg->table == NULL) {
        free(reg);
        return NULL;
    }
    reg->mask = INITIAL_BUCKETS - 1;
    reg->max_old = max_old;
    reg->seed = seed != NULL ? seed : time_seed;
    reg->seed_data = seed_data;
    return reg;
}

static void list_free(struct node_list *l)
{
    struct epmd_node *n = l->head;

    while (n != NULL) {
        struct epmd_node *next = n->next;
        free(n->data);
        free(n);
        n = next;
    }
}

void epmd_registry_free(struct epmd_registry *reg)
{
    if (reg == NULL)
        return;
    list_free(&reg->active);
    list_free(&reg->old);
    free(reg->table);
    free(reg);
}

void epmd_registry_on_event(struct epmd_registry *reg, epmd_event_cb cb, void *user_data)
{
    reg->event = cb;
    reg->event_data = user_data;
}

/* ---- Lists and the hash table -------------------------------------------------------------- */

static void list_push(struct node_list *l, struct epmd_node *n)
{
    n->prev = NULL;
    n->next = l->head;
    if (l->head != NULL)
        l->head->prev = n;
    else
        l->tail = n;
    l->head = n;
    l->count++;
}

static void list_unlink(struct node_list *l, struct epmd_node *n)
{
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->count--;
}

static void table_grow(struct epmd_registry *reg)
{
    size_t size = (reg->mask + 1) * 2;
    struct epmd_node **table = calloc(size, sizeof(*table));

    if (table == NULL)
        return; /* keep the smaller table: slower chains, still correct */
    for (size_t i = 0; i <= reg->mask; i++) {
        struct epmd_node *n = reg->table[i];
        while (n != NULL) {
            struct epmd_node *next = n->hnext;
            n->hnext = table[n->hash & (size - 1)];
            table[n->hash & (size - 1)] = n;
            n = next;
        }
    }
    free(reg->table);
    reg->table = table;
    reg->mask = size - 1;
}

static void table_insert(struct epmd_registry *reg, struct epmd_node *n)
{
    if (reg->entries >= reg->mask + 1)
        table_grow(reg);
    n->hnext = reg->table[n->hash & reg->mask];
    reg->table[n->hash & reg->mask] = n;
    reg->entries++;
}

static void table_remove(struct epmd_registry *reg, struct epmd_node *n)
{
    struct epmd_node **pp = &reg->table[n->hash & reg->mask];

    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    reg->entries--;
}

struct epmd_node *epmd_registry_lookup(const struct epmd_registry *reg, const char *name,
                                       size_t len)
{
    uint32_t h = name_hash(name, len);

    for (struct epmd_node *n = reg->table[h & reg->mask]; n != NULL; n = n->hnext) {
        if (n->hash == h && n->name_len == len && memcmp(n->name, name, len) == 0)
            return n;
    }
    return NULL;
}

struct epmd_node *epmd_registry_find(const struct epmd_registry *reg, const char *name, size_t len)
{
    struct epmd_node *n = epmd_registry_lookup(reg, name, len);

    return n != NULL && (n->flags & EPMD_NODE_ACTIVE) ? n : NULL;
}

/* ---- Registration --------------------------------------------------------------------------- */

/*
 * The entry for a name about to become active: the remembered one, taken off the old list,
 * or a new one whose counter is seeded. NULL when out of memory.
 */
static struct epmd_node *node_claim(struct epmd_registry *reg, const char *name, size_t len)
{
    struct epmd_node *n = epmd_registry_lookup(reg, name, len);

    if (n != NULL) {
        list_unlink(&reg->old, n);
        return n;
    }
    n = calloc(1, sizeof(*n) + len + 1);
    if (n == NULL)
        return NULL;
    memcpy(n->name, name, len);
    n->name_len = len;
    n->hash = name_hash(name, len);
    n->cr = reg->seed(reg->seed_data);
    n->fd = -1;
    table_insert(reg, n);
    return n;
}

/* Give up a claimed entry that did not become active. */
static void node_unclaim(struct epmd_registry *reg, struct epmd_node *n)
{
    list_push(&reg->old, n);
}

static void node_forget(struct epmd_registry *reg, struct epmd_node *n)
{
    list_unlink(&reg->old, n);
    table_remove(reg, n);
    free(n->data);
    free(n);
}

/* Bump the counter the way Erlang does and derive the creation a node of high_version gets. */
static void node_new_creation(struct epmd_node *n, uint16_t high_version)
{
    n->cr++;
    if (n->cr < 4)
        n->cr = 4;
    n->creation = high_version >= 6 ? n->cr : n->cr % 3 + 1;
}

static void node_activate(struct epmd_registry *reg, struct epmd_node *n)
{
    n->flags |= EPMD_NODE_ACTIVE;
    list_push(&reg->active, n);
    if (n->flags & EPMD_NODE_LEASED)
        reg->leased++;
    if (reg->event != NULL)
        reg->event(DIST_EPMD_REGISTERED, n, reg->event_data);
}

/* Copy the registration's variable fields into one allocation owned by the node. */
static int node_set_data(struct epmd_node *n, const struct dist_epmd_node *info,
                         const uint8_t *token, size_t token_len,
                         const struct dist_epmd_metalist *meta)
{
    size_t meta_len = meta != NULL ? meta->meta_len : 0;
    size_t size = info->extra_len + token_len + meta_len;
    uint8_t *data = malloc(size > 0 ? size : 1);

    if (data == NULL)
        return -ENOMEM;
    if (info->extra_len > 0)
        memcpy(data, info->extra, info->extra_len);
    if (token_len > 0)
        memcpy(data + info->extra_len, token, token_len);
    if (meta_len > 0)
        memcpy(data + info->extra_len + token_len, meta->meta, meta_len);
    free(n->data);
    n->data = data;
    n->info = *info;
    n->info.name = n->name;
    n->info.name_len = n->name_len;
    n->info.extra = data;
    n->token = data + info->extra_len;
    n->token_len = token_len;
    n->meta.meta = data + info->extra_len + token_len;
    n->meta.meta_len = meta_len;
    n->meta.meta_count = meta != NULL ? meta->meta_count : 0;
    return 0;
}

struct epmd_node *epmd_registry_alive(struct epmd_registry *reg, const struct dist_epmd_node *in,
                                      void *owner, int fd, uint64_t now_ms, int *result)
{
    struct epmd_node *n;

    if (dist_epmd_name_check(in->name, in->name_len) != 0 || in->extra_len > DIST_EPMD_MAX_SYMLEN) {
        *result = DIST_EPMD_INVALID;
        return NULL;
    }
    n = epmd_registry_lookup(reg, in->name, in->name_len);
    if (n != NULL && (n->flags & EPMD_NODE_LEASED) && n->expires_ms <= now_ms)
        epmd_registry_remove(reg, n, DIST_EPMD_EXPIRED);
    else if (n != NULL && (n->flags & EPMD_NODE_ACTIVE)) {
        *result = DIST_EPMD_TAKEN;
        return NULL;
    }
    n = node_claim(reg, in->name, in->name_len);
    if (n == NULL || node_set_data(n, in, NULL, 0, NULL) != 0) {
        if (n != NULL)
            node_unclaim(reg, n);
        *result = -ENOMEM;
        return NULL;
    }
    node_new_creation(n, in->high_version);
    n->flags &= ~EPMD_NODE_LEASED;
    n->owner = owner;
    n->fd = fd;
    n->lease_ms = 0;
    node_activate(reg, n);
    *result = DIST_EPMD_OK;
    return n;
}

static uint32_t lease_clamp(uint32_t ms, uint32_t default_ms)
{
    if (ms == 0)
        ms = default_ms;
    if (ms < EPMD_LEASE_MIN_MS)
        return EPMD_LEASE_MIN_MS;
    return ms > EPMD_LEASE_MAX_MS ? EPMD_LEASE_MAX_MS : ms;
}

static int token_eq(const struct epmd_node *n, const uint8_t *token, size_t len)
{
    return n->token_len == len && memcmp(n->token, token, len) == 0;
}

/* Settle who holds a name before a lease takes it: 0 when it is free, or a result. */
static int lease_contest(struct epmd_registry *reg, const struct dist_epmd_lease *l,
                         uint64_t now_ms)
{
    struct epmd_node *n = epmd_registry_find(reg, l->node.name, l->node.name_len);

    if (n == NULL)
        return 0;
    if (!(n->flags & EPMD_NODE_LEASED))
        return DIST_EPMD_TAKEN;
    if (n->expires_ms <= now_ms) {
        epmd_registry_remove(reg, n, DIST_EPMD_EXPIRED);
        return 0;
    }
    if (!token_eq(n, l->token, l->token_len))
        return DIST_EPMD_TAKEN;
    /* Same owner: the old incarnation goes at once; the counter carries over. */
    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    return 0;
}

struct epmd_node *epmd_registry_lease(struct epmd_registry *reg, const struct dist_epmd_lease *l,
                                      uint32_t default_ms, uint64_t now_ms, int *result)
{
    struct epmd_node *n;
    int rc;

    if (dist_epmd_name_check(l->node.name, l->node.name_len) != 0 || l->token_len == 0 ||
        l->token_len > DIST_EPMD_MAX_TOKEN) {
        *result = DIST_EPMD_INVALID;
        return NULL;
    }
    rc = lease_contest(reg, l, now_ms);
    if (rc != 0) {
        *result = rc;
        return NULL;
    }
    n = node_claim(reg, l->node.name, l->node.name_len);
    if (n == NULL || node_set_data(n, &l->node, l->token, l->token_len, &l->meta) != 0) {
        if (n != NULL)
            node_unclaim(reg, n);
        *result = -ENOMEM;
        return NULL;
    }
    node_new_creation(n, 6);
    n->flags |= EPMD_NODE_LEASED;
    n->owner = NULL;
    n->fd = -1;
    n->lease_ms = lease_clamp(l->lease_ms, default_ms);
    n->expires_ms = now_ms + n->lease_ms;
    node_activate(reg, n);
    *result = DIST_EPMD_OK;
    return n;
}

/* The live lease on name held by token, or NULL with *result why not. */
static struct epmd_node *lease_owned(struct epmd_registry *reg, const uint8_t *token,
                                     size_t token_len, const char *name, size_t len,
                                     uint64_t now_ms, int *result)
{
    struct epmd_node *n = epmd_registry_find(reg, name, len);

    if (n != NULL && (n->flags & EPMD_NODE_LEASED) && n->expires_ms <= now_ms) {
        epmd_registry_remove(reg, n, DIST_EPMD_EXPIRED);
        n = NULL;
    }
    if (n == NULL) {
        *result = DIST_EPMD_NOTFOUND;
        return NULL;
    }
    if (!(n->flags & EPMD_NODE_LEASED) || !token_eq(n, token, token_len)) {
        *result = DIST_EPMD_DENIED;
        return NULL;
    }
    return n;
}

int epmd_registry_renew(struct epmd_registry *reg, const uint8_t *token, size_t token_len,
                        const char *name, size_t len, uint64_t now_ms, uint32_t *lease_ms)
{
    int result;
    struct epmd_node *n = lease_owned(reg, token, token_len, name, len, now_ms, &result);

    if (n == NULL)
        return result;
    n->expires_ms = now_ms + n->lease_ms;
    *lease_ms = n->lease_ms;
    return DIST_EPMD_OK;
}

int epmd_registry_unlease(struct epmd_registry *reg, const uint8_t *token, size_t token_len,
                          const char *name, size_t len, uint64_t now_ms)
{
    int result;
    struct epmd_node *n = lease_owned(reg, token, token_len, name, len, now_ms, &result);

    if (n == NULL)
        return result;
    epmd_registry_remove(reg, n, DIST_EPMD_UNREGISTERED);
    return DIST_EPMD_OK;
}

void epmd_registry_remove(struct epmd_registry *reg, struct epmd_node *n, int kind)
{
    if (!(n->flags & EPMD_NODE_ACTIVE))
        return;
    if (reg->event != NULL)
        reg->event(kind, n, reg->event_data);
    list_unlink(&reg->active, n);
    if (n->flags & EPMD_NODE_LEASED)
        reg->leased--;
    n->flags &= ~(EPMD_NODE_ACTIVE | EPMD_NODE_LEASED);
    n->owner = NULL;
    list_push(&reg->old, n);
    while (reg->old.count > reg->max_old)
        node_forget(reg, reg->old.tail);
}

size_t epmd_registry_sweep(struct epmd_registry *reg, uint64_t now_ms)
{
    size_t expired = 0;
    struct epmd_node *n = reg->active.head;

    while (n != NULL && reg->leased > 0) {
        struct epmd_node *next = n->next;
        if ((n->flags & EPMD_NODE_LEASED) && n->expires_ms <= now_ms) {
            epmd_registry_remove(reg, n, DIST_EPMD_EXPIRED);
            expired++;
        }
        n = next;
    }
    return expired;
}

struct epmd_node *epmd_registry_active(const struct epmd_registry *reg)
{
    return reg->active.head;
}

struct epmd_node *epmd_registry_old(const struct epmd_registry *reg)
{
    return reg->old.head;
}

struct epmd_node *epmd_registry_oldest(const struct epmd_registry *reg)
{
    return reg->old.tail;
}

size_t epmd_registry_count(const struct epmd_registry *reg)
{
    return reg->active.count;
}

size_t epmd_registry_old_count(const struct epmd_registry *reg)
{
    return reg->old.count;
}

size_t epmd_registry_leased_count(const struct epmd_registry *reg)
{
    return reg->leased;
}
