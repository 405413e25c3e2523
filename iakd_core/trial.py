"""``run_trial(config, report) -> final metrics``: the one function sweeps and the command line call."""

from __future__ import annotations

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
from .targets import teacher_targets
from .teacher import get_teacher
from .train import evaluate, fit, pick_device, place, resolve_precision
from .units import check_granularity


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
    targets = teacher_targets(cfg, teacher, teacher_meta, data, device)  # online, a contiguous copy, or a table
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, data.num_classes, data.in_channels)
    method = place(build_method(cfg, student, teacher, targets), device, cfg.channels_last)
    result = fit(method, data, cfg, device, report, keep_best=output_dir is not None)
    last, best = result.history[-1], result.best
    final = {
        "epochs": last["epoch"], "val_acc": last["val_acc"], "val_acc_best": best["val_acc"],
        "best_epoch": best["epoch"], "train_seconds": result.train_seconds,
        "images_per_second": result.images / max(result.train_seconds, 1e-9),
        "trial_seconds": time.perf_counter() - started,
        "student_params": sum(p.numel() for p in student.parameters()),
        "teacher_val_acc": teacher_meta.get("val_acc"),
        "device": str(device), "precision": resolve_precision(cfg.precision, device),
        "kd_targets": targets.source if targets is not None and cfg.kd_weight > 0 else None,
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
