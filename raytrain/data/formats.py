"""Raw readers: MovieLens, Netflix Prize, MSD Taste Profile, generic CSV/Parquet -> interactions.

Every reader yields the canonical table of DESIGN.md: ``user_id`` and ``item_id`` (int64 or
string), ``value`` float32 (rating or play count) and, when the source has one, ``timestamp``
int64 seconds. Reads run as Ray Data tasks over byte ranges (text) or files (Parquet), so the
driver only lists files. Bad input raises :class:`DataError` naming the file and line or row.

Text limits: one record per line; generic CSV fields may be wrapped in double quotes but must not
contain the delimiter or a newline. Compressed text (``.gz``, ``.bz2``, ...) is read whole per file.
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from ray.exceptions import RayError

from raytrain.config import DataConfig
from raytrain.data import textparse as tp
from raytrain.data.files import (
    Chunk, DataError, InputFile, first_line, fingerprint, head, list_files, make_chunks, read_chunk, unwrap,
)
from raytrain.data.parquet_source import ParquetColumns, parquet_columns, read_parquet_file

__all__ = ["DataError", "ReadPlan", "plan_read", "read_interactions", "raise_data_errors"]

PATTERNS = {
    "movielens": ("ratings.csv", "ratings.dat", "u.data", "ratings.csv.gz", "ratings.dat.gz"),
    "netflix": ("combined_data_*.txt", "mv_*.txt", "combined_data_*.txt.gz"),
    "msd": ("train_triplets.txt", "*triplets*.txt", "*triplets*.txt.gz"),
    "csv": ("*.csv", "*.csv.gz", "*.tsv"),
    "parquet": ("*.parquet", "*.pq"),
}
ML_NAMES = {
    "user_id": ("userId", "user_id", "UserID", "user"),
    "item_id": ("movieId", "item_id", "movie_id", "itemId", "MovieID", "item"),
    "value": ("rating", "Rating"),
    "timestamp": ("timestamp", "Timestamp"),
}


@dataclass(frozen=True)
class TextLayout:
    """How one delimited file's lines map to canonical columns (field index per column)."""

    delimiter: str
    n_fields: int
    header: bool
    columns: dict[str, int]
    user_type: pa.DataType = pa.int64()
    item_type: pa.DataType = pa.int64()
    quoted: bool = False
    description: str = ""
    id_hint: str = ""  # appended to "is not an integer" when the id type was guessed


def _ml_layout(file: InputFile) -> TextLayout:
    """MovieLens: u.data (tab), ratings.dat ('::'), ratings.csv (header with named columns)."""
    line = first_line(file)
    name = file.path.lower()
    fixed = {"user_id": 0, "item_id": 1, "value": 2, "timestamp": 3}
    if "::" in line or name.endswith((".dat", ".dat.gz")):
        return TextLayout("::", 4, False, fixed, description="UserID::MovieID::Rating::Timestamp")
    if "\t" in line and "," not in line:
        return TextLayout("\t", 4, False, fixed, description="user<TAB>item<TAB>rating<TAB>timestamp")
    header = [h.strip().strip('"') for h in line.split(",")]
    columns = {}
    for canonical, names in ML_NAMES.items():
        found = [header.index(n) for n in names if n in header]
        if not found:
            raise DataError(f"{file.display}: header {line!r} has no {canonical.split('_')[0]} column "
                            f"(expected one of {', '.join(names)})")
        columns[canonical] = found[0]
    return TextLayout(",", len(header), True, columns, quoted=True, description=line)


def _fixed_layout(file: InputFile, layout: TextLayout) -> TextLayout:
    return layout


def _sniff_id_type(values: list[str], id_dtype: str) -> pa.DataType:
    if id_dtype != "auto":
        return pa.int64() if id_dtype == "int64" else pa.string()
    digits = [v.strip().strip('"') for v in values]
    return pa.int64() if digits and all(v.lstrip("-").isdigit() for v in digits) else pa.string()


def _csv_layout(file: InputFile, data: DataConfig, user_type: pa.DataType | None = None,
                item_type: pa.DataType | None = None) -> TextLayout:
    """Generic CSV with a header row; columns come from data.user_col / item_col / value_col / timestamp_col."""
    line = first_line(file)
    delimiter = "\t" if "\t" in line and "," not in line else ","
    header = [h.strip().strip('"') for h in line.split(delimiter)]
    wanted = {"user_id": data.user_col, "item_id": data.item_col, "value": data.value_col,
              "timestamp": data.timestamp_col}
    columns = {}
    for canonical, name in wanted.items():
        if not name:
            continue
        if name not in header:
            key = {"user_id": "user_col", "item_id": "item_col", "value": "value_col"}.get(canonical, "timestamp_col")
            raise DataError(f"{file.display}: no column {name!r} (data.{key}); the header has: {', '.join(header)}")
        columns[canonical] = header.index(name)
    hint = " (ids looked like integers in the first lines; set data.id_dtype=string)" if data.id_dtype == "auto" else ""
    return TextLayout(delimiter, len(header), True, columns, user_type or pa.int64(), item_type or pa.int64(),
                      quoted=True, description=delimiter.join(header), id_hint=hint)


def _sample_rows(file: InputFile, layout: TextLayout, n: int = 200) -> list[list[str]]:
    lines = head(file).decode("utf-8", errors="replace").splitlines()[1 if layout.header else 0:][:n]
    return [line.split(layout.delimiter) for line in lines if line.strip()]


def parse_delimited(chunk: Chunk, layout_fn: Callable[[InputFile], TextLayout]) -> pa.Table:
    """One byte range of a delimited file -> canonical table."""
    layout = layout_fn(chunk.file)
    data, begin = read_chunk(chunk)
    lines = tp.Lines(chunk, data, begin)
    rows = lines.nonblank
    if layout.header and begin == 0:
        rows = rows[rows != 0]
    fields = tp.split_fields(lines, rows, layout.delimiter, layout.n_fields, layout.description)
    if layout.quoted:
        fields = [tp.unquote(f) for f in fields]
    cols = layout.columns
    out = {
        "user_id": tp.to_id(fields[cols["user_id"]], "user id", layout.user_type, lines, rows, layout.id_hint),
        "item_id": tp.to_id(fields[cols["item_id"]], "item id", layout.item_type, lines, rows, layout.id_hint),
        "value": (tp.to_float32(fields[cols["value"]], "value", lines, rows) if "value" in cols
                  else pa.array(np.ones(len(rows), dtype=np.float32))),
    }
    if "timestamp" in cols:
        out["timestamp"] = tp.to_int64(fields[cols["timestamp"]], "timestamp", lines, rows, non_negative=False)
    return pa.table(out)


def _previous_movie(chunk: Chunk, begin: int) -> int | None:
    """The last 'MovieID:' header before byte ``begin`` (a chunk may start inside a movie's block)."""
    carry, pos = b"", begin
    with chunk.file.fs.open_input_file(chunk.file.path) as f:
        while pos > 0:
            start = max(0, pos - (1 << 20))
            f.seek(start)
            parts = (f.read(pos - start) + carry).split(b"\n")
            carry, candidates = (parts[0], parts[1:]) if start > 0 else (b"", parts)
            for line in reversed(candidates):
                line = line.strip()
                if line.endswith(b":") and line[:-1].isdigit():
                    return int(line[:-1])
            pos = start
    return None


def parse_netflix(chunk: Chunk) -> pa.Table:
    """Netflix Prize ``combined_data_*.txt``: 'MovieID:' lines, then 'CustomerID,Rating,Date' lines."""
    data, begin = read_chunk(chunk)
    lines = tp.Lines(chunk, data, begin)
    rows = lines.nonblank
    is_header = pc.ends_with(lines.text.take(pa.array(rows, type=pa.int64())), ":").to_numpy(zero_copy_only=False)
    header_rows, data_rows = rows[is_header], rows[~is_header]
    headers = pc.utf8_slice_codeunits(lines.text.take(pa.array(header_rows, type=pa.int64())), 0, -1)
    movie_ids = tp.to_int64(pc.utf8_trim_whitespace(headers), "movie id", lines, header_rows).to_numpy()
    owner = np.searchsorted(header_rows, data_rows, side="right") - 1
    if len(owner) and owner[0] < 0:
        previous = _previous_movie(chunk, begin) if begin > 0 else None
        if previous is None:
            raise lines.error(data_rows[0], f"data line {lines.quote(data_rows[0])} before any 'MovieID:' header")
        movie_ids, owner = np.concatenate([[previous], movie_ids]), owner + 1
    user, rating, date = tp.split_fields(lines, data_rows, ",", 3, "CustomerID,Rating,Date")
    stamps = pc.strptime(date, format="%Y-%m-%d", unit="s", error_is_null=True)
    if stamps.null_count:
        j = tp._first_false(pc.is_valid(stamps))
        raise lines.error(data_rows[j], f"date {date[j].as_py()!r} is not YYYY-MM-DD")
    return pa.table({
        "user_id": tp.to_int64(user, "customer id", lines, data_rows),
        "item_id": pa.array(movie_ids[owner], type=pa.int64()),
        "value": tp.to_float32(rating, "rating", lines, data_rows),
        "timestamp": pc.cast(stamps, pa.int64()),
    })


def _read_chunks(batch: pa.Table, chunks: list[Chunk], parse: Callable[[Chunk], pa.Table]) -> pa.Table:
    return pa.concat_tables([parse(chunks[i]) for i in batch["task"].to_pylist()])


def _read_parquet(batch: pa.Table, files: list[InputFile], columns: ParquetColumns) -> Iterator[pa.Table]:
    for i in batch["task"].to_pylist():
        yield from read_parquet_file(files[i], columns)


def _tasks(n: int) -> ray.data.Dataset:
    return ray.data.from_items([{"task": i} for i in range(n)], override_num_blocks=max(1, n))


@dataclass
class ReadPlan:
    """What the driver decided about a source before any task runs (files, layout, size)."""

    data: DataConfig
    source: str
    files: list[InputFile] = field(default_factory=list)
    estimated_rows: int = 0
    make: Callable[[], ray.data.Dataset] | None = None

    def fingerprint(self) -> str:
        if self.data.format == "synthetic":
            from raytrain.data.synthetic import fingerprint as synthetic_fingerprint

            return synthetic_fingerprint(self.data.synthetic)
        return fingerprint(self.files)

    def dataset(self) -> ray.data.Dataset:
        return self.make()


def _estimate_rows(files: list[InputFile]) -> int:
    sample = head(files[0])
    per_line = len(sample) / max(1, sample.count(b"\n")) if sample else 40.0
    scale = 4 if files[0].compressed else 1
    return int(sum(f.size for f in files) * scale / max(per_line, 1.0))


def plan_read(data: DataConfig) -> ReadPlan:
    """List and check the source on the driver (fast failure), and say how to read it in parallel."""
    fmt = data.format
    if fmt == "synthetic":
        from raytrain.data.synthetic import generate

        cfg = data.synthetic
        rows = int(cfg.n_users * cfg.mean_items_per_user)
        return ReadPlan(data, "synthetic", estimated_rows=rows, make=lambda: generate(cfg))
    if fmt not in PATTERNS:
        raise DataError(f"data.format {fmt!r} is not a raw format; use one of {', '.join([*PATTERNS, 'synthetic'])}")
    files = list_files(data.path, PATTERNS[fmt], fmt)
    plan = ReadPlan(data, data.path, files)
    if fmt == "parquet":
        columns = parquet_columns(files[0], data)
        plan.estimated_rows = columns.rows_per_byte_estimate(sum(f.size for f in files))
        plan.make = lambda: _tasks(len(files)).map_batches(
            _read_parquet, fn_kwargs={"files": files, "columns": columns}, batch_size=1, batch_format="pyarrow")
        return plan
    if fmt == "netflix":
        parse: Callable[[Chunk], pa.Table] = parse_netflix
    elif fmt == "msd":
        layout = TextLayout("\t", 3, False, {"user_id": 0, "item_id": 1, "value": 2}, pa.string(), pa.string(),
                            description="user<TAB>song<TAB>count")
        parse = functools.partial(parse_delimited, layout_fn=functools.partial(_fixed_layout, layout=layout))
    elif fmt == "movielens":
        _ml_layout(files[0])  # fail fast on a bad header
        parse = functools.partial(parse_delimited, layout_fn=_ml_layout)
    else:
        first = _csv_layout(files[0], data)
        sample = _sample_rows(files[0], first)
        user_type = _sniff_id_type([r[first.columns["user_id"]] for r in sample if len(r) == first.n_fields], data.id_dtype)
        item_type = _sniff_id_type([r[first.columns["item_id"]] for r in sample if len(r) == first.n_fields], data.id_dtype)
        parse = functools.partial(parse_delimited, layout_fn=functools.partial(
            _csv_layout, data=data, user_type=user_type, item_type=item_type))
    chunks = make_chunks(files, data.read_blocks)
    plan.estimated_rows = _estimate_rows(files)
    plan.make = lambda: _tasks(len(chunks)).map_batches(
        _read_chunks, fn_kwargs={"chunks": chunks, "parse": parse}, batch_size=1, batch_format="pyarrow")
    return plan


def read_interactions(data: DataConfig) -> ray.data.Dataset:
    """The canonical interactions of ``data.path`` (or the synthetic generator) as a Ray Dataset.

    Raises:
        DataError: missing path, no matching files, bad header (checked on the driver); bad lines
            or rows surface as DataError when the dataset executes (inside :func:`raise_data_errors`).
    """
    return plan_read(data).dataset()


_TASK_ERROR = re.compile(re.escape(f"{DataError.__module__}.{DataError.__qualname__}: ") + r"(.+)")


@contextlib.contextmanager
def raise_data_errors() -> Iterator[None]:
    """Turn a DataError raised inside a Ray task back into a plain one-line DataError.

    Ray Data re-raises a task's exception as ``RayTaskError(UserCodeException)`` whose text is
    the worker's traceback; our message is its ``raytrain.data.files.DataError: ...`` line.
    """
    try:
        yield
    except DataError as err:
        raise unwrap(err) from None
    except RayError as err:
        found = _TASK_ERROR.findall(str(err))
        if not found:
            raise
        raise DataError(found[-1].strip()) from None
