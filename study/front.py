"""``iakd``: the one front door to every command of the harness. Each subcommand runs exactly the code of its
script (the script is executed as ``__main__`` with the remaining arguments), so ``iakd sweep --budget 64`` and
``python study/run_sweep.py --budget 64`` are the same run; ``iakd train`` and ``iakd teacher`` are
``python -m iakd_core``.

    iakd sweep --budget 64            iakd ablate results/sweeps/<run>       iakd study
    iakd report results/ablations/<run>                                       iakd plots
    iakd train --preset laptop --method iakd --swap-p0 0.3                    iakd teacher --preset laptop
    iakd pool                         iakd replay results/pool/laptop        iakd dashboard results/sweeps/<run>
"""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

from iakd_core.console import did_you_mean, display_path, fail

ROOT = Path(__file__).resolve().parent.parent
# subcommand -> (script relative to the project, what it does); train and teacher are iakd_core.cli's
SCRIPTS = {
    "sweep": ("study/run_sweep.py", "search a setting's IAKD space (Ray Tune, Optuna, ASHA)"),
    "ablate": ("study/run_ablation.py", "a sweep's best config vs baselines and one-factor variants, fresh seeds"),
    "study": ("study/run_study.py", "every setting's sweeps and ablation, then one report"),
    "report": ("analysis/report.py", "report.md + report.html of a run or of several ablations"),
    "plots": ("analysis/plots.py", "every figure of every run (or one)"),
    "pool": ("study/run_pool.py", "the learning-curve pool for scheduler replay"),
    "replay": ("study/run_replay.py", "replay trial schedulers on a pool, or check one against a recorded sweep"),
}
CORE = {"train": "train one configuration", "teacher": "train or load a preset's teacher",
        "configs": "(re)write configs/<preset>.yaml from the preset registry"}
OTHER = {"dashboard": "open a sweep's or ablation's Optuna study in optuna-dashboard, on 127.0.0.1 only"}


def usage() -> str:
    rows = [*((name, text) for name, (_, text) in SCRIPTS.items()), *CORE.items(), *OTHER.items()]
    return "usage: iakd <command> [options]   (iakd <command> --help for its options)\n\ncommands:\n" + "\n".join(
        f"  {name:<10} {text}" for name, text in rows)


def dashboard(args: list[str]) -> int:
    """``optuna-dashboard`` on the run's ``optuna.db``, bound to loopback (the study is the user's data)."""
    if not args or args[0].startswith("-"):
        fail("give a run folder: iakd dashboard results/sweeps/<run> [--port 8080]")
    run, rest = Path(args[0]), args[1:]
    db = run / "optuna.db"
    if not db.exists():
        fail(f"{run} holds no optuna.db: give a sweep or ablation folder (ablations made before they recorded "
             "one have none)")
    exe = shutil.which("optuna-dashboard")
    if exe is None:
        fail("optuna-dashboard is not installed: pip install optuna-dashboard (or pip install -e '.[dashboard]')")
    port = rest[rest.index("--port") + 1] if "--port" in rest else "8080"
    print(f"optuna-dashboard on http://127.0.0.1:{port}/ for {display_path(db)} (Ctrl-C stops it)", flush=True)
    return subprocess.call([exe, "--host", "127.0.0.1", "--port", port, f"sqlite:///{db.resolve()}"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in CORE:
        from iakd_core.cli import main as core_main

        return core_main([command, *rest])  # (configs takes an optional folder, not options)
    if command == "dashboard":
        return dashboard(rest)
    if command not in SCRIPTS:
        known = [*SCRIPTS, *CORE, *OTHER]
        fail(f"unknown command {command!r}{did_you_mean(command, known)}; choose one of: {', '.join(known)}")
    script = ROOT / SCRIPTS[command][0]
    sys.argv = [str(script), *rest]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
