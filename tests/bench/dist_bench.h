/*
 * dist_bench.h: what the dist benchmark's driver (dist_bench.c) and its peer process
 * (dist_bench_peer.c) share: the names of the messages they trade (the exchange is pictured
 * at the top of dist_bench.c), the parsed options, and how each side makes its node.
 */
#ifndef BENCH_DIST_BENCH_H
#define BENCH_DIST_BENCH_H

#include <stdint.h>

#include "dist.h"

#define BENCH_INBOX "bench" /* the name either side sends to at the other's node */

#define T_READY "bench.Ready"
#define T_PING  "bench.Ping"
#define T_PONG  "bench.Pong"
#define T_CALL  "bench.Call"
#define T_REPLY "bench.Reply"
#define T_DATA  "bench.Data"
#define T_LAST  "bench.Last"
#define T_DONE  "bench.Done"
#define T_HELLO "bench.Hello"
#define T_QUIT  "bench.Quit"

/* The options, parsed by main() in dist_bench.c. */
struct bench_opts {
    int json;
    int verbose;
    int insecure;
    int iters;
    double timeout;
    uint16_t epmd_port;
    const char *peer;   /* set in the peer process: its own name */
    const char *driver; /* in the peer process: the driver's name */
};

extern struct bench_opts opt;

/* The options of a node named @name (borrowed): the bench cookie, opt's epmd port and
 * transport, and a log callback that writes to stderr. */
struct dist_node_opts bench_node_opts(const char *name);

/* The peer process (dist_bench_peer.c): run its node until the driver says Quit or goes down.
 * Needs opt.peer and opt.driver. 0, or 1 if the node or its loop could not start; a failed
 * send exits the process with 1. */
int bench_peer_main(void);

#endif /* BENCH_DIST_BENCH_H */
