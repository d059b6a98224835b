"""The statuses of a run (no database code here: the recording path imports it cheaply)."""

from __future__ import annotations

STATUSES = ("queued", "running", "completed", "failed", "timed_out", "interrupted", "cancelled")
ACTIVE = ("queued", "running")  # somebody still works on the run
