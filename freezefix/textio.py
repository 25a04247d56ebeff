"""Reading and writing config files without losing a byte.

A config is read once as bytes; the BOM is split off and remembered so that parsers see clean text
and the writer can put it back.  Writes go to a temporary file in the same directory followed by
``os.replace``, so a reader (or a crash) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

BOM = b"\xef\xbb\xbf"


class SourceError(Exception):
    """A file that cannot be read as a UTF-8 config (the message is shown to the user as is)."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    text: str  # decoded, without the BOM
    has_bom: bool
    digest: str  # sha256 of the bytes on disk, to refuse writing over a file changed since

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    def encode(self, text: str) -> bytes:
        return (BOM if self.has_bom else b"") + text.encode("utf-8")


def read_source(path: Path) -> SourceFile:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise SourceError("is a directory, not a config file") from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None
    has_bom = raw.startswith(BOM)
    body = raw[len(BOM) :] if has_bom else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"not valid UTF-8 (byte {exc.start}: {body[exc.start:exc.start + 1]!r}); "
            "mmengine and mmcv read configs as UTF-8, so this file cannot load either"
        ) from None
    return SourceFile(path, text, has_bom, hashlib.sha256(raw).hexdigest())


def atomic_write(source: SourceFile, new_text: str) -> None:
    """Replace ``source.path`` with ``new_text``; refuse if the file changed since it was read.

    The mode of the original file is kept.  A read-only file is refused rather than silently
    replaced (os.replace only needs a writable directory, which would defeat the user's intent).
    """
    path = source.path
    try:
        current = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot re-read before writing: {exc.strerror or exc}") from None
    if hashlib.sha256(current).hexdigest() != source.digest:
        raise SourceError("changed on disk since it was read; not written (run again)")
    st = path.stat()
    if not os.access(path, os.W_OK) or not (st.st_mode & stat.S_IWUSR):
        raise SourceError("is read-only; not written")
    data = source.encode(new_text)
    with _interrupts_deferred():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".freezefix-tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, path)
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if isinstance(exc, OSError):
                raise SourceError(f"write failed, original kept: {exc.strerror or exc}") from None
            raise


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` whole, so a concurrent reader sees the old file or the new one; no temp file
    is left behind.  Raises ``OSError`` when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_cache_file(path: Path, data: bytes) -> None:
    """:func:`replace_file` for caches: one that cannot be written only costs time, so errors are
    swallowed."""
    with contextlib.suppress(OSError):
        replace_file(path, data)


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C / SIGTERM while one file is being replaced; they take effect right after.

    Python raises KeyboardInterrupt between any two bytecodes, including inside mkstemp after the
    temporary file exists but before its name is returned; blocking the signals for the few system
    calls of one write keeps every file either as it was or fully rewritten, with no stray temp file.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it can be (another drive on Windows: as is)."""
    return _relative(os.fspath(path), os.getcwd())


@functools.lru_cache(maxsize=65536)  # a report names the same few files thousands of times
def _relative(path: str, cwd: str) -> str:
    try:
        return os.path.relpath(path, cwd)
    except ValueError:
        return path
