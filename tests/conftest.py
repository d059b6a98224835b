"""Shared fixtures: real programs compiled with gcc, real root filesystems, real chroots.

Prerequisites (root, gcc, mmdebstrap) that are missing make a test skip with the reason, except
when ``MINICON_REQUIRE_ALL=1`` (set by ``.ci/run``): then they fail, so CI cannot pass by skipping.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"
CACHE_DIR = Path(os.environ.get("MINICON_TEST_CACHE", "/var/cache/minicon-test"))
# The Debian root the e2e tests minimize: a minbase system plus what the tests run in it.
DEBIAN_PACKAGES = ("iputils-ping", "libcap2-bin", "python3", "less", "findutils")


def missing(reason: str) -> None:
    """Skip, or fail where every test must run (CI)."""
    if os.environ.get("MINICON_REQUIRE_ALL") == "1":
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        missing("needs root (chroot, ownership, capabilities)")


def run_minicon(
    *args: str | bytes, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """Run the real command line in a child process."""
    proc = subprocess.run(
        [sys.executable, "-m", "minicon", *args],
        capture_output=True,
        **kw,  # type: ignore[call-overload]
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"minicon {args} exited {proc.returncode}:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc  # type: ignore[no-any-return]


def extract(tar: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(tar), "-C", str(dest)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr  # GNU tar reads it cleanly
    return dest


def chroot(
    root: Path, *argv: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a command chrooted into ``root`` with a clean environment."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/", "TERM": "dumb"}
    return subprocess.run(
        ["chroot", str(root), *argv], input=stdin or b"", capture_output=True, env=env, timeout=60
    )


@pytest.fixture
def cc(tmp_path: Path) -> object:
    """Compile C source with gcc: ``cc(out, source, *flags)``."""
    if shutil.which("gcc") is None:
        missing("gcc is not installed")

    def compile_(out: Path, source: str, *flags: str) -> Path:
        src = tmp_path / (out.name + ".c")
        src.write_text(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O1", "-o", str(out), str(src), *flags], check=True)
        return out

    return compile_


def _copy_host_file(src: str, root: Path) -> None:
    dst = root / src.lstrip("/")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


@pytest.fixture
def mini_root(tmp_path: Path) -> Path:
    """A tiny merged-/usr root: the host's glibc, its loader and dash as /usr/bin/sh.

    Not the host: every test that uses it proves minicon resolves inside --root.
    """
    root = tmp_path / "root"
    for d in ("usr/bin", "usr/lib64", HOST_LIBDIR.lstrip("/"), "etc", "tmp", "opt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for name in ("bin", "sbin", "lib"):
        (root / name).symlink_to(f"usr/{name if name != 'sbin' else 'bin'}")
    (root / "lib64").symlink_to("usr/lib64")
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2"):
        _copy_host_file(f"{HOST_LIBDIR}/{lib}", root)
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    )
    shutil.copy2("/usr/bin/dash", root / "usr/bin/dash")
    (root / "usr/bin/sh").symlink_to("dash")
    return root


def _sources_file() -> str:
    """The host's own apt sources, so no mirror host name is written in this repository."""
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if os.path.isfile(candidate) and os.path.getsize(candidate) > 0:
            return candidate
    missing("no apt sources file on this host for mmdebstrap")
    raise AssertionError  # unreachable


def build_debian_root(
    packages: tuple[str, ...],
    setup: Callable[[Path], None] | None = None,
    setup_key: str = "",
) -> Path:
    """A Debian bookworm minbase root with ``packages``, built once and cached by package list
    (and ``setup_key``: ``setup(root)`` runs once on a new tree, e.g. to install an app)."""
    if os.geteuid() != 0:
        missing("building a Debian root needs root")
    if shutil.which("mmdebstrap") is None:
        missing("mmdebstrap is not installed (apt-get install mmdebstrap)")
    key = hashlib.sha256((" ".join(sorted(packages)) + setup_key).encode()).hexdigest()[:12]
    target = CACHE_DIR / f"bookworm-{key}"
    if (target / "etc/debian_version").exists():
        return target
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_DIR / f".bookworm-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet"]
    if packages:
        cmd.append("--include=" + ",".join(packages))
    cmd += ["bookworm", str(tmp), _sources_file()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"mmdebstrap failed:\n{proc.stderr[-3000:]}")
    if setup is not None:
        try:
            setup(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    os.rename(tmp, target)
    return target


@pytest.fixture(scope="session")
def debian_root() -> Iterator[Path]:
    yield build_debian_root(DEBIAN_PACKAGES)


@pytest.fixture
def mounted(as_root: None) -> Iterator[object]:
    """Mount /proc and /dev in a chroot tree for the duration of a test: ``mounted(root)``."""
    with ExitStack() as stack:

        def mount(root: Path) -> Path:
            stack.enter_context(proc_and_dev(root))
            return root

        yield mount


@contextmanager
def proc_and_dev(root: Path) -> Iterator[Path]:
    """/proc and the host's /dev mounted in ``root`` (as a container has them), then unmounted."""
    done: list[Path] = []
    try:
        for what, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"])):
            point = root / what
            point.mkdir(exist_ok=True)
            subprocess.run(["mount", *args, str(point)], check=True)
            done.append(point)
        yield root
    finally:
        for point in reversed(done):
            subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(autouse=True, scope="session")
def _private_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands the tests run record into a throw-away store, never the machine's own."""
    old = os.environ.get("MINICON_DB")
    db = tmp_path_factory.mktemp("store") / "session.db"
    os.environ["MINICON_DB"] = f"sqlite:///{db}"
    yield
    if old is None:
        os.environ.pop("MINICON_DB", None)
    else:
        os.environ["MINICON_DB"] = old


def _postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of MINICON_TEST_PG_URL; dropped after."""
    base = os.environ.get("MINICON_TEST_PG_URL")
    if not base:
        missing(
            "no PostgreSQL server configured: "
            "export MINICON_TEST_PG_URL=$(bash scripts/postgres.sh)"
        )
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "minicon_t_" + secrets.token_hex(6)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store's URL, on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        yield from _postgres_database()
