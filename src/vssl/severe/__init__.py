"""The SEVERE generalization benchmark (ECCV'22): experiments and protocols as data, heads, metrics,
an SQLite results store, the runner behind ``vssl severe`` and the report behind ``vssl report``.

Kept light: import the submodules you need (``vssl.severe.experiments``, ``.protocols``, ``.results``,
``.table``, ``.report``, ``.runner``). ``run_severe``, ``build_table`` and ``render`` are the Python entry
points used by the demo.
"""

from __future__ import annotations


def __getattr__(name):  # lazy re-exports: `from vssl.severe import run_severe` without importing torch early
    if name == "run_severe":
        from vssl.severe.runner import run_severe
        return run_severe
    if name == "build_table":
        from vssl.severe.table import build_table
        return build_table
    if name == "render":
        from vssl.severe.report import render
        return render
    raise AttributeError(name)
