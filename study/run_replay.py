#!/usr/bin/env python
"""Replay trial schedulers on a learning-curve pool (study/run_pool.py), or check the replay against a recorded
sweep. No training: seconds.

    python study/run_replay.py results/pool/laptop                    # the default candidates, 200 arrival orders
    python study/run_replay.py results/pool/laptop --budget 24 --candidates fifo "asha:grace=5,rf=3,hedge=0.25"
    python study/run_replay.py --check results/sweeps/laptop-20261201-101500    # replayed vs recorded decisions

Prints, per candidate (study/replay.py): top-1 kept (the order's best configuration reached full fidelity), top-3
kept (the configuration the sweep would select is among the order's final top 3), the share of the top 3 that
reached full fidelity (top3_share) and whether all three did (top3_all), the selected configuration's final
accuracy and regret, and trial-epochs and simulated wall time as ratios to FIFO's; then how well each cheaper
measurement ranks the pool. --out writes the table as CSV.
Candidate specs: fifo | asha:grace=E,rf=R[,hedge=S] | promote:short=E,rf=R[,bracket=B].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from analysis.manifest import options
from iakd_core.console import OneLineParser, fail, positive_int


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pool", nargs="?", help="a pool folder (holding curves.csv)")
    p.add_argument("--candidates", nargs="+", help="scheduler specs (default: study/replay.py DEFAULT_CANDIDATES)")
    p.add_argument("--orders", type=positive_int, default=200, help="random arrival orders (default 200)")
    p.add_argument("--budget", type=positive_int, help="configurations per order (default: the whole pool)")
    p.add_argument("--concurrency", type=positive_int, default=2, help="trials at once (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the orders and hedge brackets (default 0)")
    p.add_argument("--out", type=Path, help="also write the table to this CSV file")
    p.add_argument("--check", metavar="RUN", help="replay this recorded ASHA or promoting sweep's decisions (Ray's "
                   "scheduler; per bracket: the bracket rule) and compare with what it did")
    return p


def check(run: Path) -> int:
    from study.replay import check_recorded

    try:
        manifest = json.loads((run / "manifest.json").read_text())
        trials, epochs = pd.read_parquet(run / "trials.parquet"), pd.read_parquet(run / "epochs.parquet")
    except (OSError, ValueError) as err:
        fail(f"{run} is not a finished sweep folder ({err})")
    if manifest.get("kind", "sweep") != "sweep" or options(manifest).scheduler not in ("asha", "promote"):
        fail(f"{run} is not an ASHA or promoting sweep: nothing to check")
    table = check_recorded(trials, epochs, manifest)
    differ = table[table["recorded"] != table["replayed"]]
    print(table.to_string())
    print(f"{len(table) - len(differ)} of {len(table)} trials stopped where the sweep stopped them"
          + (f"; differing: {', '.join(differ.index)}" if len(differ) else ""))
    return 0 if not len(differ) else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        return check(Path(args.check))
    if not args.pool:
        fail("give a pool folder (study/run_pool.py makes one) or --check RUN")
    from study.replay import DEFAULT_CANDIDATES, Candidate, Pool, compare, fidelity_ranks

    path = Path(args.pool) / "curves.csv"
    if not path.exists():
        fail(f"{path} does not exist; make the pool first: python study/run_pool.py")
    try:
        candidates = [Candidate.parse(s) for s in args.candidates or DEFAULT_CANDIDATES]
    except ValueError as err:
        fail(str(err))
    pool = Pool.from_curves(pd.read_csv(path))
    if not len(pool.full):
        fail(f"{path} holds no configuration with every fidelity finished; let study/run_pool.py finish")
    for c in candidates:
        if c.kind == "promote" and c.short not in pool.short:
            fail(f"candidate {c.name!r}: the pool has no complete {c.short}-epoch runs (it has {sorted(pool.short)})")
    table = compare(candidates, pool, args.orders, args.budget, args.concurrency, args.seed)
    pd.set_option("display.width", 200)
    print(f"{len(pool.full)} configurations, {args.orders} arrival orders of {args.budget or len(pool.full)}, "
          f"concurrency {args.concurrency}; full fidelity {pool.max_epochs} epochs")
    print(table.round(3).to_string())
    print(fidelity_ranks(pool).round(3).to_string(index=False))
    if args.out:
        table.to_csv(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
