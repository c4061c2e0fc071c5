#!/usr/bin/env bash
# Side-by-side, one sitting: a 3-node bus (via its leader and via a follower) against
# redis-server with appendfsync always and without persistence; redis-benchmark -c 50,
# 100-byte payloads, XADD and PUBLISH. Prints one CSV row per case: rps, p50, p99 (ms).
# Two rows say what limits the bus on this machine: the same XADD with the bus's log not
# fsynced (known-bad, fsync = "never": its ceiling from CPU and network alone), and the
# disk's synced writes per second with one writer (Redis) and three at once (three nodes
# sharing one disk). CPU and context switches per request are summed over the target's
# processes (all three nodes for the bus). The single-client rows take the bus's
# single-client latency apart: one node or three, log fsynced or not (what replication costs,
# what the fsync costs with one node on the disk and with three).
#   scripts/bench-vs-redis.sh [node-binary]      (N=50000 requests per case; CONFIG=node.toml)
set -u
# The three nodes share this machine's cores, as `raftbus` runs them (target/bus.rs).
export TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-$(( $(nproc) / 3 > 0 ? $(nproc) / 3 : 1 ))}
B=${1:-target/release/raftbus-node}
N=${N:-50000}
D=$(mktemp -d)
P=1=127.0.0.1:17401,2=127.0.0.1:17402,3=127.0.0.1:17403
# start_bus NAME [--config FILE]: three nodes with data dirs $D/NAME1..3; their pids in BUS_PIDS.
start_bus() {
  local name=$1; shift
  BUS_PIDS=""
  for i in 1 2 3; do
    $B "$@" --id $i --listen 127.0.0.1:1640$i --raft-listen 127.0.0.1:1740$i --peers $P --data-dir $D/$name$i > $D/$name$i.log 2>&1 &
    BUS_PIDS="$BUS_PIDS $!"
  done
}
# cpu_ticks PID...: user+sys clock ticks the processes have used so far.
cpu_ticks() { for p in "$@"; do awk '{print $14 + $15}' /proc/$p/stat; done | awk '{s += $1} END {print s + 0}'; }
# ctx_switches PID...: context switches (voluntary + involuntary) of their threads so far;
# every thread of a node or of redis-server lives as long as its process.
ctx_switches() { for p in "$@"; do cat /proc/$p/task/*/status 2>/dev/null; done | awk '/^(nonvoluntary|voluntary)_ctxt_switches:/ {s += $2} END {print s + 0}'; }
TICK=$(getconf CLK_TCK)
# bus_port ROLE: the client port of a node in that role (the first one).
bus_port() { for i in 1 2 3; do redis-cli -p 1640$i INFO replication | grep -q "role:$1" && echo 1640$i; done | head -1; }
start_bus n ${CONFIG:+--config $CONFIG}
THREE=$BUS_PIDS
redis-server --port 16499 --bind 127.0.0.1 --save "" --dir $D --appendonly yes --appendfsync always --daemonize no > $D/redis.log 2>&1 &
ALWAYS=$!
redis-server --port 16498 --bind 127.0.0.1 --save "" --appendonly no --daemonize no > $D/redis-none.log 2>&1 &
NONE=$!
sleep 3
L=$(bus_port leader)
F=$(bus_port follower)
PAYLOAD=$(head -c 100 /dev/zero | tr '\0' x)
# redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
# run NAME PORT "PIDS" COMMAND...: one case, with the CPU and the context switches of PIDS
# per request.
run() {
  local name=$1 port=$2 pids=$3 before switches out
  shift 3
  before=$(cpu_ticks $pids)
  switches=$(ctx_switches $pids)
  out=$(redis-benchmark -p "$port" -c 50 -n "$N" --csv "$@" 2>/dev/null | tail -1)
  echo "$out" | tr -d '"' | awk -F, -v name="$name" -v ticks=$(( $(cpu_ticks $pids) - before )) \
    -v cs=$(( $(ctx_switches $pids) - switches )) -v hz=$TICK -v n=$N \
    '{printf "%s,%s,%s,%s,%.1f,%.2f\n", name, $2, $5, $7, ticks * 1e6 / hz / n, cs / n}'
}
echo "case,rps,p50_ms,p99_ms,cpu_us_per_request,context_switches_per_request"
run "bus XADD via leader" $L "$THREE" XADD bl '*' m $PAYLOAD
run "bus XADD via follower" $F "$THREE" XADD bf '*' m $PAYLOAD
run "bus PUBLISH via leader" $L "$THREE" PUBLISH pl $PAYLOAD
run "bus PUBLISH via follower" $F "$THREE" PUBLISH pf $PAYLOAD
run "redis always XADD" 16499 $ALWAYS XADD rx '*' m $PAYLOAD
run "redis always PUBLISH" 16499 $ALWAYS PUBLISH rp $PAYLOAD
run "redis none XADD" 16498 $NONE XADD rx '*' m $PAYLOAD
run "redis none PUBLISH" 16498 $NONE PUBLISH rp $PAYLOAD
# single NAME PORT: one client, 5000 XADDs: rps, p50, p99.
single() { redis-benchmark -p "$2" -c 1 -n 5000 --csv XADD s1 '*' m $PAYLOAD 2>/dev/null | tail -1 | tr -d '"' | awk -F, -v name="$1" '{print name "," $2 "," $5 "," $7}'; }
single "bus XADD single client" $L
single "redis always XADD single client" 16499
single "redis none XADD single client" 16498
redis-cli -p $L INFO persistence | grep -E "fsyncs|flushed|per_fsync" | tr -d '\r'
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null

# The bus without fsync: what CPU and the network alone allow.
printf 'version = 1\nfsync = "never"\n' > $D/nofsync.toml
start_bus nf --config $D/nofsync.toml
sleep 3
L=$(bus_port leader)
run "bus XADD via leader fsync never (known-bad; ceiling without the disk)" $L "$BUS_PIDS" XADD bn '*' m $PAYLOAD
single "bus XADD single client fsync never (known-bad)" $L
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null

# One node: the same code, log and fsync, without replication (what one replica costs).
$B ${CONFIG:+--config $CONFIG} --id 1 --listen 127.0.0.1:16401 --raft-listen 127.0.0.1:17401 --peers 1=127.0.0.1:17401 --data-dir $D/one > $D/one.log 2>&1 &
ONE=$!
sleep 3
run "bus XADD one node (no replication)" 16401 $ONE XADD bo '*' m $PAYLOAD
single "bus XADD single client one node" 16401
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
$B --config $D/nofsync.toml --id 1 --listen 127.0.0.1:16401 --raft-listen 127.0.0.1:17401 --peers 1=127.0.0.1:17401 --data-dir $D/onenf > $D/onenf.log 2>&1 &
sleep 3
single "bus XADD single client one node fsync never (known-bad)" 16401
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null

# Synced 2 KiB writes per second where the data dirs are: one writer, then three at once.
sync_rate() { dd if=/dev/zero of="$1" bs=2k count="$2" oflag=dsync 2>&1 | awk -v n="$2" '/copied/{for(i=1;i<=NF;i++) if($i=="s,") print n/$(i-1)}'; }
echo "disk synced writes/s one writer,$(sync_rate $D/sync1 2000)"
three=$( (for i in 1 2 3; do sync_rate $D/sync3-$i 1000 & done; wait) | awk '{s+=$1} END{print s}')
echo "disk synced writes/s three writers together,$three"
rm -rf $D
