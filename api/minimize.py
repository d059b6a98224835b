"""Plans for the daemon: runs + a mode + named paths, inside an allowed root."""

from __future__ import annotations

import os
from collections.abc import Sequence

from minimizer import modes
from minimizer.cut import Spec, make_plan
from minimizer.errors import MinimizerError
from minimizer.fsview import RootFS, normalize
from minimizer.plan import Plan
from store import queries
from store.db import Store

from .errors import ApiError
from .settings import Settings


def check_root(settings: Settings, root: bytes) -> bytes:
    real = os.path.realpath(root)
    if not settings.root_allowed(real):
        raise ApiError(403, f"root {os.fsdecode(root)!r} is not under an --allow-root directory")
    if not os.path.isdir(real):
        raise ApiError(422, f"root {os.fsdecode(root)!r} is not a directory")
    return real


def plan_for(
    settings: Settings,
    store: Store,
    run_ids: list[int],
    *,
    root: bytes,
    mode: str,
    executables: Sequence[str] = (),
    includes: Sequence[str] = (),
    excludes: Sequence[str] = (),
    ldconfig: bool = True,
) -> tuple[RootFS, Plan]:
    """The plan of a minimization; every run must have been recorded in ``root``."""
    real = check_root(settings, root)
    for run_id in run_ids:
        run = queries.get_run(store, run_id)
        if os.path.realpath(run.root) != real:
            raise ApiError(422, f"run {run_id} was recorded in another root")
    selection = modes.select(queries.merged(store, run_ids), mode) if run_ids else None
    spec = Spec(
        root=real,
        named=[(os.fsencode(e), f"executable named in the request: {e}") for e in executables],
        includes=[(normalize(os.fsencode(i)), f"include {i}") for i in includes],
        excludes=[normalize(os.fsencode(e)) for e in excludes],
        traced=selection,
        ldconfig=ldconfig,
    )
    for name, _ in spec.named:
        if name.startswith(b"/"):
            continue
        if b"/" in name or b"\0" in name:
            raise ApiError(422, f"executable {os.fsdecode(name)!r}: a name or an absolute path")
    try:
        return make_plan(spec)
    except MinimizerError as exc:
        raise ApiError(422, str(exc)) from None
