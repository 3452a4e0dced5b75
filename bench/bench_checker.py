"""Benchmark: how long the linearizability checker takes on a large realistic history.

Prints one comparable figure per line: ops, keys, verdict, seconds.
Run from the repository root: python bench/bench_checker.py [--ops N] [--keys K]
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from roost.emulator.linearize import check, load_history  # noqa: E402
from tests.checker.histgen import simulate, to_lines  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    ops = simulate(random.Random(a.seed), clients=a.clients, n_ops=a.ops, keys=a.keys)
    lines = to_lines(ops)
    t0 = time.perf_counter()
    loaded = load_history(lines)
    t1 = time.perf_counter()
    r = check(loaded, timeout_s=600)
    t2 = time.perf_counter()
    print("checker: %d ops, %d keys, %d clients: linearizable=%s, load %.3f s, check %.3f s"
          % (len(loaded), r.keys, a.clients, r.verdict, t1 - t0, t2 - t1))
    return 0 if r.verdict else 1


if __name__ == "__main__":
    sys.exit(main())
