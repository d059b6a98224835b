"""tracer.paths: a name relative to a directory resolves as the same path spelled absolute."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.paths import Resolver

NAMES = st.binary(min_size=1, max_size=20).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)


def test_one_name_relative_equals_absolute(tmp_path: Path) -> None:
    (tmp_path / "real/sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "abs").symlink_to(tmp_path / "real/sub")
    top = os.fsencode(tmp_path)
    bases = [top, top + b"/real", top + b"/link", top + b"/abs", top + b"/real/sub/", b"/"]
    resolver = Resolver()

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(bases), NAMES)
    def check(base: bytes, name: bytes) -> None:
        spelled = (base.rstrip(b"/") or b"") + b"/" + name
        assert resolver.absolute(b"", base, name) == resolver.absolute(b"", None, spelled)

    try:
        check()
        real = os.fsencode(os.path.realpath(tmp_path))
        assert resolver.absolute(b"", top + b"/link", b"f") == real + b"/real/f"
    finally:
        resolver.close()


def test_directories_resolve_like_realpath_in_any_order(tmp_path: Path) -> None:
    """Resolved one by one or from an already resolved parent, a directory is its realpath."""
    (tmp_path / "real/sub/deeper").mkdir(parents=True)
    (tmp_path / "link").symlink_to("real")
    (tmp_path / "real/lnk2").symlink_to("sub")
    (tmp_path / "abs").symlink_to(tmp_path / "real/sub")
    top = os.fsencode(tmp_path)
    dirs = [
        top + rel
        for rel in (
            b"/real",
            b"/real/sub",
            b"/real/sub/deeper",
            b"/link",
            b"/link/sub",
            b"/link/lnk2/deeper",
            b"/real/lnk2",
            b"/abs/deeper",
            b"/real/sub/../lnk2",
        )
    ]

    @settings(max_examples=50, deadline=None)
    @given(st.permutations(dirs))
    def check(order: list[bytes]) -> None:
        resolver = Resolver()
        try:
            for d in order:
                assert resolver.directory(b"", d) == os.fsencode(os.path.realpath(d)), d
        finally:
            resolver.close()

    check()
