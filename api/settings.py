"""What a daemon is allowed to do, decided at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Settings:
    token: str
    db_url: str
    allow_roots: list[bytes] = field(default_factory=list)  # real paths; empty: none allowed
    artifacts_dir: str = ""  # where generated tarballs are kept
    workers: int = 2  # trace jobs running at once
    max_seconds: float = 3600.0  # the longest trace a client may ask for
    max_body: int = 64 << 20  # bytes in one request (imports are the big ones)
    python: str = ""  # the interpreter that runs `minicon trace` jobs

    def root_allowed(self, root: bytes) -> bool:
        real = os.path.realpath(root)
        for allowed in self.allow_roots:
            if allowed == b"/" or real == allowed or real.startswith(allowed + b"/"):
                return True
        return False
