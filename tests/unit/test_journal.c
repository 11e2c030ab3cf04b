/*
 * test_journal.c: the journal store on its own, through actor.h's actor_journal_* functions:
 * append and replay, sequence checks, snapshots, deletion up to a snapshot, the schema
 * version, corruption, map growth, a full map, a write error and the one-writer lock.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actor.h"
#include "journal_util.h"

#define ID         "acct-1"
#define MAX_EVENTS 4096

static char dir[PATH_MAX];
static struct actor_journal *jr;

/* The outcome of each request, by the order they were made. */
static int results[MAX_EVENTS];
static uint64_t result_seqs[MAX_EVENTS];
static int nresults;

static void on_done(int err, uint64_t seq, void *user_data)
{
    int i = (int)(intptr_t)user_data;

    results[i] = err;
    result_seqs[i] = seq;
    __atomic_add_fetch(&nresults, 1, __ATOMIC_SEQ_CST);
}

static int open_with(size_t map_size, size_t map_max, struct actor_journal **out)
{
    struct actor_journal_opts o = {
        .dir = dir, .map_size = map_size, .map_max = map_max, .log = jutil_log};

    return actor_journal_open(&o, out);
}

static void setup(void)
{
    int rc;

    jutil_log_clear();
    nresults = 0;
    cr_assert_eq(jutil_tmpdir("test-journal", dir), 0, "mkdtemp: %s", strerror(errno));
    rc = open_with(0, 0, &jr);
    cr_assert_eq(rc, 0, "open: %s", actor_strerror(rc));
}

static void teardown(void)
{
    actor_journal_close(jr);
    jr = NULL;
    jutil_rmdir(dir);
}

static void reopen(void)
{
    int rc;

    actor_journal_close(jr);
    jr = NULL;
    rc = open_with(0, 0, &jr);
    cr_assert_eq(rc, 0, "reopen: %s", actor_strerror(rc));
}

/* Append events @from..@to of @id (each one's bytes: its seq as text) and wait for them. */
static void append_range(const char *id, uint64_t from, uint64_t to)
{
    int first = nresults;

    for (uint64_t s = from; s <= to; s++) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "event %llu", (unsigned long long)s);
        int rc = actor_journal_append(jr, id, s, buf, (size_t)n, on_done,
                                      (void *)(intptr_t)(first + (int)(s - from)));

        cr_assert_eq(rc, 0, "append %llu: %s", (unsigned long long)s, actor_strerror(rc));
    }
    cr_assert_eq(actor_journal_flush(jr), 0);
    for (int i = first; i < first + (int)(to - from + 1); i++)
        cr_assert_eq(results[i], 0, "append of seq %llu: %s", (unsigned long long)result_seqs[i],
                     actor_strerror(results[i]));
}

/* One request, waited for; returns its outcome. */
static int one(int (*submit)(void))
{
    int i = nresults;

    cr_assert_eq(submit(), 0);
    cr_assert_eq(actor_journal_flush(jr), 0);
    cr_assert_eq(nresults, i + 1);
    return results[i];
}

struct replayed {
    uint64_t seqs[MAX_EVENTS];
    int n;
    int bad; /* an event whose bytes were not its seq's */
};

static int collect(uint64_t seq, const void *data, size_t len, void *user_data)
{
    struct replayed *r = user_data;
    char want[32];
    int n = snprintf(want, sizeof(want), "event %llu", (unsigned long long)seq);

    if ((size_t)n != len || memcmp(want, data, len) != 0)
        r->bad++;
    if (r->n < MAX_EVENTS)
        r->seqs[r->n++] = seq;
    return 0;
}

/* Replay @id from @from and assert that it yields exactly @first..@last. */
static void assert_replay(const char *id, uint64_t from, uint64_t first, uint64_t last)
{
    static struct replayed r;
    int rc;

    memset(&r, 0, sizeof(r));
    rc = actor_journal_replay(jr, id, from, collect, &r);
    cr_assert_eq(rc, 0, "replay: %s", actor_strerror(rc));
    cr_assert_eq(r.bad, 0, "%d events with wrong bytes", r.bad);
    cr_assert_eq((uint64_t)r.n, last >= first ? last - first + 1 : 0, "replayed %d events", r.n);
    for (int i = 0; i < r.n; i++)
        cr_assert_eq(r.seqs[i], first + (uint64_t)i, "event #%d has seq %llu", i,
                     (unsigned long long)r.seqs[i]);
}

static uint64_t highest(const char *id)
{
    uint64_t seq = 12345;
    int rc = actor_journal_highest(jr, id, &seq);

    cr_assert_eq(rc, 0, "highest: %s", actor_strerror(rc));
    return seq;
}

TestSuite(journal, .init = setup, .fini = teardown, .timeout = 60);

Test(journal, append_and_replay_in_order_across_reopen)
{
    append_range(ID, 1, 300);
    append_range("other", 1, 5);
    assert_replay(ID, 1, 1, 300);
    assert_replay(ID, 250, 250, 300);
    assert_replay("other", 0, 1, 5);
    assert_replay("never-written", 1, 1, 0);
    cr_assert_eq(highest(ID), 300);
    cr_assert_eq(highest("never-written"), 0);
    reopen();
    assert_replay(ID, 1, 1, 300);
    cr_assert_eq(highest("other"), 5);
}

static int stop_at_4(uint64_t seq, const void *data, size_t len, void *user_data)
{
    (*(int *)user_data)++;
    return seq == 4 ? 7 : 0;
}

Test(journal, replay_stops_at_a_callbacks_value)
{
    int seen = 0;

    append_range(ID, 1, 10);
    cr_assert_eq(actor_journal_replay(jr, ID, 1, stop_at_4, &seen), 7);
    cr_assert_eq(seen, 4);
}

static int submit_gap(void)
{
    return actor_journal_append(jr, ID, 5, "x", 1, on_done, (void *)(intptr_t)nresults);
}

static int submit_dup(void)
{
    return actor_journal_append(jr, ID, 3, "x", 1, on_done, (void *)(intptr_t)nresults);
}

Test(journal, gaps_and_duplicates_are_refused)
{
    append_range(ID, 1, 3);
    cr_assert_eq(one(submit_gap), ACTOR_ESEQ);
    cr_assert_eq(one(submit_dup), ACTOR_ESEQ);
    append_range(ID, 4, 6);
    assert_replay(ID, 1, 1, 6);
}

Test(journal, bad_arguments_are_refused)
{
    char long_id[ACTOR_JOURNAL_ID_MAX + 2];

    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    cr_assert_eq(actor_journal_append(jr, ID, 0, "x", 1, NULL, NULL), ACTOR_EINVAL);
    cr_assert_eq(actor_journal_append(jr, "", 1, "x", 1, NULL, NULL), ACTOR_EINVAL);
    cr_assert_eq(actor_journal_append(jr, NULL, 1, "x", 1, NULL, NULL), ACTOR_EINVAL);
    cr_assert_eq(actor_journal_append(jr, long_id, 1, "x", 1, NULL, NULL), ACTOR_EINVAL);
    cr_assert_eq(actor_journal_append(jr, ID, 1, NULL, 1, NULL, NULL), ACTOR_EINVAL);
    cr_assert_eq(actor_journal_append(jr, ID, 1, "x", ACTOR_JOURNAL_EVENT_MAX + 1, NULL, NULL),
                 ACTOR_EINVAL);
    cr_assert_eq(actor_journal_open(NULL, NULL), ACTOR_EINVAL);
    long_id[ACTOR_JOURNAL_ID_MAX] = '\0';
    append_range(long_id, 1, 2); /* the longest id is fine */
    assert_replay(long_id, 1, 1, 2);
}

static int submit_old_snapshot(void)
{
    return actor_journal_snapshot_save(jr, ID, 40, "old", 3, on_done, (void *)(intptr_t)nresults);
}

Test(journal, snapshot_save_and_load)
{
    uint64_t seq = 99;
    void *data = (void *)1;
    size_t len = 99;

    cr_assert_eq(actor_journal_snapshot_load(jr, ID, &seq, &data, &len), 0);
    cr_assert_eq(seq, 0);
    cr_assert_null(data);
    cr_assert_eq(len, 0);
    append_range(ID, 1, 60);
    cr_assert_eq(actor_journal_snapshot_save(jr, ID, 50, "state at 50", 11, NULL, NULL), 0);
    cr_assert_eq(one(submit_old_snapshot), ACTOR_ESEQ, "an older snapshot must not replace");
    reopen();
    cr_assert_eq(actor_journal_snapshot_load(jr, ID, &seq, &data, &len), 0);
    cr_assert_eq(seq, 50);
    cr_assert_eq(len, 11);
    cr_assert_eq(memcmp(data, "state at 50", 11), 0);
    free(data);
    assert_replay(ID, 51, 51, 60);
}

static int submit_delete_past_snapshot(void)
{
    return actor_journal_delete_to(jr, ID, 80, on_done, (void *)(intptr_t)nresults);
}

static int submit_delete_to_snapshot(void)
{
    return actor_journal_delete_to(jr, ID, 60, on_done, (void *)(intptr_t)nresults);
}

Test(journal, delete_up_to_a_snapshot)
{
    append_range(ID, 1, 100);
    append_range("neighbour", 1, 10);
    cr_assert_eq(one(submit_delete_to_snapshot), ACTOR_EINVAL, "no snapshot yet");
    assert_replay(ID, 1, 1, 100);
    cr_assert_eq(actor_journal_snapshot_save(jr, ID, 60, "s", 1, NULL, NULL), 0);
    cr_assert_eq(one(submit_delete_past_snapshot), ACTOR_EINVAL);
    cr_assert_eq(one(submit_delete_to_snapshot), 0);
    assert_replay(ID, 1, 61, 100);
    assert_replay("neighbour", 1, 1, 10);
    cr_assert_eq(highest(ID), 100);
    /* Everything deleted: the snapshot still carries the sequence on. */
    cr_assert_eq(actor_journal_snapshot_save(jr, ID, 100, "s", 1, NULL, NULL), 0);
    cr_assert_eq(actor_journal_delete_to(jr, ID, 100, NULL, NULL), 0);
    cr_assert_eq(actor_journal_flush(jr), 0);
    assert_replay(ID, 1, 1, 0);
    cr_assert_eq(highest(ID), 100);
    append_range(ID, 101, 102);
    assert_replay(ID, 1, 101, 102);
}

/* Write @version as the schema of the closed environment in dir, with LMDB directly. */
static void schema_write(uint32_t version)
{
    unsigned char buf[4] = {version >> 24, version >> 16, version >> 8, version};
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {6, "schema"}, v = {4, buf};

    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 3);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

Test(journal, schema_version_mismatch_is_refused)
{
    char file[PATH_MAX + 16];
    struct actor_journal *j2 = NULL;
    int rc;

    append_range(ID, 1, 3);
    actor_journal_close(jr);
    jr = NULL;
    schema_write(ACTOR_JOURNAL_SCHEMA + 1);
    rc = open_with(0, 0, &j2);
    cr_assert_eq(rc, ACTOR_ESCHEMA, "open: %s", actor_strerror(rc));
    cr_assert_null(j2);
    snprintf(file, sizeof(file), "%s/data.mdb", dir);
    cr_assert(jutil_logged(file), "the log does not name %s:\n%s", file, jutil_log_text);
    cr_assert(jutil_logged("schema version 2"), "%s", jutil_log_text);
    /* Back to ours: it opens again, with its events intact. */
    schema_write(ACTOR_JOURNAL_SCHEMA);
    rc = open_with(0, 0, &jr);
    cr_assert_eq(rc, 0, "open: %s", actor_strerror(rc));
    assert_replay(ID, 1, 1, 3);
}

Test(journal, corrupt_environment_is_refused_naming_the_file)
{
    char file[PATH_MAX + 16];
    char junk[8192];
    int fd, rc;

    actor_journal_close(jr);
    jr = NULL;
    snprintf(file, sizeof(file), "%s/data.mdb", dir);
    memset(junk, 0x5a, sizeof(junk));
    fd = open(file, O_WRONLY | O_TRUNC);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    rc = open_with(0, 0, &jr);
    cr_assert_eq(rc, ACTOR_ECORRUPT, "open: %s", actor_strerror(rc));
    cr_assert(jutil_logged(file), "the log does not name %s:\n%s", file, jutil_log_text);
}

Test(journal, second_writer_is_refused)
{
    struct actor_journal *j2 = NULL;
    pid_t child;
    int status, rc;

    rc = open_with(0, 0, &j2);
    cr_assert_eq(rc, ACTOR_ELOCKED, "second open in one process: %s", actor_strerror(rc));
    cr_assert(jutil_logged(dir), "the log does not name %s:\n%s", dir, jutil_log_text);
    /* Another process. */
    child = fork();
    cr_assert(child >= 0);
    if (child == 0) {
        struct actor_journal *j3 = NULL;

        _exit(open_with(0, 0, &j3) == ACTOR_ELOCKED ? 0 : 1);
    }
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process was not refused");
    /* Once closed, the directory is free again. */
    actor_journal_close(jr);
    jr = NULL;
    rc = open_with(0, 0, &jr);
    cr_assert_eq(rc, 0, "open after close: %s", actor_strerror(rc));
}

/* Append @n events of @size bytes from @from on, without waiting; returns the first index. */
static int append_big(uint64_t from, int n, size_t size)
{
    static char blob[64 * 1024];
    int first = nresults;

    cr_assert(size <= sizeof(blob));
    for (int i = 0; i < n; i++) {
        int rc;

        memset(blob, 'a' + (int)((from + (uint64_t)i) % 26), size);
        rc = actor_journal_append(jr, ID, from + (uint64_t)i, blob, size, on_done,
                                  (void *)(intptr_t)(first + i));
        cr_assert_eq(rc, 0);
    }
    cr_assert_eq(actor_journal_flush(jr), 0);
    return first;
}

Test(journal, map_grows_when_full)
{
    struct actor_journal_stats st;
    int first, rc;

    actor_journal_close(jr);
    jr = NULL;
    rc = open_with(1 << 20, 256 << 20, &jr);
    cr_assert_eq(rc, 0, "open: %s", actor_strerror(rc));
    first = append_big(1, 400, 16 * 1024); /* 6.4 MB through a 1 MiB map */
    for (int i = first; i < first + 400; i++)
        cr_assert_eq(results[i], 0, "event %d: %s", i - first + 1, actor_strerror(results[i]));
    actor_journal_stats(jr, &st);
    cr_assert_gt(st.map_grows, 0);
    cr_assert_gt(st.map_size, (size_t)1 << 20);
    cr_assert_eq(st.appended, 400);
    cr_assert_eq(highest(ID), 400);
    cr_assert(jutil_logged("map grown"), "%s", jutil_log_text);
}

Test(journal, full_map_at_its_maximum_fails_the_appends)
{
    struct actor_journal_stats st;
    int first, ok = 0, full = 0, rc;

    actor_journal_close(jr);
    jr = NULL;
    rc = open_with(1 << 20, 1 << 20, &jr);
    cr_assert_eq(rc, 0, "open: %s", actor_strerror(rc));
    first = append_big(1, 200, 16 * 1024);
    for (int i = first; i < first + 200; i++) {
        if (results[i] == 0) {
            cr_assert_eq(full, 0, "event %d succeeded after a failure", i - first + 1);
            ok++;
        } else {
            cr_assert(results[i] == ACTOR_EMAPFULL || results[i] == ACTOR_ESEQ, "event %d: %s",
                      i - first + 1, actor_strerror(results[i]));
            full += results[i] == ACTOR_EMAPFULL;
        }
    }
    cr_assert_gt(full, 0, "a 1 MiB map held 3.2 MB");
    cr_assert_gt(ok, 0);
    actor_journal_stats(jr, &st);
    cr_assert_eq(st.map_size, (size_t)1 << 20);
    cr_assert_eq(highest(ID), (uint64_t)ok);
    cr_assert(jutil_logged("map is at its maximum"), "%s", jutil_log_text);
    /* What was acknowledged is intact, and small appends after it still fit or fail clearly. */
    reopen();
    cr_assert_eq(highest(ID), (uint64_t)ok);
}

Test(journal, write_error_fails_the_appends_with_errno)
{
    struct rlimit lim;
    struct stat st;
    char file[PATH_MAX + 16];
    int first, failed = 0;

    append_range(ID, 1, 2);
    snprintf(file, sizeof(file), "%s/data.mdb", dir);
    cr_assert_eq(stat(file, &st), 0);
    /* A file size limit stands in for a full disk: the commit's write fails (EFBIG). */
    signal(SIGXFSZ, SIG_IGN);
    lim.rlim_cur = lim.rlim_max = (rlim_t)st.st_size;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    first = append_big(3, 4, 64 * 1024);
    for (int i = first; i < first + 4; i++) {
        cr_assert(results[i] == -EFBIG || results[i] == ACTOR_ESEQ, "event %d: %s", i - first + 3,
                  actor_strerror(results[i]));
        failed += results[i] == -EFBIG;
    }
    cr_assert_gt(failed, 0);
    cr_assert_eq(highest(ID), 2);
}

static void *append_thread(void *arg)
{
    char id[16];

    snprintf(id, sizeof(id), "t%d", (int)(intptr_t)arg);
    for (uint64_t s = 1; s <= 500; s++)
        if (actor_journal_append(jr, id, s, &s, sizeof(s), NULL, NULL) != 0)
            return (void *)1;
    return NULL;
}

Test(journal, appends_from_many_threads_share_commits)
{
    struct actor_journal_stats st;
    pthread_t t[4];
    void *ret;

    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, append_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(pthread_join(t[i], &ret), 0);
        cr_assert_null(ret);
    }
    cr_assert_eq(actor_journal_flush(jr), 0);
    actor_journal_stats(jr, &st);
    cr_assert_eq(st.appended, 2000);
    cr_assert_eq(st.failed, 0);
    cr_assert_lt(st.batches, st.appended, "one commit per event: no group commit");
    for (int i = 0; i < 4; i++) {
        char id[16];

        snprintf(id, sizeof(id), "t%d", i);
        cr_assert_eq(highest(id), 500);
    }
}
