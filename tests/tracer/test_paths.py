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
