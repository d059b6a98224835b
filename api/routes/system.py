"""/healthz (no token) and /metrics (Prometheus)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from store import migrate
from store.db import Store
from store.models import Run
from store.statuses import STATUSES

from ..deps import Authorized, StateDep
from ..schemas import Health

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Database reachable, schema at head (no token needed)")
def healthz(st: StateDep, response: Response) -> Health:
    try:
        revision = migrate.current(st.store.engine)
        reachable = True
    except SQLAlchemyError:
        revision, reachable = None, False
    ok = reachable and revision == migrate.HEAD
    if not ok:
        response.status_code = 503
    return Health(
        status="ok" if ok else "degraded",
        database=reachable,
        schema_revision=revision,
        head=migrate.HEAD,
    )


class StoreCollector:
    """Runs by status and events ingested, read from the store at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily("minicon_runs", "Runs in the store, by status", labels=["status"])
        events = CounterMetricFamily(
            "minicon_events_ingested", "Traced events recorded in the store"
        )
        with self.store.session() as s:
            counts = dict(s.execute(select(Run.status, func.count()).group_by(Run.status)).all())
            total = s.execute(select(func.coalesce(func.sum(Run.events), 0))).scalar_one()
        for status in STATUSES:
            runs.add_metric([status], counts.get(status, 0))
        events.add_metric([], total)
        yield runs
        yield events


@router.get(
    "/metrics",
    dependencies=[Authorized],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: {}},
    summary="Prometheus metrics",
)
def metrics(st: StateDep) -> Response:
    return Response(generate_latest(st.registry), media_type=CONTENT_TYPE_LATEST)
