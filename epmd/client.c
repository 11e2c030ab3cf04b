/*
 * client.c: epmd's client modes, -names, -dump, -kill and -stop, which talk to the local
 * daemon and print what Erlang's epmd client prints, with its exit statuses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "epmd.h"

/* A daemon that accepts but never answers must not hang the client forever. */
#define CLIENT_TIMEOUT_S 15

static int connect_to(int family, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connect as Erlang's client does, IPv6 loopback first, and send one request. */
static int call(uint16_t port, const uint8_t *req, size_t len)
{
    int fd = connect_to(AF_INET6, port);

    if (fd < 0)
        fd = connect_to(AF_INET, port);
    if (fd < 0) {
        fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        return -1;
    }
    if (write(fd, req, len) != (ssize_t)len) {
        fprintf(stderr, "epmd: Cannot send request to local epmd\n");
        close(fd);
        return -1;
    }
    return fd;
}

/* Read until n bytes or EOF; returns the count read. */
static size_t read_fill(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* NAMES and DUMP: the port word, then the text as the daemon sent it. */
static int print_listing(uint16_t port, uint8_t tag)
{
    uint8_t req[4], buf[4096], word[4];
    int fd = call(port, req, (size_t)dist_epmd_simple_req_build(req, sizeof(req), tag));
    ssize_t n;

    if (fd < 0)
        return 1;
    if (read_fill(fd, word, 4) != 4) {
        fprintf(stderr, "epmd: no response from local epmd\n");
        close(fd);
        return 1;
    }
    printf("epmd: up and running on port %u with data:\n",
           ((unsigned)word[0] << 24) | ((unsigned)word[1] << 16) | (word[2] << 8) | word[3]);
    for (;;) {
        n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, stdout);
    }
    close(fd);
    return 0;
}

int epmd_client_names(uint16_t port)
{
    return print_listing(port, DIST_EPMD_NAMES_REQ);
}

int epmd_client_dump(uint16_t port)
{
    return print_listing(port, DIST_EPMD_DUMP_REQ);
}

int epmd_client_kill(uint16_t port)
{
    uint8_t req[4], buf[2];
    int fd =
        call(port, req, (size_t)dist_epmd_simple_req_build(req, sizeof(req), DIST_EPMD_KILL_REQ));
    size_t n;

    if (fd < 0)
        return 1;
    n = read_fill(fd, buf, 2);
    close(fd);
    if (n == 2 && memcmp(buf, "OK", 2) == 0) {
        printf("Killed\n");
        return 0;
    }
    printf("Killing not allowed - living nodes in database.\n");
    return 1;
}

int epmd_client_stop(uint16_t port, const char *name)
{
    uint8_t req[DIST_EPMD_BUFSIZE];
    char buf[8];
    int len = dist_epmd_stop_req_build(req, sizeof(req), name, strlen(name));
    int fd;
    size_t n;

    if (len < 0) {
        fprintf(stderr, "epmd: node name too long\n");
        return 1;
    }
    fd = call(port, req, (size_t)len);
    if (fd < 0)
        return 1;
    n = read_fill(fd, (uint8_t *)buf, 7);
    close(fd);
    buf[n] = '\0';
    if (n == 7) {
        printf("%s\n", buf);
        return 0;
    }
    printf("epmd: local epmd responded with <%s>\n", buf);
    return 1;
}
