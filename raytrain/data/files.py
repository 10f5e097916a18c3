"""Raw input files: listing, byte-range chunks for parallel reads, fingerprints, error locations.

Every reader works on local paths and on any URI pyarrow understands (s3://, gs://, hdfs://).
Big text files are cut into byte ranges so one 3 GB file (MSD triplets) is read by many tasks;
a chunk owns the lines that *start* inside its range, the usual trick that needs no index.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import pyarrow.fs as pafs

from raytrain import storage

COMPRESSED = (".gz", ".bz2", ".zst", ".lz4", ".br")
DEFAULT_CHUNK_BYTES = 64 << 20


class DataError(ValueError):
    """Bad input data: names the file (and line or row when known) and what is wrong."""


@dataclass(frozen=True)
class InputFile:
    """One raw file: its filesystem, path inside it, size, and the name shown in errors."""

    fs: pafs.FileSystem
    path: str
    size: int
    display: str

    @property
    def compressed(self) -> bool:
        return self.path.lower().endswith(COMPRESSED)


@dataclass(frozen=True)
class Chunk:
    """Byte range ``[start, end)`` of ``file``; ``index`` orders chunks within the file."""

    file: InputFile
    start: int
    end: int
    index: int


def _display(uri: str, path: str) -> str:
    return f"{uri.split('://', 1)[0]}://{path}" if "://" in uri else path


def list_files(uri: str, patterns: Sequence[str], what: str) -> list[InputFile]:
    """Files under ``uri`` (a file, a directory searched recursively for ``patterns``, or a glob).

    Raises:
        DataError: the path does not exist or holds no matching file.
    """
    if not uri:
        raise DataError(f"no input path given for {what} data (set data.path / --input)")
    has_glob = any(c in uri for c in "*?[")
    base = uri.rsplit("/", 1)[0] if has_glob else uri
    fs, root = storage.resolve(base)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"{uri} does not exist")
    if has_glob or info.type == pafs.FileType.Directory:
        selector = pafs.FileSelector(root, recursive=not has_glob)
        wanted = [uri.rsplit("/", 1)[1]] if has_glob else list(patterns)
        infos = [
            i for i in fs.get_file_info(selector)
            if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))
            and any(fnmatch.fnmatch(i.base_name, p) for p in wanted)
        ]
        if not infos:
            raise DataError(f"{uri}: no {what} files found (looked for {', '.join(wanted)})")
    else:
        infos = [info]
    infos.sort(key=lambda i: i.path)
    return [InputFile(fs, i.path, int(i.size or 0), _display(uri, i.path)) for i in infos]


def make_chunks(files: Sequence[InputFile], read_blocks: int = 0) -> list[Chunk]:
    """Cut files into byte ranges: ~64 MiB each, or about ``read_blocks`` in all when given.

    Compressed files cannot be split and are read whole by one task.
    """
    total = sum(f.size for f in files)
    target = max(1, -(-total // read_blocks)) if read_blocks > 0 else DEFAULT_CHUNK_BYTES
    chunks = []
    for file in files:
        if file.compressed or file.size <= target:
            chunks.append(Chunk(file, 0, file.size, 0))
            continue
        starts = range(0, file.size, target)
        chunks.extend(Chunk(file, s, min(s + target, file.size), i) for i, s in enumerate(starts))
    return chunks


def read_chunk(chunk: Chunk) -> tuple[bytes, int]:
    """The whole lines starting in the chunk, and the byte offset where the first one starts."""
    file = chunk.file
    try:
        if file.compressed:
            with file.fs.open_input_stream(file.path, compression="detect") as stream:
                return stream.read(), 0
        with file.fs.open_input_file(file.path) as f:
            lead = 1 if chunk.start > 0 else 0
            f.seek(chunk.start - lead)
            data = f.read(chunk.end - chunk.start + lead)
            begin = chunk.start
            if lead:  # skip the line that started in the previous chunk
                cut = data.find(b"\n")
                if cut < 0:
                    return b"", chunk.end
                data, begin = data[cut + 1:], chunk.start - 1 + cut + 1
            while data and not data.endswith(b"\n") and f.tell() < file.size:
                more = f.read(1 << 16)
                cut = more.find(b"\n")
                data += more if cut < 0 else more[: cut + 1]
                if cut >= 0:
                    break
            return data, begin
    except OSError as err:
        raise DataError(f"{file.display}: cannot read file: {err}") from None


def head(file: InputFile, n_bytes: int = 1 << 16) -> bytes:
    """The first ``n_bytes`` of the (decompressed) file, extended to the end of its first line."""
    try:
        compression = "detect" if file.compressed else None
        with file.fs.open_input_stream(file.path, compression=compression) as stream:
            data = stream.read(n_bytes)
            while data and b"\n" not in data:
                piece = stream.read(1 << 16)
                if not piece:
                    break
                data += piece
            return data
    except OSError as err:
        raise DataError(f"{file.display}: cannot read file: {err}") from None


def first_line(file: InputFile) -> str:
    """The file's first line (a CSV header), decoded."""
    line = head(file).split(b"\n", 1)[0]
    try:
        return line.decode("utf-8").rstrip("\r").lstrip("\ufeff")  # Excel writes a byte-order mark
    except UnicodeDecodeError:
        raise DataError(f"{file.display}: line 1 is not UTF-8 text (a binary or compressed file with a text name?)") from None


def line_number(chunk: Chunk, begin: int, line_in_chunk: int) -> int:
    """1-based line number in the file of the chunk's ``line_in_chunk``-th line (error path only)."""
    if begin == 0:
        return line_in_chunk + 1
    newlines = 0
    with chunk.file.fs.open_input_file(chunk.file.path) as f:
        remaining = begin
        while remaining > 0:
            piece = f.read(min(remaining, 16 << 20))
            if not piece:
                break
            newlines += piece.count(b"\n")
            remaining -= len(piece)
    return newlines + line_in_chunk + 1


def _file_digest(file: InputFile, span: int = 1 << 20) -> Iterator[bytes]:
    yield f"{os.path.basename(file.path)}\0{file.size}\0".encode()
    with file.fs.open_input_file(file.path) as f:
        yield f.read(span)
        if file.size > span:
            f.seek(max(span, file.size - span))
            yield f.read(span)


def fingerprint(files: Sequence[InputFile]) -> str:
    """sha256 over each file's name, size, first and last MiB: cheap, and catches changed sources."""
    digest = hashlib.sha256()
    for file in files:
        try:
            for part in _file_digest(file):
                digest.update(part)
        except OSError as err:
            raise DataError(f"{file.display}: cannot read file: {err}") from None
    return digest.hexdigest()


def unwrap(err: BaseException) -> DataError | None:
    """The DataError behind an exception re-raised by Ray (its message only, no worker traceback)."""
    if not isinstance(err, DataError):
        return None
    cause = getattr(err, "cause", None)
    message = str(cause if isinstance(cause, DataError) else err)
    return DataError(message.split("\n", 1)[0].strip())
