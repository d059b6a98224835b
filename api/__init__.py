"""The daemon: a FastAPI service for runs, traces and minimized tarballs (``minicon serve``).

Composes the store, the minimizer and (through ``minicon trace`` job processes) the tracer;
nothing imports it.
"""
