#!/usr/bin/env bash
# The one-to-one load through both doors, QUIC (`direct`) and the LeanCloud
# WebSocket door (`ws-direct`), alternating A B A B at each rate on fresh
# spawned servers, then each figure's per-run values, medians and the
# ratio ws-direct / direct. Everything runs on 127.0.0.1.
#
#   bench/compare-doors.sh                          # defaults below
#   RATES="1000 2000" ROUNDS=5 bench/compare-doors.sh
#   bench/compare-doors.sh --fsync false            # extra flags go to every run
#
# Environment: RATES ("1000 2000" msgs/s in total), ROUNDS (3), PAIRS (100),
# DURATION (6 s), WARMUP (2 s), OUT (a directory to keep the JSON in).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATES=${RATES:-"1000 2000"}
ROUNDS=${ROUNDS:-3}
PAIRS=${PAIRS:-100}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}

cargo build --release --bin tidings --bin tidings-bench
BENCH=target/release/tidings-bench

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    dir=$OUT
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi

files=()
for rate in $RATES; do
    for round in $(seq 1 "$ROUNDS"); do
        for scenario in direct ws-direct; do
            f="$dir/$scenario-$rate-$round.json"
            echo "round $round: $scenario at $rate/s" >&2
            # Bounded: a run that hangs past a few minutes is killed.
            timeout 300 "$BENCH" "$scenario" --pairs "$PAIRS" --rate "$rate" \
                --duration "$DURATION" --warmup "$WARMUP" --quiet --json "$f" "$@" >/dev/null
            files+=("$f")
        done
    done
done
"$BENCH" compare-json --medians "${files[@]}"
