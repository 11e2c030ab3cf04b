/*
 * listen.c: the daemon's listening sockets, bound the way Erlang's epmd binds them: the IPv4
 * and IPv6 wildcards, or the listed addresses plus both loopbacks, each once; or the sockets
 * systemd passes with -systemd.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "epmd.h"

struct listen_set {
    int *fds;
    int n, max;
};

/* Whether a socket of the set is bound to this address already (a list may repeat one). */
static int set_has(const struct listen_set *set, const struct sockaddr *sa, socklen_t len)
{
    for (int i = 0; i < set->n; i++) {
        struct sockaddr_storage self;
        socklen_t self_len = sizeof(self);

        if (getsockname(set->fds[i], (struct sockaddr *)&self, &self_len) == 0 && self_len == len &&
            memcmp(&self, sa, len) == 0)
            return 1;
    }
    return 0;
}

/* Bind one address; 1 when it is unusable here (no IPv6, say) and was skipped. */
static int listen_on(struct listen_set *set, uint16_t port_no, const char *addr)
{
    struct addrinfo hints = {0}, *ai;
    char port[8];
    int fd, one = 1, rc;

    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", port_no);
    if (getaddrinfo(addr, port, &hints, &ai) != 0) {
        epmd_log(EPMD_LOG_ERROR, "cannot parse address '%s'", addr);
        return -EINVAL;
    }
    if (set_has(set, ai->ai_addr, ai->ai_addrlen) || set->n >= set->max) {
        rc = set->n >= set->max ? -ENOSPC : 0;
        freeaddrinfo(ai);
        return rc;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    rc = fd < 0 ? -errno : 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0)
            rc = -errno;
    }
    /* A host without IPv6 still serves IPv4. */
    if ((rc == -EAFNOSUPPORT || rc == -EADDRNOTAVAIL) && ai->ai_family == AF_INET6)
        rc = 1;
    freeaddrinfo(ai);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    set->fds[set->n++] = fd;
    epmd_log(EPMD_LOG_DEBUG, "listening on %s port %u", addr, port_no);
    return 0;
}

/* -systemd: the listening sockets come from socket activation (LISTEN_PID, LISTEN_FDS). */
static int listen_systemd(struct listen_set *set)
{
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    int n = fds != NULL ? atoi(fds) : 0;

    if (pid == NULL || atol(pid) != (long)getpid() || n <= 0) {
        epmd_log(EPMD_LOG_ERROR, "-systemd: no sockets passed (LISTEN_PID/LISTEN_FDS)");
        return -EINVAL;
    }
    for (int fd = 3; fd < 3 + n && set->n < set->max; fd++) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        set->fds[set->n++] = fd;
    }
    return 0;
}

static int listen_list(struct listen_set *set, const struct epmd_config *cfg)
{
    static const char *const loopbacks[] = {"127.0.0.1", "::1"};
    char list[1024];
    char *save = NULL;
    int rc = 0;

    if (cfg->systemd)
        return listen_systemd(set);
    if (cfg->addresses == NULL || cfg->addresses[0] == '\0') {
        rc = listen_on(set, cfg->port, "0.0.0.0");
        if (rc >= 0)
            rc = listen_on(set, cfg->port, "::");
        return rc;
    }
    if (strlen(cfg->addresses) >= sizeof(list))
        return -EINVAL;
    strcpy(list, cfg->addresses);
    for (char *a = strtok_r(list, ", ", &save); a != NULL && rc >= 0;
         a = strtok_r(NULL, ", ", &save))
        rc = listen_on(set, cfg->port, a);
    for (size_t i = 0; i < 2 && rc >= 0; i++)
        rc = listen_on(set, cfg->port, loopbacks[i]);
    return rc;
}

int epmd_listen_open(const struct epmd_config *cfg, int *fds, int max)
{
    struct listen_set set = {fds, 0, max};
    int rc = listen_list(&set, cfg);

    if (rc >= 0)
        return set.n;
    while (set.n > 0)
        close(fds[--set.n]);
    return rc;
}
