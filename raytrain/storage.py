"""Small helpers over pyarrow filesystems so every path may be local or a URI (s3://, gs://, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs


def resolve(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path for a local path or any URI pyarrow understands."""
    text = str(uri)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).resolve())


def join(base: str, *parts: str) -> str:
    """Join path parts without mangling a URI scheme (``os.path.join`` would do for local paths only)."""
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


def exists(uri: str | os.PathLike) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str | os.PathLike) -> bytes:
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri} does not exist")
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    """Write a file, creating parent directories; local writes are atomic (temp file + rename)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{path}.tmp-{os.getpid()}"
        with fs.open_output_stream(tmp) as stream:
            stream.write(data)
        os.replace(tmp, path)
    else:  # object stores publish a whole object on close
        with fs.open_output_stream(path) as stream:
            stream.write(data)
