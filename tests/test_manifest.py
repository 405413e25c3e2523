"""The run contract (analysis/manifest.py): options read the same from every version, a renamed flag fails where
the options are recorded, every committed manifest stays readable, a newer contract is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
from contract import documented_manifest_keys

from analysis.load import NotARunError, load_run
from analysis.manifest import FIELDS, VERSION, ManifestError, SearchOptions, options, search_options, version

ROOT = Path(__file__).resolve().parent.parent


def committed_manifests() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*manifest.json"], capture_output=True, text=True, cwd=ROOT,
                            check=True).stdout.split()
    return [ROOT / name for name in listed]


def test_every_committed_manifest_is_readable():
    paths = committed_manifests()
    assert paths, "the reference study's manifests are committed"
    for path in paths:
        manifest = json.loads(path.read_text())
        assert version(manifest) in range(1, VERSION + 1), path
        run = load_run(path.parent)
        if run.kind == "sweep":  # version 1: read from its args, with the defaults of its day
            searched = run.options
            assert searched.sampler in ("tpe", "random", "qmc", "tpe-complete") and searched.method, path
            if version(manifest) == 1:
                args = manifest["args"]
                assert (searched.scheduler, searched.seed) == (args.get("scheduler", "asha"), manifest["seed"])


def test_version_1_defaults_are_the_behaviour_of_their_day():
    old = {"kind": "sweep", "args": {"sampler": "random", "seed": 3, "objective": "acc+cost", "method": None}}
    assert options(old) == SearchOptions(sampler="random", seed=3, objective="acc+cost", method="iakd",
                                         scheduler="asha")


def test_the_sweep_command_records_every_option_and_reads_it_back():
    sys.path.insert(0, str(ROOT / "study"))
    try:
        from run_sweep import build_parser
    finally:
        sys.path.remove(str(ROOT / "study"))
    args = build_parser().parse_args(["--sampler", "random", "--seed", "7", "--objective", "acc+cost",
                                      "--search-optimizer", "--save-students", "--deterministic", "--scheduler",
                                      "fifo", "--method", "kd"])
    recorded = search_options(args).record()
    assert set(recorded) == {f.name for f in fields(SearchOptions)}
    assert options({"kind": "sweep", "version": VERSION, "options": json.loads(json.dumps(recorded))}) == \
        SearchOptions(method="kd", sampler="random", scheduler="fifo", seed=7, objective="acc+cost",
                      search_optimizer=True, save_students=True, deterministic=True)
    del args.save_students  # a flag renamed in the parser: recording fails at once, not analysis later
    with pytest.raises(AttributeError):
        search_options(args)


def test_a_newer_contract_is_refused_in_one_line(tmp_path):
    run = tmp_path / "future"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"kind": "sweep", "version": VERSION + 1, "options": {}}))
    pd.DataFrame({"trial_id": ["a"], "status": ["COMPLETE"]}).to_parquet(run / "trials.parquet")
    with pytest.raises(NotARunError, match=f"contract version {VERSION + 1}, newer than this code's {VERSION}"):
        load_run(run)
    with pytest.raises(ManifestError):
        options({"kind": "ablation", "version": VERSION})  # ablations record no search options
    report = subprocess.run([sys.executable, str(ROOT / "analysis" / "report.py"), str(run)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert report.returncode == 2 and len(report.stderr.strip().splitlines()) == 1, report.stderr
    assert "update the harness" in report.stderr


def test_fields_are_documented():
    documented = documented_manifest_keys()
    for kind, keys in FIELDS.items():
        assert set(keys) <= documented, (kind, set(keys) - documented)
    assert {f.name for f in fields(SearchOptions)} <= documented
