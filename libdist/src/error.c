/*
 * error.c: names and messages for libdist's error codes and for negated errno values.
 */
#include <errno.h>
#include <string.h>

#include "dist.h"

const char *dist_strerror(int err)
{
    switch (err) {
#define DIST_ERR_MSG_(name, value, msg)                                                            \
    case DIST_##name:                                                                              \
        return msg;
        DIST_ERR_MAP(DIST_ERR_MSG_)
#undef DIST_ERR_MSG_
    default:
        break;
    }
    /* glibc names only the errno values it knows; others are unknown to us too. */
    if (err < 0 && err > -4096 && strerrorname_np(-err) != NULL)
        return strerror(-err);
    return "unknown error";
}

const char *dist_err_name(int err)
{
    switch (err) {
#define DIST_ERR_NAME_(name, value, msg)                                                           \
    case DIST_##name:                                                                              \
        return "DIST_" #name;
        DIST_ERR_MAP(DIST_ERR_NAME_)
#undef DIST_ERR_NAME_
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        const char *name = strerrorname_np(-err);
        if (name != NULL)
            return name;
    }
    return "UNKNOWN";
}
