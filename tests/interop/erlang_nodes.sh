#!/usr/bin/env bash
# erlang_nodes.sh: real Erlang nodes register, resolve and connect through our epmd, and
# Erlang's own epmd client (-names, -dump, -kill, -stop) prints against ours exactly what it
# prints against Erlang's daemon.
#
#   erlang_nodes.sh OUR_EPMD [ERLANG_EPMD]
#
# Strict phase: both daemons with -port P; node a on each; node b pings a through ours and
# stops it over rpc. Relaxed phase: both daemons with -relaxed_command_check, ours given its
# port through ERL_EPMD_PORT only. Everything is on 127.0.0.1 and ports picked at random.
# Exit status: 0 when every check passes, 1 otherwise, 77 (skip) without erl or epmd.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUR_EPMD [ERLANG_EPMD]" >&2
    exit 2
fi
ours=$1
erlang_epmd=${2:-/usr/bin/epmd}

if ! command -v erl >/dev/null 2>&1; then
    echo "SKIP: erl is not installed (apt-get install erlang-nox)"
    exit 77
fi
if [[ ! -x $erlang_epmd ]]; then
    echo "SKIP: Erlang's epmd ($erlang_epmd) is not installed (apt-get install erlang-base)"
    exit 77
fi
if [[ ! -x $ours ]]; then
    echo "FAIL: $ours is not an executable"
    exit 1
fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

unset ERL_EPMD_PORT ERL_EPMD_ADDRESS ERL_EPMD_RELAXED_COMMAND_CHECK
# erl may write ~/.erlang.cookie: keep it out of the real home.
export HOME=$INTEROP_TMP/home
mkdir -p "$HOME"

# cli PORT ARGS...: Erlang's epmd client against 127.0.0.1:PORT, then its exit status.
cli() {
    local port=$1 status=0
    shift
    timeout 10 "$erlang_epmd" -port "$port" "$@" 2>&1 || status=$?
    echo "exit=$status"
}

# normalise PORT: masks what differs between two daemons (their port, the nodes' listening
# ports, fd numbers) and shows DUMP's NUL bytes.
normalise() {
    cat -v | sed -E -e "s/port $1 /port <daemon> /" -e 's/at port [0-9]+/at port <node>/' \
        -e 's/port = [0-9]+/port = <node>/' -e 's/fd = [0-9]+/fd = #/'
}

# compare_cli DESCRIPTION ERLANG_PORT OUR_PORT ARGS...: the client's output and exit status
# against both daemons must be equal. Leaves ours, normalised, in $INTEROP_TMP/cli.ours.
compare_cli() {
    local desc=$1 erl_port=$2 our_port=$3
    shift 3
    cli "$erl_port" "$@" | normalise "$erl_port" >"$INTEROP_TMP/cli.erlang"
    cli "$our_port" "$@" | normalise "$our_port" >"$INTEROP_TMP/cli.ours"
    if cmp -s "$INTEROP_TMP/cli.erlang" "$INTEROP_TMP/cli.ours"; then
        ok "$desc: same as against Erlang's epmd: $(paste -sd'|' "$INTEROP_TMP/cli.ours")"
    else
        fail "$desc: differs from Erlang's epmd (- Erlang's, + ours):"
        diff -u --label erlang --label ours "$INTEROP_TMP/cli.erlang" "$INTEROP_TMP/cli.ours" |
            sed 's/^/    /' || true
    fi
}

# output_is FILE PATTERN: the whole of FILE matches the glob PATTERN.
output_is() {
    # shellcheck disable=SC2053
    [[ $(<"$1") == $2 ]]
}

# listed PORT NAME: epmd -names (Erlang's client) lists NAME. The output is read whole first:
# grep -q quitting early could kill cli with SIGPIPE, and pipefail would report that.
listed() {
    local out
    out=$(cli "$1" -names)
    grep -q "^name $2 at port [0-9]*\$" <<<"$out"
}

not_listed() {
    local out
    out=$(cli "$1" -names)
    [[ $out == *"up and running on port $1 with data:"* && $out != *"name $2 at port"* ]]
}

# start_node LABEL EPMD_PORT NAME [ERL_ARGS...]: spawns a node; NODE_PID is its pid.
start_node() {
    local label=$1 port=$2 name=$3
    shift 3
    spawn "$INTEROP_TMP/$label.log" env ERL_EPMD_PORT="$port" erl -sname "$name" \
        -setcookie c -noshell -start_epmd false -kernel inet_dist_use_interface '{127,0,0,1}' "$@"
    NODE_PID=$SPAWNED
}

# Node b: asks our epmd for names, pings a through it, then stops a over rpc.
NODE_B_SCRIPT='[_, Host] = string:split(atom_to_list(node()), "@"),
A = list_to_atom("a@" ++ Host),
io:format("names ~0p~n", [net_adm:names()]),
io:format("ping ~0p~n", [net_adm:ping(A)]),
io:format("stop ~0p~n", [rpc:call(A, init, stop, [])]),
halt().'

# check_node_b LOG: the checks on what node b printed.
check_node_b() {
    local log=$1
    check "net_adm:names() from node b lists a" grep -q '^names {ok,\[.*{"a",[0-9]*}' "$log"
    check "net_adm:names() from node b lists b itself" grep -q '^names {ok,\[.*{"b",[0-9]*}' "$log"
    check "node b: net_adm:ping(a@host) through our epmd gives pong" grep -qx 'ping pong' "$log"
    check "node b: rpc:call(a, init, stop, []) gives ok" grep -qx 'stop ok' "$log"
}

# start_pair PHASE ERLANG_CMD... -- OUR_CMD...: sets ERL_PID/ERL_PORT and OUR_PID/OUR_PORT.
start_pair() {
    local phase=$1 split
    shift
    for ((split = 1; split <= $#; split++)); do
        [[ ${!split} == -- ]] && break
    done
    if ! start_daemon "erlang-$phase" "${@:1:split-1}"; then
        fail "$phase: Erlang's epmd started and accepts connections"
        show_log "erlang-$phase"
        return 1
    fi
    ERL_PID=$DAEMON_PID
    ERL_PORT=$DAEMON_PORT
    if ! start_daemon "ours-$phase" "${@:split+1}"; then
        fail "$phase: our epmd started and accepts connections (${*:split+1})"
        show_log "ours-$phase"
        return 1
    fi
    OUR_PID=$DAEMON_PID
    OUR_PORT=$DAEMON_PORT
    ok "$phase: both daemons accept connections (Erlang's on $ERL_PORT, ours on $OUR_PORT)"
}

# start_nodes_a PHASE: node a against each daemon, polled until registered.
start_nodes_a() {
    start_node "a-erlang-$1" "$ERL_PORT" a
    A_ERL=$NODE_PID
    start_node "a-ours-$1" "$OUR_PORT" a
    A_OURS=$NODE_PID
    if ! wait_until 100 0.1 listed "$ERL_PORT" a; then
        fail "$1: node a registers with Erlang's epmd"
        show_log "a-erlang-$1"
        return 1
    fi
    if ! wait_until 100 0.1 listed "$OUR_PORT" a; then
        fail "$1: node a registers with our epmd: epmd -names lists a"
        show_log "a-ours-$1"
        show_log "ours-$1"
        return 1
    fi
    ok "$1: node a registers with our epmd: epmd -names lists a"
}

# kill_both: epmd -kill on an empty database; both daemons must exit with status 0.
kill_both() {
    compare_cli "$1: epmd -kill" "$ERL_PORT" "$OUR_PORT" -kill
    check "$1: our epmd answers -kill with 'Killed', exit=0" \
        output_is "$INTEROP_TMP/cli.ours" $'Killed\nexit=0'

    reap_within 5 "$ERL_PID" || true
    check "$1: Erlang's epmd exits with status 0 after -kill" test "$REAPED_STATUS" = 0
    reap_within 5 "$OUR_PID" || true
    check "$1: our epmd exits with status 0 after -kill (got $REAPED_STATUS)" \
        test "$REAPED_STATUS" = 0
}

strict_phase() {
    start_pair strict "$erlang_epmd" -port @PORT@ -address 127.0.0.1 \
        -- "$ours" -port @PORT@ -address 127.0.0.1 || return 0
    start_nodes_a strict || return 0

    compare_cli "strict: epmd -names" "$ERL_PORT" "$OUR_PORT" -names
    compare_cli "strict: epmd -dump" "$ERL_PORT" "$OUR_PORT" -dump
    compare_cli "strict: epmd -kill with node a living" "$ERL_PORT" "$OUR_PORT" -kill
    check "strict: our epmd refuses -kill: 'Killing not allowed - living nodes in database.'" \
        output_is "$INTEROP_TMP/cli.ours" \
        $'Killing not allowed - living nodes in database.\nexit=[1-9]*'
    compare_cli "strict: epmd -stop a" "$ERL_PORT" "$OUR_PORT" -stop a
    check "strict: a is still listed after -stop a" listed "$OUR_PORT" a
    check "strict: our epmd is still running after -kill and -stop" is_running "$OUR_PID"

    start_node b-strict "$OUR_PORT" b -eval "$NODE_B_SCRIPT"
    NODE_B_PID=$NODE_PID
    if ! reap_within 30 "$NODE_B_PID"; then
        fail "strict: node b finished within 30s"
        end_process "$NODE_B_PID"
    fi
    check_node_b "$INTEROP_TMP/b-strict.log"
    check "strict: node a exits after init:stop()" reap_within 15 "$A_OURS"
    check "strict: a disappears from epmd -names" wait_until 50 0.1 not_listed "$OUR_PORT" a
    check "strict: b disappears from epmd -names once halted" \
        wait_until 50 0.1 not_listed "$OUR_PORT" b
    if ((INTEROP_FAILURES > 0)); then
        show_log b-strict
        show_log a-ours-strict
    fi

    end_process "$A_ERL"
    check "strict: a disappears from Erlang's epmd" wait_until 50 0.1 not_listed "$ERL_PORT" a
    kill_both strict
}

relaxed_phase() {
    start_pair relaxed "$erlang_epmd" -port @PORT@ -address 127.0.0.1 -relaxed_command_check \
        -- env ERL_EPMD_PORT=@PORT@ "$ours" -address 127.0.0.1 -relaxed_command_check ||
        return 0
    ok "relaxed: our epmd listens on the port given by ERL_EPMD_PORT"
    start_nodes_a relaxed || return 0

    compare_cli "relaxed: epmd -stop nosuch" "$ERL_PORT" "$OUR_PORT" -stop nosuch
    compare_cli "relaxed: epmd -stop a" "$ERL_PORT" "$OUR_PORT" -stop a
    check "relaxed: our epmd answers -stop a with STOPPED, exit=0" \
        output_is "$INTEROP_TMP/cli.ours" $'STOPPED\nexit=0'
    check "relaxed: a disappears from epmd -names after -stop" \
        wait_until 50 0.1 not_listed "$OUR_PORT" a
    check "relaxed: node a keeps running after -stop" is_running "$A_OURS"
    compare_cli "relaxed: epmd -names after -stop" "$ERL_PORT" "$OUR_PORT" -names
    kill_both relaxed
    end_process "$A_ERL"
    end_process "$A_OURS"
}

echo "# erlang_nodes: $(timeout 20 erl -noshell -eval \
    'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().') against $ours"
strict_phase
relaxed_phase

if ((INTEROP_FAILURES > 0)); then
    echo "# $INTEROP_FAILURES check(s) failed"
    exit 1
fi
echo "# all checks passed"
