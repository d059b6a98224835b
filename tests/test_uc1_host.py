"""The seed's use case 1 from this machine's own root: bash ls mkdir less cat find."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from .conftest import chroot, extract, run_minicon

pytestmark = pytest.mark.usefixtures("as_root")
UC1 = ("bash", "ls", "mkdir", "less", "cat", "find")


@pytest.fixture(scope="module")
def uc1_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("uc1")
    tar = tmp / "uc1.tar"
    run_minicon("-t", str(tar), *UC1)
    with tarfile.open(tar) as tf:
        assert len(tf.getnames()) < 60  # a handful of programs, not a system
    return extract(tar, tmp / "d")


def test_programs_run_in_a_chroot(uc1_tree: Path) -> None:
    d = uc1_tree
    assert b"usr" in chroot(d, "/bin/ls", "/").stdout
    assert chroot(d, "/bin/bash", "-c", "echo ok").stdout == b"ok\n"
    assert chroot(d, "/bin/mkdir", "-p", "/tmp/made/here").returncode == 0
    assert chroot(d, "/usr/bin/find", "/tmp", "-name", "here").stdout == b"/tmp/made/here\n"
    assert chroot(d, "/bin/cat", "/etc/ld.so.conf").returncode == 0
    assert chroot(d, "/usr/bin/less", "/etc/ld.so.conf").stdout.startswith(b"# written by minicon")


def test_only_what_was_asked(uc1_tree: Path) -> None:
    assert not (uc1_tree / "usr/bin/python3").exists()
    assert not (uc1_tree / "usr/share").exists()
    assert (uc1_tree / "bin").is_symlink() and (uc1_tree / "lib64").is_symlink()
    assert (uc1_tree / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert list((uc1_tree / "proc").iterdir()) == []


def test_execution_form_and_stdout(tmp_path: Path) -> None:
    proc = run_minicon("-l", "-t", "-", "-q", "-E", "bash", "-E", "ls", "-E", "find / -maxdepth 1")
    (tmp_path / "e.tar").write_bytes(proc.stdout)
    d = extract(tmp_path / "e.tar", tmp_path / "e")
    assert chroot(d, "/bin/bash", "-c", "ls / && find / -maxdepth 0").returncode == 0
