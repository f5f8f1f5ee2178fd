"""Atomic writes: whole files only, and the permissions of an ordinary file."""

import os
import stat

import pytest

from attnbench import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_are_readable_by_others_not_mkstemps_0600(tmp_path, umask_022):
    p = atomic.write_json(tmp_path / "sub" / "r.json", {"x": float("inf")})
    assert p.read_text() == '{\n "x": null\n}\n'
    assert _mode(p) == 0o644
    atomic.write_text(p, "again")  # replacing a file keeps the ordinary mode
    assert p.read_text() == "again" and _mode(p) == 0o644
    assert [q.name for q in p.parent.iterdir()] == ["r.json"]  # no temporary left behind


def test_the_mode_follows_the_umask_like_open_does(tmp_path):
    old = os.umask(0o077)
    try:
        p = atomic.write_bytes(tmp_path / "private.bin", b"\0")
        with open(tmp_path / "plain.bin", "wb"):
            pass
    finally:
        os.umask(old)
    assert _mode(p) == _mode(tmp_path / "plain.bin") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    p = atomic.write_text(tmp_path / "r.txt", "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_text(p, "new")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["r.txt"]
