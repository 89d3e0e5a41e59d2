#!/usr/bin/env bash
# The hostile suite: the release server example attacked from outside, each
# attack measured against its defence's bound. Prints PASS/FAIL lines and
# the figures; exits non-zero if any attack got through.
#
#   scripts/hostile.sh          # everything (about a minute: two attacks wait out 30 s timeouts)
#   FAST=1 scripts/hostile.sh   # the timeout attacks against 2 s timeouts instead of the defaults
#   RUNTIME=tokio scripts/hostile.sh  # TCP and Unix served by the tokio runner (`--runtime tokio`)
#                                     # instead of the thread runner (UDP has one server either way)
#
# 1. hoard: 2000 silent connections against the default server (chunk
#    framing), then 1000 silent + 1000 trickling (line framing), then 2000
#    silent against a server allowed 1024 descriptors (`ulimit -n 1024`, a
#    common default, below --max-connections once the server's own are
#    counted), then 2000 silent against a server allowed 300 tasks (a pids
#    cgroup, as systemd's TasksMax sets; needs root, SKIPPED otherwise); a
#    new client must get its reply within 1 s (from 127.0.0.3 when probed
#    within the grace and under the descriptor and task limits, where the
#    hoarders' own newcomers are refused).
# 2. trickle / no-read: a message trickled a byte every 200 ms is cut at
#    --message-timeout; a client that never reads at --write-timeout.
# 3. inject: terminal escapes, CR, a forged log line, invalid UTF-8 and a
#    bidi override reach the log escaped, one line each.
# 4. blocked stdout: the server's stdout is a pipe nobody reads; clients are
#    still served, and SIGTERM ends it within the shutdown deadline.
# 5. unix: the socket path is replaced by a regular file while the server
#    runs; SIGTERM still stops it, and the file is left alone.
# 6. settings: absurd flag values are refused with a message, never a panic.
# 7. logging cost: pipelined messages/s of the default (logging) server
#    against --quiet, same run, median of ROUNDS (3); with taskset and 2+
#    cores the server (its log thread too) runs on CPU 0 and the load
#    generator on CPU 1, as in scripts/compare.sh, so that they do not
#    compete for one CPU by chance.
# 8. udp: datagrams shaped like replies go unanswered; one source flooding
#    gets at most its rate limit while another source is still served; a
#    datagram forged to come from the server itself (raw socket: needs root,
#    SKIPPED otherwise) is dropped, not answered for ever.
# 9. fairness per source: one address (127.0.0.2) against the others, default
#    flags: 1,030 active connections (a one-byte message every 0.25 s each,
#    chunk framing), then silent ones reopened as soon as closed (about 2,000
#    connects a second), then 20,000 opened and held against a server allowed
#    256 descriptors (two attacking processes of 10,000, each raising its own
#    limit). New clients from 127.0.0.3 must be answered within 1 s (5 of 5,
#    40 of 40 in the storm), and an interactive client from 127.0.0.4,
#    connected before the attack, must keep its connection and get every
#    line answered (1 s apart, then 2.5 s apart under churn).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
ROUNDS=${ROUNDS:-3}
FAST=${FAST:-0}
RUNTIME=${RUNTIME:-threads}
runtime=(--runtime "$RUNTIME")
echo "==> TCP and Unix served by the $RUNTIME runner"
for tool in bc mkfifo timeout; do
    command -v "$tool" >/dev/null || { echo "error: scripts/hostile.sh needs $tool" >&2; exit 1; }
done

echo "==> building (release)"
cargo build --release --quiet --example server --example hostile --example loadgen --example client
bin=$CARGO_TARGET_DIR/release/examples
tmp=$(mktemp -d)
pids=()
failed=0
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL $*"; failed=1; }
server_cpu=() client_cpu=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
fi
pass() { echo "PASS $*"; }

# start NAME ARGS...: starts the server with its stdout in $tmp/NAME.log,
# waits for `listening on ADDR`, sets PORT and PID. With NOFILE=N, the
# server may open N file descriptors (`ulimit -n N`); with CGROUP=DIR, it
# runs in that cgroup; with PIN=1, it runs on CPU 0 (see 7.).
start() {
    local name=$1 line=
    shift
    mkfifo "$tmp/$name.fifo"
    [[ " $* " == *" --udp "* ]] || set -- "${runtime[@]}" "$@"
    local cpu=()
    [[ ${PIN:-0} == 1 ]] && cpu=("${server_cpu[@]}")
    if [[ -n ${NOFILE:-} ]]; then
        (ulimit -n "$NOFILE" && exec "${cpu[@]}" "$bin/server" "$@") >"$tmp/$name.fifo" 2>&1 &
    elif [[ -n ${CGROUP:-} ]]; then
        (echo "$BASHPID" >"$CGROUP/cgroup.procs" && exec "${cpu[@]}" "$bin/server" "$@") >"$tmp/$name.fifo" 2>&1 &
    else
        "${cpu[@]}" "$bin/server" "$@" >"$tmp/$name.fifo" 2>&1 &
    fi
    PID=$!
    pids+=("$PID")
    exec {fd}<"$tmp/$name.fifo"
    IFS= read -r -t 30 -u "$fd" line || true
    [[ $line == "listening on "* ]] || { echo "error: $name: $line" >&2; exit 1; }
    cat <&"$fd" >"$tmp/$name.log" &
    exec {fd}<&-
    PORT=${line##*:}
    PORT=${PORT%% *} # `listening on ADDR (udp)`
}

# stop PID: SIGTERM; TOOK is the seconds it took to exit.
stop() {
    local started=$EPOCHREALTIME
    kill -TERM "$1"
    wait "$1" || true
    TOOK=$(echo "$EPOCHREALTIME - $started" | bc)
}

echo "==> 1. hoard: silent and trickling connections, default flags"
start hoard_chunk --port 0
"$bin/hostile" --port "$PORT" hoard --silent 2000 || failed=1
stop "$PID"
tail -n 1 "$tmp/hoard_chunk.log"
start hoard_line --port 0 --framing line
# Probed the moment the last hoarder has connected, before any is past the
# grace: a newcomer from the hoarders' own address would be refused at once
# (fairness per source); the new clients come from another address.
"$bin/hostile" --port "$PORT" --framing line hoard --silent 1000 --trickle 1000 --hold 0 --probe-from 127.0.0.3 || failed=1
stop "$PID"
tail -n 1 "$tmp/hoard_line.log"
NOFILE=1024 start hoard_fds --port 0
# Out of descriptors, the hoarders' own newcomers are refused (fairness per
# source): the new clients come from another address.
"$bin/hostile" --port "$PORT" hoard --silent 2000 --probe-from 127.0.0.3 || failed=1
stop "$PID"
echo "$(grep -c '^\.\.\.accept failed' "$tmp/hoard_fds.log") accept failures logged; $(tail -n 1 "$tmp/hoard_fds.log")"
cgroup=/sys/fs/cgroup/pids/stamp-echo-hostile-$$
if mkdir "$cgroup" 2>/dev/null && echo 300 >"$cgroup/pids.max"; then
    CGROUP=$cgroup start hoard_tasks --port 0
    "$bin/hostile" --port "$PORT" hoard --silent 2000 --probe-from 127.0.0.3 || failed=1
    stop "$PID"
    echo "$(grep -c 'cannot start a thread' "$tmp/hoard_tasks.log") thread starts failed; $(tail -n 1 "$tmp/hoard_tasks.log")"
    rmdir "$cgroup" || true
else
    rmdir "$cgroup" 2>/dev/null || true
    echo "SKIPPED hoard under a task limit: no writable pids cgroup (cgroup v1, root) here"
fi

echo "==> 2. trickle and no-read"
if [[ $FAST == 1 ]]; then
    limits=(--message-timeout 2 --write-timeout 2) bound=4
else
    limits=() bound=35
fi
start slow --port 0 --framing line "${limits[@]}"
"$bin/hostile" --port "$PORT" --framing line trickle --bound "$bound" >"$tmp/trickle.out" &
trickler=$!
"$bin/hostile" --port "$PORT" --framing line no-read --bound "$bound" || failed=1
wait "$trickler" || failed=1
cat "$tmp/trickle.out"
stop "$PID"
grep 'ended:' "$tmp/slow.log" || true

echo "==> 3. inject: hostile bytes in the log"
start inject --port 0
"$bin/hostile" --port "$PORT" inject || failed=1
stop "$PID"
if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/inject.log"; then
    fail "inject: raw control bytes reached the log"
elif grep -q '^\.\.\.connected from: 10\.0\.0\.1:1' "$tmp/inject.log"; then
    fail "inject: a forged log line"
else
    pass "inject: $(grep -c '^date= ' "$tmp/inject.log") message lines, all escaped, e.g.: $(grep -m1 'connected from: 10' "$tmp/inject.log")"
fi

echo "==> 4. blocked stdout"
mkfifo "$tmp/blocked.fifo"
"$bin/server" "${runtime[@]}" --port 0 --framing line --log-rate 1000000 --shutdown-deadline 2 >"$tmp/blocked.fifo" 2>"$tmp/blocked.err" &
PID=$!
pids+=("$PID")
exec {blocked}<"$tmp/blocked.fifo"
IFS= read -r -u "$blocked" line
PORT=${line##*:}
# Nobody reads the pipe from now on: fill it with log lines, then measure.
"$bin/loadgen" --port "$PORT" --framing line --messages 200000 --window 64 --timeout 10 >/dev/null
if result=$("$bin/loadgen" --port "$PORT" --framing line --connections 4 --messages 20000 --timeout 5 | grep '^result:'); then
    pass "blocked stdout: still serving: $result"
else
    fail "blocked stdout: clients not served"
fi
stop "$PID"
took=$TOOK
exec {blocked}<&-
if (($(echo "$took < 2.5" | bc))); then
    pass "blocked stdout: SIGTERM ended it in ${took}s (shutdown deadline 2 s, the log's last lines included)"
else
    fail "blocked stdout: SIGTERM took ${took}s"
fi

echo "==> 5. unix: the path replaced while the server runs"
sock=$tmp/echo.sock
start unix --unix "$sock" --quiet
mv "$sock" "$tmp/moved.sock"
echo "not a socket" >"$sock"
stop "$PID"
took=$TOOK
if [[ $(cat "$sock") == "not a socket" ]] && (($(echo "$took < 2" | bc))); then
    pass "unix: SIGTERM ended it in ${took}s, the file now at the path left alone: $(grep -c . "$tmp/unix.log") lines"
else
    fail "unix: took ${took}s, or the file at the path was touched"
fi

echo "==> 6. settings: absurd values are refused, never a panic"
bad=(
    "--shutdown-deadline 1e19" "--shutdown-deadline=-1" "--shutdown-deadline nan"
    "--buffer-size 100000000000" "--buffer-size 0" "--framing line --max-line 0" "--framing length --max-frame 0"
    "--max-connections 0" "--max-connections 100000000" "--idle-timeout 1e19" "--message-timeout 1e-9"
    "--write-timeout inf" "--eviction-grace 1e12" "--backlog 0" "--backlog 100000" "--log-rate=-1"
    "--max-per-source 0" "--max-per-source 100000000"
)
for flags in "${bad[@]}"; do
    # shellcheck disable=SC2086
    set +e
    out=$(timeout 5 "$bin/server" "${runtime[@]}" --port 0 $flags 2>&1 </dev/null)
    status=$?
    set -e
    if ((status == 1 || status == 2)) && [[ $out == *invalid* || $out == *error* ]]; then
        pass "settings: $flags: $(echo "$out" | head -n 1)"
    else
        fail "settings: $flags: status $status: $out"
    fi
done

echo "==> 7. logging cost: default (logging) server against --quiet, pipelined"
rates() {
    local rates=()
    for _ in $(seq "$ROUNDS"); do
        for mode in quiet logging; do
            if [[ $mode == quiet ]]; then PIN=1 start "rate_$mode$RANDOM" --port 0 --framing line --quiet
            else PIN=1 start "rate_$mode$RANDOM" --port 0 --framing line; fi
            r=$("${client_cpu[@]}" "$bin/loadgen" --port "$PORT" --framing line --window 256 --messages 3000000 | sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
            stop "$PID"
            echo "$mode $r"
        done
    done
}
rates >"$tmp/rates"
median() { grep "^$1 " "$tmp/rates" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
quiet=$(median quiet) logging=$(median logging)
ratio=$(echo "scale=3; $logging / $quiet" | bc)
msg="logging cost: --quiet $quiet msg/s, default $logging msg/s (medians of $ROUNDS): ratio $ratio (target >= 0.9)"
if (($(echo "$ratio >= 0.9" | bc))); then pass "$msg"; else fail "$msg"; fi

echo "==> 8. udp: reflection, flood, forged self-source"
# stopped LOG: the server's last line, its counts.
stopped() { grep '^stopped: ' "$tmp/$1.log" || echo "no counts in $1.log"; }
start udp_reflect --udp --port 0
"$bin/hostile" --port "$PORT" udp-reflect || failed=1
stop "$PID"
counts=$(stopped udp_reflect)
echo "server: $counts"
if [[ $counts == *" 1 answered, 0 errors,"* ]]; then
    pass "udp-reflect: only the normal message answered"
else
    fail "udp-reflect: the server answered more than the normal message: $counts"
fi
start udp_flood --udp --port 0
"$bin/hostile" --port "$PORT" udp-flood --seconds 2 --rate 100 --burst 100 || failed=1
stop "$PID"
echo "server: $(stopped udp_flood)"
start udp_forge --udp --port 0
set +e
"$bin/hostile" --port "$PORT" udp-forge
status=$?
set -e
stop "$PID"
counts=$(stopped udp_forge)
if ((status == 3)); then
    echo "SKIPPED udp-forge: not run (needs root or CAP_NET_RAW); server: $counts"
elif ((status != 0)); then
    fail "udp-forge: the server did not answer a normal message after the forged one; server: $counts"
elif [[ $counts == "stopped: 2 datagrams, 1 answered, 0 errors, 1 dropped (1 own address),"* ]]; then
    pass "udp-forge: the forged self-source datagram dropped, 0 replies to itself: $counts"
else
    fail "udp-forge: $counts"
fi

echo "==> 9. fairness per source: one address against the others"
# counts LOG: the server's evicted and refused counts, from its last line.
counts() { tail -n 1 "$tmp/$1.log" | grep -o '[0-9]* evicted.*' || echo "no counts in $1.log"; }
start fair_active --port 0
"$bin/hostile" --port "$PORT" hoard-active || failed=1
stop "$PID"
echo "server: $(counts fair_active)"
start fair_churn --port 0
"$bin/hostile" --port "$PORT" churn --lines 5 --pause 2.5 || failed=1
stop "$PID"
echo "server: $(counts fair_churn)"
NOFILE=256 start fair_storm --port 0
# One process may not be allowed 20,000 descriptors: two attackers of 10,000
# from the same address, each at its hard limit.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=30000
(ulimit -n "$hard" && exec "$bin/hostile" --port "$PORT" storm --connections 10000 --probes 0 --linger 5) >"$tmp/storm_helper.out" 2>&1 &
helper=$!
pids+=("$helper")
(ulimit -n "$hard" && exec "$bin/hostile" --port "$PORT" storm --connections 10000 --linger 5) || failed=1
wait "$helper" || failed=1
cat "$tmp/storm_helper.out"
stop "$PID"
echo "server: $(grep -c '^\.\.\.accept failed' "$tmp/fair_storm.log") accept failures logged; $(counts fair_storm)"

if ((failed)); then
    echo "==> some attacks got through"
    exit 1
fi
echo "==> every attack held"
