"""Crash-safe writes, and `OutputGuard`: the one place that decides what a command may write or replace.

Every artifact is built under a scratch name beside its final path and renamed into place, so a reader sees the old
artifact or the new one, never half of one. Every command builds an `OutputGuard` for its output before any work
and holds it while it writes (README, "Output safety").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import InputError

# A scratch folder holds SCRATCH_MARKER and one entry named after the output it is for: the output being built
# (`.NAME.XXXXXXXX.reaemb_trl.tmp`) or, during a swap, the old one set aside (`.NAME.XXXXXXXX.reaemb_trl.old`).
# The next guard of NAME recognises a killed run's scratch by name AND marker, and removes nothing else.
SCRATCH_MARKER = ".reaemb_trl_scratch"
# In a folder a run writes into in place (LRCL, CRRL, the pipeline): this toolkit made the folder.
OWNER_MARKER = ".reaemb_trl_output"
_SCRATCH, _ASIDE, _LOCK = ".reaemb_trl.tmp", ".reaemb_trl.old", ".reaemb_trl.lock"
_ANY_SCRATCH = re.compile(r"\..+(\.[a-z0-9_]{8})?\.reaemb_trl\.(tmp|old)")
# folder: replaced as a whole when the command ends; file: the same for a file; run: a folder written in place
KINDS = ("folder", "file", "run")
# A write the machine refused whatever the data: a full disk or quota, a file-size limit, a read-only file system
_REFUSED_WRITES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how a Rust library (safetensors) words an OSError
# How numpy (np.save, ndarray.tofile) words a short write: no errno, but only the file system cuts a write short
_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")


def scratch(path: str | os.PathLike, *, fixed: bool = False, create: bool = True, suffix: str = _SCRATCH) -> Path:
    """Where to build a new `path`: `path`'s name inside a new marked scratch folder beside `path`. Nothing exists
    there yet. `fixed`: a name that every process of a run computes alike (`create=False` only computes it)."""
    path = Path(path)
    if fixed:
        folder = path.parent / f".{path.name}{suffix}"
        if create:
            if _is_scratch(folder):  # a killed run's, at the same step
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    if create:
        (folder / SCRATCH_MARKER).touch()
    return folder / path.name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch file path (same name, beside `path`); it replaces `path` only if the block succeeds."""
    path = Path(path)
    with _naming_refused_writes(path):
        entry = scratch(path)
        try:
            entry.touch()
            yield entry
            os.replace(entry, path)
        finally:
            shutil.rmtree(entry.parent, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new folder that replaces `path` only if the block succeeds (old one aside, new one in, old one
    deleted: see `_swap_in`). A non-empty `path` is refused unless `overwrite`: a command passes its guard's decision
    (`OutputGuard.replaces`), a cache passes True for its own folder."""
    path = Path(path)
    if _is_real_dir(path) and any(path.iterdir()) and not overwrite:
        raise InputError(f"{path}: output folder exists and is not empty (pass --overwrite to replace it)")
    with _naming_refused_writes(path):
        entry = scratch(path)
        try:
            entry.mkdir()
            yield entry
            _swap_in(entry, path)
        finally:
            shutil.rmtree(entry.parent, ignore_errors=True)


@contextlib.contextmanager
def staged_update(target: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """Yield a staging folder; if the block succeeds, each entry in it replaces its namesake in `target`.

    Other entries of `target` (a trainer's checkpoints and logs) are kept. `last` is moved last, so a folder that
    holds it is complete. Each entry is swapped atomically, the folder as a whole is not.
    """
    target = Path(target)
    with _naming_refused_writes(target):
        target.mkdir(parents=True, exist_ok=True)
        staging = scratch(target / target.name)
        try:
            staging.mkdir()
            yield staging
            for entry in sorted(staging.iterdir(), key=lambda p: p.name == last):
                _swap_in(entry, target / entry.name)
        finally:
            shutil.rmtree(staging.parent, ignore_errors=True)


def refused_write(err: BaseException) -> str | None:
    """Why the machine refused a write ("No space left on device", "File too large", "Read-only file system", or
    numpy's short write), or None when `err` is any other error."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None and isinstance(err, OSError) and _SHORT_WRITE.match(str(err)):
        return "the file system took only part of the write (a full disk, a quota or a file-size limit)"
    if code is None and not isinstance(err, InputError):
        match = _OS_ERROR.search(str(err))
        code = int(match.group(1)) if match else None
    return os.strerror(code) if code in _REFUSED_WRITES else None


@contextlib.contextmanager
def _naming_refused_writes(path: Path) -> Iterator[None]:
    """A write to `path` that the machine refuses becomes an InputError naming it (the atomic helpers have removed
    their scratch by then, and `path` is as it was)."""
    try:
        yield
    except Exception as err:
        reason = refused_write(err)
        if reason is None:
            raise
        raise InputError(f"{path}: cannot write it: {reason}; the earlier {path.name}, if any, is unchanged and no "
                         "scratch file was left (free some space or choose another output)") from err


class SetAside:
    """`with SetAside(path) as aside:` moves `path` to a scratch name for a block that writes a new `path` (a pipeline
    stage started over). Afterwards the old entry is deleted if the block wrote a new `path`, and moved back
    (`aside.restored`) if it did not: a block refused before its first write, on a bad setting, loses nothing.
    Killed in between, the old entry is scratch that the next guard of `path` removes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.restored = False

    def __enter__(self) -> "SetAside":
        self._aside = scratch(self.path)
        os.replace(self.path, self._aside)
        return self

    def __exit__(self, *exc) -> None:
        # the block's own OutputGuard for `path` may already have removed the aside as scratch: it only does so once
        # the block has passed its checks and starts writing, so there is nothing left to restore then
        if not os.path.lexists(self.path) and os.path.lexists(self._aside):
            os.replace(self._aside, self.path)
            self.restored = True
        shutil.rmtree(self._aside.parent, ignore_errors=True)


class OutputGuard:
    """The one place that decides what a command may write. Build it before any work: it refuses (InputError)

    - an output that is, holds or lies inside one of `inputs` (files or folders, symlinks resolved);
    - an existing output this toolkit did not write: `marker` says what it always writes (glob patterns inside a
      folder, e.g. "dataset.json"; for a file, a test of the file);
    - one it wrote, unless `overwrite` (the command's `flag`); a `run` folder may also be continued (`resume`), and
      one that holds no run yet (killed before its first checkpoint) is written into.

    Hold it (`with guard:`) while the command writes. In the main process it takes an exclusive lock on the output
    (a second run is refused, naming the first one's pid), checks again, removes the scratch killed runs left for
    the output, and for a `run` folder deletes a replaced one and makes the folder. In every process, SIGTERM unwinds
    like Ctrl-C meanwhile, so a scheduler's stop leaves no scratch behind (`sigterm_as_interrupt`).

    `path` is resolved: write at `guard.path`. `also`: more files of the same output (an export's companions).
    `guard.replaces`: an existing output will be replaced (a folder or file when its command succeeds, a run folder
    when the guard is entered).
    """

    def __init__(self, path: str | os.PathLike, *, marker: str | Sequence[str] | Callable[[Path], bool],
                 inputs: Sequence[str | os.PathLike | None] = (), overwrite: bool = False, resume: bool = False,
                 kind: str = "folder", also: Sequence[str | os.PathLike] = (), flag: str = "--overwrite"):
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")
        self.given, self.path = Path(path), _resolve(path)
        self.also = [_resolve(extra) for extra in also]
        self.marker = [marker] if isinstance(marker, str) else marker
        self.inputs = [Path(item) for item in inputs if item is not None]
        self.overwrite, self.resume, self.kind, self.flag = overwrite, resume, kind, flag
        self._held: contextlib.ExitStack | None = None
        self._check()

    def _check(self) -> None:
        cwd = Path.cwd()
        if self.overwrite and self.kind != "file" and (self.path == cwd or self.path in cwd.parents):
            raise InputError(f"{self.given}: {self.flag} would replace the working directory; choose a new output "
                             "folder")
        for output in (self.path, *self.also):
            for given in self.inputs:
                source = _resolve(given)
                relation = ("is" if output == source else "lies inside" if source in output.parents
                            else "holds" if output in source.parents else None)
                if relation:
                    raise InputError(f"{self.given}: the output {relation} the input {given}: writing it would delete "
                                     "the input or change it; choose an output outside every input")
        if self.given.is_symlink():  # it would write where the link points, not where the command was told to
            target = os.readlink(self.given)
            raise InputError(f"{self.given}: the output path is a symbolic link (to {target}"
                             f"{'' if self.given.exists() else ', which does not exist'}); name the real path "
                             "or a new one")
        _check_creatable(self.path, self.given, inside=self.kind != "file")
        self.replaces = self._decide()

    def _decide(self) -> bool:
        path, shown = self.path, self.given
        if not os.path.lexists(path):
            return False
        if self.kind == "file":
            if path.is_dir():
                raise InputError(f"{shown}: the output path is a folder; name a file")
            if not self.overwrite:
                raise InputError(f"{shown}: the output file exists (pass {self.flag} to replace it)")
            if not self.marker(path):
                raise InputError(f"{shown}: {self.flag} replaces only a file this toolkit wrote, and nothing says "
                                 "it wrote this one; choose a new output file or remove this one yourself")
            return True
        if not path.is_dir():
            raise InputError(f"{shown}: the output path is a file, not a folder")
        if not any(path.iterdir()):
            return False
        holds = any(match.is_file() for pattern in self.marker for match in path.glob(pattern))
        if self.kind == "run":
            if not holds and not (path / OWNER_MARKER).is_file():
                raise InputError(f"{shown}: the output folder holds files this toolkit did not write; choose a new "
                                 "output folder or empty this one yourself")
            if not holds or self.resume:  # nothing to keep yet, or a run to continue
                return False
            if not self.overwrite:
                raise InputError(f"{shown}: the output folder holds an earlier run; pass --resume_from_checkpoint "
                                 f"latest to continue it or {self.flag} to replace it")
            return True
        if not self.overwrite:
            raise InputError(f"{shown}: output folder exists and is not empty (pass {self.flag} to replace it)")
        if not holds:
            raise InputError(f"{shown}: {self.flag} replaces only a folder this toolkit wrote (it has no "
                             f"{' or '.join(self.marker)}); choose a new output folder or empty this one yourself")
        return True

    def __enter__(self) -> "OutputGuard":
        with contextlib.ExitStack() as stack:
            stack.enter_context(sigterm_as_interrupt())
            if os.environ.get("RANK", "0") == "0":  # the main process: the others write nothing of their own here
                stack.enter_context(_lock(self.path, self.given))
                self._check()  # again, under the lock: another run may have written meanwhile
                restored = [_remove_scratch(output, inside=self.kind == "run" and output == self.path)
                            for output in (self.path, *self.also)]
                if any(restored):
                    self._check()
                if self.kind == "run":
                    if self.replaces:
                        _discard(self.path)
                    self.path.mkdir(exist_ok=True)
                    (self.path / OWNER_MARKER).touch()
            self._held = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        held, self._held = self._held, None
        held.__exit__(*exc)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (a timeout, `kill`, a scheduler) unwinds like Ctrl-C, so every scratch file,
    folder and lock is removed on the way out. The CLI holds it for a whole command, every `OutputGuard` while its
    command writes, and a script may hold it for its own temporary files (as benchmarks/ do). A SIGTERM handler
    installed by someone else is left alone, and so are threads other than the main one."""
    try:
        installed = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        if installed:
            signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        installed = False
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _lock(path: Path, shown: Path) -> Iterator[None]:
    """An exclusive lock on output `path`: `.NAME.reaemb_trl.lock` beside it holds the holder's pid and is removed
    when released. (fcntl rather than the `filelock` package: that one keeps its lock file forever by design and is
    not a declared dependency.) Folders this creates for `path` are removed again if they are still empty."""
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.parent / f".{path.name}{_LOCK}"
    while True:
        fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"{shown}: another run (pid {holder}) is writing this output; wait for it to end or "
                             "choose another output") from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(file)):
                break
        os.close(fd)  # the holder removed that file as it let go: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.unlink(file)  # while still locked: a waiter that opened it sees it gone and retries
        os.close(fd)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _remove_scratch(path: Path, inside: bool) -> bool:
    """Remove the scratch that killed runs left for output `path`: the scratch folders named after it beside it and,
    for a folder written in place, those anywhere inside it; each only if it holds SCRATCH_MARKER. An old entry set
    aside by an interrupted swap goes back to its place first if the new one never got there. Returns whether one
    did."""
    own = re.compile(rf"\.{re.escape(path.name)}(\.[a-z0-9_]{{8}})?\.reaemb_trl\.(tmp|old)")
    found = [entry for entry in path.parent.iterdir() if own.fullmatch(entry.name)] if path.parent.is_dir() else []
    if inside and _is_real_dir(path):
        for folder, names, _ in os.walk(path):
            found += [Path(folder, name) for name in names if _ANY_SCRATCH.fullmatch(name)]
            names[:] = [name for name in names if not _ANY_SCRATCH.fullmatch(name)]
    restored = False
    for folder in filter(_is_scratch, found):
        entries = [entry for entry in folder.iterdir() if entry.name != SCRATCH_MARKER]
        if folder.name.endswith(_ASIDE) and len(entries) == 1 and not os.path.lexists(folder.parent / entries[0].name):
            os.replace(entries[0], folder.parent / entries[0].name)
            restored = True
        shutil.rmtree(folder)
    return restored


def _swap_in(new: Path, path: Path) -> None:
    """Put `new` at `path`. A file over a file (or nothing) is one rename. Otherwise the old entry moves aside, the new
    one is renamed in and the old one is deleted: SIGTERM and SIGINT wait until both renames are done, and a kill -9
    between them leaves the old entry whole under its aside name, which the next guard of `path` moves back."""
    if not os.path.lexists(path) or not (new.is_dir() or _is_real_dir(path)):
        os.replace(new, path)
        return
    aside = scratch(path, suffix=_ASIDE)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        os.replace(path, aside)
        try:
            os.replace(new, path)
        except BaseException:
            os.replace(aside, path)
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    shutil.rmtree(aside.parent)


def _discard(path: Path) -> None:
    """Delete `path` as a whole: renamed to scratch first, so an interruption never leaves it half deleted in place."""
    aside = scratch(path)
    os.replace(path, aside)
    shutil.rmtree(aside.parent)


def _resolve(path: str | os.PathLike) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise InputError(f"{path}: cannot resolve this path ({err})") from None


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _is_scratch(folder: Path) -> bool:
    marker = folder / SCRATCH_MARKER
    return _is_real_dir(folder) and marker.is_file() and not marker.is_symlink()


def _check_creatable(path: Path, shown: Path, inside: bool = False) -> None:
    """Refuse an output path that lies under a file or in a folder that is not writable; with `inside` (an output
    folder, written into or moved aside as a whole) also an existing output folder that is not writable."""
    existing = next(folder for folder in (path.parent, *path.parent.parents) if folder.exists())
    if not existing.is_dir():
        raise InputError(f"{shown}: cannot write here, {existing} is a file")
    for folder in (existing, path) if inside and _is_real_dir(path) else (existing,):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{shown}: cannot write here, {folder} is not writable")


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
