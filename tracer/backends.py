"""Choosing a backend: ``ptrace`` (the default), ``ebpf``, or ``auto`` (eBPF when it loads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .errors import TracerUnavailableError
from .events import Event, RunResult
from .ptrace_backend import Options, PtraceBackend

NAMES = ("ptrace", "ebpf", "auto")


class Backend(Protocol):
    name: str
    result: RunResult | None
    lost_events: int

    def events(self) -> Iterator[Event]: ...


def make(name: str, options: Options) -> Backend:
    """A backend for one run; ``auto`` falls back to ptrace when eBPF cannot load here."""
    if name not in NAMES:
        raise TracerUnavailableError(f"unknown backend {name!r} (one of {', '.join(NAMES)})")
    if name in ("ebpf", "auto"):
        from .ebpf_backend import EbpfBackend  # bcc is imported only when asked for

        try:
            return EbpfBackend(options)
        except TracerUnavailableError:
            if name == "ebpf":
                raise
    return PtraceBackend(options)
