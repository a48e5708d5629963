"""The folder tree is the architecture: every module imports only from its own layer's package or from lower
layers, never from a higher one, and `data_pipelines` (the offline shard writer) reads only `cxrjax.data`.

Checked on the source text (every `import` and `from ... import` at any depth, function bodies included), so a lazy
import inside a function counts as much as one at the top of a module."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Bottom to top. A module may import from its own package and from any package of a lower rank; packages of one
# rank (training and inference) do not import each other.
LAYERS = {
    "cxrjax.configs": 0,
    "cxrjax.data": 1,
    "cxrjax.models": 2,
    "cxrjax.losses": 3,
    "cxrjax.metrics": 4,
    "cxrjax.runtime": 5,
    "cxrjax.evaluation": 6,
    "cxrjax.training": 7,
    "cxrjax.inference": 7,
    "data_pipelines": 8,
    "cxrjax.tools": 9,
    "cxrjax.cli": 10,
    "cxrjax": 11,  # the package's own __init__: the public names, on top of everything
}
DATA_PIPELINES_MAY_READ = ("cxrjax.data", "data_pipelines")


def _layer(module: str) -> str:
    """The LAYERS key a dotted module name belongs to: its longest registered prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS:
            return prefix
    raise AssertionError(f"{module} belongs to no layer of LAYERS; register its package there")


def _modules():
    for package in ("cxrjax", "data_pipelines"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    yield dotted.removesuffix(".__init__"), path


def _imports(path: str):
    """(imported module, line) for every import of the file; `from cxrjax import x` names the module cxrjax.x."""
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: a relative import; the project imports absolutely"
            yield from ((f"{node.module}.{alias.name}" if node.module == "cxrjax" else node.module, node.lineno)
                        for alias in node.names)


MODULES = sorted(_modules())


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_from_a_higher_layer(module, path):
    own = _layer(module)
    for imported, line in _imports(path):
        if imported.split(".")[0] not in ("cxrjax", "data_pipelines"):
            continue
        target = _layer(imported)
        where = f"{os.path.relpath(path, ROOT)}:{line} imports {imported}"
        if own == "data_pipelines":
            assert target.startswith(DATA_PIPELINES_MAY_READ), f"{where}: data_pipelines reads only cxrjax.data"
            continue
        if target == own:
            continue
        assert LAYERS[target] < LAYERS[own], f"{where}, a layer above or beside {own}"


def test_every_package_is_a_registered_layer():
    """A new folder under cxrjax/ must be given its place in LAYERS (and so in the architecture notes)."""
    packages = {f"cxrjax.{name}" for name in os.listdir(os.path.join(ROOT, "cxrjax"))
                if os.path.isfile(os.path.join(ROOT, "cxrjax", name, "__init__.py"))}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))
