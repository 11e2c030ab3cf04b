# lib.sh: helpers shared by the interop scripts, sourced by them (never run on its own).
#
# Every process a script starts goes through spawn, in its own process group, and is recorded;
# the EXIT trap ends and reaps whatever is still recorded, so a failing or interrupted run
# leaves nothing behind. Every wait is a poll bounded in tries and in time.
#
#   spawn LOG CMD...              start CMD in the background; SPAWNED = its pid
#   start_daemon LABEL CMD...     spawn an epmd on a free port (@PORT@ in CMD is replaced)
#                                 and poll until it accepts; DAEMON_PID, DAEMON_PORT
#   reap_within SECONDS PID       wait for PID to exit; REAPED_STATUS = status or "running"
#   end_process PID               TERM, then KILL, the process group of PID, and reap it
#
# shellcheck shell=bash
# SPAWNED, DAEMON_PID, DAEMON_PORT and REAPED_STATUS are results for the sourcing script.
# shellcheck disable=SC2034

INTEROP_PIDS=()
INTEROP_FAILURES=0
INTEROP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/interop.XXXXXX")

ok() {
    printf 'ok   %s\n' "$*"
}

fail() {
    printf 'FAIL %s\n' "$*"
    INTEROP_FAILURES=$((INTEROP_FAILURES + 1))
}

# check DESCRIPTION CMD...: ok when CMD succeeds, FAIL otherwise.
check() {
    local desc=$1
    shift
    if "$@"; then
        ok "$desc"
    else
        fail "$desc"
    fi
}

# is_running PID: true while PID exists and is not a zombie.
is_running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

has_exited() {
    ! is_running "$1"
}

# wait_until TRIES DELAY CMD...: runs CMD until it succeeds, at most TRIES times.
wait_until() {
    local tries=$1 delay=$2 i
    shift 2
    for ((i = 0; i < tries; i++)); do
        if "$@"; then
            return 0
        fi
        sleep "$delay"
    done
    return 1
}

forget_pid() {
    local pid keep=()
    for pid in "${INTEROP_PIDS[@]}"; do
        if [[ $pid != "$1" ]]; then
            keep+=("$pid")
        fi
    done
    INTEROP_PIDS=("${keep[@]}")
}

spawn() {
    local log=$1
    shift
    # In a script, a background child is not a group leader, so setsid does not fork:
    # SPAWNED is the command itself, and the leader of a group of its own.
    setsid "$@" >"$log" 2>&1 </dev/null &
    SPAWNED=$!
    INTEROP_PIDS+=("$SPAWNED")
}

reap_within() {
    local seconds=$1 pid=$2 status=0
    if ! wait_until $((seconds * 20)) 0.05 has_exited "$pid"; then
        REAPED_STATUS=running
        return 1
    fi
    wait "$pid" 2>/dev/null || status=$?
    forget_pid "$pid"
    REAPED_STATUS=$status
}

# signal_group SIG PID: signals the process group led by PID, or PID alone if it leads none.
signal_group() {
    local stat pgid
    stat=$(cat "/proc/$2/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    read -r _ _ pgid _ <<<"$stat"
    if [[ $pgid == "$2" ]]; then
        kill "-$1" -- "-$2" 2>/dev/null || true
    else
        kill "-$1" "$2" 2>/dev/null || true
    fi
}

end_process() {
    local pid=$1
    if is_running "$pid"; then
        signal_group TERM "$pid"
        if ! wait_until 40 0.05 has_exited "$pid"; then
            signal_group KILL "$pid"
        fi
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

interop_cleanup() {
    local pid
    for pid in "${INTEROP_PIDS[@]}"; do
        end_process "$pid"
    done
    rm -rf "$INTEROP_TMP"
}

trap interop_cleanup EXIT
trap 'exit 130' INT TERM

# port_free PORT: true when nothing accepts connections on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port: prints a port that is free now, below Linux's ephemeral range (32768 and up)
# where the Erlang nodes' own listeners land.
pick_port() {
    local i port
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 12000))
        if port_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

start_daemon() {
    local label=$1 attempt i port
    shift
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=$(pick_port) || return 1
        spawn "$INTEROP_TMP/$label.log" "${@//@PORT@/$port}"
        # epmd exits at once, with status 0, when its port is taken: then try another one.
        for ((i = 0; i < 100; i++)); do
            if ! is_running "$SPAWNED"; then
                break
            fi
            if ! port_free "$port"; then
                DAEMON_PID=$SPAWNED
                DAEMON_PORT=$port
                return 0
            fi
            sleep 0.05
        done
        end_process "$SPAWNED"
    done
    return 1
}

# show_log LABEL: prints a daemon's or a node's log, indented, after a failure.
show_log() {
    local file=$INTEROP_TMP/$1.log
    if [[ -s $file ]]; then
        echo "    --- $1 log (last 20 lines) ---"
        tail -n 20 "$file" | cat -v | sed 's/^/    /'
    fi
}
