"""One minimization as data: what to keep (a :class:`Spec`) in, the :class:`Plan` out.

The command line and the daemon both describe a cut this way; writing the plan (tar, directory,
a stream) is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .closure import Closure, Options
from .errors import UnresolvedLibrariesError, show
from .fsview import RootFS
from .modes import Selection
from .plan import Plan


@dataclass
class Spec:
    """Paths are inside the root, absolute and normalized; each comes with its reason."""

    root: bytes | str = b"/"
    # programs by name (looked up on the root's PATH) or paths of files and folders, in order
    named: list[tuple[bytes, str]] = field(default_factory=list)
    includes: list[tuple[bytes, str]] = field(default_factory=list)  # -I: wins over excludes
    excludes: list[bytes] = field(default_factory=list)
    traced: Selection | None = None  # what a mode took from recorded runs
    include_folders: bool = False  # scripts' module folders
    ldconfig: bool = True
    strict: bool = False  # a library that cannot be found is an error
    hidden: list[bytes] = field(default_factory=list)  # never archived (the outputs)


def make_plan(spec: Spec, fs: RootFS | None = None) -> tuple[RootFS, Plan]:
    fs = fs or RootFS(spec.root)
    options = Options(
        excludes=list(spec.excludes), include_folders=spec.include_folders, hidden=spec.hidden
    )
    cl = Closure(fs, options)
    if spec.traced is not None:
        cl.add_traced(spec.traced)
    for name, why in spec.named:
        cl.add_executable(name, why)  # a path (with a /) is kept as named, folders whole
    for path, why in spec.includes:
        cl.add_path(path, why)
    plan = cl.finish(ldconfig=spec.ldconfig)
    if plan.missing_libraries and spec.strict:
        names = ", ".join(f"{show(n)} (for {show(b)})" for n, b in plan.missing_libraries)
        raise UnresolvedLibrariesError(f"--strict: libraries not found: {names}")
    return fs, plan
