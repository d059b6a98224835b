"""Path resolution inside a root: the kernel's rules, as a chrooted process sees them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minimizer.errors import RootError, SymlinkLoopError
from minimizer.fsview import RootFS, ancestors, is_under, normalize


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/tool").write_text("x")
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "abs").symlink_to("/usr/bin/tool")  # absolute: inside the root
    (tmp_path / "up").symlink_to("../../../../usr")  # climbs above the root: clamped
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "usr/bin/rel").symlink_to("../bin/tool")
    return tmp_path


def test_symlinked_directory_is_recorded(root: Path) -> None:
    res = RootFS(root).resolve(b"/bin/tool")
    assert res.real == b"/usr/bin/tool" and res.links == (b"/bin",) and res.exists


def test_absolute_link_stays_in_root(root: Path) -> None:
    res = RootFS(root).resolve(b"/abs")
    assert res.real == b"/usr/bin/tool" and res.links == (b"/abs",)


def test_dotdot_never_leaves_root(root: Path) -> None:
    assert RootFS(root).resolve(b"/up/bin/tool").real == b"/usr/bin/tool"
    assert RootFS(root).resolve(b"/../../usr/bin/../bin/tool").real == b"/usr/bin/tool"


def test_dotdot_after_symlink_is_physical(root: Path) -> None:
    # /bin -> usr/bin, so /bin/.. is /usr, as for the kernel
    assert RootFS(root).resolve(b"/bin/../bin/tool").real == b"/usr/bin/tool"


def test_nofollow_keeps_last_link(root: Path) -> None:
    res = RootFS(root).resolve(b"/usr/bin/rel", follow=False)
    assert res.real == b"/usr/bin/rel" and res.links == ()


def test_loop_is_an_error_not_a_hang(root: Path) -> None:
    with pytest.raises(SymlinkLoopError):
        RootFS(root).resolve(b"/loop1")


def test_missing_component(root: Path) -> None:
    res = RootFS(root).resolve(b"/bin/nothing/deeper")
    assert not res.exists and res.real == b"/usr/bin/nothing/deeper"


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(RootError):
        RootFS(tmp_path / "f")
    with pytest.raises(RootError):
        RootFS(tmp_path / "absent")


def test_is_under_is_per_component() -> None:
    assert is_under(b"/tmp/x", b"/tmp") and is_under(b"/tmp", b"/tmp")
    assert not is_under(b"/tmpfoo", b"/tmp")
    assert ancestors(b"/a/b/c") == [b"/", b"/a", b"/a/b"]


component = st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(st.lists(st.one_of(component, st.just(b"."), st.just(b"")), max_size=6))
def test_normalize_is_idempotent_and_absolute(parts: list[bytes]) -> None:
    p = normalize(b"/".join(parts))
    assert p.startswith(b"/") and normalize(p) == p and b"//" not in p


@given(st.lists(component.filter(lambda c: c not in (b".", b"..")), min_size=1, max_size=4))
def test_odd_names_resolve_to_themselves(
    tmp_path_factory: pytest.TempPathFactory, parts: list[bytes]
) -> None:
    root = tmp_path_factory.mktemp("odd")
    path = os.fsencode(root) + b"/" + b"/".join(parts)
    os.makedirs(path, exist_ok=True)
    res = RootFS(root).resolve(b"/" + b"/".join(parts))
    assert res.exists and res.real == b"/" + b"/".join(parts)
