"""The static closure of real compiled programs in a tiny root, proven by running them chrooted."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import chroot, extract, run_minicon

pytestmark = pytest.mark.usefixtures("as_root")
CC = Callable[..., Path]

DEMO_LIB = "int demo(void){return 4;}"
DEMO_MAIN = "int demo(void); int main(void){return demo();}"


def minimize_and_extract(root: Path, tmp_path: Path, *args: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tar = tmp_path / "out.tar"
    run_minicon("--root", str(root), "-t", str(tar), *args)
    return extract(tar, tmp_path / "out")


def test_library_through_runpath_origin(
    mini_root: Path, tmp_path: Path, cc: CC, mounted: Callable[[Path], Path]
) -> None:
    app = mini_root / "opt/app"
    cc(app / "lib/libdemo.so.1", DEMO_LIB, "-shared", "-fPIC", "-Wl,-soname,libdemo.so.1")
    (app / "lib/libdemo.so").symlink_to("libdemo.so.1")
    cc(app / "bin/prog", DEMO_MAIN, f"-L{app / 'lib'}", "-ldemo", "-Wl,-rpath,$ORIGIN/../lib")
    listing = run_minicon("--root", str(mini_root), "--list", "/opt/app/bin/prog").stdout
    assert b"/opt/app/lib/libdemo.so.1\tDT_NEEDED of /opt/app/bin/prog (RUNPATH)" in listing
    out = minimize_and_extract(mini_root, tmp_path, "/opt/app/bin/prog")
    mounted(out)  # the loader finds a program's $ORIGIN through /proc/self/exe
    assert chroot(out, "/opt/app/bin/prog").returncode == 4
    assert not (out / "opt/app/lib/libdemo.so").exists()  # only what the loader opens


def test_library_in_a_directory_with_spaces(mini_root: Path, tmp_path: Path, cc: CC) -> None:
    libdir = mini_root / "opt/my libs"
    cc(libdir / "libdemo.so", DEMO_LIB, "-shared", "-fPIC", "-Wl,-soname,libdemo.so")
    cc(mini_root / "opt/bin/prog", DEMO_MAIN, f"-L{libdir}", "-ldemo", "-Wl,-rpath,/opt/my libs")
    out = minimize_and_extract(mini_root, tmp_path, "/opt/bin/prog")
    assert (out / "opt/my libs/libdemo.so").is_file()
    assert chroot(out, "/opt/bin/prog").returncode == 4


def test_generated_ld_so_cache_finds_ld_so_conf_dirs(
    mini_root: Path, tmp_path: Path, cc: CC
) -> None:
    """A library found only through the root's ld.so.conf runs in the chroot thanks to -l."""
    libdir = mini_root / "opt/vendor/lib"
    cc(
        libdir / "libvendor.so.1",
        "int vendor(void){return 7;}",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libvendor.so.1",
    )
    cc(
        mini_root / "usr/bin/prog",
        "int vendor(void); int main(void){return vendor();}",
        f"-L{libdir}",
        "-l:libvendor.so.1",
    )
    (mini_root / "etc/ld.so.conf").write_text("/opt/vendor/lib\n")
    out = minimize_and_extract(mini_root, tmp_path, "prog")
    assert (out / "etc/ld.so.conf").read_text().splitlines()[1:] == ["/opt/vendor/lib"]
    assert chroot(out, "/usr/bin/prog").returncode == 7

    tar = tmp_path / "nocache.tar"
    run_minicon("--root", str(mini_root), "-L", "-t", str(tar), "prog")
    bare = extract(tar, tmp_path / "bare")
    proc = chroot(bare, "/usr/bin/prog")
    assert proc.returncode == 127 and b"libvendor.so.1" in proc.stderr  # the check can fail


def test_missing_library_warns_and_strict_fails(mini_root: Path, tmp_path: Path, cc: CC) -> None:
    libdir = tmp_path / "elsewhere"
    cc(libdir / "libghost.so", "int ghost(void){return 1;}", "-shared", "-fPIC")
    cc(
        mini_root / "usr/bin/haunted",
        "int ghost(void); int main(void){return ghost();}",
        f"-L{libdir}",
        "-lghost",
    )
    proc = run_minicon("--root", str(mini_root), "--list", "haunted")
    assert (
        b"libghost.so: library not found in the root (DT_NEEDED of /usr/bin/haunted)" in proc.stderr
    )
    tar = tmp_path / "strict.tar"
    proc = run_minicon("--root", str(mini_root), "--strict", "-t", str(tar), "haunted", check=False)
    assert proc.returncode == 1 and b"--strict" in proc.stderr
    assert not tar.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".strict.tar")]


def test_scripts_keep_their_interpreters(mini_root: Path, tmp_path: Path) -> None:
    subprocess.run(["cp", "-a", "/usr/bin/env", str(mini_root / "usr/bin/env")], check=True)
    script = mini_root / "opt/hello"
    script.write_text("#!/bin/sh -e\necho hello from sh\n")
    script.chmod(0o755)
    env_script = mini_root / "opt/hello-env"
    env_script.write_text("#!/usr/bin/env sh\necho hello from env\n")
    env_script.chmod(0o755)
    out = minimize_and_extract(mini_root, tmp_path, "/opt/hello", "/opt/hello-env")
    assert chroot(out, "/opt/hello").stdout == b"hello from sh\n"
    assert chroot(out, "/opt/hello-env").stdout == b"hello from env\n"
    assert (out / "usr/bin/sh").is_symlink() and (out / "usr/bin/dash").is_file()
    assert (out / "usr/bin/env").is_file()


def test_odd_file_names_survive_tar_and_rootfs(mini_root: Path, tmp_path: Path) -> None:
    odd = os.fsencode(mini_root) + b"/opt/odd dir"
    os.makedirs(odd)
    names = [b"new\nline", b"bad\xff\xfebytes", b"with space", b"tab\there"]
    for n in names:
        with open(odd + b"/" + n, "wb") as fh:
            fh.write(n)
    tar = tmp_path / "odd.tar"
    run_minicon("--root", str(mini_root), "-L", "-t", str(tar), "-I", "/opt/odd dir")
    out = extract(tar, tmp_path / "x")
    got = sorted(os.listdir(os.fsencode(out) + b"/opt/odd dir"))
    assert got == sorted(names)
    for n in names:
        with open(os.fsencode(out) + b"/opt/odd dir/" + n, "rb") as fh:
            assert fh.read() == n
    rootfs = tmp_path / "rootfs"
    run_minicon("--root", str(mini_root), "-L", "-r", str(rootfs), "-I", "/opt/odd dir")
    assert sorted(os.listdir(os.fsencode(rootfs) + b"/opt/odd dir")) == sorted(names)


def test_non_utf8_name_on_the_command_line(mini_root: Path, tmp_path: Path) -> None:
    path = os.fsencode(mini_root) + b"/opt/caf\xe9"
    with open(path, "wb") as fh:
        fh.write(b"latin-1 name")
    tar = tmp_path / "l1.tar"
    run_minicon("--root", str(mini_root), "-L", "-t", str(tar), b"/opt/caf\xe9")
    out = extract(tar, tmp_path / "x")
    with open(os.fsencode(out) + b"/opt/caf\xe9", "rb") as fh:
        assert fh.read() == b"latin-1 name"


def test_metadata_hard_links_xattrs_modes(mini_root: Path, tmp_path: Path) -> None:
    data = mini_root / "opt/data"
    data.mkdir()
    (data / "a").write_text("same inode")
    os.link(data / "a", data / "b")
    (data / "setuid").write_text("")
    os.chown(data / "setuid", 1234, 5678)
    (data / "setuid").chmod(0o4755)
    os.setxattr(data / "a", "user.minicon", b"\x00\xffvalue")
    shutil_cp = subprocess.run(["cp", "/usr/bin/true", str(data / "capable")], check=True)
    assert shutil_cp.returncode == 0
    subprocess.run(["setcap", "cap_net_raw+ep", str(data / "capable")], check=True)
    os.utime(data / "a", (1_000_000_000, 1_000_000_000))
    tar = tmp_path / "meta.tar"
    run_minicon("--root", str(mini_root), "-L", "-t", str(tar), "-I", "/opt/data")
    with tarfile.open(tar) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert (
            members["./opt/data/b"].islnk() and members["./opt/data/b"].linkname == "./opt/data/a"
        )
        assert members["./opt/data/a"].mtime == 1_000_000_000
        assert tf.pax_headers is not None
    for out in (extract(tar, tmp_path / "t"), tmp_path / "r"):
        if out.name == "r":
            run_minicon("--root", str(mini_root), "-L", "-r", str(out), "-I", "/opt/data")
        d = out / "opt/data"
        assert os.stat(d / "a").st_ino == os.stat(d / "b").st_ino
        st = os.stat(d / "setuid")
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4755, 1234, 5678)
        assert os.getxattr(d / "a", "user.minicon") == b"\x00\xffvalue"
        cap = subprocess.run(["getcap", str(d / "capable")], capture_output=True, text=True).stdout
        assert "cap_net_raw=ep" in cap
        assert os.stat(d / "a").st_mtime == 1_000_000_000
        assert (out / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_output_is_deterministic(mini_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    run_minicon("--root", str(mini_root), "-t", str(a), "sh", env=env)
    run_minicon("--root", str(mini_root), "-t", str(b), "sh", env=env)
    assert a.read_bytes() == b.read_bytes()


def test_tar_to_stdout(mini_root: Path, tmp_path: Path) -> None:
    proc = run_minicon("--root", str(mini_root), "-t", "-", "-q", "-E", "sh -c 'echo hi'")
    (tmp_path / "s.tar").write_bytes(proc.stdout)
    with tarfile.open(tmp_path / "s.tar") as tf:
        assert "./usr/bin/dash" in tf.getnames()
    assert proc.stderr == b""


def test_excludes_are_whole_components(mini_root: Path, tmp_path: Path) -> None:
    for d in ("opt/app", "opt/apple"):
        (mini_root / d).mkdir(parents=True)
        (mini_root / d / "f").write_text(d)
    out = minimize_and_extract(mini_root, tmp_path, "-I", "/opt", "-e", "/opt/app", "sh")
    assert (out / "opt/apple/f").exists() and not (out / "opt/app").exists()
    # an explicit include wins over an exclude
    out2 = minimize_and_extract(mini_root, tmp_path / "2", "-e", "/opt", "-I", "/opt/app/f", "sh")
    assert (out2 / "opt/app/f").exists() and not (out2 / "opt/apple").exists()


def test_rpath_of_the_executable_serves_its_libraries(
    mini_root: Path, tmp_path: Path, cc: CC
) -> None:
    """DT_RPATH (not RUNPATH) is inherited: libouter's own need is found through prog's RPATH."""
    inner = mini_root / "opt/inner"
    outer = mini_root / "opt/outer"
    cc(
        inner / "libinner.so",
        "int inner(void){return 5;}",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libinner.so",
    )
    cc(
        outer / "libouter.so",
        "int inner(void); int outer(void){return inner();}",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libouter.so",
        f"-L{inner}",
        "-linner",
    )
    cc(
        mini_root / "opt/prog",
        "int outer(void); int main(void){return outer();}",
        f"-L{outer}",
        "-louter",
        f"-Wl,-rpath-link,{inner}",
        "-Wl,--disable-new-dtags",
        "-Wl,-rpath,/opt/outer:/opt/inner",
    )
    listing = run_minicon("--root", str(mini_root), "--list", "/opt/prog").stdout
    assert (
        b"/opt/inner/libinner.so\tDT_NEEDED of /opt/outer/libouter.so (RPATH of /opt/prog)"
        in listing
    )
    out = minimize_and_extract(mini_root, tmp_path, "/opt/prog")
    assert chroot(out, "/opt/prog").returncode == 5


def test_hwcaps_builds_are_kept_with_the_baseline(mini_root: Path, tmp_path: Path, cc: CC) -> None:
    libdir = mini_root / "opt/lib"
    for sub in ("", "glibc-hwcaps/x86-64-v3/"):
        cc(libdir / f"{sub}libdemo.so", DEMO_LIB, "-shared", "-fPIC", "-Wl,-soname,libdemo.so")
    cc(mini_root / "opt/prog", DEMO_MAIN, f"-L{libdir}", "-ldemo", "-Wl,-rpath,/opt/lib")
    out = minimize_and_extract(mini_root, tmp_path, "/opt/prog")
    assert (out / "opt/lib/libdemo.so").is_file()
    assert (out / "opt/lib/glibc-hwcaps/x86-64-v3/libdemo.so").is_file()
    assert chroot(out, "/opt/prog").returncode == 4


def test_wrong_class_library_is_skipped(mini_root: Path, tmp_path: Path, cc: CC) -> None:
    """A 32-bit file of the right name first on the path is passed over, as by the loader."""
    first = mini_root / "opt/first"
    first.mkdir(parents=True)
    (first / "libdemo.so").write_bytes(b"\x7fELF\x01\x01\x01" + b"\0" * 57)  # ELFCLASS32
    second = mini_root / "opt/second"
    cc(second / "libdemo.so", DEMO_LIB, "-shared", "-fPIC", "-Wl,-soname,libdemo.so")
    cc(
        mini_root / "opt/prog",
        DEMO_MAIN,
        f"-L{second}",
        "-ldemo",
        "-Wl,-rpath,/opt/first:/opt/second",
    )
    out = minimize_and_extract(mini_root, tmp_path, "/opt/prog")
    assert not (out / "opt/first").exists()
    assert chroot(out, "/opt/prog").returncode == 4


def test_subcommand_form_and_verbose_listing(mini_root: Path, tmp_path: Path) -> None:
    a = run_minicon("--root", str(mini_root), "--list", "sh").stdout
    b = run_minicon("shrink", "--root", str(mini_root), "--list", "sh").stdout
    assert a == b
    assert b"/usr/bin/dash\texecutable named on the command line: sh, through /usr/bin/sh\n" in a
    proc = run_minicon("--root", str(mini_root), "-v", "-t", str(tmp_path / "v.tar"), "sh")
    assert b"/usr/bin/sh\texecutable named on the command line: sh" in proc.stderr
    assert proc.stdout == b""
    assert run_minicon("--version").stdout.startswith(b"minicon ")
    assert b"Examples:" in run_minicon("-h").stdout
