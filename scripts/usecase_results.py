"""Measure the four use cases and write docs/results.md (run by hand, as root).

For each: build (or reuse) its Debian root, minimize it with tracing exactly as the e2e tests do,
time that, run the checks on the minimized tree in a chroot, and list the ten largest kept files
with the reason each was kept.

    .venv/bin/python scripts/usecase_results.py
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import build_debian_root, proc_and_dev  # noqa: E402
from tests.e2e.usecases import ALL, UseCase, minicon_args, tree_size, web_page  # noqa: E402


def measure(uc: UseCase, tmp: Path) -> str:
    root = build_debian_root(uc.packages, uc.setup, uc.setup_key)
    tar = tmp / f"{uc.name}.tar"
    args = minicon_args(uc, root, tar)
    with ExitStack() as stack:
        if uc.name == "uc2":
            args += ["-E", f"wget -q -O /tmp/page {stack.enter_context(web_page())}"]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "minicon", "--list", *args], capture_output=True, check=True
        )
        took = time.monotonic() - started
    reasons = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        path, _, why = line.partition("\t")
        reasons[path] = why
    out = tmp / uc.name
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(tar), "-C", str(out)], check=True
    )
    with proc_and_dev(out):
        try:
            uc.checks(out)
            checks = "pass"
        except AssertionError as exc:
            checks = f"FAIL: {str(exc)[:200]}"
    full_size, full_files = tree_size(root)
    size, files = tree_size(out)
    largest = []
    for dirpath, _, names in os.walk(out):
        for name in names:
            p = Path(dirpath) / name
            if not p.is_symlink():
                largest.append((p.lstat().st_size, "/" + str(p.relative_to(out))))
    largest.sort(reverse=True)
    lines = [
        f"## {uc.name}: {uc.what}",
        "",
        "| full tree | minimized | files | tar | minicon took | checks | original minicon "
        "(Ubuntu 16.04) |",
        "|---|---|---|---|---|---|---|",
        f"| {full_size / 1e6:.1f} MB, {full_files} files | {size / 1e6:.2f} MB | {files} "
        f"| {tar.stat().st_size / 1e6:.2f} MB | {took:.1f} s | {checks} | {uc.original_mb} MB |",
        "",
        "The ten largest kept files:",
        "",
        "| size | file | kept because |",
        "|---|---|---|",
    ]
    for fsize, path in largest[:10]:
        lines.append(f"| {fsize / 1e6:.2f} MB | `{path}` | {reasons.get(path, '?')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    sections = []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        for uc in ALL:
            sections.append(measure(uc, Path(tmp)))
            print(sections[-1], flush=True)
    header = f"""# The seed's use cases on Debian 12: results

Written by `scripts/usecase_results.py` on {datetime.date.today()} (this 2-core VM). Each use case:
a Debian bookworm minbase root with its packages (mmdebstrap), minimized by
`minicon --root ROOT --plugin=strace:execfile=examples/ucN.commands -t ucN.tar PROGRAMS...`
(the sample commands traced chrooted in an overlay of the root), then the same checks as
`tests/e2e/test_usecases.py` run in a chroot of the result. Sizes count regular files; "tar" is
the archive minicon wrote. The original minicon's figures are its documentation's, for Ubuntu
16.04 images, whose libraries differ (Debian 12's OpenSSH links Kerberos and OpenSSL 3, its
ffmpeg 215 libraries).

"""
    (REPO / "docs").mkdir(exist_ok=True)
    (REPO / "docs/results.md").write_text(header + "\n".join(sections))


if __name__ == "__main__":
    main()
