"""Scripts: the ``#!`` line as the kernel reads it, and where interpreters keep their modules."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHEBANG_MAX = 256  # BINPRM_BUF_SIZE since Linux 5.1


@dataclass(frozen=True)
class Shebang:
    interpreter: bytes  # the path the kernel executes
    argument: bytes | None  # the single optional argument (the rest of the line)
    command: bytes | None = None  # for "/usr/bin/env [opts] NAME": NAME (a PATH lookup or a path)


def parse_shebang(head: bytes) -> Shebang | None:
    """Parse the first line of a file the way ``binfmt_script`` does; None if it is no script."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0]
    line = line.strip(b" \t\r")
    if not line:
        return None
    parts = re.split(rb"[ \t]+", line, maxsplit=1)
    interpreter = parts[0]
    argument = parts[1].rstrip(b" \t\r") if len(parts) > 1 and parts[1] else None
    command = _env_command(argument) if interpreter.rsplit(b"/", 1)[-1] == b"env" else None
    return Shebang(interpreter, argument, command)


def _env_command(argument: bytes | None) -> bytes | None:
    """The program ``env`` will run: the first word that is not an option or an assignment."""
    if not argument:
        return None
    words = argument.split()
    i = 0
    while i < len(words):
        w = words[i]
        if w == b"--":
            return words[i + 1] if i + 1 < len(words) else None
        if w in (b"-u", b"--unset", b"-C", b"--chdir"):
            i += 2
            continue
        if w.startswith(b"-") or (b"=" in w and not w.startswith(b"=")):
            i += 1
            continue
        return w
    return None


# Interpreter families -> module directories (globs inside the root) for ``includefolders``.
# {v} is the interpreter's version taken from its file name (python3.11 -> 3.11, perl5.36 -> 5.36).
_FOLDERS: list[tuple[str, list[str]]] = [
    (
        r"python(?P<v>\d(\.\d+)?)?",
        [
            "{prefix}/lib/python{v}",
            "{prefix}/lib/python3/dist-packages",
            "{prefix}/lib/python{v}/site-packages",
            "{prefix}/lib64/python{v}",
            "/usr/local/lib/python{v}",
        ],
    ),
    (
        r"perl(?P<v>[\d.]*)",
        [
            "/etc/perl",
            "/usr/share/perl5",
            "/usr/share/perl/*",
            "/usr/lib/*/perl5/*",
            "/usr/lib/*/perl/*",
            "/usr/lib/*/perl-base",
            "/usr/lib64/perl5",
            "/usr/local/share/perl/*",
            "/usr/local/lib/*/perl/*",
            "/usr/local/lib/site_perl",
        ],
    ),
    (
        r"node(js)?",
        [
            "/usr/share/nodejs",
            "/usr/lib/nodejs",
            "/usr/lib/node_modules",
            "/usr/local/lib/node_modules",
        ],
    ),
    (
        r"ruby(?P<v>[\d.]*)",
        ["/usr/lib/ruby", "/usr/lib/*/ruby", "/usr/local/lib/site_ruby", "/var/lib/gems"],
    ),
    (r"php(?P<v>[\d.]*)", ["/usr/share/php", "/usr/lib/php", "/etc/php"]),
    (r"lua(?P<v>[\d.]*)", ["/usr/share/lua", "/usr/lib/*/lua", "/usr/local/share/lua"]),
    (r"tclsh(?P<v>[\d.]*)|wish(?P<w>[\d.]*)", ["/usr/share/tcltk", "/usr/lib/tcltk"]),
]


def module_folder_patterns(real_interpreter: bytes) -> list[bytes]:
    """Glob patterns of the module folders of the interpreter at ``real_interpreter``.

    ``real_interpreter`` is the resolved path (``/usr/bin/python3.11``, not ``python3``), so the
    version in its name picks the right library directory. Unknown interpreters have none.
    """
    directory, _, name = real_interpreter.rpartition(b"/")
    prefix = directory.rpartition(b"/")[0] if directory.endswith(b"/bin") else b"/usr"
    text = name.decode("utf-8", "replace")
    for pattern, folders in _FOLDERS:
        m = re.fullmatch(pattern, text)
        if m:
            version = (m.groupdict().get("v") or "").strip(".")
            version = version if "." in version else version + "*"
            return [
                f.format(prefix=prefix.decode("utf-8", "replace") or "", v=version).encode()
                for f in folders
            ]
    return []
