"""The built wheel carries models/ and gpus/ and runs from outside the checkout (non-editable)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
    )
    return next(out.glob("llm_vramcalc-*.whl"))


def test_wheel_ships_the_catalogs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    models = [n for n in names if n.startswith("vramcalc/_catalog/models/") and n.endswith(".yaml")]
    gpus = [n for n in names if n.startswith("vramcalc/_catalog/gpus/") and n.endswith(".yaml")]
    assert len(models) == len(list((ROOT / "models").glob("*.yaml"))) >= 35
    assert len(gpus) == len(list((ROOT / "gpus").glob("*.yaml"))) >= 45
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """Fresh venv, wheel installed non-editable; its dependencies are borrowed from this venv through
    a .pth path (offline), which cannot shadow the wheel: a .pth line only appends to sys.path."""
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "_dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import vramcalc.catalog as c; print(c.__file__); print(c.builtin_root())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=work,
    ).stdout.split()
    assert where[0].startswith(site) and where[1].startswith(site), where
    r = subprocess.run(
        [
            str(venv / "bin" / "vramcalc"),
            "estimate",
            "gemma-2-27b",
            "--bits",
            "4",
            "--ctx",
            "4096",
            "--users",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["kv_cache"]["bytes_per_token"] == 376_832
