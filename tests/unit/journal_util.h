/*
 * journal_util.h: what the journal's tests share: a temporary directory on the disk (not
 * tmpfs: the journal's syncs must be real), its removal, a log callback that keeps the
 * journal's lines, and the plain programs' checks. Each program includes it once.
 */
#ifndef TEST_JOURNAL_UTIL_H
#define TEST_JOURNAL_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JUTIL_FN static __attribute__((unused))

/* The parent of the temporary directories: $JOURNAL_TEST_DIR, else /var/tmp (a real disk). */
JUTIL_FN const char *jutil_base(void)
{
    const char *base = getenv("JOURNAL_TEST_DIR");

    return base != NULL && base[0] != '\0' ? base : "/var/tmp";
}

/* Make a fresh directory named after @what in @out (PATH_MAX bytes); 0 or -1. */
JUTIL_FN int jutil_tmpdir(const char *what, char *out)
{
    snprintf(out, PATH_MAX, "%s/%s.XXXXXX", jutil_base(), what);
    return mkdtemp(out) != NULL ? 0 : -1;
}

/* Remove @dir and the files in it (a journal directory has no subdirectories). */
JUTIL_FN void jutil_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 256];

    if (d == NULL)
        return;
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* The journal's log lines, all of them joined, for assertions on what it said. */
static pthread_mutex_t jutil_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char jutil_log_text[8192];

JUTIL_FN void jutil_log(int level, const char *msg, void *user_data)
{
    size_t used;

    pthread_mutex_lock(&jutil_log_lock);
    used = strlen(jutil_log_text);
    snprintf(jutil_log_text + used, sizeof(jutil_log_text) - used, "%s\n", msg);
    pthread_mutex_unlock(&jutil_log_lock);
}

/* Whether the log holds @needle. */
JUTIL_FN int jutil_logged(const char *needle)
{
    int found;

    pthread_mutex_lock(&jutil_log_lock);
    found = strstr(jutil_log_text, needle) != NULL;
    pthread_mutex_unlock(&jutil_log_lock);
    return found;
}

JUTIL_FN void jutil_log_clear(void)
{
    pthread_mutex_lock(&jutil_log_lock);
    jutil_log_text[0] = '\0';
    pthread_mutex_unlock(&jutil_log_lock);
}

/* The plain (non-Criterion) programs' checks: "ok <what>" or "FAIL <what>: <why>". */
static int jutil_failures;

JUTIL_FN void jutil_check(int ok, const char *what, const char *why)
{
    if (ok) {
        printf("ok   %s\n", what);
    } else {
        printf("FAIL %s: %s\n", what, why);
        jutil_failures++;
    }
    fflush(stdout);
}

#endif /* TEST_JOURNAL_UTIL_H */
