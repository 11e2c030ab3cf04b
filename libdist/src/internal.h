/*
 * internal.h: libdist's private helpers, shared between its source files.
 */
#ifndef DIST_INTERNAL_H
#define DIST_INTERNAL_H

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

#endif /* DIST_INTERNAL_H */
