"""Input expansion: folders, keys, de-duplication, special files and excluded paths."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.jobs.inputs import Item, expand, normalise


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder without symbolic links in its path, so a file's key is also its real path."""
    return tmp_path.resolve()


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def keys(items: list[Item]) -> list[str]:
    return [item.key for item in items]


def problems(items: list[Item]) -> dict[str, str | None]:
    return {os.path.basename(item.key): item.problem for item in items}


def expand_within(seconds: float, inputs: list[Path]) -> list[Item]:
    """``expand`` in a daemon thread: a test fails, instead of hanging, if it blocks (opening a FIFO)."""
    result: list[list[Item]] = []
    thread = threading.Thread(target=lambda: result.append(expand(inputs)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"expand() did not return within {seconds} s"
    return result[0]


# ---------------------------------------------------------------- folders and keys


def test_a_folder_expands_to_its_images_sorted(root: Path) -> None:
    touch(*(root / n for n in ["b.png", "a.jpg", "C.JPEG", "notes.txt", "d.webp", "e.tiff", "raw.cr2"]))
    touch(root / "sub" / "x.jpg")
    items = expand([root])
    assert keys(items) == [str(root / n) for n in ["C.JPEG", "a.jpg", "b.png", "d.webp", "e.tiff", "raw.cr2"]]
    assert all(item.root == str(root) and item.problem is None for item in items)
    assert [item.relative() for item in items][:2] == [Path("C.JPEG"), Path("a.jpg")]


def test_recursive_descends_depth_first_in_sorted_order(root: Path) -> None:
    names = ["z.jpg", "a/y.jpg", "a/b/x.jpg", "a/c.jpg", "b/w.jpg", "a.jpg"]
    touch(*(root / n for n in names))
    expected = ["a.jpg", "z.jpg", "a/c.jpg", "a/y.jpg", "a/b/x.jpg", "b/w.jpg"]
    items = expand([root], recursive=True)
    assert keys(items) == [str(root / n) for n in expected]
    assert [str(item.relative()) for item in items] == expected
    assert keys(expand([root])) == [str(root / "a.jpg"), str(root / "z.jpg")]


def test_named_files_are_kept_whatever_their_suffix(root: Path) -> None:
    touch(root / "scan.cr2", root / "noext", root / "a.jpg")
    items = expand([root / "scan.cr2", root / "noext", root])
    assert keys(items) == [str(root / "scan.cr2"), str(root / "noext"), str(root / "a.jpg")]
    assert [item.root for item in items] == [None, None, str(root)]
    assert items[0].relative() == Path("scan.cr2")


def test_a_missing_input_is_named(root: Path) -> None:
    touch(root / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: nope/gone\.jpg"):
        expand([root / "a.jpg", "nope/gone.jpg"])


def test_keys_are_absolute_and_normalised(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(root / "photos" / "a.jpg")
    monkeypatch.chdir(root)
    assert keys(expand(["photos/../photos/./a.jpg"])) == [str(root / "photos" / "a.jpg")]
    assert keys(expand(["photos"])) == [str(root / "photos" / "a.jpg")]
    assert normalise("photos//a.jpg") == str(root / "photos" / "a.jpg")


def test_non_utf8_names_are_listed(root: Path) -> None:
    folder = os.fsencode(root)
    for name in (b"caf\xe9.jpg", b"d\xe9ir/x.jpg", b"\xff.png"):
        touch(Path(os.fsdecode(folder + b"/" + name)))
    items = expand([root], recursive=True)
    expected = [b"/caf\xe9.jpg", b"/\xff.png", b"/d\xe9ir/x.jpg"]
    assert [os.fsencode(k) for k in keys(items)] == [folder + name for name in expected]
    assert all(item.problem is None for item in items)


# ---------------------------------------------------------------- one item per file


def test_the_same_file_named_twice_is_one_item(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(root / "a.jpg", root / "b.jpg")
    monkeypatch.chdir(root)
    items = expand(["./a.jpg", str(root / "a.jpg"), "a.jpg", root, "b.jpg"])
    assert keys(items) == [str(root / "a.jpg"), str(root / "b.jpg")]
    assert [item.problem for item in items] == [None, None]
    assert items[0].root is None  # the first naming wins


def test_a_link_is_a_duplicate_of_the_real_name_even_when_listed_first(root: Path) -> None:
    touch(root / "b_real.jpg")
    (root / "a_link.jpg").symlink_to("b_real.jpg")
    items = expand([root])
    assert keys(items) == [str(root / "a_link.jpg"), str(root / "b_real.jpg")]  # links are not resolved in keys
    assert problems(items) == {
        "a_link.jpg": f"same file as {root / 'b_real.jpg'} (processed once)",
        "b_real.jpg": None,
    }


def test_links_without_their_target_process_the_first(root: Path) -> None:
    touch(root / "elsewhere" / "photo.dat")
    (root / "in").mkdir()
    for name in ("one.jpg", "two.jpg"):
        (root / "in" / name).symlink_to(root / "elsewhere" / "photo.dat")
    assert problems(expand([root / "in"])) == {
        "one.jpg": None,
        "two.jpg": f"same file as {root / 'in' / 'one.jpg'} (processed once)",
    }


# ---------------------------------------------------------------- special files become problems


def test_a_broken_link_is_a_problem(root: Path) -> None:
    (root / "gone.jpg").symlink_to(root / "nowhere.jpg")
    for items in (expand([root]), expand([root / "gone.jpg"])):
        assert keys(items) == [str(root / "gone.jpg")]
        assert items[0].problem == f"broken symbolic link (to {root / 'nowhere.jpg'})"


def test_a_fifo_is_a_problem_and_never_opened(root: Path) -> None:
    os.mkfifo(root / "pipe.jpg")
    touch(root / "ok.jpg")
    items = expand_within(20, [root, root / "pipe.jpg"])
    assert problems(items) == {"ok.jpg": None, "pipe.jpg": "not a regular file (a FIFO); not read"}
    link = root / "link.jpg"
    link.symlink_to("pipe.jpg")
    assert expand_within(20, [link])[0].problem == "not a regular file (a FIFO); not read"


@pytest.fixture
def unix_socket(root: Path) -> Iterator[Path]:
    path = root / "sock.png"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    yield path
    server.close()


def test_a_socket_is_a_problem(unix_socket: Path) -> None:
    for items in (expand([unix_socket.parent]), expand([unix_socket])):
        assert problems(items) == {"sock.png": "not a regular file (a socket); not read"}


def test_a_device_named_explicitly_is_a_problem() -> None:
    assert expand(["/dev/null"])[0].problem == "not a regular file (a character device); not read"


def test_an_unlistable_folder_is_a_problem(root: Path) -> None:
    touch(root / "a.jpg", root / "locked" / "b.jpg", root / "later" / "c.jpg")
    (root / "locked").chmod(0)
    try:
        try:
            os.listdir(root / "locked")
        except PermissionError:
            pass
        else:
            pytest.skip("permission bits do not stop this user (root) from listing a folder")
        items = expand([root], recursive=True)
    finally:
        (root / "locked").chmod(0o755)
    assert keys(items) == [str(root / n) for n in ("a.jpg", "later/c.jpg", "locked")]
    assert items[2].problem == "cannot list this folder: Permission denied"


# ---------------------------------------------------------------- what is never an input


def test_excluded_paths_and_everything_under_them_are_not_inputs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["a.jpg", "report.jpg", "out/b.jpg", "out/deep/c.jpg", "out2/d.jpg", "outx.jpg", "report.jpg.png"]
    touch(*(root / n for n in names))
    monkeypatch.chdir(root)
    items = expand([root, root / "out" / "b.jpg"], recursive=True, exclude=["report.jpg", str(root / "out") + "/"])
    assert keys(items) == [str(root / n) for n in ["a.jpg", "outx.jpg", "report.jpg.png", "out2/d.jpg"]]


def test_an_excluded_input_folder_gives_nothing(root: Path) -> None:
    touch(root / "out" / "a.jpg")
    assert expand([root / "out"], exclude=[root / "out"]) == []


def test_recursive_mode_does_not_follow_linked_folders(root: Path) -> None:
    touch(root / "in" / "a.jpg", root / "other" / "b.jpg")
    (root / "in" / "linked").symlink_to(root / "other")
    (root / "in" / "loop").symlink_to(root / "in")
    (root / "in" / "dir.jpg").symlink_to(root / "other")  # a linked folder with an image suffix
    items = expand([root / "in"], recursive=True)
    assert problems(items) == {"a.jpg": None, "dir.jpg": "not a regular file (a special file); not read"}
    assert keys(expand([root / "in" / "linked"], recursive=True)) == [str(root / "in" / "linked" / "b.jpg")]
