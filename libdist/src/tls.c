/*
 * tls.c: TLS 1.3 sessions over memory buffers, so that any event loop can drive them.
 *
 *     socket --read--> dist__tls_feed() --> [rbio] --> SSL --> dist__tls_read() --> plaintext
 *     socket <--send-- dist__tls_take() <-- [wbio] <-- SSL <-- dist__tls_write() <-- plaintext
 *
 * By default a context carries an ephemeral key and a self-signed certificate made when it is
 * built, and checks no certificate: TLS gives confidentiality and integrity, and the cookie MAC
 * of the handshake, bound to this session by exported keying material, authenticates the peer.
 * With a CA file both sides present certificates and verify each other's (mTLS).
 *
 * Sessions look at the first three bytes the peer sends before OpenSSL does: a TLS record opens
 * with content type 22 (handshake) or 21 (alert) and major version 3. Anything else is a
 * plain-text peer, refused at once with its first bytes quoted in the reason, instead of an
 * OpenSSL error or a wait for a record that will never complete.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "secure.h"

/* The exporter label for the channel binding (RFC 8446 section 7.5). */
#define BINDING_LABEL "EXPORTER-dist-channel-binding"
/* Bytes of the peer's first flight quoted when it is not TLS. */
#define HEAD_MAX 8
/* Lifetime of an ephemeral certificate. Nobody verifies it, but it must outlive any node. */
#define EPHEMERAL_DAYS (100L * 365)

struct dist__tls_ctx {
    SSL_CTX *ssl_ctx;
    int mtls;
};

struct dist__tls {
    SSL *ssl;
    BIO *rbio; /* ciphertext in; owned by ssl */
    BIO *wbio; /* ciphertext out; owned by ssl */
    int mtls;
    int established;
    int err; /* the first failure, returned from then on */
    uint8_t head[HEAD_MAX];
    size_t head_len;
    char reason[DIST__REASON_MAX];
};

/* Write "@what: <OpenSSL's error>" into @buf, and empty this thread's OpenSSL error queue. */
static void ossl_reason(char *buf, size_t cap, const char *what)
{
    char err[200] = "no detail from OpenSSL";
    unsigned long e = ERR_peek_last_error();

    if (e != 0)
        ERR_error_string_n(e, err, sizeof(err));
    ERR_clear_error();
    snprintf(buf, cap, "%s: %s", what, err);
}

/* ---- Context -------------------------------------------------------------------------------- */

static X509 *self_signed(EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name;
    uint64_t serial;

    if (x == NULL || RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
        goto fail;
    name = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), EPHEMERAL_DAYS, 0, NULL) == NULL ||
        X509_set_pubkey(x, key) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"dist node", -1,
                                   -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_sign(x, key, EVP_sha256()) == 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

static int use_ephemeral(SSL_CTX *c, char *why, size_t why_cap)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = key != NULL ? self_signed(key) : NULL;
    int ok = cert != NULL && SSL_CTX_use_certificate(c, cert) == 1 &&
             SSL_CTX_use_PrivateKey(c, key) == 1;

    if (!ok)
        ossl_reason(why, why_cap, "cannot make an ephemeral certificate");
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok ? 0 : DIST_ETLS;
}

static int use_files(SSL_CTX *c, const struct dist__tls_opts *o, char *why, size_t why_cap)
{
    char what[DIST__REASON_MAX / 2];

    if (SSL_CTX_use_certificate_chain_file(c, o->cert_file) != 1) {
        snprintf(what, sizeof(what), "certificate file %s", o->cert_file);
    } else if (SSL_CTX_use_PrivateKey_file(c, o->key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof(what), "key file %s", o->key_file);
    } else if (SSL_CTX_check_private_key(c) != 1) {
        snprintf(what, sizeof(what), "key file %s does not match %s", o->key_file, o->cert_file);
    } else if (o->ca_file != NULL && SSL_CTX_load_verify_locations(c, o->ca_file, NULL) != 1) {
        snprintf(what, sizeof(what), "CA file %s", o->ca_file);
    } else {
        return 0;
    }
    ossl_reason(why, why_cap, what);
    return DIST_ETLS;
}

static SSL_CTX *ssl_ctx_tls13(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_method());

    /* Nothing resumes a session: every connection runs the full handshake and the cookie MAC. */
    if (c == NULL || SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_num_tickets(c, 0) != 1) {
        SSL_CTX_free(c);
        return NULL;
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    return c;
}

int dist__tls_ctx_new(const struct dist__tls_opts *opts, struct dist__tls_ctx **out, char *why,
                      size_t why_cap)
{
    static const struct dist__tls_opts defaults;
    const struct dist__tls_opts *o = opts != NULL ? opts : &defaults;
    struct dist__tls_ctx *ctx;
    int rc;

    if ((o->cert_file == NULL) != (o->key_file == NULL) ||
        (o->ca_file != NULL && o->cert_file == NULL)) {
        snprintf(why, why_cap,
                 "TLS options: a CA file needs a certificate and a key file, and a "
                 "certificate file needs its key file");
        return DIST_EINVAL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return -ENOMEM;
    ERR_clear_error();
    ctx->ssl_ctx = ssl_ctx_tls13();
    if (ctx->ssl_ctx == NULL) {
        ossl_reason(why, why_cap, "cannot make a TLS 1.3 context");
        rc = DIST_ETLS;
        goto fail;
    }
    rc = o->cert_file != NULL ? use_files(ctx->ssl_ctx, o, why, why_cap)
                              : use_ephemeral(ctx->ssl_ctx, why, why_cap);
    if (rc != 0)
        goto fail;
    ctx->mtls = o->ca_file != NULL;
    SSL_CTX_set_verify(
        ctx->ssl_ctx,
        ctx->mtls ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE, NULL);
    *out = ctx;
    return 0;
fail:
    dist__tls_ctx_free(ctx);
    return rc;
}

void dist__tls_ctx_free(struct dist__tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

/* ---- Sessions ------------------------------------------------------------------------------- */

int dist__tls_new(struct dist__tls_ctx *ctx, int server, const char *peer_host,
                  struct dist__tls **out)
{
    struct dist__tls *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -ENOMEM;
    s->mtls = ctx->mtls;
    s->ssl = SSL_new(ctx->ssl_ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        goto fail;
    }
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    if (server)
        SSL_set_accept_state(s->ssl);
    else
        SSL_set_connect_state(s->ssl);
    if (s->mtls && peer_host != NULL && SSL_set1_host(s->ssl, peer_host) != 1)
        goto fail;
    *out = s;
    return 0;
fail:
    SSL_free(s->ssl); /* and the BIOs, once SSL_set_bio() has handed them over */
    free(s);
    ERR_clear_error();
    return DIST_ETLS;
}

void dist__tls_free(struct dist__tls *s)
{
    if (s == NULL)
        return;
    SSL_free(s->ssl);
    free(s);
}

/* Record the first failure; later calls return it. */
static int tls_fail(struct dist__tls *s, int err, const char *what)
{
    long v = SSL_get_verify_result(s->ssl);

    if (s->err != 0)
        return s->err;
    s->err = err;
    if (err == DIST_ETLS && v != X509_V_OK) {
        ERR_clear_error();
        snprintf(s->reason, sizeof(s->reason), "%s: peer certificate refused: %s", what,
                 X509_verify_cert_error_string(v));
    } else if (err == DIST_ETLS) {
        ossl_reason(s->reason, sizeof(s->reason), what);
    }
    return err;
}

/* The peer's first bytes, printable ones as they are, others as \xNN. */
static void quote_head(const struct dist__tls *s, char *buf, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < s->head_len && n + 5 < cap; i++) {
        uint8_t b = s->head[i];
        if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
            buf[n++] = (char)b;
        else
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", b);
    }
    buf[n] = '\0';
}

/* Check the opening bytes of the peer's first record; see the comment at the top. */
static int check_head(struct dist__tls *s, const uint8_t *in, size_t len)
{
    size_t before = s->head_len;
    char quoted[4 * HEAD_MAX + 1];

    while (s->head_len < HEAD_MAX && len > 0) {
        s->head[s->head_len++] = *in++;
        len--;
    }
    for (size_t i = before; i < s->head_len && i < 3; i++) {
        uint8_t b = s->head[i];
        int ok = i == 0 ? b == 22 || b == 21 : i == 1 ? b == 3 : b <= 4;
        if (!ok) {
            quote_head(s, quoted, sizeof(quoted));
            snprintf(s->reason, sizeof(s->reason),
                     "peer does not speak TLS: it opened with \"%s\" (a plain-text client on a "
                     "TLS port?)",
                     quoted);
            s->err = DIST_ENOTTLS;
            return DIST_ENOTTLS;
        }
    }
    return 0;
}

int dist__tls_feed(struct dist__tls *s, const uint8_t *in, size_t len)
{
    size_t n = 0;
    int rc;

    if (s->err != 0)
        return s->err;
    if (len == 0)
        return 0;
    if (s->head_len < 3) {
        rc = check_head(s, in, len);
        if (rc != 0)
            return rc;
    }
    if (BIO_write_ex(s->rbio, in, len, &n) != 1 || n != len) {
        ERR_clear_error();
        return -ENOMEM;
    }
    return 0;
}

/* Map an SSL call's failure: waiting for bytes is not one. */
static int ssl_result(struct dist__tls *s, int r, const char *what)
{
    int e = SSL_get_error(s->ssl, r);

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return DIST_EAGAIN_MORE;
    return tls_fail(s, DIST_ETLS, what);
}

int dist__tls_handshake(struct dist__tls *s)
{
    int r;

    if (s->err != 0)
        return s->err;
    if (s->established)
        return 0;
    ERR_clear_error();
    r = SSL_do_handshake(s->ssl);
    if (r != 1)
        return ssl_result(s, r, "TLS handshake");
    s->established = 1;
    return 0;
}

int dist__tls_established(const struct dist__tls *s)
{
    return s->established;
}

int dist__tls_read(struct dist__tls *s, uint8_t *buf, size_t cap)
{
    size_t n = 0;
    int r;

    if (s->err != 0)
        return s->err;
    if (!s->established)
        return DIST_EINVAL;
    ERR_clear_error();
    r = SSL_read_ex(s->ssl, buf, cap < INT_MAX ? cap : INT_MAX, &n);
    if (r == 1)
        return (int)n;
    if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN)
        return 0;
    return ssl_result(s, r, "TLS read");
}

int dist__tls_write(struct dist__tls *s, const uint8_t *buf, size_t len)
{
    size_t n = 0;
    int r;

    if (s->err != 0)
        return s->err;
    if (!s->established || len == 0)
        return DIST_EINVAL;
    ERR_clear_error();
    /* The memory BIO takes everything, so a write is never partial. */
    r = SSL_write_ex(s->ssl, buf, len, &n);
    if (r != 1 || n != len)
        return tls_fail(s, DIST_ETLS, "TLS write");
    return 0;
}

size_t dist__tls_want_write(const struct dist__tls *s)
{
    return BIO_ctrl_pending(s->wbio);
}

size_t dist__tls_take(struct dist__tls *s, uint8_t *buf, size_t cap)
{
    size_t n = 0;

    if (cap == 0 || BIO_ctrl_pending(s->wbio) == 0)
        return 0;
    if (BIO_read_ex(s->wbio, buf, cap, &n) != 1)
        n = 0;
    return n;
}

int dist__tls_close(struct dist__tls *s)
{
    if (s->err != 0)
        return s->err;
    ERR_clear_error();
    if (SSL_shutdown(s->ssl) < 0)
        return tls_fail(s, DIST_ETLS, "TLS shutdown");
    return 0;
}

int dist__tls_binding(struct dist__tls *s, uint8_t out[DIST__TLS_BINDING_LEN])
{
    if (s->err != 0)
        return s->err;
    if (!s->established)
        return DIST_EINVAL;
    ERR_clear_error();
    if (SSL_export_keying_material(s->ssl, out, DIST__TLS_BINDING_LEN, BINDING_LABEL,
                                   sizeof(BINDING_LABEL) - 1, NULL, 0, 0) != 1)
        return tls_fail(s, DIST_ETLS, "TLS keying material export");
    return 0;
}

int dist__tls_check_host(struct dist__tls *s, const char *host)
{
    X509 *cert;

    if (!s->mtls || !s->established)
        return DIST_EINVAL;
    cert = SSL_get0_peer_certificate(s->ssl);
    if (cert == NULL || SSL_get_verify_result(s->ssl) != X509_V_OK)
        return DIST_EAUTH;
    if (X509_check_host(cert, host, 0, 0, NULL) == 1 || X509_check_ip_asc(cert, host, 0) == 1)
        return 0;
    ERR_clear_error();
    return DIST_EAUTH;
}

const char *dist__tls_reason(const struct dist__tls *s)
{
    return s->reason;
}
