"""The SEVERE generalization benchmark (ECCV'22): experiments and protocols as data, heads, metrics,
an SQLite results store, the runner behind ``vssl severe`` and the report behind ``vssl report``.

Kept light: import the submodules you need (``vssl.severe.experiments``, ``.protocols``, ``.metrics``,
``.results``, ``.report``, ``.runner``). ``run_severe`` and ``build_table``/``render`` are the Python
entry points used by the demo.
"""

from __future__ import annotations


def __getattr__(name):  # lazy re-exports: `from vssl.severe import run_severe` without importing torch early
    if name == "run_severe":
        from vssl.severe.runner import run_severe
        return run_severe
    if name in ("build_table", "render"):
        from vssl.severe import report
        return getattr(report, name)
    raise AttributeError(name)
