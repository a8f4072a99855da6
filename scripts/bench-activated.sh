#!/bin/sh
# Benchmark: the full dbus_activated_processes query against
# `ps -e -o pid,ppid,comm,args` on a host with N extra processes (default
# 10000; half of them session leaders, so they are escape candidates whose
# environ is read). The query must stay at least 3x faster.
# Usage: scripts/bench-activated.sh [N] [path/to/osquery-dbus]
# Spawns only its own sleeping processes and kills them on exit.
set -eu
N=${1:-10000}
BIN=${2:-target/release/osquery-dbus}
RUNS=5
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }

python3 - "$N" <<'PY' &
import os, signal, sys
n = int(sys.argv[1])
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        if i % 2 == 0:
            os.setsid()
        signal.pause()
        os._exit(0)
    kids.append(pid)
def stop(*_):
    for k in kids:
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in kids:
        os.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("spawned", n, flush=True)
signal.pause()
PY
SPAWNER=$!
trap 'kill -TERM $SPAWNER 2>/dev/null; wait $SPAWNER 2>/dev/null || true' EXIT INT TERM
# Wait until the processes exist.
count() { set -- /proc/[0-9]*; echo "$#"; }
while [ "$(count)" -lt "$N" ]; do sleep 0.2; done

best() {
    # Best wall time of $RUNS runs of "$@", in milliseconds.
    b=
    i=0
    while [ $i -lt $RUNS ]; do
        s=$(date +%s%N)
        "$@" >/dev/null
        e=$(date +%s%N)
        t=$(( (e - s) / 1000000 ))
        if [ -z "$b" ] || [ "$t" -lt "$b" ]; then b=$t; fi
        i=$((i + 1))
    done
    echo "$b"
}

Q=$(best "$BIN" query --json "SELECT * FROM dbus_activated_processes")
P=$(best ps -e -o pid,ppid,comm,args)
echo "processes: $(count)"
echo "dbus_activated_processes (all columns): ${Q} ms"
echo "ps -e -o pid,ppid,comm,args:            ${P} ms"
if [ "$Q" -gt 0 ]; then
    echo "ratio ps/query: $(awk "BEGIN { printf \"%.1f\", $P / $Q }")x (want >= 3)"
fi
