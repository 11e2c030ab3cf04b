#!/usr/bin/env bash
# multihost.sh: three nodes on three "hosts" find each other by name@host, each through the
# epmd on the other's host, on the standard port 4369.
#
#   multihost.sh EPMD EMBED_LIBDIST
#
# The hosts are network namespaces that this script creates, wired to a bridge that lives in a
# fourth namespace of its own, so no interface of the real host is touched:
#
#     mhPID-R-h1 10.77.0.1 eth0 --+
#     mhPID-R-h2 10.77.0.2 eth0 --+-- vethN -- br0  (mhPID-R-br)
#     mhPID-R-h3 10.77.0.3 eth0 --+
#
# (PID is this script's, R a random number.)
# Each host runs our epmd on port 4369 and one node, nN@hostN (embed_libdist); every host's
# /etc/hosts maps host1..host3 to 10.77.0.1..3 (ip netns exec mounts /etc/netns/NS/hosts there,
# which this script writes and removes), so names are resolved as on real hosts. n1 sends to
# n2 and n3, n2 sends to n3, and every node echoes; then n3 is killed with SIGKILL and n1 and n2
# must report it down; then n1 stops gracefully and n2 must see graceful_shutdown.
#
# Needs root (network namespaces, veth, bridge). Exit status: 0 when every check passes, 1
# otherwise, 77 (skip, with a line saying why) when it cannot run here or MULTIHOST_SKIP is set.
# The EXIT trap ends and reaps every process started, then deletes every namespace created,
# whatever happened.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 EPMD EMBED_LIBDIST" >&2
    exit 2
fi
epmd_bin=$1
embed_bin=$2

skip() {
    echo "SKIP: multihost: $*"
    exit 77
}

for bin in "$epmd_bin" "$embed_bin"; do
    if [[ ! -x $bin ]]; then
        echo "FAIL $bin: not an executable"
        exit 1
    fi
done
if [[ -n ${MULTIHOST_SKIP:-} ]]; then
    skip "MULTIHOST_SKIP is set"
fi
if [[ $EUID -ne 0 ]]; then
    skip "needs root to create network namespaces (running as uid $EUID)"
fi
if ! command -v ip >/dev/null 2>&1; then
    skip "the ip command is missing (apt-get install iproute2)"
fi
if ! ip netns list >/dev/null 2>&1; then
    skip "'ip netns' does not work here: $(ip netns list 2>&1 | head -n 1)"
fi

# shellcheck source-path=SCRIPTDIR source=../interop/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../interop/lib.sh"

PREFIX=mh$$-$RANDOM
SUBNET=10.77.0
COOKIE=multihost-$$-$RANDOM$RANDOM
COUNT=3
BR_NS=$PREFIX-br
HOSTS=(1 2 3)
CREATED_NS=()
declare -A EPMD_PID NODE_PID

ns_of() {
    echo "$PREFIX-h$1"
}

node_of() {
    echo "n$1@host$1"
}

# delete_namespaces: ends whatever still runs inside a namespace of ours (a grandchild that
# escaped its process group), then deletes the namespaces, and with them the veths and bridge.
delete_namespaces() {
    local ns pid
    for ns in "${CREATED_NS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for ns in "${CREATED_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null || echo "# could not delete namespace $ns" >&2
        rm -rf "/etc/netns/$ns"
    done
    CREATED_NS=()
}

multihost_cleanup() {
    local status=$?
    set +e
    interop_cleanup
    delete_namespaces
    exit "$status"
}
trap multihost_cleanup EXIT
trap 'fail "multihost: interrupted by a signal"; exit 130' INT TERM

# ---- The network ---------------------------------------------------------------------------

# add_ns NS: creates NS with its own /etc/hosts (localhost, and host1..host3 at their
# addresses) and brings its loopback up; on failure the test cannot run here.
add_ns() {
    local err n
    if ! err=$(ip netns add "$1" 2>&1); then
        skip "cannot create network namespace $1 (needs CAP_SYS_ADMIN): $err"
    fi
    CREATED_NS+=("$1")
    must mkdir -p "/etc/netns/$1" || return 1
    {
        echo "127.0.0.1 localhost"
        for n in "${HOSTS[@]}"; do
            echo "$SUBNET.$n host$n"
        done
    } >"/etc/netns/$1/hosts"
    must ip -n "$1" link set lo up
}

# must CMD...: runs a setup step; when it fails, says which and what it printed.
must() {
    local err
    if ! err=$("$@" 2>&1); then
        fail "network setup: '$*' failed: $err"
        return 1
    fi
}

# add_link N: veth pair from the bridge namespace to host N's eth0, addressed SUBNET.N/24.
add_link() {
    local n=$1 ns err
    ns=$(ns_of "$n")
    if ! err=$(ip -n "$BR_NS" link add "veth$n" type veth peer name eth0 netns "$ns" 2>&1); then
        skip "cannot create a veth pair (no veth support here?): $err"
    fi
    must ip -n "$BR_NS" link set "veth$n" master br0 up &&
        must ip -n "$ns" addr add "$SUBNET.$n/24" dev eth0 &&
        must ip -n "$ns" link set eth0 up
}

make_network() {
    local n err
    add_ns "$BR_NS" || return 1
    for n in "${HOSTS[@]}"; do
        add_ns "$(ns_of "$n")" || return 1
    done
    if ! err=$(ip -n "$BR_NS" link add br0 type bridge 2>&1); then
        skip "cannot create a bridge (no bridge support here?): $err"
    fi
    must ip -n "$BR_NS" link set br0 up || return 1
    for n in "${HOSTS[@]}"; do
        add_link "$n" || return 1
    done
}

# ---- Probes, each bounded by timeout ---------------------------------------------------------

# tcp_open N ADDR PORT: from host N, a TCP connection to ADDR:PORT is accepted.
tcp_open() {
    timeout 2 ip netns exec "$(ns_of "$1")" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null
}

# epmd_names N: what `epmd -names` prints on host N (its own epmd, on 127.0.0.1:4369).
epmd_names() {
    timeout 5 ip netns exec "$(ns_of "$1")" "$epmd_bin" -port 4369 -names 2>&1 || true
}

# names_are N NAME...: epmd on host N lists exactly NAME... (sorted, space separated).
names_are() {
    local n=$1 got want
    shift
    got=$(epmd_names "$n" | sed -n 's/^name \([^ ]*\) at port [0-9]*$/\1/p' | sort | xargs)
    want=$(printf '%s\n' "$@" | sort | xargs)
    [[ $got == "$want" ]]
}

# logged LABEL LINE [COUNT]: LABEL's log holds LINE, exactly, at least COUNT times (default 1).
logged() {
    local n
    n=$(grep -cxF -- "$2" "$INTEROP_TMP/$1.log" 2>/dev/null || true)
    ((${n:-0} >= ${3:-1}))
}

# logged_re LABEL REGEX: LABEL's log has a line matching the extended REGEX.
logged_re() {
    grep -qE -- "$2" "$INTEROP_TMP/$1.log" 2>/dev/null
}

# expect DESCRIPTION SECONDS CMD...: polls CMD (every 0.1s) until it holds or SECONDS pass.
expect() {
    local desc=$1 seconds=$2
    shift 2
    if wait_until $((seconds * 10)) 0.1 "$@"; then
        ok "$desc"
        return 0
    fi
    fail "$desc: not seen within ${seconds}s"
    return 1
}

# ---- Daemons and nodes -----------------------------------------------------------------------

start_epmd() {
    local n=$1
    spawn "$INTEROP_TMP/epmd$n.log" ip netns exec "$(ns_of "$n")" \
        "$epmd_bin" -port 4369 -address "$SUBNET.$n"
    EPMD_PID[$n]=$SPAWNED
}

# start_node N ARGS...: starts nN@SUBNET.N on host N with the shared cookie.
start_node() {
    local n=$1
    shift
    spawn "$INTEROP_TMP/n$n.log" ip netns exec "$(ns_of "$n")" "$embed_bin" \
        --name "$(node_of "$n")" --epmd-port 4369 --cookie "$COOKIE" "$@"
    NODE_PID[$n]=$SPAWNED
}

# node_ready N: waits for nN's ready line.
node_ready() {
    local n=$1
    if ! expect "n$n: ready as $(node_of "$n") on host $n" 20 \
        logged_re "n$n" "^ready name=$(node_of "$n") port=[0-9]+ creation=[1-9][0-9]*\$"; then
        return 1
    fi
}

# ---- The phases ------------------------------------------------------------------------------

phase_network() {
    local n
    make_network || return 1
    ok "network: namespaces $BR_NS and $(ns_of 1)..$(ns_of 3), hosts $SUBNET.1-3 on one bridge"
    for n in "${HOSTS[@]}"; do
        start_epmd "$n"
    done
    for n in "${HOSTS[@]}"; do
        if ! expect "epmd on host $n accepts on 127.0.0.1:4369 and $SUBNET.$n:4369" 10 \
            eval "tcp_open $n 127.0.0.1 4369 && tcp_open $n $SUBNET.$n 4369"; then
            return 1
        fi
    done
    # Across the bridge, each host reaches the others' epmd: the path every lookup takes.
    check "host 1 reaches epmd on $SUBNET.2:4369 and $SUBNET.3:4369" \
        eval "tcp_open 1 $SUBNET.2 4369 && tcp_open 1 $SUBNET.3 4369"
    check "host 2 reaches epmd on $SUBNET.3:4369" tcp_open 2 "$SUBNET.3" 4369
    check "host 1 resolves host2 and host3 to $SUBNET.2 and $SUBNET.3" \
        eval "ip netns exec $(ns_of 1) getent hosts host2 | grep -q '^$SUBNET.2 ' &&
              ip netns exec $(ns_of 1) getent hosts host3 | grep -q '^$SUBNET.3 '"
}

phase_start_nodes() {
    start_node 3 --echo
    node_ready 3 || return 1
    start_node 2 --echo --send-to "$(node_of 3)" --count "$COUNT"
    node_ready 2 || return 1
    start_node 1 --echo --send-to "$(node_of 2)" --send-to "$(node_of 3)" --count "$COUNT"
    node_ready 1 || return 1
    # Each epmd knows only its own host's node: n1 can only have found n2 and n3 by asking the
    # epmd on their hosts.
    for n in "${HOSTS[@]}"; do
        check "epmd on host $n lists only n$n" names_are "$n" "n$n"
    done
}

phase_exchange() {
    local n1 n2 n3 ping='type=embed.Ping len=16' pong='type=embed.Pong len=16'
    n1=$(node_of 1) n2=$(node_of 2) n3=$(node_of 3)
    expect "n1 sees $n2 up" 15 logged n1 "up $n2"
    expect "n1 sees $n3 up" 15 logged n1 "up $n3"
    expect "n2 sees $n1 and $n3 up" 15 eval "logged n2 'up $n1' && logged n2 'up $n3'"
    expect "n3 sees $n1 and $n2 up" 15 eval "logged n3 'up $n1' && logged n3 'up $n2'"
    expect "n1 sent $COUNT pings to each of n2 and n3" 15 \
        eval "logged n1 'sent to=$n2 count=$COUNT' && logged n1 'sent to=$n3 count=$COUNT'"
    expect "n2 got $COUNT pings from n1" 15 logged n2 "recv from=$n1 $ping" "$COUNT"
    expect "n3 got $COUNT pings from n1 and $COUNT from n2" 15 \
        eval "logged n3 'recv from=$n1 $ping' $COUNT && logged n3 'recv from=$n2 $ping' $COUNT"
    expect "n1 got $COUNT echoed pongs from n2 and $COUNT from n3" 15 \
        eval "logged n1 'recv from=$n2 $pong' $COUNT && logged n1 'recv from=$n3 $pong' $COUNT"
    expect "n2 got $COUNT echoed pongs from n3" 15 logged n2 "recv from=$n3 $pong" "$COUNT"
    check "no node reported an error" eval "! grep -h '^error' $INTEROP_TMP/n[123].log"
}

phase_kill_n3() {
    local n1 n2 n3
    n1=$(node_of 1) n2=$(node_of 2) n3=$(node_of 3)
    kill -KILL "${NODE_PID[3]}"
    reap_within 5 "${NODE_PID[3]}" || true
    check "n3 killed with SIGKILL (exit status $REAPED_STATUS)" test "$REAPED_STATUS" = 137
    expect "n1 reports $n3 down" 15 logged_re n1 "^down $n3 [a-z_]+\$"
    expect "n2 reports $n3 down" 15 logged_re n2 "^down $n3 [a-z_]+\$"
    echo "# reasons: $(grep -h "^down $n3 " "$INTEROP_TMP"/n[12].log | paste -sd'|')"
    check "n1 and n2 keep running, still connected to each other" \
        eval "is_running ${NODE_PID[1]} && is_running ${NODE_PID[2]} &&
              ! logged_re n1 '^down $n2 ' && ! logged_re n2 '^down $n1 '"
}

phase_stop() {
    local n1 n
    n1=$(node_of 1)
    kill -TERM "${NODE_PID[1]}"
    reap_within 10 "${NODE_PID[1]}" || true
    check "n1 exits with status 0 on SIGTERM (got $REAPED_STATUS)" test "$REAPED_STATUS" = 0
    expect "n2 reports $n1 down graceful_shutdown" 15 logged n2 "down $n1 graceful_shutdown"
    kill -TERM "${NODE_PID[2]}"
    reap_within 10 "${NODE_PID[2]}" || true
    check "n2 exits with status 0 on SIGTERM (got $REAPED_STATUS)" test "$REAPED_STATUS" = 0
    for n in "${HOSTS[@]}"; do
        end_process "${EPMD_PID[$n]}"
    done
}

# end_all_processes: ends and reaps whatever is still running (after a failed phase).
end_all_processes() {
    local pid
    for pid in "${INTEROP_PIDS[@]}"; do
        end_process "$pid"
    done
}

# sanitizer_clean: under an ASan/UBSan build, no process printed a sanitizer report.
sanitizer_clean() {
    ! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: .*Sanitizer' \
        "$INTEROP_TMP"/*.log
}

echo "# multihost: $epmd_bin and $embed_bin in namespaces $PREFIX-*"
if phase_network && phase_start_nodes; then
    phase_exchange || true
    phase_kill_n3 || true
    phase_stop || true
fi
end_all_processes
check "no sanitizer report from any node or epmd" sanitizer_clean
delete_namespaces
check "no namespace of this test is left" eval "! ip netns list | grep -q '^$PREFIX-' &&
    ! ls -d /etc/netns/$PREFIX-* 2>/dev/null"

if ((INTEROP_FAILURES > 0)); then
    for label in n1 n2 n3 epmd1 epmd2 epmd3; do
        show_log "$label"
    done
    echo "# $INTEROP_FAILURES check(s) failed"
    exit 1
fi
echo "# all checks passed"
