/*
 * cookie.c: find the cluster cookie, the secret every node of a cluster shares.
 *
 *     option given? --yes--> use it
 *          | no
 *     $DIST_COOKIE set? --yes--> use it
 *          | no
 *     cookie file exists? --yes--> owner-only regular file? --yes--> use it
 *          | no                                | no
 *     create it with a random cookie       refuse (DIST_ECOOKIE_PERM)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "secure.h"

/* Enough to tell an oversized file from a cookie of DIST__COOKIE_MAX bytes and "\r\n". */
#define READ_CAP (DIST__COOKIE_MAX + 3)

static void say(char *why, size_t why_cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t why_cap, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || why_cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_cap, fmt, ap);
    va_end(ap);
}

/* Check one cookie value and copy it to @out. @what names its source in the reason. */
static int cookie_take(const char *val, size_t len, const char *what, struct dist__cookie *out,
                       char *why, size_t why_cap)
{
    if (len > 0 && val[len - 1] == '\n')
        len--;
    if (len > 0 && val[len - 1] == '\r')
        len--;
    if (len == 0) {
        say(why, why_cap, "the cookie from %s is empty", what);
        return DIST_ECOOKIE;
    }
    if (len > DIST__COOKIE_MAX) {
        say(why, why_cap, "the cookie from %s is longer than %d bytes", what, DIST__COOKIE_MAX);
        return DIST_ECOOKIE;
    }
    if (memchr(val, '\0', len) != NULL) {
        say(why, why_cap, "the cookie from %s holds a NUL byte", what);
        return DIST_ECOOKIE;
    }
    memcpy(out->data, val, len);
    out->len = len;
    return 0;
}

/* The file must be private to its owner, who must be us: anyone else could read the secret. */
static int check_owner_only(const struct stat *st, const char *path, char *why, size_t why_cap)
{
    if (!S_ISREG(st->st_mode)) {
        say(why, why_cap, "cookie file %s is not a regular file (mode %06o)", path,
            (unsigned)st->st_mode);
        return DIST_ECOOKIE_PERM;
    }
    if (st->st_uid != geteuid()) {
        say(why, why_cap, "cookie file %s is owned by uid %u, not by this user (uid %u)", path,
            (unsigned)st->st_uid, (unsigned)geteuid());
        return DIST_ECOOKIE_PERM;
    }
    if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        say(why, why_cap,
            "cookie file %s has mode %04o; it must be readable by its owner alone (chmod 400 %s)",
            path, (unsigned)(st->st_mode & 07777), path);
        return DIST_ECOOKIE_PERM;
    }
    return 0;
}

static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;

    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/*
 * Read the cookie file. Returns -ENOENT when it does not exist. The checks run on the opened
 * descriptor, so the file cannot be swapped between the check and the read; O_NONBLOCK keeps
 * a FIFO planted at the path from blocking the open.
 */
static int cookie_read(const char *path, struct dist__cookie *out, char *why, size_t why_cap)
{
    char buf[READ_CAP];
    struct stat st;
    ssize_t n;
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

    if (fd < 0) {
        rc = -errno;
        if (rc != -ENOENT)
            say(why, why_cap, "cannot open cookie file %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        say(why, why_cap, "cannot stat cookie file %s: %s", path, strerror(-rc));
        goto out;
    }
    rc = check_owner_only(&st, path, why, why_cap);
    if (rc != 0)
        goto out;
    n = read_all(fd, buf, sizeof(buf));
    if (n < 0) {
        rc = (int)n;
        say(why, why_cap, "cannot read cookie file %s: %s", path, strerror(-rc));
        goto out;
    }
    rc = cookie_take(buf, (size_t)n, path, out, why, why_cap);
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* Letters and digits, drawn without bias: bytes past the last whole multiple of 62 are redrawn. */
static int cookie_random(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const unsigned n = sizeof(alphabet) - 1;
    unsigned char b[64];
    size_t have = 0;

    while (have < len) {
        if (RAND_bytes(b, sizeof(b)) != 1)
            return DIST_ETLS;
        for (size_t i = 0; i < sizeof(b) && have < len; i++) {
            if (b[i] < 256 - 256 % n)
                out[have++] = alphabet[b[i] % n];
        }
    }
    OPENSSL_cleanse(b, sizeof(b));
    return 0;
}

/* Write a new cookie under a temporary name beside @path, then link it into place. */
static int cookie_create(const char *path, char *why, size_t why_cap)
{
    char cookie[DIST__COOKIE_GEN_LEN + 1];
    size_t tlen = strlen(path) + sizeof(".XXXXXX");
    char *tmp = malloc(tlen);
    int fd = -1;
    int rc;

    if (tmp == NULL)
        return -ENOMEM;
    snprintf(tmp, tlen, "%s.XXXXXX", path);
    rc = cookie_random(cookie, DIST__COOKIE_GEN_LEN);
    if (rc != 0) {
        say(why, why_cap, "cannot draw a random cookie");
        goto out;
    }
    cookie[DIST__COOKIE_GEN_LEN] = '\n';
    fd = mkostemp(tmp, O_CLOEXEC); /* mode 0600, O_CREAT | O_EXCL */
    if (fd < 0) {
        rc = -errno;
        say(why, why_cap, "cannot create cookie file %s: %s", tmp, strerror(-rc));
        goto out;
    }
    rc = write_all(fd, cookie, sizeof(cookie));
    if (rc == 0 && (fchmod(fd, S_IRUSR) != 0 || fsync(fd) != 0))
        rc = -errno;
    /* link() refuses an existing target: a node that created the file first wins. */
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST)
        rc = -errno;
    if (rc != 0)
        say(why, why_cap, "cannot create cookie file %s: %s", path, strerror(-rc));
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(cookie, sizeof(cookie));
    free(tmp);
    return rc;
}

static int cookie_from_file(const char *path, struct dist__cookie *out, const char **source,
                            char *why, size_t why_cap)
{
    int rc = cookie_read(path, out, why, why_cap);

    if (rc == -ENOENT) {
        rc = cookie_create(path, why, why_cap);
        if (rc == 0)
            rc = cookie_read(path, out, why, why_cap);
        if (rc == 0 && source != NULL)
            *source = "generated";
        return rc;
    }
    if (rc == 0 && source != NULL)
        *source = "file";
    return rc;
}

int dist__cookie_resolve(const char *option, const char *path, struct dist__cookie *out,
                         const char **source, char *why, size_t why_cap)
{
    struct dist__cookie c;
    const char *env = secure_getenv(DIST__COOKIE_ENV);
    const char *src = NULL;
    char *dflt = NULL;
    int rc;

    if (option != NULL) {
        rc = cookie_take(option, strlen(option), "the option", &c, why, why_cap);
        src = "option";
    } else if (env != NULL) {
        rc = cookie_take(env, strlen(env), "$" DIST__COOKIE_ENV, &c, why, why_cap);
        src = "environment";
    } else {
        if (path == NULL) {
            const char *home = secure_getenv("HOME");
            if (home == NULL || home[0] == '\0') {
                say(why, why_cap, "no cookie file given and $HOME is not set");
                return DIST_EINVAL;
            }
            if (asprintf(&dflt, "%s/%s", home, DIST__COOKIE_FILE) < 0)
                return -ENOMEM;
            path = dflt;
        }
        rc = cookie_from_file(path, &c, &src, why, why_cap);
        free(dflt);
    }
    if (rc == 0) {
        *out = c;
        if (source != NULL)
            *source = src;
    }
    OPENSSL_cleanse(&c, sizeof(c));
    return rc;
}

void dist__cookie_done(struct dist__cookie *cookie)
{
    if (cookie != NULL)
        OPENSSL_cleanse(cookie, sizeof(*cookie));
}
