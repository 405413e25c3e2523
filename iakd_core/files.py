"""Files written whole or not at all, and their checksums: the one home of the project's file writing.

Every writer goes through :func:`atomic_path`: the content is written to a temporary file of this process in the
destination's folder, then renamed over the destination (atomic on POSIX), so a reader, a concurrent writer or a
kill at any moment sees the old file or the new one, never half of one; a failed write leaves no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    """JSON, indented, values it cannot encode written as their ``str``."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_parquet(df, path: Path) -> None:
    """A pandas DataFrame as Parquet, without its index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def save_torch(obj: Any, path: Path) -> str:
    """``torch.save`` of ``obj``; returns the written file's sha256."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        digest = file_sha256(tmp)
    return digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
