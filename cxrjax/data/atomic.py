"""Files published whole: a reader (or the next run after a kill -9) sees the old file or all of the new one.

Why: a report, manifest, metrics log or weights file cut off halfway still parses often enough to mislead (a JSON
prefix does not, a CSV or JSON-lines prefix does). Written under a temporary name, flushed to disk and renamed over
the target in one `os.replace`, which POSIX makes atomic within a file system.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def written_whole(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """`with written_whole(path) as f: ...` writes `path + ".tmp"` and renames it over `path` when the block ends
    without an error; on an error the temporary file is removed and `path` left as it was."""
    path = os.fspath(path)
    temporary = path + ".tmp"
    try:
        with open(temporary, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    os.replace(temporary, path)


def write_json(path: str | os.PathLike, content) -> None:
    """`content` as indented JSON, written whole: the reports, `--output` files and markers."""
    with written_whole(path) as f:
        json.dump(content, f, indent=1)
