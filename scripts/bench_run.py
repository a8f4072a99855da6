#!/usr/bin/env python3
"""Interleaved timing runner for scripts/bench.sh.

    bench_run.py --runs N --warmup W --export-json FILE -n LABEL CMD [-n LABEL CMD ...]

hyperfine runs every repetition of one command before the next command,
so on a shared machine whose load swings from 8 to 300 within a minute the
contenders are measured under different loads. Here each round runs every
command once, in a shuffled order, so they share the load; medians over the
rounds then compare like with like. Commands are split with shlex and
spawned without a shell (as `hyperfine -N`); output goes to /dev/null.
Wall time and peak RSS (wait4's ru_maxrss) are recorded per run. The JSON
has hyperfine's shape (`results[].command`, `times` in seconds) plus
`max_rss_kib`.
"""
import argparse
import json
import os
import random
import shlex
import sys
import time


def run_once(argv):
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        t0 = time.perf_counter()
        pid = os.posix_spawnp(
            argv[0], argv, os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit("bench_run: %r exited with %d" % (argv, code))
    return wall, usage.ru_maxrss


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--export-json", required=True)
    p.add_argument("-n", nargs=2, action="append", metavar=("LABEL", "CMD"), required=True)
    a = p.parse_args()
    cmds = [(label, shlex.split(cmd)) for label, cmd in a.n]
    for _ in range(a.warmup):
        for _, argv in cmds:
            run_once(argv)
    times = {label: [] for label, _ in cmds}
    rss = {label: [] for label, _ in cmds}
    rng = random.Random(13)
    for _ in range(a.runs):
        order = list(cmds)
        rng.shuffle(order)
        for label, argv in order:
            wall, maxrss = run_once(argv)
            times[label].append(wall)
            rss[label].append(maxrss)
    with open(a.export_json, "w") as f:
        json.dump(
            {
                "results": [
                    {"command": label, "times": times[label], "max_rss_kib": rss[label]}
                    for label, _ in cmds
                ]
            },
            f,
        )


if __name__ == "__main__":
    main()
