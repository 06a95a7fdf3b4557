"""Atomic file writing: a file appears whole under its name, or not at all.

API::

    atomic_file(path, *, overwrite) -> context manager yielding a binary file (read-write)
    atomic_write(path, data, *, overwrite) -> None       # the same, for bytes in hand

What is written goes into an unnamed temporary file in the target's directory (Linux
``O_TMPFILE``; elsewhere a hidden ``.NAME.XXXX.tmp`` beside it), created with mode 0o666 so that
the kernel applies the umask (and any default ACL) exactly as for a plain ``open()`` (mkstemp
would give 0600). When the ``with`` block ends, the file is given its name: hard-linked when it
must not overwrite (so that a file that appeared meanwhile is never clobbered:
``OutputExistsError``), renamed over the target with ``overwrite``. On any exception,
KeyboardInterrupt included, the temporary file is removed and an existing target is left as it
was; an unnamed one also vanishes if the process is killed. There is no fsync: after a power cut
the target may be empty, never partly written by a crashed process.

The caller checks what is its policy (the target is not a directory, not the input, its
directory exists); this module only makes the write atomic.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import BinaryIO

from .errors import OutputExistsError, WriteError

__all__ = ["atomic_file", "atomic_write"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool) -> Iterator[BinaryIO]:
    """Yield a binary file (opened ``w+b``: Pillow's multi-page TIFF writer reads back what it
    wrote) that becomes ``path`` when the block ends without an exception.

    Raises ``OutputExistsError`` if ``path`` exists (or appears meanwhile) and ``overwrite`` is
    false; on that or any other exception nothing is left behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    # Every temporary name is recorded here before it is created, so that an exception at any
    # point finds what to remove: a batch worker stopped by SIGTERM raises one wherever it is,
    # and one raised between a link() and the line that kept its name left the file behind.
    temps: list[str] = []
    try:
        fd = _open_unnamed(directory)
        if fd is None:
            fd = _create_beside(directory, base, temps)
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            # unnamed: give it its name while the descriptor is open
            named = not temps and _link_unnamed(f, directory, base, path, overwrite, temps)
        if not named:
            _commit(temps[-1], path, overwrite)
    except BaseException:
        # Whatever happened (encoder error, disk full, Ctrl-C), no partial file stays.
        for tmp in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:  # not created yet, or already renamed
                pass
        raise


def atomic_write(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, overwrite=overwrite) as f:
        f.write(data)


def _open_unnamed(directory: str) -> int | None:
    """An unnamed file (O_TMPFILE, Linux) in ``directory`` when the file system allows it, so
    that a process killed mid-write (SIGKILL, a dying pool worker) leaves nothing behind; else
    None (a hidden named file beside the target is used, removed on any exception)."""
    if _TMPFILE:
        try:
            return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
    return None


_TMPFILE = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def _temp_name(directory: str, base: str) -> str:
    return os.path.join(directory, f".{base[:180]}.{os.urandom(4).hex()}.tmp")


def _link_unnamed(f, directory: str, base: str, path: str, overwrite: bool,
                  temps: list[str]) -> bool:
    """Give the unnamed file ``f`` its final name (True); else give it, or a copy of it, a
    temporary name appended to ``temps``, still to commit (False)."""
    proc = f"/proc/self/fd/{f.fileno()}"
    # A directory descriptor makes os.link call linkat(AT_SYMLINK_FOLLOW), which links the
    # file behind /proc/self/fd/N; plain link() would try to link the symlink (EXDEV).
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if not overwrite:
            try:
                # fails if path exists: no clobbering of a file created meanwhile
                os.link(proc, base, dst_dir_fd=dir_fd, follow_symlinks=True)
                return True
            except FileExistsError:
                raise OutputExistsError(path) from None
            except OSError:
                pass
        # Overwrite (rename is what replaces atomically), or linkat refused: name it, commit.
        temps.append(_temp_name(directory, base))
        try:
            os.link(proc, os.path.basename(temps[-1]), dst_dir_fd=dir_fd, follow_symlinks=True)
            return False
        except OSError:
            temps.pop()  # not ours (a name taken), or never created
    finally:
        os.close(dir_fd)
    # No links at all: copy the bytes into a named temp file.
    import shutil  # here: it costs ~5 ms of every poolimg start, and few file systems get here

    with os.fdopen(_create_beside(directory, base, temps), "wb") as out:
        f.seek(0)
        shutil.copyfileobj(f, out)
    return False


def _create_beside(directory: str, base: str, temps: list[str]) -> int:
    """A new hidden file beside the target, its name appended to ``temps``."""
    # Not mkstemp: it creates 0600. With mode 0o666 the kernel applies the umask (and any
    # default ACL) exactly as for a plain open(), so the renamed file has normal permissions.
    # Read-write: see atomic_file.
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temps.append(_temp_name(directory, base))
        try:
            return os.open(temps[-1], flags, 0o666)
        except FileExistsError:
            temps.pop()  # another's: never remove it
    raise WriteError(os.path.join(directory, base), "cannot create a temporary file")


def _commit(tmp: str, path: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        # link() fails if path exists: no window in which a file created meanwhile (another
        # worker, another program) could be clobbered.
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(path) from None
    except OSError:
        # No hard links here (FAT, some network file systems): check, then rename.
        if os.path.lexists(path):
            raise OutputExistsError(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)
