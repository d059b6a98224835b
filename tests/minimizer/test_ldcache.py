"""ld.so.cache: the loader's order, round trips, and ld.so.conf with includes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minimizer import ldcache
from minimizer.fsview import RootFS


def host_cache() -> bytes:
    if not os.path.exists("/etc/ld.so.cache"):
        pytest.skip("the host has no /etc/ld.so.cache")
    with open("/etc/ld.so.cache", "rb") as fh:
        return fh.read()


def test_host_cache_order_is_reproduced() -> None:
    entries = ldcache.parse_cache(host_cache())
    assert len(entries) > 20
    shuffled = entries[:]
    random.Random(7).shuffle(shuffled)
    assert ldcache.sort_entries(shuffled) == entries


def test_build_round_trips_the_host_cache() -> None:
    entries = ldcache.parse_cache(host_cache())
    assert ldcache.parse_cache(ldcache.build_cache(entries)) == entries


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [
        (b"libfoo.so.10", b"libfoo.so.9", 1),
        (b"libfoo.so.2", b"libfoo.so.2", 0),
        (b"libfoo.so", b"libfoo.so.1", -1),
        (b"lib1", b"liba", 1),  # a digit sorts after any non-digit
        (b"libz.so", b"liba.so", 1),
    ],
)
def test_libcmp(a: bytes, b: bytes, sign: int) -> None:
    res = ldcache.libcmp(a, b)
    assert (res > 0) - (res < 0) == sign


names = st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b)


@given(st.lists(st.tuples(names, names), max_size=30))
def test_build_parse_round_trip(pairs: list[tuple[bytes, bytes]]) -> None:
    entries = [ldcache.CacheEntry(k, b"/lib/" + v, 0x303) for k, v in pairs]
    parsed = ldcache.parse_cache(ldcache.build_cache(entries))
    assert sorted(parsed, key=repr) == sorted(entries, key=repr)


def test_parse_conf_follows_includes_inside_the_root(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "ld.so.conf.d").mkdir(parents=True)
    (etc / "ld.so.conf").write_text("# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/a/lib\n")
    (etc / "ld.so.conf.d" / "b.conf").write_text("/opt/b/lib # trailing\n/opt/c/lib:/opt/d\n")
    (etc / "ld.so.conf.d" / "a.conf").write_text("/usr/local/lib\n")
    (etc / "ld.so.conf.d" / "ignored.txt").write_text("/nope\n")
    dirs = ldcache.parse_conf(RootFS(tmp_path))
    assert dirs == [b"/usr/local/lib", b"/opt/b/lib", b"/opt/c/lib", b"/opt/d", b"/opt/a/lib"]


def test_parse_conf_survives_an_include_loop(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.conf").write_text("include /etc/ld.so.conf\n/x\n")
    assert ldcache.parse_conf(RootFS(tmp_path)) == [b"/x"]


def test_garbage_is_no_cache() -> None:
    assert ldcache.parse_cache(b"") == []
    assert ldcache.parse_cache(b"not a cache at all" * 10) == []
