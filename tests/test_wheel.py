"""A plain (not editable) install works from any folder: the wheel carries the recipes `vssl demo` reads.

The wheel is built from this checkout and installed into a fresh virtual environment whose only other
packages are the project environment's dependencies (reached through a ``.pth`` path line, which does not
run the project environment's own editable-install hooks, so ``src/`` is not importable there). The demo then
runs from an empty folder with no ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from vssl.demo import MODELS, _slug

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _builds_wheels() -> bool:
    try:
        from importlib.metadata import version

        return tuple(int(x) for x in version("setuptools").split(".")[:2]) >= (70, 1)
    except Exception:  # not installed, or an unparsable version
        return False


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # offline when this environment can build (the test extra pins setuptools >= 70.1, which needs no
    # `wheel` package); otherwise pip fetches the build backend from the package index
    isolation = ["--no-build-isolation"] if _builds_wheels() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp / "dist", ROOT], tmp)
    wheel = next((tmp / "dist").glob("vssl-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    site = Path(_run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     tmp).strip())
    (site / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the project environment's pip, run by the new interpreter, installs into the new environment
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], tmp)
    return venv


def test_demo_runs_from_a_plain_install(installed, tmp_path):
    venv = installed
    where = _run([venv / "bin" / "python", "-c", "import vssl; print(vssl.__file__)"], tmp_path).strip()
    assert Path(where).is_relative_to(venv), f"vssl imported from {where}, not from the installed wheel"
    recipes = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "vssl" / "configs").rglob("*")
               if p.is_file()}
    with zipfile.ZipFile(next(venv.parent.glob("dist/vssl-*.whl"))) as wheel:
        assert recipes and recipes <= set(wheel.namelist()), recipes - set(wheel.namelist())

    out = tmp_path / "demo"
    _run([venv / "bin" / "vssl", "demo", "--budget", "smoke", "--out", out], tmp_path, timeout=900)
    report = (out / "report.md").read_text()
    # every model's row, and every pretraining recipe was found in the installed package and trained
    assert all(m.name in report for m in MODELS), report
    assert all((out / "pretrain" / _slug(m.name) / "backbone.pt").is_file() for m in MODELS if m.recipe)
