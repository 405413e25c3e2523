"""``run_trial(config, report) -> final metrics``: the one function sweeps and the command line call."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .config import TrialConfig
from .data import load_splits, load_test
from .files import save_torch, write_json
from .methods import build_method
from .models import Backbone, build_model
from .targets import build_table, load_table, needs_kd_logits_only, table_applies
from .teacher import get_teacher
from .train import evaluate, fit, pick_device, place, resolve_precision
from .units import check_granularity


def targets_network(teacher, cfg: TrialConfig, device: torch.device):
    """The network that computes whole-teacher targets (KD logits, feature hints) for a teacher placed as
    ``run_trial`` places it. On CPU a no_grad forward of contiguous inputs through a copy of the channels-last
    teacher measured faster than the channels-last teacher on channels-last inputs (bench/bench_precision.py: 2191
    vs 1491 img/s), while the student's steps and the hybrid's teacher units are faster in channels-last: there,
    the copy computes the targets (``Method.teacher_outputs`` makes its inputs contiguous). Elsewhere, the teacher."""
    if cfg.channels_last and device.type == "cpu":
        return place(copy.deepcopy(teacher), device, channels_last=False)
    return teacher


def contiguous_targets(teacher, cfg: TrialConfig, device: torch.device):
    """``targets_network`` where the method computes teacher targets online and it is a copy, else None."""
    if teacher is None or not (cfg.kd_weight > 0 or cfg.feature_kind != "none"):
        return None
    network = targets_network(teacher, cfg, device)
    return None if network is teacher else network


def prepare_kd_targets(cfg: TrialConfig, teacher, teacher_meta: dict[str, Any], data, device: torch.device,
                       progress=None) -> dict[str, Any] | None:
    """Build (or find) the table of KD targets that ``run_trial`` reads for ``cfg``'s teacher and data, where a
    run of ``cfg`` on ``device`` uses one (``targets.table_applies``): a sweep's or ablation's driver calls this
    once before its trials. Returns facts for a manifest, or None."""
    if not table_applies(cfg, data, device):
        return None
    network = targets_network(place(teacher, device, cfg.channels_last), cfg, device)
    return build_table(cfg, network, teacher_meta, data, device, progress)[1]


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """A CPU, contiguous ``state_dict`` written atomically (loadable with ``torch.load(..., weights_only=True)``)."""
    save_torch({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, path)


def run_trial(config: dict[str, Any] | TrialConfig, report: Callable[[dict[str, Any]], None] | None = None,
              *, output_dir: str | Path | None = None, student_file: str | Path | None = None) -> dict[str, Any]:
    """Validate ``config``, train one run, return its final metrics (val last/best, test only if asked).

    ``output_dir``: write ``student.pt`` (last epoch), ``student_best.pt`` (best validation epoch, when it is not
    the last), ``config.json`` (the validated config) and ``metrics.json`` there. ``student_file``: write only the
    last-epoch student's ``state_dict`` to that path. Both are written after training, atomically.

    >>> metrics = run_trial({"dataset": "synthetic", "teacher": "resnet14", "student": "resnet8",
    ...                      "epochs": 1, "teacher_epochs": 1, "teacher_cache": "/tmp/iakd-doctest"})  # doctest: +SKIP
    """
    started = time.perf_counter()
    cfg = TrialConfig.from_dict(config)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.method == "iakd":  # an impossible pairing fails now, not after the teacher has been trained
        check_granularity(cfg.teacher, cfg.student, cfg.units_per_stage)
    device = pick_device(cfg.device)
    data = load_splits(cfg)
    teacher: Backbone | None = None
    teacher_meta: dict[str, Any] = {}
    if cfg.uses_teacher:
        teacher, teacher_meta, _ = get_teacher(cfg, data, device)
        teacher = place(teacher, device, cfg.channels_last)
    kd_table = None  # KD logits looked up instead of computed (iakd_core.targets), where a driver built them
    if needs_kd_logits_only(cfg) and table_applies(cfg, data, device):
        kd_table = load_table(cfg, teacher_meta, data)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, data.num_classes, data.in_channels)
    # the online network stays as it is without a table: batches under MIN_TABLE_BATCH images still use it
    method = place(build_method(cfg, student, teacher, contiguous_targets(teacher, cfg, device)), device,
                   cfg.channels_last)
    result = fit(method, data, cfg, device, report, keep_best=output_dir is not None, kd_targets=kd_table)
    last, best = result.history[-1], result.best
    final = {
        "epochs": last["epoch"], "val_acc": last["val_acc"], "val_acc_best": best["val_acc"],
        "best_epoch": best["epoch"], "train_seconds": result.train_seconds,
        "images_per_second": result.images / max(result.train_seconds, 1e-9),
        "trial_seconds": time.perf_counter() - started,
        "student_params": sum(p.numel() for p in student.parameters()),
        "teacher_val_acc": teacher_meta.get("val_acc"),
        "device": str(device), "precision": resolve_precision(cfg.precision, device),
        "kd_targets": "table" if kd_table is not None else "online" if cfg.kd_weight > 0 else None,
    }
    if cfg.evaluate_test:  # final evaluation only: the last-epoch student on the official test set
        final["test_acc"] = evaluate(student, load_test(cfg, data), cfg, device)["acc"]
    if student_file is not None:
        save_weights(student.state_dict(), Path(student_file))
    if output_dir is not None:
        out = Path(output_dir)
        save_weights(student.state_dict(), out / "student.pt")
        if best["epoch"] != last["epoch"] and result.best_state is not None:
            save_weights(result.best_state, out / "student_best.pt")
        else:  # never leave an earlier run's best beside this run's student
            (out / "student_best.pt").unlink(missing_ok=True)
        write_json(out / "config.json", cfg.to_dict())
        write_json(out / "metrics.json", final)
    return final
