/*
 * test_tls.c: TLS 1.3 sessions over memory buffers, pumped into each other in memory: the
 * handshake, data both ways, the channel binding, plain-text and old-TLS peers, and mTLS
 * against a CA that each test makes at run time in its own temporary directory.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "dist.h"
#include "secure.h"

/* Rounds of the pump before a handshake is declared stuck. */
#define MAX_ROUNDS 64

/* ---- Pump --------------------------------------------------------------------------------- */

/* Move all waiting ciphertext from @from to @to, in small pieces. Returns bytes moved, or -1. */
static long move(struct dist__tls *from, struct dist__tls *to, int *feed_rc)
{
    uint8_t buf[700];
    long total = 0;
    size_t n;

    for (;;) {
        n = dist__tls_take(from, buf, sizeof(buf));
        if (n == 0)
            break;
        total += (long)n;
        *feed_rc = dist__tls_feed(to, buf, n);
        if (*feed_rc != 0)
            return -1;
    }
    return total;
}

struct pair {
    struct dist__tls *client;
    struct dist__tls *server;
    int client_rc; /* last dist__tls_handshake() results */
    int server_rc;
};

/* Run both handshakes until neither side has anything left to say. */
static void pump(struct pair *p)
{
    int feed_rc = 0;

    p->client_rc = dist__tls_handshake(p->client);
    for (int i = 0; i < MAX_ROUNDS; i++) {
        long moved = move(p->client, p->server, &feed_rc);
        if (moved < 0) {
            p->server_rc = feed_rc;
            return;
        }
        p->server_rc = dist__tls_handshake(p->server);
        moved += move(p->server, p->client, &feed_rc);
        if (feed_rc != 0) {
            p->client_rc = feed_rc;
            return;
        }
        p->client_rc = dist__tls_handshake(p->client);
        if (moved == 0 && dist__tls_want_write(p->client) == 0)
            return;
    }
    cr_assert_fail("the handshake never settled");
}

static void pair_new(struct pair *p, struct dist__tls_ctx *client_ctx,
                     struct dist__tls_ctx *server_ctx, const char *server_host)
{
    memset(p, 0, sizeof(*p));
    cr_assert_eq(dist__tls_new(client_ctx, 0, server_host, &p->client), 0);
    cr_assert_eq(dist__tls_new(server_ctx, 1, NULL, &p->server), 0);
}

static void pair_free(struct pair *p)
{
    dist__tls_free(p->client);
    dist__tls_free(p->server);
}

static struct dist__tls_ctx *ctx_new(const struct dist__tls_opts *opts)
{
    struct dist__tls_ctx *ctx = NULL;
    char why[DIST__REASON_MAX] = "";
    int rc = dist__tls_ctx_new(opts, &ctx, why, sizeof(why));

    cr_assert_eq(rc, 0, "context: %s (%s)", dist_strerror(rc), why);
    return ctx;
}

static void assert_reason(struct dist__tls *s, const char *part)
{
    cr_assert(strstr(dist__tls_reason(s), part) != NULL, "reason: %s", dist__tls_reason(s));
}

/* Send @msg from @from and read it at @to. */
static void send_and_check(struct dist__tls *from, struct dist__tls *to, const uint8_t *msg,
                           size_t len)
{
    uint8_t *got = malloc(len);
    size_t have = 0;
    int feed_rc = 0;

    cr_assert_not_null(got);
    cr_assert_eq(dist__tls_write(from, msg, len), 0);
    cr_assert_gt(dist__tls_want_write(from), len, "ciphertext is no longer than plaintext");
    cr_assert_geq(move(from, to, &feed_rc), 0);
    while (have < len) {
        int n = dist__tls_read(to, got + have, len - have);
        cr_assert_gt(n, 0, "read: %d (%s)", n, dist__tls_reason(to));
        have += (size_t)n;
    }
    cr_assert_eq(dist__tls_read(to, got, len), DIST_EAGAIN_MORE);
    cr_assert_eq(memcmp(got, msg, len), 0);
    free(got);
}

/* ---- Default mode: ephemeral certificates ------------------------------------------------- */

Test(tls, handshake_and_data_both_ways)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct pair p;
    uint8_t big[100000];
    uint8_t buf[16];

    pair_new(&p, ctx, ctx, NULL);
    cr_assert_eq(dist__tls_read(p.client, buf, sizeof(buf)), DIST_EINVAL);
    cr_assert_eq(dist__tls_write(p.client, buf, sizeof(buf)), DIST_EINVAL);
    pump(&p);
    cr_assert_eq(p.client_rc, 0, "client: %s", dist__tls_reason(p.client));
    cr_assert_eq(p.server_rc, 0, "server: %s", dist__tls_reason(p.server));
    cr_assert(dist__tls_established(p.client));
    cr_assert(dist__tls_established(p.server));

    send_and_check(p.client, p.server, (const uint8_t *)"ping", 4);
    send_and_check(p.server, p.client, (const uint8_t *)"pong", 4);
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    send_and_check(p.client, p.server, big, sizeof(big));
    send_and_check(p.server, p.client, big, sizeof(big));
    cr_assert_str_eq(dist__tls_reason(p.client), "");
    pair_free(&p);
    dist__tls_ctx_free(ctx);
}

Test(tls, separate_contexts_interoperate)
{
    struct dist__tls_ctx *a = ctx_new(NULL);
    struct dist__tls_ctx *b = ctx_new(NULL);
    struct pair p;

    pair_new(&p, a, b, NULL);
    pump(&p);
    cr_assert_eq(p.client_rc, 0, "client: %s", dist__tls_reason(p.client));
    cr_assert_eq(p.server_rc, 0, "server: %s", dist__tls_reason(p.server));
    send_and_check(p.server, p.client, (const uint8_t *)"hi", 2);
    pair_free(&p);
    dist__tls_ctx_free(a);
    dist__tls_ctx_free(b);
}

Test(tls, channel_binding_is_shared_and_per_session)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct pair p, q;
    uint8_t pc[DIST__TLS_BINDING_LEN], ps[DIST__TLS_BINDING_LEN], qc[DIST__TLS_BINDING_LEN];
    static const uint8_t zero[DIST__TLS_BINDING_LEN];

    pair_new(&p, ctx, ctx, NULL);
    cr_assert_eq(dist__tls_binding(p.client, pc), DIST_EINVAL);
    pump(&p);
    pair_new(&q, ctx, ctx, NULL);
    pump(&q);
    cr_assert_eq(dist__tls_binding(p.client, pc), 0);
    cr_assert_eq(dist__tls_binding(p.server, ps), 0);
    cr_assert_eq(dist__tls_binding(q.client, qc), 0);
    cr_assert_eq(memcmp(pc, ps, sizeof(pc)), 0);
    cr_assert_neq(memcmp(pc, qc, sizeof(pc)), 0);
    cr_assert_neq(memcmp(pc, zero, sizeof(pc)), 0);
    pair_free(&p);
    pair_free(&q);
    dist__tls_ctx_free(ctx);
}

Test(tls, close_notify_reads_as_end)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct pair p;
    uint8_t buf[16];
    int feed_rc = 0;

    pair_new(&p, ctx, ctx, NULL);
    pump(&p);
    cr_assert_eq(dist__tls_close(p.client), 0);
    cr_assert_gt(move(p.client, p.server, &feed_rc), 0);
    cr_assert_eq(dist__tls_read(p.server, buf, sizeof(buf)), 0);
    pair_free(&p);
    dist__tls_ctx_free(ctx);
}

/* ---- Peers that do not speak TLS 1.3 ------------------------------------------------------ */

Test(tls, plain_text_client_is_refused_with_a_reason)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct dist__tls *s;
    static const char req[] = "GET / HTTP/1.1\r\n";
    uint8_t buf[16];

    cr_assert_eq(dist__tls_new(ctx, 1, NULL, &s), 0);
    cr_assert_eq(dist__tls_feed(s, (const uint8_t *)req, sizeof(req) - 1), DIST_ENOTTLS);
    assert_reason(s, "does not speak TLS");
    assert_reason(s, "GET / HT");
    /* The failure sticks. */
    cr_assert_eq(dist__tls_handshake(s), DIST_ENOTTLS);
    cr_assert_eq(dist__tls_read(s, buf, sizeof(buf)), DIST_ENOTTLS);
    dist__tls_free(s);
    dist__tls_ctx_free(ctx);
}

/* A short line, sent a byte at a time: refused at its first byte, not after a timeout. */
Test(tls, plain_text_is_refused_at_the_first_byte)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct dist__tls *s;

    cr_assert_eq(dist__tls_new(ctx, 1, NULL, &s), 0);
    cr_assert_eq(dist__tls_feed(s, (const uint8_t *)"h", 1), DIST_ENOTTLS);
    assert_reason(s, "\"h\"");
    dist__tls_free(s);

    /* A plausible first byte, then binary junk: quoted in hex. */
    cr_assert_eq(dist__tls_new(ctx, 1, NULL, &s), 0);
    cr_assert_eq(dist__tls_feed(s, (const uint8_t *)"\x16", 1), 0);
    cr_assert_eq(dist__tls_feed(s, (const uint8_t *)"\x07", 1), DIST_ENOTTLS);
    assert_reason(s, "\\x16\\x07");
    dist__tls_free(s);
    dist__tls_ctx_free(ctx);
}

Test(tls, plain_text_server_is_refused_by_the_client)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct dist__tls *c;
    uint8_t buf[2048];

    cr_assert_eq(dist__tls_new(ctx, 0, NULL, &c), 0);
    cr_assert_eq(dist__tls_handshake(c), DIST_EAGAIN_MORE);
    cr_assert_gt(dist__tls_take(c, buf, sizeof(buf)), 0);
    cr_assert_eq(dist__tls_feed(c, (const uint8_t *)"220 smtp ready\r\n", 16), DIST_ENOTTLS);
    dist__tls_free(c);
    dist__tls_ctx_free(ctx);
}

/* A real TLS client capped at TLS 1.2, built straight on OpenSSL: the server refuses it. */
Test(tls, tls12_client_is_refused)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct dist__tls *s;
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    BIO *in = BIO_new(BIO_s_mem());
    BIO *out = BIO_new(BIO_s_mem());
    uint8_t buf[4096];
    int n;

    cr_assert_not_null(old);
    cr_assert_eq(SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION), 1);
    ssl = SSL_new(old);
    SSL_set_bio(ssl, in, out);
    SSL_set_connect_state(ssl);
    cr_assert_eq(SSL_do_handshake(ssl), -1);
    n = BIO_read(out, buf, sizeof(buf));
    cr_assert_gt(n, 0);

    cr_assert_eq(dist__tls_new(ctx, 1, NULL, &s), 0);
    cr_assert_eq(dist__tls_feed(s, buf, (size_t)n), 0);
    cr_assert_eq(dist__tls_handshake(s), DIST_ETLS);
    assert_reason(s, "TLS handshake: ");
    assert_reason(s, "protocol");
    /* An alert tells the client why. */
    cr_assert_gt(dist__tls_want_write(s), 0);
    dist__tls_free(s);
    SSL_free(ssl);
    SSL_CTX_free(old);
    dist__tls_ctx_free(ctx);
}

Test(tls, inconsistent_options_are_refused)
{
    struct dist__tls_ctx *ctx = NULL;
    char why[DIST__REASON_MAX];
    struct dist__tls_opts ca_only = {.ca_file = "/nonexistent/ca.pem"};
    struct dist__tls_opts cert_only = {.cert_file = "/nonexistent/cert.pem"};
    struct dist__tls_opts missing = {.cert_file = "/nonexistent/cert.pem",
                                     .key_file = "/nonexistent/key.pem"};

    cr_assert_eq(dist__tls_ctx_new(&ca_only, &ctx, why, sizeof(why)), DIST_EINVAL);
    cr_assert_eq(dist__tls_ctx_new(&cert_only, &ctx, why, sizeof(why)), DIST_EINVAL);
    cr_assert_eq(dist__tls_ctx_new(&missing, &ctx, why, sizeof(why)), DIST_ETLS);
    cr_assert(strstr(why, "/nonexistent/cert.pem") != NULL, "%s", why);
    cr_assert_null(ctx);
}

/* ---- mTLS --------------------------------------------------------------------------------- */

/* A CA, and files for it and for the nodes it signs, in a temporary directory. */
struct pki {
    char dir[64];
    EVP_PKEY *ca_key;
    X509 *ca_cert;
    char ca_file[128];
};

static EVP_PKEY *key_new(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    cr_assert_not_null(k);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    cr_assert_not_null(ext, "extension %s", value);
    cr_assert_eq(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for @key named @cn, signed by @issuer_key (self-signed when @issuer is NULL). */
static X509 *cert_new(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                      const char *san)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);

    cr_assert_eq(X509_set_version(x, X509_VERSION_3), 1);
    cr_assert_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    cr_assert_not_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    cr_assert_eq(X509_set_pubkey(x, key), 1);
    cr_assert_eq(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    cr_assert_eq(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    if (san != NULL) {
        add_ext(x, issuer, NID_subject_alt_name, san);
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    } else {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    cr_assert_gt(X509_sign(x, issuer_key, EVP_sha256()), 0);
    return x;
}

static void pem_write(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s", path);
    if (cert != NULL)
        cr_assert_eq(PEM_write_X509(f, cert), 1);
    if (key != NULL)
        cr_assert_eq(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static void pki_new(struct pki *pki, const char *tag)
{
    snprintf(pki->dir, sizeof(pki->dir), "/tmp/test_tls_%s.XXXXXX", tag);
    cr_assert_not_null(mkdtemp(pki->dir));
    pki->ca_key = key_new();
    pki->ca_cert = cert_new(pki->ca_key, "test CA", NULL, pki->ca_key, NULL);
    snprintf(pki->ca_file, sizeof(pki->ca_file), "%s/ca.pem", pki->dir);
    pem_write(pki->ca_file, pki->ca_cert, NULL);
}

/* A node's certificate for @host, signed by @pki, and a context trusting @trust's CA. */
static struct dist__tls_ctx *node_ctx(struct pki *pki, struct pki *trust, const char *node,
                                      const char *host)
{
    char cert_file[160], key_file[160], san[128];
    struct dist__tls_opts o = {.ca_file = trust->ca_file};
    EVP_PKEY *key = key_new();
    X509 *cert;
    struct dist__tls_ctx *ctx;

    snprintf(san, sizeof(san), "DNS:%s", host);
    cert = cert_new(key, host, pki->ca_cert, pki->ca_key, san);
    snprintf(cert_file, sizeof(cert_file), "%s/%s.crt", pki->dir, node);
    snprintf(key_file, sizeof(key_file), "%s/%s.key", pki->dir, node);
    pem_write(cert_file, cert, NULL);
    pem_write(key_file, NULL, key);
    o.cert_file = cert_file;
    o.key_file = key_file;
    ctx = ctx_new(&o);
    unlink(cert_file);
    unlink(key_file);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
}

static void pki_free(struct pki *pki)
{
    unlink(pki->ca_file);
    rmdir(pki->dir);
    X509_free(pki->ca_cert);
    EVP_PKEY_free(pki->ca_key);
}

/*
 * Node a (node-a.test) dials node b (node-b.test) expecting @host; both trust one CA. A
 * "rogue" node's certificate comes from another CA instead, and a "default" node a has no
 * certificate of any CA (an ephemeral one).
 */
enum { HONEST, ROGUE, DEFAULT };

struct mtls {
    struct pki pki;
    struct pki rogue;
    struct dist__tls_ctx *a;
    struct dist__tls_ctx *b;
    struct pair p;
};

static void mtls_run(struct mtls *m, const char *host, int kind_a, int kind_b)
{
    pki_new(&m->pki, "trusted");
    pki_new(&m->rogue, "rogue");
    m->a = kind_a == DEFAULT
               ? ctx_new(NULL)
               : node_ctx(kind_a == ROGUE ? &m->rogue : &m->pki, &m->pki, "a", "node-a.test");
    m->b = node_ctx(kind_b == ROGUE ? &m->rogue : &m->pki, &m->pki, "b", "node-b.test");
    pair_new(&m->p, m->a, m->b, host);
    pump(&m->p);
}

static void mtls_free(struct mtls *m)
{
    pair_free(&m->p);
    dist__tls_ctx_free(m->a);
    dist__tls_ctx_free(m->b);
    pki_free(&m->pki);
    pki_free(&m->rogue);
}

Test(tls, mtls_with_the_right_names)
{
    struct mtls m;

    mtls_run(&m, "node-b.test", HONEST, HONEST);
    cr_assert_eq(m.p.client_rc, 0, "client: %s", dist__tls_reason(m.p.client));
    cr_assert_eq(m.p.server_rc, 0, "server: %s", dist__tls_reason(m.p.server));
    send_and_check(m.p.client, m.p.server, (const uint8_t *)"hello", 5);
    /* The server learns the client's name later and checks it then. */
    cr_assert_eq(dist__tls_check_host(m.p.server, "node-a.test"), 0);
    cr_assert_eq(dist__tls_check_host(m.p.server, "node-c.test"), DIST_EAUTH);
    cr_assert_eq(dist__tls_check_host(m.p.client, "node-b.test"), 0);
    mtls_free(&m);
}

Test(tls, mtls_wrong_peer_name_is_refused)
{
    struct mtls m;

    mtls_run(&m, "node-c.test", HONEST, HONEST);
    cr_assert_eq(m.p.client_rc, DIST_ETLS);
    assert_reason(m.p.client, "hostname mismatch");
    /* The server hears the client's alert and fails too. */
    cr_assert_eq(m.p.server_rc, DIST_ETLS, "server: %d", m.p.server_rc);
    mtls_free(&m);
}

Test(tls, mtls_untrusted_server_is_refused)
{
    struct mtls m;

    mtls_run(&m, "node-b.test", HONEST, ROGUE);
    cr_assert_eq(m.p.client_rc, DIST_ETLS);
    assert_reason(m.p.client, "peer certificate refused");
    mtls_free(&m);
}

Test(tls, mtls_untrusted_client_is_refused)
{
    struct mtls m;

    mtls_run(&m, "node-b.test", ROGUE, HONEST);
    cr_assert_eq(m.p.server_rc, DIST_ETLS);
    assert_reason(m.p.server, "peer certificate refused");
    mtls_free(&m);
}

Test(tls, mtls_server_refuses_default_client)
{
    struct mtls m;

    mtls_run(&m, NULL, DEFAULT, HONEST);
    cr_assert_eq(m.p.server_rc, DIST_ETLS);
    assert_reason(m.p.server, "peer certificate refused");
    mtls_free(&m);
}

Test(tls, check_host_needs_mtls)
{
    struct dist__tls_ctx *ctx = ctx_new(NULL);
    struct pair p;

    pair_new(&p, ctx, ctx, NULL);
    pump(&p);
    cr_assert_eq(dist__tls_check_host(p.server, "anything"), DIST_EINVAL);
    pair_free(&p);
    dist__tls_ctx_free(ctx);
}
