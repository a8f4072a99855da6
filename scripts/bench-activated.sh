#!/usr/bin/env bash
# Benchmark: `SELECT * FROM dbus_activated_processes` as a whole process
# against the comm floor (benches/comm_floor.rs), on a host with N extra
# processes (default 10000) and a private bus that activated 4 services
# (babysitter + /bin/sleep each), as workload 1 of scripts/bench.sh, but
# only this table: interleaved rounds (scripts/bench_run.py), medians, the
# ratio to the floor, and another build side by side with --baseline.
#
#   scripts/bench-activated.sh [--runs N] [--baseline BIN] [--leaders] [N]
#
#   --runs N        rounds (default 15)
#   --baseline BIN  also time another osquery-dbus build ("base")
#   --leaders       half of the N processes lead a session of their own
#                   (escape candidates, whose environ is read), and
#                   `ps -e -o pid,ppid,comm,args` is timed too
#   --connections   also time the table with only pid and cmdline, and
#                   with those plus the connection columns (stdio,
#                   remote_addresses, listening, connections_note)
#
# Needs a release build (cargo build --release), cc, dbus-daemon, dbus-send.
# Spawns only its own processes and kills them by pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-bus.sh
source scripts/bench-bus.sh
RUNS=15 BASE="" LEADERS=0 CONN=0 N=10000
while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift ;;
    --baseline) BASE=$2; shift ;;
    --leaders) LEADERS=1 ;;
    --connections) CONN=1 ;;
    [0-9]*) N=$1 ;;
    *) echo "usage: $0 [--runs N] [--baseline BIN] [--leaders] [--connections] [N]" >&2; exit 2 ;;
  esac
  shift
done
BIN=$PWD/target/release/osquery-dbus
[[ -x $BIN ]] || { echo "build first: cargo build --release" >&2; exit 2; }
FLOOR=$(cargo bench --no-run --message-format=json --bench comm_floor 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == "comm_floor":
        print(m["executable"])' | tail -1)

TMP=$(mktemp -d /tmp/bench-activated.XXXXXX)
SPAWNER="" BUS=""
cleanup() {
  if [[ -n $SPAWNER ]]; then
    exec 9>&- 2>/dev/null || true # sleepers reap their children on EOF
    kill "$SPAWNER" 2>/dev/null || true
    wait "$SPAWNER" 2>/dev/null || true
  fi
  if [[ -n $BUS ]]; then
    # The bus's children (babysitters) and theirs (the services), by pid.
    local kids
    kids=$(ps -e -o pid=,ppid= | awk -v b="$BUS" '
      { parent[$1] = $2 }
      END { for (p in parent) if (parent[p] == b || parent[parent[p]] == b) print p }')
    [[ -n $kids ]] && kill -KILL $kids 2>/dev/null || true
    kill "$BUS" 2>/dev/null || true
    wait "$BUS" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bus: its own config in the temp dir, never the host's buses.
bench_bus "$TMP" org.bench.A
BUS=$BENCH_BUS_PID

# The processes: sleepers (benches/sleepers.c), or with --leaders a Python
# spawner whose every second child calls setsid().
mkfifo "$TMP/hold"
if ((LEADERS)); then
  # Each child is killed with the spawner (PR_SET_PDEATHSIG), however
  # the spawner ends.
  python3 -c '
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
parent = os.getpid()
for i in range(int(sys.argv[1])):
    if os.fork() == 0:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(0)
        if i % 2 == 0:
            os.setsid()
        signal.pause()
        os._exit(0)
print("ready", flush=True)
sys.stdin.read()
' "$N" <"$TMP/hold" >"$TMP/ready" 2>/dev/null &
else
  cc -O2 -o "$TMP/sleepers" benches/sleepers.c
  "$TMP/sleepers" "$N" <"$TMP/hold" >"$TMP/ready" &
fi
SPAWNER=$!
exec 9>"$TMP/hold"
for _ in $(seq 3000); do grep -q ready "$TMP/ready" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$TMP/ready" || { echo "bench: processes not ready" >&2; exit 1; }

ROWS=$("$BIN" query --csv "SELECT pid FROM dbus_activated_processes" | tail -n +2 | wc -l)
procs=(/proc/[0-9]*)
echo "processes: ${#procs[@]}; rows: $ROWS; load: $(cut -d' ' -f1-3 /proc/loadavg)"
NOPKG="SELECT pid, parent, via, bus_pid, service_name, service_file, depth, escaped, cmdline, exe_sha256 FROM dbus_activated_processes"
ARGS=(-n floor "$FLOOR"
  -n ours "$BIN query 'SELECT * FROM dbus_activated_processes'"
  -n ours_nopkg "$BIN query '$NOPKG'")
[[ -n $BASE ]] && ARGS+=(-n base "$BASE query 'SELECT * FROM dbus_activated_processes'"
  -n base_nopkg "$BASE query '$NOPKG'")
((LEADERS)) && ARGS+=(-n ps "ps -e -o pid,ppid,comm,args")
CONN_LEAN="SELECT pid, cmdline FROM dbus_activated_processes"
CONN_FULL="SELECT pid, cmdline, stdio, remote_addresses, listening, connections_note FROM dbus_activated_processes"
((CONN)) && ARGS+=(-n lean "$BIN query '$CONN_LEAN'" -n lean_connections "$BIN query '$CONN_FULL'")
python3 scripts/bench_run.py --warmup 2 --runs "$RUNS" --export-json "$TMP/times.json" "${ARGS[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Peak RSS from /usr/bin/time (a posix_spawn child's maxrss counts the
# spawning Python's pages). CPU time (user + system, perf's task-clock,
# runs back to back): on a shared machine a run's wall time includes
# waiting for a core.
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
cpu() { perf stat -x, -e task-clock -r 11 "$@" 2>&1 >/dev/null | cut -d, -f1 | tail -1; }
{
  echo "ours $(rss "$BIN" query 'SELECT * FROM dbus_activated_processes')"
  [[ -z $BASE ]] || echo "base $(rss "$BASE" query 'SELECT * FROM dbus_activated_processes')"
} >"$TMP/rss.txt"
if command -v perf >/dev/null; then
  {
    echo "floor $(cpu "$FLOOR")"
    echo "ours $(cpu "$BIN" query 'SELECT * FROM dbus_activated_processes')"
    echo "ours_nopkg $(cpu "$BIN" query "$NOPKG")"
    if ((CONN)); then
      echo "lean $(cpu "$BIN" query "$CONN_LEAN")"
      echo "lean_connections $(cpu "$BIN" query "$CONN_FULL")"
    fi
    if [[ -n $BASE ]]; then
      echo "base $(cpu "$BASE" query 'SELECT * FROM dbus_activated_processes')"
      echo "base_nopkg $(cpu "$BASE" query "$NOPKG")"
    fi
  } >"$TMP/cpu.txt"
fi
touch "$TMP/cpu.txt"
python3 - "$TMP/times.json" "$TMP/rss.txt" "$TMP/cpu.txt" <<'PY'
import json, statistics, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
rss = dict(l.split() for l in open(sys.argv[2]))
cpu = {k: float(v) for k, v in (l.split() for l in open(sys.argv[3]))}
med = {k: statistics.median(r["times"]) * 1000 for k, r in res.items()}
for k in med:
    cpu.setdefault(k, float("nan"))
cpu.setdefault("floor", float("nan"))
print("| command | median ms | × floor | quartiles ms | CPU ms (user + sys) | CPU × floor | peak RSS KiB |")
print("|---|---:|---:|---|---:|---:|---:|")
for k, v in med.items():
    q = statistics.quantiles([t * 1000 for t in res[k]["times"]], n=4)
    print(f"| {k} | {v:.1f} | {v / med['floor']:.2f} | {q[0]:.0f}–{q[2]:.0f} "
          f"| {cpu[k]:.1f} | {cpu[k] / cpu['floor']:.2f} | {rss.get(k, '')} |")
if "base" in med:
    print(f"ours/base: {med['ours'] / med['base']:.3f} (CPU {cpu['ours'] / cpu['base']:.3f})")
PY
