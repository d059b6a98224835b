"""The seed's four use cases on Debian root filesystems: traced, minimized, and still working.

Each root is built with mmdebstrap (bookworm minbase + the use case's packages; uc3 also
installs its Express app with the root's own npm) and cached. minicon traces the sample commands
of ``examples/ucN.commands`` chrooted in an overlay of the root, writes a tar, and the use case's
checks run in a chroot of the result. Every check runs against the full root too, so a check that
cannot fail is caught.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from ..conftest import build_debian_root, extract, run_minicon
from .usecases import ALL, UseCase, minicon_args, tree_size, web_page

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("as_root")]
_BUILT: dict[str, tuple[Path, Path, float]] = {}


def minimized(uc: UseCase, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """(full root, extracted minimized tree, seconds minicon took), made once per session."""
    if uc.name not in _BUILT:
        root = build_debian_root(uc.packages, uc.setup, uc.setup_key)
        tmp = tmp_path_factory.mktemp(uc.name)
        tar = tmp / f"{uc.name}.tar"
        args = minicon_args(uc, root, tar)
        with ExitStack() as stack:
            if uc.name == "uc2":  # wget fetches a live page while traced
                url = stack.enter_context(web_page())
                args += ["-E", f"wget -q -O /tmp/page {url}"]
            started = time.monotonic()
            run_minicon(*args)
            took = time.monotonic() - started
        _BUILT[uc.name] = (root, extract(tar, tmp / "root"), took)
    return _BUILT[uc.name]


@pytest.mark.parametrize("which", ["minimized", "full"])
@pytest.mark.parametrize("uc", ALL, ids=[u.name for u in ALL])
def test_checks_pass(
    uc: UseCase,
    which: str,
    tmp_path_factory: pytest.TempPathFactory,
    mounted: Callable[[Path], Path],
) -> None:
    full, small, _ = minimized(uc, tmp_path_factory)
    uc.checks(mounted(small if which == "minimized" else full))


@pytest.mark.parametrize("uc", ALL, ids=[u.name for u in ALL])
def test_much_smaller(uc: UseCase, tmp_path_factory: pytest.TempPathFactory) -> None:
    full, small, _ = minimized(uc, tmp_path_factory)
    assert tree_size(small)[0] < tree_size(full)[0] / 2
