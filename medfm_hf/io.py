"""The one atomic writer of the package: write to a temporary name beside the target, then rename.

Every file the package writes for a user (parquet shards, manifests, split files, result tables, cards) goes
through :func:`atomic_path`, so a reader never sees half a file and a crash (or a full disk) leaves no
partial file behind: the temporary file is removed when the write fails. A ``kill -9`` can still leave a
``<name>.tmp-<pid>`` file; :func:`remove_stale_temporaries` clears those in folders the caller owns.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
from collections.abc import Iterator

TMP_TAG = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.txt")) as tmp:
    ...     _ = open(tmp, "w").write("hello")
    >>> open(os.path.join(d, "x.txt")).read()
    'hello'
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}{TMP_TAG}{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def atomic_write_parquet(df, path: str | os.PathLike[str], *, metadata: dict[str, str] | None = None) -> None:
    """Write a :class:`pandas.DataFrame` to parquet atomically; ``metadata`` goes into the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: str = "**/*") -> list[str]:
    """Delete ``*.tmp-<pid>`` leftovers of killed writers under ``folder``; returns what was removed."""
    removed = []
    for f in glob.glob(os.path.join(os.fspath(folder), pattern + TMP_TAG + "*"), recursive=True):
        tail = f.rpartition(TMP_TAG)[2]
        if tail.isdigit() and os.path.isfile(f):
            with contextlib.suppress(OSError):
                os.remove(f)
                removed.append(f)
    return removed


def folder_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why ``folder`` cannot be used as an output folder (a file, under a file, not writable), else ``None``."""
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        return f"{folder} is a file, not a folder; choose a folder path"
    anc = folder
    while not os.path.exists(anc) and os.path.dirname(anc) != anc:
        anc = os.path.dirname(anc)
    if not os.path.isdir(anc):
        return f"{folder} lies under the file {anc}; choose a folder path"
    if not os.access(anc, os.W_OK | os.X_OK):
        return f"{folder}: no permission to write in {anc}; choose a writable folder"
    return None


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
