#!/usr/bin/env python3
"""Where a wgpu run's device time goes, by kernel, from cubecl's profile log.

Run oxgen with cubecl's per-kernel profiling written to a file, then read its tail (the last
steps, after every kernel has compiled and burn has autotuned):

    CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG=/tmp/cubecl-prof.log \
        target/release/oxgen bench train --model unet-digits --device wgpu \
        --iters 3 --warmup 1 --no-peer
    scripts/cubecl-profile.py /tmp/cubecl-prof.log --tail 0.15

Profiling waits for each kernel, so the totals are longer than a step; the shares are what the
file is for. `SourceKernel` rows are oxgen's WGSL kernels, the rest burn's.
"""
import argparse
import collections
import re

UNIT = {"ns": 1e-6, "µs": 1e-3, "ms": 1.0, "s": 1e3}

ap = argparse.ArgumentParser()
ap.add_argument("log")
ap.add_argument("--tail", type=float, default=0.15, help="fraction of the entries, from the end")
ap.add_argument("--top", type=int, default=12)
a = ap.parse_args()

rows = []
for line in open(a.log, errors="replace"):
    m = re.match(r"^\|\s*([0-9.]+)(ns|µs|ms|s)\s*\|\s*(.*)$", line)
    if m:
        name = re.sub(r"_[0-9a-f]{8}$", "", m.group(3).split("|")[0].strip())
        rows.append((name, float(m.group(1)) * UNIT[m.group(2)], m.group(3).strip()))
seen, first = set(), set()
for i, (_, _, full) in enumerate(rows):
    if full not in seen:
        seen.add(full)
        first.add(i)
start = int(len(rows) * (1 - a.tail))
compiles = sum(1 for i in first if i >= start)
total, calls = collections.Counter(), collections.Counter()
for name, ms, _ in rows[start:]:
    total[name] += ms
    calls[name] += 1
all_ms = sum(total.values())
print(f"{len(rows) - start} kernel runs ({compiles} first runs of a kernel among them), {all_ms:.0f} ms")
print("| kernel | ms | share | runs |\n|---|---|---|---|")
for name, ms in total.most_common(a.top):
    print(f"| {name} | {ms:.1f} | {100 * ms / all_ms:.1f}% | {calls[name]} |")
