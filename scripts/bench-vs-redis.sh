#!/usr/bin/env bash
# Side-by-side, one sitting: a 3-node bus (via its leader and via a follower) against
# redis-server with appendfsync always and without persistence; redis-benchmark -c 50,
# 100-byte payloads, XADD and PUBLISH. Prints one CSV row per case: rps, p50, p99 (ms).
#   scripts/bench-vs-redis.sh [node-binary]      (N=50000 requests per case; CONFIG=node.toml)
set -u
B=${1:-target/release/raftbus-node}
N=${N:-50000}
D=$(mktemp -d)
P=1=127.0.0.1:17401,2=127.0.0.1:17402,3=127.0.0.1:17403
for i in 1 2 3; do $B ${CONFIG:+--config $CONFIG} --id $i --listen 127.0.0.1:1640$i --raft-listen 127.0.0.1:1740$i --peers $P --data-dir $D/n$i > $D/n$i.log 2>&1 & done
redis-server --port 16499 --bind 127.0.0.1 --save "" --dir $D --appendonly yes --appendfsync always --daemonize no > $D/redis.log 2>&1 &
redis-server --port 16498 --bind 127.0.0.1 --save "" --appendonly no --daemonize no > $D/redis-none.log 2>&1 &
sleep 3
L=$(for i in 1 2 3; do redis-cli -p 1640$i INFO replication | grep -q role:leader && echo 1640$i; done)
F=$(for i in 1 2 3; do redis-cli -p 1640$i INFO replication | grep -q role:follower && echo 1640$i; done | head -1)
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' x)
# redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
run() {
  redis-benchmark -p "$2" -c 50 -n "$N" --csv "${@:3}" 2>/dev/null | tail -1 |
    tr -d '"' | awk -F, -v name="$1" '{print name "," $2 "," $5 "," $7}'
}
echo "case,rps,p50_ms,p99_ms"
run "bus XADD via leader" $L XADD bl '*' m $PAYLOAD
run "bus XADD via follower" $F XADD bf '*' m $PAYLOAD
run "bus PUBLISH via leader" $L PUBLISH pl $PAYLOAD
run "bus PUBLISH via follower" $F PUBLISH pf $PAYLOAD
run "redis always XADD" 16499 XADD rx '*' m $PAYLOAD
run "redis always PUBLISH" 16499 PUBLISH rp $PAYLOAD
run "redis none XADD" 16498 XADD rx '*' m $PAYLOAD
run "redis none PUBLISH" 16498 PUBLISH rp $PAYLOAD
redis-benchmark -p $L -c 1 -n 5000 --csv XADD b1 '*' m $PAYLOAD 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print "bus XADD single client," $2 "," $5 "," $7}'
redis-benchmark -p 16499 -c 1 -n 5000 --csv XADD r1 '*' m $PAYLOAD 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{print "redis always XADD single client," $2 "," $5 "," $7}'
redis-cli -p $L INFO persistence | grep -E "fsyncs|flushed|per_fsync" | tr -d '\r'
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf $D
