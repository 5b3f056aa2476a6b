"""Crash-safe tidy results: one row per measurement, keyed, written atomically, resumable.

Each row is one small Parquet file named by a hash of its key, written to a temporary name and
renamed into place (``os.replace`` is atomic on POSIX). A run killed at any moment leaves either
the whole row or nothing; rerunning writes the same key to the same file, so rows are never
duplicated. ``load()`` gathers the rows into one DataFrame; ``consolidate()`` also writes
``results.parquet`` and ``results.csv`` beside the rows for people and notebooks.

Several processes may write into one table at once (a sharded sweep) as long as they write disjoint
keys: each names its temporary files after its ``writer`` and, when restarted after a kill, removes
only its own leftovers; the consolidated files are also replaced atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def _key_id(key: Mapping[str, Any]) -> str:
    text = json.dumps({k: key[k] for k in sorted(key)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write, prefix: str | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (same folder, so atomic).

    The one atomic write of the package: a kill mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a results file is as readable as any other
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class ResultsTable:
    """A folder of atomically written rows; ``key_fields`` identify a row (e.g. method, lr, seed, step)."""

    def __init__(self, root: str | os.PathLike, key_fields: Iterable[str], writer: str = "main"):
        self.root = Path(root)
        self.rows_dir = self.root / "rows"
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        self.key_fields = tuple(key_fields)
        if not writer or not all(c.isalnum() or c in "-_" for c in writer):
            raise ValueError(f"ResultsTable writer name {writer!r}: expected letters, digits, '-' or '_'")
        self._tmp_prefix = f".{writer}."
        # A writer killed between mkstemp and os.replace leaves a partial temp file: never a row, so it
        # is removed here and reported. Only this writer's own: another writer may be mid-write.
        stale = sorted(self.rows_dir.glob(f"{self._tmp_prefix}*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        if stale:
            warnings.warn(f"{self.rows_dir}: removed {len(stale)} partial row file(s) left by an "
                          "interrupted writer; their rows will be recomputed", stacklevel=2)

    def _path(self, key: Mapping[str, Any]) -> Path:
        return self.rows_dir / f"{_key_id(key)}.parquet"

    def key_of(self, row: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in self.key_fields if k not in row]
        if missing:
            raise KeyError(f"results row lacks key field(s) {missing}; expected {self.key_fields}")
        return {k: row[k] for k in self.key_fields}

    def has(self, key: Mapping[str, Any]) -> bool:
        return self._path(key).exists()

    def append(self, row: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> Path:
        """Write one row (plus the resolved config as a JSON column) atomically."""
        record = dict(row)
        if config is not None:
            record["config_json"] = json.dumps(config, sort_keys=True, default=str)
        path = self._path(self.key_of(record))
        frame = pd.DataFrame([record])
        self._write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return path

    def _write_atomic(self, path: Path, write) -> None:
        atomic_write(path, write, prefix=self._tmp_prefix)

    def load(self) -> pd.DataFrame:
        files = sorted(self.rows_dir.glob("*.parquet"))
        if not files:
            return pd.DataFrame(columns=list(self.key_fields))
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        present = [k for k in self.key_fields if k in frame.columns]
        return frame.sort_values(present, kind="stable").reset_index(drop=True) if present else frame

    def consolidate(self) -> pd.DataFrame:
        frame = self.load()
        self._write_atomic(self.root / "results.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
        self._write_atomic(self.root / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
        return frame
