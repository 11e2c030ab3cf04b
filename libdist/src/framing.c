/*
 * framing.c: frames on a byte stream. The output buffer, the writer that fragments large
 * messages and interleaves them with small frames, and the reader that checks lengths and
 * joins fragments. Packing and unpacking one frame is frame.c's.
 *
 * Writer queues, for lanes A and B with large messages in flight:
 *
 *     head -> lane A: [large 1, 40% sent] -> [small] -> [large 2]
 *             lane B: [large 3, 10% sent]                          <- tail
 *
 * Each fill step sends one fragment of the head lane's first message, then the small frames
 * that waited behind it if that message is done, and moves the lane to the tail.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "internal.h"

/* The most a fragment frame adds to its chunk: prefix, tags and varints at their longest. */
#define FRAG_OVERHEAD 40u
/* The reader's arena starts at this size and grows to fit the frames the peer sends. */
#define ARENA_MIN (16u * 1024u)
/* Bytes of large items a writer keeps for reuse once sent. */
#define SPARE_MAX (4u * 1024u * 1024u)

/* ---- Output buffer ----------------------------------------------------------------------- */

void dist__outbuf_init(struct dist_outbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void dist__outbuf_done(struct dist_outbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

uint8_t *dist__outbuf_append(struct dist_outbuf *b, size_t n)
{
    if (b->cap - b->tail < n && b->head > 0) {
        /* Reuse the written-out front before growing. */
        memmove(b->data, b->data + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
    if (b->cap - b->tail < n) {
        if (n > SIZE_MAX / 2 - b->tail)
            return NULL;
        size_t cap = b->cap < 4096 ? 4096 : b->cap;
        while (cap - b->tail < n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (p == NULL)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    uint8_t *p = b->data + b->tail;
    b->tail += n;
    return p;
}

void dist__outbuf_consume(struct dist_outbuf *b, size_t n)
{
    b->head += n < b->tail - b->head ? n : b->tail - b->head;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

/* A dist_frame_reserve_cb: room for a frame of @n bytes after its u32 Length in the
 * dist_outbuf @user_data. */
static int outbuf_reserve(size_t n, uint8_t **p, void *user_data)
{
    if (n > UINT32_MAX)
        return DIST_EFRAME_TOO_BIG;
    uint8_t *q = dist__outbuf_append(user_data, 4 + n);
    if (q == NULL)
        return -ENOMEM;
    dist__put32(q, (uint32_t)n);
    *p = q + 4;
    return 0;
}

int dist__frame_encode(struct dist_outbuf *out, const struct dist_frame *f)
{
    return dist__frame_serialize(f, outbuf_reserve, out);
}

/* ---- Writer ---------------------------------------------------------------------------------- */

/* One queued frame. A large one has data = its packed Frame; a small one has its prefix too. */
struct dist_qitem {
    struct dist_qitem *next;
    int large;
    uint64_t stream; /* once the first fragment is out */
    size_t cap;      /* bytes data has room for */
    size_t len;
    size_t off; /* bytes sent as fragments */
    uint8_t data[];
};

struct dist_lane {
    struct dist_lane *next;
    uint64_t key;
    struct dist_qitem *head, *tail;
};

/* @lim with its zero fields set to their defaults; NULL is all defaults. */
static struct dist_frame_limits limits_fill(const struct dist_frame_limits *lim)
{
    struct dist_frame_limits l = lim != NULL ? *lim : (struct dist_frame_limits){0};
    if (l.max_frame == 0)
        l.max_frame = DIST_FRAME_MAX_FRAME;
    if (l.max_message == 0)
        l.max_message = DIST_FRAME_MAX_MESSAGE;
    if (l.max_streams == 0)
        l.max_streams = DIST_FRAME_MAX_STREAMS;
    if (l.max_pending == 0)
        l.max_pending = DIST_FRAME_MAX_PENDING;
    return l;
}

int dist__frame_writer_init(struct dist_frame_writer *w, size_t frag_size,
                            const struct dist_frame_limits *lim)
{
    struct dist_frame_limits l = limits_fill(lim);
    if (frag_size == 0)
        frag_size = DIST_FRAME_FRAG_SIZE;
    if (frag_size < DIST_FRAME_FRAG_MIN || frag_size - 4 > l.max_frame)
        return DIST_EINVAL;
    memset(w, 0, sizeof(*w));
    dist__outbuf_init(&w->out);
    w->lim = l;
    w->frag_size = frag_size;
    w->next_stream = 1;
    return 0;
}

/*
 * A large item sent is kept for the next large message while the spares hold under
 * SPARE_MAX bytes: a steady stream of large messages then reuses the same memory, where
 * malloc() would give it back to the system as the queue drains and fault it in again.
 */
static void item_free(struct dist_frame_writer *w, struct dist_qitem *it)
{
    if (!it->large || it->cap > SPARE_MAX - w->spare_bytes) {
        free(it);
        return;
    }
    it->next = w->spares;
    w->spares = it;
    w->spare_bytes += it->cap;
}

/* An item with room for @len bytes: a spare of about that size, else a new one. */
static struct dist_qitem *item_new(struct dist_frame_writer *w, size_t len, int large)
{
    struct dist_qitem **pp = &w->spares, *it;

    for (; large && *pp != NULL; pp = &(*pp)->next) {
        it = *pp;
        if (it->cap >= len && it->cap / 2 <= len) {
            *pp = it->next;
            w->spare_bytes -= it->cap;
            return it;
        }
    }
    it = malloc(sizeof(*it) + len);
    if (it != NULL)
        it->cap = len;
    return it;
}

static void lane_pop(struct dist_frame_writer *w, struct dist_lane *l)
{
    struct dist_qitem *it = l->head;
    l->head = it->next;
    if (l->head == NULL)
        l->tail = NULL;
    item_free(w, it);
}

void dist__frame_writer_done(struct dist_frame_writer *w)
{
    if (w == NULL)
        return;
    while (w->head != NULL) {
        struct dist_lane *l = w->head;
        w->head = l->next;
        while (l->head != NULL)
            lane_pop(w, l);
        free(l);
    }
    while (w->spares != NULL) {
        struct dist_qitem *it = w->spares;
        w->spares = it->next;
        free(it);
    }
    dist__outbuf_done(&w->out);
    memset(w, 0, sizeof(*w));
}

/* Put @l at the end of the round-robin order. */
static void lane_enqueue(struct dist_frame_writer *w, struct dist_lane *l)
{
    l->next = NULL;
    if (w->tail != NULL)
        w->tail->next = l;
    else
        w->head = l;
    w->tail = l;
}

static struct dist_lane *lane_find(struct dist_frame_writer *w, uint64_t key)
{
    if (key == 0)
        return NULL;
    for (struct dist_lane *l = w->head; l != NULL; l = l->next)
        if (l->key == key)
            return l;
    return NULL;
}

/* Queue a frame of @n packed bytes on @l, or on a new lane @key when @l is NULL, and point
 * *@p where its packed bytes go. */
static int writer_queue(struct dist_frame_writer *w, struct dist_lane *l, uint64_t key, size_t n,
                        int large, uint8_t **p)
{
    size_t len = large ? n : 4 + n;
    struct dist_qitem *it = item_new(w, len, large);
    if (it == NULL)
        return -ENOMEM;
    if (l == NULL) {
        l = calloc(1, sizeof(*l));
        if (l == NULL) {
            item_free(w, it);
            return -ENOMEM;
        }
        l->key = key;
        lane_enqueue(w, l);
        w->nlanes++;
    }
    *it = (struct dist_qitem){.large = large, .cap = it->cap, .len = len};
    if (!large)
        dist__put32(it->data, (uint32_t)n);
    *p = it->data + (large ? 0 : 4);
    if (l->tail != NULL)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    w->queued += len;
    return 0;
}

/* What writer_reserve() needs besides the size. */
struct writer_put {
    struct dist_frame_writer *w;
    uint64_t lane;
};

/* A dist_frame_reserve_cb: room for a frame of @n bytes, straight in the output buffer when it
 * is small and its lane has nothing queued, else queued. */
static int writer_reserve(size_t n, uint8_t **p, void *user_data)
{
    struct writer_put *put = user_data;
    struct dist_frame_writer *w = put->w;
    int large = n > w->frag_size - 4;
    if (large && (n > w->lim.max_message || n > w->lim.max_pending))
        return DIST_EFRAME_TOO_BIG;
    struct dist_lane *l = lane_find(w, put->lane);
    if (!large && l == NULL)
        return outbuf_reserve(n, p, &w->out);
    return writer_queue(w, l, put->lane, n, large, p);
}

int dist__frame_writer_put(struct dist_frame_writer *w, const struct dist_frame *f, uint64_t lane)
{
    struct writer_put put = {.w = w, .lane = lane};
    return dist__frame_serialize(f, writer_reserve, &put);
}

/* Whether a large message of @len bytes may start a stream now, within the peer's limits. */
static int stream_may_start(const struct dist_frame_writer *w, size_t len)
{
    return w->open_streams < w->lim.max_streams && len <= w->lim.max_pending - w->open_bytes;
}

/* Append the next fragment of @it to the output; the first one starts its stream. */
static int fragment_emit(struct dist_frame_writer *w, struct dist_qitem *it)
{
    size_t room = w->frag_size - FRAG_OVERHEAD;
    size_t chunk = it->len - it->off < room ? it->len - it->off : room;
    struct dist_fragment fg = {
        .stream = it->off == 0 ? w->next_stream : it->stream,
        .total = it->off == 0 ? it->len : 0,
        .chunk = {.data = it->data + it->off, .len = chunk},
        .last = it->off + chunk == it->len,
    };
    int rc = dist__fragment_serialize(&fg, outbuf_reserve, &w->out);
    if (rc != 0)
        return rc;
    if (it->off == 0) {
        it->stream = w->next_stream++;
        w->open_streams++;
        w->open_bytes += it->len;
    }
    it->off += chunk;
    w->queued -= chunk;
    if (it->off == it->len) {
        w->open_streams--;
        w->open_bytes -= it->len;
    }
    return 0;
}

/*
 * One turn of lane @l: a fragment of its first message, then, once no large message is left
 * unfinished at its front, the small frames behind it. *@moved tells whether any byte moved.
 */
static int lane_step(struct dist_frame_writer *w, struct dist_lane *l, int *moved)
{
    struct dist_qitem *it = l->head;
    *moved = 0;
    if (it->large) {
        if (it->off == 0 && !stream_may_start(w, it->len))
            return 0;
        int rc = fragment_emit(w, it);
        if (rc != 0)
            return rc;
        *moved = 1;
        if (it->off < it->len)
            return 0;
        lane_pop(w, l);
    }
    while (l->head != NULL && !l->head->large) {
        it = l->head;
        uint8_t *p = dist__outbuf_append(&w->out, it->len);
        if (p == NULL)
            return -ENOMEM;
        memcpy(p, it->data, it->len);
        w->queued -= it->len;
        *moved = 1;
        lane_pop(w, l);
    }
    return 0;
}

int dist__frame_writer_fill(struct dist_frame_writer *w, size_t budget)
{
    /* Lanes that had to wait for a stream slot in a row; a whole round of them means stop. */
    size_t idle = 0;
    while (w->head != NULL && idle < w->nlanes && dist__outbuf_pending(&w->out) < budget) {
        struct dist_lane *l = w->head;
        int moved;
        int rc = lane_step(w, l, &moved);
        if (rc != 0)
            return rc;
        idle = moved ? 0 : idle + 1;
        w->head = l->next;
        if (w->head == NULL)
            w->tail = NULL;
        if (l->head != NULL) {
            lane_enqueue(w, l);
            continue;
        }
        free(l);
        w->nlanes--;
    }
    return 0;
}

/* ---- Reader ---------------------------------------------------------------------------------- */

/* A message being reassembled. */
struct dist_rx_stream {
    struct dist_rx_stream *next;
    uint64_t id;
    size_t total, got;
    uint8_t data[];
};

/*
 * Make the arena large enough for a frame of @n bytes unpacked, so that steady traffic
 * allocates nothing. Only frames within max_frame count; on failure the arena stays as it is
 * and the frame spills to malloc.
 */
static void arena_fit(struct dist_frame_reader *r, size_t n)
{
    size_t want = 2 * n + 4096;
    if (want <= r->arena_cap)
        return;
    uint8_t *p = malloc(want);
    if (p == NULL)
        return;
    free(r->arena);
    r->arena = p;
    r->arena_cap = want;
}

int dist__frame_reader_init(struct dist_frame_reader *r, const struct dist_frame_limits *lim)
{
    memset(r, 0, sizeof(*r));
    r->lim = limits_fill(lim);
    r->arena = malloc(ARENA_MIN);
    if (r->arena == NULL)
        return -ENOMEM;
    r->arena_cap = ARENA_MIN;
    return 0;
}

void dist__frame_reader_done(struct dist_frame_reader *r)
{
    if (r == NULL)
        return;
    dist__frame_release(r);
    while (r->streams != NULL) {
        struct dist_rx_stream *s = r->streams;
        r->streams = s->next;
        free(s);
    }
    free(r->buf);
    free(r->arena);
    memset(r, 0, sizeof(*r));
}

static int reader_fail(struct dist_frame_reader *r, int err)
{
    r->err = err;
    return err;
}

/* Check the Length at the front, if it is all there, before anything is allocated for it. */
static int reader_check_head(struct dist_frame_reader *r)
{
    if (r->end - r->start >= 4 && dist__get32(r->buf + r->start) > r->lim.max_frame)
        return reader_fail(r, DIST_EFRAME_TOO_BIG);
    return 0;
}

int dist__frame_reader_feed(struct dist_frame_reader *r, const void *data, size_t len)
{
    if (r->err != 0)
        return r->err;
    if (len == 0)
        return 0;
    if (r->cap - r->end < len && r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->cap - r->end < len) {
        size_t cap = r->cap < 4096 ? 4096 : r->cap;
        while (cap - r->end < len)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        uint8_t *p = realloc(r->buf, cap);
        if (p == NULL)
            return reader_fail(r, -ENOMEM);
        r->buf = p;
        r->cap = cap;
    }
    memcpy(r->buf + r->end, data, len);
    r->end += len;
    return reader_check_head(r);
}

static struct dist_rx_stream *stream_find(struct dist_frame_reader *r, uint64_t id)
{
    for (struct dist_rx_stream *s = r->streams; s != NULL; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* Start stream @id of @total bytes, checking every cap before allocating. */
static int stream_start(struct dist_frame_reader *r, uint64_t id, uint64_t total,
                        struct dist_rx_stream **out)
{
    if (id <= r->last_stream)
        return DIST_EFRAG_ORDER;
    if (total > r->lim.max_message)
        return DIST_EFRAME_TOO_BIG;
    if (r->nstreams >= r->lim.max_streams || total > r->lim.max_pending - r->pending)
        return DIST_EFRAG_STREAMS;
    struct dist_rx_stream *s = malloc(sizeof(*s) + (size_t)total);
    if (s == NULL)
        return -ENOMEM;
    *s = (struct dist_rx_stream){.next = r->streams, .id = id, .total = (size_t)total};
    r->streams = s;
    r->last_stream = id;
    r->nstreams++;
    r->pending += s->total;
    *out = s;
    return 0;
}

static void stream_unlink(struct dist_frame_reader *r, struct dist_rx_stream *s)
{
    struct dist_rx_stream **pp = &r->streams;
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    r->nstreams--;
    r->pending -= s->total;
}

/*
 * Add fragment @fg to its stream. Returns 0 while the message is incomplete, 1 with @out
 * filled once it is whole, or an error.
 */
static int reader_fragment(struct dist_frame_reader *r, const struct dist_fragment *fg,
                           struct dist_frame *out)
{
    struct dist_rx_stream *s = stream_find(r, fg->stream);
    int rc;
    if (fg->total != 0) {
        if (s != NULL)
            return DIST_EFRAG_ORDER;
        rc = stream_start(r, fg->stream, fg->total, &s);
        if (rc != 0)
            return rc;
    } else if (s == NULL) {
        return DIST_EFRAG_UNKNOWN;
    }
    if (fg->chunk.len > s->total - s->got)
        return DIST_EFRAG_LENGTH;
    if (fg->chunk.len > 0)
        memcpy(s->data + s->got, fg->chunk.data, fg->chunk.len);
    s->got += fg->chunk.len;
    if (!fg->last)
        return 0;
    if (s->got != s->total)
        return DIST_EFRAG_LENGTH;
    stream_unlink(r, s);
    dist__frame_release(r);
    /* A Send borrows its payload from the joined bytes: they stay until the next call. */
    r->done = s;
    /* The joined message is decoded as a frame on its own; a fragment inside it is refused. */
    return dist__frame_parse(r, s->data, s->total, out, NULL);
}

/*
 * Decode the frame of @n bytes at @body into @out. Returns 1, 0 for a fragment of a message
 * not yet whole, or an error.
 */
static int reader_decode(struct dist_frame_reader *r, const uint8_t *body, size_t n,
                         struct dist_frame *out)
{
    struct dist_fragment fg;
    int rc = dist__frame_parse(r, body, n, out, &fg);
    return rc == DIST_PARSED_FRAGMENT ? reader_fragment(r, &fg, out) : rc;
}

int dist__frame_reader_next(struct dist_frame_reader *r, struct dist_frame *out)
{
    if (r->err != 0)
        return r->err;
    dist__frame_release(r);
    for (;;) {
        size_t avail = r->end - r->start;
        if (avail < 4)
            return 0;
        uint32_t n = dist__get32(r->buf + r->start);
        if (n > r->lim.max_frame)
            return reader_fail(r, DIST_EFRAME_TOO_BIG);
        if (avail - 4 < n)
            return 0;
        const uint8_t *body = r->buf + r->start + 4;
        r->start += 4 + (size_t)n;
        arena_fit(r, n);
        int rc = reader_decode(r, body, n, out);
        if (rc != 0)
            return rc < 0 ? reader_fail(r, rc) : 1;
        dist__frame_release(r);
    }
}
