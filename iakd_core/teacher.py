"""Train-or-load teachers, cached on disk under a key that hashes everything that determines them.

Files: ``<cache>/<arch>-<dataset>-<key>.pt`` (a ``state_dict``, loaded with ``weights_only=True``) and a ``.json``
beside it with the key, the recipe, the dataset identity, val/test accuracy, versions and training time.
A file that does not load, or whose metadata does not match the key, raises :class:`TeacherCacheError` naming it.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from .config import TrialConfig, fields_where, stable_hash
from .data import DataSplits, load_splits, load_test
from .factors import reproducibility_factors
from .files import file_sha256, save_torch, write_json
from .methods import method_overrides
from .models import Backbone, build_model

# What determines a trained teacher, besides its architecture, epochs and seed: its recipe's data, optimisation and
# numerics fields (from the TrialConfig field groups), never the runtime-only ones.
RECIPE_FIELDS = fields_where("data", "optimisation", "numerics", runtime_only=False)


class TeacherCacheError(RuntimeError):
    """A cached teacher file that cannot be used."""


def teacher_recipe(cfg: TrialConfig) -> TrialConfig:
    """The config that trains ``cfg``'s teacher: the student recipe, on the teacher architecture, CE only."""
    return TrialConfig.from_dict(cfg, **method_overrides("student"), student=cfg.teacher,
                                 epochs=cfg.teacher_epochs, seed=cfg.teacher_seed,
                                 train_size=cfg.teacher_train_size or cfg.train_size, evaluate_test=False)


def teacher_key(cfg: TrialConfig) -> str:
    recipe = teacher_recipe(cfg).to_dict()
    determining = {k: v for k, v in recipe.items() if k in RECIPE_FIELDS}
    determining.update(arch=cfg.teacher, epochs=cfg.teacher_epochs, seed=cfg.teacher_seed)
    return stable_hash(determining)


def teacher_path(cfg: TrialConfig) -> Path:
    return Path(cfg.teacher_cache).expanduser().resolve() / f"{cfg.teacher}-{cfg.dataset}-{teacher_key(cfg)}.pt"


def _versions() -> dict[str, str]:
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def load_teacher(cfg: TrialConfig, data: DataSplits) -> tuple[Backbone, dict[str, Any]] | None:
    """The cached teacher and its metadata, or None when it is not cached yet."""
    path = teacher_path(cfg)
    meta_path = path.with_suffix(".json")
    if not path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise TeacherCacheError(f"teacher metadata {meta_path} is missing or corrupt ({err}); delete {path} and "
                                "its .json to retrain") from None
    if meta.get("key") != teacher_key(cfg) or meta.get("arch") != cfg.teacher:
        raise TeacherCacheError(f"teacher file {path} does not match this recipe (key {meta.get('key')} vs "
                                f"{teacher_key(cfg)}); delete it to retrain")
    if meta.get("sha256") != file_sha256(path):
        raise TeacherCacheError(f"teacher weights {path} do not match the checksum in {meta_path.name} (the file "
                                "was replaced or edited); delete both files to retrain")
    model = build_model(cfg.teacher, data.num_classes, data.in_channels)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - any unpickling/shape failure means the same thing to the user
        raise TeacherCacheError(f"teacher weights {path} do not load ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:200]}); delete the file to retrain") from None
    return model, meta


def train_teacher(cfg: TrialConfig, device: torch.device | None = None,
                  progress=None) -> tuple[Backbone, dict[str, Any]]:
    """Train the teacher of ``cfg`` with its recipe (on its own train split, ``teacher_train_size``), evaluate it
    on val and test, and save it atomically."""
    from .methods import build_method
    from .train import evaluate, fit, pick_device, place, resolve_precision

    recipe = teacher_recipe(cfg)
    data = load_splits(recipe)
    device = device or pick_device(cfg.device)
    torch.manual_seed(recipe.seed)
    model = place(build_model(cfg.teacher, data.num_classes, data.in_channels), device, recipe.channels_last)
    start = time.time()
    result = fit(build_method(recipe, model, None), data, recipe, device, report=progress)
    model.eval()
    test = evaluate(model, load_test(recipe, data), recipe, device)
    meta = {"key": teacher_key(cfg), "arch": cfg.teacher, "dataset": data.identity, "recipe": recipe.to_dict(),
            "val_acc": result.history[-1]["val_acc"], "test_acc": test["acc"], "epochs": recipe.epochs,
            "precision": resolve_precision(recipe.precision, device), "device": str(device),
            "train_seconds": round(time.time() - start, 2), "versions": _versions(),
            "factors": reproducibility_factors(device, resolve_precision(recipe.precision, device)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = teacher_path(cfg)
    meta["sha256"] = save_torch({k: v.cpu() for k, v in model.state_dict().items()}, path)
    write_json(path.with_suffix(".json"), meta)
    return model.cpu(), meta


def check_state_dict(model: torch.nn.Module, state: Any, source: str) -> None:
    """Raise :class:`TeacherCacheError` naming the first missing, unexpected or wrongly shaped key."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherCacheError(f"{source} is not a state_dict (a mapping of names to tensors); save one with "
                                "torch.save(model.state_dict(), path)")
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise TeacherCacheError(f"{source} lacks {key!r} (shape {tuple(tensor.shape)}) of a {model.name}: "
                                    "it holds another architecture")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise TeacherCacheError(f"{source}: {key!r} has shape {tuple(state[key].shape)}, a {model.name} needs "
                                    f"{tuple(tensor.shape)} (another architecture, width or number of classes)")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise TeacherCacheError(f"{source} has {extra[0]!r}, which a {model.name} does not have: it holds another "
                                "architecture")


def load_outside_teacher(cfg: TrialConfig, data: DataSplits, device: torch.device | None = None
                         ) -> tuple[Backbone, dict[str, Any]]:
    """``cfg.teacher_weights`` (trained elsewhere) as a ``cfg.teacher``, evaluated once on validation."""
    from .train import evaluate, pick_device, place

    path = Path(str(cfg.teacher_weights)).expanduser()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TeacherCacheError(f"teacher weights {path} do not exist; give the path of a saved state_dict") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise TeacherCacheError(f"teacher weights {path} do not load with weights_only=True ({type(err).__name__}: "
                                f"{str(err).splitlines()[0][:160]}); save a plain state_dict") from None
    model = build_model(cfg.teacher, data.num_classes, data.in_channels)
    check_state_dict(model, state, f"teacher weights {path}")
    model.load_state_dict(state)
    device = device or pick_device(cfg.device)
    val = evaluate(place(model, device, cfg.channels_last), data.val, cfg, device)
    meta = {"arch": cfg.teacher, "source": str(path.resolve()), "sha256": file_sha256(path), "val_acc": val["acc"],
            "test_acc": None, "dataset": data.identity}
    return model.cpu(), meta


def get_teacher(cfg: TrialConfig, data: DataSplits | None = None, device: torch.device | None = None,
                progress=None) -> tuple[Backbone, dict[str, Any], bool]:
    """Load the cached teacher or train it (one process at a time per key); with ``cfg.teacher_weights``, load
    that file instead. Returns (model, meta, was_cached)."""
    data = data or load_splits(cfg)
    if cfg.teacher_weights:
        return (*load_outside_teacher(cfg, data, device), True)
    path = teacher_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        cached = load_teacher(cfg, data)
        if cached is not None:
            return (*cached, True)
        return (*train_teacher(cfg, device, progress), False)
