"""The trace store: runs and their de-duplicated accesses in SQLite or PostgreSQL.

May import :mod:`tracer`'s event values; knows nothing of the minimizer or the command line.
"""
