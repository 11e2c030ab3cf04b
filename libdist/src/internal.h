/*
 * internal.h: libdist's private helpers, shared between its source files.
 */
#ifndef DIST_INTERNAL_H
#define DIST_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dist.h"

/*
 * From within a lookup's callback: the address its epmd answered at, with @port in place of
 * epmd's: where a node whose host is a name listens. Returns 0, or DIST_ERESOLVE when the
 * lookup has no connection (epmd_client.c).
 */
int dist__epmd_lookup_peer(const struct dist_epmd_lookup *q, uint16_t port,
                           struct sockaddr_storage *ss, socklen_t *len);

static inline uint16_t dist__get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t dist__get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint8_t *dist__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *dist__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

/* ---- resolve.c: a host name resolved on a thread of its own, off the loop ---- */

struct addrinfo;

/* One resolution, shared by the loop and the thread. */
struct dist__resolve {
    atomic_int refs; /* one for the loop, one for the thread */
    atomic_int done; /* set (release) once rc and res are written */
    int efd;         /* eventfd the thread signals when it is done */
    int rc;          /* 0, or why getaddrinfo() failed (errno is this thread's) */
    struct addrinfo *res;
    char port[8];
    char host[];
};

/* Map a getaddrinfo() failure onto our codes: 0, -errno, -ENOMEM or DIST_ERESOLVE. */
int dist__resolve_error(int rc);

/*
 * Start resolving @host:@port on a detached thread, which leaves every signal to the loop's.
 * Once r->efd is readable, r->done is set and r->rc and r->res hold the result. Returns 0, or
 * -ENOMEM or -errno (no eventfd, no thread).
 */
int dist__resolve_start(const char *host, const char *port, struct dist__resolve **out);

/* The loop's side lets go of @r; whichever side is last frees it. */
void dist__resolve_release(struct dist__resolve *r);

#endif /* DIST_INTERNAL_H */
