#!/usr/bin/env python
"""P4: does the default search select as well as random search with every trial trained to the end?

    python bench/bench_search.py                          # laptop, 24 trials per sweep, sweep seeds 0-4
    python bench/bench_search.py --seeds 5 --fresh-seeds 3 --pruned-check

A factorial {TPE, random} x {the preset's default scheduler, FIFO}, each on the same sweep seeds (paired), each
sweep with the same number of trials (``--budget``). Every sweep's selected configuration (its best COMPLETE
trial) is re-run on ``--fresh-seeds`` new seeds through the ablation runner (arm ``iakd_best``, test set once), so
the outcome is what a user would deploy, not the maximum of noisy validation values. ``--pruned-check`` adds, for
information, TPE told nothing about PRUNED trials (``--sampler tpe-complete``) with the default scheduler.

Prints per strategy the selected configurations' fresh-seed test accuracy, validation best, trial-epochs and wall
time; the paired differences to random + FIFO with 95 % t-intervals; and the goal: TPE + the default scheduler
no worse than random + FIFO (paired delta >= -0.2 points) at <= 0.6 of its trial-epochs (exit 1 when missed).
Writes an anytime figure (best validation accuracy selected so far vs trial-epochs and vs wall time).

Each finished (strategy, seed) is appended to ``--record`` (default bench/measured/search_factorial.csv, with its
anytime curve in search_anytime.csv): committed, so the factorial can be finished over several sessions;
rerunning skips what is recorded and resumes what its --output-dir holds. Long: per seed ~4 sweeps of 24 trials
and 4-5 fresh re-runs (about 40 min per seed on 2 cores at the defaults, bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from analysis.manifest import options
from iakd_core.console import OneLineParser, fail, fmt_seconds, positive_int
from iakd_core.files import write_text

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "bench" / "measured"
BASELINE = "random+fifo"
GOAL_DELTA, GOAL_RATIO = -0.2, 0.6


# The schedulers under test, as run_sweep.py options: promote = the synchronous brackets (every preset's default);
# promote-running = promotion against Ray's running cut-off (the first promoting default, rows before 2026-12-03).
SCHEDULER_OPTIONS = {"fifo": ["--scheduler", "fifo"], "asha": ["--scheduler", "asha"],
                     "promote": ["--scheduler", "promote"],
                     "promote-running": ["--scheduler", "promote", "--bracket", "0"]}


def strategies(pruned_check: bool, scheduler: str = "promote") -> list[tuple[str, str]]:
    """(sampler, scheduler) pairs (a key of ``SCHEDULER_OPTIONS``)."""
    out = [("tpe", scheduler), ("random", "fifo"), ("random", scheduler), ("tpe", "fifo")]
    return out + [("tpe-complete", scheduler)] if pruned_check else out


def run(command: list[str]) -> None:
    code = subprocess.run([sys.executable, *command], cwd=ROOT).returncode
    if code:
        raise SystemExit(code)


def finished(folder: Path) -> dict | None:
    manifest = folder / "manifest.json"
    saved = json.loads(manifest.read_text()) if manifest.exists() else None
    return saved if saved and saved.get("status") == "complete" else None


def sweep(args, sampler: str, scheduler: str, seed: int, name: str) -> Path:
    """Run (or resume, or reuse) one sweep; return its folder."""
    folder = args.output_dir / name
    if finished(folder):
        return folder
    if folder.exists():
        run([str(ROOT / "study" / "run_sweep.py"), "--resume", str(folder)])
    else:
        extra = SCHEDULER_OPTIONS[scheduler]  # (promote: the preset's short runs, reduction factor and brackets)
        run([str(ROOT / "study" / "run_sweep.py"), "--preset", args.preset, "--budget", str(args.budget), "--seed",
             str(seed), "--sampler", sampler, *extra, "--output-dir", str(args.output_dir), "--name", name])
    return folder


def fresh(args, sweep_dir: Path) -> pd.DataFrame:
    """The sweep's selected configuration on fresh seeds (its ablation runner, arm iakd_best)."""
    folder = args.output_dir / f"{sweep_dir.name}-fresh"
    if not finished(folder):
        if folder.exists():
            run([str(ROOT / "study" / "run_ablation.py"), "--resume", str(folder)])
        else:
            run([str(ROOT / "study" / "run_ablation.py"), str(sweep_dir), "--arms", "iakd_best", "--seeds",
                 str(args.fresh_seeds), "--name", folder.name, "--output-dir", str(args.output_dir)])
    trials = pd.read_parquet(folder / "trials.parquet")
    return trials[trials["status"] == "COMPLETE"]


def scheduler_label(manifest: dict) -> str:
    """What the sweep's scheduler was, resolved (the default changes with the preset)."""
    s = manifest["settings"]
    if options(manifest).scheduler == "fifo":
        return "fifo"
    if s.get("short_epochs"):
        bracket = f",bracket={s['bracket']}" if s.get("bracket") else ""
        return f"promote:short={s['short_epochs']},rf={s['reduction_factor']:g}{bracket}"
    hedge = f",hedge={s['hedge']}" if s.get("hedge") else ""
    return f"asha:grace={s['grace_epochs']},rf={s['reduction_factor']:g}{hedge}"


def anytime(sweep_dir: Path) -> pd.DataFrame:
    """Best validation accuracy among the COMPLETE trials finished so far, at each trial-epoch count and second."""
    trials = pd.read_parquet(sweep_dir / "trials.parquet")
    epochs = pd.read_parquet(sweep_dir / "epochs.parquet").sort_values("timestamp", kind="stable")
    start = float((epochs["timestamp"] - epochs["epoch_seconds"] - epochs["eval_seconds"].fillna(0)).min())
    complete = trials.set_index("trial_id")["status"].eq("COMPLETE")
    last = trials.set_index("trial_id")["epochs"]
    rows, best = [], float("nan")
    for count, row in enumerate(epochs.itertuples(), start=1):
        if complete.get(row.trial_id, False) and row.epoch == last[row.trial_id]:
            best = row.val_acc if best != best else max(best, row.val_acc)
            rows.append({"trial_epochs": count, "seconds": row.timestamp - start, "best_val": best})
    return pd.DataFrame(rows)


def measure(args, sampler: str, scheduler: str, seed: int) -> tuple[dict, pd.DataFrame]:
    name = f"{sampler}-{scheduler}-s{seed}"
    folder = sweep(args, sampler, scheduler, seed, name)
    manifest = finished(folder)
    trials = pd.read_parquet(folder / "trials.parquet")
    complete = trials[trials["status"] == "COMPLETE"]
    best = complete.loc[complete["val_acc_last"].idxmax()]
    tests = fresh(args, folder)
    row = {"preset": args.preset, "budget": args.budget, "strategy": f"{sampler}+{scheduler}", "seed": seed,
           "scheduler": scheduler_label(manifest), "complete": len(complete), "pruned": int((trials["status"] ==
           "PRUNED").sum()), "trial_epochs": int(trials["epochs"].sum()), "wall_s": round(manifest["wall_seconds"], 1),
           "best_val": float(best["val_acc_last"]), "selected_trial": int(best["trial_number"]),
           "selected_mean_p": round(float(best.get("swap_mean_p", float("nan"))), 4),
           "fresh_test": round(float(tests["test_acc"].mean()), 3), "fresh_seeds": len(tests),
           "fresh_tests": " ".join(f"{v:.2f}" for v in tests.sort_values("seed")["test_acc"]),
           "when": time.strftime("%Y-%m-%d")}
    curve = anytime(folder).assign(strategy=row["strategy"], seed=seed, preset=args.preset, budget=args.budget)
    return row, curve


def append(path: Path, rows: pd.DataFrame) -> None:
    old = pd.read_csv(path) if path.exists() else None
    write_text(path, pd.concat([old, rows], ignore_index=True).to_csv(index=False))


def figure(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, x, label in ((axes[0], "trial_epochs", "trial-epochs"),
                         (axes[1], "minutes", "minutes since the first trial started")):
        sns.lineplot(curves.assign(minutes=curves["seconds"] / 60), x=x, y="best_val", hue="strategy",
                     units="seed", estimator=None, drawstyle="steps-post", alpha=0.7, ax=ax, legend=ax is axes[1])
        ax.set_xlabel(label)
    axes[0].set_ylabel("best val accuracy selected so far (%)")
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), title="strategy (one line per sweep seed)")
    fig.suptitle("Anytime performance of each search strategy (COMPLETE trials only)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def report(table: pd.DataFrame, tested: str) -> bool:
    """Print the factorial; the goal is judged on ``tested`` (TPE with the scheduler under test)."""
    from analysis.stats import paired_comparison

    pd.set_option("display.width", 200)
    summary = table.groupby("strategy", sort=False).agg(
        seeds=("seed", "count"), fresh_test=("fresh_test", "mean"), best_val=("best_val", "mean"),
        trial_epochs=("trial_epochs", "sum"), wall_min=("wall_s", lambda s: s.sum() / 60),
        selected_mean_p=("selected_mean_p", "mean"), scheduler=("scheduler", "first"))
    print(summary.round(3).to_string())
    wide = table.pivot_table(index="seed", columns="strategy", values=["fresh_test", "trial_epochs"])
    if BASELINE not in wide["fresh_test"]:
        return False
    ok = False
    for strategy in summary.index.drop(BASELINE):
        pair = wide[[("fresh_test", strategy), ("fresh_test", BASELINE)]].dropna()
        if len(pair) < 2:
            continue
        epochs = wide.loc[pair.index, "trial_epochs"]
        ratio = epochs[strategy].sum() / epochs[BASELINE].sum()
        differences = pair.iloc[:, 0] - pair.iloc[:, 1]
        if differences.nunique() == 1:  # no spread: a t-interval is undefined, the difference is exact
            c = {"delta": float(differences.iloc[0])}
            outcome = f"{c['delta']:+.2f} on every seed (the same selections)" if not c["delta"] else \
                f"{c['delta']:+.2f} on every seed"
        else:
            c = paired_comparison(pair.iloc[:, 0], pair.iloc[:, 1])
            outcome = f"{c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"
        line = (f"{strategy} - {BASELINE}: fresh-seed test {outcome} (n = {len(pair)} sweep seeds); "
                f"trial-epochs ratio {ratio:.3f}")
        if strategy == tested:
            ok = c["delta"] >= GOAL_DELTA and ratio <= GOAL_RATIO
            line += f" -> goal (delta >= {GOAL_DELTA}, ratio <= {GOAL_RATIO}): {'met' if ok else 'MISSED'}"
        print(line)
    return ok


def main() -> int:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="laptop")
    p.add_argument("--budget", type=positive_int, default=24, help="trials per sweep (default 24)")
    p.add_argument("--seeds", type=positive_int, default=5, help="sweep seeds 0..N-1 (default 5)")
    p.add_argument("--fresh-seeds", type=positive_int, default=3, help="re-runs of each selection (default 3)")
    p.add_argument("--pruned-check", action="store_true", help="also TPE told nothing about PRUNED trials")
    p.add_argument("--scheduler", choices=tuple(SCHEDULER_OPTIONS), default="promote",
                   help="the scheduler under test against FIFO (default promote: every preset's, per bracket)")
    p.add_argument("--output-dir", type=Path, default=ROOT / "results" / "bench" / "search",
                   help="folder of the sweeps and re-runs (default results/bench/search); reused")
    p.add_argument("--record", type=Path, default=MEASURED / "search_factorial.csv",
                   help="the committed table of finished (strategy, seed); its anytime curves beside it")
    p.add_argument("--report-only", action="store_true", help="only print what --record holds")
    args = p.parse_args()
    curves_path = args.record.with_name("search_anytime.csv")
    started = time.time()
    if not args.report_only:
        for seed in range(args.seeds):
            for sampler, scheduler in strategies(args.pruned_check, args.scheduler):
                strategy = f"{sampler}+{scheduler}"
                done = pd.read_csv(args.record) if args.record.exists() else pd.DataFrame(
                    columns=["preset", "budget", "strategy", "seed"])
                if ((done["preset"] == args.preset) & (done["budget"] == args.budget)
                        & (done["strategy"] == strategy) & (done["seed"] == seed)).any():
                    continue
                print(f"[search factorial] seed {seed + 1}/{args.seeds}, {strategy} | elapsed "
                      f"{fmt_seconds(time.time() - started)}", flush=True)
                row, curve = measure(args, sampler, scheduler, seed)
                append(args.record, pd.DataFrame([row]))
                append(curves_path, curve)
    if not args.record.exists():
        fail(f"{args.record} holds nothing yet; run without --report-only")
    table = pd.read_csv(args.record)
    table = table[(table["preset"] == args.preset) & (table["budget"] == args.budget)]
    ok = report(table, f"tpe+{args.scheduler}")
    curves = pd.read_csv(curves_path)
    figure(curves[(curves["preset"] == args.preset) & (curves["budget"] == args.budget)],
           args.record.with_name("search_anytime.png"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
