"""The one atomic writer (files and folders): readers see the whole old file, the whole new one, or none.

Every file the harness writes for others to read (run records, tables, plots, caches, checkpoints,
downloads) goes through :func:`atomic_write`: the content is written to a hidden temporary file in
the same folder, flushed to disk, then renamed over the target. A crash while writing leaves
nothing behind but the old file.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

from filelock import FileLock, Timeout

Content = Union[bytes, str, Callable[[BinaryIO], None]]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, content: Content, *, overwrite: bool = True, fsync: bool = True) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes to a binary handle) to
    ``path`` atomically, readable by everyone the umask allows. ``overwrite=False`` raises
    FileExistsError when ``path`` exists (checked atomically where the filesystem has hard links)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if the target exists: never overwrite
            except FileExistsError:
                raise FileExistsError(f"{path} already exists") from None
            except OSError:  # filesystems without hard links
                if path.exists():
                    raise FileExistsError(f"{path} already exists") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """A text file ending with one newline, written atomically."""
    return atomic_write(path, text if text.endswith("\n") else text + "\n")


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A folder written as a whole: the block fills the yielded folder (a hidden staging copy with
    the target's name); when it ends without error the folder replaces ``target`` (an older one is
    removed), and on error nothing changes. Readers see the old folder or the new one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    folder = staging / target.name
    folder.mkdir()
    try:
        yield folder
        if target.exists():
            os.replace(target, staging / ".replaced")
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def cache_lock(target: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Hold an inter-process lock (a hidden ``.<target name>.lock`` beside it) while a cached
    artifact is looked up and, if missing, computed: two trials that need the same fit (a sweep's first two trials) compute it
    once; the second waits, then loads what the first saved. Says so on stderr when it waits."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[bench] waiting for another process computing {what or target.name} ({target})", file=sys.stderr)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


RUN_LOCK = ".running.lock"


@contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Held while a run works in ``folder``; the operating system drops it when the process ends,
    however it ends, so a live run's folder can be told from an interrupted one's (:func:`is_running`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / RUN_LOCK))
    lock.acquire(timeout=0)
    try:
        yield
    finally:
        lock.release()


def is_running(folder: str | os.PathLike) -> bool:
    """Whether a live process holds ``folder``'s :func:`run_lock`."""
    path = Path(folder) / RUN_LOCK
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
