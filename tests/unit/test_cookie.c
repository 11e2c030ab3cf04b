/*
 * test_cookie.c: where the cookie comes from (option, environment, file), which cookie files
 * are refused, and the file made on first use. Each test works in its own temporary directory,
 * which also serves as $HOME; Criterion runs each test in its own process, so changes to the
 * environment stay within one test.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist.h"
#include "secure.h"

static char dir[64];
static char file[128];

static void setup(void)
{
    strcpy(dir, "/tmp/test_cookie.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/cookie", dir);
    cr_assert_eq(setenv("HOME", dir, 1), 0);
    cr_assert_eq(unsetenv(DIST__COOKIE_ENV), 0);
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d == NULL)
        return;
    for (;;) {
        e = readdir(d);
        if (e == NULL)
            break;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

TestSuite(cookie, .init = setup, .fini = teardown);

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Resolve and require success; the cookie as a string, and where it came from. */
static const char *resolve_ok(const char *option, const char *path, char *out)
{
    struct dist__cookie c;
    const char *source = NULL;
    char why[DIST__REASON_MAX] = "";
    int rc = dist__cookie_resolve(option, path, &c, &source, why, sizeof(why));

    cr_assert_eq(rc, 0, "resolve failed: %s (%s)", dist_strerror(rc), why);
    memcpy(out, c.data, c.len);
    out[c.len] = '\0';
    dist__cookie_done(&c);
    cr_assert_eq(c.len, 0);
    return source;
}

/* Resolve and require failure; the reason is left in @why. */
static int resolve_err(const char *option, const char *path, char *why, size_t cap)
{
    struct dist__cookie c;
    int rc;

    memset(&c, 0x5a, sizeof(c));
    rc = dist__cookie_resolve(option, path, &c, NULL, why, cap);
    cr_assert_neq(rc, 0, "resolve succeeded");
    cr_assert_eq(c.len, (size_t)0x5a5a5a5a5a5a5a5aull, "output written on failure");
    return rc;
}

/* ---- Precedence --------------------------------------------------------------------------- */

Test(cookie, option_beats_environment_and_file)
{
    char got[DIST__COOKIE_MAX + 1];

    write_file(file, "from-file\n", 10, 0400);
    setenv(DIST__COOKIE_ENV, "from-env", 1);
    cr_assert_str_eq(resolve_ok("from-option", file, got), "option");
    cr_assert_str_eq(got, "from-option");
}

Test(cookie, environment_beats_file)
{
    char got[DIST__COOKIE_MAX + 1];

    write_file(file, "from-file\n", 10, 0400);
    setenv(DIST__COOKIE_ENV, "from-env", 1);
    cr_assert_str_eq(resolve_ok(NULL, file, got), "environment");
    cr_assert_str_eq(got, "from-env");
}

Test(cookie, file_when_nothing_else)
{
    char got[DIST__COOKIE_MAX + 1];

    write_file(file, "from-file\n", 10, 0400);
    cr_assert_str_eq(resolve_ok(NULL, file, got), "file");
    cr_assert_str_eq(got, "from-file");
}

Test(cookie, default_file_is_in_home)
{
    char got[DIST__COOKIE_MAX + 1];
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, DIST__COOKIE_FILE);
    write_file(path, "home-cookie", 11, 0600);
    cr_assert_str_eq(resolve_ok(NULL, NULL, got), "file");
    cr_assert_str_eq(got, "home-cookie");
}

Test(cookie, no_home_and_no_path)
{
    char why[DIST__REASON_MAX];

    unsetenv("HOME");
    cr_assert_eq(resolve_err(NULL, NULL, why, sizeof(why)), DIST_EINVAL);
    cr_assert(strstr(why, "HOME") != NULL, "%s", why);
}

/* ---- File permissions --------------------------------------------------------------------- */

Test(cookie, group_or_world_access_is_refused)
{
    static const mode_t modes[] = {0640, 0604, 0440, 0404, 0660, 0602, 0610, 0601, 0777};
    char why[DIST__REASON_MAX];
    char mode[16];

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(file, "secret", 6, modes[i]);
        cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE_PERM,
                     "mode %o accepted", (unsigned)modes[i]);
        snprintf(mode, sizeof(mode), "%04o", (unsigned)modes[i]);
        cr_assert(strstr(why, file) != NULL, "reason names no file: %s", why);
        cr_assert(strstr(why, mode) != NULL, "reason names no mode: %s", why);
        unlink(file);
    }
}

Test(cookie, owner_only_modes_are_accepted)
{
    static const mode_t modes[] = {0400, 0600, 0700};
    char got[DIST__COOKIE_MAX + 1];

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file(file, "secret", 6, modes[i]);
        resolve_ok(NULL, file, got);
        cr_assert_str_eq(got, "secret");
        unlink(file);
    }
}

Test(cookie, not_a_regular_file_is_refused)
{
    char why[DIST__REASON_MAX];

    cr_assert_eq(mkdir(file, 0700), 0);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE_PERM);
    cr_assert(strstr(why, "not a regular file") != NULL, "%s", why);
    rmdir(file);
    /* A FIFO must be refused without blocking on its open. */
    cr_assert_eq(mkfifo(file, 0600), 0);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE_PERM);
}

Test(cookie, file_of_another_user_is_refused)
{
    char why[DIST__REASON_MAX];

    if (geteuid() != 0)
        cr_skip_test("needs root to give the file to another user");
    write_file(file, "secret", 6, 0400);
    cr_assert_eq(chown(file, 65534, 65534), 0);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE_PERM);
    cr_assert(strstr(why, "owned by uid 65534") != NULL, "%s", why);
}

/* ---- Generated file ----------------------------------------------------------------------- */

Test(cookie, missing_file_is_created_and_reused)
{
    char first[DIST__COOKIE_MAX + 1];
    char second[DIST__COOKIE_MAX + 1];
    struct stat st;
    DIR *d;
    struct dirent *e;
    int entries = 0;

    cr_assert_str_eq(resolve_ok(NULL, file, first), "generated");
    cr_assert_eq(strlen(first), DIST__COOKIE_GEN_LEN);
    for (const char *p = first; *p != '\0'; p++)
        cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", *p),
                  "character %c", *p);

    cr_assert_eq(stat(file, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    cr_assert_eq(st.st_mode & 07777, 0400, "mode %o", (unsigned)(st.st_mode & 07777));
    cr_assert_eq(st.st_uid, geteuid());

    cr_assert_str_eq(resolve_ok(NULL, file, second), "file");
    cr_assert_str_eq(first, second);

    /* No temporary file is left beside it. */
    d = opendir(dir);
    cr_assert_not_null(d);
    for (e = readdir(d); e != NULL; e = readdir(d))
        entries += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(entries, 1);
}

Test(cookie, generated_cookies_differ)
{
    char a[DIST__COOKIE_MAX + 1];
    char b[DIST__COOKIE_MAX + 1];

    resolve_ok(NULL, file, a);
    unlink(file);
    resolve_ok(NULL, file, b);
    cr_assert_str_neq(a, b);
}

Test(cookie, missing_directory_is_an_error)
{
    char why[DIST__REASON_MAX];
    char path[256];

    snprintf(path, sizeof(path), "%s/no/such/dir/cookie", dir);
    cr_assert_eq(resolve_err(NULL, path, why, sizeof(why)), -ENOENT);
    cr_assert(strstr(why, path) != NULL, "%s", why);
}

/* ---- Cookie contents ---------------------------------------------------------------------- */

Test(cookie, one_trailing_newline_is_stripped)
{
    char got[DIST__COOKIE_MAX + 1];

    write_file(file, "abc\r\n", 5, 0400);
    resolve_ok(NULL, file, got);
    cr_assert_str_eq(got, "abc");
    unlink(file);
    write_file(file, "abc\n\n", 5, 0400);
    resolve_ok(NULL, file, got);
    cr_assert_str_eq(got, "abc\n");
    cr_assert_str_eq(resolve_ok("xyz\n", NULL, got), "option");
    cr_assert_str_eq(got, "xyz");
}

Test(cookie, empty_cookies_are_refused)
{
    char why[DIST__REASON_MAX];

    write_file(file, "", 0, 0400);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    cr_assert(strstr(why, "empty") != NULL, "%s", why);
    unlink(file);
    write_file(file, "\n", 1, 0400);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    cr_assert_eq(resolve_err("", file, why, sizeof(why)), DIST_ECOOKIE);
    setenv(DIST__COOKIE_ENV, "", 1);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    cr_assert(strstr(why, DIST__COOKIE_ENV) != NULL, "%s", why);
}

Test(cookie, length_limit)
{
    char big[DIST__COOKIE_MAX + 3];
    char got[DIST__COOKIE_MAX + 1];
    char why[DIST__REASON_MAX];

    memset(big, 'k', sizeof(big));
    /* DIST__COOKIE_MAX bytes and a newline: accepted. */
    big[DIST__COOKIE_MAX] = '\n';
    write_file(file, big, DIST__COOKIE_MAX + 1, 0400);
    resolve_ok(NULL, file, got);
    cr_assert_eq(strlen(got), DIST__COOKIE_MAX);
    unlink(file);
    /* One byte more: refused, from a file and from an option. */
    big[DIST__COOKIE_MAX] = 'k';
    write_file(file, big, DIST__COOKIE_MAX + 1, 0400);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    cr_assert(strstr(why, "longer") != NULL, "%s", why);
    unlink(file);
    write_file(file, big, sizeof(big), 0400);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    big[DIST__COOKIE_MAX + 1] = '\0';
    cr_assert_eq(resolve_err(big, NULL, why, sizeof(why)), DIST_ECOOKIE);
}

Test(cookie, nul_byte_in_file_is_refused)
{
    char why[DIST__REASON_MAX];

    write_file(file, "ab\0cd", 5, 0400);
    cr_assert_eq(resolve_err(NULL, file, why, sizeof(why)), DIST_ECOOKIE);
    cr_assert(strstr(why, "NUL") != NULL, "%s", why);
}

Test(cookie, done_wipes)
{
    struct dist__cookie c = {.len = 3, .data = {'a', 'b', 'c'}};

    dist__cookie_done(&c);
    cr_assert_eq(c.len, 0);
    cr_assert_eq(c.data[0], 0);
    dist__cookie_done(NULL);
}
