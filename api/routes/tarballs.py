"""/tarballs: one minimized filesystem from several runs, built once per distinct input."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from minimizer import writers
from store import queries
from store.db import now
from store.errors import RunNotFoundError
from store.models import Artifact
from store.statuses import ACTIVE

from ..deps import Authorized, State, StateDep
from ..errors import ApiError
from ..minimize import check_root, plan_for
from ..schemas import TarballCreate, TarballOut

TarballId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
router = APIRouter(dependencies=[Authorized], tags=["tarballs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or wrong bearer token"},
    404: {"description": "No such run or tarball"},
}


def _inputs(st: State, body: TarballCreate, root: bytes, run_ids: list[int]) -> dict[str, Any]:
    runs = []
    for run_id in run_ids:
        run = queries.get_run(st.store, run_id)
        if run.status in ACTIVE:
            raise ApiError(409, f"run {run_id} is {run.status}: wait until it ends")
        ended = run.ended_at.isoformat() if run.ended_at else None
        runs.append([run.id, run.status, run.events, ended])
    return {
        "root": os.fsdecode(root),
        "runs": runs,
        "mode": body.mode,
        "executables": body.executables,
        "includes": sorted(body.includes),
        "excludes": sorted(body.excludes),
        "ldconfig": body.ldconfig,
    }


def _build(
    st: State, body: TarballCreate, root: bytes, run_ids: list[int], key: str, inputs: str
) -> int:
    fs, plan = plan_for(
        st.settings,
        st.store,
        run_ids,
        root=root,
        mode=body.mode,
        executables=body.executables,
        includes=body.includes,
        excludes=body.excludes,
        ldconfig=body.ldconfig,
    )
    folder = st.settings.artifacts_dir
    os.makedirs(folder, mode=0o700, exist_ok=True)
    final = os.path.join(folder, f"{key}.tar")  # named by its inputs: a rebuild replaces it
    sha = hashlib.sha256()
    writers.write_tar_file(plan, fs, final, sha)
    with st.store.session() as s:
        artifact = Artifact(
            kind="tar",
            input_key=key,
            inputs=inputs,
            digest=sha.hexdigest(),
            size=os.path.getsize(final),
            location=final,
            created_at=now(),
        )
        s.add(artifact)
        try:
            s.commit()
        except IntegrityError:  # the same inputs were built meanwhile: theirs is as good
            s.rollback()
            found = s.scalar(select(Artifact.id).where(Artifact.input_key == key))
            assert found is not None
            return int(found)
        return artifact.id


def _out(artifact: Artifact, run_ids: list[int], cached: bool) -> TarballOut:
    return TarballOut(
        id=artifact.id,
        url=f"/tarballs/{artifact.id}",
        digest=artifact.digest or "",
        size=artifact.size or 0,
        cached=cached,
        runs=run_ids,
    )


@router.post(
    "/tarballs",
    status_code=201,
    responses={**ERRORS, 200: {"description": "Built before from the same inputs"}},
    summary="Merge runs and named paths into one minimized tarball",
)
async def create_tarball(body: TarballCreate, st: StateDep, response: Response) -> TarballOut:
    root = check_root(st.settings, os.fsencode(body.root))
    try:
        run_ids = queries.select_runs(st.store, body.runs, body.labels)
    except RunNotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    if body.labels and not set(run_ids) - set(body.runs):
        raise ApiError(404, f"no run has the labels {', '.join(body.labels)}")
    if not (run_ids or body.executables or body.includes):
        raise ApiError(422, "nothing to keep: name runs, labels, executables or includes")
    inputs = json.dumps(_inputs(st, body, root, run_ids), sort_keys=True)
    key = hashlib.sha256(inputs.encode()).hexdigest()
    with st.store.session() as s:
        artifact = s.scalar(select(Artifact).where(Artifact.input_key == key))
    if artifact is not None and artifact.location and os.path.exists(artifact.location):
        response.status_code = 200
        response.headers["Location"] = f"/tarballs/{artifact.id}"
        return _out(artifact, run_ids, cached=True)
    if artifact is not None:  # its file is gone: build it again
        with st.store.session() as s:
            s.delete(s.get(Artifact, artifact.id))
            s.commit()
    artifact_id = await run_in_threadpool(_build, st, body, root, run_ids, key, inputs)
    with st.store.session() as s:
        artifact = s.get(Artifact, artifact_id)
    assert artifact is not None
    response.headers["Location"] = f"/tarballs/{artifact.id}"
    return _out(artifact, run_ids, cached=False)


@router.get(
    "/tarballs/{tarball_id}",
    responses={**ERRORS, 200: {"content": {"application/x-tar": {}}}, 304: {}},
    response_class=FileResponse,
    summary="Download a tarball (ETag: its SHA-256)",
)
def read_tarball(tarball_id: TarballId, request: Request, st: StateDep) -> Response:
    with st.store.session() as s:
        artifact = s.get(Artifact, tarball_id)
    if artifact is None or not artifact.location or not os.path.exists(artifact.location):
        raise ApiError(404, f"no tarball {tarball_id}")
    etag = f'"{artifact.digest}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    st.tar_bytes.inc(artifact.size or 0)
    return FileResponse(
        artifact.location,
        media_type="application/x-tar",
        filename=f"minicon-{tarball_id}.tar",
        headers={"ETag": etag},
    )
