"""The C library for python-ptrace, without its lookup.

python-ptrace's ``ptrace.ctypes_libc`` finds libc with ``ctypes.util.find_library("c")``, which
imports subprocess and tempfile and runs ``ldconfig -p``: a third of ``minicon trace``'s own
start-up on these machines. The library it looks for is the one this process already runs on,
so this module provides ``ptrace.ctypes_libc`` (the same two names) from ``dlopen(NULL)`` before
python-ptrace is imported. Importing it a second time, or after python-ptrace, changes nothing.
"""

from __future__ import annotations

import ctypes
import sys
import types

_NAME = "ptrace.ctypes_libc"

if _NAME not in sys.modules:
    _module = types.ModuleType(_NAME, __doc__)
    _module.LIBC_FILENAME = "libc.so.6"  # type: ignore[attr-defined]
    _module.libc = ctypes.CDLL(None, use_errno=True)  # type: ignore[attr-defined]
    sys.modules[_NAME] = _module
