"""Request dependencies: the bearer token, and the daemon's state."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from store.db import Store

from .errors import ApiError
from .jobs import Jobs
from .settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The daemon's token (MINICON_TOKEN).")


@dataclass
class State:
    settings: Settings
    store: Store
    jobs: Jobs
    registry: CollectorRegistry
    tar_bytes: Counter
    runs_started: Counter


def state(request: Request) -> State:
    value = request.app.state.minicon
    assert isinstance(value, State)
    return value


def authorized(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = state(request).settings.token
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "a bearer token is required (Authorization: Bearer TOKEN)")
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise ApiError(401, "wrong token")


Authorized = Depends(authorized)
StateDep = Annotated[State, Depends(state)]
