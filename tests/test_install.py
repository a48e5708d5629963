"""The package as a user installs it: `pip install .` (not editable) into a fresh venv, then, from a folder outside
the checkout, the demo's first stage and a paper config's smoke training run on the installed files alone.

No network: the wheel is built with the project venv's setuptools (`--no-build-isolation`) and installed without its
dependencies (`--no-deps`); the fresh venv reaches them through a .pth file naming the project venv's site-packages.
A .pth file's folders are only put on sys.path (their own .pth files are not run), so the project's editable cxrjax,
installed by a .pth finder there, stays invisible: the test checks that cxrjax is imported from the fresh venv."""

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "cxrjax", "data_pipelines", "experiments")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")


def _shipped_files() -> set[str]:
    """The wheel paths of every file the package runs on: all of cxrjax/ and data_pipelines/, and the paper configs
    of experiments/ as cxrjax/experiments/ (setup.py)."""
    files = set()
    for folder, wheel_folder in (("cxrjax", "cxrjax"), ("data_pipelines", "data_pipelines")):
        for parent, directories, names in os.walk(os.path.join(ROOT, folder)):
            directories[:] = [d for d in directories if d != "__pycache__"]
            relative = os.path.relpath(parent, os.path.join(ROOT, folder))
            files |= {os.path.normpath(os.path.join(wheel_folder, relative, name)) for name in names
                      if not name.endswith(".pyc")}
    return files | {f"cxrjax/experiments/{name}" for name in os.listdir(os.path.join(ROOT, "experiments"))
                    if name.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    """`pip wheel .` of a copy of the build's inputs (an in-tree build would leave build/ in the checkout)."""
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in BUILD_INPUTS:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name, ignore=SKIP)
        else:
            shutil.copy(path, source / name)
    assert importlib.util.find_spec("setuptools"), "building the wheel without network needs setuptools in this venv"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(dist), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    [built] = os.listdir(dist)
    return str(dist / built)


def test_the_wheel_holds_every_file_the_package_runs_on(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _shipped_files() - names == set()
    assert {"cxrjax/experiments/ge2018_r18.py", "cxrjax/configs/demo.py", "data_pipelines/chestxray14.py"} <= names
    packaged = {name.split("/")[0] for name in names if not name.startswith("cxrjax-")}
    assert packaged == {"cxrjax", "data_pipelines"}  # no tests/, no top-level `experiments` package


def _fresh_venv(wheel: str, folder) -> str:
    """A venv with only the wheel installed in it and the project venv's packages readable; its bin folder."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                                "--no-index", wheel], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], check=True,
                             capture_output=True, text=True).stdout.strip()
    dependencies = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
                                  *site.getsitepackages()])
    with open(os.path.join(purelib, "project_dependencies.pth"), "w") as f:
        f.write("".join(f"{path}\n" for path in dependencies))
    return str(venv / "bin")


def test_the_installed_package_runs_the_demo_and_a_paper_config_outside_the_checkout(wheel, tmp_path):
    bin_dir = _fresh_venv(wheel, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"  # the demo's lines arrive as it prints them

    where = subprocess.run([os.path.join(bin_dir, "python"), "-c", "import cxrjax, cxrjax.experiments, "
                            "data_pipelines; print(cxrjax.__file__, cxrjax.experiments.__file__, "
                            "data_pipelines.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    installed = os.path.realpath(tmp_path / "venv")
    assert all(os.path.realpath(path).startswith(installed + os.sep) for path in where.stdout.split())

    # The demo's first stage: its synthetic release and shards, written by the installed package. The demo is
    # stopped once it has prepared (tests/test_demo.py runs the whole demo from the checkout).
    cxrjax = os.path.join(bin_dir, "cxrjax")
    with open(tmp_path / "demo.stderr", "w") as stderr:
        demo = subprocess.Popen([cxrjax, "demo", "--workdir", "demo", "--num-images", "120"], cwd=work, env=env,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        printed = []
        for line in demo.stdout:
            printed.append(line)
            if line.startswith("prepare: "):
                break
        demo.terminate()
        demo.wait(timeout=60)
    assert printed and printed[-1].strip() == "prepare: 120 CSV rows: 120 written, 0 missing, 0 failed", (
        "".join(printed) + (tmp_path / "demo.stderr").read_text())
    assert os.path.exists(work / "demo" / "data" / "chestxray14" / "48")

    # A paper row named inside the installed package, smoke-sized, on the demo's 48² shards.
    train = subprocess.run([cxrjax, "train", "--config", "cxrjax:experiments/ge2018_r18.py:smoke", "--workdir", "run",
                            "--config.data.data_dir=demo/data", "--config.data.size=48", "--config.data.crop=40"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert train.stdout.splitlines()[-1].startswith("trained to step 2; last validation mean AUC ")
    assert os.path.exists(work / "run" / "metrics.jsonl")
