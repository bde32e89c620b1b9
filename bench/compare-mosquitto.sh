#!/usr/bin/env bash
# The same one-to-one load against Mosquitto 2 (QoS 1, persistence on, TLS)
# and against Tidings, then both servers' CPU per message and latency side by
# side. Everything runs on 127.0.0.1 and stops when the script ends.
#
#   bench/compare-mosquitto.sh                       # defaults below
#   PAIRS=200 RATE=4000 DURATION=5 bench/compare-mosquitto.sh
#   bench/compare-mosquitto.sh --threads 1           # extra flags go to both runs
#
# Environment: PAIRS (100), RATE (2000 msgs/s in total), PAYLOAD (100 bytes),
# DURATION (10 s), WARMUP (2 s), FSYNC (true: Tidings' default), PORT (18883),
# MQTT_TLS (1; 0 = plain TCP listener), OUT (a directory to keep the JSON in).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PAIRS=${PAIRS:-100}
RATE=${RATE:-2000}
PAYLOAD=${PAYLOAD:-100}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
FSYNC=${FSYNC:-true}
PORT=${PORT:-18883}
MQTT_TLS=${MQTT_TLS:-1}

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

tmp=$(mktemp -d)
broker_pid=
cleanup() {
    if [[ -n $broker_pid ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid"
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/broker/data"
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
# As root, mosquitto drops to its own user, which must be able to read all this.
if [[ $(id -u) == 0 ]] && id mosquitto >/dev/null 2>&1; then
    chmod 755 "$tmp"
    chown -R mosquitto "$tmp/broker"
fi
cd - >/dev/null

"$MOSQUITTO" -c "$tmp/broker/mosquitto.conf" 2>"$tmp/broker/log" &
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

common=(--pairs "$PAIRS" --rate "$RATE" --payload "$PAYLOAD" --duration "$DURATION"
    --warmup "$WARMUP" --quiet)

echo "== mosquitto $("$MOSQUITTO" -h 2>/dev/null | head -1 | awk '{print $3}'), QoS 1, persistence on, $([[ $MQTT_TLS == 1 ]] && echo TLS || echo 'plain TCP')"
"$BENCH" mqtt --broker "127.0.0.1:$PORT" "${bench_tls[@]}" --broker-pid "$broker_pid" \
    "${common[@]}" --json "$tmp/mqtt.json" "$@"
kill "$broker_pid"
wait "$broker_pid" 2>/dev/null || true
broker_pid=

echo
echo "== tidings, fsync $FSYNC"
"$BENCH" direct --fsync "$FSYNC" "${common[@]}" --json "$tmp/direct.json" "$@"

echo
echo "== side by side ($PAIRS pairs, $RATE msgs/s, $PAYLOAD B)"
"$BENCH" compare-json "$tmp/mqtt.json" "$tmp/direct.json"
echo "note: Mosquitto persists by periodic snapshot (autosave_interval, 1800 s by default), not per"
echo "      message; Tidings with fsync true acknowledges only after fdatasync. FSYNC=false is closer."
if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp "$tmp/mqtt.json" "$tmp/direct.json" "$OUT/"
fi
