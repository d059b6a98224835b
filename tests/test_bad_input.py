"""Bad input: a clear message, exit 2 (usage) or 1 (failure), and nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minimizer import writers
from minimizer.closure import Closure
from minimizer.errors import CopyError
from minimizer.fsview import RootFS

from .conftest import run_minicon


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plugin=nosuch", "ls"], b"unknown plugin 'nosuch'"),
        (["--plugin=strace:mode=fat", "ls"], b"mode=fat: expected one of skinny, slim"),
        (["--plugin=strace:seconds=-1", "ls"], b"seconds=-1"),
        (["--plugin=strace:execfile=/nonexistent", "ls"], b"execfile=/nonexistent"),
        (["--plugin=scripts:colour=blue", "ls"], b"scripts has no option 'colour'"),
        (["--plugin=strace:frobnicate", "ls"], b"strace has no option 'frobnicate'"),
        (["-E", "ls 'unbalanced"], b"No closing quotation"),
        (["-E", "mode=fat,ls"], b"mode=fat"),
        (["--no-such-option"], b"No such option"),
        ([], b"nothing to keep"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: bytes) -> None:
    out = tmp_path / "o.tar"
    proc = run_minicon("-t", str(out), *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert leftovers(tmp_path) == []


def test_no_output_is_a_usage_error() -> None:
    proc = run_minicon("ls", check=False)
    assert proc.returncode == 2 and b"give -t FILE, -r DIR or --list" in proc.stderr


def test_unknown_executable(tmp_path: Path) -> None:
    proc = run_minicon("-t", str(tmp_path / "o.tar"), "ls", "no-such-program-xyz", check=False)
    assert proc.returncode == 1
    assert b"no-such-program-xyz: command not found in the root" in proc.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["/proc/minicon.tar", "/nonexistent-dir/o.tar"])
def test_unwritable_output(target: str) -> None:
    proc = run_minicon("-t", target, "ls", check=False)
    assert proc.returncode == 1 and b"minicon: error:" in proc.stderr


def test_output_is_a_directory(tmp_path: Path) -> None:
    proc = run_minicon("-t", str(tmp_path), "ls", check=False)
    assert proc.returncode == 1 and b"is a directory" in proc.stderr


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    proc = run_minicon("--root", str(root), "-t", str(tmp_path / "o.tar"), "/a", check=False)
    assert proc.returncode == 1 and b"too many levels of symbolic links" in proc.stderr
    assert leftovers(tmp_path) == ["root"]


def test_absolute_symlink_never_reaches_the_host(tmp_path: Path) -> None:
    """A link to /etc/os-release means ROOT/etc/os-release: the host's file is never copied."""
    assert os.path.exists("/etc/os-release")
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to("/etc/os-release")
    (root / "climb").symlink_to("../../../../../../etc/os-release")
    for link in ("/escape", "/climb"):
        proc = run_minicon("--root", str(root), "-t", str(tmp_path / "o.tar"), link, check=False)
        assert proc.returncode == 1, proc.stderr
        assert b"does not exist in the root" in proc.stderr
        assert leftovers(tmp_path) == ["root"]


def test_rootfs_refuses_non_empty_dir_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep-me").write_text("precious")
    proc = run_minicon("-r", str(target), "-L", "cat", check=False)
    assert proc.returncode == 1 and b"not empty (use -f/--force" in proc.stderr
    assert leftovers(target) == ["keep-me"]


def test_rootfs_force_never_writes_through_symlinks(tmp_path: Path) -> None:
    """With -f, a symlink standing in the target is replaced, not followed."""
    target = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    target.mkdir()
    (target / "usr").symlink_to(outside)
    run_minicon("-r", str(target), "-f", "-L", "cat")
    assert leftovers(outside) == []
    assert (target / "usr").is_dir() and not (target / "usr").is_symlink()
    assert (target / "usr/bin/cat").is_file()


def test_rootfs_refuses_the_source_root(tmp_path: Path) -> None:
    proc = run_minicon("--root", str(tmp_path), "-r", str(tmp_path), "-f", "-I", "/", check=False)
    assert proc.returncode == 1 and b"refusing to write over the source root" in proc.stderr


def test_vanished_file_fails_and_leaves_no_tar(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data/soon-gone").write_text("x")
    (root / "data/stays").write_text("y")
    cl = Closure(RootFS(root))
    cl.add_path(b"/data", "test")
    plan = cl.finish(ldconfig=False)
    (root / "data/soon-gone").unlink()
    with pytest.raises(CopyError, match="soon-gone"):
        writers.write_tar_file(plan, RootFS(root), str(tmp_path / "o.tar"))
    assert leftovers(tmp_path) == ["root"]
    with pytest.raises(CopyError, match="soon-gone"):
        writers.write_rootfs(plan, RootFS(root), str(tmp_path / "dir"))
    assert leftovers(tmp_path) == ["root"]
