/*
 * epmd_codec.c: parse and build every EPMD request and reply, Erlang's and the extension's.
 *
 * Parsers never allocate: they bound-check every length against the bytes at hand and return
 * views into the caller's buffer. Builders write into a caller's buffer and check its
 * capacity first. The layouts are in dist.h and epmd/README.md.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- A bounds-checked reader ---------------------------------------------------------------- */

struct reader {
    const uint8_t *p;
    const uint8_t *end;
};

static int rd_need(const struct reader *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}

static int rd_u8(struct reader *r, uint8_t *v)
{
    if (!rd_need(r, 1))
        return DIST_EMALFORMED;
    *v = *r->p++;
    return 0;
}

static int rd_u16(struct reader *r, uint16_t *v)
{
    if (!rd_need(r, 2))
        return DIST_EMALFORMED;
    *v = dist__get16(r->p);
    r->p += 2;
    return 0;
}

static int rd_u32(struct reader *r, uint32_t *v)
{
    if (!rd_need(r, 4))
        return DIST_EMALFORMED;
    *v = dist__get32(r->p);
    r->p += 4;
    return 0;
}

static int rd_bytes(struct reader *r, size_t n, const uint8_t **out)
{
    if (!rd_need(r, n))
        return DIST_EMALFORMED;
    *out = r->p;
    r->p += n;
    return 0;
}

/* ---- Names -------------------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 when it is invalid. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are invalid. */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Characters in a valid name, or 0 when it fails Erlang's checks (the 255 limit aside). */
static size_t name_chars(const char *name, size_t len)
{
    const uint8_t *s = (const uint8_t *)name;
    size_t chars = 0;

    if (len == 0 || len > DIST_EPMD_MAX_SYMLEN)
        return 0;
    for (size_t i = 0; i < len; chars++) {
        size_t n = s[i] == 0 ? 0 : utf8_seq(s + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return chars;
}

int dist_epmd_name_check(const char *name, size_t len)
{
    size_t chars = name_chars(name, len);

    return chars == 0 || chars > DIST_EPMD_MAX_NAME_CHARS ? DIST_EBADNAME : 0;
}

/* ---- Request parsing ------------------------------------------------------------------------ */

int dist_epmd_req_length(const uint8_t *hdr)
{
    uint16_t len = dist__get16(hdr);

    if (len == 0 || len > DIST_EPMD_MAX_LENGTH)
        return DIST_ELENGTH;
    return len;
}

/*
 * ALIVE2_REQ, checked the way Erlang's epmd checks it: a body of 13 bytes or fewer, or name
 * and extra lengths that overrun it, or a NUL in the name, are malformed. Bytes after Extra
 * are ignored.
 */
static int parse_alive2(const uint8_t *body, size_t len, struct dist_epmd_node *n)
{
    size_t nlen, elen;

    if (len <= 13)
        return DIST_EMALFORMED;
    nlen = dist__get16(body + 9);
    if (nlen + 13 > len)
        return DIST_EMALFORMED;
    elen = dist__get16(body + 11 + nlen);
    if (elen + nlen + 13 > len)
        return DIST_EMALFORMED;
    if (memchr(body + 11, 0, nlen) != NULL)
        return DIST_EMALFORMED;
    n->port = dist__get16(body + 1);
    n->node_type = body[3];
    n->protocol = body[4];
    n->high_version = dist__get16(body + 5);
    n->low_version = dist__get16(body + 7);
    n->name = (const char *)body + 11;
    n->name_len = nlen;
    n->extra = body + 13 + nlen;
    n->extra_len = elen;
    return 0;
}

static int parse_port2(const uint8_t *body, size_t len, struct dist_epmd_req *req)
{
    size_t nlen = len - 1;
    size_t chars;

    if (nlen > 0 && body[len - 1] == 0)
        nlen--;
    /*
     * Erlang's epmd counts the terminating NUL as a character here, so it registers a name of
     * 255 characters but will not look one up. Lookups follow it, to answer alike.
     */
    chars = name_chars((const char *)body + 1, nlen);
    if (chars == 0 || chars > DIST_EPMD_MAX_NAME_CHARS - 1)
        return DIST_EBADNAME;
    req->u.name.name = (const char *)body + 1;
    req->u.name.name_len = nlen;
    return 0;
}

/* Walk and check count metadata pairs that must fill exactly len bytes. */
static int check_meta(const uint8_t *meta, size_t len, size_t count)
{
    struct reader r = {meta, meta + len};

    if (count > DIST_EPMD_MAX_META)
        return DIST_ELIMIT;
    for (size_t i = 0; i < count; i++) {
        uint8_t klen;
        uint16_t vlen;
        const uint8_t *skip;

        if (rd_u8(&r, &klen) != 0 || klen == 0 || rd_bytes(&r, klen, &skip) != 0)
            return DIST_EMALFORMED;
        if (klen > DIST_EPMD_MAX_META_KEY)
            return DIST_ELIMIT;
        if (rd_u16(&r, &vlen) != 0 || rd_bytes(&r, vlen, &skip) != 0)
            return DIST_EMALFORMED;
        if (vlen > DIST_EPMD_MAX_META_VALUE)
            return DIST_ELIMIT;
    }
    return r.p == r.end ? 0 : DIST_EMALFORMED;
}

static int rd_token_name(struct reader *r, const uint8_t **token, size_t *token_len,
                         const char **name, size_t *name_len)
{
    uint8_t tlen;
    uint16_t nlen;
    const uint8_t *np;

    if (rd_u8(r, &tlen) != 0 || rd_bytes(r, tlen, token) != 0 || rd_u16(r, &nlen) != 0 ||
        rd_bytes(r, nlen, &np) != 0)
        return DIST_EMALFORMED;
    if (tlen == 0 || tlen > DIST_EPMD_MAX_TOKEN)
        return DIST_EBADNAME;
    if (dist_epmd_name_check((const char *)np, nlen) != 0)
        return DIST_EBADNAME;
    *token_len = tlen;
    *name = (const char *)np;
    *name_len = nlen;
    return 0;
}

static int parse_lease(const uint8_t *body, size_t len, struct dist_epmd_lease *l)
{
    struct reader r = {body + 1, body + len};
    uint16_t mcount, mlen;
    int rc;

    if (rd_u16(&r, &l->node.port) != 0 || rd_u8(&r, &l->node.node_type) != 0 ||
        rd_u8(&r, &l->node.protocol) != 0 || rd_u16(&r, &l->node.high_version) != 0 ||
        rd_u16(&r, &l->node.low_version) != 0 || rd_u32(&r, &l->lease_ms) != 0)
        return DIST_EMALFORMED;
    rc = rd_token_name(&r, &l->token, &l->token_len, &l->node.name, &l->node.name_len);
    if (rc != 0)
        return rc;
    if (rd_u16(&r, &mcount) != 0 || rd_u16(&r, &mlen) != 0 ||
        rd_bytes(&r, mlen, &l->meta.meta) != 0 || r.p != r.end)
        return DIST_EMALFORMED;
    rc = check_meta(l->meta.meta, mlen, mcount);
    if (rc != 0)
        return rc;
    l->meta.meta_len = mlen;
    l->meta.meta_count = mcount;
    l->node.extra = NULL;
    l->node.extra_len = 0;
    return 0;
}

static int parse_owner(const uint8_t *body, size_t len, struct dist_epmd_req *req)
{
    struct reader r = {body + 1, body + len};
    int rc = rd_token_name(&r, &req->u.owner.token, &req->u.owner.token_len, &req->u.owner.name,
                           &req->u.owner.name_len);

    if (rc != 0)
        return rc;
    return r.p == r.end ? 0 : DIST_EMALFORMED;
}

int dist_epmd_req_parse(const uint8_t *body, size_t len, struct dist_epmd_req *req)
{
    struct dist_epmd_req tmp;
    int rc = 0;

    if (len == 0)
        return DIST_EMALFORMED;
    memset(&tmp, 0, sizeof(tmp));
    tmp.tag = body[0];
    switch (tmp.tag) {
    case DIST_EPMD_ALIVE2_REQ:
        rc = parse_alive2(body, len, &tmp.u.alive);
        break;
    case DIST_EPMD_PORT_PLEASE2_REQ:
        rc = parse_port2(body, len, &tmp);
        break;
    case DIST_EPMD_STOP_REQ:
        /* Erlang wants a name, and compares it as a C string: it ends at the first NUL. */
        if (len <= 1) {
            rc = DIST_EMALFORMED;
            break;
        }
        tmp.u.name.name = (const char *)body + 1;
        tmp.u.name.name_len = strnlen(tmp.u.name.name, len - 1);
        break;
    case DIST_EPMD_NAMES_REQ:
    case DIST_EPMD_DUMP_REQ:
    case DIST_EPMD_KILL_REQ:
        break; /* Erlang ignores any bytes after these tags. */
    case DIST_EPMD_LIST_REQ:
    case DIST_EPMD_WATCH_REQ:
        rc = len == 1 ? 0 : DIST_EMALFORMED;
        break;
    case DIST_EPMD_LEASE_REQ:
        rc = parse_lease(body, len, &tmp.u.lease);
        break;
    case DIST_EPMD_RENEW_REQ:
    case DIST_EPMD_UNREG_REQ:
        rc = parse_owner(body, len, &tmp);
        break;
    default:
        rc = DIST_EBADTAG;
        break;
    }
    if (rc == 0)
        *req = tmp;
    return rc;
}

int dist_epmd_meta_next(const uint8_t **cursor, const uint8_t *end, struct dist_epmd_meta *out)
{
    struct reader r = {*cursor, end};
    uint8_t klen;
    uint16_t vlen;
    const uint8_t *k, *v;

    if (r.p >= r.end || rd_u8(&r, &klen) != 0 || rd_bytes(&r, klen, &k) != 0 ||
        rd_u16(&r, &vlen) != 0 || rd_bytes(&r, vlen, &v) != 0)
        return DIST_EMALFORMED;
    out->key = (const char *)k;
    out->key_len = klen;
    out->value = (const char *)v;
    out->value_len = vlen;
    *cursor = r.p;
    return 0;
}

/* ---- Builders ------------------------------------------------------------------------------- */

/* Write the u16 request header and tag for a body of body_len bytes (tag included). */
static int req_begin(uint8_t *buf, size_t cap, size_t body_len, uint8_t tag, uint8_t **p)
{
    if (body_len > UINT16_MAX)
        return DIST_EINVAL;
    if (cap < 2 + body_len)
        return DIST_ENOBUFS;
    *p = dist__put16(buf, (uint16_t)body_len);
    *(*p)++ = tag;
    return (int)(2 + body_len);
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
    if (n > 0)
        memcpy(p, src, n);
    return p + n;
}

static uint8_t *put_node_head(uint8_t *p, const struct dist_epmd_node *n)
{
    p = dist__put16(p, n->port);
    *p++ = n->node_type;
    *p++ = n->protocol;
    p = dist__put16(p, n->high_version);
    return dist__put16(p, n->low_version);
}

/* Nlen | Name | Elen | Extra */
static uint8_t *put_name_extra(uint8_t *p, const struct dist_epmd_node *n)
{
    p = dist__put16(p, (uint16_t)n->name_len);
    p = put_bytes(p, n->name, n->name_len);
    p = dist__put16(p, (uint16_t)n->extra_len);
    return put_bytes(p, n->extra, n->extra_len);
}

int dist_epmd_alive2_req_build(uint8_t *buf, size_t cap, const struct dist_epmd_node *node)
{
    uint8_t *p;
    int rc;

    if (node->name_len > UINT16_MAX || node->extra_len > UINT16_MAX)
        return DIST_EINVAL;
    rc = req_begin(buf, cap, 13 + node->name_len + node->extra_len, DIST_EPMD_ALIVE2_REQ, &p);
    if (rc < 0)
        return rc;
    p = put_node_head(p, node);
    put_name_extra(p, node);
    return rc;
}

static int name_req_build(uint8_t *buf, size_t cap, uint8_t tag, const char *name, size_t len)
{
    uint8_t *p;
    int rc;

    if (len >= UINT16_MAX)
        return DIST_EINVAL;
    rc = req_begin(buf, cap, 1 + len, tag, &p);

    if (rc < 0)
        return rc;
    put_bytes(p, name, len);
    return rc;
}

int dist_epmd_port2_req_build(uint8_t *buf, size_t cap, const char *name, size_t name_len)
{
    return name_req_build(buf, cap, DIST_EPMD_PORT_PLEASE2_REQ, name, name_len);
}

int dist_epmd_stop_req_build(uint8_t *buf, size_t cap, const char *name, size_t name_len)
{
    return name_req_build(buf, cap, DIST_EPMD_STOP_REQ, name, name_len);
}

int dist_epmd_simple_req_build(uint8_t *buf, size_t cap, uint8_t tag)
{
    return name_req_build(buf, cap, tag, NULL, 0);
}

int dist_epmd_lease_req_build(uint8_t *buf, size_t cap, const struct dist_epmd_lease *lease)
{
    const struct dist_epmd_node *n = &lease->node;
    size_t body;
    uint8_t *p;
    int rc;

    if (lease->token_len == 0 || lease->token_len > DIST_EPMD_MAX_TOKEN ||
        dist_epmd_name_check(n->name, n->name_len) != 0 || lease->meta.meta_count > UINT16_MAX ||
        lease->meta.meta_len > UINT16_MAX)
        return DIST_EINVAL;
    body = 1 + 8 + 4 + 1 + lease->token_len + 2 + n->name_len + 4 + lease->meta.meta_len;
    rc = req_begin(buf, cap, body, DIST_EPMD_LEASE_REQ, &p);
    if (rc < 0)
        return rc;
    p = put_node_head(p, n);
    p = dist__put32(p, lease->lease_ms);
    *p++ = (uint8_t)lease->token_len;
    p = put_bytes(p, lease->token, lease->token_len);
    p = dist__put16(p, (uint16_t)n->name_len);
    p = put_bytes(p, n->name, n->name_len);
    p = dist__put16(p, (uint16_t)lease->meta.meta_count);
    p = dist__put16(p, (uint16_t)lease->meta.meta_len);
    put_bytes(p, lease->meta.meta, lease->meta.meta_len);
    return rc;
}

int dist_epmd_owner_req_build(uint8_t *buf, size_t cap, uint8_t tag, const uint8_t *token,
                              size_t token_len, const char *name, size_t name_len)
{
    uint8_t *p;
    int rc;

    if (token_len == 0 || token_len > DIST_EPMD_MAX_TOKEN ||
        dist_epmd_name_check(name, name_len) != 0)
        return DIST_EINVAL;
    rc = req_begin(buf, cap, 1 + 1 + token_len + 2 + name_len, tag, &p);
    if (rc < 0)
        return rc;
    *p++ = (uint8_t)token_len;
    p = put_bytes(p, token, token_len);
    p = dist__put16(p, (uint16_t)name_len);
    put_bytes(p, name, name_len);
    return rc;
}

int dist_epmd_meta_put(uint8_t *buf, size_t cap, const char *key, size_t key_len, const char *value,
                       size_t value_len)
{
    uint8_t *p = buf;

    if (key_len == 0 || key_len > DIST_EPMD_MAX_META_KEY || value_len > DIST_EPMD_MAX_META_VALUE)
        return DIST_ELIMIT;
    if (cap < 3 + key_len + value_len)
        return DIST_ENOBUFS;
    *p++ = (uint8_t)key_len;
    p = put_bytes(p, key, key_len);
    p = dist__put16(p, (uint16_t)value_len);
    put_bytes(p, value, value_len);
    return (int)(3 + key_len + value_len);
}

int dist_epmd_alive2_resp_build(uint8_t *buf, size_t cap, int x_form, uint8_t result,
                                uint32_t creation)
{
    size_t need = x_form ? 6 : 4;

    if (cap < need)
        return DIST_ENOBUFS;
    buf[0] = x_form ? DIST_EPMD_ALIVE2_X_RESP : DIST_EPMD_ALIVE2_RESP;
    buf[1] = result;
    if (x_form)
        dist__put32(buf + 2, creation);
    else
        dist__put16(buf + 2, (uint16_t)creation);
    return (int)need;
}

int dist_epmd_port2_resp_build(uint8_t *buf, size_t cap, const struct dist_epmd_node *node)
{
    size_t need;
    uint8_t *p;

    if (node == NULL) {
        if (cap < 2)
            return DIST_ENOBUFS;
        buf[0] = DIST_EPMD_PORT2_RESP;
        buf[1] = 1;
        return 2;
    }
    if (node->name_len > UINT16_MAX || node->extra_len > UINT16_MAX)
        return DIST_EINVAL;
    need = 2 + 12 + node->name_len + node->extra_len;
    if (cap < need)
        return DIST_ENOBUFS;
    buf[0] = DIST_EPMD_PORT2_RESP;
    buf[1] = 0;
    p = put_node_head(buf + 2, node);
    put_name_extra(p, node);
    return (int)need;
}

/* Append "<pre><name><post>" where post is formatted from port and fd. */
static int put_line(uint8_t *buf, size_t cap, const char *pre, const char *name, size_t name_len,
                    const char *post, size_t post_len, int nul)
{
    size_t pre_len = strlen(pre);
    size_t need;
    uint8_t *p = buf;

    if (name_len > INT32_MAX / 2)
        return DIST_EINVAL;
    need = pre_len + name_len + post_len + (nul ? 1 : 0);
    if (cap < need)
        return DIST_ENOBUFS;
    p = put_bytes(p, pre, pre_len);
    p = put_bytes(p, name, name_len);
    p = put_bytes(p, post, post_len);
    if (nul)
        *p = 0;
    return (int)need;
}

int dist_epmd_names_line(uint8_t *buf, size_t cap, const char *name, size_t name_len, uint16_t port)
{
    char post[32];
    int n = snprintf(post, sizeof(post), " at port %u\n", port);

    return put_line(buf, cap, "name ", name, name_len, post, (size_t)n, 0);
}

int dist_epmd_dump_line(uint8_t *buf, size_t cap, int active, const char *name, size_t name_len,
                        uint16_t port, int fd)
{
    char post[64];
    int n;

    if (active)
        n = snprintf(post, sizeof(post), "> at port %u, fd = %d\n", port, fd);
    else
        n = snprintf(post, sizeof(post), ">, port = %u, fd = %d \n", port, fd);
    return put_line(buf, cap, active ? "active name     <" : "old/unused name <", name, name_len,
                    post, (size_t)n, 1);
}

/* ---- Extension replies --------------------------------------------------------------------- */

int dist_epmd_frame_header(uint8_t *buf, size_t cap, uint8_t tag, size_t body_len)
{
    if (body_len >= UINT32_MAX)
        return DIST_EINVAL;
    if (cap < 5)
        return DIST_ENOBUFS;
    dist__put32(buf, (uint32_t)(body_len + 1));
    buf[4] = tag;
    return 5;
}

int dist_epmd_lease_resp_build(uint8_t *buf, size_t cap, uint8_t result, uint32_t creation,
                               uint32_t lease_ms)
{
    if (cap < 14)
        return DIST_ENOBUFS;
    dist_epmd_frame_header(buf, cap, DIST_EPMD_LEASE_RESP, 9);
    buf[5] = result;
    dist__put32(buf + 6, creation);
    dist__put32(buf + 10, lease_ms);
    return 14;
}

int dist_epmd_renew_resp_build(uint8_t *buf, size_t cap, uint8_t result, uint32_t lease_ms)
{
    if (cap < 10)
        return DIST_ENOBUFS;
    dist_epmd_frame_header(buf, cap, DIST_EPMD_RENEW_RESP, 5);
    buf[5] = result;
    dist__put32(buf + 6, lease_ms);
    return 10;
}

int dist_epmd_unreg_resp_build(uint8_t *buf, size_t cap, uint8_t result)
{
    if (cap < 6)
        return DIST_ENOBUFS;
    dist_epmd_frame_header(buf, cap, DIST_EPMD_UNREG_RESP, 1);
    buf[5] = result;
    return 6;
}

int dist_epmd_entry_build(uint8_t *buf, size_t cap, const struct dist_epmd_entry *e)
{
    const struct dist_epmd_node *n = &e->node;
    size_t need;
    uint8_t *p;

    if (n->name_len > UINT16_MAX || n->extra_len > UINT16_MAX || e->meta.meta_count > UINT16_MAX ||
        e->meta.meta_len > UINT16_MAX)
        return DIST_EINVAL;
    need = 8 + 4 + 1 + 4 + 2 + n->name_len + 2 + n->extra_len + 4 + e->meta.meta_len;
    if (need > INT32_MAX)
        return DIST_EINVAL;
    if (cap < need)
        return DIST_ENOBUFS;
    p = put_node_head(buf, n);
    p = dist__put32(p, e->creation);
    *p++ = e->flags;
    p = dist__put32(p, e->lease_ms);
    p = put_name_extra(p, n);
    p = dist__put16(p, (uint16_t)e->meta.meta_count);
    p = dist__put16(p, (uint16_t)e->meta.meta_len);
    put_bytes(p, e->meta.meta, e->meta.meta_len);
    return (int)need;
}

/* ---- Reply parsers ------------------------------------------------------------------------- */

int dist_epmd_alive2_resp_parse(const uint8_t *buf, size_t len, uint8_t *result, uint32_t *creation)
{
    if (len < 1)
        return DIST_EAGAIN_MORE;
    if (buf[0] == DIST_EPMD_ALIVE2_X_RESP) {
        if (len < 6)
            return DIST_EAGAIN_MORE;
        *result = buf[1];
        *creation = dist__get32(buf + 2);
        return 6;
    }
    if (buf[0] == DIST_EPMD_ALIVE2_RESP) {
        if (len < 4)
            return DIST_EAGAIN_MORE;
        *result = buf[1];
        *creation = dist__get16(buf + 2);
        return 4;
    }
    return DIST_EMALFORMED;
}

int dist_epmd_port2_resp_parse(const uint8_t *buf, size_t len, int *found,
                               struct dist_epmd_node *node)
{
    struct reader r = {buf, buf + len};
    struct dist_epmd_node n;
    uint8_t tag, result;
    uint16_t nlen, elen;
    const uint8_t *name;

    if (len >= 1 && buf[0] != DIST_EPMD_PORT2_RESP)
        return DIST_EMALFORMED;
    if (rd_u8(&r, &tag) != 0 || rd_u8(&r, &result) != 0)
        return DIST_EAGAIN_MORE;
    if (result != 0) {
        *found = 0;
        return 2;
    }
    if (rd_u16(&r, &n.port) != 0 || rd_u8(&r, &n.node_type) != 0 || rd_u8(&r, &n.protocol) != 0 ||
        rd_u16(&r, &n.high_version) != 0 || rd_u16(&r, &n.low_version) != 0 ||
        rd_u16(&r, &nlen) != 0 || rd_bytes(&r, nlen, &name) != 0 || rd_u16(&r, &elen) != 0 ||
        rd_bytes(&r, elen, &n.extra) != 0)
        return DIST_EAGAIN_MORE;
    n.name = (const char *)name;
    n.name_len = nlen;
    n.extra_len = elen;
    *node = n;
    *found = 1;
    return (int)(r.p - buf);
}

int dist_epmd_frame_parse(const uint8_t *buf, size_t len, size_t max_len, uint8_t *tag,
                          const uint8_t **body, size_t *body_len)
{
    uint32_t flen;

    if (len < 4)
        return DIST_EAGAIN_MORE;
    flen = dist__get32(buf);
    if (flen == 0)
        return DIST_EMALFORMED;
    if (flen > max_len || flen > INT32_MAX - 4)
        return DIST_ELENGTH;
    if (len - 4 < flen)
        return DIST_EAGAIN_MORE;
    *tag = buf[4];
    *body = buf + 5;
    *body_len = flen - 1;
    return (int)(4 + flen);
}

int dist_epmd_result_parse(const uint8_t *body, size_t len, uint8_t tag, uint8_t *result,
                           uint32_t *creation, uint32_t *lease_ms)
{
    size_t need;

    switch (tag) {
    case DIST_EPMD_LEASE_RESP:
        need = 9;
        break;
    case DIST_EPMD_RENEW_RESP:
        need = 5;
        break;
    case DIST_EPMD_UNREG_RESP:
        need = 1;
        break;
    default:
        return DIST_EMALFORMED;
    }
    if (len != need)
        return DIST_EMALFORMED;
    if (result != NULL)
        *result = body[0];
    if (creation != NULL && tag == DIST_EPMD_LEASE_RESP)
        *creation = dist__get32(body + 1);
    if (lease_ms != NULL && tag != DIST_EPMD_UNREG_RESP)
        *lease_ms = dist__get32(body + (tag == DIST_EPMD_LEASE_RESP ? 5 : 1));
    return (int)need;
}

int dist_epmd_entry_parse(const uint8_t *buf, size_t len, struct dist_epmd_entry *out)
{
    struct reader r = {buf, buf + len};
    struct dist_epmd_entry e;
    uint16_t nlen, elen, mcount, mlen;
    const uint8_t *name;
    int rc;

    if (rd_u16(&r, &e.node.port) != 0 || rd_u8(&r, &e.node.node_type) != 0 ||
        rd_u8(&r, &e.node.protocol) != 0 || rd_u16(&r, &e.node.high_version) != 0 ||
        rd_u16(&r, &e.node.low_version) != 0 || rd_u32(&r, &e.creation) != 0 ||
        rd_u8(&r, &e.flags) != 0 || rd_u32(&r, &e.lease_ms) != 0 || rd_u16(&r, &nlen) != 0 ||
        rd_bytes(&r, nlen, &name) != 0 || rd_u16(&r, &elen) != 0 ||
        rd_bytes(&r, elen, &e.node.extra) != 0 || rd_u16(&r, &mcount) != 0 ||
        rd_u16(&r, &mlen) != 0 || rd_bytes(&r, mlen, &e.meta.meta) != 0)
        return DIST_EMALFORMED;
    rc = check_meta(e.meta.meta, mlen, mcount);
    if (rc != 0)
        return DIST_EMALFORMED;
    e.node.name = (const char *)name;
    e.node.name_len = nlen;
    e.node.extra_len = elen;
    e.meta.meta_len = mlen;
    e.meta.meta_count = mcount;
    *out = e;
    return (int)(r.p - buf);
}
