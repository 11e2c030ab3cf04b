/*
 * secure.h: libdist's security pieces for node-to-node connections: the cluster cookie
 * (cookie.c), the mutual authentication handshake (handshake.c) and the TLS 1.3 session
 * (tls.c).
 *
 * None of them does socket I/O or owns an event loop. The connection layer reads bytes from
 * the socket, feeds them in, and sends what comes out; it also enforces the handshake's time
 * limit. A connection runs them in this order:
 *
 *     TCP connected
 *        |
 *     TLS 1.3 handshake (tls.c)          skipped only in insecure mode
 *        |   channel binding = 32 bytes exported from the TLS session (empty when insecure)
 *     Hello  ->  <-  Hello               both sides, in either order (handshake.c)
 *     Auth   ->  <-  Auth                HMAC over both hellos, both nonces and the binding
 *        |
 *     authenticated: frames flow
 *
 * Threads: each object is used by one thread at a time. A struct dist__tls_ctx may be shared
 * by sessions on any threads once built.
 */
#ifndef DIST_SECURE_H
#define DIST_SECURE_H

#include <stddef.h>
#include <stdint.h>

#include "dist.h"

/* ---- Cookie (cookie.c) ---------------------------------------------------------------------- */

#define DIST__COOKIE_MAX     255            /* bytes in a cookie */
#define DIST__COOKIE_GEN_LEN 32             /* characters in a generated cookie */
#define DIST__COOKIE_ENV     "DIST_COOKIE"  /* the environment variable */
#define DIST__COOKIE_FILE    ".dist.cookie" /* the default file, in $HOME */
#define DIST__REASON_MAX     256            /* a reason string, NUL included */

/* The cluster secret. Its bytes are not NUL-terminated; wipe it with dist__cookie_done(). */
struct dist__cookie {
    size_t len;
    uint8_t data[DIST__COOKIE_MAX];
};

/*
 * dist__cookie_resolve: find the cookie, in this order of precedence:
 *   1. @option, when not NULL (a command-line or configuration value);
 *   2. the environment variable DIST_COOKIE, when set;
 *   3. the cookie file @path, or $HOME/.dist.cookie when @path is NULL.
 * A value from any source must be 1..DIST__COOKIE_MAX bytes once one trailing newline ("\n" or
 * "\r\n") is stripped, and hold no NUL byte; an empty value is refused, never skipped.
 *
 * The file must be a regular file owned by the calling user with no group or other permission
 * bits. When it does not exist, one is created holding a random cookie of DIST__COOKIE_GEN_LEN
 * letters and digits with mode 0400. It is written under a temporary name and linked into
 * place, so a concurrent reader never sees it half-written and two nodes starting at once end
 * up sharing one cookie.
 *
 * @out: filled on success; untouched on failure.
 * @source: when not NULL, set on success to a static word naming where the cookie came from:
 *   "option", "environment", "file" or "generated".
 * @why, @why_cap: on failure, a NUL-terminated reason for the log that names the file and
 *   its mode where they matter; may be NULL.
 * Returns 0, or:
 *   DIST_ECOOKIE_PERM  the file is not a regular file, is owned by another user, or has group
 *                      or other permission bits
 *   DIST_ECOOKIE       an empty or oversized cookie, or one holding a NUL byte
 *   DIST_EINVAL        no @path and no $HOME
 *   DIST_ETLS          the random generator failed
 *   -errno             the file could not be read or created
 */
int dist__cookie_resolve(const char *option, const char *path, struct dist__cookie *out,
                         const char **source, char *why, size_t why_cap);

/* dist__cookie_done: wipe @cookie's bytes. Accepts NULL. */
void dist__cookie_done(struct dist__cookie *cookie);

/* ---- Handshake (handshake.c) ---------------------------------------------------------------- */

#define DIST__HS_VERSION     1 /* the protocol version this code speaks */
#define DIST__HS_NONCE_LEN   32
#define DIST__HS_MAC_LEN     32  /* HMAC-SHA256 */
#define DIST__HS_BINDING_MAX 64  /* longest channel binding accepted */
#define DIST__NAME_MAX       255 /* characters before the '@' */
#define DIST__HOST_MAX       255 /* characters after the '@' */
#define DIST__NODE_MAX       (DIST__NAME_MAX + 1 + DIST__HOST_MAX)

/*
 * The contents of a Hello message, as the wire codec fills it from a frame or encodes it into
 * one. The pointers are views: for a received hello into the decoded frame, for our own into
 * the struct dist__hs that produced it.
 */
struct dist__hs_hello {
    uint32_t version; /* highest protocol version the sender speaks */
    const char *node; /* "name@host", not NUL-terminated */
    size_t node_len;
    uint32_t creation;    /* the sender's incarnation, never 0 */
    const uint8_t *nonce; /* DIST__HS_NONCE_LEN fresh random bytes */
    size_t nonce_len;
    uint32_t flags; /* none defined yet: sent as 0, unknown bits ignored */
};

/* The contents of an Auth message. Views, as for struct dist__hs_hello. */
struct dist__hs_auth {
    const uint8_t *mac; /* DIST__HS_MAC_LEN bytes */
    size_t mac_len;
};

/*
 * One side's handshake. Caller-owned memory: dist__hs_init() then dist__hs_done().
 * Fields are private to handshake.c except through the accessors below.
 */
struct dist__hs {
    int state;
    int initiator;
    uint8_t key[DIST__COOKIE_MAX];
    size_t key_len;
    char name[DIST__NODE_MAX];
    size_t name_len;
    uint32_t creation;
    uint8_t nonce[DIST__HS_NONCE_LEN];
    char expect[DIST__NODE_MAX]; /* the peer we dialled, or empty for anyone */
    size_t expect_len;
    char peer[DIST__NODE_MAX];
    size_t peer_len;
    uint32_t peer_version;
    uint32_t peer_creation;
    uint32_t peer_flags;
    uint8_t peer_nonce[DIST__HS_NONCE_LEN];
    uint8_t mac[DIST__HS_MAC_LEN];      /* ours, sent in our Auth */
    uint8_t peer_mac[DIST__HS_MAC_LEN]; /* what the peer's Auth must hold */
    char reason[DIST__REASON_MAX];
};

/*
 * dist__node_name_check: check "name@host". name is 1..DIST__NAME_MAX letters, digits, '_'
 * and '-', as in Erlang; host is 1..DIST__HOST_MAX letters, digits, '.', '_' and '-' (a host
 * name or an IPv4 address). Exactly one '@'. Returns 0 or DIST_EBADNAME.
 */
int dist__node_name_check(const char *node, size_t len);

/*
 * dist__hs_init: start a handshake. Draws this side's nonce.
 * @cookie: borrowed; its bytes are copied.
 * @name: our node name, NUL-terminated, checked with dist__node_name_check().
 * @creation: our incarnation, non-zero.
 * @initiator: non-zero on the side that dialled. The two sides must disagree.
 * Returns 0, DIST_EINVAL (bad cookie length, creation 0), DIST_EBADNAME, or DIST_ETLS when the
 * random generator fails. @hs is unusable after a failure.
 */
int dist__hs_init(struct dist__hs *hs, const struct dist__cookie *cookie, const char *name,
                  uint32_t creation, int initiator);

/*
 * dist__hs_expect: on the dialling side, require the peer's hello to name @node
 * (NUL-terminated), so a connection that reached the wrong node fails even when that node
 * shares the cookie. Call before dist__hs_on_hello(). Returns 0 or DIST_EBADNAME.
 */
int dist__hs_expect(struct dist__hs *hs, const char *node);

/*
 * dist__hs_done: wipe the cookie and secrets held by @hs. Accepts NULL.
 */
void dist__hs_done(struct dist__hs *hs);

/*
 * dist__hs_hello: our Hello, to send first. Call once, before dist__hs_on_hello().
 * @out: its views point into @hs, valid until dist__hs_done().
 * Returns 0, or DIST_EHANDSHAKE when called twice or after a failure.
 */
int dist__hs_hello(struct dist__hs *hs, struct dist__hs_hello *out);

/*
 * dist__hs_on_hello: take the peer's Hello and compute our Auth, to send next.
 * @peer: borrowed; its contents are copied.
 * @binding, @binding_len: the channel binding, dist__tls_binding()'s bytes, or 0 bytes (NULL
 *   allowed) in insecure mode. Both sides must pass the same bytes.
 * @out: filled on success; its views point into @hs.
 * Returns 0, DIST_ETLS when HMAC fails, or DIST_EHANDSHAKE: our hello not sent yet, a second
 * hello, a version below 1, a malformed or unexpected node name, a creation of 0, a nonce of
 * the wrong length, our own nonce echoed back, or a binding longer than DIST__HS_BINDING_MAX.
 * A peer's version above ours is accepted: it speaks ours too, and both versions enter the
 * MAC, so a tampered version fails the Auth.
 */
int dist__hs_on_hello(struct dist__hs *hs, const struct dist__hs_hello *peer,
                      const uint8_t *binding, size_t binding_len, struct dist__hs_auth *out);

/*
 * dist__hs_on_auth: check the peer's Auth. On 0 the peer holds the cookie, took part in this
 * very handshake (its nonces) over this very channel (the binding), and is the peer named in
 * its hello: the connection is authenticated.
 * Returns 0, DIST_EAUTH (wrong MAC: a different cookie, a replayed or reflected Auth, another
 * channel), or DIST_EHANDSHAKE (out of order).
 */
int dist__hs_on_auth(struct dist__hs *hs, const struct dist__hs_auth *peer);

/*
 * A failure in any dist__hs_ call is final: every later call returns DIST_EHANDSHAKE, so a
 * peer cannot retry MACs on one connection. The connection must close, logging
 * dist__hs_reason().
 */

/* dist__hs_reason: why the handshake failed, or "" while it has not. */
const char *dist__hs_reason(const struct dist__hs *hs);

/* dist__hs_peer: the authenticated peer's name (not NUL-terminated) and its length. */
const char *dist__hs_peer(const struct dist__hs *hs, size_t *len);

/* dist__hs_peer_creation: the authenticated peer's creation. */
uint32_t dist__hs_peer_creation(const struct dist__hs *hs);

/* ---- TLS 1.3 (tls.c) ------------------------------------------------------------------------ */

#define DIST__TLS_BINDING_LEN 32

/*
 * How a node's TLS is configured. All NULL is the default: each node makes an ephemeral key and
 * a self-signed certificate, checks no certificate, and relies on the cookie MAC, which is
 * bound to the TLS session, to authenticate the peer.
 */
struct dist__tls_opts {
    const char *ca_file;   /* PEM CA bundle: verify the peer's certificate (mTLS) */
    const char *cert_file; /* PEM certificate chain presented to the peer */
    const char *key_file;  /* PEM private key of cert_file */
};

struct dist__tls_ctx;
struct dist__tls;

/*
 * dist__tls_ctx_new: build the TLS 1.3-only context one node uses for all its connections.
 * Setting @opts->ca_file requires cert_file and key_file, and makes both sides present and
 * verify certificates. cert_file without ca_file presents the certificate but checks none.
 * @opts: borrowed; NULL means all defaults.
 * @out: set to the new context on success, owned by the caller (dist__tls_ctx_free()).
 * @why, @why_cap: on failure, the reason for the log (the file and OpenSSL's error).
 * Returns 0, DIST_EINVAL (inconsistent options) or DIST_ETLS.
 */
int dist__tls_ctx_new(const struct dist__tls_opts *opts, struct dist__tls_ctx **out, char *why,
                      size_t why_cap);

/* dist__tls_ctx_free: release @ctx once no session uses it. Accepts NULL. */
void dist__tls_ctx_free(struct dist__tls_ctx *ctx);

/*
 * dist__tls_new: a session over memory buffers.
 * @server: non-zero on the accepting side.
 * @peer_host: with mTLS, the host the peer's certificate must name (SAN DNS or IP entry);
 *   NULL to check names later with dist__tls_check_host(). Ignored without mTLS.
 * @out: set on success, owned by the caller (dist__tls_free()).
 * Returns 0, DIST_ETLS, or -ENOMEM.
 */
int dist__tls_new(struct dist__tls_ctx *ctx, int server, const char *peer_host,
                  struct dist__tls **out);

/* dist__tls_free: release @s. Accepts NULL. */
void dist__tls_free(struct dist__tls *s);

/*
 * dist__tls_feed: hand over ciphertext read from the socket; it is buffered until
 * dist__tls_handshake() or dist__tls_read() consumes it. The first bytes the peer sends must
 * open a TLS record; otherwise this fails at once rather than waiting for a record to finish.
 * Returns 0, DIST_ENOTTLS (a plain-text peer), DIST_ETLS (an earlier failure), or -ENOMEM.
 */
int dist__tls_feed(struct dist__tls *s, const uint8_t *in, size_t len);

/*
 * dist__tls_handshake: drive the TLS handshake as far as the fed bytes allow. The dialling side
 * calls it once straight after dist__tls_new() to produce its first flight.
 * Returns 0 once the handshake is complete, DIST_EAGAIN_MORE while it waits for the peer, or
 * DIST_ETLS / DIST_ENOTTLS. After any return, send what dist__tls_take() gives: after a
 * failure that may be an alert telling the peer why. In TLS 1.3 the dialling side completes
 * before the server has checked its certificate; a refusal reaches it as DIST_ETLS from
 * dist__tls_read().
 */
int dist__tls_handshake(struct dist__tls *s);

/* dist__tls_established: non-zero once the handshake is complete. */
int dist__tls_established(const struct dist__tls *s);

/*
 * dist__tls_read: decrypt into @buf.
 * Returns the number of bytes (> 0), DIST_EAGAIN_MORE when no whole record is buffered, 0 when
 * the peer closed the session cleanly, DIST_EINVAL before the handshake is complete, or
 * DIST_ETLS.
 */
int dist__tls_read(struct dist__tls *s, uint8_t *buf, size_t cap);

/*
 * dist__tls_write: encrypt all of @buf, @len > 0; the ciphertext waits for dist__tls_take().
 * Returns 0, DIST_EINVAL before the handshake is complete, or DIST_ETLS.
 */
int dist__tls_write(struct dist__tls *s, const uint8_t *buf, size_t len);

/* dist__tls_want_write: the number of ciphertext bytes waiting to be sent. */
size_t dist__tls_want_write(const struct dist__tls *s);

/*
 * dist__tls_take: move up to @cap bytes of waiting ciphertext into @buf for the socket.
 * Returns the number of bytes, 0 when none wait.
 */
size_t dist__tls_take(struct dist__tls *s, uint8_t *buf, size_t cap);

/*
 * dist__tls_close: queue a close_notify alert (then take and send it). Returns 0 or DIST_ETLS.
 */
int dist__tls_close(struct dist__tls *s);

/*
 * dist__tls_binding: export DIST__TLS_BINDING_LEN bytes of keying material (RFC 8446 section
 * 7.5, a fixed label) that both ends of this session, and only they, share.
 * Returns 0, DIST_EINVAL before the handshake is complete, or DIST_ETLS.
 */
int dist__tls_binding(struct dist__tls *s, uint8_t out[DIST__TLS_BINDING_LEN]);

/*
 * dist__tls_check_host: with mTLS, check that the peer's verified certificate names @host (for
 * the accepting side, once the peer's hello says who it claims to be).
 * Returns 0, DIST_EAUTH when it does not, DIST_EINVAL without mTLS or before the handshake is
 * complete.
 */
int dist__tls_check_host(struct dist__tls *s, const char *host);

/* dist__tls_reason: why the session failed, for the log; "" while it has not. */
const char *dist__tls_reason(const struct dist__tls *s);

#endif /* DIST_SECURE_H */
