#!/usr/bin/env bash
# Side-by-side: 3-node bus vs redis-server appendfsync always, 100-byte payload, -c 50.
set -u
B=${1:-target/release/raftbus-node}
N=${N:-50000}
D=$(mktemp -d)
P=1=127.0.0.1:17401,2=127.0.0.1:17402,3=127.0.0.1:17403
for i in 1 2 3; do $B ${CONFIG:+--config $CONFIG} --id $i --listen 127.0.0.1:1640$i --raft-listen 127.0.0.1:1740$i --peers $P --data-dir $D/n$i > $D/n$i.log 2>&1 & done
redis-server --port 16499 --bind 127.0.0.1 --save "" --dir $D --appendonly yes --appendfsync always --daemonize no > $D/redis.log 2>&1 &
sleep 3
L=$(for i in 1 2 3; do redis-cli -p 1640$i INFO replication | grep -q role:leader && echo 1640$i; done)
F=$(for i in 1 2 3; do redis-cli -p 1640$i INFO replication | grep -q role:follower && echo 1640$i; done | head -1)
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' x)
run() { redis-benchmark -p $1 -c 50 -n $N -q --precision 3 "${@:2}" 2>/dev/null | tr '\r' '\n' | grep "requests per second" | tail -1; }
echo "bus leader=$L follower=$F"
echo "bus XADD via leader:    $(run $L XADD bl '*' m $PAYLOAD)"
echo "bus XADD via follower:  $(run $F XADD bf '*' m $PAYLOAD)"
echo "bus PUBLISH via leader: $(run $L PUBLISH pl $PAYLOAD)"
echo "redis always XADD:      $(run 16499 XADD rx '*' m $PAYLOAD)"
echo "redis always PUBLISH:   $(run 16499 PUBLISH rp $PAYLOAD)"
redis-cli -p $L INFO persistence | grep -E "fsyncs|flushed"
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf $D
