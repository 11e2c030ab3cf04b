/*
 * journal_open.c: opening and closing a journal: the directory, the one-writer lock, the
 * LMDB environment, the schema check, and the writer thread's start and stop.
 *
 *   mkdir dir -> flock <dir>/writer.lock (else ACTOR_ELOCKED) -> mdb_env_open <dir>
 *     (else ACTOR_ECORRUPT, naming <dir>/data.mdb) -> open "events", "snapshots", "meta"
 *     -> schema version: write it into a new environment, else compare (ACTOR_ESCHEMA)
 *     -> start the writer
 *
 * One writer per directory: the flock() is held while the journal is open, so a second
 * process (or a second open in this one) is refused, whichever LMDB would allow.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"

#define MAP_SIZE_DEFAULT  ((size_t)64 << 20)
#define MAP_MAX_DEFAULT   ((size_t)64 << 30)
#define BATCH_DEFAULT     16384u
#define SCHEMA_KEY        "schema"
#define LOCK_FILE         "writer.lock"
#define WRITER_STACK_SIZE ((size_t)1 << 20)

/* Take <dir>/writer.lock, or fail with ACTOR_ELOCKED when another open holds it. */
static int lock_take(struct actor_journal *j)
{
    char path[4096];
    int fd;

    if (snprintf(path, sizeof(path), "%s/%s", j->dir, LOCK_FILE) >= (int)sizeof(path))
        return ACTOR_EINVAL;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = -errno;

        journal__log(j, 1, "journal: %s: %s", path, strerror(errno));
        return err;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno == EWOULDBLOCK ? ACTOR_ELOCKED : -errno;

        journal__log(j, 1, "journal: %s is in use by another writer (%s is locked)", j->dir, path);
        close(fd);
        return err;
    }
    j->lock_fd = fd;
    return 0;
}

/* Check the schema version, writing it into a new environment. Returns our code. */
static int schema_check(struct actor_journal *j, MDB_txn *txn)
{
    unsigned char buf[4];
    MDB_val k = {sizeof(SCHEMA_KEY) - 1, SCHEMA_KEY}, v;
    uint32_t found;
    int rc = mdb_get(txn, j->meta, &k, &v);

    if (rc == MDB_NOTFOUND) {
        for (int i = 0; i < 4; i++)
            buf[i] = (unsigned char)(ACTOR_JOURNAL_SCHEMA >> (24 - 8 * i));
        v = (MDB_val){sizeof(buf), buf};
        return journal__mdb_err(mdb_put(txn, j->meta, &k, &v, 0));
    }
    if (rc != 0)
        return journal__mdb_err(rc);
    found = 0;
    for (size_t i = 0; i < v.mv_size && i < 4; i++)
        found = found << 8 | ((unsigned char *)v.mv_data)[i];
    if (v.mv_size == 4 && found == ACTOR_JOURNAL_SCHEMA)
        return 0;
    journal__log(j, 1, "journal: %s/%s: schema version %u, but this library reads version %u",
                 j->dir, DATA_FILE, (unsigned)found, ACTOR_JOURNAL_SCHEMA);
    return ACTOR_ESCHEMA;
}

static int dbs_open(struct actor_journal *j)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(j->env, NULL, 0, &txn);

    if (rc == 0)
        rc = mdb_dbi_open(txn, "events", MDB_CREATE, &j->events);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "snapshots", MDB_CREATE, &j->snaps);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &j->meta);
    if (rc != 0) {
        journal__log(j, 1, "journal: %s/%s: %s", j->dir, DATA_FILE, mdb_strerror(rc));
        if (txn != NULL)
            mdb_txn_abort(txn);
        return journal__mdb_err(rc);
    }
    rc = schema_check(j, txn);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        journal__log(j, 1, "journal: %s/%s: %s", j->dir, DATA_FILE, mdb_strerror(rc));
    return journal__mdb_err(rc);
}

static int env_open(struct actor_journal *j, size_t map_size)
{
    unsigned flags = MDB_NOTLS | ((j->flags & ACTOR_JOURNAL_NOSYNC) ? MDB_NOSYNC : 0);
    MDB_envinfo info;
    int dead, rc;

    rc = mdb_env_create(&j->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(j->env, 3);
    if (rc == 0)
        rc = mdb_env_set_mapsize(j->env, map_size);
    if (rc == 0)
        rc = mdb_env_open(j->env, j->dir, flags, 0600);
    if (rc != 0) {
        journal__log(j, 1, "journal: %s/%s: cannot open: %s", j->dir, DATA_FILE, mdb_strerror(rc));
        return journal__mdb_err(rc);
    }
    /* Readers that a killed process left behind would pin old pages forever. */
    mdb_reader_check(j->env, &dead);
    mdb_env_info(j->env, &info);
    j->stats.map_size = info.me_mapsize; /* an existing map may be larger than asked */
    return dbs_open(j);
}

static int dir_make(struct actor_journal *j)
{
    struct stat st;

    if (mkdir(j->dir, 0700) != 0 && errno != EEXIST) {
        int err = -errno;

        journal__log(j, 1, "journal: %s: %s", j->dir, strerror(errno));
        return err;
    }
    if (stat(j->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        journal__log(j, 1, "journal: %s: not a directory", j->dir);
        return -ENOTDIR;
    }
    return 0;
}

static int journal_start(struct actor_journal *j, size_t map_size)
{
    pthread_attr_t attr;
    int rc = dir_make(j);

    if (rc == 0)
        rc = lock_take(j);
    if (rc == 0)
        rc = env_open(j, map_size);
    if (rc != 0)
        return rc;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WRITER_STACK_SIZE);
    rc = -pthread_create(&j->writer, &attr, journal__writer_main, j);
    pthread_attr_destroy(&attr);
    j->writer_alive = rc == 0;
    return rc;
}

int actor_journal_open(const struct actor_journal_opts *opts, struct actor_journal **out)
{
    struct actor_journal *j;
    size_t map_size;
    int rc;

    if (opts == NULL || out == NULL || opts->dir == NULL || opts->dir[0] == '\0' ||
        (opts->flags & ~ACTOR_JOURNAL_NOSYNC) != 0)
        return ACTOR_EINVAL;
    map_size = opts->map_size != 0 ? opts->map_size : MAP_SIZE_DEFAULT;
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return ACTOR_ENOMEM;
    j->lock_fd = -1;
    j->flags = opts->flags;
    j->max_batch = opts->max_batch != 0 ? opts->max_batch : BATCH_DEFAULT;
    j->map_max = opts->map_max != 0 ? opts->map_max : MAP_MAX_DEFAULT;
    if (j->map_max < map_size)
        j->map_max = map_size;
    j->log = opts->log;
    j->log_data = opts->log_data;
    pthread_rwlock_init(&j->resize, NULL);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->work, NULL);
    pthread_cond_init(&j->written, NULL);
    j->dir = strdup(opts->dir);
    rc = j->dir != NULL ? journal_start(j, map_size) : ACTOR_ENOMEM;
    if (rc != 0) {
        actor_journal_close(j);
        return rc;
    }
    *out = j;
    return 0;
}

void actor_journal_close(struct actor_journal *j)
{
    if (j == NULL)
        return;
    if (j->writer_alive) {
        pthread_mutex_lock(&j->lock);
        j->stopping = 1;
        pthread_cond_signal(&j->work);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->writer, NULL);
    }
    if (j->env != NULL)
        mdb_env_close(j->env);
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    while (j->claims != NULL) {
        struct claim *c = j->claims;

        j->claims = c->next;
        free(c);
    }
    pthread_cond_destroy(&j->written);
    pthread_cond_destroy(&j->work);
    pthread_mutex_destroy(&j->lock);
    pthread_rwlock_destroy(&j->resize);
    free(j->dir);
    free(j);
}
