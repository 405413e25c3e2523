"""Rung reliability from a sweep's own files: Spearman's rho of each rung with the final value, top-k recall, the
warning when a rung would cut a final top trial, and the learning-curve figure (synthetic epochs tables)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.load import load_run
from analysis.plots import plot_run
from analysis.report import build_report
from analysis.rungs import rung_reliability, rung_warnings
from analysis.summaries import rung_epochs

SETTINGS = {"max_epochs": 9, "grace_epochs": 1, "reduction_factor": 3}  # rungs at epochs 1 and 3


def make_fifo_sweep(folder, order: str):
    """12 FIFO trials, all at full fidelity; final value rises with the trial number. ``order`` says how the
    early epochs rank them: the same way (perfect), the reverse way (inverted)."""
    rows, epochs = [], []
    for i in range(12):
        final = 80.0 + i
        early = 60.0 + (i if order == "perfect" else 11 - i)
        rows.append({"trial_id": f"t{i:04d}", "trial_number": i, "status": "COMPLETE", "val_acc_last": final,
                     "method": "iakd", "swap_schedule": "constant", "swap_p0": 0.5, "swap_mean_p": 0.5,
                     "units_per_stage": 1, "train_seconds": 10.0})
        for epoch in range(1, 10):
            value = early + (final - early) * (epoch - 1) / 8
            epochs.append({"trial_id": f"t{i:04d}", "epoch": epoch, "val_acc": value, "timestamp": 100 * i + epoch})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "trials.parquet")
    pd.DataFrame(epochs).to_parquet(folder / "epochs.parquet")
    (folder / "manifest.json").write_text(json.dumps({
        "kind": "sweep", "budget": 12, "settings": SETTINGS, "args": {"scheduler": "fifo", "sampler": "random"},
        "base_config": {"dataset": "fashion-mnist", "teacher": "resnet26", "student": "resnet14", "epochs": 9},
        "teacher": {"arch": "resnet26"}}))
    return load_run(folder)


def test_rungs_are_asha_milestones():
    assert rung_epochs(SETTINGS) == (1, 3)
    assert rung_epochs({"max_epochs": 15, "grace_epochs": 2, "reduction_factor": 3}) == (2, 6)


def test_a_perfectly_ranking_rung_keeps_the_top_and_gives_no_warning(tmp_path):
    run = make_fifo_sweep(tmp_path / "p", "perfect")
    table = rung_reliability(run)
    assert list(table["rung epoch"]) == [1, 3] and (table["n"] == 12).all()
    assert table["spearman"].tolist() == pytest.approx([1.0, 1.0])
    assert (table["top-3 recall"] == 1.0).all() and (table["would cut"] == "").all()
    assert rung_warnings(run, table) == []


def test_an_inverted_rung_cuts_the_final_top_and_the_report_warns_with_what_to_pass(tmp_path):
    run = make_fifo_sweep(tmp_path / "i", "inverted")
    table = rung_reliability(run)
    first = table.iloc[0]
    assert first["spearman"] == pytest.approx(-1.0) and first["top-3 recall"] == 0.0
    assert first["would cut"] == "11, 10, 9"
    warnings = rung_warnings(run, table)
    assert warnings and "keep --scheduler fifo (ASHA with this rung would have misled), or try --grace-epochs 3" \
        in warnings[0]  # a FIFO sweep: what an ASHA rung there would have done
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    manifest["args"]["scheduler"] = "asha"
    (tmp_path / "i" / "manifest.json").write_text(json.dumps(manifest))
    assert "pass --grace-epochs 3 or --scheduler fifo" in rung_warnings(load_run(tmp_path / "i"))[0]
    manifest["args"]["scheduler"] = "promote"  # the same curves read as a 1-epoch short run, then 8 full epochs
    manifest["settings"] = {**SETTINGS, "max_epochs": 8, "short_epochs": 1}
    (tmp_path / "i" / "manifest.json").write_text(json.dumps(manifest))
    promoting = rung_warnings(load_run(tmp_path / "i"))
    assert len(promoting) == 1 and "rung at epoch 1" in promoting[0] and "pass --short-epochs 2 or --scheduler fifo" \
        in promoting[0]
    manifest["args"]["scheduler"], manifest["settings"] = "asha", SETTINGS
    (tmp_path / "i" / "manifest.json").write_text(json.dumps(manifest))
    text = build_report(run)
    assert "### Rung reliability" in text or "## Rung reliability" in text
    assert "would cut final top-3 trial(s) 11, 10, 9" in text
    assert (tmp_path / "i" / "figures" / "learning_curves.png") in plot_run(run)
