#!/usr/bin/env bash
# Benchmarks: sets up each workload in a temp dir, runs ours,
# the peers (`ps`, `find -printf`) and the floor (benches/comm_floor.rs) side
# by side in interleaved rounds (or hyperfine), and prints medians and ratios.
#
#   scripts/bench.sh [--quick] [--runs N] [--growth] [--out DIR]
#
#   --quick    tiny workloads, 3 runs: a smoke test of the harness (< 60 s)
#   --runs N   hyperfine runs per command (default 15)
#   --growth   also measure cost growth: 1k/10k/30k processes, 500/2k/10k files
#   --out DIR  keep the timing JSON and the summary there (default: a temp dir;
#              an existing DIR is emptied of earlier results first)
#   --baseline BIN  also time another osquery-dbus build (say the commit
#              before an optimization) next to ours, as "base"
#   --hyperfine  time with hyperfine (each command's runs back to back)
#              instead of interleaved rounds (scripts/bench_run.py)
#   --events   only workload 5, the evented tables: 1,000 exec/s for 60 s
#              (10 s with --quick) under `osquery-dbus watch`, 3 runs (1 with
#              --quick); see events_workload below
#
# Needs: cargo, cc, hyperfine, dbus-daemon, dbus-send, /usr/bin/time, ps, find,
# and for the Thrift workload the peer venv the tests build (target/peer-venv).
# Everything it starts (sleeping processes, a private bus and what the bus
# activated, the extension) is killed by pid on exit, failure included.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/bench-bus.sh
source "$REPO/scripts/bench-bus.sh"

QUICK=0 RUNS=15 GROWTH=0 OUT="" HYPERFINE=0 BASE="" EVENTS=0
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; shift ;;
    --growth) GROWTH=1 ;;
    --hyperfine) HYPERFINE=1 ;;
    --baseline) BASE=$2; shift ;;
    --out) OUT=$2; shift ;;
    --events) EVENTS=1 ;;
    *) echo "usage: $0 [--quick] [--runs N] [--growth] [--hyperfine] [--baseline BIN] [--out DIR] [--events]" >&2; exit 2 ;;
  esac
  shift
done
if ((QUICK)); then
  RUNS=3 NPROC=200 NFILES=100 NHOMES=25 NPKGS=100 NROWS=500
else
  NPROC=10000 NFILES=2000 NHOMES=500 NPKGS=2000 NROWS=10000
fi

for tool in cc dbus-daemon dbus-send ps find python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 2; }
done
((HYPERFINE)) && ! command -v hyperfine >/dev/null && { echo "bench: hyperfine not found" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "bench: /usr/bin/time not found (apt-get install time)" >&2; exit 2; }

TMP=$(mktemp -d /tmp/osquery-dbus-bench.XXXXXX)
OUT=${OUT:-$TMP/out}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/summary.md
SLEEPERS_PID="" BUS_PID="" SEQ=0

# --- cleanup: every process we started, by pid ------------------------------
descendants() { # pid → every descendant pid, deepest last
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      for (p in parent) {
        cur = p
        for (d = 0; d < 64 && cur > 1; d++) {
          if (parent[cur] == root) { print p; break }
          cur = parent[cur]
        }
      }
    }'
}
stop_sleepers() {
  if [[ -n $SLEEPERS_PID ]]; then
    exec 9>&- 2>/dev/null || true          # closing stdin makes it reap its children
    kill "$SLEEPERS_PID" 2>/dev/null || true
    wait "$SLEEPERS_PID" 2>/dev/null || true
    SLEEPERS_PID=""
  fi
}
stop_bus() {
  if [[ -n $BUS_PID ]]; then
    local kids
    kids=$(descendants "$BUS_PID" || true)
    [[ -n $kids ]] && kill -KILL $kids 2>/dev/null || true
    kill "$BUS_PID" 2>/dev/null || true
    wait "$BUS_PID" 2>/dev/null || true
    for _ in 1 2 3 4 5; do
      kids=$(descendants "$BUS_PID" || true)
      [[ -z $kids ]] && break
      kill -KILL $kids 2>/dev/null || true
      sleep 0.1
    done
    BUS_PID=""
  fi
}
cleanup() {
  if declare -F stop_watch >/dev/null; then stop_watch; fi
  stop_sleepers
  stop_bus
  [[ $OUT == "$TMP"/* ]] && echo "bench: results were in $OUT (removed)" >&2
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }
# Processes visible now. A glob, not `find /proc`, which fails (and with
# pipefail ends the run) when a process exits while it lists.
nprocs() { local p=(/proc/[0-9]*); echo "${#p[@]}"; }

# --- build -------------------------------------------------------------------
echo "== build (release)" >&2
cargo build --release --quiet
BIN=$REPO/target/release/osquery-dbus
bench_bin() { # name → path of the built bench binary
  cargo bench --no-run --message-format=json --bench "$1" 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -1
}
FLOOR=$(bench_bin comm_floor)
TABLES=$(bench_bin tables)
cc -O2 -o "$TMP/sleepers" benches/sleepers.c

# --- workload 5: evented tables (--events) -----------------------------------
# 1,000 exec/s sustained (benches/execload.c: /bin/true, and every 100th a
# dbus-send that activates a service on a private bus, so 10 client runs and
# 10 activations a second) under `osquery-dbus watch --table
# dbus_process_events`. Per run: kernel overruns (watch's exit summary);
# client rows (those whose parent is the generator: the collector sees the
# whole host) against the runs started; activation rows of the bench's bus
# against the activations the bus logged (concurrent requests for one name
# share one activation); and the CPU (utime + stime) of the collector
# thread, named dbus_process_events.
WATCH_PID=""
stop_watch() {
  if [[ -n $WATCH_PID ]]; then
    kill "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
  fi
}
thread_ticks() { # pid thread-comm → utime + stime of that thread, in ticks
  local t
  for t in /proc/"$1"/task/*; do
    [[ $(cat "$t/comm" 2>/dev/null) == "$2" ]] || continue
    sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }'
    return 0
  done
  return 1
}
events_workload() {
  local secs=60 runs=3 rate=1000 every=100
  ((QUICK)) && secs=10 runs=1
  cc -O2 -o "$TMP/execload" benches/execload.c
  # A real --session bus (its own address; services from XDG_DATA_HOME).
  local d=$TMP/evbus
  mkdir -p "$d/xdg/dbus-1/services"
  # A non-zero exit makes the bus answer the activating dbus-send at once.
  printf '[D-BUS Service]\nName=org.bench.Ev\nExec=/bin/false bench-ev\n' \
    >"$d/xdg/dbus-1/services/org.bench.Ev.service"
  XDG_DATA_HOME=$d/xdg dbus-daemon --session --address="unix:path=$d/bus.sock" --nofork \
    --print-address=1 >"$d/address" 2>"$d/bus.log" &
  BUS_PID=$!
  for _ in $(seq 50); do [[ -s $d/address ]] && break; sleep 0.1; done
  local addr tck
  addr=$(head -1 "$d/address")
  tck=$(getconf CLK_TCK)
  echo "run rate secs started client_runs client_rows from_fanotify activations activation_rows overruns evicted events_per_s cpu_s cpu_pct max_lag_ms" >"$OUT/events.txt"
  for run in $(seq "$runs"); do
    echo "== events run $run/$runs: $rate exec/s for $secs s (load $(load))" >&2
    local lines=$TMP/events.$run.jsonl errs=$TMP/events.$run.err ready=""
    "$BIN" watch --table dbus_process_events >"$lines" 2>"$errs" &
    WATCH_PID=$!
    for _ in $(seq 50); do
      dbus-send --bus=unix:path=/nonexistent/bench / a.b.C "string:ready-$run" 2>/dev/null || true
      grep -q "ready-$run" "$lines" && { ready=1; break; }
      sleep 0.1
    done
    [[ -n $ready ]] || { echo "bench: watch did not start: $(cat "$errs")" >&2; exit 1; }
    local t0 t1 gen_pid logged
    t0=$(thread_ticks "$WATCH_PID" dbus_process_ev) || { echo "bench: no collector thread" >&2; exit 1; }
    logged=$(wc -l <"$d/bus.log")
    "$TMP/execload" "$rate" "$secs" "$every" dbus-send --bus="$addr" --print-reply \
      --reply-timeout=10000 --dest=org.bench.Ev / org.freedesktop.DBus.Peer.Ping >"$TMP/gen.$run" &
    gen_pid=$!
    wait "$gen_pid"
    sleep 1 # the last exits reach the collector
    t1=$(thread_ticks "$WATCH_PID" dbus_process_ev)
    stop_watch
    python3 - "$lines" "$errs" "$TMP/gen.$run" "$gen_pid" "$BUS_PID" "$d/bus.log" "$logged" \
      "$t0" "$t1" "$tck" "$run" "$rate" "$secs" >>"$OUT/events.txt" <<'PY'
import json, re, sys
lines, errs, gen, gen_pid, bus, log, logged, t0, t1, tck, run, rate, secs = sys.argv[1:]
gen = json.load(open(gen))
clients = fanotify = activation_rows = 0
for l in open(lines):
    v = json.loads(l)
    if v.get("event") != "exec":
        continue
    # A client gone before /proc was read has no cmdline: its name and
    # path come from fanotify, its parent from the fork event.
    if v.get("kind") == "client" and v.get("name") == "dbus-send" \
            and str(v.get("parent")) == gen_pid:
        clients += 1
        fanotify += v.get("cmdline") is None
    if v.get("kind") == "activation" and str(v.get("bus_pid")) == bus:
        activation_rows += 1
activations = sum("Activated service 'org.bench.Ev'" in l
                  for l in open(log, errors="replace").readlines()[int(logged):])
m = re.search(r"dbus_process_events: \d+ rows buffered, (\d+) evicted, (\d+) kernel overruns, "
              r"(\d+) events seen", open(errs).read())
evicted, overruns, seen = (m.group(1), m.group(2), m.group(3)) if m else ("?", "?", "?")
# Every process on the host is seen, the bench's and any other work's.
per_s = f"{int(seen) / gen['seconds']:.0f}" if m else "?"
cpu = (int(t1) - int(t0)) / int(tck)
print(run, rate, secs, gen["started"], gen["cmd_runs"], clients, fanotify, activations,
      activation_rows, overruns, evicted, per_s, f"{cpu:.2f}", f"{100 * cpu / gen['seconds']:.2f}",
      gen["max_lag_ms"])
PY
    tail -1 "$OUT/events.txt" >&2
  done
  stop_bus
  python3 - "$OUT/events.txt" <<'PY' | tee "$OUT/summary.md"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
head, rows = rows[0], rows[1:]
def med(n):
    v = [float(r[head.index(n)]) for r in rows if r[head.index(n)] != "?"]
    return statistics.median(v) if v else float("nan")
print("## Workload 5: %s exec/s for %s s, %d runs (medians)" % (rows[0][1], rows[0][2], len(rows)))
print()
print("| processes started | client runs | client rows (from fanotify) | activations "
      "| activation rows | kernel overruns | kernel events/s seen | collector CPU (s) "
      "| collector CPU (% of one core) | generator's worst lag (ms) |")
print("|---|---|---|---|---|---|---|---|---|---|")
print("| %d | %d | %d (%d) | %d | %d | %d | %d | %.2f | %.2f | %.1f |" % tuple(med(n) for n in [
    "started", "client_runs", "client_rows", "from_fanotify", "activations", "activation_rows",
    "overruns", "events_per_s", "cpu_s", "cpu_pct", "max_lag_ms"]))
print()
for r in rows:
    v = dict(zip(head, r))
    print("- run {run}: {client_rows} client rows ({from_fanotify} from fanotify) of {client_runs} "
          "runs, {activation_rows} activation rows of {activations}, {overruns} overruns, "
          "{events_per_s} events/s, {cpu_s} s CPU ({cpu_pct}%)".format(**v))
PY
}

if ((EVENTS)); then
  events_workload
  exit 0
fi

# --- workloads ---------------------------------------------------------------
start_sleepers() { # n
  stop_sleepers
  SEQ=$((SEQ + 1))
  local hold=$TMP/hold.$SEQ ready=$TMP/ready.$SEQ
  mkfifo "$hold"
  "$TMP/sleepers" "$1" <"$hold" >"$ready" &
  SLEEPERS_PID=$!
  exec 9>"$hold"
  for _ in $(seq 600); do
    grep -q ready "$ready" 2>/dev/null && return 0
    kill -0 "$SLEEPERS_PID" 2>/dev/null || { echo "bench: sleepers failed" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: sleepers not ready" >&2
  exit 1
}

start_bus() { # a private bus with 4 activated children (babysitter + sleep)
  bench_bus "$TMP/bus" org.bench.S
  BUS_PID=$BENCH_BUS_PID
  for _ in $(seq 50); do
    (($(descendants "$BUS_PID" | wc -l) >= 8)) && return 0
    sleep 0.1
  done
  echo "bench: bus children did not start" >&2
  exit 1
}

make_root() { # dir files homes packages: passwd, homes, service files, dpkg db
  python3 - "$@" <<'EOF'
import hashlib, os, sys
root, nfiles, nhomes, npkgs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def w(p, text):
    p = os.path.join(root, p.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)
passwd = ["root:x:0:0:root:/root:/bin/bash"]
for u in range(nhomes):
    passwd.append(f"user{u}:x:{10000+u}:{10000+u}::/home/user{u}:/bin/bash")
w("/etc/passwd", "\n".join(passwd) + "\n")
w("/etc/group", "root:x:0:\n" + "".join(f"user{u}:x:{10000+u}:\n" for u in range(nhomes)))
# A quarter in the system dirs (package-owned), the rest spread over homes.
system = nfiles // 4
owned = []
digest = {}
for i in range(nfiles):
    name = f"org.bench.Svc{i}"
    body = f"[D-BUS Service]\nName={name}\nExec=/usr/libexec/bench-svc{i} --arg {i}\n"
    if i < system:
        path = f"/usr/share/dbus-1/services/{name}.service"
        owned.append(path)
        digest[path] = hashlib.md5(body.encode()).hexdigest()
    else:
        path = f"/home/user{i % nhomes}/.local/share/dbus-1/services/{name}.service"
    w(path, body)
status = []
for p in range(npkgs):
    pkg = f"bench-pkg{p}"
    status.append(f"Package: {pkg}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.{p}\n")
    files = [f"/usr/share/doc/{pkg}", f"/usr/share/doc/{pkg}/copyright", f"/usr/lib/{pkg}/lib{p}.so"]
    files += owned[p::npkgs]
    w(f"/var/lib/dpkg/info/{pkg}.list", "\n".join(["/.", "/usr", "/usr/share", "/usr/share/doc"] + files) + "\n")
    # dpkg's digests of the package's regular files, for package_verified.
    w(f"/var/lib/dpkg/info/{pkg}.md5sums", "".join(
        f"{digest.get(f, hashlib.md5(f.encode()).hexdigest())}  {f.lstrip('/')}\n"
        for f in files[1:]))
w("/var/lib/dpkg/status", "\n".join(status))
EOF
}

# --- measuring -----------------------------------------------------------------
# hf NAME -n label cmd -n label cmd ...: results in $OUT/NAME.json.
# Interleaved rounds (scripts/bench_run.py) by default, since the load of
# this shared machine swings within a minute; --hyperfine runs hyperfine,
# which times each command's repetitions back to back.
hf() {
  local name=$1; shift
  echo "== $name (load $(load))" >&2
  if ((HYPERFINE)); then
    hyperfine -N --style none --warmup 2 --runs "$RUNS" --export-json "$OUT/$name.json" "$@" >/dev/null
  else
    python3 "$REPO/scripts/bench_run.py" --warmup 2 --runs "$RUNS" --export-json "$OUT/$name.json" "$@"
  fi
  echo "$name $(load)" >>"$OUT/load.txt"
}
rss() { # label cmd… → peak RSS in KiB, appended to $OUT/rss.txt
  local label=$1; shift
  /usr/bin/time -f "%M" -o "$TMP/rss" "$@" >/dev/null 2>&1 || true
  echo "$label $(tail -1 "$TMP/rss")" >>"$OUT/rss.txt"
}

echo "load at start: $(load)" >&2
echo "start $(load)" >>"$OUT/load.txt"

# 1. dbus_daemon_children and dbus_activated_processes over NPROC processes
# plus a real bus (scripts/bench-activated.sh times the other shape, half
# the processes session leaders whose environ is read).
start_bus
start_sleepers "$NPROC"
NOW=$(nprocs)
echo "processes: $NOW" >"$OUT/procs.txt"
CHILD=$("$BIN" query --csv "SELECT pid FROM dbus_daemon_children LIMIT 1" | sed -n 2p)
[[ -n $CHILD ]] || { echo "bench: no bus child found" >&2; exit 1; }
BASE_CHILDREN=() BASE_FILES=()
if [[ -n $BASE ]]; then
  BASE_CHILDREN=(-n base "$BASE query 'SELECT * FROM dbus_daemon_children'"
    -n base_activated "$BASE query 'SELECT * FROM dbus_activated_processes'")
fi
# What starting any process costs here, the floor under every whole-process
# figure: /bin/true, and the comm floor binary over a /proc of one process
# (exec and startup of a small Rust binary doing the floor's work on nothing).
# The activated table without `reason` and `suspicious`, whose service-file
# verdict loads the host's whole package database on a process's first query.
ACT_NOPKG="SELECT pid, parent, via, bus_pid, service_name, service_file, depth, escaped, cmdline, exe_sha256 FROM dbus_activated_processes"
ONEPROC=$TMP/oneproc
mkdir -p "$ONEPROC/1"
echo init >"$ONEPROC/1/comm"
hf children "${BASE_CHILDREN[@]}" \
  -n floor "$FLOOR" \
  -n ours "$BIN query 'SELECT * FROM dbus_daemon_children'" \
  -n ours_pid "$BIN query 'SELECT * FROM dbus_daemon_children WHERE pid = $CHILD'" \
  -n activated "$BIN query 'SELECT * FROM dbus_activated_processes'" \
  -n activated_nopkg "$BIN query '$ACT_NOPKG'" \
  -n select1 "$BIN query 'SELECT 1'" \
  -n true /bin/true \
  -n floor_one "$FLOOR $ONEPROC" \
  -n ps "ps -e -o pid,ppid,comm,args"
rss children.floor "$FLOOR"
rss children.ours "$BIN" query "SELECT * FROM dbus_daemon_children"
rss children.activated "$BIN" query "SELECT * FROM dbus_activated_processes"
rss children.activated_nopkg "$BIN" query "$ACT_NOPKG"
if [[ -n $BASE ]]; then
  rss children.base_activated "$BASE" query "SELECT * FROM dbus_activated_processes"
fi
rss children.ps ps -e -o pid,ppid,comm,args
rss select1 "$BIN" query "SELECT 1"
"$TABLES" children --reps "$RUNS" >"$OUT/tables_children.txt"
"$TABLES" procpass --reps "$RUNS" >>"$OUT/tables_children.txt"
"$TABLES" activated --reps "$RUNS" >>"$OUT/tables_children.txt"

# 2. dbus_service_files over NFILES files in NHOMES homes; 3. packages.
ROOT=$TMP/root
make_root "$ROOT" "$NFILES" "$NHOMES" "$NPKGS"
# The same directories for find: every directory the table listed.
mapfile -t DIRS < <("$BIN" --root "$ROOT" query --csv \
  "SELECT DISTINCT directory FROM dbus_service_files WHERE directory IS NOT NULL" |
  tail -n +2 | while read -r d; do [[ -d $ROOT$d ]] && echo "$ROOT$d"; done | sort -u)
printf '%s\n' "${DIRS[@]}" >"$TMP/dirs"
FIND="find ${DIRS[*]} -maxdepth 1 -printf '%p %U %G %m %s %A@ %T@ %C@\n'"
STATQ="SELECT path, uid, gid, mode, size, atime, mtime, ctime FROM dbus_service_files"
PARSEDQ="SELECT path, uid, gid, mode, size, atime, mtime, ctime, service_name, exec, exec_path, run_as_user, systemd_service, error FROM dbus_service_files"
if [[ -n $BASE ]]; then
  BASE_FILES=(-n base_stat "$BASE --root $ROOT query '$STATQ'" -n base_parsed "$BASE --root $ROOT query '$PARSEDQ'")
fi
hf files "${BASE_FILES[@]}" \
  -n find "$FIND" \
  -n ours_stat "$BIN --root $ROOT query '$STATQ'" \
  -n ours_parsed "$BIN --root $ROOT query '$PARSEDQ'" \
  -n ours_package "$BIN --root $ROOT query 'SELECT path, package FROM dbus_service_files'" \
  -n select1 "$BIN query 'SELECT 1'"
rss files.find sh -c "$FIND"
rss files.ours_stat "$BIN" --root "$ROOT" query "$STATQ"
rss files.ours_parsed "$BIN" --root "$ROOT" query "$PARSEDQ"
"$TABLES" files --root "$ROOT" --reps "$RUNS" >"$OUT/tables_files.txt"
"$TABLES" packages --root "$ROOT" --reps "$RUNS" >"$OUT/tables_packages.txt"
find "$ROOT" -name '*.service' | wc -l >"$OUT/files.txt"

# 4. The Thrift path: NROWS rows generated for the Python peer.
PEER=$REPO/target/peer-venv/bin/python
if [[ -x $PEER ]]; then
  TROOT=$TMP/root-thrift
  make_root "$TROOT" "$NROWS" "$NHOMES" 0
  mkdir -p "$TMP/peer"
  CTX='{"constraints":[],"colsUsed":["path","uid","gid","mode","size","atime","mtime","ctime","service_name","exec"]}'
  "$PEER" tests/peer/fake_core.py bench --bin "$BIN" --workdir "$TMP/peer" --root "$TROOT" \
    --table dbus_service_files --context "$CTX" --reps 5 >"$OUT/thrift.json"
  "$PEER" tests/peer/fake_core.py bench --bin "$BIN" --workdir "$TMP/peer" --root "$TROOT" \
    --table dbus_service_files --context '{}' --reps 5 >"$OUT/thrift_allcols.json"
  if [[ -n $BASE ]]; then
    "$PEER" tests/peer/fake_core.py bench --bin "$BASE" --workdir "$TMP/peer" --root "$TROOT" \
      --table dbus_service_files --context "$CTX" --reps 5 >"$OUT/thrift_base.json"
    "$PEER" tests/peer/fake_core.py bench --bin "$BASE" --workdir "$TMP/peer" --root "$TROOT" \
      --table dbus_service_files --context '{}' --reps 5 >"$OUT/thrift_allcols_base.json"
  fi
else
  echo "bench: no peer venv at $PEER (run cargo test once); Thrift workload skipped" >&2
fi

# 6. Growth.
if ((GROWTH)); then
  for n in 1000 10000 30000; do
    start_sleepers "$n"
    hf "growth_children_$n" -n floor "$FLOOR" -n ours "$BIN query 'SELECT * FROM dbus_daemon_children'"
    echo "growth_children_$n $(nprocs)" >>"$OUT/procs.txt"
  done
  stop_sleepers
  for n in 500 2000 10000; do
    R=$TMP/growth-$n
    make_root "$R" "$n" 500 0
    mapfile -t GD < <(find "$R" -type d -name services)
    hf "growth_files_$n" \
      -n find "find ${GD[*]} -maxdepth 1 -printf '%p %U %G %m %s %A@ %T@ %C@\n'" \
      -n ours_stat "$BIN --root $R query '$STATQ'"
    rm -rf "$R"
  done
fi
stop_sleepers
stop_bus
echo "end $(load)" >>"$OUT/load.txt"

python3 "$REPO/scripts/bench_report.py" "$OUT" | tee "$OUT/summary.md"
