"""ELF headers read like the loader reads them, checked against binutils' readelf."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from minimizer import elf


def readelf_dynamic(path: str) -> dict[str, list[str]]:
    out = subprocess.run(["readelf", "-dlW", path], capture_output=True, text=True).stdout
    found: dict[str, list[str]] = {
        "NEEDED": [],
        "RPATH": [],
        "RUNPATH": [],
        "SONAME": [],
        "INTERP": [],
    }
    for m in re.finditer(r"\((NEEDED|RPATH|RUNPATH|SONAME)\)\s+[^\[]*\[(.*)\]", out):
        found[m.group(1)].append(m.group(2))
    m = re.search(r"Requesting program interpreter: (.*)\]", out)
    if m:
        found["INTERP"].append(m.group(1))
    return found


def host_elf_files(limit: int = 150) -> list[str]:
    out = []
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu"):
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    if fh.read(4) == elf.ELF_MAGIC:
                        out.append(p)
            if len(out) >= limit * (1 + (d != "/usr/bin")):
                break
    return out


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf is not installed")
def test_agrees_with_readelf_on_host_files() -> None:
    files = host_elf_files()
    assert len(files) > 50
    for path in files:
        info = elf.parse(os.fsencode(path))
        ref = readelf_dynamic(path)
        assert [n.decode() for n in info.needed] == ref["NEEDED"], path
        assert ":".join(p.decode() for p in info.rpath) == ":".join(ref["RPATH"]), path
        assert ":".join(p.decode() for p in info.runpath) == ":".join(ref["RUNPATH"]), path
        assert ([info.soname.decode()] if info.soname else []) == ref["SONAME"], path
        assert ([info.interp.decode()] if info.interp else []) == ref["INTERP"], path


def test_runpath_and_soname(cc: object, tmp_path: Path) -> None:
    lib = cc(
        tmp_path / "lib/libdemo.so",
        "int demo(void){return 4;}",
        "-shared",
        "-fPIC",  # type: ignore[operator]
        "-Wl,-soname,libdemo.so.1",
    )
    prog = cc(
        tmp_path / "bin/prog",
        "int demo(void); int main(void){return demo();}",  # type: ignore[operator]
        f"-L{lib.parent}",
        "-ldemo",
        "-Wl,-rpath,$ORIGIN/../lib",
    )
    info = elf.parse(os.fsencode(prog))
    assert info.runpath == (b"$ORIGIN/../lib",)
    assert b"libdemo.so.1" in info.needed and b"libc.so.6" in info.needed
    assert not info.nodeflib and info.kind.machine == "EM_X86_64" and info.kind.elfclass == 64
    libinfo = elf.parse(os.fsencode(lib))
    assert libinfo.soname == b"libdemo.so.1"


def test_32bit_and_garbage(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\x02\x01\x01" + b"\0" * 9 + b"\xff" * 10)
    with pytest.raises(elf.ElfParseError):
        elf.parse(os.fsencode(junk))
    assert elf.read_kind(b"\x7fELF") is None
    assert elf.read_kind(b"#!/bin/sh\n") is None
