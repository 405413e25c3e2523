"""What every command line of the project shares: the one-line error (exit 2), an argument parser that answers
with it, argument types, durations for progress lines, and the start-up interrupt guard.

Imports nothing heavy (no torch, Ray or Optuna; ``iakd_core/__init__`` loads its modules lazily), so a script can
call :func:`guard_startup` before its own imports load them.
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn


def guard_startup(before: str) -> None:
    """Call first in a script, before its imports load torch and Ray (a few seconds): Ctrl-C or SIGTERM then prints
    one line and exits 130, not a traceback. Nothing is written yet, so the process ends at once (unwinding through
    a half-imported C extension fails); ``study.cli.run_command`` takes over once the imports are done."""
    def stop(*_: object) -> None:
        print(f"interrupted during start-up, {before}", file=sys.stderr, flush=True)
        os._exit(130)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop)


def display_path(path: Path, base: Path | str | None = None) -> str:
    """``path`` relative to ``base`` (default: the current directory) when it lies inside it, else absolute: what
    a message or a report prints, so that the command it shows can be pasted."""
    base = Path.cwd() if base is None else Path(base)
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix() or "."
    except ValueError:
        return str(Path(path).resolve())


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'laptop'?)`` for the closest of ``choices`` to a mistyped ``word`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_preset(name: str, presets) -> str:
    return f"unknown preset {name!r}{did_you_mean(name, presets)}; choose one of: {', '.join(presets)}"


def fail(message: str) -> NoReturn:
    """One line on stderr, exit code 2: the project's answer to bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def fmt_seconds(s: float) -> str:
    """A duration for a progress line: ``4m05s``, ``1h02m``."""
    s = int(max(s, 0))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors, and without prefix matching: ``--hedg`` is an error with a
    suggestion, not silently ``--hedge`` (a mistyped option must never start hours of work)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # argparse's usage dump -> the project's one-line error, exit 2
        if message.startswith("unrecognized arguments: "):
            parsers = [self, *(sub for action in self._actions if isinstance(action, argparse._SubParsersAction)
                               for sub in action.choices.values())]
            options = [o for parser in parsers for action in parser._actions for o in action.option_strings]
            hints = [did_you_mean(word.split("=")[0], options) for word in message.split(": ", 1)[1].split()
                     if word.startswith("-")]
            message += "".join(h.replace(" (", "; ", 1).rstrip(")") for h in hints if h)
        fail(message)


def whole_number(text: str, minimum: int) -> int:
    """An argparse value: a whole number of at least ``minimum``, else the reason in words."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be " + ("0 or more" if minimum == 0 else
                                                                 f"at least {minimum}"))
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return whole_number(text, 0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value
