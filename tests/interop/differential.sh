#!/usr/bin/env bash
# differential.sh: runs the same raw probe sequence against Erlang's epmd and ours, and diffs.
#
#   differential.sh OUR_EPMD EPMD_PROBE [ERLANG_EPMD]
#
# For each sequence (strict, then relaxed) it starts both daemons on free loopback ports with
# the same options, runs epmd_probe against both at once, appends each daemon's exit status
# (both sequences end with a KILL), and diffs the two transcripts. Passing Erlang's epmd as
# OUR_EPMD checks the probe's masking: two Erlang daemons must give identical transcripts.
# Exit status: 0 when they match, 1 on any difference, 77 (skip) without Erlang's epmd.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 OUR_EPMD EPMD_PROBE [ERLANG_EPMD]" >&2
    exit 2
fi
ours=$1
probe=$2
erlang_epmd=${3:-/usr/bin/epmd}

if [[ ! -x $erlang_epmd ]]; then
    echo "SKIP: Erlang's epmd ($erlang_epmd) is not installed (apt-get install erlang-base)"
    exit 77
fi
for bin in "$ours" "$probe"; do
    if [[ ! -x $bin ]]; then
        echo "FAIL: $bin is not an executable"
        exit 1
    fi
done

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The daemons must see nothing but their command line.
unset ERL_EPMD_PORT ERL_EPMD_ADDRESS ERL_EPMD_RELAXED_COMMAND_CHECK

# finish_daemon PID TRANSCRIPT: the sequence ended with a KILL, so the daemon should exit.
finish_daemon() {
    if reap_within 3 "$1"; then
        echo "# daemon exit status: $REAPED_STATUS" >>"$2"
    else
        echo "# daemon still running 3s after the sequence" >>"$2"
        end_process "$1"
    fi
}

# run_sequence SEQUENCE DAEMON_OPTION...
run_sequence() {
    local seq=$1 erl_pid erl_port our_pid our_port probe_erl probe_ours
    shift
    local opts=(-port @PORT@ -address 127.0.0.1 -packet_timeout 1 "$@")
    local t_erl=$INTEROP_TMP/$seq.erlang t_ours=$INTEROP_TMP/$seq.ours

    if ! start_daemon "erlang-$seq" "$erlang_epmd" "${opts[@]}"; then
        fail "$seq: Erlang's epmd did not start"
        show_log "erlang-$seq"
        return
    fi
    erl_pid=$DAEMON_PID
    erl_port=$DAEMON_PORT
    if ! start_daemon "ours-$seq" "$ours" "${opts[@]}"; then
        fail "$seq: our epmd did not start (${opts[*]})"
        show_log "ours-$seq"
        end_process "$erl_pid"
        return
    fi
    our_pid=$DAEMON_PID
    our_port=$DAEMON_PORT

    spawn "$t_erl" "$probe" "$erl_port" "$seq"
    probe_erl=$SPAWNED
    spawn "$t_ours" "$probe" "$our_port" "$seq"
    probe_ours=$SPAWNED
    reap_within 40 "$probe_erl" || true
    if [[ $REAPED_STATUS != 0 ]]; then
        fail "$seq: the probe against Erlang's epmd ended with status $REAPED_STATUS"
    fi
    reap_within 40 "$probe_ours" || true
    if [[ $REAPED_STATUS != 0 ]]; then
        fail "$seq: the probe against our epmd ended with status $REAPED_STATUS"
    fi
    finish_daemon "$erl_pid" "$t_erl"
    finish_daemon "$our_pid" "$t_ours"

    if diff -u --label "Erlang's epmd ($seq)" --label "our epmd ($seq)" "$t_erl" "$t_ours" \
        >"$INTEROP_TMP/$seq.diff"; then
        ok "$seq sequence: transcripts identical ($(grep -c '^## ' "$t_erl") steps)"
    else
        fail "$seq sequence: transcripts differ (- Erlang's epmd, + ours):"
        cat "$INTEROP_TMP/$seq.diff"
        show_log "ours-$seq"
    fi
}

echo "# differential: Erlang's $erlang_epmd against $ours"
run_sequence strict
run_sequence relaxed -relaxed_command_check

if ((INTEROP_FAILURES > 0)); then
    echo "# $INTEROP_FAILURES check(s) failed"
    exit 1
fi
echo "# all checks passed"
