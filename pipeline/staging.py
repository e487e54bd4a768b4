"""A stage's outputs change together or not at all; one leadcal run per output folder; clear OS errors.

- **Whole-folder outputs** (extract -> paths.extracted, features -> paths.features): the stage
  writes into a staging folder beside the target (`.<name>.leadcal-staging-<pid>`, same file
  system) and `staged_folder` swaps it in with one atomic exchange of the two folders
  (renameat2 RENAME_EXCHANGE on Linux, renamex_np RENAME_SWAP on macOS), so the folder is
  always entirely the old run's or entirely the new one. Where the file system cannot exchange,
  two renames (old away, staging in): a kill between them leaves the target missing, and the
  next run puts the old folder back. Leftovers of a killed run are removed at the next run.
- **models/** (written by many stages, file by file, each file atomic: pipeline.io):
  `stage_outputs` records, the first time a stage is about to replace a file, that file's
  previous hash in `models/.leadcal-stages/<stage>.json` (state "running"); when the stage
  ends, the same file becomes its manifest (state "done": every file it wrote and its
  SHA-256). A stage refuses to read the outputs of an upstream stage that stopped part-way
  (a "running" record whose files no longer match their previous hashes) and says which stage
  to run again. `dvc repro` needs none of this (it re-runs a stage whose run did not finish),
  but `leadcal run` and single `leadcal <stage>` commands do.
- **Locks** (`locked_outputs`): a `leadcal` command takes an exclusive `fcntl.flock` on each
  folder it writes and a shared one on each it reads, without waiting. A folder swapped as a
  whole has its lock file beside it (`.<name>.leadcal-lock`); models/ has it inside
  (`models/.leadcal-lock`). The kernel frees a lock when its process dies, so a killed run's
  lock is simply taken over.
- **OS errors** (`os_errors`): a full disk, a read-only file system or a missing permission
  while writing becomes a LeadcalError that names the path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import LeadcalError

try:
    import fcntl
except ImportError:  # Windows: no locks
    fcntl = None  # type: ignore[assignment]

# exit codes of `leadcal` (pipeline.cli.main)
EXIT_USER_ERROR = 2  # a LeadcalError: bad input or params, too little data, full disk, read-only folder
EXIT_USAGE = 64  # a mistyped command line (sysexits' EX_USAGE): nothing was read
EXIT_INTERNAL_ERROR = 3  # anything else: a bug; one line on stderr and a log file with the traceback
EXIT_BUSY = 75  # another leadcal run holds the outputs (EX_TEMPFAIL: try again later)
EXIT_INTERRUPTED = 130  # Ctrl-C

MANIFESTS = ".leadcal-stages"
_WHOLE = "leadcal"  # sibling names: .<name>.leadcal-staging-<pid>, .<name>.leadcal-old-<pid>, .<name>.leadcal-lock
_TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # pipeline.io's temporary files (tempfile.mkstemp)


class OutputsBusy(LeadcalError):
    """Another leadcal run is writing (or reading) the outputs this one would write."""

    exit_code = EXIT_BUSY


# --------------------------------------------------------------------------- OS errors


def os_error(exc: OSError, path: str | Path) -> LeadcalError | None:
    """A clear LeadcalError for a full disk, a read-only file system or a denied write; None for others."""
    text = str(exc).lower()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "no space left on device" in text or "quota exceeded" in text:
        return LeadcalError(f"no space left on device while writing {path}{_free(path)}: free some space (or point "
                            "paths.* in params.yaml at another disk) and run again; the previous outputs are unchanged")
    if exc.errno == errno.EROFS or "read-only file system" in text:
        return LeadcalError(f"cannot write {path}: the file system is read-only; point paths.* in params.yaml at a "
                            "writable folder")
    if exc.errno in (errno.EACCES, errno.EPERM) or "permission denied" in text:
        return LeadcalError(f"cannot write {path}: permission denied; check the owner and permissions of "
                            f"{Path(path).parent}, or point paths.* in params.yaml at a writable folder")
    return None


def _free(path: str | Path) -> str:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return f" ({shutil.disk_usage(folder).free / 2**20:.0f} MiB free on its disk)"
    except OSError:
        return ""


@contextlib.contextmanager
def os_errors(path: str | Path) -> Iterator[None]:
    """Turn the OSErrors of writing `path` that the user can fix into a LeadcalError naming it."""
    try:
        yield
    except OSError as exc:
        error = os_error(exc, path)
        if error is None:
            raise
        raise error from exc


# --------------------------------------------------------------------------- whole-folder outputs


def _sibling(target: Path, kind: str, pid: int | None = None) -> Path:
    return target.parent / (f".{target.name}.{_WHOLE}-{kind}" + ("" if pid is None else f"-{pid}"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_leftovers(target: Path, everything: bool = False) -> list[Path]:
    """Remove the staging and old folders a killed run left beside `target` (only those of dead
    processes unless `everything`: the caller holds the folder's lock). If a run died between
    the two renames of a swap (file systems without an atomic exchange), the old folder is
    put back first. Returns what was removed or restored."""
    prefix = f".{target.name}.{_WHOLE}-"
    done: list[Path] = []
    if not target.parent.is_dir():
        return done
    for path in sorted(target.parent.iterdir()):
        if not path.name.startswith(prefix):
            continue
        kind, _, pid = path.name[len(prefix):].partition("-")
        if kind not in ("staging", "old") or not pid.isdigit():
            continue  # the lock file, or not ours
        if not everything and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        if kind == "old" and not target.exists():
            os.rename(path, target)  # a swap cut between its two renames: back to the old folder
        else:
            shutil.rmtree(path, ignore_errors=True)
        done.append(path)
    return done


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step; False where the system or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux"):
            call = libc.renameat2
            result = call(-100, os.fsencode(a), -100, os.fsencode(b), 2)  # AT_FDCWD, RENAME_EXCHANGE
        elif sys.platform == "darwin":
            call = libc.renamex_np
            result = call(os.fsencode(a), os.fsencode(b), 2)  # RENAME_SWAP
        else:
            return False
    except (AttributeError, OSError):  # no such libc function
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_in(staging: Path, target: Path) -> None:
    """Make `staging` the content of `target`; the old content ends in `staging` (to delete)."""
    if not (target.exists() or target.is_symlink()):
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return
    old = _sibling(target, "old", os.getpid())
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    os.rename(old, staging)


@contextlib.contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it replaces `target` as a whole.

    On any error (or a kill) `target` is untouched; the staging folder is removed (a killed
    run's, at the next run)."""
    target = Path(target)
    if target.is_symlink():  # a folder kept elsewhere: staged and swapped there, the link stays
        target = target.resolve()
    with os_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target)
        staging = _sibling(target, "staging", os.getpid())
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    try:
        yield staging
        with os_errors(target):
            swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap: the previous folder


# --------------------------------------------------------------------------- locks

# which folder (a paths.* setting) each stage writes; every other stage writes paths.models
WRITES = {"generate": "sample", "extract": "extracted", "features": "features"}
READS = {"generate": (), "extract": (), "features": ("extracted",)}  # others: extracted and features
SWAPPED = {"sample", "extracted", "features"}  # locked from beside (a DVC output folder holds only its files)


def lock_path(folder: Path, setting: str) -> Path:
    return _sibling(folder, "lock") if setting in SWAPPED else folder / ".leadcal-lock"


def _holder(fd: int, path: Path, exclusive: bool) -> str:
    """Who holds the lock we could not take: only readers (when we wanted it exclusive and a shared
    lock is free), else a writer, whose pid is in the file (only writers write it: readers would
    overwrite each other)."""
    if exclusive:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pass
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return "read by another leadcal run"
    try:
        pid = path.read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"written by another leadcal run (pid {pid})" if pid.isdigit() else "written by another leadcal run"


def _busy(folder: Path, path: Path, who: str) -> OutputsBusy:
    return OutputsBusy(f"{folder}/ is being {who}; wait for it to finish, or stop it (its lock {path} "
                       "frees itself when that process ends)")


def _acquire(folder: Path, path: Path, exclusive: bool) -> int:
    with os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        who = _holder(fd, path, exclusive)
        os.close(fd)
        raise _busy(folder, path, who) from None
    except OSError:
        os.close(fd)  # a file system without locks: run unlocked
        return -1
    if exclusive:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextlib.contextmanager
def locked_outputs(stages: Iterable[str], paths: Any) -> Iterator[None]:
    """Hold, for the whole block, an exclusive lock on every folder the `stages` write and a shared
    one on every folder they only read (paths: params.paths). Never waits: a busy folder is an
    OutputsBusy error. With the write locks held, the leftovers of killed runs are removed."""
    wanted: dict[Path, tuple[str, Path, bool]] = {}
    for stage in stages:
        written = WRITES.get(stage, "models")
        reads = READS.get(stage, ("extracted", "features"))
        for setting, exclusive in [(written, True), *((s, False) for s in reads)]:
            folder = Path(getattr(paths, setting))
            key = Path(os.path.abspath(folder))
            previous = wanted.get(key)
            wanted[key] = (setting, folder, exclusive or (previous is not None and previous[2]))
    if fcntl is None:
        yield
        return
    with contextlib.ExitStack() as held:
        for key in sorted(wanted):
            setting, folder, exclusive = wanted[key]
            fd = _acquire(folder, lock_path(folder, setting), exclusive)
            if fd >= 0:
                held.callback(os.close, fd)  # closing the descriptor releases the lock
            if exclusive:
                with os_errors(folder):
                    _clean(folder, setting)
        yield


@contextlib.contextmanager
def reading(folder: Path) -> Iterator[None]:
    """A shared lock on models/ for a command that only reads it (`leadcal score`): refused while a
    stage rewrites it. A folder that is missing, read-only or on a file system without locks is
    read unlocked (a deployed, read-only models folder has no writer to wait for)."""
    path = lock_path(folder, "models")
    if fcntl is None or not folder.is_dir():
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY if path.exists() else os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(folder, path, _holder(fd, path, False)) from None
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def refuse_interrupted(stages: Iterable[str], models: Path, reader: str) -> None:
    """A LeadcalError if one of `stages` (writing into models/) stopped part-way after rewriting some
    of its files: `reader` (a stage, or `leadcal score`) must not mix its old and new outputs."""
    for name in stages:
        if WRITES.get(name, "models") != "models":
            continue
        changed = interrupted(name, models)
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise LeadcalError(
                f"{models}/: `leadcal {name}` stopped part-way (killed, or it failed) after rewriting {shown}, so its "
                f"outputs there may not belong together and `{reader}` will not read them; run `leadcal {name}` "
                f"(or `dvc repro`) again first")


def _clean(folder: Path, setting: str) -> None:
    """Under the folder's write lock: staging/old folders beside it, pipeline.io's orphan temporary files in it."""
    if setting in SWAPPED:
        clean_leftovers(folder, everything=True)
    if setting == "models" and folder.is_dir():
        for path in folder.rglob(".*.tmp"):
            if _TEMP_FILE.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- models/: per-stage manifests


def sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        return None


@dataclass
class _Record:
    stage: str
    root: Path
    changing: dict[str, str | None]  # file (relative to root) -> its hash before this stage began rewriting it
    pid: int = field(default_factory=os.getpid)
    written: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / MANIFESTS / f"{self.stage}.json"


_active: _Record | None = None


def _write_record(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_record(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def note_write(path: str | Path) -> None:
    """Called by pipeline.io just before a finished file replaces `path`: while a stage is recorded,
    the first replacement of each file under models/ first notes the file's previous hash."""
    record = _active
    if record is None:
        return
    try:
        relative = Path(os.path.abspath(path)).relative_to(record.root).as_posix()
    except ValueError:
        return
    if relative.startswith(MANIFESTS + "/"):
        return
    if relative not in record.written:
        record.written.append(relative)
    if relative in record.changing:
        return
    record.changing[relative] = sha256(Path(path))
    _write_record(record.path, {"stage": record.stage, "state": "running", "pid": record.pid,
                                "changing": record.changing})


def interrupted(stage: str, models: Path) -> list[str]:
    """The files under models/ that `stage` rewrote before it stopped part-way (or while it still
    runs elsewhere): empty if its last run finished, or if nothing it touched differs from before."""
    record = read_record(Path(os.path.abspath(models)) / MANIFESTS / f"{stage}.json")
    if record.get("state") != "running":
        return []
    root = Path(os.path.abspath(models))
    return [name for name, before in sorted(record.get("changing", {}).items()) if sha256(root / name) != before]


@contextlib.contextmanager
def stage_outputs(stage: str, paths: Any, upstream: Iterable[str] = ()) -> Iterator[None]:
    """Run a stage that writes into paths.models: refuse if an upstream stage's outputs there are
    half-rewritten; record what this stage changes, then its manifest once it has finished."""
    global _active
    if WRITES.get(stage, "models") != "models":
        yield
        return
    models = Path(paths.models)
    refuse_interrupted(upstream, models, f"leadcal {stage}")
    root = Path(os.path.abspath(models))
    previous = read_record(root / MANIFESTS / f"{stage}.json")
    # after an interrupted run, the files it touched keep the hashes they had before that run
    carried = dict(previous.get("changing", {})) if previous.get("state") == "running" else {}
    record = _Record(stage, root, carried)
    outer, _active = _active, record
    try:
        yield
    finally:
        _active = outer
    # reached only when the stage returned: its manifest, written last
    with os_errors(record.path):
        _write_record(record.path, {"stage": stage, "state": "done",
                                    "files": {name: sha256(root / name) for name in sorted(record.written)}})


# --------------------------------------------------------------------------- crashes


def report_crash(exc: BaseException, command: str, argv: list[str]) -> int:
    """One line on stderr naming the error and a log file holding the full traceback; EXIT_INTERNAL_ERROR."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}"
    first = (str(exc).strip().splitlines() or [""])[0]
    summary = f"{type(exc).__name__}{': ' + first if first else ''}{where}"
    text = (f"leadcal crash report\ncommand: leadcal {' '.join(argv)}\ncwd: {os.getcwd()}\n"
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\npython: {sys.version.split()[0]} on {platform.platform()}\n"
            f"pid: {os.getpid()}\n\n" + "".join(traceback.format_exception(exc)))
    prefix = f"leadcal {command}".rstrip()
    try:
        fd, log = tempfile.mkstemp(prefix=f"leadcal-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as failure:
        print(f"{prefix}: internal error (a bug in leadcal, not a problem with your data): {summary}. "
              f"Could not write a log file ({failure}); the traceback follows, please report it.", file=sys.stderr)
        print(text, file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    print(f"{prefix}: internal error (a bug in leadcal, not a problem with your data): {summary}. "
          f"Full traceback in {log}; please attach it when you report this.", file=sys.stderr)
    return EXIT_INTERNAL_ERROR
