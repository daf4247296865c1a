import hashlib
import os
from pathlib import Path

import pytest

from genesis_platform.errors import CorruptBlob, NotFound
from genesis_platform.storage import BlobStore


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(str(tmp_path / "objects"))


def test_put_returns_sha256_and_reads_back(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 3_000_000)
    ref = store.put_file(source)
    assert ref.digest == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert ref.size == 3_000_000
    assert store.read_bytes(ref.digest) == source.read_bytes()


def test_identical_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    a = store.put_bytes(b"same")
    b = store.put_bytes(b"same")
    assert a == b
    blobs = [p for p in (tmp_path / "objects" / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert not any((tmp_path / "objects" / "tmp").iterdir())


def test_corrupted_blob_is_named_on_read(store: BlobStore) -> None:
    ref = store.put_bytes(b"precious data")
    Path(store.path(ref.digest)).write_bytes(b"precious dat4")
    with pytest.raises(CorruptBlob) as info:
        store.read_bytes(ref.digest)
    assert ref.digest in str(info.value)
    with pytest.raises(CorruptBlob):
        store.verify(ref.digest)


def test_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.read_bytes("0" * 64)


def test_copy_to_writes_verified_file(store: BlobStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"abc")
    target = store.copy_to(ref.digest, tmp_path / "out" / "f.txt")
    assert target.read_bytes() == b"abc"


def test_works_over_other_fsspec_backends() -> None:
    store = BlobStore("memory://genesis-test-objects")
    ref = store.put_bytes(b"in memory")
    assert store.read_bytes(ref.digest) == b"in memory"


def test_re_adding_the_original_repairs_a_corrupted_blob(store: BlobStore) -> None:
    ref = store.put_bytes(b"precious data")
    Path(store.path(ref.digest)).write_bytes(b"precious dat4")
    assert store.put_bytes(b"precious data") == ref
    assert store.read_bytes(ref.digest) == b"precious data"


def test_a_truncated_blob_is_repaired_too(store: BlobStore) -> None:
    ref = store.put_bytes(b"precious data")
    Path(store.path(ref.digest)).write_bytes(b"prec")
    store.put_bytes(b"precious data")
    store.verify(ref.digest)


def test_an_intact_blob_is_left_in_place(store: BlobStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"same")
    inode = Path(store.path(ref.digest)).stat().st_ino
    store.put_bytes(b"same")
    assert Path(store.path(ref.digest)).stat().st_ino == inode
    assert not any((tmp_path / "objects" / "tmp").iterdir())


def test_local_blobs_are_on_disk_before_they_get_their_name(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    real_replace = os.replace

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        assert synced, "renamed before fsync"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ref = store.put_bytes(b"durable")
    assert synced
    assert store.read_bytes(ref.digest) == b"durable"
