"""The package installs: its package list is complete, and a non-editable install works from any folder."""
import glob
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT


def test_pyproject_lists_every_package_and_the_configs():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
             for p in glob.glob(os.path.join(ROOT, "segmentation", "**", "__init__.py"), recursive=True)}
    assert listed == found | {"segmentation.configs"}


def test_the_editable_install_is_what_python_imports_from_any_folder(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import segmentation; print(segmentation.__file__)"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.path.join(ROOT, "segmentation", "__init__.py")


@pytest.mark.slow
def test_pip_install_dot_gives_a_package_that_finds_its_configs(tmp_path):
    """``pip install .`` (no editable link): the package and the shipped configs come from site-packages.

    Built from a copy of what the package is made of: setuptools builds in the source folder (``build/``), and a
    module left there by an earlier build is shipped even after it was deleted from the sources.
    """
    had_build = os.path.exists(os.path.join(ROOT, "build"))
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(os.path.join(ROOT, name), source / name)
    for name in ("segmentation", "configs"):
        shutil.copytree(os.path.join(ROOT, name), source / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    probe = ("import segmentation; from segmentation.config import load_config; "
             "cfg = load_config('cityscapes/panoptic_deeplab_R50_os32_cityscapes.yaml'); "
             "print(segmentation.__file__, cfg.MODEL.BACKBONE.NAME)")
    env = {**os.environ, "PYTHONPATH": str(target)}  # before the editable install of this checkout
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    path, backbone = r.stdout.split()
    assert path.startswith(str(target)) and backbone == "resnet50"
    modules = {os.path.relpath(p, os.path.join(ROOT, "segmentation"))
               for p in glob.glob(os.path.join(ROOT, "segmentation", "**", "*.py"), recursive=True)}
    shipped = {os.path.relpath(p, target / "segmentation")
               for p in glob.glob(str(target / "segmentation" / "**" / "*.py"), recursive=True)}
    assert shipped - {os.path.join("configs", "__init__.py")} == modules
    assert os.path.exists(os.path.join(ROOT, "build")) == had_build, "the install wrote build/ into the checkout"
