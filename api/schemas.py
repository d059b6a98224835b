"""Request and response bodies. Byte strings (paths, argv words) are JSON strings when they are
UTF-8, else ``{"b64": "..."}``, as in the JSONL export."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODES = ("skinny", "slim", "regular", "loose")
Mode = Literal["skinny", "slim", "regular", "loose"]
Text = Annotated[str, Field(max_length=4096)]
InRootPath = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^/[^\x00]*$")]


class B64(BaseModel):
    b64: str


Name = str | B64
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]  # runs.id and artifacts.id are 32-bit


def name(value: bytes) -> Name:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return B64(b64=base64.b64encode(value).decode("ascii"))


def words(value: bytes) -> list[Name]:
    return [name(w) for w in value.split(b"\0")] if value else []


class RunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "argv": ["python3", "-c", "import json"],
                    "label": "py",
                    "root": "/srv/rootfs/debian",
                    "seconds": 30,
                }
            ]
        },
    )

    argv: list[Annotated[str, Field(max_length=4096)]] = Field(min_length=1, max_length=256)
    shell: bool = Field(False, description="Run argv[0] (the only word) with /bin/sh -c.")
    label: Annotated[str, Field(max_length=200)] | None = None
    root: InRootPath = "/"
    seconds: float = Field(60.0, gt=0, description="Time limit; the daemon caps it.")
    env: dict[Annotated[str, Field(max_length=256)], Text] = Field(
        default_factory=dict, max_length=128, description="Added to a clean environment."
    )
    cwd: InRootPath = "/"
    backend: Literal["ptrace", "ebpf", "auto"] = "ptrace"

    @field_validator("argv")
    @classmethod
    def no_nul(cls, value: list[str]) -> list[str]:
        if any("\0" in w for w in value):
            raise ValueError("argv words cannot contain NUL")
        return value

    @field_validator("env")
    @classmethod
    def env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not key or "=" in key or "\0" in key or "\0" in item:
                raise ValueError(f"not an environment variable: {key!r}")
        return value


class RunOut(BaseModel):
    id: int
    url: str
    label: str | None
    argv: list[Name]
    root: Name
    backend: str
    status: str
    exit_code: int | None
    signal: int | None
    seconds: float | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    host: str
    events: int
    accesses: int
    processes: int
    lost_events: int
    error: str | None


class RunList(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class ProcessOut(BaseModel):
    pid: int
    ppid: int
    argv: list[Name]
    exit_code: int | None
    signal: int | None


class FileEntry(BaseModel):
    what: Literal["file", "dir", "whole"]
    path: Name
    reason: str


class TarballCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"labels": ["web"], "executables": ["python3"], "mode": "skinny", "root": "/"}
            ]
        },
    )

    runs: list[Id] = Field(default_factory=list, max_length=10_000)
    labels: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=1000
    )
    root: InRootPath = "/"
    mode: Mode = "skinny"
    executables: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=1000
    )
    includes: list[InRootPath] = Field(default_factory=list, max_length=1000)
    excludes: list[InRootPath] = Field(default_factory=list, max_length=1000)
    ldconfig: bool = True


class TarballOut(BaseModel):
    id: int
    url: str
    digest: str
    size: int
    cached: bool
    runs: list[int]


class Created(BaseModel):
    id: int
    url: str
    status: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    schema_revision: str | None
    head: str
