/*
 * frame.h: the node-to-node wire codec and framing, inside libdist.
 *
 * A connection carries frames. Each is a u32 big-endian length and a packed protobuf Frame
 * (libdist/proto/dist.proto):
 *
 *     +------------+---------------------+------------+---------------------+----
 *     | u32 Length | Length bytes: Frame | u32 Length | Length bytes: Frame | ...
 *     +------------+---------------------+------------+---------------------+----
 *
 * Outbound, a frame whose wire size is over the fragment size is packed once and cut into
 * Fragment frames. A writer interleaves them with small frames, and round-robin between large
 * messages, so no message waits behind a large one unless it must keep its order:
 *
 *     put(tick)  put(100 MiB, lane A)  put(small, lane B)  put(small, lane A)
 *       out: tick | small B | frag A.1 | ... | frag A.n | small A
 *                             (more frames go out between fragments as they are put)
 *
 * Inbound, a reader takes bytes in any chunks, checks each length against its limit before it
 * allocates, joins fragments per stream and hands out whole frames.
 *
 * Everything here works on memory buffers: no sockets, no event loop, no threads. Each object
 * belongs to one connection and is used by one thread at a time.
 *
 * frame.c holds the codec and framing.c the output buffer, writer and reader. Only frame.c
 * includes the generated dist.pb-c.h; everything here speaks plain structs.
 */
#ifndef DIST_FRAME_H
#define DIST_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "dist.h"

/* ---- Limits -------------------------------------------------------------------------------- */

/* Largest frame on the wire, length prefix included, before a writer fragments it. */
#define DIST_FRAME_FRAG_SIZE (64u * 1024u)
/* Smallest fragment size a writer accepts: room for the fragment header and some chunk. */
#define DIST_FRAME_FRAG_MIN 256u
/* Default cap on one frame's Length; fragments from a default writer always fit. */
#define DIST_FRAME_MAX_FRAME DIST_FRAME_FRAG_SIZE
/* Default cap on a reassembled message. */
#define DIST_FRAME_MAX_MESSAGE (256u * 1024u * 1024u)
/* Default cap on messages being reassembled at once on one connection. */
#define DIST_FRAME_MAX_STREAMS 32u
/* Default cap on the bytes of all messages being reassembled on one connection. */
#define DIST_FRAME_MAX_PENDING (512u * 1024u * 1024u)

/*
 * What a reader accepts from its peer, and so what a writer may send it: both ends of a
 * connection use the same limits. A zero field takes its default above.
 */
struct dist_frame_limits {
    uint32_t max_frame; /* largest Length of one frame */
    size_t max_message; /* largest total of a fragmented message */
    size_t max_streams; /* fragmented messages in flight */
    size_t max_pending; /* sum of the totals of the messages in flight */
};

/* ---- Frames -------------------------------------------------------------------------------- */

/* The kinds of frame. Each value is its member's field number in Frame.body. */
enum dist_frame_kind {
    DIST_FRAME_HELLO = 1,
    DIST_FRAME_AUTH = 2,
    DIST_FRAME_SEND = 3,
    DIST_FRAME_LINK = 4,
    DIST_FRAME_UNLINK = 5,
    DIST_FRAME_EXIT = 6,
    DIST_FRAME_MONITOR = 7,
    DIST_FRAME_DEMONITOR = 8,
    DIST_FRAME_DOWN = 9,
    DIST_FRAME_SPAWN_REQUEST = 10,
    DIST_FRAME_SPAWN_REPLY = 11,
    DIST_FRAME_TICK = 12,
    DIST_FRAME_GOODBYE = 13,
    /* 14, Fragment, never leaves this module: writers make them and readers join them. */
};

/* What a Send carries, in Send.kind. */
enum dist_send_kind {
    DIST_SEND_PLAIN = 0,
    DIST_SEND_CALL = 1,
    DIST_SEND_REPLY = 2,
};

/* Bytes that the frame does not own. data may be NULL when len is 0. */
struct dist_bytes {
    const uint8_t *data;
    size_t len;
};

/*
 * A PID as it travels: the node by name. id 0 is no PID, and is left off the wire. node "" is
 * the node at the sending end of the connection; NULL is taken as "" when encoding.
 */
struct dist_wire_pid {
    const char *node;
    uint64_t id;
    uint32_t creation;
};

/* A reference as it travels. All of n zero is no reference, and is left off the wire. */
struct dist_wire_ref {
    const char *node;
    uint32_t creation;
    uint32_t n[3];
};

/* Whom a Send, Monitor or Demonitor is for: a registered name when name is not NULL, else pid. */
struct dist_wire_target {
    struct dist_wire_pid pid;
    const char *name;
};

/*
 * One frame. Strings are NUL-terminated; a string on the wire ends at its first NUL. Encoding
 * reads NULL strings as "". In a decoded frame no string is NULL, and absent PIDs and
 * references read as all zero with node "".
 */
struct dist_frame {
    enum dist_frame_kind kind;
    union {
        struct {
            uint32_t version;
            const char *node;
            uint32_t creation;
            struct dist_bytes nonce;
            uint32_t flags;
        } hello;
        struct {
            struct dist_bytes mac;
        } auth;
        struct {
            struct dist_wire_pid from; /* none for sends from outside any actor */
            struct dist_wire_target to;
            const char *type;
            struct dist_bytes payload;
            enum dist_send_kind kind;
            struct dist_wire_ref ref; /* calls and replies */
        } send;
        /* LINK, UNLINK and EXIT; reason and link (along a link) are used by EXIT only. */
        struct {
            struct dist_wire_pid from;
            struct dist_wire_pid to;
            int32_t reason;
            int link;
        } link;
        /* MONITOR and DEMONITOR. */
        struct {
            struct dist_wire_pid from;
            struct dist_wire_target to;
            struct dist_wire_ref ref;
        } monitor;
        struct {
            struct dist_wire_pid from;
            struct dist_wire_pid to;
            struct dist_wire_ref ref;
            int32_t reason;
        } down;
        struct {
            struct dist_wire_pid from;
            uint64_t req_id;
            const char *behaviour;
            const char *arg_type;
            struct dist_bytes arg;
            uint32_t flags;
        } spawn_request;
        struct {
            struct dist_wire_pid to;
            uint64_t req_id;
            struct dist_wire_pid pid;
            int32_t error;
        } spawn_reply;
        struct {
            const char *reason;
        } goodbye;
    } u;
};

/* ---- Output buffer ----------------------------------------------------------------------------
 *
 * Frames are appended here, and the connection writes out what is pending once per loop
 * iteration, so that many frames share one write call (and one TLS record). The caller owns
 * the struct; dist__outbuf_done() frees what it holds.
 */
struct dist_outbuf {
    uint8_t *data;
    size_t head; /* first byte not yet written out */
    size_t tail; /* end of the pending bytes */
    size_t cap;
};

/* dist__outbuf_init: an empty buffer. It allocates nothing until the first append. */
void dist__outbuf_init(struct dist_outbuf *b);

/* dist__outbuf_done: free the buffer's memory. Accepts a zeroed or already-done buffer. */
void dist__outbuf_done(struct dist_outbuf *b);

/*
 * dist__outbuf_append: reserve @n more pending bytes at the end and return where to write
 * them, or NULL when memory runs out (the buffer is then unchanged). The pointer is good
 * until the next call on @b.
 */
uint8_t *dist__outbuf_append(struct dist_outbuf *b, size_t n);

/* dist__outbuf_pending: how many bytes wait to be written out. */
static inline size_t dist__outbuf_pending(const struct dist_outbuf *b)
{
    return b->tail - b->head;
}

/* dist__outbuf_data: the pending bytes, dist__outbuf_pending() of them; good until the next
 * append. */
static inline const uint8_t *dist__outbuf_data(const struct dist_outbuf *b)
{
    return b->data + b->head;
}

/* dist__outbuf_consume: drop @n written bytes (at most the pending count) from the front. */
void dist__outbuf_consume(struct dist_outbuf *b, size_t n);

/* ---- Encoding ------------------------------------------------------------------------------ */

/*
 * dist__frame_encode: append @f to @out as u32 Length and a packed Frame, whole, whatever its
 * size: dist__frame_writer_put() is what fragments. Copies everything @f points to.
 * Returns 0, or:
 *   DIST_EINVAL      an unknown kind or send kind
 *   DIST_EFRAME_TOO_BIG  the packed frame does not fit the u32 length
 *   -ENOMEM
 * On failure @out is unchanged.
 */
int dist__frame_encode(struct dist_outbuf *out, const struct dist_frame *f);

/* ---- Writer: fragmentation and scheduling ---------------------------------------------------
 *
 * A writer owns the connection's output buffer. dist__frame_writer_put() appends a small frame
 * to it at once; a large one is packed into a stream of its own. dist__frame_writer_fill()
 * then moves fragments into the buffer, one at a time from each stream in turn, until the
 * buffer holds a given amount. A connection calls fill before each write, so a frame put
 * later waits behind at most that amount of fragments.
 *
 * Order: frames put with the same non-zero lane go out in the order they were put, even
 * behind a large one. The connection uses one lane per sending process, which keeps
 * Erlang's order between a pair of processes. Lane 0 frames are ordered among themselves
 * only while they are small; a large lane 0 frame is a lane of its own.
 *
 * A writer keeps to the peer's limits: it starts no more streams at once, and no more bytes
 * in them, than the peer's reader accepts, and refuses a message too large for it. Looking up
 * a lane costs a step per lane with a large message in flight.
 */
struct dist_lane;
struct dist_qitem;

struct dist_frame_writer {
    struct dist_outbuf out;
    struct dist_frame_limits lim; /* the peer's */
    size_t frag_size;
    uint64_t next_stream;   /* the id of the next stream to start, from 1 up */
    size_t queued;          /* bytes waiting in lanes, not yet in out */
    struct dist_lane *head; /* lanes with frames queued, in round-robin order */
    struct dist_lane *tail;
    size_t nlanes;
    size_t open_streams;       /* streams started and not finished */
    size_t open_bytes;         /* the sum of their totals */
    struct dist_qitem *spares; /* large items sent, kept for reuse */
    size_t spare_bytes;        /* their capacity, at most SPARE_MAX */
};

/*
 * dist__frame_writer_init: an empty writer whose fragments, length prefix included, are at
 * most @frag_size bytes (0: DIST_FRAME_FRAG_SIZE), for a peer whose reader has limits @lim
 * (NULL: all defaults). Returns 0, or DIST_EINVAL for a @frag_size under DIST_FRAME_FRAG_MIN
 * or whose fragments the peer's max_frame would refuse.
 */
int dist__frame_writer_init(struct dist_frame_writer *w, size_t frag_size,
                            const struct dist_frame_limits *lim);

/* dist__frame_writer_done: free everything queued and the output buffer. Accepts NULL. */
void dist__frame_writer_done(struct dist_frame_writer *w);

/*
 * dist__frame_writer_put: queue @f on @lane. Copies everything @f points to.
 * Returns 0, or DIST_EINVAL, DIST_EFRAME_TOO_BIG (also for a message over the peer's
 * max_message or max_pending) or -ENOMEM; on failure nothing is queued.
 */
int dist__frame_writer_put(struct dist_frame_writer *w, const struct dist_frame *f, uint64_t lane);

/*
 * dist__frame_writer_fill: move fragments (and the frames queued behind them) into w->out
 * while it holds fewer than @budget bytes and streams remain. Returns 0 or -ENOMEM; on
 * -ENOMEM what was moved stays moved and the rest stays queued.
 */
int dist__frame_writer_fill(struct dist_frame_writer *w, size_t budget);

/*
 * dist__frame_writer_pending: the bytes not yet written out, in w->out and queued; compare
 * it with a high-water mark to report "busy". Fragment headers not yet made are not counted.
 */
static inline size_t dist__frame_writer_pending(const struct dist_frame_writer *w)
{
    return dist__outbuf_pending(&w->out) + w->queued;
}

/* ---- Reader -----------------------------------------------------------------------------------
 *
 * Feed it bytes as they arrive, then take frames until it has none. Frames are decoded into
 * an arena that the reader keeps, so a small frame costs no allocation once the reader's
 * buffers have grown to the connection's traffic.
 *
 * An error is final: the reader returns it from every later call, and the connection closes.
 */
struct dist_rx_stream;

struct dist_frame_reader {
    struct dist_frame_limits lim;
    uint8_t *buf; /* a partial frame, or frames not yet taken */
    size_t start, end, cap;
    int err;                        /* the first error, or 0 */
    void *msg;                      /* the frame last unpacked, until the next call */
    struct dist_rx_stream *done;    /* the joined bytes it came from, until the next call */
    struct dist_rx_stream *streams; /* messages being reassembled */
    size_t nstreams, pending;       /* their count and the sum of their totals */
    uint64_t last_stream;           /* the highest stream id started so far */
    uint8_t *arena;
    size_t arena_used, arena_cap;
    unsigned spilled; /* allocations the arena could not hold, made with malloc */
    int alloc_failed; /* one of those failed while unpacking */
};

/*
 * dist__frame_reader_init: an empty reader with limits @lim (NULL: all defaults). Returns 0,
 * or -ENOMEM. Free it with dist__frame_reader_done().
 */
int dist__frame_reader_init(struct dist_frame_reader *r, const struct dist_frame_limits *lim);

/* dist__frame_reader_done: free all the reader holds. Frames taken from it become invalid. */
void dist__frame_reader_done(struct dist_frame_reader *r);

/*
 * dist__frame_reader_feed: add @len bytes that arrived. Copies them. Returns 0, or the
 * reader's error, or DIST_EFRAME_TOO_BIG when the frame at the front announces a Length over
 * the limit (nothing is allocated for it), or -ENOMEM (the reader then keeps that error). Take
 * the frames out with dist__frame_reader_next() before feeding more, so that the reader holds
 * at most one partial frame besides one chunk.
 */
int dist__frame_reader_feed(struct dist_frame_reader *r, const void *data, size_t len);

/*
 * dist__frame_reader_next: take the next whole frame into @out. Fragments are joined
 * silently; only the message they carry comes out.
 * Returns 1 with @out filled, 0 when more bytes are needed, or:
 *   DIST_EFRAME_TOO_BIG  a Length or a fragmented message over the limits
 *   DIST_EFRAME_BAD      a frame that does not unpack, has no known body (a zero Length is
 *                        one), misses a field its kind needs, or is a fragment inside a
 *                        fragmented message
 *   DIST_EFRAG_UNKNOWN   a continuing fragment for a stream that was not started
 *   DIST_EFRAG_ORDER     a stream started again, or with an id not above earlier ones
 *   DIST_EFRAG_LENGTH    a stream's chunks run past, or stop short of, its total
 *   DIST_EFRAG_STREAMS   more streams, or more bytes in streams, than the limits allow
 *   -ENOMEM
 * Every pointer in @out points into the reader and is good until the next call on @r.
 */
int dist__frame_reader_next(struct dist_frame_reader *r, struct dist_frame *out);

/* ---- Shared by frame.c and framing.c ---------------------------------------------------------
 *
 * frame.c packs and unpacks one frame; framing.c adds the length prefixes, the fragments and
 * the queues. Nothing else calls these.
 */

/* One Fragment frame's body. chunk is borrowed. */
struct dist_fragment {
    uint64_t stream;
    uint64_t total; /* the whole message's size, in the first fragment only; else 0 */
    struct dist_bytes chunk;
    int last;
};

/*
 * Where a frame of @n packed bytes goes: set *@p to room for all @n and return 0, or return
 * DIST_EFRAME_TOO_BIG or -ENOMEM and leave everything as it was. The serializer packs the
 * frame there before it returns, and never calls back when it fails first.
 */
typedef int (*dist_frame_reserve_cb)(size_t n, uint8_t **p, void *user_data);

/*
 * dist__frame_serialize: measure @f, take room for it from @reserve and pack it there, with
 * no length prefix. Copies everything @f points to. Returns 0, DIST_EINVAL for an unknown
 * kind or send kind (@reserve is then not called), or what @reserve returned.
 */
int dist__frame_serialize(const struct dist_frame *f, dist_frame_reserve_cb reserve,
                          void *user_data);

/* dist__fragment_serialize: the same for a Fragment frame carrying @frag. */
int dist__fragment_serialize(const struct dist_fragment *frag, dist_frame_reserve_cb reserve,
                             void *user_data);

/* What dist__frame_parse() found. */
enum {
    DIST_PARSED_FRAME = 1,
    DIST_PARSED_FRAGMENT = 2,
};

/*
 * dist__frame_parse: decode the packed Frame of @n bytes at @body, without its length prefix.
 * Strings and the unpacked message are kept in @r (its arena, r->msg) until
 * dist__frame_release(); a Send's payload is borrowed from @body.
 * Returns DIST_PARSED_FRAME with @out filled, DIST_PARSED_FRAGMENT with @frag filled (its chunk
 * borrowed from r->msg) when @frag is not NULL and the frame is a Fragment, or:
 *   DIST_EFRAME_BAD  a frame that does not unpack, has no known body, misses a field its kind
 *                    needs, or is a Fragment when @frag is NULL
 *   -ENOMEM
 */
int dist__frame_parse(struct dist_frame_reader *r, const uint8_t *body, size_t n,
                      struct dist_frame *out, struct dist_fragment *frag);

/* dist__frame_release: let go of the frame last handed out by @r, and empty the arena. */
void dist__frame_release(struct dist_frame_reader *r);

#endif /* DIST_FRAME_H */
