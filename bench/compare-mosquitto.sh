#!/usr/bin/env bash
# Tidings, the bare QUIC relay and Mosquitto 2 (QoS 1, persistence on, TLS)
# under the same one-to-one load at each of RATES, then a Tidings chat room
# against one Mosquitto topic with as many subscribers, and one Markdown table
# of all of it: a row per load; per system the server's CPU µs per delivered
# message, deliveries/s, p50 / p99 and RSS; and the generator's CPU. Every run
# gets a fresh server (a spawned Tidings, a spawned relay, a new Mosquitto on
# an empty persistence dir). Everything runs on 127.0.0.1 and stops when the
# script ends. The table is built from the runs' --json files
# (`tidings-bench compare-json --table`).
#
#   bench/compare-mosquitto.sh                       # defaults below: about 3 minutes on 2 cores
#   RATES=2000 DURATION=10 ROOM_MEMBERS=0 bench/compare-mosquitto.sh   # the old single-rate comparison
#   FSYNC=false PIN=0 bench/compare-mosquitto.sh
#   bench/compare-mosquitto.sh --threads 1           # extra flags go to every run
#
# Environment:
#   RATES          one-to-one rates, msgs/s in total ("1000 2000 5000 10000 20000";
#                  RATE, the old single rate, is used when RATES is unset)
#   PAIRS (100), PAYLOAD (100 bytes), WARMUP (2 s)
#   DURATION       measured window per run: 6 s with several rates, so the
#                  whole script stays near 3 minutes; 10 s with one rate
#   ROOM_MEMBERS   Tidings room members = Mosquitto topic subscribers (5000; 0 = no room row)
#   ROOM_RATE      messages/s into the room or topic (2), each to every member
#   FSYNC          Tidings' fdatasync per group commit (true, its default; false is closer
#                  to Mosquitto, which persists by periodic snapshot)
#   PIN            1 (default): with 2 or more CPUs, servers (Tidings, relay, Mosquitto)
#                  run on SERVER_CPUS (0) and the generator on GENERATOR_CPUS (1); 0 = off
#   PORT (18883), MQTT_TLS (1; 0 = plain TCP listener), OUT (a directory to keep the JSON in)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATES=${RATES:-${RATE:-"1000 2000 5000 10000 20000"}}
read -ra rates <<<"$RATES"
if ((${#rates[@]} == 0)); then
    echo "RATES is empty" >&2
    exit 2
fi
if ((${#rates[@]} > 1)); then
    DURATION=${DURATION:-6}
else
    DURATION=${DURATION:-10}
fi
PAIRS=${PAIRS:-100}
PAYLOAD=${PAYLOAD:-100}
WARMUP=${WARMUP:-2}
FSYNC=${FSYNC:-true}
PORT=${PORT:-18883}
MQTT_TLS=${MQTT_TLS:-1}
ROOM_MEMBERS=${ROOM_MEMBERS:-5000}
ROOM_RATE=${ROOM_RATE:-2}
PIN=${PIN:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
GENERATOR_CPUS=${GENERATOR_CPUS:-1}

if ! command -v mosquitto >/dev/null; then
    echo "installing mosquitto" >&2
    if ! apt-get install -y mosquitto >/dev/null; then
        apt-get update >/dev/null
        apt-get install -y mosquitto >/dev/null
    fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

cargo build --release --bin tidings --bin tidings-bench
BENCH=target/release/tidings-bench

# Thousands of room members: the broker (a child, so it inherits this) needs
# a descriptor each; the bench raises its own limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pin_flags=()
broker_pin=()
pinned="not pinned"
if [[ $PIN == 1 ]] && (($(nproc) >= 2)); then
    pin_flags=(--server-cpus "$SERVER_CPUS" --generator-cpus "$GENERATOR_CPUS")
    # The bench pins the broker too (--broker-pid); taskset makes it start there.
    if command -v taskset >/dev/null; then broker_pin=(taskset -c "$SERVER_CPUS"); fi
    pinned="servers on CPU $SERVER_CPUS, generator on CPU $GENERATOR_CPUS"
fi

tmp=$(mktemp -d)
json=$tmp/json
mkdir -p "$json"
broker_pid=
stop_broker() {
    if [[ -n $broker_pid ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid"
        wait "$broker_pid" 2>/dev/null || true
    fi
    broker_pid=
}
cleanup() {
    stop_broker
    if [[ -n ${OUT:-} ]] && compgen -G "$json/*.json" >/dev/null; then
        mkdir -p "$OUT"
        cp "$json"/*.json "$OUT/"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/broker"
cd "$tmp/broker"
listener_tls=()
bench_tls=()
if [[ $MQTT_TLS == 1 ]]; then
    # A throw-away CA and a server certificate for 127.0.0.1 signed by it.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=tidings-bench CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile server.ext -out server.pem 2>/dev/null
    listener_tls=("cafile $tmp/broker/ca.pem" "certfile $tmp/broker/server.pem"
        "keyfile $tmp/broker/server.key")
    bench_tls=(--ca "$tmp/broker/ca.pem")
fi
{
    echo "per_listener_settings false"
    echo "allow_anonymous true"
    echo "listener $PORT 127.0.0.1"
    for line in "${listener_tls[@]}"; do echo "$line"; done
    echo "persistence true"
    echo "persistence_location $tmp/broker/data/"
    echo "set_tcp_nodelay true"
    echo "max_queued_messages 100000"
    echo "log_dest stderr"
    echo "log_type error"
    echo "log_type warning"
} >mosquitto.conf
cd - >/dev/null
as_root=0
if [[ $(id -u) == 0 ]] && id mosquitto >/dev/null 2>&1; then as_root=1; fi

# A new broker on an empty persistence dir.
start_broker() {
    rm -rf "$tmp/broker/data"
    mkdir -p "$tmp/broker/data"
    # As root, mosquitto drops to its own user, which must be able to read all this.
    if [[ $as_root == 1 ]]; then
        chmod 755 "$tmp"
        chown -R mosquitto "$tmp/broker"
    fi
    "${broker_pin[@]}" "$MOSQUITTO" -c "$tmp/broker/mosquitto.conf" 2>>"$tmp/broker/log" &
    broker_pid=$!
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        sleep 0.1
    done
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "mosquitto did not start:" >&2
        cat "$tmp/broker/log" >&2
        exit 1
    fi
}

# One bench run; a failed run is reported and leaves a gap in the table.
bench() {
    local status=0
    "$BENCH" "$@" || status=$?
    if ((status != 0)); then echo "(that run failed: status $status)"; fi
}

windows=(--payload "$PAYLOAD" --duration "$DURATION" --warmup "$WARMUP" --quiet "${pin_flags[@]}")
one_to_one=(--pairs "$PAIRS" "${windows[@]}")
mosquitto_version=$("$MOSQUITTO" -h 2>/dev/null | head -1 | awk '{print $3}' || true)
transport=$([[ $MQTT_TLS == 1 ]] && echo TLS || echo 'plain TCP')
echo "tidings vs the bare relay vs mosquitto $mosquitto_version (QoS 1, persistence on, $transport)"
echo "rates: ${rates[*]} msgs/s, $PAIRS pairs, $PAYLOAD B, window $DURATION s after $WARMUP s; tidings fsync $FSYNC; $pinned"
start_s=$SECONDS

for rate in "${rates[@]}"; do
    echo
    echo "== $rate msgs/s: tidings, fsync $FSYNC"
    bench direct --fsync "$FSYNC" --rate "$rate" "${one_to_one[@]}" --json "$json/$rate-direct.json" "$@"
    echo
    echo "== $rate msgs/s: bare relay"
    bench baseline --rate "$rate" "${one_to_one[@]}" --json "$json/$rate-baseline.json" "$@"
    echo
    echo "== $rate msgs/s: mosquitto"
    start_broker
    bench mqtt --broker "127.0.0.1:$PORT" "${bench_tls[@]}" --broker-pid "$broker_pid" \
        --rate "$rate" "${one_to_one[@]}" --json "$json/$rate-mqtt.json" "$@"
    stop_broker
    files=()
    for f in mqtt direct baseline; do
        if [[ -f $json/$rate-$f.json ]]; then files+=("$json/$rate-$f.json"); fi
    done
    if ((${#files[@]} > 0)); then
        echo
        echo "== side by side ($PAIRS pairs, $rate msgs/s, $PAYLOAD B)"
        "$BENCH" compare-json "${files[@]}"
    fi
done

if ((ROOM_MEMBERS > 0)); then
    echo
    echo "== room: tidings, $ROOM_MEMBERS members, $ROOM_RATE msgs/s, fsync $FSYNC"
    bench room --room-members "$ROOM_MEMBERS" --fsync "$FSYNC" --rate "$ROOM_RATE" "${windows[@]}" \
        --json "$json/room-tidings.json" "$@"
    echo
    echo "== room: mosquitto, one topic, $ROOM_MEMBERS subscribers, $ROOM_RATE msgs/s"
    start_broker
    bench mqtt --room --room-members "$ROOM_MEMBERS" --publishers 1 --rate "$ROOM_RATE" \
        --broker "127.0.0.1:$PORT" "${bench_tls[@]}" --broker-pid "$broker_pid" "${windows[@]}" \
        --json "$json/room-mqtt.json" "$@"
    stop_broker
fi

echo
echo "== all runs ($((SECONDS - start_s)) s)"
echo
if compgen -G "$json/*.json" >/dev/null; then
    "$BENCH" compare-json --table "$json"/*.json
else
    echo "no run wrote its results"
fi
echo
echo "note: Mosquitto persists by periodic snapshot (autosave_interval, 1800 s by default), not per"
echo "      message; Tidings with fsync true acknowledges only after fdatasync. FSYNC=false is closer."
