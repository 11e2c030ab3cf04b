/*
 * main.c: the epmd program: Erlang's command line, the daemon, and the client modes.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "epmd.h"

/* Descriptors kept back from the connection cap: stdio, listeners, the spare, syslog. */
#define FD_RESERVE 32

enum mode { MODE_DAEMON, MODE_NAMES, MODE_DUMP, MODE_KILL, MODE_STOP };

/* The parsed options: the program's only globals. */
static struct {
    struct epmd_config cfg;
    enum mode mode;
    const char *stop_name;
    int daemonize;
} opt;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: epmd [-d|-debug] [-address List] [-port No] [-daemon]\n"
            "            [-relaxed_command_check] [-packet_timeout Seconds]\n"
            "            [-max_connections N] [-systemd]\n"
            "       epmd [-d|-debug] [-port No] [-names|-dump|-kill|-stop Name]\n"
            "\n"
            "The port mapper: Erlang nodes and ours register here and look each other up.\n"
            "\n"
            "  -port No                 listen on port No (default 4369, or ERL_EPMD_PORT)\n"
            "  -address List            listen on these comma-separated addresses and on the\n"
            "                           loopbacks (default: every address; or ERL_EPMD_ADDRESS)\n"
            "  -daemon                  detach and log to syslog\n"
            "  -systemd                 take the listening sockets from systemd socket activation\n"
            "  -d, -debug               log to stderr; repeat for more; remembers only 5 old\n"
            "                           names\n"
            "  -relaxed_command_check   allow -kill with live nodes, and -stop\n"
            "                           (or ERL_EPMD_RELAXED_COMMAND_CHECK set to anything)\n"
            "  -packet_timeout Seconds  close a connection idle in mid-request (default 60)\n"
            "  -max_connections N       cap concurrent connections (default: descriptor limit)\n"
            "  -names                   list the names registered with the local epmd\n"
            "  -dump                    dump the local epmd's registry\n"
            "  -kill                    stop the local epmd\n"
            "  -stop Name               unregister Name from the local epmd\n"
            "  --help, --version\n");
}

static int parse_num(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int bad_value(const char *flag, const char *value)
{
    fprintf(stderr, "epmd: invalid value '%s' for %s\n", value, flag);
    return -1;
}

/* Options that take a value. Returns 1 if argv[*i] was one, 0 if not, -1 on error. */
static int parse_valued(int argc, char **argv, int *i)
{
    const char *flag = argv[*i];
    const char *val;
    long v;

    if (strcmp(flag, "-port") && strcmp(flag, "-address") && strcmp(flag, "-packet_timeout") &&
        strcmp(flag, "-max_connections") && strcmp(flag, "-stop"))
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "epmd: %s needs a value\n", flag);
        return -1;
    }
    val = argv[++*i];
    if (strcmp(flag, "-port") == 0) {
        if (parse_num(val, 1, 65535, &v) != 0)
            return bad_value(flag, val);
        opt.cfg.port = (uint16_t)v;
    } else if (strcmp(flag, "-address") == 0) {
        opt.cfg.addresses = val;
    } else if (strcmp(flag, "-packet_timeout") == 0) {
        if (parse_num(val, 1, 86400, &v) != 0)
            return bad_value(flag, val);
        opt.cfg.packet_timeout = (double)v;
    } else if (strcmp(flag, "-max_connections") == 0) {
        if (parse_num(val, 1, INT_MAX, &v) != 0)
            return bad_value(flag, val);
        opt.cfg.max_connections = (size_t)v;
    } else {
        opt.mode = MODE_STOP;
        opt.stop_name = val;
    }
    return 1;
}

/* Returns 0 to go on, or 1 + the exit status to leave with. */
static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = parse_valued(argc, argv, &i);

        if (rc < 0)
            return 1 + 1;
        if (rc > 0)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1 + 0;
        } else if (!strcmp(a, "--version") || !strcmp(a, "-version")) {
            printf("epmd %s\n", PROJECT_VERSION);
            return 1 + 0;
        } else if (!strcmp(a, "-d") || !strcmp(a, "-debug")) {
            opt.cfg.debug++;
        } else if (!strcmp(a, "-daemon")) {
            opt.daemonize = 1;
        } else if (!strcmp(a, "-systemd")) {
            opt.cfg.systemd = 1;
        } else if (!strcmp(a, "-relaxed_command_check")) {
            opt.cfg.relaxed = 1;
        } else if (!strcmp(a, "-names")) {
            opt.mode = MODE_NAMES;
        } else if (!strcmp(a, "-dump")) {
            opt.mode = MODE_DUMP;
        } else if (!strcmp(a, "-kill")) {
            opt.mode = MODE_KILL;
        } else {
            fprintf(stderr, "epmd: unknown option '%s'\n", a);
            usage(stderr);
            return 1 + 1;
        }
    }
    return 0;
}

static int parse_env(void)
{
    const char *port = getenv("ERL_EPMD_PORT");
    long v;

    if (port != NULL && port[0] != '\0') {
        if (parse_num(port, 1, 65535, &v) != 0)
            return bad_value("ERL_EPMD_PORT", port);
        opt.cfg.port = (uint16_t)v;
    }
    opt.cfg.addresses = getenv("ERL_EPMD_ADDRESS");
    if (getenv("ERL_EPMD_RELAXED_COMMAND_CHECK") != NULL)
        opt.cfg.relaxed = 1;
    return 0;
}

/* Lift the soft descriptor limit to the hard one and size the connection cap from it. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    size_t cap;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    cap = rl.rlim_cur > FD_RESERVE * 2 ? (size_t)rl.rlim_cur - FD_RESERVE : FD_RESERVE;
    if (opt.cfg.max_connections == 0 || opt.cfg.max_connections > cap) {
        if (opt.cfg.max_connections > cap)
            epmd_log(EPMD_LOG_ERROR, "-max_connections lowered to %zu, the descriptor limit", cap);
        opt.cfg.max_connections = cap;
    }
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    epmd_log(EPMD_LOG_INFO, "got signal %d - terminating", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static int run_daemon(void)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    struct epmd_server *srv;
    ev_signal sigint, sigterm;
    int err = 0;

    if (loop == NULL) {
        fprintf(stderr, "epmd: cannot start the event loop\n");
        return 1;
    }
    raise_fd_limit();
    srv = epmd_server_new(loop, &opt.cfg, &err);
    if (srv == NULL && err == -EADDRINUSE) {
        /* Erlang's epmd exits 0 here: erl starts one whenever it is unsure. */
        epmd_log(EPMD_LOG_ERROR, "there is already an epmd running on port %u", opt.cfg.port);
        return 0;
    }
    if (srv == NULL) {
        epmd_log(EPMD_LOG_ERROR, "cannot listen on port %u: %s", opt.cfg.port, dist_strerror(err));
        return 1;
    }
    if (opt.daemonize) {
        if (daemon(0, 0) != 0) {
            epmd_log(EPMD_LOG_ERROR, "cannot detach: %s", strerror(errno));
            epmd_server_free(srv);
            return 1;
        }
        ev_loop_fork(loop);
        epmd_log_syslog();
    }
    epmd_log(EPMD_LOG_INFO, "epmd running on port %u, at most %zu connections", opt.cfg.port,
             opt.cfg.max_connections);
    ev_signal_init(&sigint, stop_cb, SIGINT);
    ev_signal_init(&sigterm, stop_cb, SIGTERM);
    ev_signal_start(loop, &sigint);
    ev_signal_start(loop, &sigterm);
    ev_run(loop, 0);
    ev_signal_stop(loop, &sigint);
    ev_signal_stop(loop, &sigterm);
    epmd_server_free(srv);
    ev_loop_destroy(loop);
    return 0;
}

int main(int argc, char **argv)
{
    int rc;

    opt.cfg.port = DIST_EPMD_PORT;
    opt.cfg.packet_timeout = 60;
    opt.cfg.default_lease_ms = EPMD_LEASE_DEFAULT_MS;
    if (parse_env() != 0)
        return 1;
    rc = parse_args(argc, argv);
    if (rc != 0)
        return rc - 1;
    signal(SIGPIPE, SIG_IGN);
    /* Errors always reach stderr; -d adds the registry's story, -d -d every request. */
    epmd_log_init(opt.cfg.debug);
    switch (opt.mode) {
    case MODE_NAMES:
        return epmd_client_names(opt.cfg.port);
    case MODE_DUMP:
        return epmd_client_dump(opt.cfg.port);
    case MODE_KILL:
        return epmd_client_kill(opt.cfg.port);
    case MODE_STOP:
        return epmd_client_stop(opt.cfg.port, opt.stop_name);
    default:
        return run_daemon();
    }
}
