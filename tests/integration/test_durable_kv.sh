#!/usr/bin/env bash
# test_durable_kv.sh KV_BINARY: the durable_kv example does what the README says: values
# survive kill -9 (every key printed "stored" is there afterwards), a second writer on the
# directory is refused, a corrupt data.mdb stops it with a message naming the file, and bad
# input exits non-zero. Prints "ok <what>" or "FAIL <what>"; exits non-zero on any failure.
set -uo pipefail

kv_bin=$1
dir=$(mktemp -d "${JOURNAL_TEST_DIR:-/var/tmp}/test-durable-kv.XXXXXX")
load_pid=""
failed=0

cleanup() {
    if [[ -n "$load_pid" ]]; then
        kill -KILL "$load_pid" 2>/dev/null
        wait "$load_pid" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

check() {
    if [[ "$1" == 0 ]]; then
        echo "ok   $2"
    else
        echo "FAIL $2"
        failed=1
    fi
}

kv() {
    "$kv_bin" --dir "$dir/kv" "$@"
}

kv set greeting hello >/dev/null
check $? "set succeeds"
[[ "$(kv get greeting)" == hello ]]
check $? "get returns the value"
kv get missing 2>/dev/null
[[ $? == 1 ]]
check $? "get of a missing key exits 1"
kv frobnicate 2>/dev/null
[[ $? == 2 ]]
check $? "an unknown command exits 2"
"$kv_bin" set a b 2>/dev/null
[[ $? == 2 ]]
check $? "a missing --dir exits 2"

# kill -9 in the middle of a load: every key it printed as stored must be there.
# The binary itself in the background (not the kv function, whose subshell would take the KILL).
"$kv_bin" --dir "$dir/kv" load 1000000 >"$dir/load.out" 2>&1 &
load_pid=$!
for ((i = 0; i < 200; i++)); do
    [[ $(wc -l <"$dir/load.out") -ge 20 ]] && break
    sleep 0.05
done
kv set other value >/dev/null 2>"$dir/second.err"
status=$?
[[ $status == 1 ]] && grep -q "in use" "$dir/second.err"
check $? "a second writer on the directory is refused"
kill -KILL "$load_pid"
wait "$load_pid" 2>/dev/null
load_pid=""
stored=$(grep -c '^stored ' "$dir/load.out")
last=$(grep '^stored ' "$dir/load.out" | tail -n 1 | cut -d' ' -f2)
[[ $stored -ge 20 ]]
check $? "the load stored keys before the kill ($stored)"
[[ -n "$last" && "$(kv get "$last" 2>&1)" == "value-${last#key-}" ]]
check $? "the last key printed before kill -9 is there ($last)"
count=$(kv count 2>"$dir/count.err") || cat "$dir/count.err" >&2
[[ $count -ge $((stored + 1)) ]]
check $? "count after the kill ($count) covers every stored key ($stored) and greeting"

printf 'not an lmdb file at all' >"$dir/kv/data.mdb"
kv count >/dev/null 2>"$dir/corrupt.err"
status=$?
[[ $status == 1 ]] && grep -q "$dir/kv/data.mdb" "$dir/corrupt.err"
check $? "a corrupt data.mdb stops it with a message naming the file"

exit "$failed"
