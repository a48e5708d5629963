"""The base config's fields with their comments, for `cxrjax train --help`: the config is the heart of the command
line, and its documentation lives as comments beside the values in `default.py`, so the help reads them there
rather than keeping a second copy that would drift.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import ml_collections

from cxrjax.configs import default

_ASSIGNMENT = re.compile(r"^\s*config\.([\w.]+)\s*=\s*(.*?)\s*(?:#\s*(.*))?$")
SECTIONS = ("data", "model", "optimizer")  # ConfigDicts that group fields; not fields themselves
GROUPS = ("data", "model", "losses", "optimizer")  # how the help groups fields; every other field belongs to the run


@dataclasses.dataclass(frozen=True)
class Field:
    name: str  # dotted, e.g. "data.size"
    comment: str  # what default.py says of it ("" where it says nothing)


def base_fields() -> list[Field]:
    """Every field `default.get_config()` sets, in its order, with its inline comment or the comment block just
    above it. The sections themselves (`config.data = ConfigDict()`) are not fields."""
    fields, block = [], []
    for line in inspect.getsource(default.get_config).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("# ").strip())
            continue
        match = _ASSIGNMENT.match(line)
        if match and match.group(1) not in SECTIONS:
            fields.append(Field(match.group(1), match.group(3) or " ".join(block)))
        block = [] if stripped else block
    return fields


def _value(config: ml_collections.ConfigDict, name: str):
    for part in name.split("."):
        config = config[part]
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config


def describe(config: ml_collections.ConfigDict, source: str) -> str:
    """Every base field with its value in `config` and its comment, grouped by section; `source` names where the
    values come from."""
    by_group: dict[str, list[str]] = {group: [] for group in (*GROUPS, "run")}
    fields = base_fields()
    width = max(len(f"{field.name} = {_value(config, field.name)!r}") for field in fields)
    for field in fields:
        head = field.name.split(".")[0]
        text = f"{field.name} = {_value(config, field.name)!r}"
        by_group[head if head in GROUPS else "run"].append(
            f"  {text:<{min(width, 48)}}  {field.comment}".rstrip())
    lines = [f"config fields (values of {source}; set any with --config.FIELD=VALUE):"]
    for group, rows in by_group.items():
        lines += ["", group, *rows]
    return "\n".join(lines)
