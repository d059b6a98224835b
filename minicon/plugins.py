"""The original minicon's plugin options and ``-E`` command lines, parsed and validated.

``--plugin=NAME[:key=value[:key=value...]]`` as in the original; a key without ``=value`` means
``true``; ``exclude`` may repeat. ``-E 'seconds=60,ping -c 1 host'`` carries per-command strace
options before the first comma.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

MODES = ("skinny", "slim", "regular", "loose")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_STRACE_KEYS = {"seconds", "mode", "execfile", "showoutput", "exclude", "backend"}
BACKENDS = ("ptrace", "ebpf", "auto")


class PluginError(ValueError):
    """A plugin name, option or value the user gave is not valid (a usage error)."""


def _bool(key: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise PluginError(f"{key}={value}: expected true or false")


@dataclass
class StraceOptions:
    seconds: float = 3.0
    mode: str = "skinny"
    execfile: str | None = None
    showoutput: bool = False
    excludes: list[str] = field(default_factory=list)
    backend: str = "ptrace"

    def set(self, key: str, value: str | None) -> None:
        if key not in _STRACE_KEYS:
            raise PluginError(
                f"strace has no option {key!r} "
                "(options: seconds, mode, execfile, showoutput, exclude, backend)"
            )
        if key == "showoutput":
            self.showoutput = True if value is None else _bool(key, value)
            return
        if value is None:
            raise PluginError(f"strace option {key!r} needs a value ({key}=...)")
        if key == "seconds":
            try:
                self.seconds = float(value)
            except ValueError:
                raise PluginError(f"seconds={value}: not a number") from None
            if self.seconds < 0:
                raise PluginError(f"seconds={value}: must be 0 (no limit) or more")
        elif key == "mode":
            if value not in MODES:
                raise PluginError(f"mode={value}: expected one of {', '.join(MODES)}")
            self.mode = value
        elif key == "execfile":
            if not os.path.isfile(value) or not os.access(value, os.R_OK):
                raise PluginError(f"execfile={value}: not a readable file")
            self.execfile = value
        elif key == "backend":
            if value not in BACKENDS:
                raise PluginError(f"backend={value}: expected one of {', '.join(BACKENDS)}")
            self.backend = value
        elif key == "exclude":
            if not value.startswith("/"):
                raise PluginError(f"exclude={value}: must be an absolute path prefix")
            self.excludes.append(value)


@dataclass
class ScriptsOptions:
    includefolders: bool = False

    def set(self, key: str, value: str | None) -> None:
        if key != "includefolders":
            raise PluginError(f"scripts has no option {key!r} (options: includefolders)")
        self.includefolders = True if value is None else _bool(key, value)


@dataclass
class Plugins:
    strace: StraceOptions | None = None
    scripts: ScriptsOptions = field(default_factory=ScriptsOptions)

    def enable_all(self) -> None:
        if self.strace is None:
            self.strace = StraceOptions()

    def add(self, spec: str) -> None:
        """Apply one ``--plugin`` value."""
        name, *options = spec.split(":")
        target: StraceOptions | ScriptsOptions
        if name == "strace":
            if self.strace is None:
                self.strace = StraceOptions()
            target = self.strace
        elif name == "scripts":
            target = self.scripts
        else:
            raise PluginError(f"unknown plugin {name!r} (plugins: strace, scripts)")
        for opt in options:
            if not opt:
                continue
            key, sep, value = opt.partition("=")
            target.set(key, value if sep else None)


@dataclass(frozen=True)
class Execution:
    """One ``-E`` command line: its words, and the strace options given before a comma."""

    argv: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()


_PREFIX = re.compile(r"^((?:[a-z]+=[^,\s]*,)+)(.*)$", re.DOTALL)


def parse_execution(text: str) -> Execution:
    options: list[tuple[str, str]] = []
    m = _PREFIX.match(text)
    if m:
        pairs = [p.partition("=") for p in m.group(1).rstrip(",").split(",")]
        if all(k in _STRACE_KEYS for k, _, _ in pairs):
            probe = StraceOptions()
            for k, _, v in pairs:
                probe.set(k, v)  # validates
                options.append((k, v))
            text = m.group(2)
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise PluginError(f"-E {text!r}: {exc}") from None
    if not argv:
        raise PluginError("-E: empty command line")
    return Execution(tuple(argv), tuple(options))
