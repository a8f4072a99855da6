#!/usr/bin/env python3
"""Summarises a scripts/bench.sh run: medians, ratios against the floor and
the peers, and the performance targets, as Markdown on stdout."""
import json
import os
import statistics
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)["results"]
    return {r["command"]: statistics.median(r["times"]) * 1e3 for r in results}


def lines(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.split() for l in f if l.strip()]


def verdict(ok):
    return "met" if ok else "**not met**"


print("### Whole-process medians (ms)\n")
print("| workload | command | median ms | ratio | target | |")
print("|---|---|---:|---:|---|---|")
c = load("children")
if c:
    f = c["floor"]
    print(f"| children | comm floor | {f:.1f} | 1.00 | | |")
    print(f"| children | ours (full query) | {c['ours']:.1f} | {c['ours']/f:.2f}x floor | <= 1.3x floor | {verdict(c['ours'] <= 1.3*f)} |")
    print(f"| children | ps -e -o pid,ppid,comm,args | {c['ps']:.1f} | ps/ours {c['ps']/c['ours']:.2f}x | ours >= 5x faster | {verdict(c['ps'] >= 5*c['ours'])} |")
    print(f"| children | ours pid = X | {c['ours_pid']:.1f} | full/pid {c['ours']/c['ours_pid']:.1f}x | >= 100x | {verdict(c['ours'] >= 100*c['ours_pid'])} |")
    print(f"| children | ours SELECT 1 (startup) | {c['select1']:.1f} | {c['select1']/f:.2f}x floor | | |")
    if "activated" in c:
        print(f"| children | ours dbus_activated_processes (full query) | {c['activated']:.1f} | {c['activated']/f:.2f}x floor | <= 2x floor | {verdict(c['activated'] <= 2*f)} |")
    if "activated_nopkg" in c:
        print(f"| children | ours dbus_activated_processes without reason, suspicious | {c['activated_nopkg']:.1f} | {c['activated_nopkg']/f:.2f}x floor | | |")
    for k, label in (("true", "/bin/true"), ("floor_one", "comm floor over a /proc of one process")):
        if k in c:
            print(f"| children | {label} (process start) | {c[k]:.2f} | | | |")
    if "base" in c:
        print(f"| children | baseline build (full query) | {c['base']:.1f} | {c['base']/f:.2f}x floor | | |")
    if "base_activated" in c:
        print(f"| children | baseline build, dbus_activated_processes | {c['base_activated']:.1f} | {c['base_activated']/f:.2f}x floor | | |")
fl = load("files")
if fl:
    fd = fl["find"]
    print(f"| files | find -printf | {fd:.1f} | 1.00 | | |")
    print(f"| files | ours stat columns | {fl['ours_stat']:.1f} | {fl['ours_stat']/fd:.2f}x find | <= 1.5x | {verdict(fl['ours_stat'] <= 1.5*fd)} |")
    print(f"| files | ours parsed columns | {fl['ours_parsed']:.1f} | {fl['ours_parsed']/fd:.2f}x find | <= 3x | {verdict(fl['ours_parsed'] <= 3*fd)} |")
    print(f"| files | ours path, package (first query of a process) | {fl['ours_package']:.1f} | | < 500 ms | {verdict(fl['ours_package'] < 500)} |")
    print(f"| files | ours SELECT 1 (startup) | {fl['select1']:.1f} | | | |")
    for k in ("base_stat", "base_parsed"):
        if k in fl:
            print(f"| files | baseline build, {k[5:]} columns | {fl[k]:.1f} | {fl[k]/fd:.2f}x find | | |")

print("\n### In-process (benches/tables.rs), ms\n")
print("| measure | median | min | max | rows | target | |")
print("|---|---:|---:|---:|---:|---|---|")
tab = {}
for name in ("tables_children.txt", "tables_files.txt", "tables_packages.txt"):
    for l in lines(name):
        tab[l[0]] = l
        extra = ""
        if l[0] in ("files_path_eq", "files_path_eq_stat"):
            extra = f"< 1 ms | {verdict(float(l[1]) < 1)}"
        elif l[0] == "children_pid_eq":
            extra = f"full / pid = X >= 100x | {verdict(float(tab['children_full'][1]) >= 100 * float(l[1]))}"
        elif l[0] == "package_first":
            extra = f"< 500 ms | {verdict(float(l[1]) < 500)}"
        else:
            extra = "| "
        print(f"| {l[0]} | {l[1]} | {l[2]} | {l[3]} | {l[4]} | {extra} |")
if "children_full" in tab and "children_pid_eq" in tab:
    r = float(tab["children_full"][1]) / max(float(tab["children_pid_eq"][1]), 1e-6)
    print(f"\nIn-table `pid = X` speed-up over the full generate: {r:.0f}x (target >= 100x: {verdict(r >= 100)})")
if "package_first" in tab and "package_repeat" in tab:
    r = float(tab["package_repeat"][1]) / float(tab["package_first"][1])
    print(f"\nRepeat package query / first (whole generate, file scan included): {100*r:.1f}% (target < 10%: {verdict(r < 0.10)})")
if all(k in tab for k in ("package_first", "package_repeat", "package_scan_alone")):
    scan = float(tab["package_scan_alone"][1])
    first = float(tab["package_first"][1]) - scan
    again = max(float(tab["package_repeat"][1]) - scan, 0.0)
    print(f"\nThe package column's own cost (the generate minus the same scan without it): first {first:.1f} ms, repeat {again:.1f} ms = {100*again/max(first, 1e-6):.1f}% (target < 10%: {verdict(again < 0.10*first)})")
if "package_index_cached" in tab and "package_index_rebuild" in tab:
    r = float(tab["package_index_cached"][1]) / float(tab["package_index_rebuild"][1])
    print(f"\nPackage index alone, cache hit / rebuild: {100*r:.2f}% (target < 10%: {verdict(r < 0.10)})")

print("\n### Peak RSS (KiB, /usr/bin/time)\n")
print("| command | max RSS KiB |")
print("|---|---:|")
for l in lines("rss.txt"):
    print(f"| {l[0]} | {l[1] if len(l) > 1 else '?'} |")

for name, label in (
    ("thrift.json", "stat + parsed columns"),
    ("thrift_allcols.json", "all columns (no colsUsed)"),
    ("thrift_base.json", "baseline build, stat + parsed columns"),
    ("thrift_allcols_base.json", "baseline build, all columns"),
):
    path = os.path.join(out, name)
    if os.path.exists(path):
        with open(path) as f:
            t = json.load(f)
        print(f"\n### Thrift path ({label}), Python peer as the caller\n")
        print(f"- rows per generate: {t['rows']}, median {t['generate_median_s']*1e3:.1f} ms, "
              f"{t['rows_per_s']:.0f} rows/s")
        print(f"- registration: {t['registration_s']*1e3:.1f} ms after start (target <= 100 ms: "
              f"{verdict(t['registration_s'] <= 0.1)})")
        print(f"- RSS idle: {t['rss_idle_kib']} KiB (target <= 10 MB: {verdict(t['rss_idle_kib'] <= 10240)}); "
              f"at the query (sampled max): {t['rss_query_sampled_kib']} KiB, VmHWM {t['rss_hwm_kib']} KiB "
              f"(target <= 30 MB: {verdict(t['rss_hwm_kib'] <= 30720)})")

growth = [(n, load(f"growth_children_{n}")) for n in (1000, 10000, 30000)]
if any(g for _, g in growth):
    procs = {l[0]: l[1] for l in lines("procs.txt") if len(l) == 2}
    print("\n### Growth: dbus_daemon_children (whole process)\n")
    print("| sleepers | processes | floor ms | ours ms | ours/floor | ours µs per process |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, g in growth:
        if g:
            p = int(procs.get(f"growth_children_{n}", n))
            print(f"| {n} | {p} | {g['floor']:.1f} | {g['ours']:.1f} | {g['ours']/g['floor']:.2f} | {1e3*g['ours']/p:.1f} |")
growth = [(n, load(f"growth_files_{n}")) for n in (500, 2000, 10000)]
if any(g for _, g in growth):
    print("\n### Growth: dbus_service_files stat columns (whole process)\n")
    print("| files | find ms | ours ms | ours/find | ours µs per file |")
    print("|---:|---:|---:|---:|---:|")
    for n, g in growth:
        if g:
            print(f"| {n} | {g['find']:.1f} | {g['ours_stat']:.1f} | {g['ours_stat']/g['find']:.2f} | {1e3*g['ours_stat']/n:.1f} |")

print("\n### Load averages (1/5/15 min) at each step\n")
for l in lines("load.txt"):
    print(f"- {' '.join(l)}")
for l in lines("procs.txt"):
    print(f"- {' '.join(l)}")
