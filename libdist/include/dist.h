/*
 * dist.h: the public interface of libdist, the distribution library.
 *
 * This release holds the error codes and the EPMD wire codec, which the epmd daemon and the
 * epmd client share. The codec never allocates and never does I/O: parsers read from a
 * caller's buffer and return views into it; builders write into a caller's buffer.
 *
 * Every integer on the wire is big-endian. Erlang's requests are framed as
 *
 *     +-----------+------------------------------+
 *     | u16 Length| Length bytes: u8 Tag | ...   |
 *     +-----------+------------------------------+
 *
 * and Erlang's replies carry no length prefix. The extension (tags Erlang does not use) frames
 * its replies and watch events as u32 Length | u8 Tag | body. epmd/README.md is the reference
 * for the extension's layouts.
 *
 * Threads: every function here is pure and may be called from any thread.
 */
#ifndef DIST_H
#define DIST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DIST_API __attribute__((visibility("default")))
#else
#define DIST_API
#endif

/* ---- Errors ----------------------------------------------------------------------------- */

/*
 * libdist's own error codes. They sit far from errno values, which pass through as -errno.
 * X(name, value, message)
 */
#define DIST_ERR_MAP(X)                                                                            \
    X(EAGAIN_MORE, -30001, "need more bytes")                                                      \
    X(EMALFORMED, -30002, "malformed packet")                                                      \
    X(ELENGTH, -30003, "length out of range")                                                      \
    X(EBADTAG, -30004, "unknown request tag")                                                      \
    X(EBADNAME, -30005, "invalid node name")                                                       \
    X(ENOBUFS, -30006, "output buffer too small")                                                  \
    X(ELIMIT, -30007, "limit exceeded")                                                            \
    X(EINVAL, -30008, "invalid argument")                                                          \
    X(EAUTH, -30009, "authentication failed")                                                      \
    X(ECOOKIE_PERM, -30010, "cookie file is readable by others or not owned by this user")         \
    X(ECOOKIE, -30011, "invalid cookie")                                                           \
    X(ETLS, -30012, "TLS failure")                                                                 \
    X(ENOTTLS, -30013, "peer does not speak TLS")                                                  \
    X(EHANDSHAKE, -30014, "handshake protocol violation")                                          \
    X(EFRAME_TOO_BIG, -30015, "frame or message over the size limit")                              \
    X(EFRAME_BAD, -30016, "frame does not decode")                                                 \
    X(EFRAG_UNKNOWN, -30017, "fragment for a stream that was never started")                       \
    X(EFRAG_ORDER, -30018, "fragment stream started twice or out of order")                        \
    X(EFRAG_LENGTH, -30019, "fragments disagree with their announced total")                       \
    X(EFRAG_STREAMS, -30020, "too many fragmented messages in flight")                             \
    X(ENOTFOUND, -30021, "name not registered")                                                    \
    X(ETAKEN, -30022, "name held by another owner")                                                \
    X(ECLOSED, -30023, "connection closed by peer")                                                \
    X(ERESOLVE, -30024, "cannot resolve host")                                                     \
    X(EBUSY, -30025, "peer queue over its high-water mark")

enum dist_err {
#define DIST_ERR_ENUM_(name, value, msg) DIST_##name = (value),
    DIST_ERR_MAP(DIST_ERR_ENUM_)
#undef DIST_ERR_ENUM_
};

/*
 * dist_strerror: a static, human-readable message for any code this library returns, libdist's
 * own or a negated errno. Unknown codes give "unknown error". Never returns NULL.
 */
DIST_API const char *dist_strerror(int err);

/*
 * dist_err_name: the symbolic name of a code ("DIST_EMALFORMED", "ECONNREFUSED"), or
 * "UNKNOWN". Never returns NULL.
 */
DIST_API const char *dist_err_name(int err);

/* ---- PIDs ---------------------------------------------------------------------------------- */

/*
 * A process identifier that carries its node: {node, id, creation}. node is an index into the
 * process's interned node table, 0 for the local node; on the wire it travels as the node's
 * name. id's low 32 bits are Erlang's ID and its high 32 bits Erlang's Serial, so a PID maps
 * onto NEW_PID_EXT. creation tells incarnations of a node apart: a PID from an earlier
 * incarnation never reaches a live process. id 0 is no process (DIST_PID_NONE).
 * A plain value: copy it freely.
 */
struct dist_pid {
    uint64_t id;
    uint32_t node;
    uint32_t creation;
};

#define DIST_PID_NONE ((struct dist_pid){0, 0, 0})

/* Longest formatted PID, NUL included: "<4294967295.4294967295.4294967295>". */
#define DIST_PID_STRLEN 36

/* Non-zero when @pid names no process. */
static inline int dist_pid_is_none(struct dist_pid pid)
{
    return pid.id == 0;
}

/* Non-zero when @a and @b are the same process of the same incarnation. */
static inline int dist_pid_eq(struct dist_pid a, struct dist_pid b)
{
    return a.id == b.id && a.node == b.node && a.creation == b.creation;
}

/* Total order (node, creation, id): negative, 0 or positive, like strcmp. */
DIST_API int dist_pid_cmp(struct dist_pid a, struct dist_pid b);

/* A well-mixed 64-bit hash of all three fields. */
DIST_API uint64_t dist_pid_hash(struct dist_pid pid);

/*
 * dist_pid_format: write "<N.ID.SERIAL>" and a NUL into @buf, as Erlang displays a PID
 * (N = node index, ID = low 32 bits of id, SERIAL = high 32 bits). The creation is not shown.
 * Returns the length without the NUL, or DIST_ENOBUFS when @cap is too small
 * (DIST_PID_STRLEN always suffices).
 */
DIST_API int dist_pid_format(char *buf, size_t cap, struct dist_pid pid);

/*
 * dist_pid_parse: read "<N.ID.SERIAL>" (decimal, each part fitting 32 bits, nothing around it)
 * into @out with the given @creation. Returns 0, or DIST_EINVAL with @out untouched.
 */
DIST_API int dist_pid_parse(const char *s, uint32_t creation, struct dist_pid *out);

/* ---- EPMD: constants ---------------------------------------------------------------------- */

#define DIST_EPMD_PORT 4369

/* Erlang's input buffer: a request is accepted only when 2 + Length < 3060. */
#define DIST_EPMD_BUFSIZE 3060
/* The largest Length accepted (3057). */
#define DIST_EPMD_MAX_LENGTH (DIST_EPMD_BUFSIZE - 3)
/* Longest node name or Extra field, in bytes (Erlang's MAXSYMLEN, 255 x 4). */
#define DIST_EPMD_MAX_SYMLEN 1020
/* Longest node name, in UTF-8 characters. */
#define DIST_EPMD_MAX_NAME_CHARS 255

/* Extension limits. */
#define DIST_EPMD_MAX_TOKEN      64   /* owner token bytes */
#define DIST_EPMD_MAX_META       32   /* metadata pairs per registration */
#define DIST_EPMD_MAX_META_KEY   64   /* bytes in one key */
#define DIST_EPMD_MAX_META_VALUE 1024 /* bytes in one value */

/* Requests and replies, by tag. */
enum dist_epmd_tag {
    /* Erlang's protocol */
    DIST_EPMD_ALIVE2_REQ = 120,       /* 'x' */
    DIST_EPMD_ALIVE2_RESP = 121,      /* 'y', when HighestVersion < 6 */
    DIST_EPMD_ALIVE2_X_RESP = 118,    /* 'v', when HighestVersion >= 6 */
    DIST_EPMD_PORT_PLEASE2_REQ = 122, /* 'z' */
    DIST_EPMD_PORT2_RESP = 119,       /* 'w' */
    DIST_EPMD_NAMES_REQ = 110,        /* 'n' */
    DIST_EPMD_DUMP_REQ = 100,         /* 'd' */
    DIST_EPMD_KILL_REQ = 107,         /* 'k' */
    DIST_EPMD_STOP_REQ = 115,         /* 's' */
    /* The extension */
    DIST_EPMD_LEASE_REQ = 82,   /* 'R' leased registration */
    DIST_EPMD_LEASE_RESP = 114, /* 'r' */
    DIST_EPMD_RENEW_REQ = 69,   /* 'E' keep-alive */
    DIST_EPMD_RENEW_RESP = 101, /* 'e' */
    DIST_EPMD_UNREG_REQ = 85,   /* 'U' explicit unregister */
    DIST_EPMD_UNREG_RESP = 117, /* 'u' */
    DIST_EPMD_LIST_REQ = 76,    /* 'L' list with metadata */
    DIST_EPMD_LIST_RESP = 108,  /* 'l' */
    DIST_EPMD_WATCH_REQ = 87,   /* 'W' subscribe to events */
    DIST_EPMD_EVENT = 99,       /* 'c' a pushed change event */
};

/* Result codes of the extension's replies. */
enum dist_epmd_result {
    DIST_EPMD_OK = 0,
    DIST_EPMD_TAKEN = 1,    /* the name is held by another owner or a connection */
    DIST_EPMD_NOTFOUND = 2, /* no such name */
    DIST_EPMD_DENIED = 3,   /* owner token does not match */
    DIST_EPMD_INVALID = 4,  /* name or metadata fails a check */
};

/* Kinds of watch event. */
enum dist_epmd_event_kind {
    DIST_EPMD_REGISTERED = 1,
    DIST_EPMD_UNREGISTERED = 2,
    DIST_EPMD_EXPIRED = 3,
};

/* ---- EPMD: values -------------------------------------------------------------------------- */

/*
 * A node as registered with ALIVE2_REQ and echoed by PORT2_RESP. Pointers are borrowed: from a
 * parser they point into the parsed buffer; for a builder they are the caller's.
 * name is not NUL-terminated.
 */
struct dist_epmd_node {
    uint16_t port;
    uint8_t node_type; /* 77 'M' normal, 72 'H' hidden, 104 'h' ei; stored unchecked */
    uint8_t protocol;  /* 0 = TCP/IPv4; stored unchecked */
    uint16_t high_version;
    uint16_t low_version;
    const char *name;
    size_t name_len;
    const uint8_t *extra; /* opaque, echoed by PORT2_RESP */
    size_t extra_len;
};

/* One metadata pair. Borrowed views, not NUL-terminated. */
struct dist_epmd_meta {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

/*
 * Encoded metadata: meta_count pairs of (u8 KeyLen | Key | u16 ValueLen | Value) at meta, over
 * meta_len bytes. Walk it with dist_epmd_meta_next().
 */
struct dist_epmd_metalist {
    const uint8_t *meta;
    size_t meta_len;
    size_t meta_count;
};

/* A leased registration request (LEASE_REQ). */
struct dist_epmd_lease {
    struct dist_epmd_node node; /* extra is ignored: leases carry metadata instead */
    uint32_t lease_ms;          /* requested lease; 0 asks for the daemon's default */
    const uint8_t *token;       /* owner token, 1..DIST_EPMD_MAX_TOKEN bytes */
    size_t token_len;
    struct dist_epmd_metalist meta;
};

/* A parsed request. Which member of u is valid depends on tag. */
struct dist_epmd_req {
    uint8_t tag;
    union {
        struct dist_epmd_node alive; /* ALIVE2_REQ */
        struct {
            const char *name;
            size_t name_len;
        } name;                       /* PORT_PLEASE2_REQ, STOP_REQ */
        struct dist_epmd_lease lease; /* LEASE_REQ */
        struct {
            const uint8_t *token;
            size_t token_len;
            const char *name;
            size_t name_len;
        } owner; /* RENEW_REQ, UNREG_REQ */
    } u;
};

/*
 * A registry entry as the extension reports it: in LIST_RESP and in watch events.
 */
struct dist_epmd_entry {
    struct dist_epmd_node node; /* extra is echoed for Erlang registrations */
    uint32_t creation;
    uint8_t flags;     /* DIST_EPMD_ENTRY_* */
    uint32_t lease_ms; /* lease length; 0 for connection-bound entries */
    struct dist_epmd_metalist meta;
};

#define DIST_EPMD_ENTRY_LEASED (1u << 0) /* kept alive by keep-alives, not a connection */

/* ---- EPMD: request framing and parsing ------------------------------------------------------ */

/*
 * dist_epmd_req_length: read the u16 Length header of a request.
 * @hdr: at least 2 bytes.
 * Returns Length (1..DIST_EPMD_MAX_LENGTH), or DIST_ELENGTH for 0 or a length that would not
 * fit Erlang's input buffer; epmd closes such a connection without a reply.
 */
DIST_API int dist_epmd_req_length(const uint8_t *hdr);

/*
 * dist_epmd_req_parse: parse one complete request body (the Length bytes after the header).
 * @body, @len: the body; @req: filled on success with views into @body.
 *
 * ALIVE2_REQ is checked for structure only (Erlang closes without a reply on those failures);
 * call dist_epmd_name_check() on the name afterwards, since Erlang answers Result=1 when that
 * fails. PORT_PLEASE2_REQ has one trailing NUL stripped from its name, and its name checked
 * with a limit of 254 characters: Erlang's epmd will not look up a 255-character name.
 *
 * Returns 0, or:
 *   DIST_EBADTAG    unknown or obsolete tag
 *   DIST_EMALFORMED lengths inconsistent with the body, a NUL in an ALIVE2_REQ name, an
 *                   empty body, a STOP_REQ without a name (a STOP_REQ name ends at its
 *                   first NUL, as Erlang compares it as a C string)
 *   DIST_EBADNAME   PORT_PLEASE2_REQ name fails dist_epmd_name_check(); an extension name
 *                   or token that fails its checks
 *   DIST_ELIMIT     extension metadata over its limits
 * On failure @req is untouched.
 */
DIST_API int dist_epmd_req_parse(const uint8_t *body, size_t len, struct dist_epmd_req *req);

/*
 * dist_epmd_name_check: the checks Erlang's epmd applies to a node name: 1..1020 bytes, no
 * NUL, valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF), and at most 255
 * characters. Returns 0 or DIST_EBADNAME.
 */
DIST_API int dist_epmd_name_check(const char *name, size_t len);

/*
 * dist_epmd_meta_next: step through encoded metadata.
 * @cursor: in: the position to read; out: the next position. Start at metalist.meta.
 * @end: metalist.meta + metalist.meta_len.
 * Returns 0 and fills @out, or DIST_EMALFORMED at or past the end. Metadata that came from
 * dist_epmd_req_parse() or dist_epmd_entry_parse() has already been checked.
 */
DIST_API int dist_epmd_meta_next(const uint8_t **cursor, const uint8_t *end,
                                 struct dist_epmd_meta *out);

/* ---- EPMD: builders --------------------------------------------------------------------------
 *
 * Every builder writes into buf (capacity cap) and returns the number of bytes written, or
 * DIST_ENOBUFS when cap is too small, or DIST_EINVAL when a field is out of range (a name too
 * long for its length field, say). The extension's request builders also refuse, with
 * DIST_EINVAL, a name failing dist_epmd_name_check() or a token outside
 * 1..DIST_EPMD_MAX_TOKEN bytes; metadata is checked by dist_epmd_meta_put() as it is added.
 * On failure buf may hold partial output.
 */

/*
 * Requests, with their u16 Length header. Bodies:
 *   ALIVE2_REQ   'x' | u16 Port | u8 NodeType | u8 Protocol | u16 High | u16 Low |
 *                u16 Nlen | Name | u16 Elen | Extra
 *   PORT_PLEASE2 'z' | Name                 STOP_REQ 's' | Name
 *   LEASE_REQ    'R' | u16 Port | u8 NodeType | u8 Protocol | u16 High | u16 Low |
 *                u32 LeaseMs | u8 TokenLen | Token | u16 Nlen | Name |
 *                u16 MetaCount | u16 MetaLen | Meta
 *   RENEW_REQ    'E' | u8 TokenLen | Token | u16 Nlen | Name      (UNREG_REQ: 'U', the same)
 * Extension names must pass dist_epmd_name_check(); tokens are 1..DIST_EPMD_MAX_TOKEN bytes;
 * meta pairs are u8 KeyLen (1..64) | Key | u16 ValueLen (0..1024) | Value, at most 32 pairs,
 * and MetaLen must equal the bytes of the pairs. Trailing bytes after an extension body are
 * malformed; ALIVE2_REQ ignores them, as Erlang does.
 */
DIST_API int dist_epmd_alive2_req_build(uint8_t *buf, size_t cap,
                                        const struct dist_epmd_node *node);
DIST_API int dist_epmd_port2_req_build(uint8_t *buf, size_t cap, const char *name, size_t name_len);
/* NAMES_REQ, DUMP_REQ, KILL_REQ, LIST_REQ, WATCH_REQ: a bare tag. */
DIST_API int dist_epmd_simple_req_build(uint8_t *buf, size_t cap, uint8_t tag);
DIST_API int dist_epmd_stop_req_build(uint8_t *buf, size_t cap, const char *name, size_t name_len);
DIST_API int dist_epmd_lease_req_build(uint8_t *buf, size_t cap,
                                       const struct dist_epmd_lease *lease);
/* RENEW_REQ or UNREG_REQ (tag) for @name owned by @token. */
DIST_API int dist_epmd_owner_req_build(uint8_t *buf, size_t cap, uint8_t tag, const uint8_t *token,
                                       size_t token_len, const char *name, size_t name_len);

/*
 * dist_epmd_meta_put: append one pair to encoded metadata at buf. Checks the key and value
 * limits (DIST_ELIMIT).
 */
DIST_API int dist_epmd_meta_put(uint8_t *buf, size_t cap, const char *key, size_t key_len,
                                const char *value, size_t value_len);

/*
 * Erlang's replies. ALIVE2: the 'v' form with a u32 creation when @x_form is non-zero (the
 * request's HighestVersion >= 6), else the 'y' form with a u16 creation.
 */
DIST_API int dist_epmd_alive2_resp_build(uint8_t *buf, size_t cap, int x_form, uint8_t result,
                                         uint32_t creation);
/* PORT2_RESP: the registration, or 'w' 1 when @node is NULL. */
DIST_API int dist_epmd_port2_resp_build(uint8_t *buf, size_t cap,
                                        const struct dist_epmd_node *node);
/* One NAMES line: "name <Name> at port <Port>\n". */
DIST_API int dist_epmd_names_line(uint8_t *buf, size_t cap, const char *name, size_t name_len,
                                  uint16_t port);
/*
 * One DUMP line, NUL included: active registrations as "active name     <N> at port P, fd = F\n",
 * remembered names (@active == 0) as "old/unused name <N>, port = P, fd = F \n".
 */
DIST_API int dist_epmd_dump_line(uint8_t *buf, size_t cap, int active, const char *name,
                                 size_t name_len, uint16_t port, int fd);

/*
 * Extension replies, each framed as u32 Length | u8 Tag | body.
 * LEASE_RESP: u8 Result | u32 Creation | u32 LeaseMs.
 * RENEW_RESP: u8 Result | u32 LeaseMs.       UNREG_RESP: u8 Result.
 */
DIST_API int dist_epmd_lease_resp_build(uint8_t *buf, size_t cap, uint8_t result, uint32_t creation,
                                        uint32_t lease_ms);
DIST_API int dist_epmd_renew_resp_build(uint8_t *buf, size_t cap, uint8_t result,
                                        uint32_t lease_ms);
DIST_API int dist_epmd_unreg_resp_build(uint8_t *buf, size_t cap, uint8_t result);

/*
 * dist_epmd_entry_build: encode one entry (the unit of LIST_RESP and of events), unframed.
 * Layout: u16 Port | u8 NodeType | u8 Protocol | u16 High | u16 Low | u32 Creation | u8 Flags |
 * u32 LeaseMs | u16 Nlen | Name | u16 Elen | Extra | u16 MetaCount | u16 MetaLen | Meta.
 */
DIST_API int dist_epmd_entry_build(uint8_t *buf, size_t cap, const struct dist_epmd_entry *e);

/*
 * dist_epmd_frame_header: write the 5-byte header u32 Length | u8 Tag of an extension frame
 * whose body (after the tag) is @body_len bytes. LIST_RESP's body is u32 Count then the
 * entries; an EVENT's body is u8 Kind then one entry.
 */
DIST_API int dist_epmd_frame_header(uint8_t *buf, size_t cap, uint8_t tag, size_t body_len);

/* ---- EPMD: reply parsers (for clients) -------------------------------------------------------
 *
 * Each returns the number of bytes consumed, DIST_EAGAIN_MORE when @len is not yet a whole
 * reply, or DIST_EMALFORMED. dist_epmd_result_parse() and dist_epmd_entry_parse() read from a
 * whole frame's body, so a short input is DIST_EMALFORMED for them. Outputs are written only
 * on success.
 */

/* ALIVE2_RESP or ALIVE2_X_RESP. */
DIST_API int dist_epmd_alive2_resp_parse(const uint8_t *buf, size_t len, uint8_t *result,
                                         uint32_t *creation);
/* PORT2_RESP. *found is 1 with @node filled (views into @buf), or 0. */
DIST_API int dist_epmd_port2_resp_parse(const uint8_t *buf, size_t len, int *found,
                                        struct dist_epmd_node *node);
/*
 * An extension frame: *tag gets its tag, *body and *body_len the bytes after the tag.
 * Frames longer than @max_len give DIST_ELENGTH.
 */
DIST_API int dist_epmd_frame_parse(const uint8_t *buf, size_t len, size_t max_len, uint8_t *tag,
                                   const uint8_t **body, size_t *body_len);
/* The fixed bodies of LEASE_RESP, RENEW_RESP, UNREG_RESP; absent fields may be NULL. */
DIST_API int dist_epmd_result_parse(const uint8_t *body, size_t len, uint8_t tag, uint8_t *result,
                                    uint32_t *creation, uint32_t *lease_ms);
/* One entry from a LIST_RESP or EVENT body. */
DIST_API int dist_epmd_entry_parse(const uint8_t *buf, size_t len, struct dist_epmd_entry *e);

/* ---- epmd client ----------------------------------------------------------------------------
 *
 * The asynchronous client of epmd, on a libev loop that the caller owns and runs. It keeps a
 * node registered through the extension's leased registration, re-registers it by itself
 * after epmd restarts, watches epmd for peers, and looks peers up with Erlang's PORT_PLEASE2,
 * so a lookup works against Erlang's epmd too.
 *
 * Threads: every function in this section is called on the loop's thread, and every callback
 * runs there. Nothing here blocks: connects are nonblocking and bounded by a timeout, and a
 * host name (as opposed to a numeric address) is resolved on a short-lived thread of its own.
 */

struct ev_loop;
struct dist_epmd_client;
struct dist_epmd_lookup;

/*
 * dist_node_name_check: check a full node name "name@host" by Erlang's rules: name is 1..255
 * letters, digits, '_' and '-'; host is 1..255 bytes, with no '@', space or control character.
 * @name: NUL-terminated, borrowed.
 * Returns 0, or DIST_EBADNAME (also for NULL).
 */
DIST_API int dist_node_name_check(const char *name);

/* Severity of a message given to a dist_epmd_log_cb. */
enum dist_epmd_log_level {
    DIST_EPMD_LOG_ERROR = 0,
    DIST_EPMD_LOG_WARN = 1,
    DIST_EPMD_LOG_INFO = 2,
    DIST_EPMD_LOG_DEBUG = 3,
};

/*
 * A log hook: @msg is one line without a newline, borrowed for the call. The hook must not
 * call back into the client that logs.
 */
typedef void (*dist_epmd_log_cb)(int level, const char *msg, void *user_data);

/* One metadata pair: NUL-terminated key (1..64 bytes) and value (0..1024 bytes). */
struct dist_epmd_kv {
    const char *key;
    const char *value;
};

/*
 * Options of dist_epmd_client_new(). Zero-initialise, then set what you need; 0 or NULL picks
 * the default. Every pointer is borrowed for the call only: the client copies what it keeps.
 */
struct dist_epmd_client_opts {
    const char *host; /* epmd's host: a numeric address or a name; default "127.0.0.1" */
    uint16_t port;    /* epmd's port; default $ERL_EPMD_PORT when it is a valid port, else 4369 */
    /*
     * The node to register: "name@host", or a bare "name". Only the name part is registered.
     * NULL makes a client that can only watch.
     */
    const char *name;
    uint16_t listen_port;            /* the node's distribution port, given to peers by lookups */
    uint8_t node_type;               /* default 77 ('M', a normal node) */
    uint16_t high_version;           /* default 6 */
    uint16_t low_version;            /* default 5 */
    const struct dist_epmd_kv *meta; /* metadata, DIST_EPMD_MAX_META pairs at most */
    size_t meta_count;
    /*
     * The owner token, 1..DIST_EPMD_MAX_TOKEN bytes. Default: 16 random bytes drawn when the
     * client is made. A token that survives a restart of the node (kept in its data
     * directory, say) lets the restarted node replace its old lease at once; with a fresh
     * token it is refused (DIST_ETAKEN) until the old lease lapses.
     */
    const uint8_t *token;
    size_t token_len;
    uint32_t lease_ms;       /* requested lease; default: epmd's (60 s); epmd clamps it */
    uint32_t timeout_ms;     /* bound on each connect and each awaited reply; default 5000 */
    uint32_t backoff_min_ms; /* first retry delay bound; default 100 */
    uint32_t backoff_max_ms; /* largest retry delay; default 30000 */
    size_t max_frame;        /* largest watch frame (the snapshot); default 64 MiB */
    dist_epmd_log_cb log_cb; /* optional */
    void *log_user_data;
};

/* Timeouts and backoff bounds above this are refused (10 minutes). */
#define DIST_EPMD_MAX_TIMEOUT_MS 600000u

/*
 * dist_epmd_client_new: make a client on @loop; it does nothing until started.
 * @loop: borrowed; it must outlive the client.
 * @opts: borrowed for the call.
 * @out: gets the client, owned by the caller, who frees it with dist_epmd_client_free().
 * Returns 0, or:
 *   DIST_EINVAL   NULL arguments; a token over DIST_EPMD_MAX_TOKEN bytes; a timeout or a
 *                 backoff bound over DIST_EPMD_MAX_TIMEOUT_MS; backoff_min_ms > backoff_max_ms
 *   DIST_EBADNAME a name failing dist_node_name_check() (or, bare, its name part's rules)
 *   DIST_ELIMIT   metadata over its limits, or a registration too large for one request
 *   -ENOMEM, or -errno when no random token could be drawn
 * On failure *out is untouched.
 */
DIST_API int dist_epmd_client_new(struct ev_loop *loop, const struct dist_epmd_client_opts *opts,
                                  struct dist_epmd_client **out);

/*
 * dist_epmd_client_free: stop the client (see dist_epmd_client_stop()), end its watch, and free
 * it. NULL is accepted. It may be called from the client's own callbacks; the memory is then
 * released when the callback returns, and no further callback runs.
 */
DIST_API void dist_epmd_client_free(struct dist_epmd_client *client);

/* What a dist_epmd_client_event reports. */
enum dist_epmd_client_event_kind {
    /* The first registration since start: creation is now the node's creation. */
    DIST_EPMD_CLIENT_REGISTERED = 1,
    /*
     * epmd cannot be reached, or broke an exchange (reason: -ECONNREFUSED, -ETIMEDOUT,
     * DIST_ECLOSED, DIST_EMALFORMED, ...). Reported once per run of failures, registered
     * before or not; the client retries with backoff. A registered client first retries once
     * within backoff_min_ms without reporting, since epmd closes idle connections. Connections
     * to peers are not affected.
     */
    DIST_EPMD_CLIENT_LOST = 2,
    /*
     * Registered again after LOST or REFUSED, or after epmd forgot the lease (a restarted
     * epmd). epmd_creation is what epmd granted now: the same as before when epmd kept the
     * lease, a new one when it registered the name afresh. creation does not change.
     */
    DIST_EPMD_CLIENT_REREGISTERED = 3,
    /*
     * epmd refused the registration (reason: DIST_ETAKEN when another owner's lease or an
     * Erlang node holds the name). Reported once per run of refusals; the client keeps
     * retrying with backoff, since a lapsing lease frees the name. Stop or free the client to
     * give up.
     */
    DIST_EPMD_CLIENT_REFUSED = 4,
};

/*
 * An event of the registration, borrowed for the call.
 *
 * Creation: epmd grants a new creation to every fresh registration, a re-registration after an
 * epmd restart included. The node's own creation (the one its PIDs carry) is the one granted
 * by the client's first registration, and it stays for the client's life (a stop and a
 * start included), so PIDs handed out before epmd restarted stay valid. Peers learn a node's
 * creation from the node itself in the handshake; epmd_creation is what epmd's listings show.
 */
struct dist_epmd_client_event {
    int kind;               /* enum dist_epmd_client_event_kind */
    int reason;             /* LOST, REFUSED: a negative code; otherwise 0 */
    uint32_t creation;      /* the node's creation; 0 before the first registration */
    uint32_t epmd_creation; /* the creation epmd granted last; 0 before any */
    uint32_t lease_ms;      /* the lease epmd granted last; 0 before any */
};

typedef void (*dist_epmd_client_cb)(struct dist_epmd_client *client,
                                    const struct dist_epmd_client_event *event, void *user_data);

/*
 * dist_epmd_client_start: register the node and keep it registered. The client connects,
 * sends a leased registration and renews it at a third of the granted lease on one
 * connection, which it re-opens whenever epmd closes it. A renew that epmd no longer knows
 * (a restarted epmd) turns into a fresh registration. Every failure is retried: the first
 * retry within backoff_min_ms, then after a delay that doubles up to backoff_max_ms, each
 * drawn at random between half that delay and all of it.
 * @cb: receives the events; @user_data: passed back to it, borrowed.
 * Returns 0, or DIST_EINVAL (a watch-only client, a NULL @cb, or a client already started).
 */
DIST_API int dist_epmd_client_start(struct dist_epmd_client *client, dist_epmd_client_cb cb,
                                    void *user_data);

/*
 * dist_epmd_client_stop: stop registering. When the connection to epmd is open and idle, an
 * unregister request is written without waiting for its reply, so the name is freed at once;
 * otherwise the lease lapses by itself. No event is reported afterwards. The client may be
 * started again; its node creation is kept. Does nothing on a stopped client.
 */
DIST_API void dist_epmd_client_stop(struct dist_epmd_client *client);

/* The node's creation (see struct dist_epmd_client_event), or 0 before any registration. */
DIST_API uint32_t dist_epmd_client_creation(const struct dist_epmd_client *client);

/* What a dist_epmd_watch_event reports. */
enum dist_epmd_watch_kind {
    DIST_EPMD_WATCH_RESET = 1,        /* a snapshot of the whole registry follows */
    DIST_EPMD_WATCH_PRESENT = 2,      /* entry: one registration in the snapshot */
    DIST_EPMD_WATCH_SYNCED = 3,       /* the snapshot is complete; changes follow */
    DIST_EPMD_WATCH_REGISTERED = 4,   /* entry: a name was registered (or re-registered) */
    DIST_EPMD_WATCH_UNREGISTERED = 5, /* entry: a name was unregistered */
    DIST_EPMD_WATCH_EXPIRED = 6,      /* entry: a lease lapsed */
    DIST_EPMD_WATCH_LOST = 7,         /* the stream broke (reason); the client reconnects */
};

/*
 * A watch event, borrowed for the call: copy what you keep.
 *
 * Reconciling: on RESET mark every peer you know as unconfirmed; on PRESENT record the entry
 * and confirm it; on SYNCED forget every peer still unconfirmed (they left while the stream
 * was down). After SYNCED, apply REGISTERED, UNREGISTERED and EXPIRED as they come. Between
 * LOST and the next SYNCED the picture may be stale. Every (re)connection starts with RESET.
 */
struct dist_epmd_watch_event {
    int kind;                            /* enum dist_epmd_watch_kind */
    int reason;                          /* LOST: a negative code; otherwise 0 */
    const struct dist_epmd_entry *entry; /* PRESENT and the three changes; otherwise NULL */
};

typedef void (*dist_epmd_watch_cb)(struct dist_epmd_client *client,
                                   const struct dist_epmd_watch_event *event, void *user_data);

/*
 * dist_epmd_client_watch: open the watch stream to the client's epmd and keep it open,
 * re-opening it with the same backoff as the registration. Independent of start/stop.
 * @cb: receives the events; @user_data: passed back to it, borrowed.
 * Returns 0, or DIST_EINVAL (a NULL @cb, or a watch already running).
 */
DIST_API int dist_epmd_client_watch(struct dist_epmd_client *client, dist_epmd_watch_cb cb,
                                    void *user_data);

/* dist_epmd_client_unwatch: end the watch; no watch event runs afterwards. No-op if none. */
DIST_API void dist_epmd_client_unwatch(struct dist_epmd_client *client);

/*
 * The outcome of a lookup. @status is 0 with @node filled (its pointers, the echoed name
 * and Extra, are borrowed for the call), or a negative code with @node NULL:
 *   DIST_ENOTFOUND  epmd answered that no such name is registered
 *   -ECONNREFUSED, -EHOSTUNREACH, -ENETUNREACH, ...  epmd could not be reached
 *   DIST_ERESOLVE   the host name could not be resolved
 *   -ETIMEDOUT      no complete answer within the timeout
 *   DIST_ECLOSED    epmd closed the connection before a complete answer
 *   DIST_EMALFORMED the answer was not a PORT2_RESP
 *   -ECANCELED      dist_epmd_lookup_cancel() was called
 * PORT2_RESP carries no creation: the peer states its own in the handshake.
 */
typedef void (*dist_epmd_lookup_cb)(int status, const struct dist_epmd_node *node, void *user_data);

/*
 * dist_epmd_lookup: ask the epmd at @host:@port where @name listens, with Erlang's
 * PORT_PLEASE2, on a connection of its own, as Erlang does.
 * @loop: borrowed; it must outlive the lookup.
 * @host: a numeric address ("127.0.0.1", "::1") or a host name, borrowed for the call. NULL
 *        takes the host part of @name. Numeric addresses are parsed inline; names are resolved
 *        on a thread of their own, since the system resolver blocks.
 * @port: epmd's port; 0 means $ERL_EPMD_PORT when it is a valid port, else 4369.
 * @name: "name" or "name@host"; the part before '@' is looked up. Borrowed for the call.
 * @timeout_ms: bound on the whole lookup; 0 means 5000; at most DIST_EPMD_MAX_TIMEOUT_MS.
 * @cb, @user_data: run exactly once, on the loop, never from within this call.
 * @out: may be NULL; gets a handle for dist_epmd_lookup_cancel(), valid until @cb runs.
 * Returns 0, or DIST_EINVAL (NULL arguments, a timeout over the bound, no host at all),
 * DIST_EBADNAME (a name part failing dist_epmd_name_check()), -ENOMEM, or -errno when the
 * resolver thread cannot start. On failure @cb never runs and *out is untouched.
 */
DIST_API int dist_epmd_lookup(struct ev_loop *loop, const char *host, uint16_t port,
                              const char *name, uint32_t timeout_ms, dist_epmd_lookup_cb cb,
                              void *user_data, struct dist_epmd_lookup **out);

/*
 * dist_epmd_lookup_cancel: end a lookup whose callback has not run yet: the callback runs at
 * once with -ECANCELED, and the handle is freed. Calling it from the lookup's own callback
 * does nothing.
 */
DIST_API void dist_epmd_lookup_cancel(struct dist_epmd_lookup *lookup);

/* ---- Node ------------------------------------------------------------------------------------
 *
 * A node embedded on a libev loop that the caller owns and runs. It listens for peers,
 * registers with epmd (the epmd client above), and connects to a peer when the first message
 * for it is sent, finding the peer's port with a PORT_PLEASE2 lookup against the epmd of the
 * peer's host. Both ends prove the cookie over TLS 1.3 (or plain TCP in insecure mode), then
 * exchange framed messages. Ticks keep quiet connections alive; a peer that sends nothing for
 * tick_ms is down. Peers are reported up and down with a reason.
 *
 *     dist_node_new --> dist_node_start --> on_ready(creation) --> dist_node_send / post ...
 *                                          on_node_up / on_message / on_node_down
 *     dist_node_stop (goodbye to every peer, unregister) --> dist_node_free
 *
 * One connection per pair of nodes: when two nodes dial each other at once, both keep the
 * connection dialled by the node whose name sorts lower (strcmp). Frames are appended to a
 * per-peer queue and written once per loop iteration, so many small messages share one TLS
 * record and one system call. A queue over its high-water mark makes sends fail with
 * DIST_EBUSY. Messages queued on a connection that goes down are lost, as in Erlang.
 *
 * Reconnecting: while frames wait for a peer, a failed lookup, connect or handshake is retried
 * after a delay that doubles from backoff_min_ms to backoff_max_ms, each drawn at random
 * between half of it and all of it. A failed authentication drops the queue instead, and the
 * next send tries again. A peer's host (the part of its name after '@') is a numeric address
 * or a host name: a name is resolved for the lookup at the peer's epmd (dist_epmd_lookup()),
 * and the node is dialled at the address that epmd answered at, as Erlang does.
 *
 * PIDs: struct dist_pid.node is an index into the node's table of interned node names, 0
 * being the node itself (dist_node_intern(), dist_node_name_of()). On the wire a PID carries
 * its node's name.
 *
 * Threads: every function in this section is called on the loop's thread, and every callback
 * runs there. No function may be called on a node from another thread.
 */

struct dist_node;

/* Why a peer went down, as given to on_node_down. */
enum dist_down_reason {
    DIST_DOWN_CONNECTION_CLOSED = 1, /* the peer closed or reset the connection */
    DIST_DOWN_HEARTBEAT_TIMEOUT = 2, /* nothing came from the peer for tick_ms */
    DIST_DOWN_GRACEFUL_SHUTDOWN = 3, /* the peer said goodbye */
    DIST_DOWN_AUTH_FAILED = 4,       /* the cookie check failed (also for a node never up) */
    DIST_DOWN_PROTOCOL_ERROR = 5,    /* the peer sent a malformed or unexpected frame */
};

/* dist_down_reason_name: "connection_closed", "heartbeat_timeout", ...; "unknown" otherwise. */
DIST_API const char *dist_down_reason_name(int reason);

/*
 * Options of dist_node_new(). Zero-initialise, then set what you need; 0 or NULL picks the
 * default. Every pointer is borrowed for the call: the node copies what it keeps. Every node of
 * a cluster must use the same max_frame.
 */
struct dist_node_opts {
    const char *name;        /* "name@host", required; host is where the node's epmd runs */
    const char *listen_host; /* numeric address to listen on; default: host of name when it
                                is numeric ("localhost" is 127.0.0.1), else 0.0.0.0 */
    uint16_t listen_port;    /* 0: an ephemeral port (see dist_node_port()) */
    const char *epmd_host;   /* our epmd; default "127.0.0.1" */
    uint16_t epmd_port;      /* epmd's port, ours and the peers'; default as the epmd client */
    const char *cookie;      /* the cookie; NULL: $DIST_COOKIE, then cookie_file */
    const char *cookie_file; /* default $HOME/.dist.cookie, made when missing */
    int insecure;            /* non-zero: plain TCP, no encryption (logged as a warning) */
    const char *ca_file;     /* TLS: with cert_file and key_file, mutual certificate checks */
    const char *cert_file;
    const char *key_file;
    uint32_t tick_ms;              /* a peer silent this long is down; default 60000 */
    uint32_t handshake_timeout_ms; /* bound on connect + TLS + auth, and on each epmd
                                      exchange; default 5000 */
    uint32_t max_frame;            /* largest frame on the wire; default 64 KiB; >= 1024 */
    size_t queue_high_water;       /* bytes queued per peer before DIST_EBUSY; default 64 MiB */
    uint32_t backoff_min_ms;       /* reconnect and re-register backoff; default 100 */
    uint32_t backoff_max_ms;       /* default 30000 */
    int32_t busy_poll_us;          /* after traffic, poll the sockets this long before the loop
                                      may sleep: a reply caught awake saves a wake-up on each
                                      side, at the price of a core spinning meanwhile (as
                                      Erlang's schedulers do). 0: the default, 50; < 0: never */
    dist_epmd_log_cb log_cb;       /* optional; DIST_EPMD_LOG_* levels */
    void *log_user_data;
};

/* The kinds of message a node sends and delivers; the values are the frame kinds on the wire. */
enum dist_msg_kind {
    DIST_MSG_SEND = 3,
    DIST_MSG_LINK = 4,
    DIST_MSG_UNLINK = 5,
    DIST_MSG_EXIT = 6,
    DIST_MSG_MONITOR = 7,
    DIST_MSG_DEMONITOR = 8,
    DIST_MSG_DOWN = 9,
    DIST_MSG_SPAWN_REQUEST = 10,
    DIST_MSG_SPAWN_REPLY = 11,
};

/* What a DIST_MSG_SEND carries: a plain message, a call, or a reply to a call. */
enum dist_send_kind_pub {
    DIST_SEND_KIND_PLAIN = 0,
    DIST_SEND_KIND_CALL = 1,
    DIST_SEND_KIND_REPLY = 2,
};

/* A reference {node, creation, 3 x u32}; node is an interned index like dist_pid.node. */
struct dist_ref {
    uint32_t node;
    uint32_t creation;
    uint32_t n[3];
};

/*
 * A message between nodes. Which fields matter depends on kind:
 *   SEND          from, to or to_name, type, payload/len, send_kind, ref (calls, replies)
 *   LINK, UNLINK  from, to            EXIT   from, to, reason, flags (DIST_EXIT_LINK)
 *   MONITOR, DEMONITOR                from, to or to_name, ref
 *   DOWN          from, to, ref, reason
 *   SPAWN_REQUEST from, req_id, behaviour, type (of the argument), payload/len, flags
 *   SPAWN_REPLY   to, req_id, pid, error
 * PIDs and references name nodes by interned index. Strings are NUL-terminated; NULL reads
 * as "". A delivered message and everything it points to is borrowed for the callback.
 */
/* EXIT flag: the signal travels along a link (its sender ended), rather than being sent. */
#define DIST_EXIT_LINK (1u << 0)

struct dist_msg {
    int kind; /* enum dist_msg_kind */
    struct dist_pid from;
    struct dist_pid to;
    const char *to_name; /* by registered name when not NULL (SEND, MONITOR, DEMONITOR) */
    const char *type;
    const void *payload;
    size_t len;
    int send_kind; /* enum dist_send_kind_pub */
    struct dist_ref ref;
    int32_t reason;
    uint64_t req_id;
    const char *behaviour;
    uint32_t flags;
    struct dist_pid pid;
    int32_t error;
};

/* What the node reports. Every member may be NULL. Each gets the user_data of the start. */
struct dist_node_handlers {
    /* Registered with epmd: @creation is the node's incarnation, for its PIDs. Once. */
    void (*on_ready)(struct dist_node *node, uint32_t creation, void *user_data);
    /* A message from @from_node (interned; also msg->from.node's name when from is set). */
    void (*on_message)(struct dist_node *node, const struct dist_msg *msg, const char *from_node,
                       void *user_data);
    /* A connection to @name is authenticated and up. @name lives as long as the node. */
    void (*on_node_up)(struct dist_node *node, const char *name, void *user_data);
    /* @name went down (or failed authentication) for @reason, a enum dist_down_reason. */
    void (*on_node_down)(struct dist_node *node, const char *name, int reason, void *user_data);
};

/*
 * dist_node_new: make a node on @loop. It resolves the cookie and builds its TLS context now,
 * so configuration errors show here; it does no I/O on the network until started.
 * @loop: borrowed; it must outlive the node.
 * @opts: borrowed for the call.
 * @out: gets the node, owned by the caller, freed with dist_node_free().
 * Returns 0, or:
 *   DIST_EINVAL        NULL arguments, a non-numeric listen_host, max_frame under 1024, a
 *                      timeout or backoff over DIST_EPMD_MAX_TIMEOUT_MS, min over max backoff,
 *                      busy_poll_us over 1000000, or TLS file options that do not go together
 *   DIST_EBADNAME      a name failing dist_node_name_check()
 *   DIST_ECOOKIE, DIST_ECOOKIE_PERM  the cookie or its file is refused (the reason is logged)
 *   DIST_ETLS          the TLS context cannot be built (the reason is logged)
 *   -ENOMEM, -errno    the cookie file cannot be read or made
 * On failure *out is untouched.
 */
DIST_API int dist_node_new(struct ev_loop *loop, const struct dist_node_opts *opts,
                           struct dist_node **out);

/*
 * dist_node_start: listen, and register with epmd through a leased registration that the
 * epmd client keeps alive and renews after epmd restarts. on_ready runs once registered;
 * until then messages are queued and incoming connections refused. In insecure mode a
 * warning is logged.
 * @h: borrowed for the call (copied); NULL reports nothing. @user_data: passed back.
 * Returns 0, or DIST_EINVAL (already started, or started after a stop), -errno from socket,
 * bind or listen, or an error of dist_epmd_client_new(). On failure nothing is running.
 */
DIST_API int dist_node_start(struct dist_node *node, const struct dist_node_handlers *h,
                             void *user_data);

/*
 * dist_node_stop: send a goodbye to every connected peer (written as far as the sockets take
 * it at once), close every connection, stop listening and unregister from epmd. No callback
 * runs afterwards, and sends fail with DIST_EINVAL. Does nothing on a node not started. It may
 * be called from the node's callbacks.
 */
DIST_API void dist_node_stop(struct dist_node *node);

/*
 * dist_node_free: stop the node (dist_node_stop()) and free it. NULL is accepted. Must not be
 * called from the node's own callbacks.
 */
DIST_API void dist_node_free(struct dist_node *node);

/*
 * dist_node_send: send a typed message to a process on another node, by PID or by registered
 * name. Connects to the node when it is not connected yet.
 * @from: the sending process, or NULL (delivered with DIST_PID_NONE as its sender).
 * @to_node: the destination node's name; NULL takes @to's node index.
 * @to: the destination process, when @to_name is NULL; its node must be @to_node.
 * @to_name: a registered name on @to_node, or NULL.
 * @type: the message type's name (e.g. "chat.Say"); @payload, @len: the packed message,
 * copied. Messages from one sender to one process arrive in the order sent.
 * Returns 0, or:
 *   DIST_EBUSY     the peer's queue is over its high-water mark: try again later
 *   DIST_EINVAL    the node is not started; no target; a target on the local node
 *   DIST_EBADNAME  @to_node fails dist_node_name_check()
 *   DIST_ELIMIT    the name table is full
 *   DIST_EFRAME_TOO_BIG  a message over the size limit
 *   -ENOMEM
 * On failure nothing is queued.
 */
DIST_API int dist_node_send(struct dist_node *node, const struct dist_pid *from,
                            const char *to_node, const struct dist_pid *to, const char *to_name,
                            const char *type, const void *payload, size_t len);

/*
 * dist_node_post: send any kind of message (struct dist_msg) to @to_node, which connects as
 * dist_node_send() does. @msg is borrowed for the call; its contents are copied.
 * Returns what dist_node_send() returns, and DIST_EINVAL for an unknown kind, a PID whose
 * node index is not in the table, or a message without the processes its kind needs (both
 * from and to for LINK, UNLINK, EXIT and DOWN; to or to_name for SEND, MONITOR, DEMONITOR;
 * to for SPAWN_REPLY).
 */
DIST_API int dist_node_post(struct dist_node *node, const char *to_node,
                            const struct dist_msg *msg);

/*
 * dist_node_intern: the index of node name @name in the node's table, adding it if needed.
 * The node's own name is 0. Indexes stay valid for the node's life.
 * Returns the index (>= 0), or DIST_EBADNAME, DIST_ELIMIT (the table holds 65536 names, since
 * peers add names too), -ENOMEM.
 */
DIST_API int dist_node_intern(struct dist_node *node, const char *name);

/* dist_node_name_of: the name at @index (borrowed for the node's life), or NULL if none. */
DIST_API const char *dist_node_name_of(const struct dist_node *node, uint32_t index);

/* dist_node_creation: the node's creation from epmd, or 0 before on_ready. */
DIST_API uint32_t dist_node_creation(const struct dist_node *node);

/* dist_node_port: the port the node listens on, or 0 before dist_node_start(). */
DIST_API uint16_t dist_node_port(const struct dist_node *node);

/*
 * dist_node_peer_pending: bytes queued for @to_node and not yet written to its socket (0 for
 * an unknown node), to compare with queue_high_water.
 */
DIST_API size_t dist_node_peer_pending(struct dist_node *node, const char *to_node);

#ifdef __cplusplus
}
#endif

#endif /* DIST_H */
