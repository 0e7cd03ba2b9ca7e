import errno
import multiprocessing
import os

import pytest

from nbbatch.errors import FolderLockedError, StorageError
from nbbatch.store.files import ImageStore, image_file_name, sha256_hex
from nbbatch.store.lock import FolderLock


def test_file_names_follow_the_ids():
    assert image_file_name("red", 1, 1, "png") == "red.png"
    assert image_file_name("blue", 2, 3, "jpg") == "blue-2.jpg"


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    store = ImageStore(tmp_path)
    store.prepare()
    data = b"\x89PNG" + os.urandom(1000)
    store.write("images/a.png", data, sha256_hex(data))
    assert (tmp_path / "images/a.png").read_bytes() == data
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["a.png"]


def test_refuses_names_outside_the_images_folder(tmp_path):
    store = ImageStore(tmp_path)
    store.prepare()
    for bad in ("../x.png", "images/../../x.png", "images/sub/x.png", "/etc/x.png"):
        with pytest.raises(StorageError):
            store.write(bad, b"x", sha256_hex(b"x"))


def test_refuses_an_images_folder_that_is_a_symlink(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    with pytest.raises(StorageError, match="outside"):
        ImageStore(out).prepare()


def test_disk_full_is_a_clear_storage_error(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)
    store.prepare()

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="disk is full"):
        store.write("images/a.png", b"data", sha256_hex(b"data"))
    monkeypatch.undo()
    assert list((tmp_path / "images").iterdir()) == []


def test_recover_finishes_a_rename_interrupted_by_a_crash(tmp_path):
    store = ImageStore(tmp_path)
    store.prepare()
    data = b"image bytes"
    digest = sha256_hex(data)
    temp = tmp_path / "images" / f".a.png.{digest[:16]}.tmp"
    temp.write_bytes(data)
    assert store.recover("images/a.png", digest)
    assert (tmp_path / "images/a.png").read_bytes() == data
    assert not temp.exists()


def test_recover_rejects_a_torn_temporary_file(tmp_path):
    store = ImageStore(tmp_path)
    store.prepare()
    digest = sha256_hex(b"the whole image")
    (tmp_path / "images" / f".a.png.{digest[:16]}.tmp").write_bytes(b"the who")
    assert not store.recover("images/a.png", digest)
    assert store.remove_temp_files() == 1
    assert list((tmp_path / "images").iterdir()) == []


def _hold_lock(out, ready, release):
    with FolderLock(out):
        ready.set()
        release.wait(10)


def test_second_holder_is_refused_and_named(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        release.set()
        holder.join(10)
    with FolderLock(tmp_path):  # free again once the holder is gone
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    assert ready.wait(10)
    holder.kill()
    holder.join(10)
    with FolderLock(tmp_path):
        pass
