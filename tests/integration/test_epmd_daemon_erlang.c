/*
 * test_epmd_daemon_erlang.c: the epmd daemon's answers to Erlang's own requests: ALIVE2,
 * PORT_PLEASE2, NAMES, DUMP, KILL and STOP, driven over raw loopback sockets.
 *
 * How each test runs the daemon, and where the expected bytes come from: epmd_daemon_util.h.
 */
#include <criterion/criterion.h>

#include "dist.h"
#include "epmd_daemon_util.h"

static const char *const relaxed_flags[] = {"-relaxed_command_check", NULL};

static void start_relaxed(void)
{
    daemon_start(&d, relaxed_flags);
}

TestSuite(epmd_daemon, .timeout = 30);

/* ---- ALIVE2_REQ ---------------------------------------------------------------------------- */

Test(epmd_daemon, alive2_v6_reply_is_x_form_with_time_seeded_creation, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("a", NODE_PORT, 6);
    uint8_t reply[6];
    uint32_t now = (uint32_t)time(NULL);
    int fd = alive2(&n, reply);
    uint32_t creation = get32(reply + 2);

    cr_assert_eq(reply[0], 0x76, "tag %u, expected 'v' (118)", reply[0]);
    cr_assert_eq(reply[1], 0, "result %u", reply[1]);
    cr_assert_geq(creation, 4, "v6 creation %u must never be 0..3", creation);
    cr_assert(creation >= now - 5 && creation <= now + 5,
              "creation %u is not Erlang's time(NULL) + 1 (now %u)", creation, now);
    expect_open(fd, 200, "registered socket");
    cr_assert(is_registered("a"));
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, alive2_v5_reply_is_y_form_with_creation_1_to_3, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("b", NODE_PORT, 5);
    uint8_t reply[6];
    int fd = alive2(&n, reply);
    uint16_t creation = (uint16_t)(reply[2] << 8 | reply[3]);

    cr_assert_eq(reply[0], 0x79, "tag %u, expected 'y' (121)", reply[0]);
    cr_assert_eq(reply[1], 0, "result %u", reply[1]);
    cr_assert(creation >= 1 && creation <= 3, "v5 creation %u not in 1..3", creation);
    expect_open(fd, 200, "registered v5 socket (a 4-byte reply, then nothing)");
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, reregistering_a_remembered_name_continues_its_creation, .init = start_default,
     .fini = stop_daemon)
{
    uint32_t first, second, third;
    int fd = register_node("a", NODE_PORT, &first);

    close(fd);
    cr_assert(wait_unregistered("a"), "closing the socket did not unregister a");
    fd = register_node("a", NODE_PORT, &second);
    close(fd);
    cr_assert(wait_unregistered("a"));
    fd = register_node("a", NODE_PORT, &third);
    cr_assert_eq(second, first + 1, "creations %u then %u", first, second);
    cr_assert_eq(third, second + 1, "creations %u then %u", second, third);
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, reregistering_v5_cycles_through_1_2_3, .init = start_default, .fini = stop_daemon)
{
    struct dist_epmd_node n = node_of("v5node", NODE_PORT, 5);
    uint16_t prev = 0;

    for (int i = 0; i < 4; i++) {
        uint8_t reply[6];
        int fd = alive2(&n, reply);
        uint16_t cr = (uint16_t)(reply[2] << 8 | reply[3]);

        cr_assert_eq(reply[0], 0x79);
        cr_assert_eq(reply[1], 0, "round %d refused", i);
        cr_assert(cr >= 1 && cr <= 3, "v5 creation %u", cr);
        if (prev != 0)
            cr_assert_eq(cr, prev % 3 + 1, "v5 creation %u after %u", cr, prev);
        prev = cr;
        close(fd);
        cr_assert(wait_unregistered("v5node"));
    }
    assert_healthy();
}

Test(epmd_daemon, duplicate_name_gets_result_1_creation_99_and_stays_open, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t dup6[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
    static const uint8_t dup5[] = {0x79, 0x01, 0x00, 0x63};
    struct dist_epmd_node n6 = node_of("a", 1111, 6), n5 = node_of("a", 2222, 5), found;
    uint8_t reply[6], buf[64];
    int owner = register_node("a", NODE_PORT, NULL);
    int fd6 = alive2(&n6, reply);

    assert_bytes(reply, 6, dup6, sizeof(dup6), "duplicate v6");
    expect_open(fd6, 300, "socket after a refused ALIVE2");
    int fd5 = alive2(&n5, reply);
    assert_bytes(reply, 4, dup5, sizeof(dup5), "duplicate v5");
    expect_open(fd5, 100, "socket after a refused v5 ALIVE2");
    cr_assert(lookup("a", &found, buf, sizeof(buf)));
    cr_assert_eq(found.port, NODE_PORT, "the refused ALIVE2 replaced the registration");
    close(fd6);
    close(fd5);
    sleep_ms(50);
    cr_assert(is_registered("a"), "closing a refused socket unregistered the owner");
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, closing_the_registered_socket_unregisters, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t not_found[] = {0x77, 0x01};
    uint8_t buf[64];
    struct dist_epmd_node node;
    int fd = register_node("a", NODE_PORT, NULL);

    cr_assert(lookup("a", &node, buf, sizeof(buf)));
    close(fd);
    cr_assert(wait_unregistered("a"), "a is still registered after its socket closed");
    cr_assert_eq(lookup("a", &node, buf, sizeof(buf)), 0);
    cr_assert_arr_eq(buf, not_found, 2);
    assert_healthy();
}

Test(epmd_daemon, any_byte_on_a_registered_socket_unregisters_it, .init = start_default,
     .fini = stop_daemon)
{
    struct dist_epmd_node again = node_of("b", NODE_PORT, 6);
    int a = register_node("a", NODE_PORT, NULL);
    int b = register_node("b", NODE_PORT, NULL);

    send_raw(a, "!", 1);
    expect_closed_silently(a, 2000, "registered socket after one extra byte");
    cr_assert_not(is_registered("a"), "a still registered after an extra byte");
    /* A second ALIVE2 on the same socket is "more than expected" too. */
    send_alive2(b, &again);
    expect_closed_silently(b, 2000, "registered socket after a second ALIVE2");
    cr_assert_not(is_registered("b"), "b still registered after a second ALIVE2");
    close(a);
    close(b);
    assert_healthy();
}

Test(epmd_daemon, node_type_and_extra_are_stored_and_echoed, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t extra[] = {0x01, 0x02, 0x03};
    static const uint8_t req[] = {0x00, 0x02, 'z', 'c'};
    static const uint8_t want[] = {0x77, 0x00, 0x12, 0x34, 104,  0x00, 0x00, 0x06, 0x00,
                                   0x05, 0x00, 0x01, 'c',  0x00, 0x03, 0x01, 0x02, 0x03};
    struct dist_epmd_node n = node_of("c", 0x1234, 6);
    uint8_t reply[64];
    int fd;

    n.node_type = 104;
    n.extra = extra;
    n.extra_len = sizeof(extra);
    fd = alive2(&n, reply);
    cr_assert_eq(reply[1], 0, "ei-style registration refused");
    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for an ei node");
    close(fd);
    assert_healthy();
}

/* One ALIVE2 with a given name and extra length; returns the reply's result byte. */
static uint8_t alive2_result(const char *name, size_t name_len, size_t extra_len)
{
    static uint8_t extra[DIST_EPMD_MAX_SYMLEN + 8];
    struct dist_epmd_node n = node_of("", NODE_PORT, 6);
    uint8_t reply[6];
    int fd;

    n.name = name;
    n.name_len = name_len;
    n.extra = extra;
    n.extra_len = extra_len;
    fd = alive2(&n, reply);
    close(fd);
    if (reply[1] != 0) {
        static const uint8_t refused[] = {0x76, 0x01, 0x00, 0x00, 0x00, 0x63};
        assert_bytes(reply, 6, refused, sizeof(refused), "refused ALIVE2");
    }
    return reply[1];
}

Test(epmd_daemon, alive2_name_checks_answer_result_1, .init = start_default, .fini = stop_daemon)
{
    char name[2 * 256 + 1];

    memset(name, 'a', 256);
    cr_assert_eq(alive2_result(name, 255, 0), 0, "255 'a' must be accepted");
    cr_assert_eq(alive2_result(name, 256, 0), 1, "256 characters must be refused");
    for (int i = 0; i < 255; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    cr_assert_eq(alive2_result(name, 510, 0), 0, "255 two-byte characters must be accepted");
    cr_assert_eq(alive2_result("\xc3\x28", 2, 0), 1, "invalid UTF-8 must be refused");
    cr_assert_eq(alive2_result("e", 1, DIST_EPMD_MAX_SYMLEN + 1), 1, "Elen 1021 refused");
    cr_assert_eq(alive2_result("f", 1, DIST_EPMD_MAX_SYMLEN), 0, "Elen 1020 accepted");
    assert_healthy();
}

Test(epmd_daemon, malformed_alive2_and_port_please_are_closed_silently, .init = start_default,
     .fini = stop_daemon)
{
    static const struct {
        const char *what;
        uint8_t bytes[20];
        size_t len;
    } cases[] = {
        {"ALIVE2 body of 13 bytes", {0, 13, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 0, 0, 0}, 15},
        {"ALIVE2 Nlen overrun", {0, 14, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 5, 'a', 0, 0}, 16},
        {"ALIVE2 Elen overrun", {0, 14, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 1, 'a', 0, 9}, 16},
        {"ALIVE2 NUL in name", {0, 15, 'x', 0xa0, 0x45, 77, 0, 0, 6, 0, 5, 0, 2, 'a', 0, 0, 0}, 17},
        {"PORT_PLEASE2 empty name", {0, 1, 'z'}, 3},
        {"PORT_PLEASE2 embedded NUL", {0, 4, 'z', 'a', 0, 'b'}, 6},
        {"PORT_PLEASE2 invalid UTF-8", {0, 2, 'z', 0xff}, 4},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        send_expect_silent_close(cases[i].bytes, cases[i].len, cases[i].what);
    assert_healthy();
}

/* ---- PORT_PLEASE2_REQ ---------------------------------------------------------------------- */

Test(epmd_daemon, port_please_found_echoes_registration_and_closes, .init = start_default,
     .fini = stop_daemon)
{
    /* Section 7 of the protocol reference, byte for byte. */
    static const uint8_t alive[] = {0x00, 0x0e, 0x78, 0xa0, 0x45, 0x4d, 0x00, 0x00,
                                    0x06, 0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    static const uint8_t req[] = {0x00, 0x02, 0x7a, 0x61};
    static const uint8_t want[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t reply[64];
    int fd = dial(d.port);

    send_raw(fd, alive, sizeof(alive));
    cr_assert_eq(recv_upto(fd, reply, 6, NULL), 6);
    cr_assert_eq(reply[0], 0x76);
    cr_assert_eq(reply[1], 0x00);
    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for a");
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, port_please_not_found_is_77_01_then_close, .init = start_default,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x07, 'z', 'n', 'o', 's', 'u', 'c', 'h'};
    static const uint8_t want[] = {0x77, 0x01};
    uint8_t reply[64];

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT2_RESP for an unknown name");
    assert_healthy();
}

Test(epmd_daemon, port_please_strips_one_trailing_nul, .init = start_default, .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x03, 'z', 'a', 0x00};
    static const uint8_t want[] = {0x77, 0x00, 0xa0, 0x45, 0x4d, 0x00, 0x00, 0x06,
                                   0x00, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00};
    uint8_t reply[64];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), want, sizeof(want),
                 "PORT_PLEASE2 for \"a\\0\"");
    close(fd);
    assert_healthy();
}

/* ---- NAMES_REQ and DUMP_REQ ---------------------------------------------------------------- */

Test(epmd_daemon, names_empty_is_the_port_word_alone, .init = start_default, .fini = stop_daemon)
{
    expect_names("");
    assert_healthy();
}

Test(epmd_daemon, names_lists_nodes_newest_first, .init = start_default, .fini = stop_daemon)
{
    int a = register_node("a", 41029, NULL);
    int b = register_node("b", 41030, NULL);

    expect_names("name b at port 41030\nname a at port 41029\n");
    close(a);
    close(b);
    assert_healthy();
}

/* line is prefix, a decimal fd, then suffix, and nothing else. */
static int line_matches(const char *line, const char *prefix, const char *suffix)
{
    const char *p = line + strlen(prefix);

    if (strncmp(line, prefix, strlen(prefix)) != 0)
        return 0;
    if (*p == '-')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return strcmp(p, suffix) == 0;
}

Test(epmd_daemon, dump_lists_active_and_old_names_each_nul_terminated, .init = start_default,
     .fini = stop_daemon)
{
    uint8_t reply[512];
    int a = register_node("a", 41029, NULL);
    int b = register_node("b", 41030, NULL);
    size_t n, first;

    close(b);
    cr_assert(wait_unregistered("b"));
    n = tag_req(reply, sizeof(reply) - 1, 'd');
    assert_port_word(reply, n);
    cr_assert_gt(n, 4);
    cr_assert_eq(reply[n - 1], '\0', "the last DUMP line does not end with NUL");
    reply[n] = '\0';
    first = strlen((char *)reply + 4);
    cr_assert_lt(4 + first + 1, n, "only one DUMP line: %s", reply + 4);
    cr_assert(line_matches((char *)reply + 4, "active name     <a> at port 41029, fd = ", "\n"),
              "active line: [%s]", reply + 4);
    cr_assert(
        line_matches((char *)reply + 5 + first, "old/unused name <b>, port = 41030, fd = ", " \n"),
        "old line: [%s]", reply + 5 + first);
    cr_assert_eq(5 + first + strlen((char *)reply + 5 + first) + 1, n, "more than two lines");
    close(a);
    assert_healthy();
}

Test(epmd_daemon, dump_lists_old_names_oldest_first_as_erlang, .init = start_default,
     .fini = stop_daemon)
{
    static const char *const names[] = {"x", "y", "z"};
    uint8_t reply[512];
    size_t n;
    char *text, *px, *py, *pz;

    for (size_t i = 0; i < 3; i++) {
        int fd = register_node(names[i], (uint16_t)(42000 + i), NULL);
        close(fd);
        cr_assert(wait_unregistered(names[i]));
    }
    n = tag_req(reply, sizeof(reply) - 1, 'd');
    assert_port_word(reply, n);
    for (size_t i = 4; i < n; i++)
        reply[i] = reply[i] == '\0' ? '|' : reply[i];
    reply[n] = '\0';
    text = (char *)reply + 4;
    px = strstr(text, "<x>");
    py = strstr(text, "<y>");
    pz = strstr(text, "<z>");
    cr_assert(px && py && pz, "DUMP lacks an old name: %s", text);
    cr_assert(px < py && py < pz, "old names not oldest first: %s", text);
}

Test(epmd_daemon, a_255_character_name_registers_but_is_not_looked_up, .init = start_default,
     .fini = stop_daemon)
{
    char name[256];
    uint8_t req[300];
    int fd, len, q;

    memset(name, 'n', 255);
    name[255] = '\0';
    fd = register_node(name, 43000, NULL);
    name[254] = '\0';
    cr_assert_eq(is_registered(name), 0, "a 254-character lookup found the 255 one");
    name[254] = 'n';
    len = dist_epmd_port2_req_build(req, sizeof(req), name, 255);
    cr_assert_gt(len, 0);
    q = dial(d.port);
    send_raw(q, req, (size_t)len);
    expect_closed_silently(q, 2000, "PORT_PLEASE2 of a 255-character name (Erlang closes)");
    close(q);
    close(fd);
}

/* ---- KILL_REQ and STOP_REQ ----------------------------------------------------------------- */

static void expect_daemon_exit_0(const char *why)
{
    int status = 0;

    cr_assert(wait_exit(d.pid, 3000, &status), "the daemon did not exit after %s", why);
    d.pid = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the daemon ended with wait status 0x%x after %s", status, why);
}

Test(epmd_daemon, kill_with_live_nodes_says_no, .init = start_default, .fini = stop_daemon)
{
    uint8_t reply[16];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "NO", 2, "KILL, live nodes");
    cr_assert(daemon_running(&d), "the daemon exited on a refused KILL");
    cr_assert(is_registered("a"));
    close(fd);
    assert_healthy();
}

Test(epmd_daemon, kill_without_nodes_says_ok_and_exits_0, .init = start_default,
     .fini = stop_daemon)
{
    uint8_t reply[16];

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "OK", 2, "KILL, no nodes");
    expect_daemon_exit_0("KILL");
}

Test(epmd_daemon, strict_stop_closes_without_reply, .init = start_default, .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x02, 's', 'a'};
    int owner = register_node("a", NODE_PORT, NULL);
    int fd = dial(d.port);

    send_raw(fd, req, sizeof(req));
    expect_closed_silently(fd, 2000, "STOP without -relaxed_command_check");
    expect_open(owner, 100, "the node's socket after a refused STOP");
    cr_assert(is_registered("a"), "strict STOP unregistered a");
    close(fd);
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, relaxed_stop_known_name_says_stopped_and_drops_it, .init = start_relaxed,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x02, 's', 'a'};
    uint8_t reply[32];
    int owner = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), "STOPPED", 7,
                 "relaxed STOP a");
    expect_closed_silently(owner, 2000, "the stopped node's socket");
    cr_assert_not(is_registered("a"), "a still registered after STOPPED");
    close(owner);
    assert_healthy();
}

Test(epmd_daemon, relaxed_stop_unknown_name_says_noexiststopped, .init = start_relaxed,
     .fini = stop_daemon)
{
    static const uint8_t req[] = {0x00, 0x06, 's', 'g', 'h', 'o', 's', 't'};
    uint8_t reply[32];

    assert_bytes(reply, exchange(req, sizeof(req), reply, sizeof(reply)), "NOEXISTSTOPPED", 14,
                 "relaxed STOP ghost");
    assert_healthy();
}

Test(epmd_daemon, relaxed_kill_with_live_nodes_says_ok_and_exits_0, .init = start_relaxed,
     .fini = stop_daemon)
{
    uint8_t reply[16];
    int fd = register_node("a", NODE_PORT, NULL);

    assert_bytes(reply, tag_req(reply, sizeof(reply), 'k'), "OK", 2, "relaxed KILL");
    expect_daemon_exit_0("a relaxed KILL");
    close(fd);
}
