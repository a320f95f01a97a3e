"""atomic_write / atomic_target: whole files or none, hidden bounded temp names, modes, crashes, stale temps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.files import atomic
from roost.files.atomic import TEMP_SUFFIX, atomic_target, atomic_write, remove_stale_temps

OLD, NEW = b"old contents\n" * 1000, b"new contents\n" * 2000


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_replaces_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.bin"  # parents created
    atomic_write(target, OLD)
    atomic_write(target, NEW)
    assert target.read_bytes() == NEW
    assert names(target.parent) == ["file.bin"]


def test_target_keeps_the_name_for_writers_that_use_it(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    with atomic_target(target) as tmp:
        assert tmp.name == "model.pt"  # torch names its zip archive after the file
        assert tmp.parent.parent == tmp_path
        assert tmp.parent.name.startswith(".") and tmp.parent.name.endswith(TEMP_SUFFIX)
        assert tmp.exists() and not target.exists()
        tmp.write_bytes(NEW)
    assert target.read_bytes() == NEW
    assert names(tmp_path) == ["model.pt"]


@pytest.mark.parametrize(
    "name",
    [
        "n" * 251 + ".bin",  # 255 bytes: the longest name most file systems allow
        "x" + "é" * 127,  # 255 bytes, the temp name's cut falls inside a two-byte character
        os.fsdecode(b"\xff\xfe" + b"a" * 253),  # not UTF-8 (surrogateescape)
    ],
)
def test_longest_and_odd_names(tmp_path: Path, name: str) -> None:
    assert len(os.fsencode(name)) == 255
    with atomic_target(tmp_path / name) as tmp:
        tmp.write_bytes(OLD)
    assert (tmp_path / name).read_bytes() == OLD
    atomic_write(tmp_path / name, NEW)
    assert (tmp_path / name).read_bytes() == NEW
    assert names(tmp_path) == [name]


def test_temp_names_are_hidden_and_bounded() -> None:
    for tmp in list(atomic._temp_names(Path("/x") / ("é" * 127 + "x")))[:3]:
        assert tmp.name.startswith(".") and tmp.name.endswith(TEMP_SUFFIX)
        assert len(os.fsencode(tmp.name)) <= 255
        assert atomic._TEMP_NAME.fullmatch(tmp.name)


_MODES = """
import os, sys
from pathlib import Path
from roost.files.atomic import atomic_target, atomic_write
folder = Path(sys.argv[1])
for mask in (0o027, 0o002):
    os.umask(mask)
    atomic_write(folder / f"w{mask:o}", b"x")
    with atomic_target(folder / f"t{mask:o}") as tmp:
        tmp.write_bytes(b"x")
print(oct(os.umask(0)))
"""


def test_new_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", _MODES, str(tmp_path)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "0o2"  # the umask is left as the child set it
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"w27": 0o640, "t27": 0o640, "w2": 0o664, "t2": 0o664}


def test_mode_and_times_from_another_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(OLD)
    os.chmod(source, 0o604)
    os.utime(source, ns=(1_000_000_000_000_000_001, 1_100_000_000_000_000_003))
    atomic_write(tmp_path / "mode", NEW, mode_from=source)
    atomic_write(tmp_path / "both", NEW, mode_from=source, keep_times=True)
    with atomic_target(tmp_path / "target", mode_from=source, keep_times=True) as tmp:
        tmp.write_bytes(NEW)
    assert (tmp_path / "mode").stat().st_mode & 0o777 == 0o604
    assert (tmp_path / "mode").stat().st_mtime_ns != source.stat().st_mtime_ns
    for name in ("both", "target"):
        st = (tmp_path / name).stat()
        assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o604, source.stat().st_mtime_ns)
    with pytest.raises(ValueError, match="keep_times needs mode_from"):
        atomic_write(tmp_path / "x", NEW, keep_times=True)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_temp_removed_when_the_writer_raises(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    with pytest.raises(error), atomic_target(target) as tmp:
        tmp.write_bytes(NEW[:100])
        raise error("writer failed")
    assert target.read_bytes() == OLD
    assert names(tmp_path) == ["file.bin"]


def test_write_removes_its_temp_on_any_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    with pytest.raises(FileNotFoundError):
        atomic_write(target, NEW, mode_from=tmp_path / "missing")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, NEW)
    assert target.read_bytes() == OLD
    assert names(tmp_path) == ["file.bin"]


def test_remove_stale_temps(tmp_path: Path) -> None:
    old = time.time() - 7200
    stale_file = tmp_path / f".a.bin.0123abcd{TEMP_SUFFIX}"
    stale_dir = tmp_path / f".model.pt.89abcdef{TEMP_SUFFIX}"
    young = tmp_path / f".b.bin.00000000{TEMP_SUFFIX}"
    busy_dir = tmp_path / f".c.pt.11111111{TEMP_SUFFIX}"  # old folder, but its writer made a file just now
    lookalikes = [tmp_path / f"a.bin.0123abcd{TEMP_SUFFIX}", tmp_path / f".a.bin{TEMP_SUFFIX}", tmp_path / ".x.tmp"]
    for path in (stale_file, young, *lookalikes):
        path.write_bytes(b"x")
    for folder in (stale_dir, busy_dir):
        folder.mkdir()
        (folder / "inner").write_bytes(b"x")
    for path in (stale_file, stale_dir, stale_dir / "inner", busy_dir, *lookalikes):
        os.utime(path, (old, old))

    assert remove_stale_temps(tmp_path) == 2
    assert not stale_file.exists() and not stale_dir.exists()
    assert all(p.exists() for p in (young, busy_dir, *lookalikes))
    assert remove_stale_temps(tmp_path, older_than_s=-60) == 2  # everything of ours, however young
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in lookalikes)


_CRASH = """
import os, signal, sys
from pathlib import Path
from roost.files import atomic
target, where = Path(sys.argv[1]), sys.argv[2]
new = b"new contents\\n" * 2000

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if where == "target-writing":
    with atomic.atomic_target(target) as tmp, open(tmp, "wb") as f:
        f.write(new[: len(new) // 2])
        f.flush()
        die()
elif where == "write-fsync":
    atomic.os.fsync = die
    atomic.atomic_write(target, new)
elif where == "after-replace":
    atomic._fsync_dir = die
    atomic.atomic_write(target, new)
"""


@pytest.mark.parametrize(("where", "expected"), [("target-writing", OLD), ("write-fsync", OLD), ("after-replace", NEW)])
def test_a_killed_writer_leaves_the_old_file_or_the_new_one(tmp_path: Path, where: str, expected: bytes) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(OLD)
    run = subprocess.run([sys.executable, "-c", _CRASH, str(target), where], capture_output=True, check=False)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    assert target.read_bytes() == expected
    leftovers = [n for n in names(tmp_path) if n != "file.bin"]
    assert len(leftovers) == (0 if expected == NEW else 1)
    assert remove_stale_temps(tmp_path, older_than_s=-1) == len(leftovers)  # any age
    assert names(tmp_path) == ["file.bin"]
