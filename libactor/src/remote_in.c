/*
 * remote_in.c: the I/O thread's side of the distribution. It posts what actors queued, keeps
 * the bonds (links, monitors, spawn requests) between local actors and each peer's actors,
 * delivers what peers send, and turns a peer's going down into noconnection signals.
 *
 *   out_item --> bonds_out --> dist_node_post           dist frame --> bonds_in --> mailbox
 *
 *   peer not up when something is posted: the connect timer starts
 *     on_node_up:   timer stopped, NODEUP to the node watchers
 *     on_node_down, or the timer fires first (unreachable):
 *       every bond with the peer fires: links get an exit, monitors a DOWN (noconnection),
 *       remote monitors of local actors are dropped, spawn requests fail (ACTOR_ENOTCONN)
 *
 * A bond that outlives its link or monitor (a race with an unlink, say) fires into nothing:
 * the actor ignores an exit from an actor it is not linked to and a DOWN it does not expect.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define UNKNOWN_LOGGED_MAX 256 /* type names logged once each; past this many, no more */

struct unknown_type {
    struct unknown_type *next;
    char name[];
};

/* ---- Peers and bonds ------------------------------------------------------------------------- */

static void connect_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct rpeer *peer_get(struct actor_remote *r, int index)
{
    struct rpeer *p;

    if (index <= 0 || (uint32_t)index >= NODES_MAX)
        return NULL;
    if ((uint32_t)index >= r->npeers) {
        uint32_t n = r->npeers ? r->npeers : 16;
        while (n <= (uint32_t)index)
            n *= 2;
        struct rpeer **v = realloc(r->peers, n * sizeof(*v));
        if (v == NULL)
            return NULL;
        memset(v + r->npeers, 0, (n - r->npeers) * sizeof(*v));
        r->peers = v;
        r->npeers = n;
    }
    p = r->peers[index];
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL)
            return NULL;
        p->r = r;
        p->index = (uint32_t)index;
        ev_timer_init(&p->connect, connect_cb, r->connect_timeout, 0.);
        r->peers[index] = p;
    }
    return p;
}

void actor__remote_peers_free(struct actor_remote *r)
{
    for (uint32_t i = 0; i < r->npeers; i++) {
        if (r->peers[i] == NULL)
            continue;
        ev_timer_stop(r->loop, &r->peers[i]->connect);
        free(r->peers[i]->bonds);
        free(r->peers[i]);
    }
    free(r->peers);
    r->peers = NULL;
    r->npeers = 0;
    while (r->unknown != NULL) {
        struct unknown_type *u = r->unknown;
        r->unknown = u->next;
        free(u);
    }
}

static void bond_add(struct rpeer *p, int kind, struct dist_pid local, struct dist_pid remote,
                     uint64_t ref, unsigned flags)
{
    if (p == NULL)
        return;
    for (size_t i = 0; kind == BOND_LINK && i < p->n; i++) {
        if (p->bonds[i].kind == BOND_LINK && dist_pid_eq(p->bonds[i].local, local) &&
            dist_pid_eq(p->bonds[i].remote, remote))
            return; /* linked from both sides: one link */
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        struct bond *v = realloc(p->bonds, cap * sizeof(*v));
        if (v == NULL)
            return;
        p->bonds = v;
        p->cap = cap;
    }
    p->bonds[p->n++] = (struct bond){kind, flags, local, remote, ref};
}

/*
 * Remove the bond of @kind between @local and @remote (any remote when it is none) with @ref
 * (any for links). Returns 1 with *out set if there was one.
 */
static int bond_del(struct rpeer *p, int kind, struct dist_pid local, struct dist_pid remote,
                    uint64_t ref, struct bond *out)
{
    for (size_t i = 0; p != NULL && i < p->n; i++) {
        struct bond *b = &p->bonds[i];
        if (b->kind != kind || !dist_pid_eq(b->local, local) ||
            (!dist_pid_is_none(remote) && !dist_pid_eq(b->remote, remote)) ||
            (kind != BOND_LINK && b->ref != ref))
            continue;
        if (out != NULL)
            *out = *b;
        *b = p->bonds[--p->n];
        return 1;
    }
    return 0;
}

/* The peer's node is gone: every bond with it fires, as Erlang's noconnection. */
static void bonds_fire(struct actor_remote *r, struct rpeer *p)
{
    struct actor_system *sys = r->sys;
    struct bond *v = p->bonds;
    size_t n = p->n;

    p->bonds = NULL;
    p->n = p->cap = 0;
    for (size_t i = 0; i < n; i++) {
        struct bond *b = &v[i];
        switch (b->kind) {
        case BOND_LINK:
            actor__signal(sys, b->local, ENV_LINK_EXIT, b->remote, ACTOR_NOCONNECTION, 0);
            break;
        case BOND_MON:
            actor__signal(sys, b->local, ENV_DOWN, b->remote, ACTOR_NOCONNECTION, b->ref);
            break;
        case BOND_RMON:
            actor__signal(sys, b->local, ENV_DEMONITOR, b->remote, 0, b->ref);
            break;
        case BOND_SPAWN:
            actor__signal(sys, b->local, ENV_SPAWN_REPLY, DIST_PID_NONE, ACTOR_ENOTCONN, b->ref);
            break;
        }
    }
    free(v);
}

/* ---- Node events ----------------------------------------------------------------------------- */

static void watchers_set(struct actor_remote *r, struct dist_pid pid, int on)
{
    for (size_t i = 0; i < r->nwatchers; i++) {
        if (dist_pid_eq(r->watchers[i], pid)) {
            if (!on)
                r->watchers[i] = r->watchers[--r->nwatchers];
            return;
        }
    }
    if (!on)
        return;
    if (r->nwatchers == r->capwatchers) {
        size_t cap = r->capwatchers ? r->capwatchers * 2 : 4;
        struct dist_pid *v = realloc(r->watchers, cap * sizeof(*v));
        if (v == NULL)
            return;
        r->watchers = v;
        r->capwatchers = cap;
    }
    r->watchers[r->nwatchers++] = pid;
}

/* Tell every node watcher; one that is gone stops watching. */
static void nodes_notify(struct actor_remote *r, uint32_t index, int up, int reason)
{
    for (size_t i = 0; i < r->nwatchers;) {
        struct envelope *env = actor__env_new(r->sys, ENV_NODE, DIST_PID_NONE);
        if (env == NULL)
            return;
        env->ref = index;
        env->tag = (uint64_t)up;
        env->reason = reason;
        if (actor__deliver(r->sys, r->watchers[i], env, 0) == 0) {
            i++;
            continue;
        }
        actor__env_free(env);
        r->watchers[i] = r->watchers[--r->nwatchers];
    }
}

static void connect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rpeer *p = (struct rpeer *)((char *)w - offsetof(struct rpeer, connect));

    if (p->up)
        return;
    actor__remote_log(p->r, 1, "node %s unreachable: not connected within %.1f s",
                      dist_node_name_of(p->r->node, p->index), p->r->connect_timeout);
    bonds_fire(p->r, p);
}

void actor__remote_on_up(struct dist_node *node, const char *name, void *user_data)
{
    struct actor_remote *r = user_data;
    int index = dist_node_intern(node, name);
    struct rpeer *p = peer_get(r, index);

    if (p == NULL)
        return;
    actor__remote_publish(r, index);
    p->up = 1;
    ev_timer_stop(r->loop, &p->connect);
    if (atomic_load_explicit(&r->running, memory_order_acquire))
        nodes_notify(r, p->index, 1, 0);
}

void actor__remote_on_down(struct dist_node *node, const char *name, int reason, void *user_data)
{
    struct actor_remote *r = user_data;
    int index = dist_node_intern(node, name);
    struct rpeer *p = peer_get(r, index);
    int was_up;

    if (p == NULL)
        return;
    actor__remote_publish(r, index);
    was_up = p->up;
    p->up = 0;
    ev_timer_stop(r->loop, &p->connect);
    if (!atomic_load_explicit(&r->running, memory_order_acquire))
        return;
    bonds_fire(r, p);
    if (was_up)
        nodes_notify(r, p->index, 0, reason);
}

/* ---- Out ------------------------------------------------------------------------------------- */

static struct dist_ref ref_out(struct actor_remote *r, uint64_t ref)
{
    return (struct dist_ref){0, r->creation, {(uint32_t)ref, (uint32_t)(ref >> 32), 0}};
}

static uint64_t ref_in(const struct dist_ref *ref)
{
    return ref->n[0] | (uint64_t)ref->n[1] << 32;
}

/* Remember the bonds an outgoing message makes or ends. */
static void bonds_out(struct rpeer *p, const struct out_item *it)
{
    switch (it->kind) {
    case DIST_MSG_LINK:
        bond_add(p, BOND_LINK, it->from, it->to, 0, 0);
        break;
    case DIST_MSG_UNLINK:
        bond_del(p, BOND_LINK, it->from, it->to, 0, NULL);
        break;
    case DIST_MSG_EXIT:
        if (it->flags & DIST_EXIT_LINK) /* the local end died: the link is gone */
            bond_del(p, BOND_LINK, it->from, it->to, 0, NULL);
        break;
    case DIST_MSG_MONITOR:
        bond_add(p, BOND_MON, it->from, it->to, it->ref, 0);
        break;
    case DIST_MSG_DEMONITOR:
        bond_del(p, BOND_MON, it->from, it->to, it->ref, NULL);
        break;
    case DIST_MSG_DOWN:
        bond_del(p, BOND_RMON, it->from, it->to, it->ref, NULL);
        break;
    case DIST_MSG_SPAWN_REQUEST:
        bond_add(p, BOND_SPAWN, it->from, DIST_PID_NONE, it->ref, it->flags);
        break;
    }
}

static void spawn_in(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m);

/* An out_item as a dist message. */
static void msg_of_item(struct actor_remote *r, const struct out_item *it, struct dist_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->kind = it->kind;
    m->from = it->from;
    m->to = it->to;
    m->type = it->type;
    m->payload = it->data;
    m->len = it->len;
    m->send_kind = it->send_kind;
    m->reason = it->reason;
    m->flags = it->flags;
    if (it->kind == DIST_MSG_SPAWN_REQUEST) {
        m->behaviour = it->to_name;
        m->req_id = it->ref;
    } else {
        m->to_name = it->to_name;
        if (it->ref != 0)
            m->ref = ref_out(r, it->ref);
    }
}

void actor__remote_out(struct actor_remote *r, struct out_item *it)
{
    struct dist_msg m;
    struct rpeer *p;
    int index, rc;

    if (it->kind == OUT_WATCH_NODES) {
        watchers_set(r, it->from, (int)it->flags);
        return;
    }
    index = it->to_node != NULL ? dist_node_intern(r->node, it->to_node) : (int)it->to.node;
    msg_of_item(r, it, &m);
    if (index == 0 && it->kind == DIST_MSG_SPAWN_REQUEST) {
        spawn_in(r, NULL, &m); /* a spawn "remote" on this very node */
        return;
    }
    p = peer_get(r, index);
    rc =
        p != NULL ? dist_node_post(r->node, dist_node_name_of(r->node, p->index), &m) : DIST_EINVAL;
    if (rc != 0) {
        atomic_fetch_add(&r->dropped, 1);
        actor__remote_log(r, 1, "message to node %s dropped: %s",
                          p != NULL ? dist_node_name_of(r->node, p->index) : "(bad node)",
                          dist_strerror(rc));
        if (it->kind == DIST_MSG_SPAWN_REQUEST)
            actor__signal(r->sys, it->from, ENV_SPAWN_REPLY, DIST_PID_NONE,
                          rc == DIST_EBUSY ? ACTOR_EBUSY : ACTOR_ENOTCONN, it->ref);
        if (p == NULL || it->kind == DIST_MSG_SPAWN_REQUEST)
            return;
    } else {
        atomic_fetch_add_explicit(&r->sent, 1, memory_order_relaxed);
    }
    actor__remote_publish(r, index);
    bonds_out(p, it);
    if (!p->up && !ev_is_active(&p->connect))
        ev_timer_start(r->loop, &p->connect);
}

/* ---- In -------------------------------------------------------------------------------------- */

/* A message of a type this node does not know: dropped, counted, logged once per type. */
static void unknown_type(struct actor_remote *r, const char *type, const char *from_node)
{
    struct unknown_type *u;
    size_t len = strlen(type);

    atomic_fetch_add(&r->unknown_types, 1);
    for (u = r->unknown; u != NULL; u = u->next) {
        if (strcmp(u->name, type) == 0)
            return;
    }
    if (r->nunknown >= UNKNOWN_LOGGED_MAX)
        return;
    actor__remote_log(r, 1, "dropped a message of unknown type \"%.128s\" from %s", type,
                      from_node);
    u = malloc(sizeof(*u) + len + 1);
    if (u == NULL)
        return;
    memcpy(u->name, type, len + 1);
    u->next = r->unknown;
    r->unknown = u;
    r->nunknown++;
}

/* Unpack @len bytes at @data as @type into *out (NULL for none). 0, or ACTOR_ETYPE. */
static int unpack(const struct actor_type *type, const void *data, size_t len, void **out)
{
    const ProtobufCMessageDescriptor *desc = actor_type_descriptor(type);

    *out = NULL;
    if (desc == NULL) {
        if (len == 0)
            return 0;
        *out = malloc(len);
        if (*out == NULL)
            return ACTOR_ENOMEM;
        memcpy(*out, data, len);
        return 0;
    }
    *out = protobuf_c_message_unpack(desc, NULL, len, data);
    return *out != NULL ? 0 : ACTOR_ETYPE;
}

static void send_in(struct actor_remote *r, const struct dist_msg *m, const char *from_node)
{
    static const int kinds[] = {ENV_USER, ENV_CALL, ENV_REPLY};
    const struct actor_type *type = actor_type_find(m->type);
    struct dist_pid to = m->to;
    void *payload;

    if (type == NULL) {
        unknown_type(r, m->type, from_node);
        return;
    }
    if (unpack(type, m->payload, m->len, &payload) != 0) {
        atomic_fetch_add(&r->bad_payloads, 1);
        actor__remote_log(r, 1, "dropped a message of type %s from %s: it does not unpack", m->type,
                          from_node);
        return;
    }
    if (m->to_name != NULL && actor_whereis(r->sys, m->to_name, &to) != 0)
        to = DIST_PID_NONE;
    if (to.node != 0 || m->send_kind < 0 || m->send_kind > 2 ||
        actor__post(r->sys, to, kinds[m->send_kind], m->from, ref_in(&m->ref), type, payload,
                    actor_type_descriptor(type) == NULL ? m->len : 0,
                    m->send_kind != DIST_SEND_KIND_REPLY) != 0) {
        actor_payload_free(type, payload);
        atomic_fetch_add(&r->undeliverable, 1);
    }
}

/*
 * Answer a link or monitor of a process that is not here, as Erlang answers: noproc. What
 * the process queued before it ended goes first: its messages come before its DOWN or exit.
 */
static void noproc_back(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m)
{
    struct dist_msg back = {.from = m->to, .to = m->from, .reason = ACTOR_NOPROC};

    if (dist_pid_is_none(m->to))
        return;
    actor__remote_drain(r);
    back.kind = m->kind == DIST_MSG_LINK ? DIST_MSG_EXIT : DIST_MSG_DOWN;
    back.flags = DIST_EXIT_LINK;
    back.ref = m->ref;
    dist_node_post(r->node, dist_node_name_of(r->node, p->index), &back);
}

/* Links, unlinks and exits from a remote actor to a local one. */
static void link_in(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m)
{
    struct actor_system *sys = r->sys;

    switch (m->kind) {
    case DIST_MSG_LINK:
        if (actor__signal(sys, m->to, ENV_LINK, m->from, 0, 0) == 0)
            bond_add(p, BOND_LINK, m->to, m->from, 0, 0);
        else
            noproc_back(r, p, m);
        break;
    case DIST_MSG_UNLINK:
        bond_del(p, BOND_LINK, m->to, m->from, 0, NULL);
        actor__signal(sys, m->to, ENV_UNLINK, m->from, 0, 0);
        break;
    case DIST_MSG_EXIT:
        if (m->flags & DIST_EXIT_LINK) {
            bond_del(p, BOND_LINK, m->to, m->from, 0, NULL);
            actor__signal(sys, m->to, ENV_LINK_EXIT, m->from, m->reason, 0);
        } else {
            actor__exit_signal(sys, m->to, m->from, m->reason);
        }
        break;
    }
}

/* Monitors, demonitors and DOWNs between a remote actor and a local one. */
static void monitor_in(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m)
{
    struct actor_system *sys = r->sys;
    uint64_t ref = ref_in(&m->ref);
    struct dist_pid to = m->to;

    if (m->to_name != NULL && actor_whereis(sys, m->to_name, &to) != 0)
        return;
    switch (m->kind) {
    case DIST_MSG_MONITOR:
        if (actor__signal(sys, to, ENV_MONITOR, m->from, 0, ref) == 0)
            bond_add(p, BOND_RMON, to, m->from, ref, 0);
        else
            noproc_back(r, p, m);
        break;
    case DIST_MSG_DEMONITOR:
        bond_del(p, BOND_RMON, to, m->from, ref, NULL);
        actor__signal(sys, to, ENV_DEMONITOR, m->from, 0, ref);
        break;
    case DIST_MSG_DOWN:
        bond_del(p, BOND_MON, to, m->from, ref, NULL);
        actor__signal(sys, to, ENV_DOWN, m->from, m->reason, ref);
        break;
    }
}

/* Answer a spawn request: locally for a requester on this node, else over the wire. */
static void spawn_reply(struct actor_remote *r, struct rpeer *p, const struct dist_msg *req,
                        struct dist_pid pid, int err)
{
    /* The new actor's lane: its reply goes out before anything the actor itself sends. */
    struct dist_msg m = {.kind = DIST_MSG_SPAWN_REPLY,
                         .from = pid,
                         .to = req->from,
                         .req_id = req->req_id,
                         .pid = pid,
                         .error = err};

    if (p == NULL)
        actor__signal(r->sys, req->from, ENV_SPAWN_REPLY, pid, err, req->req_id);
    else
        dist_node_post(r->node, dist_node_name_of(r->node, p->index), &m);
}

/* Start the spawnable a request names, with the link or monitor it asks for. */
static void spawn_in(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m)
{
    struct actor_system *sys = r->sys;
    const struct actor_behaviour *b = NULL;
    const struct actor_type *t = NULL;
    struct dist_pid pid = DIST_PID_NONE;
    void *arg = NULL;
    int err = actor__spawnable_find(sys, m->behaviour, &b, &t);

    if (err == 0 && strcmp(actor_type_name(t), m->type) != 0)
        err = ACTOR_ETYPE;
    if (err == 0)
        err = unpack(t, m->payload, m->len, &arg);
    if (err == 0 && b->init == NULL) {
        actor_payload_free(t, arg); /* nobody would take it */
        arg = NULL;
    }
    if (err == 0) {
        err = actor_spawn(sys, NULL, b, arg, NULL, &pid);
        if (err != 0)
            actor_payload_free(t, arg);
    }
    /* Pushed before the new actor can have ended: a quick death reports its real reason. */
    if (err == 0 && (m->flags & ACTOR_SPAWN_LINK) &&
        actor__signal(sys, pid, ENV_LINK, m->from, 0, 0) == 0)
        bond_add(p, BOND_LINK, pid, m->from, 0, 0);
    if (err == 0 && (m->flags & ACTOR_SPAWN_MONITOR) &&
        actor__signal(sys, pid, ENV_MONITOR, m->from, 0, m->req_id) == 0)
        bond_add(p, BOND_RMON, pid, m->from, m->req_id, 0);
    spawn_reply(r, p, m, pid, err);
}

static void spawn_reply_in(struct actor_remote *r, struct rpeer *p, const struct dist_msg *m)
{
    struct bond b;

    if (bond_del(p, BOND_SPAWN, m->to, DIST_PID_NONE, m->req_id, &b) && m->error == 0) {
        if (b.flags & ACTOR_SPAWN_LINK)
            bond_add(p, BOND_LINK, m->to, m->pid, 0, 0);
        if (b.flags & ACTOR_SPAWN_MONITOR)
            bond_add(p, BOND_MON, m->to, m->pid, m->req_id, 0);
    }
    actor__signal(r->sys, m->to, ENV_SPAWN_REPLY, m->pid, m->error, m->req_id);
}

void actor__remote_on_message(struct dist_node *node, const struct dist_msg *m,
                              const char *from_node, void *user_data)
{
    struct actor_remote *r = user_data;
    struct rpeer *p = peer_get(r, dist_node_intern(node, from_node));

    if (p == NULL || !atomic_load_explicit(&r->running, memory_order_acquire))
        return;
    atomic_fetch_add_explicit(&r->received, 1, memory_order_relaxed);
    actor__remote_publish(r, (int)m->from.node);
    actor__remote_publish(r, (int)m->pid.node);
    /* Only actors of this node are reached from outside: nothing is forwarded. */
    if (m->to.node != 0) {
        atomic_fetch_add(&r->undeliverable, 1);
        return;
    }
    switch (m->kind) {
    case DIST_MSG_SEND:
        send_in(r, m, from_node);
        break;
    case DIST_MSG_LINK:
    case DIST_MSG_UNLINK:
    case DIST_MSG_EXIT:
        link_in(r, p, m);
        break;
    case DIST_MSG_MONITOR:
    case DIST_MSG_DEMONITOR:
    case DIST_MSG_DOWN:
        monitor_in(r, p, m);
        break;
    case DIST_MSG_SPAWN_REQUEST:
        spawn_in(r, p, m);
        break;
    case DIST_MSG_SPAWN_REPLY:
        spawn_reply_in(r, p, m);
        break;
    }
}
