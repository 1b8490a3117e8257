#!/usr/bin/env python3
"""AUC of a Tree-Ring detection between marked and clean images.

Reads the JSON that `oxgen detect --ckpt RUN --json OUT.json MARKED.npy CLEAN.npy` writes and
prints the AUC (marked images should have the smaller η) and the share of each side below
p = 0.01. Usage: tree_ring_auc.py OUT.json MARKED.npy CLEAN.npy (the two paths as given to
`oxgen detect`). Standard library only.
"""
import json
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    rows = json.load(open(sys.argv[1]))
    marked = [r for r in rows if r["file"] == sys.argv[2]]
    clean = [r for r in rows if r["file"] == sys.argv[3]]
    if not marked or not clean:
        sys.exit("no rows for one of the files; pass them exactly as given to oxgen detect")
    wins = sum(
        1.0 if m["eta"] < c["eta"] else 0.5 if m["eta"] == c["eta"] else 0.0
        for m in marked
        for c in clean
    )
    auc = wins / (len(marked) * len(clean))
    low = lambda side: sum(r["p"] < 0.01 for r in side) / len(side)
    print(
        f"AUC {auc:.3f}  marked p<0.01 {low(marked):.0%}  clean p<0.01 {low(clean):.0%}"
        f"  ({len(marked)} marked, {len(clean)} clean, {rows[0]['dof']} degrees of freedom)"
    )


if __name__ == "__main__":
    main()
