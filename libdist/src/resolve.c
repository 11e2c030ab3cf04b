/*
 * resolve.c: host names resolved off the loop. getaddrinfo() blocks, so each name goes to a
 * detached thread of its own, which signals an eventfd when it is done; the loop and the
 * thread share the job by reference count, and either may end first.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

int dist__resolve_error(int rc)
{
    if (rc == EAI_SYSTEM && errno != 0)
        return -errno;
    return rc == 0 ? 0 : rc == EAI_MEMORY ? -ENOMEM : DIST_ERESOLVE;
}

void dist__resolve_release(struct dist__resolve *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->res != NULL)
        freeaddrinfo(r->res);
    close(r->efd);
    free(r);
}

/* The thread: resolve, publish the result, signal the loop, let go. */
static void *resolve_main(void *arg)
{
    struct dist__resolve *r = arg;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    uint64_t one = 1;

    r->rc = dist__resolve_error(getaddrinfo(r->host, r->port, &hints, &r->res));
    atomic_store_explicit(&r->done, 1, memory_order_release);
    /* A full eventfd counter cannot happen with one write; a failed write leaves the deadline. */
    (void)!write(r->efd, &one, sizeof(one));
    dist__resolve_release(r);
    return NULL;
}

int dist__resolve_start(const char *host, const char *port, struct dist__resolve **out)
{
    size_t len = strlen(host);
    struct dist__resolve *r = calloc(1, sizeof(*r) + len + 1);
    sigset_t all, old;
    pthread_t tid;
    int rc;

    if (r == NULL)
        return -ENOMEM;
    memcpy(r->host, host, len + 1);
    snprintf(r->port, sizeof(r->port), "%s", port);
    atomic_init(&r->refs, 2);
    atomic_init(&r->done, 0);
    r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rc = r->efd < 0 ? errno : 0;
    if (rc == 0) {
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&tid, NULL, resolve_main, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        if (r->efd >= 0)
            close(r->efd);
        free(r);
        return -rc;
    }
    pthread_detach(tid);
    *out = r;
    return 0;
}
