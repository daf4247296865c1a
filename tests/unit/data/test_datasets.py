from pathlib import Path

import pyarrow as pa
import pytest

from genesis_platform import InvalidInput, NotFound, Platform
from genesis_platform.errors import CorruptBlob


def _csv(path: Path, rows: int = 3) -> Path:
    path.write_text("x,y\n" + "".join(f"{i},{i * i}\n" for i in range(rows)))
    return path


def test_add_makes_version_one_and_reads_csv(platform: Platform, tmp_path: Path) -> None:
    info = platform.datasets.add(
        "squares", [_csv(tmp_path / "s.csv")], description="x and x²", license="CC-BY-4.0"
    )
    assert info.version == 1 and info.ref == "squares@1"
    table = platform.datasets.read_table("squares")
    assert table.column("y").to_pylist() == [0, 1, 4]
    [listed] = platform.datasets.list()
    assert (listed.name, listed.versions, listed.license) == ("squares", 1, "CC-BY-4.0")


def test_versions_are_immutable_and_ordered(platform: Platform, tmp_path: Path) -> None:
    platform.datasets.add("d", [_csv(tmp_path / "a.csv", 2)])
    v2 = platform.datasets.add_version("d", [_csv(tmp_path / "b.csv", 5)], message="more")
    assert v2.version == 2
    assert platform.datasets.read_table("d", 1).num_rows == 2
    assert platform.datasets.read_table("d").num_rows == 5
    assert platform.datasets.list()[0].versions == 2


def test_folders_keep_relative_paths(platform: Platform, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    info = platform.datasets.add("runs", [folder])
    assert [f.path for f in info.files] == ["run/b.txt", "run/sub/a.txt"]
    out = platform.datasets.fetch("runs", 1, tmp_path / "out")
    assert (out / "run" / "sub" / "a.txt").read_text() == "a"


def test_parquet_tables(platform: Platform) -> None:
    table = pa.table({"a": [1.0, 2.0]})
    platform.datasets.add_table("t", table, filename="t.parquet")
    assert platform.datasets.read_table("t").equals(table)


def test_missing_path_names_the_field_and_stores_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=r"paths: .*nope\.csv does not exist"):
        platform.datasets.add("d", [_csv(tmp_path / "a.csv"), tmp_path / "nope.csv"])
    assert platform.datasets.list() == []


def test_duplicate_name_is_refused_and_original_kept(platform: Platform, tmp_path: Path) -> None:
    platform.datasets.add("d", [_csv(tmp_path / "a.csv")])
    with pytest.raises(InvalidInput, match="already exists"):
        platform.datasets.add("d", [_csv(tmp_path / "b.csv", 9)])
    assert platform.datasets.read_table("d").num_rows == 3


def test_unknown_version_says_which_is_latest(platform: Platform, tmp_path: Path) -> None:
    platform.datasets.add("d", [_csv(tmp_path / "a.csv")])
    with pytest.raises(NotFound, match="d@7 does not exist; the latest is d@1"):
        platform.datasets.get("d", 7)
    with pytest.raises(NotFound, match="dataset nope"):
        platform.datasets.get("nope")


def test_corrupted_file_is_detected_on_read(platform: Platform, tmp_path: Path) -> None:
    info = platform.datasets.add("d", [_csv(tmp_path / "a.csv")])
    blob = Path(platform.settings.objects_url) / "sha256" / info.files[0].digest[:2]
    (blob / info.files[0].digest).write_text("x,y\n6,6\n")
    with pytest.raises(CorruptBlob, match=info.files[0].digest):
        platform.datasets.read_table("d")


def test_re_adding_the_original_file_repairs_a_corrupted_version(
    platform: Platform, tmp_path: Path
) -> None:
    original = _csv(tmp_path / "a.csv")
    info = platform.datasets.add("d", [original])
    blob = Path(platform.settings.objects_url) / "sha256" / info.files[0].digest[:2]
    (blob / info.files[0].digest).write_text("x,y\n6,6\n")
    with pytest.raises(CorruptBlob):
        platform.datasets.read_table("d", 1)
    platform.datasets.add_version("d", [original], message="repair")
    assert platform.datasets.read_table("d", 1).column("y").to_pylist() == [0, 1, 4]


def test_files_that_would_share_a_path_are_refused_before_storing(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        _csv(tmp_path / folder / "x.csv", rows=2 if folder == "d1" else 4)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInput) as info:
        platform.datasets.add("dup", ["d1/x.csv", "d2/x.csv"])
    assert str(info.value) == (
        "paths: two files would both be stored as x.csv (d1/x.csv, d2/x.csv)"
        " (rename one, or add their folders instead)"
    )
    assert platform.datasets.list() == []
    assert not (Path(platform.settings.objects_url) / "sha256").exists() or not any(
        p.is_file() for p in (Path(platform.settings.objects_url) / "sha256").rglob("*")
    )
    assert [f.path for f in platform.datasets.add("dup", ["d1", "d2"]).files] == [
        "d1/x.csv",
        "d2/x.csv",
    ]


def test_the_same_file_named_twice_is_stored_once(platform: Platform, tmp_path: Path) -> None:
    path = _csv(tmp_path / "a.csv")
    info = platform.datasets.add("d", [path, tmp_path / "." / "a.csv"])
    assert [f.path for f in info.files] == ["a.csv"]
