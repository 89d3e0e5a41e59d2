#!/usr/bin/env bash
# Our server against a hand-written one and a threaded Python one, on this
# machine, in one go: builds the examples, starts each server on a free port
# (waiting for its `listening on ADDR` line), drives each with the load
# generator (every reply checked), and prints messages/s and the ratios.
#
#   scripts/compare.sh            # the comparison (a minute or two on 2 cores)
#   scripts/compare.sh --sweep    # then round trips/s against connections,
#                                 # written to $OUT/sweep.tsv for scripts/plot.py
#
# Servers, all with 16-byte messages:
#   line framing:  `server --framing line` (ours) and `baseline_server`, the
#                  forty-line hand-written one;
#   chunk framing: `server --framing chunk` (ours) and, where python3 exists,
#                  tests/python/threaded_server.py: the original, threaded, in
#                  its own protocol (each recv(1024) is a message).
#
# Knobs (environment): ROUNDS (3; the median is shown), SIZE (16 bytes),
# PIPE_MESSAGES (3000000), PIPE_WINDOW (256), PING_CONNECTIONS (16),
# PING_MESSAGES (5000 per connection), PY_SCALE (10: Python gets 1/10 of
# the messages, it is that much slower), SWEEP ("1 2 4 8 16 32 64"),
# OUT ($CARGO_TARGET_DIR/compare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-16}
PIPE_MESSAGES=${PIPE_MESSAGES:-3000000}
PIPE_WINDOW=${PIPE_WINDOW:-256}
PING_CONNECTIONS=${PING_CONNECTIONS:-16}
PING_MESSAGES=${PING_MESSAGES:-5000}
PY_SCALE=${PY_SCALE:-10}
SWEEP=${SWEEP:-1 2 4 8 16 32 64}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$CARGO_TARGET_DIR/compare}
sweep=false
[[ ${1:-} == --sweep ]] && sweep=true

echo "==> building (release)"
cargo build --release --quiet --example server --example baseline_server --example loadgen
bin=$CARGO_TARGET_DIR/release/examples
mkdir -p "$OUT"
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# start NAME CMD...: starts a server, waits for `listening on HOST:PORT`,
# and records its port in PORT[NAME].
declare -A PORT
start() {
    local name=$1 line=
    shift
    mkfifo "$tmp/$name"
    "$@" >"$tmp/$name" 2>&1 &
    pids+=($!)
    exec {fd}<"$tmp/$name"
    while IFS= read -r -t 60 -u "$fd" line; do
        [[ $line == "listening on "* ]] && break
        echo "    $name: $line"
    done
    if [[ $line != "listening on "* ]]; then
        echo "error: $name did not print 'listening on ADDR'" >&2
        exit 1
    fi
    # Keep reading its output so that it never blocks on a full pipe.
    cat <&"$fd" >"$OUT/$name.log" &
    exec {fd}<&-
    PORT[$name]=${line##*:}
    echo "    $name listening on port ${PORT[$name]}"
}

echo "==> starting the servers"
quiet=()
"$bin/server" --help | grep -q -- '--quiet' && quiet=(--quiet)
start ours_line "$bin/server" --framing line --stamp ctime --port 0 "${quiet[@]}"
start ours_chunk "$bin/server" --framing chunk --stamp ctime --port 0 "${quiet[@]}"
start baseline_line "$bin/baseline_server" --port 0
others=(baseline_line)
if command -v python3 >/dev/null; then
    start python_chunk python3 tests/python/threaded_server.py 127.0.0.1 0
    others+=(python_chunk)
else
    echo "    SKIPPED: python3 not found, no Python server in the comparison"
fi

# load SERVER CONNECTIONS WINDOW MESSAGES: prints the loadgen's result fields.
load() {
    local server=$1 connections=$2 window=$3 messages=$4
    [[ $server == python* ]] && messages=$(((messages + PY_SCALE - 1) / PY_SCALE))
    "$bin/loadgen" --port "${PORT[$server]}" --framing "${server#*_}" --size "$SIZE" \
        --connections "$connections" --window "$window" --messages "$messages" 2>/dev/null |
        sed -n 's/^result: //p'
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
num() { if [[ -n $1 ]]; then printf '%.0f' "$1"; else printf -- '-'; fi; }

scenarios=(pipelined pingpong)
declare -A TITLE=(
    [pipelined]="pipelined, 1 connection, window $PIPE_WINDOW"
    [pingpong]="ping-pong, $PING_CONNECTIONS connections"
)
run() { # SCENARIO SERVER: one loadgen run, appended to $OUT/runs.tsv
    local scenario=$1 server=$2 result
    case $scenario in
        pipelined) result=$(load "$server" 1 "$PIPE_WINDOW" "$PIPE_MESSAGES") ;;
        pingpong) result=$(load "$server" "$PING_CONNECTIONS" 1 "$PING_MESSAGES") ;;
    esac
    if [[ -z $result || $(field failed_connections "$result") != 0 ]]; then
        echo "error: loadgen failed against $server ($scenario)" >&2
        exit 1
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$(field msgs_per_s "$result")" \
        "$(field p50_us "$result")" "$(field p99_us "$result")" >>"$OUT/runs.tsv"
    printf '    %-10s %-14s %12.0f msg/s  p50 %8s us  p99 %8s us\n' "$scenario" "$server" \
        "$(field msgs_per_s "$result")" "$(field p50_us "$result")" "$(field p99_us "$result")"
}

echo "==> driving them: $ROUNDS rounds, $SIZE-byte messages, every reply checked"
: >"$OUT/runs.tsv"
for round in $(seq "$ROUNDS"); do
    echo "  round $round"
    for scenario in "${scenarios[@]}"; do
        # Ours right before the server it is compared with, in every round.
        for other in "${others[@]}"; do
            run "$scenario" "ours_${other#*_}"
            run "$scenario" "$other"
        done
    done
done

# The median of the rounds, per scenario and server.
stat() { awk -F'\t' -v s="$1" -v n="$2" -v c="$3" '$1 == s && $2 == n {print $c}' "$OUT/runs.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

echo
echo "==> results: median of $ROUNDS rounds; messages/s on this machine ($(nproc) cores) and ratios"
printf '%-38s %-6s %12s %12s %8s  %s\n' scenario framing ours other ratio "p50 / p99 us (ours; other)"
for scenario in "${scenarios[@]}"; do
    for other in "${others[@]}"; do
        framing=${other#*_} ours=ours_${other#*_}
        a=$(stat "$scenario" "$ours" 3) b=$(stat "$scenario" "$other" 3)
        printf '%-38s %-6s %12s %12s %8s  %s / %s; %s / %s  (other: %s)\n' "${TITLE[$scenario]}" "$framing" \
            "$(num "$a")" "$(num "$b")" "$(ratio "$a" "$b")" \
            "$(stat "$scenario" "$ours" 4)" "$(stat "$scenario" "$ours" 5)" \
            "$(stat "$scenario" "$other" 4)" "$(stat "$scenario" "$other" 5)" "${other%_*}"
    done
done
echo "(every run: $OUT/runs.tsv)"

if $sweep; then
    echo
    echo "==> sweep: ping-pong round trips/s against connections ($SWEEP), line framing"
    printf 'server\tconnections\tmsgs_per_s\tp50_us\tp99_us\n' >"$OUT/sweep.tsv"
    for connections in $SWEEP; do
        for server in ours_line baseline_line; do
            # About the same number of messages at every width.
            messages=$((PING_MESSAGES * PING_CONNECTIONS / connections))
            result=$(load "$server" "$connections" 1 "$messages")
            printf '%s\t%s\t%s\t%s\t%s\n' "${server%_*}" "$connections" "$(field msgs_per_s "$result")" \
                "$(field p50_us "$result")" "$(field p99_us "$result")" | tee -a "$OUT/sweep.tsv"
        done
    done
    echo "(written: $OUT/sweep.tsv; plot: python3 scripts/plot.py $OUT/sweep.tsv > docs/throughput.svg)"
fi
