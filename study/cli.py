"""What the command lines of study/ share: one-line errors (exit 2), argument types, the output-folder check,
and ``main`` wrapping that turns known problems into one line and an interrupt into exit 130."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

MLFLOW_DEFAULT = "mlflow.db"  # --mlflow without a URI: a SQLite store in the run folder (resolved per session)


def fail(message: str) -> None:
    """One line on stderr, exit code 2: the project's answer to bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump -> the project's one-line error, exit 2
        fail(message)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


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


def run_command(main: Callable[[], int]) -> int:
    """Run a command's ``main``: errors the user can fix -> one line and exit 2; Ctrl-C or SIGTERM before the
    runner installs its own handlers -> one line and exit 130."""
    from iakd_core.config import ConfigError
    from iakd_core.data import DataUnavailableError
    from iakd_core.teacher import TeacherCacheError
    from iakd_core.units import IncompatiblePairError

    from .runner import RunError

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the scripts' import-time handler is done
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))  # until Ray starts
    try:
        return main()
    except (ConfigError, DataUnavailableError, TeacherCacheError, IncompatiblePairError, RunError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        print("interrupted during start-up, before this session ran any trial", file=sys.stderr)
        return 130
    return 0
