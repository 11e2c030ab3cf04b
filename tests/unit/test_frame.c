/*
 * test_frame.c: the node-to-node wire codec (libdist/src/frame.h): frames round trip through
 * the encoder and the reader, the reader copes with any chunking and refuses bad input, large
 * messages are fragmented, interleaved and reassembled within their limits.
 *
 * Fragment frames that the reader must refuse are written by hand from the protobuf wire
 * format, independently of the writer under test.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "frame.h"

/* ---- Helpers ------------------------------------------------------------------------------- */

static struct dist_frame_reader rd;
static struct dist_frame_writer wr;
static struct dist_outbuf ob;

static void setup(void)
{
    cr_assert_eq(dist__frame_reader_init(&rd, NULL), 0);
    cr_assert_eq(dist__frame_writer_init(&wr, 0, NULL), 0);
    dist__outbuf_init(&ob);
}

static void teardown(void)
{
    dist__frame_reader_done(&rd);
    dist__frame_writer_done(&wr);
    dist__outbuf_done(&ob);
}

TestSuite(frame, .init = setup, .fini = teardown);

static struct dist_wire_pid wpid(const char *node, uint64_t id, uint32_t creation)
{
    return (struct dist_wire_pid){.node = node, .id = id, .creation = creation};
}

static void assert_pid(struct dist_wire_pid got, struct dist_wire_pid want)
{
    cr_assert_str_eq(got.node, want.node);
    cr_assert_eq(got.id, want.id);
    cr_assert_eq(got.creation, want.creation);
}

static void assert_ref(struct dist_wire_ref got, struct dist_wire_ref want)
{
    cr_assert_str_eq(got.node, want.node);
    cr_assert_eq(got.creation, want.creation);
    cr_assert_arr_eq(got.n, want.n, sizeof(got.n));
}

static void assert_bytes(struct dist_bytes got, const void *want, size_t len)
{
    cr_assert_eq(got.len, len);
    if (len > 0)
        cr_assert_arr_eq(got.data, want, len);
}

/* Encode @in, feed its bytes to the reader, and take exactly one frame into @out. */
static void roundtrip(const struct dist_frame *in, struct dist_frame *out)
{
    cr_assert_eq(dist__frame_encode(&ob, in), 0);
    size_t n = dist__outbuf_pending(&ob);
    cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&ob), n), 0);
    dist__outbuf_consume(&ob, n);
    cr_assert_eq(dist__frame_reader_next(&rd, out), 1);
    cr_assert_eq(out->kind, in->kind);
    cr_assert_eq(rd.end - rd.start, 0, "the reader kept bytes of a whole frame");
}

/* Move everything the writer makes, in rounds of @budget bytes, into the reader. */
static void pump_round(size_t budget)
{
    cr_assert_eq(dist__frame_writer_fill(&wr, budget), 0);
    size_t n = dist__outbuf_pending(&wr.out);
    cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&wr.out), n), 0);
    dist__outbuf_consume(&wr.out, n);
}

/* What a test remembers of a frame after the reader has moved on. */
struct seen {
    enum dist_frame_kind kind;
    uint64_t from;
    size_t payload_len;
    int payload_ok;
};

static uint8_t pattern(size_t i, uint64_t seed)
{
    return (uint8_t)((i * 131u) ^ (seed * 29u) ^ (i >> 9));
}

static int payload_check(struct dist_bytes p, uint64_t seed)
{
    for (size_t i = 0; i < p.len; i++)
        if (p.data[i] != pattern(i, seed))
            return 0;
    return 1;
}

/* Take every frame the reader has into @seen (at most @cap); returns how many. */
static size_t drain(struct seen *seen, size_t cap)
{
    struct dist_frame f;
    size_t n = 0;
    int rc;
    while ((rc = dist__frame_reader_next(&rd, &f)) == 1) {
        cr_assert_lt(n, cap, "more frames than expected");
        seen[n] = (struct seen){.kind = f.kind};
        if (f.kind == DIST_FRAME_SEND) {
            seen[n].from = f.u.send.from.id;
            seen[n].payload_len = f.u.send.payload.len;
            seen[n].payload_ok = payload_check(f.u.send.payload, f.u.send.from.id);
        }
        n++;
    }
    cr_assert_eq(rc, 0, "reader failed: %s", dist_err_name(rc));
    return n;
}

/* A Send from process @id whose payload of @len bytes is a pattern seeded by @id. */
static struct dist_frame send_frame(uint64_t id, size_t len, uint8_t **buf)
{
    *buf = malloc(len > 0 ? len : 1);
    cr_assert_not_null(*buf);
    for (size_t i = 0; i < len; i++)
        (*buf)[i] = pattern(i, id);
    struct dist_frame f = {.kind = DIST_FRAME_SEND};
    f.u.send.from = wpid("a@h", id, 1);
    f.u.send.to.pid = wpid("b@h", 7, 2);
    f.u.send.type = "test.Blob";
    f.u.send.payload = (struct dist_bytes){*buf, len};
    return f;
}

static const struct dist_frame tick = {.kind = DIST_FRAME_TICK};

/* A cursor for writing protobuf wire bytes by hand. */
struct wr {
    uint8_t b[256];
    size_t n;
};

static void w_byte(struct wr *w, unsigned v)
{
    cr_assert_lt(w->n, sizeof(w->b));
    w->b[w->n++] = (uint8_t)v;
}

static void w_varint(struct wr *w, uint64_t v)
{
    while (v >= 0x80) {
        w_byte(w, (unsigned)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    w_byte(w, (unsigned)v);
}

/* Feed u32 Length | Frame{fragment: {stream, total, chunk, last}} to the reader. */
static int feed_fragment(uint64_t stream, uint64_t total, const void *chunk, size_t len, int last)
{
    struct wr frag = {0}, frame = {0};
    w_byte(&frag, 0x08); /* field 1, varint */
    w_varint(&frag, stream);
    if (total != 0) {
        w_byte(&frag, 0x10);
        w_varint(&frag, total);
    }
    if (len > 0) {
        w_byte(&frag, 0x1a);
        w_varint(&frag, len);
        cr_assert_lt(frag.n + len, sizeof(frag.b));
        memcpy(frag.b + frag.n, chunk, len);
        frag.n += len;
    }
    if (last) {
        w_byte(&frag, 0x20);
        w_byte(&frag, 1);
    }
    uint8_t pre[4] = {0};
    w_byte(&frame, 0x72); /* Frame field 14, length-delimited */
    w_varint(&frame, frag.n);
    pre[3] = (uint8_t)(frame.n + frag.n);
    cr_assert_eq(dist__frame_reader_feed(&rd, pre, 4), 0);
    cr_assert_eq(dist__frame_reader_feed(&rd, frame.b, frame.n), 0);
    return dist__frame_reader_feed(&rd, frag.b, frag.n);
}

static int next_rc(void)
{
    struct dist_frame f;
    return dist__frame_reader_next(&rd, &f);
}

/* ---- Round trips --------------------------------------------------------------------------- */

Test(frame, hello_and_auth_round_trip)
{
    static const uint8_t nonce[32] = {1, 2, 3, [31] = 0xff};
    static const uint8_t mac[4] = {0, 0xde, 0xad, 0};
    struct dist_frame in = {.kind = DIST_FRAME_HELLO}, out;
    in.u.hello.version = 3;
    in.u.hello.node = "alice@host.example";
    in.u.hello.creation = 0xfffffffeu;
    in.u.hello.nonce = (struct dist_bytes){nonce, sizeof(nonce)};
    in.u.hello.flags = 1u << 31;
    roundtrip(&in, &out);
    cr_assert_eq(out.u.hello.version, 3);
    cr_assert_str_eq(out.u.hello.node, "alice@host.example");
    cr_assert_eq(out.u.hello.creation, 0xfffffffeu);
    assert_bytes(out.u.hello.nonce, nonce, sizeof(nonce));
    cr_assert_eq(out.u.hello.flags, 1u << 31);

    in = (struct dist_frame){.kind = DIST_FRAME_AUTH};
    in.u.auth.mac = (struct dist_bytes){mac, sizeof(mac)};
    roundtrip(&in, &out);
    assert_bytes(out.u.auth.mac, mac, sizeof(mac));
}

Test(frame, send_round_trips_pids_refs_and_payload)
{
    static const uint8_t payload[16] = "0123456789abcdef";
    struct dist_frame in = {.kind = DIST_FRAME_SEND}, out;
    in.u.send.from = wpid("alice@h", 0xfedcba9876543210ull, 0xffffffffu);
    in.u.send.to.pid = wpid("", UINT64_MAX, 1);
    in.u.send.type = "chat.Say";
    in.u.send.payload = (struct dist_bytes){payload, sizeof(payload)};
    in.u.send.kind = DIST_SEND_CALL;
    in.u.send.ref = (struct dist_wire_ref){"alice@h", 9, {1, 0xffffffffu, 3}};
    roundtrip(&in, &out);
    assert_pid(out.u.send.from, in.u.send.from);
    assert_pid(out.u.send.to.pid, in.u.send.to.pid);
    cr_assert_null(out.u.send.to.name);
    cr_assert_str_eq(out.u.send.type, "chat.Say");
    assert_bytes(out.u.send.payload, payload, sizeof(payload));
    cr_assert_eq(out.u.send.kind, DIST_SEND_CALL);
    assert_ref(out.u.send.ref, in.u.send.ref);
    cr_assert_eq(rd.spilled, 0, "a small frame allocated outside the reader's arena");
}

Test(frame, send_by_name_from_nobody)
{
    struct dist_frame in = {.kind = DIST_FRAME_SEND}, out;
    in.u.send.to.name = "logger";
    in.u.send.kind = DIST_SEND_REPLY;
    roundtrip(&in, &out);
    cr_assert_str_eq(out.u.send.to.name, "logger");
    assert_pid(out.u.send.from, wpid("", 0, 0));
    assert_ref(out.u.send.ref, (struct dist_wire_ref){"", 0, {0, 0, 0}});
    cr_assert_str_eq(out.u.send.type, "");
    cr_assert_eq(out.u.send.payload.len, 0);
    cr_assert_eq(out.u.send.kind, DIST_SEND_REPLY);
}

Test(frame, link_unlink_exit_round_trip)
{
    /* The last: an exit along a link, told apart from an explicit one. */
    static const enum dist_frame_kind kinds[] = {DIST_FRAME_LINK, DIST_FRAME_UNLINK,
                                                 DIST_FRAME_EXIT, DIST_FRAME_EXIT};
    for (size_t i = 0; i < 4; i++) {
        struct dist_frame in = {.kind = kinds[i]}, out;
        in.u.link.from = wpid("a@h", 1ull << 40, 5);
        in.u.link.to = wpid("b@h", 2, 6);
        in.u.link.reason = kinds[i] == DIST_FRAME_EXIT ? -77 : 0;
        in.u.link.link = i == 3;
        roundtrip(&in, &out);
        assert_pid(out.u.link.from, in.u.link.from);
        assert_pid(out.u.link.to, in.u.link.to);
        cr_assert_eq(out.u.link.reason, in.u.link.reason);
        cr_assert_eq(out.u.link.link, in.u.link.link);
    }
}

Test(frame, monitor_demonitor_down_round_trip)
{
    struct dist_wire_ref ref = {"a@h", 5, {10, 20, 30}};
    struct dist_frame in = {.kind = DIST_FRAME_MONITOR}, out;
    in.u.monitor.from = wpid("a@h", 3, 5);
    in.u.monitor.to.pid = wpid("b@h", 4, 6);
    in.u.monitor.ref = ref;
    roundtrip(&in, &out);
    assert_pid(out.u.monitor.from, in.u.monitor.from);
    assert_pid(out.u.monitor.to.pid, in.u.monitor.to.pid);
    assert_ref(out.u.monitor.ref, ref);

    in.kind = DIST_FRAME_DEMONITOR;
    in.u.monitor.to.name = "registry";
    roundtrip(&in, &out);
    cr_assert_str_eq(out.u.monitor.to.name, "registry");
    assert_ref(out.u.monitor.ref, ref);

    in = (struct dist_frame){.kind = DIST_FRAME_DOWN};
    in.u.down.from = wpid("b@h", 4, 6);
    in.u.down.to = wpid("a@h", 3, 5);
    in.u.down.ref = ref;
    in.u.down.reason = -2;
    roundtrip(&in, &out);
    assert_pid(out.u.down.from, in.u.down.from);
    assert_pid(out.u.down.to, in.u.down.to);
    assert_ref(out.u.down.ref, ref);
    cr_assert_eq(out.u.down.reason, -2);
}

Test(frame, spawn_request_and_reply_round_trip)
{
    static const uint8_t arg[3] = {9, 8, 7};
    struct dist_frame in = {.kind = DIST_FRAME_SPAWN_REQUEST}, out;
    in.u.spawn_request.from = wpid("a@h", 11, 1);
    in.u.spawn_request.req_id = UINT64_MAX - 1;
    in.u.spawn_request.behaviour = "worker";
    in.u.spawn_request.arg_type = "worker.Args";
    in.u.spawn_request.arg = (struct dist_bytes){arg, sizeof(arg)};
    in.u.spawn_request.flags = 3;
    roundtrip(&in, &out);
    assert_pid(out.u.spawn_request.from, in.u.spawn_request.from);
    cr_assert_eq(out.u.spawn_request.req_id, UINT64_MAX - 1);
    cr_assert_str_eq(out.u.spawn_request.behaviour, "worker");
    cr_assert_str_eq(out.u.spawn_request.arg_type, "worker.Args");
    assert_bytes(out.u.spawn_request.arg, arg, sizeof(arg));
    cr_assert_eq(out.u.spawn_request.flags, 3);

    in = (struct dist_frame){.kind = DIST_FRAME_SPAWN_REPLY};
    in.u.spawn_reply.to = wpid("a@h", 11, 1);
    in.u.spawn_reply.req_id = 42;
    in.u.spawn_reply.pid = wpid("b@h", 99, 2);
    in.u.spawn_reply.error = DIST_EINVAL;
    roundtrip(&in, &out);
    assert_pid(out.u.spawn_reply.to, in.u.spawn_reply.to);
    cr_assert_eq(out.u.spawn_reply.req_id, 42);
    assert_pid(out.u.spawn_reply.pid, in.u.spawn_reply.pid);
    cr_assert_eq(out.u.spawn_reply.error, DIST_EINVAL);
}

Test(frame, tick_and_goodbye_round_trip)
{
    struct dist_frame in = {.kind = DIST_FRAME_GOODBYE}, out;
    in.u.goodbye.reason = "graceful_shutdown";
    roundtrip(&in, &out);
    cr_assert_str_eq(out.u.goodbye.reason, "graceful_shutdown");
    roundtrip(&tick, &out);
}

Test(frame, tick_wire_bytes)
{
    /* Length 2, then Frame field 12 (tick), length-delimited, empty. */
    static const uint8_t want[] = {0, 0, 0, 2, 0x62, 0x00};
    cr_assert_eq(dist__frame_encode(&ob, &tick), 0);
    cr_assert_eq(dist__outbuf_pending(&ob), sizeof(want));
    cr_assert_arr_eq(dist__outbuf_data(&ob), want, sizeof(want));
}

/* Send{from: Pid{"a", 1, 2}, to_name: "n", type: "t", payload: "xy", kind: call}. */
static const uint8_t send_wire[] = {0,    0,   0,    23,   0x1a, 21,  0x0a, 7,    0x0a,
                                    1,    'a', 0x10, 1,    0x18, 2,   0x1a, 1,    'n',
                                    0x22, 1,   't',  0x2a, 2,    'x', 'y',  0x30, 1};

static void assert_send_wire(const struct dist_frame *f)
{
    cr_assert_eq(f->kind, DIST_FRAME_SEND);
    assert_pid(f->u.send.from, wpid("a", 1, 2));
    cr_assert_str_eq(f->u.send.to.name, "n");
    cr_assert_str_eq(f->u.send.type, "t");
    assert_bytes(f->u.send.payload, "xy", 2);
    cr_assert_eq(f->u.send.kind, DIST_SEND_CALL);
}

Test(frame, send_wire_bytes)
{
    struct dist_frame in = {.kind = DIST_FRAME_SEND}, out;
    in.u.send.from = wpid("a", 1, 2);
    in.u.send.to.name = "n";
    in.u.send.type = "t";
    in.u.send.payload = (struct dist_bytes){(const uint8_t *)"xy", 2};
    in.u.send.kind = DIST_SEND_CALL;
    cr_assert_eq(dist__frame_encode(&ob, &in), 0);
    cr_assert_eq(dist__outbuf_pending(&ob), sizeof(send_wire));
    cr_assert_arr_eq(dist__outbuf_data(&ob), send_wire, sizeof(send_wire));
    cr_assert_eq(dist__frame_reader_feed(&rd, send_wire, sizeof(send_wire)), 0);
    cr_assert_eq(dist__frame_reader_next(&rd, &out), 1);
    assert_send_wire(&out);
}

Test(frame, send_in_any_field_order_with_unknown_fields)
{
    /* The same Send, its fields and the Pid's reversed, with an unknown field 15 at the end
     * and type given twice (the last one counts). */
    static const uint8_t wire[] = {0,   0,    0, 28,   0x1a, 26,   0x30, 1,    0x2a, 2,   'x',
                                   'y', 0x1a, 1, 'n',  0x22, 1,    'z',  0x22, 1,    't', 0x0a,
                                   7,   0x18, 2, 0x10, 1,    0x0a, 1,    'a',  0x78, 5};
    struct dist_frame out;
    cr_assert_eq(dist__frame_reader_feed(&rd, wire, sizeof(wire)), 0);
    cr_assert_eq(dist__frame_reader_next(&rd, &out), 1);
    assert_send_wire(&out);
}

Test(frame, encode_refuses_unknown_kinds)
{
    struct dist_frame bad = {.kind = (enum dist_frame_kind)14};
    cr_assert_eq(dist__frame_encode(&ob, &bad), DIST_EINVAL);
    bad = (struct dist_frame){.kind = DIST_FRAME_SEND};
    bad.u.send.to.name = "x";
    bad.u.send.kind = (enum dist_send_kind)3;
    cr_assert_eq(dist__frame_encode(&ob, &bad), DIST_EINVAL);
    cr_assert_eq(dist__outbuf_pending(&ob), 0);
    cr_assert_eq(dist__frame_writer_put(&wr, &bad, 0), DIST_EINVAL);
    cr_assert_eq(dist__frame_writer_pending(&wr), 0);
}

/* ---- Chunking ------------------------------------------------------------------------------ */

Test(frame, byte_by_byte_input)
{
    uint8_t *buf[3];
    struct dist_frame f[3] = {send_frame(1, 10, &buf[0]), send_frame(2, 0, &buf[1]),
                              send_frame(3, 300, &buf[2])};
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(dist__frame_encode(&ob, &f[i]), 0);
        cr_assert_eq(dist__frame_encode(&ob, &tick), 0);
    }
    struct seen seen[6];
    size_t got = 0, total = dist__outbuf_pending(&ob);
    for (size_t i = 0; i < total; i++) {
        cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&ob) + i, 1), 0);
        got += drain(seen + got, 6 - got);
    }
    cr_assert_eq(got, 6);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(seen[2 * i].kind, DIST_FRAME_SEND);
        cr_assert_eq(seen[2 * i].from, i + 1);
        cr_assert_eq(seen[2 * i].payload_len, f[i].u.send.payload.len);
        cr_assert(seen[2 * i].payload_ok);
        cr_assert_eq(seen[2 * i + 1].kind, DIST_FRAME_TICK);
        free(buf[i]);
    }
}

Test(frame, many_frames_in_one_chunk)
{
    enum { N = 5000 };
    uint8_t *buf;
    for (uint64_t i = 1; i <= N; i++) {
        struct dist_frame f = send_frame(i, 16, &buf);
        cr_assert_eq(dist__frame_encode(&ob, &f), 0);
        free(buf);
    }
    /* Coalesced: all of them wait in one buffer for one write. */
    cr_assert_gt(dist__outbuf_pending(&ob), N * 16);
    cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&ob), dist__outbuf_pending(&ob)),
                 0);
    static struct seen seen[N];
    cr_assert_eq(drain(seen, N), N);
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(seen[i].from, i + 1);
        cr_assert(seen[i].payload_ok);
    }
    cr_assert_eq(next_rc(), 0);
}

Test(frame, outbuf_partial_writes)
{
    for (int i = 0; i < 10; i++)
        cr_assert_eq(dist__frame_encode(&ob, &tick), 0);
    cr_assert_eq(dist__outbuf_pending(&ob), 60);
    dist__outbuf_consume(&ob, 7);
    cr_assert_eq(dist__outbuf_pending(&ob), 53);
    cr_assert_eq(dist__outbuf_data(&ob)[0], 0x00); /* second frame's length, byte 2 */
    cr_assert_eq(dist__outbuf_data(&ob)[2], 0x02);
    dist__outbuf_consume(&ob, 1000);
    cr_assert_eq(dist__outbuf_pending(&ob), 0);
}

/* ---- Bad input ----------------------------------------------------------------------------- */

Test(frame, garbage_is_refused_for_good)
{
    static const uint8_t junk[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(dist__frame_reader_feed(&rd, junk, sizeof(junk)), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
    cr_assert_eq(dist__frame_reader_feed(&rd, junk, sizeof(junk)), DIST_EFRAME_BAD);
}

Test(frame, zero_length_frame_is_bad)
{
    static const uint8_t zero[] = {0, 0, 0, 0};
    cr_assert_eq(dist__frame_reader_feed(&rd, zero, sizeof(zero)), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
}

Test(frame, missing_fields_are_bad)
{
    /* Link{from: Pid{id: 5}} without its `to`. */
    static const uint8_t link[] = {0, 0, 0, 6, 0x22, 0x04, 0x0a, 0x02, 0x10, 0x05};
    cr_assert_eq(dist__frame_reader_feed(&rd, link, sizeof(link)), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
}

Test(frame, send_without_target_is_bad)
{
    /* Send{type: "t"}. */
    static const uint8_t send[] = {0, 0, 0, 5, 0x1a, 0x03, 0x22, 0x01, 't'};
    cr_assert_eq(dist__frame_reader_feed(&rd, send, sizeof(send)), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
}

Test(frame, oversized_length_refused_before_allocating)
{
    struct dist_frame_limits lim = {.max_frame = 1024};
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    /* Exactly the limit is fine and waits for its body. */
    static const uint8_t at_limit[] = {0, 0, 4, 0};
    cr_assert_eq(dist__frame_reader_feed(&rd, at_limit, 4), 0);
    cr_assert_eq(next_rc(), 0);
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    /* 3 GiB announced, in a chunk of 4: refused on the spot, with nothing sized for it. */
    static const uint8_t huge[] = {0xc0, 0, 0, 0};
    cr_assert_eq(dist__frame_reader_feed(&rd, huge, 2), 0);
    cr_assert_eq(dist__frame_reader_feed(&rd, huge + 2, 2), DIST_EFRAME_TOO_BIG);
    cr_assert_lt(rd.cap, 64 * 1024);
    cr_assert_eq(next_rc(), DIST_EFRAME_TOO_BIG);
}

Test(frame, one_over_the_limit_is_refused)
{
    struct dist_frame_limits lim = {.max_frame = 1024};
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    uint8_t *buf;
    struct dist_frame f = send_frame(1, 100, &buf);
    cr_assert_eq(dist__frame_encode(&ob, &f), 0);
    free(buf);
    static const uint8_t over[] = {0, 0, 4, 1};
    cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&ob), dist__outbuf_pending(&ob)),
                 0);
    cr_assert_eq(dist__frame_reader_feed(&rd, over, 4), 0);
    /* The good frame before it still comes out. */
    cr_assert_eq(next_rc(), 1);
    cr_assert_eq(next_rc(), DIST_EFRAME_TOO_BIG);
}

Test(frame, error_names)
{
    cr_assert_str_eq(dist_err_name(DIST_EFRAME_TOO_BIG), "DIST_EFRAME_TOO_BIG");
    cr_assert_str_eq(dist_err_name(DIST_EFRAME_BAD), "DIST_EFRAME_BAD");
    cr_assert_str_eq(dist_err_name(DIST_EFRAG_STREAMS), "DIST_EFRAG_STREAMS");
    cr_assert_str_neq(dist_strerror(DIST_EFRAG_LENGTH), "unknown error");
}

/* ---- Fragmentation --------------------------------------------------------------------------- */

Test(frame, large_message_is_fragmented_and_reassembled)
{
    enum { LEN = 3 * 1024 * 1024 + 17 };
    uint8_t *buf;
    struct dist_frame f = send_frame(77, LEN, &buf);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 0), 0);
    free(buf); /* the writer copied it */
    cr_assert_geq(dist__frame_writer_pending(&wr), LEN);
    cr_assert_eq(dist__frame_writer_fill(&wr, SIZE_MAX), 0);
    cr_assert_eq(dist__frame_writer_pending(&wr), dist__outbuf_pending(&wr.out));

    /* Every frame on the wire is at most 64 KiB, length prefix included. */
    const uint8_t *p = dist__outbuf_data(&wr.out);
    size_t left = dist__outbuf_pending(&wr.out), frames = 0;
    while (left > 0) {
        size_t n = 4 + (((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3]);
        cr_assert_leq(n, DIST_FRAME_FRAG_SIZE);
        cr_assert_leq(n, left);
        p += n;
        left -= n;
        frames++;
    }
    cr_assert_geq(frames, LEN / DIST_FRAME_FRAG_SIZE + 1);

    struct seen seen[1];
    size_t got = 0, total = dist__outbuf_pending(&wr.out);
    for (size_t off = 0; off < total; off += 10000) {
        size_t n = total - off < 10000 ? total - off : 10000;
        cr_assert_eq(dist__frame_reader_feed(&rd, dist__outbuf_data(&wr.out) + off, n), 0);
        got += drain(seen + got, 1 - got);
        cr_assert_eq(got, off + n == total ? 1 : 0);
    }
    cr_assert_eq(seen[0].from, 77);
    cr_assert_eq(seen[0].payload_len, LEN);
    cr_assert(seen[0].payload_ok);
    cr_assert_eq(rd.nstreams, 0);
    cr_assert_eq(rd.pending, 0);
}

Test(frame, sent_large_messages_leave_bounded_spares_that_are_reused)
{
    enum { LEN = 200 * 1024, N = 40 };
    struct seen seen[N];
    uint8_t *buf;
    struct dist_frame f = send_frame(5, LEN, &buf);

    /* One sent: its memory is kept, and the next message of that size takes it back. */
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 5), 0);
    while (dist__frame_writer_pending(&wr) > 0)
        pump_round(64 * 1024);
    cr_assert_eq(drain(seen, N), 1);
    cr_assert_geq(wr.spare_bytes, LEN);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 5), 0);
    cr_assert_eq(wr.spare_bytes, 0, "a second message of the same size did not reuse the spare");

    /* Many sent: at most 4 MiB of spares stay, and what arrives is intact. */
    for (int i = 1; i < N; i++)
        cr_assert_eq(dist__frame_writer_put(&wr, &f, 5), 0);
    while (dist__frame_writer_pending(&wr) > 0)
        pump_round(64 * 1024);
    cr_assert_eq(drain(seen, N), N);
    for (int i = 0; i < N; i++)
        cr_assert(seen[i].payload_ok && seen[i].payload_len == LEN);
    cr_assert_gt(wr.spare_bytes, 0);
    cr_assert_leq(wr.spare_bytes, 4u * 1024 * 1024);
    free(buf);
}

Test(frame, small_frames_overtake_a_large_one)
{
    uint8_t *big, *small;
    struct dist_frame f = send_frame(1, 1024 * 1024, &big);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 1), 0);
    pump_round(64 * 1024);
    struct seen seen[4];
    cr_assert_eq(drain(seen, 4), 0);
    cr_assert_eq(rd.nstreams, 1, "the large message has started");

    /* A tick and another process's message, put while the large one is half way. */
    cr_assert_eq(dist__frame_writer_put(&wr, &tick, 0), 0);
    f = send_frame(2, 16, &small);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 2), 0);
    pump_round(64 * 1024);
    cr_assert_eq(drain(seen, 4), 2);
    cr_assert_eq(seen[0].kind, DIST_FRAME_TICK);
    cr_assert_eq(seen[1].from, 2);
    cr_assert_eq(rd.nstreams, 1, "the large message is not complete yet");

    while (dist__frame_writer_pending(&wr) > 0)
        pump_round(64 * 1024);
    cr_assert_eq(drain(seen, 4), 1);
    cr_assert_eq(seen[0].from, 1);
    cr_assert(seen[0].payload_ok);
    free(big);
    free(small);
}

Test(frame, one_lane_keeps_its_order)
{
    uint8_t *b[3];
    struct dist_frame f[3] = {send_frame(5, 300 * 1024, &b[0]), send_frame(5, 8, &b[1]),
                              send_frame(6, 8, &b[2])};
    cr_assert_eq(dist__frame_writer_put(&wr, &f[0], 5), 0);
    cr_assert_eq(dist__frame_writer_put(&wr, &f[1], 5), 0);
    cr_assert_eq(dist__frame_writer_put(&wr, &f[2], 6), 0);
    struct seen seen[3];
    size_t got = 0;
    while (dist__frame_writer_pending(&wr) > 0) {
        pump_round(64 * 1024);
        got += drain(seen + got, 3 - got);
    }
    cr_assert_eq(got, 3);
    cr_assert_eq(seen[0].from, 6, "another lane goes ahead");
    cr_assert_eq(seen[1].from, 5);
    cr_assert_eq(seen[1].payload_len, 300 * 1024, "the large one first on its lane");
    cr_assert_eq(seen[2].from, 5);
    cr_assert_eq(seen[2].payload_len, 8);
    for (int i = 0; i < 3; i++)
        free(b[i]);
}

Test(frame, concurrent_streams_share_the_link)
{
    /* A long message put first, a shorter one after: round robin finishes the shorter first. */
    uint8_t *b[3];
    struct dist_frame f[3] = {send_frame(1, 2 * 1024 * 1024, &b[0]),
                              send_frame(2, 1024 * 1024, &b[1]), send_frame(3, 200 * 1024, &b[2])};
    for (uint64_t i = 0; i < 3; i++)
        cr_assert_eq(dist__frame_writer_put(&wr, &f[i], i + 1), 0);
    struct seen seen[3];
    size_t got = 0, most = 0;
    while (dist__frame_writer_pending(&wr) > 0) {
        pump_round(32 * 1024);
        most = rd.nstreams > most ? rd.nstreams : most;
        got += drain(seen + got, 3 - got);
    }
    cr_assert_eq(got, 3);
    cr_assert_eq(most, 3, "all three were in flight at once");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(seen[i].from, (uint64_t)(3 - i));
        cr_assert(seen[i].payload_ok);
        free(b[i]);
    }
}

Test(frame, writer_keeps_to_the_peer_stream_limits)
{
    struct dist_frame_limits lim = {.max_streams = 2, .max_pending = 900 * 1024};
    dist__frame_writer_done(&wr);
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_writer_init(&wr, 0, &lim), 0);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    uint8_t *b[4];
    for (uint64_t i = 0; i < 4; i++) {
        struct dist_frame f = send_frame(i + 1, 400 * 1024, &b[i]);
        cr_assert_eq(dist__frame_writer_put(&wr, &f, i + 1), 0);
        free(b[i]);
    }
    struct seen seen[4];
    size_t got = 0;
    while (dist__frame_writer_pending(&wr) > 0) {
        pump_round(16 * 1024);
        cr_assert_leq(rd.nstreams, 2);
        got += drain(seen + got, 4 - got);
    }
    cr_assert_eq(got, 4);
    /* A message the peer could never take is refused at once. */
    struct dist_frame f = send_frame(9, 1024 * 1024, &b[0]);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 9), DIST_EFRAME_TOO_BIG);
    cr_assert_eq(dist__frame_writer_pending(&wr), 0);
    free(b[0]);
}

Test(frame, writer_init_checks_fragment_size)
{
    struct dist_frame_writer w;
    struct dist_frame_limits lim = {.max_frame = 1000};
    cr_assert_eq(dist__frame_writer_init(&w, 100, NULL), DIST_EINVAL);
    cr_assert_eq(dist__frame_writer_init(&w, 2000, &lim), DIST_EINVAL);
    cr_assert_eq(dist__frame_writer_init(&w, 1004, &lim), 0);
    dist__frame_writer_done(&w);
}

Test(frame, small_fragment_size_round_trip)
{
    struct dist_frame_limits lim = {.max_frame = 512};
    dist__frame_writer_done(&wr);
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_writer_init(&wr, 256, &lim), 0);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    uint8_t *b;
    struct dist_frame f = send_frame(4, 100 * 1000, &b);
    cr_assert_eq(dist__frame_writer_put(&wr, &f, 0), 0);
    cr_assert_eq(dist__frame_writer_put(&wr, &tick, 0), 0);
    struct seen seen[2];
    size_t got = 0;
    while (dist__frame_writer_pending(&wr) > 0) {
        pump_round(1);
        got += drain(seen + got, 2 - got);
    }
    cr_assert_eq(got, 2);
    cr_assert_eq(seen[0].kind, DIST_FRAME_TICK);
    cr_assert_eq(seen[1].payload_len, 100 * 1000);
    cr_assert(seen[1].payload_ok);
    free(b);
}

/* ---- Reassembly: hand-made fragments --------------------------------------------------------- */

/* A tick, packed, is 0x62 0x00: two fragments of one byte each carry it. */
Test(frame, hand_made_fragments_join)
{
    static const uint8_t t0 = 0x62, t1 = 0x00;
    cr_assert_eq(feed_fragment(1, 2, &t0, 1, 0), 0);
    cr_assert_eq(next_rc(), 0);
    cr_assert_eq(feed_fragment(1, 0, &t1, 1, 1), 0);
    struct dist_frame f;
    cr_assert_eq(dist__frame_reader_next(&rd, &f), 1);
    cr_assert_eq(f.kind, DIST_FRAME_TICK);
}

Test(frame, fragment_of_unknown_stream)
{
    static const uint8_t c = 0;
    cr_assert_eq(feed_fragment(3, 0, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_UNKNOWN);
}

Test(frame, stream_started_twice_or_backwards)
{
    static const uint8_t c = 0x62;
    cr_assert_eq(feed_fragment(5, 10, &c, 1, 0), 0);
    cr_assert_eq(feed_fragment(5, 10, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_ORDER);

    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, NULL), 0);
    cr_assert_eq(feed_fragment(5, 10, &c, 1, 0), 0);
    cr_assert_eq(feed_fragment(4, 10, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_ORDER);
}

Test(frame, stream_chunks_must_match_total)
{
    static const uint8_t c[3] = {0x62, 0, 0};
    cr_assert_eq(feed_fragment(1, 2, c, 3, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_LENGTH);

    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, NULL), 0);
    cr_assert_eq(feed_fragment(1, 3, c, 2, 1), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_LENGTH);
}

Test(frame, message_cap_checked_before_allocating)
{
    static const uint8_t c = 0x62;
    /* 2^60 bytes: were it allocated, the answer would be -ENOMEM. */
    cr_assert_eq(feed_fragment(1, 1ull << 60, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_TOO_BIG);
}

Test(frame, stream_count_and_bytes_are_capped)
{
    static const uint8_t c = 0x62;
    struct dist_frame_limits lim = {.max_streams = 2, .max_pending = 1000};
    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    cr_assert_eq(feed_fragment(1, 10, &c, 1, 0), 0);
    cr_assert_eq(feed_fragment(2, 10, &c, 1, 0), 0);
    cr_assert_eq(feed_fragment(3, 10, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_STREAMS);

    dist__frame_reader_done(&rd);
    cr_assert_eq(dist__frame_reader_init(&rd, &lim), 0);
    cr_assert_eq(feed_fragment(1, 600, &c, 1, 0), 0);
    cr_assert_eq(feed_fragment(2, 401, &c, 1, 0), 0);
    cr_assert_eq(next_rc(), DIST_EFRAG_STREAMS);
}

Test(frame, fragment_inside_a_fragment_is_bad)
{
    /* The joined bytes are themselves a Frame{fragment: {stream: 1}}. */
    static const uint8_t inner[] = {0x72, 0x02, 0x08, 0x01};
    cr_assert_eq(feed_fragment(1, sizeof(inner), inner, sizeof(inner), 1), 0);
    cr_assert_eq(next_rc(), DIST_EFRAME_BAD);
}
