"""What the command lines of study/ share beyond iakd_core/console.py: the search options, the private Ray
environment, the run error, the interrupt flag, the full-disk test, and ``main`` wrapping that turns known problems
into one line and an interrupt into exit 130."""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from iakd_core.console import fail, non_negative_float, non_negative_int, positive_int

MLFLOW_DEFAULT = "mlflow.db"  # --mlflow without a URI: a SQLite store in the run folder (resolved per session)
SEARCH_OPTIONS = ("sampler", "scheduler", "grace_epochs", "reduction_factor", "hedge", "short_epochs", "bracket",
                  "concurrency")


def share(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{value} must be below 1 (a share of the trials)")
    return value


def above_one(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} must be at least 2 (a rung keeps the top 1/this)")
    return value


def add_search_options(p: argparse.ArgumentParser, study: bool = False) -> None:
    """How a sweep searches (``SEARCH_OPTIONS``), defined once for run_sweep.py and run_study.py (which passes
    them to every sweep of the study, IAKD's and the tuned baselines' alike). Unset: the preset's default."""
    from study.schedulers import SAMPLERS, SCHEDULERS

    every = " (every sweep of the study)" if study else ""
    p.add_argument("--sampler", choices=SAMPLERS, default=None if study else "tpe",
                   help=f"Optuna sampler{every} (default tpe; tpe-complete: TPE told nothing about PRUNED trials, "
                   "for bench/bench_search.py)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help=f"trial scheduler{every} (preset's default, promote on every preset: a complete "
                   "--short-epochs run of each configuration first, the top 1/reduction-factor of them then trained "
                   "in full; asha: stop trials at rungs on the way; fifo: train every trial in full)")
    p.add_argument("--grace-epochs", type=positive_int, help=f"ASHA: epochs before a trial can be stopped{every}")
    p.add_argument("--reduction-factor", type=above_one, default=None,
                   help="ASHA: a rung keeps the top 1/this of the trials, a whole number (preset's default)")
    p.add_argument("--hedge", type=share, default=None, metavar="SHARE",
                   help="ASHA: share of trials in a bracket that is never stopped early, which also measures how "
                   "well the rungs rank (preset's default)")
    p.add_argument("--short-epochs", type=positive_int, default=None,
                   help="promote: epochs of each configuration's complete short run (preset's default: a fifth of "
                   "the full run, 3 on laptop)")
    p.add_argument("--bracket", type=non_negative_int, default=None, metavar="N",
                   help="promote: configurations per synchronous bracket, whose top 1/reduction-factor by short run "
                   "are promoted when its last short run is in (preset's default 32, at most half the budget); 0: "
                   "promote against Ray's running cut-off instead (ASHA with one rung)")
    p.add_argument("--concurrency", type=positive_int, help="trials at once (preset's default; 1 in "
                   "--deterministic mode)" if not study else "trials at once in every stage (preset's default)")


def asha_only_conflict(args: argparse.Namespace, scheduler: str) -> str | None:
    """The one-line error when ASHA-only options are set for a sweep whose scheduler is not ASHA, else None."""
    if getattr(args, "bracket", None) is not None and scheduler != "promote":
        return (f"--bracket is for --scheduler promote, but the sweep's scheduler is {scheduler}; add --scheduler "
                "promote")
    named = [f"--{k.replace('_', '-')}" for k in ("grace_epochs", "hedge") if getattr(args, k, None) is not None]
    if not named or scheduler == "asha":
        return None
    return (f"{' and '.join(named)} {'is' if len(named) == 1 else 'are'} for --scheduler asha, but the sweep's "
            f"scheduler is {scheduler}; add --scheduler asha" + (", or set promote's rung with --short-epochs"
                                                                   if scheduler == "promote" else ""))


def search_arguments(args: argparse.Namespace) -> list[str]:
    """The search options set in ``args`` as command-line words for run_sweep.py."""
    return [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in SEARCH_OPTIONS
            if getattr(args, name, None) is not None]


INTERRUPTED = threading.Event()  # set by the runner's SIGINT/SIGTERM handler (study/runner.py)


class RunError(RuntimeError):
    """A problem the user can fix (bad folder, missing resources); the message says what to do."""


# Ray 2.60 binds its servers to loopback only when the node IP it advertises is loopback, and it replaces a loopback
# IP with the routable one unless "cluster mode" is off; cluster mode is read once, when Ray is imported.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def private_ray_environment(address: str | None, resume: str | None = None) -> None:
    """Call before anything imports Ray. For a private local Ray (no ``--address``, none recorded in the resumed
    run): every Ray server on loopback, and token authentication with a token of this session only, passed to
    Ray's processes through their environment (nothing written to ``~/.ray/auth_token``). A user's own
    ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` are respected. With an address (a real
    cluster) nothing changes."""
    if resume and not address:
        try:
            address = json.loads(Path(resume, "manifest.json").read_text()).get("address")
        except (OSError, ValueError, AttributeError):
            address = None  # the resume itself reports an unreadable run
    if address or os.environ.get("RAY_ADDRESS"):  # a cluster (ray.init reads RAY_ADDRESS too)
        return
    os.environ.update(LOOPBACK_ENV)
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def exit_now(code: int) -> None:
    """End the process with ``code`` once everything is written, without the interpreter's exit handlers: after an
    interrupted session, tensorboardX writers that Ray Tune left open can wait forever in theirs (seen after a
    SIGINT: a logger thread joined on a queue whose feeder was already gone). Ray is shut down explicitly first."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# How a full disk shows, depending on who wrote: the OS, SQLite, torch.save's zip writer.
DISK_FULL = ("No space left on device", "database or disk is full", "unexpected pos")


def disk_full(err: BaseException | str | None) -> bool:
    """Whether an error (or any error it was raised from, or a recorded error message) is a full disk."""
    if isinstance(err, str):
        return any(text in err for text in DISK_FULL)
    while err is not None:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC or any(text in str(err) for text in DISK_FULL):
            return True
        err = err.__cause__ or err.__context__
    return False


def run_command(main: Callable[[], int]) -> int:
    """Run a command's ``main``: errors the user can fix -> one line and exit 2; Ctrl-C or SIGTERM before the
    runner installs its own handlers -> one line and exit 130."""
    from analysis.manifest import ManifestError
    from iakd_core.config import ConfigError
    from iakd_core.data import DataUnavailableError
    from iakd_core.teacher import TeacherCacheError
    from iakd_core.units import IncompatiblePairError

    def interrupt(*_: object) -> None:  # the scripts' import-time handler is done; until the runner's own
        INTERRUPTED.set()  # noted first: Python swallows the exception where it lands in a fork callback
        raise KeyboardInterrupt

    def quiet_if_interrupt(unraisable) -> None:  # ... and prints it there as "Exception ignored": not ours to show
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    sys.unraisablehook = quiet_if_interrupt
    try:
        return main()
    except (ConfigError, DataUnavailableError, TeacherCacheError, IncompatiblePairError, RunError,
            ManifestError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        print("interrupted during start-up, before this session ran any trial", file=sys.stderr)
        return 130
    except Exception as err:
        if not disk_full(err):
            raise
        print("error: the disk of the run folder is full: every trial that finished is kept in its record; free "
              "space, then continue the run with --resume <run folder>", file=sys.stderr)
        return 2  # returned, not raised: exit_now shuts Ray down first
    return 0
