/*
 * pid.c: PIDs that carry their node: ordering, hashing, and Erlang's <N.ID.SERIAL> text form.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist.h"

int dist_pid_cmp(struct dist_pid a, struct dist_pid b)
{
    if (a.node != b.node)
        return a.node < b.node ? -1 : 1;
    if (a.creation != b.creation)
        return a.creation < b.creation ? -1 : 1;
    if (a.id != b.id)
        return a.id < b.id ? -1 : 1;
    return 0;
}

/* splitmix64's finaliser: every input bit reaches every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t dist_pid_hash(struct dist_pid pid)
{
    return mix64(pid.id ^ mix64(((uint64_t)pid.node << 32) | pid.creation));
}

int dist_pid_format(char *buf, size_t cap, struct dist_pid pid)
{
    int n = snprintf(buf, cap, "<%u.%u.%u>", pid.node, (uint32_t)pid.id, (uint32_t)(pid.id >> 32));

    if (n < 0 || (size_t)n >= cap)
        return DIST_ENOBUFS;
    return n;
}

/* One decimal part that fits 32 bits, ending at @end_char. */
static int parse_part(const char **s, char end_char, uint32_t *out)
{
    const char *p = *s;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
        p++;
    }
    if (*p != end_char)
        return -1;
    *out = (uint32_t)v;
    *s = p + 1;
    return 0;
}

int dist_pid_parse(const char *s, uint32_t creation, struct dist_pid *out)
{
    uint32_t node, id, serial;

    if (s == NULL || *s++ != '<')
        return DIST_EINVAL;
    if (parse_part(&s, '.', &node) != 0 || parse_part(&s, '.', &id) != 0 ||
        parse_part(&s, '>', &serial) != 0 || *s != '\0')
        return DIST_EINVAL;
    out->node = node;
    out->id = ((uint64_t)serial << 32) | id;
    out->creation = creation;
    return 0;
}
