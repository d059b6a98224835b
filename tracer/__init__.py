"""The tracer: run sample commands and record every file they execute, open, check or list.

Imports nothing else of the project. Callers get :mod:`tracer.events` values and
:mod:`tracer.errors` exceptions; python-ptrace's types and errors stay inside this package.
"""

from . import _libc  # noqa: F401  (python-ptrace then finds libc without running ldconfig)
