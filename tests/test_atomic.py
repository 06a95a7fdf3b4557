"""poolcore.atomic: a file appears whole under its name or not at all, never clobbers a file
unless asked to, and gets the permissions of a plain open(). Every test runs with both kinds of
temporary file (the ``temp_kind`` fixture of conftest.py)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from poolcore.atomic import atomic_file, atomic_write
from poolcore.errors import OutputExistsError, PoolIOError


class Boom(Exception):
    pass


def test_writes_a_new_file_and_leaves_nothing_else(tmp_path, temp_kind):
    atomic_write(tmp_path / "a.bin", b"data", overwrite=False)
    with atomic_file(str(tmp_path / "b.bin"), overwrite=True) as f:
        f.write(b"first ")
        f.seek(0)
        assert f.read() == b"first "  # read-write: Pillow's TIFF writer reads back
        f.write(b"second")
    assert (tmp_path / "a.bin").read_bytes() == b"data"
    assert (tmp_path / "b.bin").read_bytes() == b"first second"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_no_clobber_without_overwrite_and_replace_with_it(tmp_path, temp_kind):
    target = tmp_path / "r.json"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError) as info:
        atomic_write(target, b"new", overwrite=False)
    assert str(info.value) == f"{target}: already exists; pass --overwrite to replace it"
    assert isinstance(info.value, (PoolIOError, FileExistsError))
    assert target.read_bytes() == b"precious"
    atomic_write(target, b"new", overwrite=True)
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_file_that_appears_meanwhile_is_never_clobbered(tmp_path, temp_kind):
    target = tmp_path / "x.png"
    with pytest.raises(OutputExistsError, match="already exists"):
        with atomic_file(target, overwrite=False) as f:
            f.write(b"ours")
            target.write_bytes(b"theirs")  # another worker, another program
    assert target.read_bytes() == b"theirs"
    assert os.listdir(tmp_path) == ["x.png"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_permissions_follow_the_umask(tmp_path, umask, temp_kind):
    replaced = tmp_path / "old.json"
    replaced.write_bytes(b"x")
    os.chmod(replaced, 0o600)
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.json", b"{}", overwrite=False)
        atomic_write(replaced, b"{}", overwrite=True)
    finally:
        os.umask(old)
    for name in ("new.json", "old.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["new.json", "old.json"]


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_exception_in_the_block_leaves_no_file(tmp_path, exc, overwrite, temp_kind):
    (tmp_path / "old.bin").write_bytes(b"old")
    for name in ("new.bin", "old.bin"):
        with pytest.raises(exc):
            with atomic_file(tmp_path / name, overwrite=overwrite) as f:
                f.write(b"half")
                raise exc("encoder died")
    assert os.listdir(tmp_path) == ["old.bin"]
    assert (tmp_path / "old.bin").read_bytes() == b"old"


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch, temp_kind):
    target = tmp_path / "r.json"
    target.write_text("old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new", overwrite=True)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_without_hard_links(tmp_path, monkeypatch, temp_kind):
    # FAT, some network file systems: the bytes are copied to a named file, then renamed.
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    atomic_write(tmp_path / "a.bin", b"aaa", overwrite=False)
    atomic_write(tmp_path / "a.bin", b"bbb", overwrite=True)
    with pytest.raises(OutputExistsError):
        atomic_write(tmp_path / "a.bin", b"ccc", overwrite=False)
    assert (tmp_path / "a.bin").read_bytes() == b"bbb"
    assert os.listdir(tmp_path) == ["a.bin"]


class Stopped(BaseException):
    """What a batch worker's SIGTERM handler raises, wherever the worker is."""


@pytest.mark.parametrize("where", ["link", "open", "replace"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_exception_just_after_a_file_is_created_leaves_nothing(tmp_path, monkeypatch,
                                                                 where, overwrite, temp_kind):
    """An exception raised the moment a temporary name comes into being (a signal handler's,
    between the system call and the next line) still finds the file and removes it: a stopped
    ``--overwrite`` batch left hidden .NAME.xxxx.tmp files behind."""
    (tmp_path / "old.bin").write_bytes(b"old")
    real = {"link": os.link, "open": os.open, "replace": os.replace}[where]

    def then_stop(*args, **kwargs):
        result = real(*args, **kwargs)
        if where != "open" or (len(args) > 1 and args[1] & os.O_CREAT):
            raise Stopped
        return result

    monkeypatch.setattr(os, where, then_stop)
    for name in ("new.bin", "old.bin"):
        try:
            atomic_write(tmp_path / name, b"new", overwrite=overwrite)
        except (Stopped, OutputExistsError):
            pass
    left = sorted(os.listdir(tmp_path))
    assert not [n for n in left if n.endswith(".tmp")], left
    for name in left:  # whatever has its final name is whole
        assert (tmp_path / name).read_bytes() in (b"old", b"new")
