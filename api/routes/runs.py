"""/runs: start traces, list and inspect runs, their files and their minimized tar."""

from __future__ import annotations

import io
import os
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from minimizer import modes
from store import queries, transfer
from store.errors import ImportFormatError, RunNotFoundError
from store.ingest import start_run
from store.models import Run
from store.statuses import ACTIVE, STATUSES
from tracer.ptrace_backend import CLEAN_ENV

from ..deps import Authorized, StateDep
from ..errors import ApiError
from ..jobs import Job
from ..minimize import check_root, plan_for
from ..schemas import (
    Created,
    FileEntry,
    Mode,
    ProcessOut,
    RunCreate,
    RunList,
    RunOut,
    name,
    words,
)
from ..tarstream import stream_tar

RunId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
router = APIRouter(dependencies=[Authorized], tags=["runs"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or wrong bearer token"},
    404: {"description": "No such run"},
}


def run_out(run: Run) -> RunOut:
    return RunOut(
        id=run.id,
        url=f"/runs/{run.id}",
        label=run.label,
        argv=words(run.argv),
        root=name(run.root),
        backend=run.backend,
        status=run.status,
        exit_code=run.exit_code,
        signal=run.signal,
        seconds=run.seconds,
        created_at=run.created_at,
        started_at=run.started_at,
        ended_at=run.ended_at,
        host=run.host,
        events=run.events,
        accesses=run.accesses,
        processes=run.processes,
        lost_events=run.lost_events,
        error=run.error,
    )


def get(st: StateDep, run_id: int) -> Run:
    try:
        return queries.get_run(st.store, run_id)
    except RunNotFoundError:
        raise ApiError(404, f"no run {run_id}") from None


@router.post(
    "/runs",
    status_code=202,
    responses={**ERRORS, 403: {"description": "The root is not allowed"}},
    summary="Start a trace job",
)
def create_run(body: RunCreate, st: StateDep, response: Response) -> Created:
    """Queue a traced run of ``argv`` (no shell unless ``shell``) inside ``root``; poll
    ``GET /runs/{id}`` until its status is no longer queued or running."""
    root = check_root(st.settings, os.fsencode(body.root))
    if body.shell:
        if len(body.argv) != 1:
            raise ApiError(422, "with shell, argv is one command line")
        argv = ["/bin/sh", "-c", body.argv[0]]
    else:
        argv = list(body.argv)
    seconds = min(body.seconds, st.settings.max_seconds)
    run_id = start_run(
        st.store,
        argv,
        root=root,
        label=body.label,
        backend=body.backend,
        seconds=seconds,
        status="queued",
    )
    st.runs_started.inc()
    st.jobs.submit(
        Job(
            run_id,
            argv,
            os.fsdecode(root),
            seconds,
            {**CLEAN_ENV, **body.env},
            body.cwd,
            body.label,
        )
    )
    response.headers["Location"] = f"/runs/{run_id}"
    return Created(id=run_id, url=f"/runs/{run_id}", status="queued")


@router.get("/runs", responses=ERRORS, summary="List runs")
def list_runs(
    st: StateDep,
    label: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> RunList:
    if status is not None and status not in STATUSES:
        raise ApiError(422, f"status: one of {', '.join(STATUSES)}")
    items = queries.list_runs(st.store, label=label, status=status, limit=limit, offset=offset)
    total = queries.count_runs(st.store, label=label, status=status)
    return RunList(items=[run_out(r) for r in items], total=total, limit=limit, offset=offset)


@router.post(
    "/runs/import",
    status_code=201,
    responses={**ERRORS, 413: {"description": "Too large"}},
    summary="Upload a run recorded elsewhere (minicon's JSONL export)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def import_run(request: Request, st: StateDep, response: Response) -> Created:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > st.settings.max_body:
            raise ApiError(413, f"more than {st.settings.max_body} bytes")
    label = request.query_params.get("label")
    try:
        run_id = await run_in_threadpool(
            transfer.import_jsonl, st.store, io.BytesIO(bytes(data)), label
        )
    except ImportFormatError as exc:
        raise ApiError(422, f"not a minicon run export: {exc}") from None
    response.headers["Location"] = f"/runs/{run_id}"
    return Created(id=run_id, url=f"/runs/{run_id}", status=get(st, run_id).status)


@router.get("/runs/{run_id}", responses=ERRORS, summary="One run")
def read_run(run_id: RunId, st: StateDep) -> RunOut:
    return run_out(get(st, run_id))


@router.delete(
    "/runs/{run_id}",
    responses={**ERRORS, 202: {"description": "Cancelled (it was queued or running)"}},
    status_code=204,
    summary="Cancel a queued or running run; delete a finished one",
)
def delete_run(run_id: RunId, st: StateDep) -> Response:
    run = get(st, run_id)
    if run.status in ACTIVE:
        st.jobs.cancel(run_id)
        return Response(status_code=202)
    queries.delete_run(st.store, run_id)
    return Response(status_code=204)


@router.get("/runs/{run_id}/processes", responses=ERRORS, summary="The run's processes")
def read_processes(run_id: RunId, st: StateDep) -> list[ProcessOut]:
    get(st, run_id)
    return [
        ProcessOut(
            pid=p.pid, ppid=p.ppid, argv=words(p.argv), exit_code=p.exit_code, signal=p.signal
        )
        for p in queries.processes(st.store, run_id)
    ]


@router.get("/runs/{run_id}/files", responses=ERRORS, summary="What a mode takes from the run")
def read_files(run_id: RunId, st: StateDep, mode: Mode = "skinny") -> list[FileEntry]:
    get(st, run_id)
    selection = modes.select(queries.merged(st.store, [run_id]), mode)
    return [
        *(
            FileEntry(what="file", path=name(p), reason=r)
            for p, r in sorted(selection.files.items())
        ),
        *(FileEntry(what="dir", path=name(p), reason=r) for p, r in sorted(selection.dirs.items())),
        *(
            FileEntry(what="whole", path=name(p), reason=r)
            for p, r in sorted(selection.whole.items())
        ),
    ]


@router.get(
    "/runs/{run_id}/tar",
    responses={**ERRORS, 200: {"content": {"application/x-tar": {}}}},
    response_class=StreamingResponse,
    summary="The run's minimized filesystem, streamed as it is built",
)
async def read_tar(
    run_id: RunId,
    st: StateDep,
    mode: Mode = "skinny",
    include: Annotated[list[str] | None, Query(max_length=1000)] = None,
    exclude: Annotated[list[str] | None, Query(max_length=1000)] = None,
    executable: Annotated[list[str] | None, Query(max_length=1000)] = None,
    ldconfig: bool = True,
) -> StreamingResponse:
    run = get(st, run_id)
    if run.status in ACTIVE:
        raise ApiError(409, f"run {run_id} is {run.status}: wait until it ends")
    for p in (include or []) + (exclude or []):
        if not p.startswith("/") or "\0" in p:
            raise ApiError(422, f"{p!r}: paths are absolute inside the root")
    fs, plan = await run_in_threadpool(
        plan_for,
        st.settings,
        st.store,
        [run_id],
        root=run.root,
        mode=mode,
        executables=executable or [],
        includes=include or [],
        excludes=exclude or [],
        ldconfig=ldconfig,
    )
    return StreamingResponse(
        stream_tar(plan, fs, st.tar_bytes.inc),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}.tar"'},
    )
