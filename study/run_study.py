#!/usr/bin/env python
"""The whole study in one command: for each setting (preset), the IAKD sweep, a sweep of each tuned baseline (KD by
default) with the same sampler, scheduler and budget, then the ablation of the IAKD sweep's best config with the
tuned baselines' bests as arms (kd_tuned), then a seed top-up of the arms the verdict rests on (the student, KD,
KD tuned, IAKD's best and its best that swaps) to the seeds their paired spread needs for a 95 % CI of ±0.5
points, re-sized once those have run until the CI meets it (an internal pilot; at most --max-seeds; none when the
first seeds suffice); then one report over every setting (Table 1 = methods x settings).

    python study/run_study.py                                   # --presets laptop,laptop-wrn
    python study/run_study.py --presets laptop,laptop-wrn --budget 64 --seeds 9
    python study/run_study.py ... --address ray://head:10001    # on a Ray cluster

Writes results/studies/<name>/ (default name: the presets joined by '+'): <preset>-sweep/, <preset>-<method>-sweep/
and <preset>-ablation/ (its top-up adds trials there)
(the run folders study/run_sweep.py and study/run_ablation.py make), study.json (the plan and every stage's
status and seconds), report.md / report.html and figures/. Each stage is the real command, run as a child
process. Re-running the same command continues: finished stages are skipped, an interrupted one is resumed
(--resume), the report is rewritten. Ctrl-C or SIGTERM stops the running stage cleanly (its tables are written)
and exits 130. Duration on 2 cores: README.md ("One command for the whole study").
"""

from __future__ import annotations

from iakd_core.console import guard_startup

guard_startup("before any stage")  # Ctrl-C while the imports below load torch and Ray: one line, exit 130

import argparse
import ctypes
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from iakd_core.cli import check_output_dir
from iakd_core.config import METHOD_NAMES
from iakd_core.console import OneLineParser, did_you_mean, fail, fmt_seconds, positive_int
from iakd_core.files import write_json
from iakd_core.methods import searched_hyperparameters
from iakd_core.presets import CI_HALFWIDTH, MAX_SEEDS, PRESETS, STUDY_PRESETS, ablation_seeds
from study.cli import add_search_options, asha_only_conflict, search_arguments

ROOT = Path(__file__).resolve().parent.parent
PLAN_KEYS = ("presets", "budget", "seeds", "max_seeds", "arms", "tune_baselines", "search")  # a re-run repeats them
# What studies recorded before a plan key existed did; one from before the top-up stage gets it on its next run.
PLAN_BEFORE = {"tune_baselines": [], "search": [], "max_seeds": MAX_SEEDS}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=",".join(STUDY_PRESETS),
                   help=f"comma-separated settings, one sweep + ablation each (default {','.join(STUDY_PRESETS)})")
    p.add_argument("--budget", type=positive_int, default=64, help="sweep trials per setting (default 64)")
    p.add_argument("--seeds", type=positive_int,
                   help="ablation seeds per arm in every setting (default: each preset's, "
                   f"{', '.join(f'{p} {ablation_seeds(p)}' for p in STUDY_PRESETS)})")
    p.add_argument("--max-seeds", type=positive_int, default=MAX_SEEDS,
                   help="the top-up's ceiling: the verdict's arms get at most this many seeds in all (default "
                   f"{MAX_SEEDS}; at most --seeds: no top-up)")
    p.add_argument("--arms", help="comma-separated ablation arms (default: every arm that applies; see "
                   "run_ablation.py --help)")
    p.add_argument("--tune-baselines", default="kd", metavar="METHODS",
                   help="comma-separated baselines tuned by their own sweep with the IAKD sweep's budget, each "
                   "then an ablation arm <method>_tuned (default kd; 'none' for none)")
    add_search_options(p, study=True)
    p.add_argument("--name", help="study folder name (default: the presets joined by '+')")
    p.add_argument("--output-dir", default="results/studies", help="where study folders go")
    p.add_argument("--address", help="Ray cluster address for every stage (default: a private local Ray)")
    p.add_argument("--data-root", help="dataset folder (default data)")
    p.add_argument("--teacher-cache", help="teacher cache folder (default results/teachers)")
    return p


def plan_stages(args: argparse.Namespace, presets: list[str], study_dir: Path) -> list[dict[str, Any]]:
    """The stages in order: per preset a sweep, then its ablation (each a folder inside the study folder), with
    the command that starts each (an unfinished one is resumed instead)."""
    paths = [f"--{name.replace('_', '-')}={value}" for name, value in
             (("data_root", args.data_root), ("teacher_cache", args.teacher_cache)) if value]
    arms = [f"--arms={args.arms}"] if args.arms else []
    search = search_arguments(args)  # the same search for every sweep: IAKD's and each tuned baseline's
    concurrency = [f"--concurrency={args.concurrency}"] if args.concurrency else []
    stages = []
    for preset in presets:
        sweep, ablation = study_dir / f"{preset}-sweep", study_dir / f"{preset}-ablation"
        stages.append({"name": f"{preset} sweep", "kind": "sweep", "preset": preset, "dir": sweep.name,
                       "new": ["run_sweep.py", "--preset", preset, "--budget", str(args.budget), "--name",
                               sweep.name, "--output-dir", str(study_dir), *search, *paths]})
        tuned = []
        for method in baselines(args.tune_baselines):
            folder = study_dir / f"{preset}-{method}-sweep"
            stages.append({"name": f"{preset} {method} sweep", "kind": "sweep", "preset": preset,
                           "dir": folder.name,
                           "new": ["run_sweep.py", "--preset", preset, "--method", method, "--budget",
                                   str(args.budget), "--name", folder.name, "--output-dir", str(study_dir), *search,
                                   *paths]})
            tuned += ["--tuned", str(folder)]
        stages.append({"name": f"{preset} ablation", "kind": "ablation", "preset": preset, "dir": ablation.name,
                       "new": ["run_ablation.py", str(sweep), "--seeds", str(args.seeds or ablation_seeds(preset)),
                               "--name", ablation.name, "--output-dir", str(study_dir), *tuned, *arms, *concurrency]})
        stages.append({"name": f"{preset} top-up", "kind": "top-up", "preset": preset, "dir": ablation.name})
    return stages


def pending_top_up(run_dir: Path, max_seeds: int) -> tuple[int, dict[int, list[str]]]:
    """The seeds the verdict's arms should have (``analysis.sensitivity.seeds_to_resolve``, from every seed so far)
    and, per count still to add, the arms that lack it (empty: nothing to add)."""
    from analysis.load import load_run
    from analysis.sensitivity import seeds_to_resolve
    from study.ablation import KEY_ARMS

    run = load_run(run_dir)
    target = seeds_to_resolve(run, max_seeds)
    more = run.manifest.get("more_seeds", {})
    pending: dict[int, list[str]] = {}
    for arm in (a for a in KEY_ARMS if a in run.manifest["arms"]):
        have = len(run.manifest["seeds"]) + len(more.get(arm, []))
        if have < target:
            pending.setdefault(target - have, []).append(arm)
    return target, pending


def key_seeds(run_dir: Path) -> int:
    """The seeds the ablation's student arm has (the verdict's arms are topped up with it)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return len(manifest["seeds"]) + len(manifest.get("more_seeds", {}).get("student", []))


def top_up_commands(run_dir: Path, max_seeds: int, record: dict[str, Any]) -> list[list[str]]:
    """The plain resume an unfinished ablation (a top-up's seeds included) needs first; else the run_ablation.py
    command(s) that top the verdict's arms up to the seeds their spread calls for (each sizing is noted in
    ``record``); else none."""
    if stage_status(run_dir) != "complete":  # seeds already added run first: sizing reads finished seeds only
        return [["run_ablation.py", "--resume", str(run_dir)]]
    target, pending = pending_top_up(run_dir, max_seeds)
    record["goal"] = f"95 % CI half-width <= {CI_HALFWIDTH} points vs the student"
    record["target_seeds"] = target
    if pending:
        record.setdefault("sizings", []).append(target)  # each sizing that added seeds
    return [["run_ablation.py", "--resume", str(run_dir), "--more-seeds", str(count), "--arms", ",".join(arms)]
            for count, arms in pending.items()]


def baselines(text: str) -> list[str]:
    """The methods ``--tune-baselines`` names (none: [])."""
    return [] if text.strip() == "none" else [m.strip() for m in text.split(",") if m.strip()]


def stage_status(run_dir: Path) -> str:
    """``new`` (no folder), ``complete`` or ``unfinished`` (a folder a killed or interrupted stage left)."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return "unfinished" if run_dir.exists() else "new"
    return "complete" if manifest.get("status") == "complete" else "unfinished"


def read_plan(study_dir: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """The study's record; a re-run must ask for the same plan (else one line, exit 2, nothing touched)."""
    path = study_dir / "study.json"
    if not path.exists():
        return {**plan, "stages": {}}
    try:
        record = json.loads(path.read_text())
    except ValueError:
        fail(f"{path} is corrupt; remove the study folder {study_dir} or choose another --name")
    changed = [f"{k} {record.get(k, PLAN_BEFORE.get(k))!r} (asked: {plan[k]!r})" for k in PLAN_KEYS
               if record.get(k, PLAN_BEFORE.get(k)) != plan[k]]
    if changed:
        fail(f"{study_dir} holds a study with other settings: {'; '.join(changed)}; re-run with those, or choose "
             "another --name")
    return record


class Forwarder:
    """SIGINT/SIGTERM to this process go to the running stage (a child in its own session, so a terminal's
    Ctrl-C reaches it once, through here); the stage writes its tables and exits 130."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.interrupted = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle)

    def handle(self, signum, frame) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        print("stopping the running stage (its results so far are kept); re-run the same command to continue",
              file=sys.stderr, flush=True)
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self, argv: list[str]) -> int:
        if self.interrupted:
            return 130
        self.child = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            return self.child.wait()
        finally:
            self.child = None


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM (a clean stop) if this study process dies, even by
    SIGKILL, so no stage runs on orphaned beside a re-run's resume of the same folder."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: an orphaned stage finishes on its own


def stage_seconds(stage: dict[str, Any], record: dict[str, Any], study_dir: Path) -> float | None:
    """How long a finished stage took: as this study recorded it, else its run's own wall time (a stage made by
    hand, before the study command took the folder over)."""
    seconds = record["stages"].get(stage["name"], {}).get("seconds")
    if seconds is None and stage_status(study_dir / stage["dir"]) == "complete":
        seconds = json.loads((study_dir / stage["dir"] / "manifest.json").read_text()).get("wall_seconds")
    return seconds


def eta(stages: list[dict[str, Any]], record: dict[str, Any], study_dir: Path, index: int) -> str:
    """Remaining time, guessed from the stages of the same kind (sweep, ablation) that have finished."""
    spent: dict[str, list[float]] = {}
    for stage in stages[:index]:
        seconds = stage_seconds(stage, record, study_dir)
        if seconds:
            spent.setdefault(stage["kind"], []).append(seconds)
    rest = [s for s in stages[index:] if s["kind"] != "top-up"  # its size is known only once its ablation ran
            and (s is stages[index] or stage_status(study_dir / s["dir"]) != "complete")]  # not what is done
    if any(s["kind"] not in spent for s in rest):
        return "ETA after one sweep and one ablation have run"
    return f"ETA ~{fmt_seconds(sum(sum(spent[s['kind']]) / len(spent[s['kind']]) for s in rest))} + top-ups"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown or not presets:
        hint = did_you_mean(unknown[0], PRESETS) if unknown else ""
        fail(f"unknown preset(s) {unknown or args.presets!r}{hint}; choose from: {', '.join(PRESETS)}")
    if len(set(presets)) != len(presets):
        fail(f"--presets names a setting twice: {args.presets}")
    tunable = [m for m in METHOD_NAMES if m != "iakd" and searched_hyperparameters(m)]
    wrong = [m for m in baselines(args.tune_baselines) if m not in tunable]
    if wrong:
        fail(f"--tune-baselines: {', '.join(wrong)} is not a baseline with hyperparameters to tune; choose from "
             f"{', '.join(tunable)} (or none)")
    for preset in presets:
        if conflict := asha_only_conflict(args, args.scheduler or PRESETS[preset]["sweep"].get("scheduler", "asha")):
            fail(conflict)
    out = Path(args.output_dir)
    check_output_dir(out)
    study_dir = out.resolve() / (args.name or "+".join(presets))
    seeds = args.seeds or {preset: ablation_seeds(preset) for preset in presets}
    plan = {"presets": presets, "budget": args.budget, "seeds": seeds, "max_seeds": args.max_seeds, "arms": args.arms,
            "tune_baselines": baselines(args.tune_baselines), "search": search_arguments(args)}
    record = read_plan(study_dir, plan)
    record.update(plan)  # a study recorded before a plan key existed now records the value it runs with
    study_dir.mkdir(parents=True, exist_ok=True)
    record.update(command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), address=args.address)
    stages = plan_stages(args, presets, study_dir)
    forwarder = Forwarder()
    started = time.time()
    total = len(stages) + 1
    for index, stage in enumerate(stages):
        run_dir = study_dir / stage["dir"]
        status = stage_status(run_dir)
        head = f"[study {index + 1}/{total}] {stage['name']}"
        if stage["kind"] == "top-up":
            entry = record["stages"].setdefault(stage["name"], {"dir": stage["dir"], "seconds": 0.0})
            commands = top_up_commands(run_dir, args.max_seeds, entry)
            if not commands:
                entry.update(status="complete", seeds=key_seeds(run_dir))
                print(f"{head}: the verdict's arms have their {entry['seeds']} seeds", flush=True)
                write_json(study_dir / "study.json", record)
                continue
        elif status == "complete":
            print(f"{head}: finished earlier, skipped", flush=True)
            continue
        else:
            commands = [stage["new"] if status == "new" else [f"run_{stage['kind']}.py", "--resume", str(run_dir)]]
        if stage["kind"] == "top-up":
            verb = "resuming its seeds" if status != "complete" else f"topping up to {entry['target_seeds']} seeds"
        else:
            verb = "starting" if status == "new" else "resuming"
        print(f"{head}: {verb} | elapsed {fmt_seconds(time.time() - started)} | "
              f"{eta(stages, record, study_dir, index)}", flush=True)
        entry = record["stages"].setdefault(stage["name"], {"dir": stage["dir"], "seconds": 0.0})
        stage_start = time.time()
        while True:
            for command in commands:
                code = forwarder.run([sys.executable, str(ROOT / "study" / command[0]), *command[1:],
                                      *(["--address", args.address] if args.address else [])])
                if code != 0:
                    break
            if stage["kind"] != "top-up" or code != 0 or stage_status(run_dir) != "complete":
                break
            commands = top_up_commands(run_dir, args.max_seeds, entry)  # re-sized on every seed so far
            if not commands:
                break
            print(f"{head}: re-sized on the seeds so far: topping up to {entry['target_seeds']} seeds", flush=True)
        entry["seconds"] = round(entry["seconds"] + time.time() - stage_start, 1)
        entry["status"] = stage_status(run_dir)
        if stage["kind"] == "top-up":
            entry["seeds"] = key_seeds(run_dir)
        write_json(study_dir / "study.json", record)
        if code != 0 or entry["status"] != "complete":
            why = "interrupted" if code in (0, 130) or forwarder.interrupted else f"failed (exit {code})"
            print(f"{head}: {why}; re-run the same command to continue", file=sys.stderr, flush=True)
            return 130 if why == "interrupted" else code
    ablations = [str(study_dir / s["dir"]) for s in stages if s["kind"] == "ablation"]
    print(f"[study {total}/{total}] report over {len(ablations)} setting(s) | elapsed "
          f"{fmt_seconds(time.time() - started)}", flush=True)
    code = forwarder.run([sys.executable, str(ROOT / "analysis" / "report.py"), *ablations, "--out", str(study_dir)])
    if code == 0:
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json(study_dir / "study.json", record)
        print(f"study done in {fmt_seconds(time.time() - started)} -> {study_dir / 'report.md'}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
