"""The four modes as pure logic: what each takes from accesses, and what none ever sweeps."""

from __future__ import annotations

import itertools

import pytest

from minimizer.modes import MODES, Access, is_system_dir, select

ACCESSES = [
    Access("open", b"/usr/lib/x86_64-linux-gnu/libc.so.6", True),
    Access("open", b"/etc/passwd", True),
    Access("open", b"/app/plugins", True, directory=True),
    Access("list", b"/app/plugins", True),
    Access("open", b"/app/plugins/b.so", True),
    Access("stat", b"/app/conf/probe", True),
    Access("open", b"/app/missing/x", False),
    Access("exec", b"/usr/bin/tool", True),
]


def test_skinny() -> None:
    sel = select(ACCESSES, "skinny")
    assert set(sel.files) == {
        b"/usr/lib/x86_64-linux-gnu/libc.so.6",
        b"/etc/passwd",
        b"/app/plugins/b.so",
        b"/app/conf/probe",
        b"/usr/bin/tool",
    }
    assert b"/app/plugins" in sel.dirs and b"/app/missing" in sel.dirs
    assert sel.whole == {}


@pytest.mark.parametrize("mode", MODES)
def test_no_mode_sweeps_a_system_directory(mode: str) -> None:
    sel = select(ACCESSES, mode)
    assert not any(is_system_dir(d) for d in sel.whole)
    assert b"/usr/lib/x86_64-linux-gnu" not in sel.whole and b"/etc" not in sel.whole


def test_each_mode_adds_to_the_previous() -> None:
    wholes = [set(select(ACCESSES, m).whole) for m in MODES]
    assert wholes[0] == set() and wholes[1] == {b"/app/plugins"}
    assert wholes[2] == {b"/app/plugins"}  # b.so's directory; /app/plugins opened as a dir only
    assert wholes[3] == {b"/app/plugins", b"/app/conf", b"/app/missing"}
    assert all(a <= b for a, b in itertools.pairwise(wholes))


def test_multiarch_dirs_are_system_dirs() -> None:
    assert is_system_dir(b"/usr/lib/aarch64-linux-gnu") and is_system_dir(b"/lib/x86_64-linux-gnu")
    assert not is_system_dir(b"/usr/lib/python3.11")
