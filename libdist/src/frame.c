/*
 * frame.c: the wire codec. Plain frames to and from protobuf through protobuf-c, and Sends, most
 * of the traffic, packed and read by hand. This is the only file that includes dist.pb-c.h;
 * length prefixes, the output buffer, the writer and the reader are in framing.c.
 *
 * A fragment frame on the wire, at most frag_size bytes in all:
 *
 *     | u32 Length | Frame { fragment: { stream, total (first only), chunk, last } } |
 *
 * The chunks of one stream, joined, are one packed Frame (without a length prefix).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist.pb-c.h"
#include "frame.h"
#include "internal.h"

/* Arena allocations are rounded up to this, which suits any protobuf-c struct. */
#define ARENA_ALIGN 16u

/* ---- Plain structs to protobuf ------------------------------------------------------------ */

/* Room for every protobuf struct one frame needs, so that encoding allocates nothing. */
struct pb_out {
    Dist__Frame frame;
    union {
        Dist__Hello hello;
        Dist__Auth auth;
        Dist__Link link;
        Dist__Exit exit;
        Dist__Monitor monitor;
        Dist__Down down;
        Dist__SpawnRequest spawn_request;
        Dist__SpawnReply spawn_reply;
        Dist__Tick tick;
        Dist__Goodbye goodbye;
        Dist__Fragment fragment;
    } body;
    Dist__Pid pid[2];
    Dist__Ref ref;
};

/* protobuf-c does not write through these; its structs just lack const. */
static char *str_out(const char *s)
{
    return (char *)(s != NULL ? s : "");
}

static ProtobufCBinaryData bytes_out(struct dist_bytes b)
{
    return (ProtobufCBinaryData){.len = b.len, .data = (uint8_t *)b.data};
}

static Dist__Pid *pid_out(Dist__Pid *pb, const struct dist_wire_pid *p)
{
    if (p->id == 0)
        return NULL;
    dist__pid__init(pb);
    pb->node = str_out(p->node);
    pb->id = p->id;
    pb->creation = p->creation;
    return pb;
}

static Dist__Ref *ref_out(Dist__Ref *pb, const struct dist_wire_ref *r)
{
    if ((r->n[0] | r->n[1] | r->n[2]) == 0)
        return NULL;
    dist__ref__init(pb);
    pb->node = str_out(r->node);
    pb->creation = r->creation;
    pb->n0 = r->n[0];
    pb->n1 = r->n[1];
    pb->n2 = r->n[2];
    return pb;
}

/* Fill a `oneof target { Pid to = 2; string to_name = 3; }`; returns its case. */
static int target_out(Dist__Pid *pb, const struct dist_wire_target *t, Dist__Pid **to,
                      char **to_name)
{
    if (t->name != NULL) {
        *to_name = str_out(t->name);
        return 3;
    }
    dist__pid__init(pb);
    *to = pb;
    pb->node = str_out(t->pid.node);
    pb->id = t->pid.id;
    pb->creation = t->pid.creation;
    return 2;
}

static void hello_out(struct pb_out *o, const struct dist_frame *f)
{
    Dist__Hello *h = &o->body.hello;
    dist__hello__init(h);
    h->version = f->u.hello.version;
    h->node = str_out(f->u.hello.node);
    h->creation = f->u.hello.creation;
    h->nonce = bytes_out(f->u.hello.nonce);
    h->flags = f->u.hello.flags;
    o->frame.hello = h;
}

static Dist__Link *link_out(struct pb_out *o, const struct dist_frame *f)
{
    Dist__Link *l = &o->body.link;
    dist__link__init(l);
    l->from = pid_out(&o->pid[0], &f->u.link.from);
    l->to = pid_out(&o->pid[1], &f->u.link.to);
    return l;
}

static void exit_out(struct pb_out *o, const struct dist_frame *f)
{
    Dist__Exit *e = &o->body.exit;
    dist__exit__init(e);
    e->from = pid_out(&o->pid[0], &f->u.link.from);
    e->to = pid_out(&o->pid[1], &f->u.link.to);
    e->reason = f->u.link.reason;
    e->link = f->u.link.link != 0;
    o->frame.exit = e;
}

static Dist__Monitor *monitor_out(struct pb_out *o, const struct dist_frame *f)
{
    Dist__Monitor *m = &o->body.monitor;
    dist__monitor__init(m);
    m->from = pid_out(&o->pid[0], &f->u.monitor.from);
    m->target_case =
        (Dist__Monitor__TargetCase)target_out(&o->pid[1], &f->u.monitor.to, &m->to, &m->to_name);
    m->ref = ref_out(&o->ref, &f->u.monitor.ref);
    return m;
}

static void down_out(struct pb_out *o, const struct dist_frame *f)
{
    Dist__Down *d = &o->body.down;
    dist__down__init(d);
    d->from = pid_out(&o->pid[0], &f->u.down.from);
    d->to = pid_out(&o->pid[1], &f->u.down.to);
    d->ref = ref_out(&o->ref, &f->u.down.ref);
    d->reason = f->u.down.reason;
    o->frame.down = d;
}

static void spawn_out(struct pb_out *o, const struct dist_frame *f)
{
    if (f->kind == DIST_FRAME_SPAWN_REQUEST) {
        Dist__SpawnRequest *q = &o->body.spawn_request;
        dist__spawn_request__init(q);
        q->from = pid_out(&o->pid[0], &f->u.spawn_request.from);
        q->req_id = f->u.spawn_request.req_id;
        q->behaviour = str_out(f->u.spawn_request.behaviour);
        q->arg_type = str_out(f->u.spawn_request.arg_type);
        q->arg = bytes_out(f->u.spawn_request.arg);
        q->flags = f->u.spawn_request.flags;
        o->frame.spawn_request = q;
        return;
    }
    Dist__SpawnReply *p = &o->body.spawn_reply;
    dist__spawn_reply__init(p);
    p->to = pid_out(&o->pid[0], &f->u.spawn_reply.to);
    p->req_id = f->u.spawn_reply.req_id;
    p->pid = pid_out(&o->pid[1], &f->u.spawn_reply.pid);
    p->error = f->u.spawn_reply.error;
    o->frame.spawn_reply = p;
}

/* Build the protobuf view of @f in @o: any kind but Send, which is packed by hand. Returns 0
 * or DIST_EINVAL. */
static int frame_out(struct pb_out *o, const struct dist_frame *f)
{
    dist__frame__init(&o->frame);
    switch (f->kind) {
    case DIST_FRAME_HELLO:
        hello_out(o, f);
        break;
    case DIST_FRAME_AUTH:
        dist__auth__init(&o->body.auth);
        o->body.auth.mac = bytes_out(f->u.auth.mac);
        o->frame.auth = &o->body.auth;
        break;
    case DIST_FRAME_LINK:
        o->frame.link = link_out(o, f);
        break;
    case DIST_FRAME_UNLINK:
        o->frame.unlink = link_out(o, f);
        break;
    case DIST_FRAME_EXIT:
        exit_out(o, f);
        break;
    case DIST_FRAME_MONITOR:
        o->frame.monitor = monitor_out(o, f);
        break;
    case DIST_FRAME_DEMONITOR:
        o->frame.demonitor = monitor_out(o, f);
        break;
    case DIST_FRAME_DOWN:
        down_out(o, f);
        break;
    case DIST_FRAME_SPAWN_REQUEST:
    case DIST_FRAME_SPAWN_REPLY:
        spawn_out(o, f);
        break;
    case DIST_FRAME_TICK:
        dist__tick__init(&o->body.tick);
        o->frame.tick = &o->body.tick;
        break;
    case DIST_FRAME_GOODBYE:
        dist__goodbye__init(&o->body.goodbye);
        o->body.goodbye.reason = str_out(f->u.goodbye.reason);
        o->frame.goodbye = &o->body.goodbye;
        break;
    default:
        return DIST_EINVAL;
    }
    o->frame.body_case = (Dist__Frame__BodyCase)f->kind;
    return 0;
}

/* ---- Sends by hand ---------------------------------------------------------------------------
 *
 * Sends are most of the traffic, so they are packed here directly, as protobuf-c would pack
 * them (fields in number order, zero values left out), and read directly when they are laid
 * out that way. Any other layout goes to protobuf-c, which stays the reference.
 */

/* Wire tags: field number << 3 | wire type (0 varint, 2 length-delimited). */
enum {
    TAG_FRAME_SEND = 3 << 3 | 2,
    TAG_SEND_FROM = 1 << 3 | 2,
    TAG_SEND_TO = 2 << 3 | 2,
    TAG_SEND_TO_NAME = 3 << 3 | 2,
    TAG_SEND_TYPE = 4 << 3 | 2,
    TAG_SEND_PAYLOAD = 5 << 3 | 2,
    TAG_SEND_KIND = 6 << 3,
    TAG_SEND_REF = 7 << 3 | 2,
    TAG_NODE = 1 << 3 | 2, /* Pid.node and Ref.node */
};

/* The sizes a Send's packing needs, measured once. */
struct send_sizes {
    size_t from_node, to_node, to_name, type, ref_node; /* string lengths */
    size_t from, to, ref, body;                         /* packed submessage sizes */
};

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* A length-delimited field of @n bytes, whole. */
static size_t ld_len(size_t n)
{
    return 1 + varint_len(n) + n;
}

/* A varint field, left out when zero. */
static size_t vf_len(uint64_t v)
{
    return v != 0 ? 1 + varint_len(v) : 0;
}

static size_t slen(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

static uint8_t *put_ld(uint8_t *p, unsigned tag, const void *data, size_t n)
{
    *p++ = (uint8_t)tag;
    p = put_varint(p, n);
    if (n > 0 && data != NULL)
        memcpy(p, data, n);
    return p + (data != NULL ? n : 0);
}

static uint8_t *put_vf(uint8_t *p, unsigned tag, uint64_t v)
{
    if (v == 0)
        return p;
    *p++ = (uint8_t)tag;
    return put_varint(p, v);
}

static size_t pid_len(const struct dist_wire_pid *p, size_t node)
{
    return (node > 0 ? ld_len(node) : 0) + vf_len(p->id) + vf_len(p->creation);
}

static uint8_t *put_pid(uint8_t *p, unsigned tag, const struct dist_wire_pid *pid, size_t node,
                        size_t len)
{
    p = put_ld(p, tag, NULL, len);
    if (node > 0)
        p = put_ld(p, TAG_NODE, pid->node, node);
    p = put_vf(p, 2 << 3, pid->id);
    return put_vf(p, 3 << 3, pid->creation);
}

/* The packed size of Frame{send}, and in @z what put_send() needs. */
static size_t send_measure(const struct dist_frame *f, struct send_sizes *z)
{
    const struct dist_wire_ref *r = &f->u.send.ref;
    z->from_node = slen(f->u.send.from.node);
    z->from = f->u.send.from.id != 0 ? pid_len(&f->u.send.from, z->from_node) : 0;
    z->to_name = slen(f->u.send.to.name);
    z->to_node = slen(f->u.send.to.pid.node);
    z->to = f->u.send.to.name == NULL ? pid_len(&f->u.send.to.pid, z->to_node) : 0;
    z->type = slen(f->u.send.type);
    z->ref_node = slen(r->node);
    z->ref = (r->n[0] | r->n[1] | r->n[2]) == 0
                 ? 0
                 : (z->ref_node > 0 ? ld_len(z->ref_node) : 0) + vf_len(r->creation) +
                       vf_len(r->n[0]) + vf_len(r->n[1]) + vf_len(r->n[2]);
    z->body = (f->u.send.from.id != 0 ? ld_len(z->from) : 0) +
              (f->u.send.to.name != NULL ? ld_len(z->to_name) : ld_len(z->to)) +
              (z->type > 0 ? ld_len(z->type) : 0) +
              (f->u.send.payload.len > 0 ? ld_len(f->u.send.payload.len) : 0) +
              vf_len((uint64_t)f->u.send.kind) + (z->ref > 0 ? ld_len(z->ref) : 0);
    return ld_len(z->body);
}

static void put_send(uint8_t *p, const struct dist_frame *f, const struct send_sizes *z)
{
    const struct dist_wire_ref *r = &f->u.send.ref;
    p = put_ld(p, TAG_FRAME_SEND, NULL, z->body);
    if (f->u.send.from.id != 0)
        p = put_pid(p, TAG_SEND_FROM, &f->u.send.from, z->from_node, z->from);
    if (f->u.send.to.name != NULL)
        p = put_ld(p, TAG_SEND_TO_NAME, f->u.send.to.name, z->to_name);
    else
        p = put_pid(p, TAG_SEND_TO, &f->u.send.to.pid, z->to_node, z->to);
    if (z->type > 0)
        p = put_ld(p, TAG_SEND_TYPE, f->u.send.type, z->type);
    if (f->u.send.payload.len > 0)
        p = put_ld(p, TAG_SEND_PAYLOAD, f->u.send.payload.data, f->u.send.payload.len);
    p = put_vf(p, TAG_SEND_KIND, (uint64_t)f->u.send.kind);
    if (z->ref == 0)
        return;
    p = put_ld(p, TAG_SEND_REF, NULL, z->ref);
    if (z->ref_node > 0)
        p = put_ld(p, TAG_NODE, r->node, z->ref_node);
    p = put_vf(p, 2 << 3, r->creation);
    for (unsigned i = 0; i < 3; i++)
        p = put_vf(p, (3 + i) << 3, r->n[i]);
}

/* ---- Encoding -------------------------------------------------------------------------------- */

/* A frame measured and ready to pack: by hand for a Send, else through protobuf-c. */
struct enc {
    const struct dist_frame *f;
    size_t n; /* packed size */
    struct send_sizes z;
    struct pb_out o; /* filled only when f is NULL, that is for protobuf-c */
};

static int enc_prepare(struct enc *e, const struct dist_frame *f)
{
    if (f->kind == DIST_FRAME_SEND && (unsigned)f->u.send.kind <= DIST_SEND_REPLY) {
        e->f = f;
        e->n = send_measure(f, &e->z);
        return 0;
    }
    e->f = NULL;
    int rc = frame_out(&e->o, f);
    if (rc != 0)
        return rc;
    e->n = dist__frame__get_packed_size(&e->o.frame);
    return 0;
}

static void enc_write(const struct enc *e, uint8_t *p)
{
    if (e->f != NULL)
        put_send(p, e->f, &e->z);
    else
        dist__frame__pack(&e->o.frame, p);
}

/* Reserve room for @e through @reserve and pack it there. */
static int enc_emit(const struct enc *e, dist_frame_reserve_cb reserve, void *user_data)
{
    uint8_t *p;
    int rc = reserve(e->n, &p, user_data);
    if (rc != 0)
        return rc;
    enc_write(e, p);
    return 0;
}

int dist__frame_serialize(const struct dist_frame *f, dist_frame_reserve_cb reserve,
                          void *user_data)
{
    struct enc e;
    int rc = enc_prepare(&e, f);
    return rc != 0 ? rc : enc_emit(&e, reserve, user_data);
}

int dist__fragment_serialize(const struct dist_fragment *frag, dist_frame_reserve_cb reserve,
                             void *user_data)
{
    struct enc e = {.f = NULL};
    Dist__Fragment *fg = &e.o.body.fragment;
    dist__fragment__init(fg);
    dist__frame__init(&e.o.frame);
    fg->stream = frag->stream;
    fg->total = frag->total;
    fg->chunk = bytes_out(frag->chunk);
    fg->last = frag->last;
    e.o.frame.body_case = DIST__FRAME__BODY_FRAGMENT;
    e.o.frame.fragment = fg;
    e.n = dist__frame__get_packed_size(&e.o.frame);
    return enc_emit(&e, reserve, user_data);
}

/* ---- Protobuf to plain structs ------------------------------------------------------------ */

static struct dist_bytes bytes_in(ProtobufCBinaryData b)
{
    return (struct dist_bytes){.data = b.data, .len = b.len};
}

static struct dist_wire_pid pid_in(const Dist__Pid *pb)
{
    if (pb == NULL)
        return (struct dist_wire_pid){.node = ""};
    return (struct dist_wire_pid){.node = pb->node, .id = pb->id, .creation = pb->creation};
}

static struct dist_wire_ref ref_in(const Dist__Ref *pb)
{
    if (pb == NULL)
        return (struct dist_wire_ref){.node = ""};
    return (struct dist_wire_ref){
        .node = pb->node, .creation = pb->creation, .n = {pb->n0, pb->n1, pb->n2}};
}

/* Read a `oneof target`; a target must be there. */
static int target_in(int tcase, const Dist__Pid *to, const char *to_name,
                     struct dist_wire_target *t)
{
    if (tcase == 3) {
        *t = (struct dist_wire_target){.pid = pid_in(NULL), .name = to_name};
        return 0;
    }
    if (tcase != 2 || to == NULL)
        return DIST_EFRAME_BAD;
    *t = (struct dist_wire_target){.pid = pid_in(to)};
    return 0;
}

/* Both ends of a link, exit or down must be there. */
static int pair_in(const Dist__Pid *from, const Dist__Pid *to, struct dist_wire_pid *f,
                   struct dist_wire_pid *t)
{
    if (from == NULL || to == NULL)
        return DIST_EFRAME_BAD;
    *f = pid_in(from);
    *t = pid_in(to);
    return 0;
}

static int send_in(const Dist__Send *s, struct dist_frame *f)
{
    if (s->kind > DIST_SEND_REPLY)
        return DIST_EFRAME_BAD;
    f->u.send.from = pid_in(s->from);
    f->u.send.type = s->type;
    f->u.send.payload = bytes_in(s->payload);
    f->u.send.kind = (enum dist_send_kind)s->kind;
    f->u.send.ref = ref_in(s->ref);
    return target_in(s->target_case, s->to, s->to_name, &f->u.send.to);
}

static int monitor_in(const Dist__Monitor *m, struct dist_frame *f)
{
    f->u.monitor.from = pid_in(m->from);
    f->u.monitor.ref = ref_in(m->ref);
    return target_in(m->target_case, m->to, m->to_name, &f->u.monitor.to);
}

static void hello_in(const Dist__Hello *h, struct dist_frame *f)
{
    f->u.hello.version = h->version;
    f->u.hello.node = h->node;
    f->u.hello.creation = h->creation;
    f->u.hello.nonce = bytes_in(h->nonce);
    f->u.hello.flags = h->flags;
}

static int spawn_in(const Dist__Frame *pb, struct dist_frame *f)
{
    if (pb->body_case == DIST__FRAME__BODY_SPAWN_REQUEST) {
        const Dist__SpawnRequest *q = pb->spawn_request;
        f->u.spawn_request.from = pid_in(q->from);
        f->u.spawn_request.req_id = q->req_id;
        f->u.spawn_request.behaviour = q->behaviour;
        f->u.spawn_request.arg_type = q->arg_type;
        f->u.spawn_request.arg = bytes_in(q->arg);
        f->u.spawn_request.flags = q->flags;
        return 0;
    }
    const Dist__SpawnReply *p = pb->spawn_reply;
    if (p->to == NULL)
        return DIST_EFRAME_BAD;
    f->u.spawn_reply.to = pid_in(p->to);
    f->u.spawn_reply.req_id = p->req_id;
    f->u.spawn_reply.pid = pid_in(p->pid);
    f->u.spawn_reply.error = p->error;
    return 0;
}

/* Fill @f from @pb, which is not a fragment. Returns 0 or DIST_EFRAME_BAD. */
static int frame_in(const Dist__Frame *pb, struct dist_frame *f)
{
    memset(f, 0, sizeof(*f));
    f->kind = (enum dist_frame_kind)pb->body_case;
    switch (pb->body_case) {
    case DIST__FRAME__BODY_HELLO:
        hello_in(pb->hello, f);
        return 0;
    case DIST__FRAME__BODY_AUTH:
        f->u.auth.mac = bytes_in(pb->auth->mac);
        return 0;
    case DIST__FRAME__BODY_SEND:
        return send_in(pb->send, f);
    case DIST__FRAME__BODY_LINK:
        return pair_in(pb->link->from, pb->link->to, &f->u.link.from, &f->u.link.to);
    case DIST__FRAME__BODY_UNLINK:
        return pair_in(pb->unlink->from, pb->unlink->to, &f->u.link.from, &f->u.link.to);
    case DIST__FRAME__BODY_EXIT:
        f->u.link.reason = pb->exit->reason;
        f->u.link.link = pb->exit->link;
        return pair_in(pb->exit->from, pb->exit->to, &f->u.link.from, &f->u.link.to);
    case DIST__FRAME__BODY_MONITOR:
        return monitor_in(pb->monitor, f);
    case DIST__FRAME__BODY_DEMONITOR:
        return monitor_in(pb->demonitor, f);
    case DIST__FRAME__BODY_DOWN:
        f->u.down.ref = ref_in(pb->down->ref);
        f->u.down.reason = pb->down->reason;
        return pair_in(pb->down->from, pb->down->to, &f->u.down.from, &f->u.down.to);
    case DIST__FRAME__BODY_SPAWN_REQUEST:
    case DIST__FRAME__BODY_SPAWN_REPLY:
        return spawn_in(pb, f);
    case DIST__FRAME__BODY_TICK:
        return 0;
    case DIST__FRAME__BODY_GOODBYE:
        f->u.goodbye.reason = pb->goodbye->reason;
        return 0;
    default:
        /* No body, a fragment where none may be, or a kind from a newer peer it should not
         * have sent us. */
        return DIST_EFRAME_BAD;
    }
}

/* ---- Decoding -------------------------------------------------------------------------------- */

/* protobuf-c allocates through these while it unpacks: small frames come from the arena. */
static void *arena_alloc(void *data, size_t size)
{
    struct dist_frame_reader *r = data;
    size_t n = (size + (ARENA_ALIGN - 1)) & ~(size_t)(ARENA_ALIGN - 1);
    if (n >= size && n <= r->arena_cap - r->arena_used) {
        void *p = r->arena + r->arena_used;
        r->arena_used += n;
        return p;
    }
    void *p = malloc(size);
    if (p == NULL)
        r->alloc_failed = 1;
    else
        r->spilled++;
    return p;
}

static void arena_free(void *data, void *p)
{
    struct dist_frame_reader *r = data;
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)r->arena;
    if (a - base >= r->arena_cap)
        free(p);
}

/* Let go of the frame last handed out, and empty the arena. */
void dist__frame_release(struct dist_frame_reader *r)
{
    free(r->done);
    r->done = NULL;
    if (r->msg != NULL && r->spilled != 0) {
        ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = r};
        protobuf_c_message_free_unpacked(r->msg, &a);
    }
    r->msg = NULL;
    r->arena_used = 0;
    r->spilled = 0;
    r->alloc_failed = 0;
}

/* ---- Sends read by hand ---------------------------------------------------------------------- */

struct cur {
    const uint8_t *p, *end;
};

/* Read a varint; -1 when it is cut short or longer than 64 bits. */
static int get_varint(struct cur *c, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        uint8_t b = *c->p++;
        if (shift == 63 && b > 1)
            return -1;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Read a length-delimited field's bytes into @sub. */
static int get_ld(struct cur *c, struct cur *sub)
{
    uint64_t n;
    if (get_varint(c, &n) != 0 || n > (uint64_t)(c->end - c->p))
        return -1;
    *sub = (struct cur){c->p, c->p + n};
    c->p += n;
    return 0;
}

/* Copy @s into the arena with a NUL; NULL when the arena is full. */
static const char *arena_str(struct dist_frame_reader *r, struct cur s)
{
    size_t n = (size_t)(s.end - s.p);
    if (n >= r->arena_cap - r->arena_used)
        return NULL;
    char *p = (char *)r->arena + r->arena_used;
    r->arena_used += n + 1;
    memcpy(p, s.p, n);
    p[n] = '\0';
    return p;
}

/* Read a Pid or Ref: field 1 the node, fields 2 to @nv + 1 varints into @v; -1 for any other
 * layout. */
static int ids_in(struct dist_frame_reader *r, struct cur c, const char **node, uint64_t *v,
                  unsigned nv)
{
    unsigned seen = 0;
    *node = "";
    while (c.p < c.end) {
        uint64_t tag;
        struct cur s;
        if (get_varint(&c, &tag) != 0 || tag >> 3 == 0 || tag >> 3 > nv + 1 ||
            (seen >> (tag >> 3) & 1))
            return -1;
        seen |= 1u << (tag >> 3);
        if (tag >> 3 == 1) {
            if (tag != TAG_NODE || get_ld(&c, &s) != 0)
                return -1;
            *node = arena_str(r, s);
            if (*node == NULL)
                return -1;
        } else if ((tag & 7) != 0 || get_varint(&c, &v[(tag >> 3) - 2]) != 0) {
            return -1;
        }
    }
    return 0;
}

static int pid_fast(struct dist_frame_reader *r, struct cur c, struct dist_wire_pid *pid)
{
    uint64_t v[2] = {0, 0};
    if (ids_in(r, c, &pid->node, v, 2) != 0 || v[1] > UINT32_MAX)
        return -1;
    pid->id = v[0];
    pid->creation = (uint32_t)v[1];
    return 0;
}

static int ref_fast(struct dist_frame_reader *r, struct cur c, struct dist_wire_ref *ref)
{
    uint64_t v[4] = {0, 0, 0, 0};
    if (ids_in(r, c, &ref->node, v, 4) != 0 || (v[0] | v[1] | v[2] | v[3]) > UINT32_MAX)
        return -1;
    ref->creation = (uint32_t)v[0];
    for (unsigned i = 0; i < 3; i++)
        ref->n[i] = (uint32_t)v[i + 1];
    return 0;
}

/* One field of a Send, at @c after its @tag. -1 for anything unexpected. */
static int send_field(struct dist_frame_reader *r, struct cur *c, uint64_t tag,
                      struct dist_frame *f)
{
    struct cur sub;
    uint64_t kind;
    if (tag == TAG_SEND_KIND) {
        if (get_varint(c, &kind) != 0 || kind > DIST_SEND_REPLY)
            return -1;
        f->u.send.kind = (enum dist_send_kind)kind;
        return 0;
    }
    if ((tag & 7) != 2 || get_ld(c, &sub) != 0)
        return -1;
    switch (tag) {
    case TAG_SEND_FROM:
        return pid_fast(r, sub, &f->u.send.from);
    case TAG_SEND_TO:
        return pid_fast(r, sub, &f->u.send.to.pid);
    case TAG_SEND_TO_NAME:
        f->u.send.to.name = arena_str(r, sub);
        return f->u.send.to.name != NULL ? 0 : -1;
    case TAG_SEND_TYPE:
        f->u.send.type = arena_str(r, sub);
        return f->u.send.type != NULL ? 0 : -1;
    case TAG_SEND_PAYLOAD:
        f->u.send.payload = (struct dist_bytes){sub.p, (size_t)(sub.end - sub.p)};
        return 0;
    case TAG_SEND_REF:
        return ref_fast(r, sub, &f->u.send.ref);
    default:
        return -1;
    }
}

/*
 * Read a Frame that is a valid Send in protobuf-c's own layout, each field at most once and
 * nothing unknown. Returns 1 with @f filled, or 0 to leave the frame to protobuf-c. The
 * payload is borrowed from @body.
 */
static int send_fast(struct dist_frame_reader *r, const uint8_t *body, size_t n,
                     struct dist_frame *f)
{
    struct cur c = {body, body + n}, s;
    unsigned seen = 0;
    if (n < 2 || body[0] != TAG_FRAME_SEND)
        return 0;
    c.p++;
    if (get_ld(&c, &s) != 0 || c.p != c.end)
        return 0;
    memset(f, 0, sizeof(*f));
    f->kind = DIST_FRAME_SEND;
    f->u.send.from.node = f->u.send.to.pid.node = f->u.send.type = f->u.send.ref.node = "";
    while (s.p < s.end) {
        uint64_t tag;
        if (get_varint(&s, &tag) != 0 || tag >> 3 > 7 || (seen >> (tag >> 3) & 1))
            return 0;
        seen |= 1u << (tag >> 3);
        if (send_field(r, &s, tag, f) != 0)
            return 0;
    }
    /* Exactly one target, as the oneof has it. */
    seen &= 1u << 2 | 1u << 3;
    return seen == 1u << 2 || seen == 1u << 3;
}

/* Unpack @n bytes at @body into r->msg. */
static int reader_unpack(struct dist_frame_reader *r, const uint8_t *body, size_t n)
{
    ProtobufCAllocator a = {.alloc = arena_alloc, .free = arena_free, .allocator_data = r};
    Dist__Frame *pb = dist__frame__unpack(&a, n, body);
    if (pb == NULL) {
        int oom = r->alloc_failed;
        dist__frame_release(r);
        return oom ? -ENOMEM : DIST_EFRAME_BAD;
    }
    r->msg = pb;
    return 0;
}

int dist__frame_parse(struct dist_frame_reader *r, const uint8_t *body, size_t n,
                      struct dist_frame *out, struct dist_fragment *frag)
{
    if (send_fast(r, body, n, out))
        return DIST_PARSED_FRAME;
    r->arena_used = 0;
    int rc = reader_unpack(r, body, n);
    if (rc != 0)
        return rc;
    const Dist__Frame *pb = r->msg;
    if (frag != NULL && pb->body_case == DIST__FRAME__BODY_FRAGMENT) {
        const Dist__Fragment *fg = pb->fragment;
        *frag = (struct dist_fragment){.stream = fg->stream,
                                       .total = fg->total,
                                       .chunk = bytes_in(fg->chunk),
                                       .last = fg->last};
        return DIST_PARSED_FRAGMENT;
    }
    rc = frame_in(pb, out);
    return rc != 0 ? rc : DIST_PARSED_FRAME;
}
