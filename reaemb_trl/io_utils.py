"""Crash-safe writes: every artifact is written to a temporary name and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import InputError


def _default_mode(base: int) -> int:
    """mkstemp/mkdtemp create private (0600/0700) entries; published artifacts get the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _default_mode(0o666))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes `path` only if the block succeeds.

    An existing non-empty `path` is refused unless `overwrite`; then it is replaced as a whole.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise InputError(f"{path}: output folder exists and is not empty (pass --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(0o777))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def staged_update(target: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """Yield a staging folder; if the block succeeds, each entry in it replaces its namesake in `target`.

    Other entries of `target` (a trainer's checkpoints and logs) are kept. `last` is moved last, so a folder that
    holds it is complete. Each entry is swapped atomically, the folder as a whole is not.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target))
    try:
        yield staging
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == last):
            destination = target / entry.name
            if destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)
            if entry.is_file():
                os.chmod(entry, _default_mode(0o666))
            os.replace(entry, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_replaceable(path: str | os.PathLike, marker: str, inputs: Sequence[str | os.PathLike] = (),
                       overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder whose replacement could delete what this toolkit did not write.

    A non-empty folder is replaced only with `overwrite`, and only if it holds `marker` (the file this kind of
    output always contains), holds none of `inputs`, and is neither the working directory nor one of its parents.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{path}: the output path is a file, not a folder")
    if not any(path.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{path}: output folder exists and is not empty (pass --overwrite to replace it)")
    resolved = path.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise InputError(f"{path}: --overwrite would replace the working directory; choose a new output folder")
    for item in inputs:
        if resolved in Path(item).resolve().parents:
            raise InputError(f"{path}: --overwrite would delete the input {item}; choose another output folder")
    if not (path / marker).is_file():
        raise InputError(f"{path}: --overwrite replaces only a folder this toolkit wrote (it has no {marker}); "
                         "choose a new output folder or empty this one yourself")


def check_creatable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that lies under a file or in a folder that is not writable."""
    parent = Path(path).absolute().parent
    existing = next(folder for folder in (parent, *parent.parents) if folder.exists())
    if not existing.is_dir():
        raise InputError(f"{path}: cannot write here, {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write here, {existing} is not writable")


def check_writable_file(path: str | os.PathLike) -> None:
    """`check_creatable`, and the path must not be a folder."""
    if Path(path).is_dir():
        raise InputError(f"{path}: the output path is a folder; name a file")
    check_creatable(path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


def sha256_json(obj: Any) -> str:
    """A stable fingerprint of a JSON-ready value (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
