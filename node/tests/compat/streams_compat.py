#!/usr/bin/env python3
"""Redis Streams compatibility script: the same calls against the bus and redis-server.

Usage: streams_compat.py HOST PORT

Drives the server with the Python `redis` package (as a queue user would: a group, two
consumers, reads, acks, a claim after a consumer "dies", XAUTOCLAIM, a pipelined
transaction, XINFO, XTRIM, EXISTS/TYPE/DEL) and with `redis-cli`, and prints every
reply on its own line with stream IDs and times normalized, so that the output of two
servers can be diffed. Expects an empty server.
"""

import re
import subprocess
import sys
import time

import redis

HOST, PORT = sys.argv[1], int(sys.argv[2])
r = redis.Redis(host=HOST, port=PORT, decode_responses=True)

ID_RE = re.compile(r"\b(\d+)-(\d+)\b")
ids = {}


def norm_ids(text, stream="jobs"):
    """Stream IDs become <id1>, <id2>, ... in order of first appearance per stream (0-0
    stays): the bus numbers each stream's entries from 1, Redis takes the time."""

    def sub(m):
        if m.group(0) == "0-0":
            return "0-0"
        key = (stream, m.group(0))
        if key not in ids:
            ids[key] = f"<{stream}:{len([k for k in ids if k[0] == stream]) + 1}>"
        return ids[key]

    return ID_RE.sub(sub, text)


TIME_KEYS = ("idle", "inactive", "time_since_delivered", "age")


def norm_times(value):
    """Durations that depend on when the script ran become <t> (kept: -1, 'never')."""
    if isinstance(value, dict):
        return {
            k: ("<t>" if k in TIME_KEYS and isinstance(v, int) and v >= 0 else norm_times(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(norm_times(v) for v in value)
    return value


def show(label, fn, stream="jobs"):
    try:
        value = fn()
    except redis.ResponseError as e:
        value = f"ERROR {e}"
    print(f"{label}: {norm_ids(repr(norm_times(value)), stream)}")
    return value


def cli(label, *args, stdin=None):
    out = subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(PORT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in (out.stdout + out.stderr).splitlines():
        print(f"{label}| {norm_ids(line, 'cli')}")


# -- a work queue: producer, a group, two consumers -------------------------------------
for i in range(6):
    show(f"xadd {i}", lambda i=i: r.xadd("jobs", {"job": str(i), "payload": f"p{i}"}))
show("xlen", lambda: r.xlen("jobs"))
show("xgroup create", lambda: r.xgroup_create("jobs", "workers", id="0"))
show("xgroup create again", lambda: r.xgroup_create("jobs", "workers", id="0"))
show("xgroup create no key", lambda: r.xgroup_create("nokey", "g", id="$"))
show("xgroup create mkstream", lambda: r.xgroup_create("empty", "g", id="$", mkstream=True))
show("xgroup create late", lambda: r.xgroup_create("jobs", "late", id="$"))
show("xgroup createconsumer", lambda: r.xgroup_createconsumer("jobs", "workers", "carol"))
show("xgroup createconsumer again", lambda: r.xgroup_createconsumer("jobs", "workers", "carol"))
show("xreadgroup nogroup", lambda: r.xreadgroup("nogroup", "alice", {"jobs": ">"}))
alice = show("xreadgroup alice", lambda: r.xreadgroup("workers", "alice", {"jobs": ">"}, count=2))
bob = show("xreadgroup bob", lambda: r.xreadgroup("workers", "bob", {"jobs": ">"}, count=2))
show("xreadgroup late empty", lambda: r.xreadgroup("late", "x", {"jobs": ">"}, block=100))
alice_ids = [mid for mid, _ in alice[0][1]]
bob_ids = [mid for mid, _ in bob[0][1]]
show("xack alice", lambda: r.xack("jobs", "workers", alice_ids[0]))
show("xack again", lambda: r.xack("jobs", "workers", alice_ids[0]))
show("xack nogroup", lambda: r.xack("jobs", "nogroup", alice_ids[0]))
show("xpending summary", lambda: r.xpending("jobs", "workers"))
show("xpending range", lambda: r.xpending_range("jobs", "workers", "-", "+", 10))
show("xpending bob", lambda: r.xpending_range("jobs", "workers", "-", "+", 10, consumername="bob"))
show("xpending idle", lambda: r.xpending_range("jobs", "workers", "-", "+", 10, idle=60000))
show("xreadgroup alice history", lambda: r.xreadgroup("workers", "alice", {"jobs": "0"}))
show("xpending nogroup", lambda: r.xpending("jobs", "nogroup"))

# -- bob "dies": his entries are claimed once idle ---------------------------------------
show("xclaim too early", lambda: r.xclaim("jobs", "workers", "carol", 60000, bob_ids))
time.sleep(0.3)
show("xclaim carol", lambda: r.xclaim("jobs", "workers", "carol", 200, [bob_ids[0]]))
show("xclaim justid", lambda: r.xclaim("jobs", "workers", "carol", 0, [bob_ids[0]], justid=True))
show("xclaim retrycount", lambda: r.xclaim("jobs", "workers", "carol", 0, [bob_ids[0]], retrycount=7, justid=True))
show("xpending after claim", lambda: r.xpending_range("jobs", "workers", "-", "+", 10))
time.sleep(0.3)
show("xautoclaim", lambda: r.xautoclaim("jobs", "workers", "dave", 200, start_id="0-0", count=1))
show("xautoclaim rest", lambda: r.xautoclaim("jobs", "workers", "dave", 200, start_id="0-0", count=10))
show("xautoclaim justid", lambda: r.xautoclaim("jobs", "workers", "erin", 0, start_id="0-0", justid=True))
show("xautoclaim nogroup", lambda: r.xautoclaim("jobs", "nogroup", "x", 0))
show("xgroup delconsumer", lambda: r.xgroup_delconsumer("jobs", "workers", "erin"))

# -- a pipelined transaction (MULTI ... EXEC) -------------------------------------------
p = r.pipeline()
p.xadd("jobs", {"job": "6"})
p.xadd("jobs", {"job": "7"})
p.xlen("jobs")
p.xreadgroup("workers", "alice", {"jobs": ">"})
p.exists("jobs", "nokey")
show("pipeline transaction", p.execute)
p = r.pipeline()
p.xadd("jobs", {"job": "8"})
p.xgroup_create("jobs", "workers", id="0")
p.xlen("jobs")
show("pipeline runtime error", lambda: p.execute(raise_on_error=False))
p = r.pipeline(transaction=False)
p.xadd("other", {"a": "1"})
p.xadd("other", {"a": "2"})
p.xrange("other")
show("pipeline no transaction", p.execute, stream="other")

# -- XINFO --------------------------------------------------------------------------------
show("xinfo stream", lambda: r.xinfo_stream("jobs"))
show("xinfo groups", lambda: r.xinfo_groups("jobs"))
# Redis 7.2 added `inactive`; older servers lack it.
show(
    "xinfo consumers",
    lambda: [{k: v for k, v in c.items() if k != "inactive"} for c in r.xinfo_consumers("jobs", "workers")],
)
show("xinfo stream nokey", lambda: r.xinfo_stream("nokey"))
show("xinfo consumers nogroup", lambda: r.xinfo_consumers("jobs", "nogroup"))

# -- XTRIM, XDEL ---------------------------------------------------------------------------
show("xtrim maxlen", lambda: r.xtrim("jobs", maxlen=5, approximate=False))
show("xlen after trim", lambda: r.xlen("jobs"))
first = r.xrange("jobs", count=1)[0][0]
show("xdel", lambda: r.xdel("jobs", first))
show("xdel again", lambda: r.xdel("jobs", first))
show("xinfo stream after xdel", lambda: r.xinfo_stream("jobs"))
show("xinfo groups after xdel", lambda: r.xinfo_groups("jobs"))
show("xreadgroup history after xdel", lambda: r.xreadgroup("workers", "dave", {"jobs": "0"}))
cutoff = r.xrange("jobs")[2][0]
show("xtrim minid", lambda: r.xtrim("jobs", minid=cutoff, approximate=False))
show("xrange after minid", lambda: r.xrange("jobs"))
show("xgroup setid", lambda: r.xgroup_setid("jobs", "late", id="0"))
show("xreadgroup after setid", lambda: r.xreadgroup("late", "x", {"jobs": ">"}, count=1))
show("xgroup destroy", lambda: r.xgroup_destroy("jobs", "late"))
show("xgroup destroy again", lambda: r.xgroup_destroy("jobs", "late"))

# -- keys ----------------------------------------------------------------------------------
show("exists", lambda: r.exists("jobs", "other", "nokey"))
show("type stream", lambda: r.type("jobs"))
show("type none", lambda: r.type("nokey"))
show("keys", lambda: sorted(r.keys("*")))
show("scan", lambda: sorted(r.scan_iter(match="j*")))
show("scan type", lambda: sorted(r.scan_iter(_type="stream")))
show("delete", lambda: r.delete("other", "nokey"))
show("exists after delete", lambda: r.exists("other"))
show("type after delete", lambda: r.type("other"))
show("xlen after delete", lambda: r.xlen("other"))
show("unlink", lambda: r.unlink("empty"))
show("discard", lambda: r.execute_command("DISCARD"))
show("exec without multi", lambda: r.execute_command("EXEC"))

# -- connection commands -------------------------------------------------------------------
show("client setname", lambda: r.client_setname("compat"))
show("client getname", lambda: r.client_getname())
show("client id is int", lambda: isinstance(r.client_id(), int))
show("client list names", lambda: sorted(c["name"] for c in r.client_list() if c["name"]))
show("select 0", lambda: r.execute_command("SELECT", "0"))

# -- RESP3 ---------------------------------------------------------------------------------
r3 = redis.Redis(host=HOST, port=PORT, decode_responses=True, protocol=3)
show("resp3 xreadgroup", lambda: r3.xreadgroup("workers", "alice", {"jobs": "0"}, count=1))
show("resp3 xinfo groups", lambda: r3.xinfo_groups("jobs"))

# -- redis-cli -----------------------------------------------------------------------------
cli("cli xadd", "XADD", "cli", "*", "k", "v")
cli("cli xgroup", "XGROUP", "CREATE", "cli", "g", "0")
cli("cli xreadgroup", "XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "cli", ">")
cli("cli xpending", "XPENDING", "cli", "g")
cli("cli transaction", stdin="MULTI\nXADD cli * k w\nXLEN cli\nXACK cli g 0-1\nEXEC\n")
cli("cli abort", stdin="MULTI\nXADD cli\nXLEN cli\nEXEC\n")
cli("cli nested", stdin="MULTI\nMULTI\nDISCARD\n")
cli("cli type", "TYPE", "cli")
cli("cli del", "DEL", "cli")
cli("cli exists", "EXISTS", "cli")
