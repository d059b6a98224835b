"""The tracer's exceptions: nothing from python-ptrace leaves this package."""

from __future__ import annotations


class TracerError(Exception):
    """Base class of every error the tracer raises on purpose."""


class TracerUnavailableError(TracerError):
    """This machine or process cannot trace (no ptrace permission, no seccomp, wrong arch)."""


class TraceeStartError(TracerError):
    """The traced command could not be started (not found, not executable)."""
