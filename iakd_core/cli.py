"""Command line: ``iakd train`` (one configuration, no sweep) and ``iakd teacher`` (train or load a teacher).

    python -m iakd_core train --preset laptop --method iakd --swap-p0 0.3 --json
    python -m iakd_core train --config results/sweeps/<run>/best_config.json --output-dir students/best
    python -m iakd_core teacher --preset laptop

Every ``TrialConfig`` field is an option (``--help`` lists them with their meaning). Defaults come from the preset,
then from ``--config FILE`` (JSON or YAML: a config mapping, or a sweep's ``best_config.json``), then flags.
``--output-dir`` writes the trained student (see docs/results.md). Bad input prints one line ``error: ...`` and
exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, TrialConfig, fields_where
from .console import OneLineParser, fail, unknown_preset
from .files import write_text
from .methods import method_overrides
from .presets import DEFAULT_PRESET, PRESETS, preset_config

# ``iakd teacher`` offers only what shapes a teacher: no student, swap or loss knobs (the recipe is CE only).
SKIP = {"train": frozenset(),
        "teacher": fields_where("swap", "loss") | {"student", "method", "units_per_stage", "epochs", "seed",
                                                   "evaluate_test"}}


def shown(value: Any) -> str:
    """A default as --help prints it: a sequence comma-separated, an empty one or None as 'none'."""
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def add_config_options(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset(),
                       preset: str | None = None) -> None:
    """One ``--option`` per TrialConfig field (values are validated later by ``TrialConfig.from_dict``); the
    default each help line shows is the one the run gets: the preset's value, else TrialConfig's."""
    values = preset_config(preset) if preset in PRESETS else {}
    group = parser.add_argument_group(f"trial configuration (defaults shown: preset {preset}'s, else "
                                      "TrialConfig's)" if values else "trial configuration")
    for f in dataclasses.fields(TrialConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = f.metadata
        extra = f" [{', '.join(meta['choices'])}]" if "choices" in meta else ""
        help_text = f"{meta['help']}{extra} (default: {shown(values.get(f.name, f.default))})"
        if f.type == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, default=None, metavar=f.name.upper(), help=help_text)


def read_config_file(path: str) -> dict[str, Any]:
    """A config mapping from a JSON or YAML file; a sweep's ``best_config.json`` ({"config": {...}, ...}) too."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path} ({err.strerror or err}); give an existing JSON/YAML "
                          "file") from None
    import yaml  # pyyaml (a dependency)

    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {path} is not valid {'JSON' if file.suffix == '.json' else 'YAML'} "
                          f"({str(err).splitlines()[0]})") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys to values")
    return data


def config_from_args(args: argparse.Namespace, skip: frozenset[str] = frozenset()) -> TrialConfig:
    """The preset, then ``--config FILE``, then ``--method``'s literature weights, then explicit flags."""
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrialConfig)
                 if f.name not in skip and getattr(args, f.name, None) is not None}
    base = preset_config(args.preset)
    if getattr(args, "config", None):
        base.update(read_config_file(args.config))
    method = overrides.pop("method", None)
    if method is not None:
        base.update(method_overrides(method))
    return TrialConfig.from_dict(base, **overrides)


def check_output_dir(folder: Path) -> None:
    """Fail now, not after training, when ``folder`` cannot be written: create it (if needed) and a probe file in
    it, the only test of writability that also holds for root, read-only mounts and /proc."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to --output-dir {folder} ({err.strerror or err}); choose a writable "
                          "folder") from None


def _progress(prefix: str, epochs: int):
    def report(m: dict[str, Any]) -> None:
        swap = f" swap {m['swap_rate']:.2f}" if "swap_rate" in m else ""
        print(f"{prefix} epoch {m['epoch']}/{epochs}: loss {m['loss']:.4f} val_acc {m['val_acc']:.2f}%{swap} "
              f"lr {m['lr']:.4g} {m['images_per_second']:.0f} img/s", file=sys.stderr, flush=True)

    return report


def _logged(report, path: Path):
    """``report``, and each epoch's metrics as one JSON line in ``path`` (started afresh, flushed per epoch)."""
    log = path.open("w")

    def both(m: dict[str, Any]) -> None:
        log.write(json.dumps(m, default=str) + "\n")
        log.flush()
        report(m)

    return both


def config_text(config: dict[str, Any], path: str | Path, header: str = "") -> str:
    """A config as YAML (``.yaml``/``.yml``) or JSON (anything else), readable back with ``--config``."""
    if Path(path).suffix in (".yaml", ".yml"):
        import yaml

        return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
    return json.dumps(config, indent=2) + "\n"


def preset_files() -> dict[str, str]:
    """``configs/<preset>.yaml`` for every preset: its resolved config, loadable with ``--config``, with the
    preset's description and sweep settings as comments (made from the registry: tests check the files match)."""
    out = {}
    for name, preset in PRESETS.items():
        sweep = ", ".join(f"{k} {v}" for k, v in preset.get("sweep", {}).items())
        header = (f"# preset {name}: {preset.get('description', '')}\n# sweep defaults: {sweep}\n"
                  f"# generated from iakd_core/presets.py by: python -m iakd_core configs (do not edit: change the "
                  f"registry)\n")
        out[f"{name}.yaml"] = config_text(TrialConfig.from_dict(preset_config(name)).to_dict(), "x.yaml", header)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["configs"]:  # (re)write configs/<preset>.yaml from the preset registry
        folder = Path(argv[1] if len(argv) > 1 else "configs")
        for name, text in preset_files().items():
            write_text(folder / name, text)
        print(f"wrote {len(PRESETS)} preset configs to {folder}/")
        return 0
    first = argparse.ArgumentParser(add_help=False)  # --help shows the defaults of the preset asked for
    first.add_argument("--preset", default=DEFAULT_PRESET)
    chosen = first.parse_known_args(argv)[0].preset
    parser = OneLineParser(prog="iakd", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("train", "train one configuration and print its final metrics"),
                            ("teacher", "train the preset's teacher (or load it from the cache) and print it")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--preset", default=DEFAULT_PRESET, help=f"starting config: {', '.join(PRESETS)}")
        p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
        p.add_argument("--config", metavar="FILE", help="JSON/YAML config (or a sweep's best_config.json) applied "
                                                        "over the preset; flags override it")
        p.add_argument("--dump-config", metavar="FILE", help="write the resolved config (preset, --config, flags) "
                       "to FILE (.yaml/.yml or .json) and exit without training")
        if name == "train":
            p.add_argument("--output-dir", metavar="DIR", help="write student.pt, student_best.pt (if the best "
                                                                "epoch is not the last), config.json, metrics.json "
                                                                "and log.jsonl (one line per epoch)")
        add_config_options(p, SKIP[name], chosen)
    args = parser.parse_args(argv)
    from .data import DataUnavailableError
    from .teacher import TeacherCacheError, get_teacher
    from .trial import run_trial
    from .units import IncompatiblePairError

    try:
        if args.preset not in PRESETS:
            fail(unknown_preset(args.preset, PRESETS))
        cfg = config_from_args(args, SKIP[args.command])
        if args.dump_config:
            write_text(Path(args.dump_config), config_text(cfg.to_dict(), args.dump_config))
            print(f"wrote {args.dump_config}")
            return 0
        if args.command == "teacher":
            start = time.perf_counter()
            _, meta, cached = get_teacher(cfg, progress=_progress(f"teacher {cfg.teacher}", cfg.teacher_epochs))
            out = {"teacher": cfg.teacher, "cached": cached, "val_acc": meta["val_acc"],
                   "test_acc": meta.get("test_acc"), "key": meta.get("key"), "source": meta.get("source"),
                   "seconds": round(time.perf_counter() - start, 2)}
        else:
            report = _progress(f"{cfg.method} {cfg.student}", cfg.epochs)
            if args.output_dir:
                check_output_dir(Path(args.output_dir))
                report = _logged(report, Path(args.output_dir) / "log.jsonl")
            out = run_trial(cfg, report, output_dir=args.output_dir)
    except (ConfigError, DataUnavailableError, TeacherCacheError, IncompatiblePairError) as err:
        fail(str(err))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
