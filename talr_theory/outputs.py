"""Output folders and files that are never mixed, never half-written and checked before any work.

Three guarantees, shared by every command that writes results:

* **One folder = one experiment.** ``claim_folder`` stores the resolved config and its fingerprint
  in ``OUT/experiment.json``. A rerun with the same config resumes; a rerun with another config
  stops with ``OutputConflict`` naming the fields that differ (nothing in the folder is touched).
  ``overwrite=True`` clears the results first, on explicit request only.
* **One writer at a time.** ``claim_folder`` holds a lock file ``OUT/.lock.<writer>`` (pid, host,
  time) for the duration of the work. A second writer exits at once naming the first one's pid; a
  lock left by a process that no longer exists (killed, machine rebooted) is detected and taken
  over. Writers named differently (the shards of one sweep) may share a folder; the writer
  ``main`` excludes every other.
* **Atomic files.** ``atomic_write_text`` / ``atomic_write`` write to a temporary file in the same
  folder and ``os.replace`` it into place, so a kill mid-write leaves the previous file intact.

``check_folder_target`` / ``check_file_target`` validate an output path at argument time (a file
where a folder is needed or the reverse, an unwritable parent) and raise ``BadOption`` naming the flag.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from talr_theory.configs import human_value
from talr_theory.results import atomic_write  # the one atomic write; re-exported here

EXPERIMENT_FILE = "experiment.json"
LOCK_PREFIX = ".lock."


class BadOption(ValueError):
    """An option value that cannot work; the message names the flag (exit status 2)."""


class OutputConflict(ValueError):
    """The output folder belongs to another experiment or is being written by another process."""


# ------------------------------------------------------------------------------------------------
# atomic writes



def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------------------------
# output paths checked at argument time


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest existing ancestor (what a mkdir -p would create under)."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_creatable(path: Path, flag: str) -> None:
    base = _nearest_existing(path)
    if not base.is_dir():
        raise BadOption(f"{flag} {path}: {base} is a file, so nothing can be created under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadOption(f"{flag} {path}: the folder {base} is not writable")


def check_folder_target(path: str | os.PathLike | None, flag: str) -> None:
    """``path`` must be a folder we can write into (existing or creatable); raise BadOption otherwise."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadOption(f"{flag} {path}: this is an existing file, but a folder is needed; "
                        f"give a folder path (it is created if missing)")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise BadOption(f"{flag} {path}: the folder is not writable")
        return
    _check_creatable(path, flag)


def check_file_target(path: str | os.PathLike | None, flag: str, allow_stdout: bool = False) -> None:
    """``path`` must be a file we can (over)write; ``-`` is stdout when ``allow_stdout``."""
    if path is None or (allow_stdout and str(path) == "-"):
        return
    path = Path(path)
    if path.is_dir():
        raise BadOption(f"{flag} {path}: this is an existing folder, but a file path is needed "
                        f"(e.g. {path / 'out'}{'.html' if 'html' in flag else '.json'})")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise BadOption(f"{flag} {path}: the file is not writable")
        return
    _check_creatable(path.parent, flag)


# ------------------------------------------------------------------------------------------------
# fingerprints


def fingerprint(config: Mapping[str, Any]) -> str:
    """A stable hash of a JSON-friendly config mapping (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def differing_fields(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields whose values differ (nested dicts flattened; lists == tuples)."""
    a, b = _flatten(json.loads(json.dumps(stored, default=str))), _flatten(json.loads(json.dumps(current, default=str)))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def as_flag(name: str) -> str:
    """A (dotted) config field as the flag a user types: ``train.eval_every`` -> ``--eval-every``."""
    return "--" + name.rsplit(".", 1)[-1].replace("_", "-")


def describe_differences(stored: Mapping[str, Any], current: Mapping[str, Any], fields: list[str]) -> str:
    a, b = _flatten(json.loads(json.dumps(stored, default=str))), _flatten(json.loads(json.dumps(current, default=str)))
    return "; ".join(f"{as_flag(name)} {human_value(a.get(name))} in the folder, {human_value(b.get(name))} now"
                     for name in fields)


# ------------------------------------------------------------------------------------------------
# locks


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _lock_is_stale(info: dict | None) -> bool:
    """A lock is stale when its process is gone; a lock from another host is trusted (cannot check)."""
    if info is None:  # unreadable or being written right now: treat as live, never steal it blindly
        return False
    if info.get("host") != socket.gethostname():
        return False
    return not _pid_alive(int(info.get("pid", -1)))


def _conflicts(mine: str, other: str) -> bool:
    return mine == other or "main" in (mine, other)


def _describe_lock(path: Path, info: dict | None) -> str:
    if info is None:
        return f"{path} (owner unknown)"
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(info.get("time", 0)))
    return f"{path} (pid {info.get('pid')} on {info.get('host')}, started {started}: {info.get('command', '?')})"


def _take_lock_file(path: Path, payload: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(payload)
    return True


def acquire_lock(folder: Path, writer: str, command: str = "") -> Path:
    """Create ``folder/.lock.<writer>``; raise OutputConflict if a live conflicting writer holds the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LOCK_PREFIX}{writer}"
    payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
                          "writer": writer, "command": command})
    for _ in range(3):  # a stale lock is removed and the creation retried
        if _take_lock_file(path, payload):
            break
        info = _read_lock(path)
        if not _lock_is_stale(info):
            raise OutputConflict(f"{folder} is being written by another process: lock {_describe_lock(path, info)}; "
                                 f"wait for it to finish or use another --out")
        path.unlink(missing_ok=True)
    else:
        raise OutputConflict(f"{folder}: could not take the lock {path}")
    for other in folder.glob(f"{LOCK_PREFIX}*"):
        name = other.name[len(LOCK_PREFIX):]
        if other == path or not _conflicts(writer, name):
            continue
        info = _read_lock(other)
        if _lock_is_stale(info):
            other.unlink(missing_ok=True)
            continue
        path.unlink(missing_ok=True)
        raise OutputConflict(f"{folder} is being written by another process: lock {_describe_lock(other, info)}; "
                             f"wait for it to finish or use another --out")
    return path


def release_lock(path: Path) -> None:
    info = _read_lock(path)
    if info is not None and info.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# the experiment record


def clear_results(folder: Path, entries: tuple[str, ...]) -> None:
    """Remove the named results (files or folders) of ``folder``: what ``--overwrite`` discards."""
    for name in (*entries, EXPERIMENT_FILE):
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def check_experiment(folder: Path, kind: str, config: Mapping[str, Any], overwrite_flag: str = "--overwrite") -> bool:
    """True if ``folder`` already holds this experiment, False if it holds none; OutputConflict otherwise."""
    path = folder / EXPERIMENT_FILE
    if not path.is_file():
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise OutputConflict(f"{path}: unreadable experiment record ({err}); use another --out or "
                             f"{overwrite_flag}") from None
    if stored.get("kind") != kind:
        raise OutputConflict(f"--out {folder} holds the output of `talr-theory {stored.get('kind')}`, not "
                             f"`{kind}`; use another --out")
    if stored.get("fingerprint") == fingerprint(config):
        return True
    fields = differing_fields(stored.get("config", {}), config)
    raise OutputConflict(
        f"--out {folder} holds another experiment; the options differ: "
        f"{describe_differences(stored.get('config', {}), config, fields) or 'the record format'}. Nothing was changed. "
        f"Use a new --out, or {overwrite_flag} to discard the results in {folder} and start again")


def write_experiment(folder: Path, kind: str, config: Mapping[str, Any], command: str = "") -> None:
    record = {"kind": kind, "fingerprint": fingerprint(config), "config": config, "command": command}
    atomic_write_text(folder / EXPERIMENT_FILE, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def claim_folder(folder: str | os.PathLike, kind: str, config: Mapping[str, Any], *, writer: str = "main",
                 overwrite: bool = False, results: tuple[str, ...] = (), command: str = "",
                 recovered: Callable[[], Mapping[str, Any] | None] | None = None) -> Iterator[bool]:
    """Lock ``folder``, check its experiment record against ``config`` and yield whether it is a resume.

    ``config`` must hold only what changes the results (not the folder, the device, the shard).
    ``results`` names what ``overwrite`` removes. ``recovered()`` may rebuild the record of a folder
    written before records existed (from what its results stored). The lock is released on exit,
    including Ctrl-C.
    """
    folder = Path(folder)
    check_folder_target(folder, "--out")
    lock = acquire_lock(folder, writer, command)
    try:
        if overwrite:
            clear_results(folder, results)
        elif recovered is not None and not (folder / EXPERIMENT_FILE).exists():
            old = recovered()
            if old is not None:
                write_experiment(folder, kind, dict(old), "(recovered from the stored results)")
        resumed = check_experiment(folder, kind, config)
        if not resumed:
            write_experiment(folder, kind, config, command)
        yield resumed
    finally:
        release_lock(lock)
