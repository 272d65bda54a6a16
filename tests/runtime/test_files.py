"""`runtime.files`: a file is replaced whole or not at all, a secret is never readable by others."""

import os
import stat

import pytest

from runtime import files
from runtime.files import make_private_dir, write_atomically

pytestmark = pytest.mark.unit


def test_a_file_is_replaced_whole_with_its_mode_and_nothing_left_beside_it(tmp_path):
    path = tmp_path / "deep" / "key"
    write_atomically(path, b"old")
    write_atomically(path, b"secret", mode=0o600)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["key"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "binding.json"
    write_atomically(path, b"old")

    def power_cut(*args):
        raise OSError("the disk went away")

    monkeypatch.setattr(files.os, "replace", power_cut)
    with pytest.raises(OSError, match="disk went away"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["binding.json"]


def test_the_file_and_its_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    """The durability rule: fsync the file, rename, fsync the folder (the rename lives there)."""
    steps = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        steps.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source, target):
        steps.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    write_atomically(tmp_path / "ready.json", b"{}")
    assert steps == ["fsync file", "rename", "fsync folder"]


def test_a_data_dir_is_made_private(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    assert make_private_dir(folder) == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
