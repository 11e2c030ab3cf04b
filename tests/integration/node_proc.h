/*
 * node_proc.h: node programs run as child processes by the integration tests
 * (test_dist_node.c, test_actor_dist.c, test_examples_dist.c): their output files, bounded
 * waits on the lines they print, reaping, and the fixture around them. Include daemon.h first;
 * define WAIT_MS, the bound on one wait.
 */
#ifndef TEST_NODE_PROC_H
#define TEST_NODE_PROC_H

#ifndef WAIT_MS
#error "define WAIT_MS before including node_proc.h"
#endif

struct proc {
    pid_t pid;
    int in; /* a pipe to the node's stdin, or 0 for none */
    char name[64];
    char out[160];
    char err[160];
};

/*
 * The program to run: the one named by the environment variable @env when it is set (so that
 * scripts/test can run the nodes of a build under another sanitizer), else @built. Such a
 * program finds its own build's libraries through its run path, unless the LD_LIBRARY_PATH
 * meson test sets for this build overrides it: that is dropped then, for every child.
 */
static char *proc_bin(const char *env, const char *built)
{
    const char *p = getenv(env);

    if (p == NULL || *p == '\0')
        return (char *)built;
    unsetenv("LD_LIBRARY_PATH");
    return (char *)p;
}

/* Take the next of @max slots in @procs for node "NAME@127.0.0.1", its output files in @dir. */
static struct proc *proc_add(struct proc *procs, int *n, int max, const char *dir, const char *name)
{
    struct proc *p;

    cr_assert_lt(*n, max);
    p = &procs[(*n)++];
    snprintf(p->name, sizeof(p->name), "%s@127.0.0.1", name);
    snprintf(p->out, sizeof(p->out), "%s/%s.out", dir, name);
    snprintf(p->err, sizeof(p->err), "%s/%s.err", dir, name);
    return p;
}

/*
 * Run @argv as @p: stdout and stderr to its files, stdin on a pipe (p->in) when @pipe_in, else
 * the test's. The child dies with the test.
 */
static void proc_exec(struct proc *p, char *const argv[], int pipe_in)
{
    int fds[2] = {-1, -1}, ofd, efd;
    pid_t parent = getpid();

    if (pipe_in)
        cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    ofd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    efd = open(p->err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(ofd >= 0 && efd >= 0);
    p->pid = fork();
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (pipe_in)
            dup2(fds[0], STDIN_FILENO);
        dup2(ofd, STDOUT_FILENO);
        dup2(efd, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pipe_in) {
        close(fds[0]);
        p->in = fds[1];
    }
    close(ofd);
    close(efd);
    cr_assert_gt(p->pid, 0);
}

/* Kill (even a stopped one) and reap @p, and close its stdin. */
static void proc_reap(struct proc *p)
{
    if (p->in > 0)
        close(p->in);
    p->in = 0;
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGCONT);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

/* Reap every process of @procs and remove their output files. */
static void procs_reap_all(struct proc *procs, int *n)
{
    for (int i = 0; i < *n; i++) {
        proc_reap(&procs[i]);
        unlink(procs[i].out);
        unlink(procs[i].err);
    }
    *n = 0;
}

/*
 * The fixture of a multi-process test: a temporary directory for the nodes' output
 * (@dir, @cap bytes, named after @prefix) and an epmd of its own; and its undoing, which kills
 * and reaps every node first.
 */
static void nodes_setup(struct daemon *d, char *dir, size_t cap, const char *prefix)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, cap, "/tmp/%s-XXXXXX", prefix);
    cr_assert_not_null(mkdtemp(dir));
    daemon_start(d, NULL);
}

static void nodes_teardown(struct daemon *d, const char *dir, struct proc *procs, int *n)
{
    procs_reap_all(procs, n);
    rmdir(dir);
    daemon_stop(d);
}

static void proc_show(const struct proc *p)
{
    char *out = slurp(p->out, NULL);
    char *err = slurp(p->err, NULL);

    cr_log_error("%s stdout:\n%s\n%s stderr:\n%s", p->name, out, p->name, err);
    free(out);
    free(err);
}

/* Wait until @p's stdout holds @needle at least @n times; returns the time it took (ms). */
static uint64_t wait_out(const struct proc *p, const char *needle, int n)
{
    uint64_t start = mono_ms(), deadline = start + WAIT_MS;

    while (file_count(p->out, needle) < n) {
        if (mono_ms() >= deadline) {
            proc_show(p);
            cr_assert_fail("%s: no %d x '%s' within %d ms", p->name, n, needle, WAIT_MS);
        }
        sleep_ms(5);
    }
    return mono_ms() - start;
}

#endif /* TEST_NODE_PROC_H */
