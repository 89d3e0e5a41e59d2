#!/usr/bin/env bash
# Our server against a hand-written one and a threaded Python one, on this
# machine, in one go: builds the examples, starts each server on a free port
# (waiting for its `listening on ADDR` line), drives each with the load
# generator (every reply checked), and prints messages/s and the ratios.
#
#   scripts/compare.sh            # the comparison (a minute or two on 2 cores)
#   scripts/compare.sh --runtimes # the runtimes instead: the tokio runner
#                                 # against the thread runner and an idiomatic
#                                 # tokio server (examples/tokio_baseline_server)
#   scripts/compare.sh --cpu      # instead: server CPU per message against
#                                 # a minimal C epoll server (scripts/reference/
#                                 # epoll_echo.c), CPU_MESSAGES pipelined lines
#                                 # over CPU_CONNECTIONS connections, for the
#                                 # thread and tokio runners, --quiet and with
#                                 # the default log: ns/message and the ratio
#                                 # to the reference in the same round
#   scripts/compare.sh --sweep    # then two sweeps for scripts/plot.py (with
#                                 # --runtimes too: the three runtime servers):
#       $OUT/sweep_connections.tsv: ping-pong round trips/s against connections
#       $OUT/sweep_size.tsv: pipelined MB/s of messages against message size
#
# Servers, all with 16-byte messages:
#   line framing:  `server --framing line` (ours) and `baseline_server`, the
#                  forty-line hand-written one;
#   chunk framing: `server --framing chunk` (ours) and, where python3 exists,
#                  tests/python/threaded_server.py: the original, threaded, in
#                  its own protocol (each recv(1024) is a message).
#
# Besides messages/s, each run's server CPU time per message is shown (from
# /proc/PID/stat, 10 ms ticks): on a busy shared machine it is steadier than
# throughput, and in ping-pong, where both servers make the same two system
# calls per message and wake-ups dominate, it shows the work each one does.
#
# With taskset and 2+ cores, the servers run on CPU 0 and the load generator
# on CPU 1, like two machines (PIN=0 to let the scheduler place them).
#
# Knobs (environment): ROUNDS (3; the median is shown), SIZE (16 bytes),
# PIPE_MESSAGES (3000000), PIPE_WINDOW (256), PING_CONNECTIONS (16),
# PING_MESSAGES (5000 per connection), PY_SCALE (1; N gives Python 1/N of
# the messages, should it be much slower), SWEEP ("1 2 4 8 16 32 64"),
# SIZES ("16 64 256 1024 4096 16384 65536"), SWEEP_BYTES (512000000: bytes of
# messages per run of the size sweep, at most PIPE_MESSAGES messages),
# CPU_MESSAGES (12000000, in all), CPU_CONNECTIONS (4) and BEFORE (unset; an
# older stamp-echo binary to measure beside this one) for --cpu,
# OUT ($CARGO_TARGET_DIR/compare), HOGS (0: with N, N busy loops compete for
# every CPU while the servers are driven, as on a busy shared machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-16}
PIPE_MESSAGES=${PIPE_MESSAGES:-3000000}
PIPE_WINDOW=${PIPE_WINDOW:-256}
PING_CONNECTIONS=${PING_CONNECTIONS:-16}
PING_MESSAGES=${PING_MESSAGES:-5000}
PY_SCALE=${PY_SCALE:-1}
SWEEP=${SWEEP:-1 2 4 8 16 32 64}
SIZES=${SIZES:-16 64 256 1024 4096 16384 65536}
SWEEP_BYTES=${SWEEP_BYTES:-512000000}
PIN=${PIN:-1}
HOGS=${HOGS:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$CARGO_TARGET_DIR/compare}
CPU_MESSAGES=${CPU_MESSAGES:-12000000}
CPU_CONNECTIONS=${CPU_CONNECTIONS:-4}
sweep=false runtimes=false cpu=false
for arg in "$@"; do
    [[ $arg == --sweep ]] && sweep=true
    [[ $arg == --runtimes ]] && runtimes=true
    [[ $arg == --cpu ]] && cpu=true
done

echo "==> building (release)"
cargo build --release --quiet --bin stamp-echo --example baseline_server --example tokio_baseline_server
bin=$CARGO_TARGET_DIR/release/examples
# The reference for --cpu: plain C, built here, not part of the library.
reference=$CARGO_TARGET_DIR/release/epoll_echo
if $cpu; then
    cc -O2 -pthread -o "$reference" scripts/reference/epoll_echo.c
fi
# Ours and the load generator: `stamp-echo serve` and `stamp-echo load`.
se=$CARGO_TARGET_DIR/release/stamp-echo
server_cpu=() client_cpu=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_cpu=(taskset -c 0) client_cpu=(taskset -c 1)
    echo "    servers pinned to CPU 0, the load generator to CPU 1"
fi
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
# and records its port in PORT[NAME] and its process in PID[NAME].
declare -A PORT PID
start() {
    local name=$1 line=
    shift
    mkfifo "$tmp/$name"
    "${server_cpu[@]}" "$@" >"$tmp/$name" 2>&1 &
    pids+=($!)
    PID[$name]=$!
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
"$se" serve --help | grep -q -- '--quiet' && quiet=(--quiet)
# pairs: "A B" compares A against B; order: the servers driven, in order.
if $cpu; then
    # Names: *q are --quiet, *log log as `stamp-echo serve` does by default.
    start reference_line "$reference" --port 0
    for runtime in threads tokio; do
        start "${runtime}q_line" "$se" serve --runtime "$runtime" --framing line --stamp ctime --port 0 "${quiet[@]}"
        start "${runtime}log_line" "$se" serve --runtime "$runtime" --framing line --stamp ctime --port 0
    done
    order=(reference_line threadsq_line tokioq_line threadslog_line tokiolog_line)
    # BEFORE=path/to/an/older/stamp-echo: the same four servers run by it too
    # (names ending in 0), for before and after in the same rounds.
    if [[ -n ${BEFORE:-} ]]; then
        for runtime in threads tokio; do
            start "${runtime}q0_line" "$BEFORE" serve --runtime "$runtime" --framing line --stamp ctime --port 0 "${quiet[@]}"
            start "${runtime}log0_line" "$BEFORE" serve --runtime "$runtime" --framing line --stamp ctime --port 0
        done
        order+=(threadsq0_line tokioq0_line threadslog0_line tokiolog0_line)
    fi
elif $runtimes; then
    start threads_line "$se" serve --runtime threads --framing line --stamp ctime --port 0 "${quiet[@]}"
    start tokio_line "$se" serve --runtime tokio --framing line --stamp ctime --port 0 "${quiet[@]}"
    start idiomatic_line "$bin/tokio_baseline_server" --port 0
    pairs=("tokio_line threads_line" "tokio_line idiomatic_line")
    order=(threads_line tokio_line idiomatic_line)
    swept=("${order[@]}")
else
    start ours_line "$se" serve --framing line --stamp ctime --port 0 "${quiet[@]}"
    start ours_chunk "$se" serve --framing chunk --stamp ctime --port 0 "${quiet[@]}"
    start baseline_line "$bin/baseline_server" --port 0
    others=(baseline_line)
    if command -v python3 >/dev/null; then
        start python_chunk python3 tests/python/threaded_server.py 127.0.0.1 0
        others+=(python_chunk)
    else
        echo "    SKIPPED: python3 not found, no Python server in the comparison"
    fi
    pairs=() order=() swept=(ours_line "${others[@]}")
    # Ours right before the server it is compared with, in every round.
    for other in "${others[@]}"; do
        pairs+=("ours_${other#*_} $other")
        order+=("ours_${other#*_}" "$other")
    done
fi

if ((HOGS > 0)); then
    for _ in $(seq "$HOGS"); do
        (while :; do :; done) &
        pids+=($!)
    done
    echo "    $HOGS busy loops compete for the CPUs (HOGS=$HOGS)"
fi

# cpu_ticks NAME: the server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/${PID[$1]}/stat"; }
user_ticks() { awk '{print $14}' "/proc/${PID[$1]}/stat"; }

# load SERVER CONNECTIONS WINDOW MESSAGES [SIZE]: prints the loadgen's result
# fields, and the server's CPU microseconds per message as cpu_us=.
load() {
    local server=$1 connections=$2 window=$3 messages=$4 size=${5:-$SIZE} before after result
    [[ $server == python* ]] && messages=$(((messages + PY_SCALE - 1) / PY_SCALE))
    before=$(cpu_ticks "$server")
    result=$("${client_cpu[@]}" "$se" load --port "${PORT[$server]}" --framing "${server#*_}" \
        --size "$size" --connections "$connections" --window "$window" --messages "$messages" 2>/dev/null |
        sed -n 's/^result: //p')
    after=$(cpu_ticks "$server")
    [[ -n $result ]] && echo "$result cpu_us=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        -v n="$messages" -v c="$connections" 'BEGIN {printf "%.3f", t / hz * 1e6 / (n * c)}')"
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
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$server" "$(field msgs_per_s "$result")" \
        "$(field p50_us "$result")" "$(field p99_us "$result")" "$(field cpu_us "$result")" >>"$OUT/runs.tsv"
    printf '    %-10s %-14s %12.0f msg/s  p50 %8s us  p99 %8s us  server CPU %6s us/msg\n' "$scenario" \
        "$server" "$(field msgs_per_s "$result")" "$(field p50_us "$result")" "$(field p99_us "$result")" \
        "$(field cpu_us "$result")"
}

if $cpu; then
    per=$(((CPU_MESSAGES + CPU_CONNECTIONS - 1) / CPU_CONNECTIONS))
    echo "==> CPU per message: $ROUNDS rounds of $((per * CPU_CONNECTIONS)) pipelined $SIZE-byte lines" \
        "($CPU_CONNECTIONS connections, window $PIPE_WINDOW), every reply checked; uptime:$(uptime | sed 's/.*load/ load/')"
    : >"$OUT/cpu.tsv"
    for round in $(seq "$ROUNDS"); do
        for server in "${order[@]}"; do
            user=$(user_ticks "$server")
            result=$(load "$server" "$CPU_CONNECTIONS" "$PIPE_WINDOW" "$per")
            if [[ -z $result || $(field failed_connections "$result") != 0 ]]; then
                echo "error: loadgen failed against $server" >&2
                exit 1
            fi
            ns=$(awk -v u="$(field cpu_us "$result")" 'BEGIN {printf "%.1f", u * 1000}')
            user=$(awk -v t=$(($(user_ticks "$server") - user)) -v hz="$(getconf CLK_TCK)" -v n=$((per * CPU_CONNECTIONS)) \
                'BEGIN {printf "%.1f", t / hz * 1e9 / n}')
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$ns" "$(field msgs_per_s "$result")" "$user" >>"$OUT/cpu.tsv"
            printf '    round %s  %-16s %7s ns/msg (user %6s)  %12.0f msg/s\n' "$round" "${server%_line}" "$ns" "$user" \
                "$(field msgs_per_s "$result")"
        done
    done
    echo
    echo "==> server CPU per message (utime+stime from /proc/PID/stat; user: utime alone), median of $ROUNDS rounds;" \
        "ratio: to the reference in the same round (median; every round's)"
    printf '%-12s %9s %12s %9s  %s\n' server "ns/msg" "ratio" "user ns" "rounds"
    for server in "${order[@]}"; do
        awk -F'\t' -v s="$server" '
            function sort(a, n,   i, j, t) {
                for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) {t = a[j]; a[j] = a[j - 1]; a[j - 1] = t}
            }
            $2 == "reference_line" {ref[$1] = $3}
            $2 == s {ns[$1] = $3; us[$1] = $5; rounds[++n] = $1}
            END {
                for (i = 1; i <= n; i++) {
                    r = rounds[i]; v[i] = ns[r]; u[i] = us[r]; q[i] = (ref[r] > 0) ? ns[r] / ref[r] : 0
                    each = each sprintf("%s%.2fx", i > 1 ? " " : "", q[i])
                }
                sort(v, n); sort(q, n); sort(u, n)
                m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
                mq = (n % 2) ? q[(n + 1) / 2] : (q[n / 2] + q[n / 2 + 1]) / 2
                mu = (n % 2) ? u[(n + 1) / 2] : (u[n / 2] + u[n / 2 + 1]) / 2
                printf "%-12s %9.1f %11.2fx %9.1f  %s\n", substr(s, 1, length(s) - 5), m, mq, mu, each
            }' "$OUT/cpu.tsv"
    done
    echo "(threadsq, tokioq: --quiet; threadslog, tokiolog: the default log; ...0: BEFORE's; every round: $OUT/cpu.tsv)"
    exit 0
fi

echo "==> driving them: $ROUNDS rounds, $SIZE-byte messages, every reply checked"
: >"$OUT/runs.tsv"
for round in $(seq "$ROUNDS"); do
    echo "  round $round"
    for scenario in "${scenarios[@]}"; do
        for server in "${order[@]}"; do
            run "$scenario" "$server"
        done
    done
done

# The median of the rounds, per scenario and server.
stat() { awk -F'\t' -v s="$1" -v n="$2" -v c="$3" '$1 == s && $2 == n {print $c}' "$OUT/runs.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

echo
echo "==> results: median of $ROUNDS rounds; messages/s and server CPU per message on this machine" \
    "($(nproc) cores), and ratios (ours against the other)"
printf '%-38s %-6s %-9s %-9s %11s %11s %7s  %15s %7s  %s\n' scenario framing ours other "ours msg/s" \
    "other msg/s" ratio "CPU us/msg" "CPU" "p50 / p99 us (ours; other)"
for scenario in "${scenarios[@]}"; do
    for pair in "${pairs[@]}"; do
        ours=${pair% *} other=${pair#* }
        framing=${other#*_}
        a=$(stat "$scenario" "$ours" 3) b=$(stat "$scenario" "$other" 3)
        ca=$(stat "$scenario" "$ours" 6) cb=$(stat "$scenario" "$other" 6)
        printf '%-38s %-6s %-9s %-9s %11s %11s %7s  %15s %7s  %s / %s; %s / %s\n' "${TITLE[$scenario]}" \
            "$framing" "${ours%_*}" "${other%_*}" "$(num "$a")" "$(num "$b")" "$(ratio "$a" "$b")" "$ca / $cb" "$(ratio "$cb" "$ca")" \
            "$(stat "$scenario" "$ours" 4)" "$(stat "$scenario" "$ours" 5)" \
            "$(stat "$scenario" "$other" 4)" "$(stat "$scenario" "$other" 5)"
    done
done
echo "(ratio: ours/other messages/s; CPU: other/ours CPU per message, above 1 when ours does less work)"
echo "(every run: $OUT/runs.tsv)"

# sweep NAME X_NAME Y_NAME VALUES CMD: runs `CMD SERVER X` for every X in
# VALUES and every server, ROUNDS times interleaved, and writes the median
# of each point's Y_NAME to $OUT/sweep_NAME.tsv (every run beside it, .runs).
sweep() {
    local name=$1 x_name=$2 y_name=$3 values=$4 cmd=$5 x server result
    : >"$OUT/sweep_$name.runs"
    for round in $(seq "$ROUNDS"); do
        echo "  round $round"
        for x in $values; do
            for server in "${swept[@]}"; do
                result=$($cmd "$server" "$x")
                printf '%s\t%s\t%s\t%s\n' "$server" "$x" "$(field "$y_name" "$result")" \
                    "$(field cpu_us "$result")" | tee -a "$OUT/sweep_$name.runs"
            done
        done
    done
    printf 'server\t%s\t%s\tcpu_us\n' "$x_name" "$y_name" >"$OUT/sweep_$name.tsv"
    for x in $values; do
        for server in "${swept[@]}"; do
            printf '%s\t%s\t%s\t%s\n' "$server" "$x" \
                "$(awk -F'\t' -v s="$server" -v x="$x" '$1 == s && $2 == x {print $3}' "$OUT/sweep_$name.runs" | median)" \
                "$(awk -F'\t' -v s="$server" -v x="$x" '$1 == s && $2 == x {print $4}' "$OUT/sweep_$name.runs" | median)" \
                >>"$OUT/sweep_$name.tsv"
        done
    done
    column -t "$OUT/sweep_$name.tsv"
}
# About the same number of messages at every width.
ping_pong_at() { load "$1" "$2" 1 $(((PING_MESSAGES * PING_CONNECTIONS + $2 - 1) / $2)); }
# SWEEP_BYTES of messages, or PIPE_MESSAGES of them if fewer.
pipelined_at() { load "$1" 1 "$PIPE_WINDOW" $((SWEEP_BYTES / $2 < PIPE_MESSAGES ? SWEEP_BYTES / $2 : PIPE_MESSAGES)) "$2"; }

if $sweep; then
    echo
    echo "==> sweep: ping-pong round trips/s against connections ($SWEEP), median of $ROUNDS"
    sweep connections connections msgs_per_s "$SWEEP" ping_pong_at
    echo
    echo "==> sweep: pipelined MB/s of messages against message size ($SIZES), 1 connection, median of $ROUNDS"
    sweep size size mb_per_s "$SIZES" pipelined_at
    echo "(the plots: python3 scripts/plot.py $OUT/sweep_size.tsv > docs/perf/throughput_size.svg, and the"
    echo " same for $OUT/sweep_connections.tsv > docs/perf/throughput_connections.svg)"
fi
