/*
 * log.c: the daemon's log, to stderr in the foreground and to syslog with -daemon.
 * The line format follows Erlang's epmd: "epmd: <ctime>: message".
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "epmd.h"

static struct {
    int verbosity;
    int syslog;
} log_opts;

void epmd_log_init(int verbosity)
{
    log_opts.verbosity = verbosity;
}

void epmd_log_syslog(void)
{
    openlog("epmd", LOG_PID, LOG_DAEMON);
    log_opts.syslog = 1;
}

void epmd_log(int level, const char *fmt, ...)
{
    char msg[512];
    char stamp[32];
    time_t now;
    va_list ap;

    if (level > log_opts.verbosity)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_opts.syslog) {
        syslog(level == EPMD_LOG_ERROR ? LOG_ERR : LOG_DEBUG, "%s", msg);
        return;
    }
    now = time(NULL);
    ctime_r(&now, stamp);
    stamp[strcspn(stamp, "\n")] = '\0';
    fprintf(stderr, "epmd: %s: %s\n", stamp, msg);
}
