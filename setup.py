"""Packaging beyond what pyproject.toml can say: the paper configs of `experiments/` ship inside the package, as
`cxrjax.experiments`, so that an installed (non-editable) package can train them (`--config
cxrjax:experiments/ge2018_r18.py`). pyproject.toml's `packages.find` cannot add a package from a folder outside
`cxrjax/`; `package_dir` maps it, and `find_packages` keeps every other package found automatically."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["cxrjax*", "data_pipelines*"]), "cxrjax.experiments"],
      package_dir={"cxrjax.experiments": "experiments"})
