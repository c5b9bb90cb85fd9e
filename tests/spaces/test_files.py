"""The one atomic write: through links, never over what is not a regular file, no litter."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from spaces import GhostNASError, check_writable_target, write_atomic, write_atomic_path
from spaces import _files


def test_text_bytes_and_a_writer_function(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a" / "b.txt", "héllo") == tmp_path / "a" / "b.txt"
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo"
    write_atomic(tmp_path / "c.bin", b"\x00\x01")
    write_atomic(tmp_path / "d.bin", lambda stream: stream.write(b"streamed"))
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01" and (tmp_path / "d.bin").read_bytes() == b"streamed"
    # A writer that wants a file name gets the temporary's, beside the target, and may read it back.
    seen = []
    write_atomic_path(tmp_path / "e.bin", lambda temp: (seen.append(temp), temp.write_bytes(b"by name"), seen.append(temp.read_bytes())))
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".e.bin.") and seen[1] == b"by name"
    assert (tmp_path / "e.bin").read_bytes() == b"by name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c.bin", "d.bin", "e.bin"]  # no temporary left


def test_a_path_writer_that_fails_its_check_replaces_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def write_then_refuse(temp: Path) -> None:
        temp.write_bytes(b"new, but wrong")
        raise GhostNASError("check failed")

    with pytest.raises(GhostNASError, match="check failed"):
        write_atomic_path(path, write_then_refuse)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    fifo = _fifo(tmp_path / "fifo")  # the target is checked as write_atomic checks it, before the writer runs
    with pytest.raises(GhostNASError, match="it is a FIFO, not a regular file"):
        write_atomic_path(fifo, lambda temp: pytest.fail("the writer ran"))
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.md"
    link.symlink_to(target.name)
    write_atomic(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.md"
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640  # its mode kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "real.md"]


def test_a_link_to_a_new_file_creates_it_but_never_its_folder(tmp_path: Path) -> None:
    (tmp_path / "to-new").symlink_to("new.md")
    write_atomic(tmp_path / "to-new", "x")
    assert (tmp_path / "new.md").read_text() == "x" and (tmp_path / "to-new").is_symlink()
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "x.md")
    with pytest.raises(GhostNASError, match="it is a link to .*missing/x.md, whose folder does not exist"):
        write_atomic(tmp_path / "dangling", "x")
    assert not (tmp_path / "missing").exists()


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(("make", "kind"), [(_fifo, "a FIFO"), (_socket, "a socket"), (_directory, "a directory")])
def test_what_is_not_a_regular_file_is_refused_and_kept(tmp_path: Path, make, kind: str) -> None:
    path = make(tmp_path / "target")
    mode = path.lstat().st_mode
    for name in (path, _link(tmp_path / "via-link", path)):
        with pytest.raises(GhostNASError) as info:
            write_atomic(name, "data")
        assert str(info.value) == f"cannot write {name}: it is {kind}, not a regular file; give a file path"
    assert path.lstat().st_mode == mode  # still what it was, not a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target", "via-link"]


def _link(link: Path, to: Path) -> Path:
    link.symlink_to(to)
    return link


def test_a_device_is_refused_before_anything_is_written() -> None:
    # Only the check runs here: whatever it said, nothing is written to /dev/null.
    with pytest.raises(GhostNASError, match="cannot write /dev/null: it is a character device, not a regular file"):
        check_writable_target("/dev/null")


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_files.os, "fsync", full)
    with pytest.raises(ValueError, match="cannot write .*f.txt: No space left on device") as info:
        write_atomic(path, "new", error=ValueError)
    assert type(info.value) is ValueError  # the caller's error class
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_link_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(GhostNASError, match="cannot write .*a: Too many levels of symbolic links"):
        write_atomic(tmp_path / "a", "x")
