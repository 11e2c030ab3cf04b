/*
 * handshake.c: mutual authentication of two nodes with the cluster cookie, once their channel
 * (TLS, or plain TCP in insecure mode) is up.
 *
 *     initiator A                                      responder B
 *     Hello{version, "a@h", creation, nonce_a, flags} ->
 *                  <- Hello{version, "b@h", creation, nonce_b, flags}
 *     Auth{mac_a}  ->                                  <- Auth{mac_b}
 *
 *     mac_x = HMAC-SHA256(cookie, label(x's role) || x's hello || y's hello || binding)
 *
 * Each hello enters the MAC as (u32 version | u16 len | node | u32 creation | nonce |
 * u32 flags), so every field either side saw is covered and no two transcripts encode alike.
 * Fresh nonces from both sides make an Auth useless in any other handshake (replay). The
 * sender's hello comes first and the label names the sender's role, so a side's own MAC sent
 * back to it fails (reflection), and so does a pair of sides that both think they dialled. The
 * channel binding, exported from the TLS session, makes an Auth useless on any other TLS
 * session, so a relay that terminates TLS towards each side cannot splice the two.
 *
 * States: START -> HELLO_SENT -> AUTH_SENT -> DONE, and FAILED from anywhere.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "internal.h"
#include "secure.h"

enum { HS_START, HS_HELLO_SENT, HS_AUTH_SENT, HS_DONE, HS_FAILED };

/* The two labels have one length, so the label is a fixed-size prefix. */
static const char label_initiator[] = "dist-auth-v1 initiator";
static const char label_responder[] = "dist-auth-v1 responder";
#define LABEL_LEN (sizeof(label_initiator) - 1)
_Static_assert(sizeof(label_initiator) == sizeof(label_responder), "labels differ in length");

/* A hello's share of the MAC input, and the whole input. */
#define HELLO_ENC_MAX (4 + 2 + DIST__NODE_MAX + 4 + DIST__HS_NONCE_LEN + 4)
#define MAC_INPUT_MAX (LABEL_LEN + 2 * HELLO_ENC_MAX + DIST__HS_BINDING_MAX)

static int name_char(char c, int host)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c == '_' || c == '-' || (host && c == '.');
}

int dist__node_name_check(const char *node, size_t len)
{
    const char *at = node != NULL ? memchr(node, '@', len) : NULL;
    size_t name_len, host_len;

    if (at == NULL)
        return DIST_EBADNAME;
    name_len = (size_t)(at - node);
    host_len = len - name_len - 1;
    if (name_len == 0 || name_len > DIST__NAME_MAX || host_len == 0 || host_len > DIST__HOST_MAX)
        return DIST_EBADNAME;
    for (size_t i = 0; i < len; i++) {
        if (i != name_len && !name_char(node[i], i > name_len))
            return DIST_EBADNAME;
    }
    return 0;
}

/* Fail for good, with a reason for the log; see secure.h for why a failure is final. */
static int hs_fail(struct dist__hs *hs, int err, const char *reason)
{
    hs->state = HS_FAILED;
    snprintf(hs->reason, sizeof(hs->reason), "%s", reason);
    return err;
}

int dist__hs_init(struct dist__hs *hs, const struct dist__cookie *cookie, const char *name,
                  uint32_t creation, int initiator)
{
    size_t name_len = strlen(name);

    if (cookie->len == 0 || cookie->len > DIST__COOKIE_MAX || creation == 0)
        return DIST_EINVAL;
    if (dist__node_name_check(name, name_len) != 0)
        return DIST_EBADNAME;
    memset(hs, 0, sizeof(*hs));
    if (RAND_bytes(hs->nonce, sizeof(hs->nonce)) != 1)
        return DIST_ETLS;
    hs->state = HS_START;
    hs->initiator = initiator != 0;
    memcpy(hs->key, cookie->data, cookie->len);
    hs->key_len = cookie->len;
    memcpy(hs->name, name, name_len);
    hs->name_len = name_len;
    hs->creation = creation;
    return 0;
}

int dist__hs_expect(struct dist__hs *hs, const char *node)
{
    size_t len = strlen(node);

    if (dist__node_name_check(node, len) != 0)
        return DIST_EBADNAME;
    memcpy(hs->expect, node, len);
    hs->expect_len = len;
    return 0;
}

void dist__hs_done(struct dist__hs *hs)
{
    if (hs != NULL)
        OPENSSL_cleanse(hs, sizeof(*hs));
}

int dist__hs_hello(struct dist__hs *hs, struct dist__hs_hello *out)
{
    if (hs->state != HS_START)
        return hs_fail(hs, DIST_EHANDSHAKE, "hello requested twice or after a failure");
    hs->state = HS_HELLO_SENT;
    *out = (struct dist__hs_hello){
        .version = DIST__HS_VERSION,
        .node = hs->name,
        .node_len = hs->name_len,
        .creation = hs->creation,
        .nonce = hs->nonce,
        .nonce_len = sizeof(hs->nonce),
        .flags = 0,
    };
    return 0;
}

static uint8_t *put_hello(uint8_t *p, uint32_t version, const char *node, size_t node_len,
                          uint32_t creation, const uint8_t *nonce, uint32_t flags)
{
    p = dist__put32(p, version);
    p = dist__put16(p, (uint16_t)node_len);
    memcpy(p, node, node_len);
    p = dist__put32(p + node_len, creation);
    memcpy(p, nonce, DIST__HS_NONCE_LEN);
    return dist__put32(p + DIST__HS_NONCE_LEN, flags);
}

static uint8_t *put_own_hello(uint8_t *p, const struct dist__hs *hs)
{
    return put_hello(p, DIST__HS_VERSION, hs->name, hs->name_len, hs->creation, hs->nonce, 0);
}

static uint8_t *put_peer_hello(uint8_t *p, const struct dist__hs *hs)
{
    return put_hello(p, hs->peer_version, hs->peer, hs->peer_len, hs->peer_creation, hs->peer_nonce,
                     hs->peer_flags);
}

/*
 * The MAC that the side in the initiator's role sends when @from_initiator, else the one the
 * responder sends. Both sides compute both MACs from the same transcript: the sender's hello
 * comes first.
 */
static int hs_mac(const struct dist__hs *hs, int from_initiator, const uint8_t *binding,
                  size_t binding_len, uint8_t out[DIST__HS_MAC_LEN])
{
    uint8_t in[MAC_INPUT_MAX];
    uint8_t *p = in;
    unsigned out_len = 0;
    uint8_t *r;

    memcpy(p, from_initiator ? label_initiator : label_responder, LABEL_LEN);
    p += LABEL_LEN;
    if (from_initiator == hs->initiator) {
        p = put_own_hello(p, hs);
        p = put_peer_hello(p, hs);
    } else {
        p = put_peer_hello(p, hs);
        p = put_own_hello(p, hs);
    }
    if (binding_len > 0)
        memcpy(p, binding, binding_len);
    p += binding_len;
    r = HMAC(EVP_sha256(), hs->key, (int)hs->key_len, in, (size_t)(p - in), out, &out_len);
    OPENSSL_cleanse(in, sizeof(in));
    return r != NULL && out_len == DIST__HS_MAC_LEN ? 0 : DIST_ETLS;
}

/* Checks on the peer's hello; returns a reason, or NULL when it is acceptable. */
static const char *hello_problem(const struct dist__hs *hs, const struct dist__hs_hello *peer)
{
    if (peer->version < 1)
        return "peer hello: version 0";
    if (peer->node == NULL || dist__node_name_check(peer->node, peer->node_len) != 0)
        return "peer hello: malformed node name";
    if (hs->expect_len > 0 &&
        (peer->node_len != hs->expect_len || memcmp(peer->node, hs->expect, hs->expect_len) != 0))
        return "peer hello: not the node that was dialled";
    if (peer->creation == 0)
        return "peer hello: creation 0";
    if (peer->nonce == NULL || peer->nonce_len != DIST__HS_NONCE_LEN)
        return "peer hello: nonce of the wrong length";
    if (CRYPTO_memcmp(peer->nonce, hs->nonce, DIST__HS_NONCE_LEN) == 0)
        return "peer hello: our own nonce sent back";
    return NULL;
}

int dist__hs_on_hello(struct dist__hs *hs, const struct dist__hs_hello *peer,
                      const uint8_t *binding, size_t binding_len, struct dist__hs_auth *out)
{
    const char *problem;

    if (hs->state != HS_HELLO_SENT)
        return hs_fail(hs, DIST_EHANDSHAKE, "peer hello out of order");
    problem = hello_problem(hs, peer);
    if (problem != NULL)
        return hs_fail(hs, DIST_EHANDSHAKE, problem);
    if (binding_len > DIST__HS_BINDING_MAX || (binding_len > 0 && binding == NULL))
        return hs_fail(hs, DIST_EHANDSHAKE, "channel binding too long");
    hs->peer_version = peer->version;
    memcpy(hs->peer, peer->node, peer->node_len);
    hs->peer_len = peer->node_len;
    hs->peer_creation = peer->creation;
    hs->peer_flags = peer->flags;
    memcpy(hs->peer_nonce, peer->nonce, DIST__HS_NONCE_LEN);
    if (hs_mac(hs, hs->initiator, binding, binding_len, hs->mac) != 0 ||
        hs_mac(hs, !hs->initiator, binding, binding_len, hs->peer_mac) != 0)
        return hs_fail(hs, DIST_ETLS, "HMAC-SHA256 failed");
    hs->state = HS_AUTH_SENT;
    out->mac = hs->mac;
    out->mac_len = sizeof(hs->mac);
    return 0;
}

int dist__hs_on_auth(struct dist__hs *hs, const struct dist__hs_auth *peer)
{
    if (hs->state != HS_AUTH_SENT)
        return hs_fail(hs, DIST_EHANDSHAKE, "peer auth out of order");
    /* The length is public; only the comparison of the bytes must not leak timing. */
    if (peer->mac == NULL || peer->mac_len != DIST__HS_MAC_LEN ||
        CRYPTO_memcmp(peer->mac, hs->peer_mac, DIST__HS_MAC_LEN) != 0)
        return hs_fail(hs, DIST_EAUTH,
                       "peer auth: wrong MAC (a different cookie, or a replayed, "
                       "reflected or relayed auth)");
    hs->state = HS_DONE;
    OPENSSL_cleanse(hs->key, sizeof(hs->key));
    return 0;
}

const char *dist__hs_reason(const struct dist__hs *hs)
{
    return hs->reason;
}

const char *dist__hs_peer(const struct dist__hs *hs, size_t *len)
{
    *len = hs->peer_len;
    return hs->peer;
}

uint32_t dist__hs_peer_creation(const struct dist__hs *hs)
{
    return hs->peer_creation;
}
