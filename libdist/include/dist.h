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
    X(EINVAL, -30008, "invalid argument")

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

#ifdef __cplusplus
}
#endif

#endif /* DIST_H */
