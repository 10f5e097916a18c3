"""Vectorised parsing of delimited text chunks, with errors that name the file and line.

A chunk becomes one Arrow string per physical line (no Python loop over lines), fields come from
``split_pattern``, and conversions are checked column-wise. Only when something is wrong do we
go back to find *which* line it was, so the happy path stays at Arrow speed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raytrain.data.files import Chunk, DataError, line_number

INT_PATTERN = r"^-?[0-9]+$"
FLOAT_PATTERN = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


class Lines:
    """The physical lines of a chunk, and how to turn a line index into a located error."""

    def __init__(self, chunk: Chunk, data: bytes, begin: int):
        self.chunk, self.begin = chunk, begin
        buf = np.frombuffer(data, dtype=np.uint8)
        ends = np.flatnonzero(buf == 10) + 1
        if len(data) and (len(ends) == 0 or ends[-1] != len(data)):
            ends = np.append(ends, len(data))
        offsets = np.concatenate([[0], ends]).astype(np.int64)
        raw = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data))
        try:
            raw.validate(full=True)
        except pa.ArrowInvalid:
            self._bad_utf8(data)
        self.text = pc.utf8_rtrim(raw, characters="\r\n")
        self.nonblank = np.flatnonzero(pc.utf8_length(pc.utf8_trim_whitespace(self.text)).to_numpy() > 0)

    def _bad_utf8(self, data: bytes) -> None:
        for i, line in enumerate(data.split(b"\n")):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise self.error(i, "not UTF-8 text (a binary or compressed file with a text name?)") from None
        raise self.error(0, "not UTF-8 text")

    def error(self, line_index: int, problem: str) -> DataError:
        number = line_number(self.chunk, self.begin, int(line_index))
        return DataError(f"{self.chunk.file.display}: line {number}: {problem}")

    def quote(self, line_index: int) -> str:
        text = self.text[int(line_index)].as_py()
        return repr(text if len(text) <= 80 else text[:77] + "...")


def split_fields(lines: Lines, rows: np.ndarray, delimiter: str, expected: int, layout: str) -> list[pa.Array]:
    """Fields of the given lines; every line must have exactly ``expected`` fields."""
    text = lines.text.take(pa.array(rows, type=pa.int64()))
    parts = pc.split_pattern(text, pattern=delimiter)
    counts = pc.list_value_length(parts).to_numpy()
    bad = np.flatnonzero(counts != expected)
    if len(bad):
        i = rows[bad[0]]
        raise lines.error(i, f"expected {expected} fields '{layout}', got {counts[bad[0]]}: {lines.quote(i)}")
    return [pc.utf8_trim_whitespace(pc.list_element(parts, k)) for k in range(expected)]


def _all(mask: pa.Array) -> bool:
    return len(mask) == 0 or bool(pc.all(mask).as_py())


def _first_false(mask: pa.Array) -> int:
    values = mask.fill_null(False).to_numpy(zero_copy_only=False)
    return int(np.argmin(values))


def _check_pattern(values: pa.Array, pattern: str, name: str, kind: str, lines: Lines, rows: np.ndarray) -> None:
    ok = pc.match_substring_regex(values, pattern)
    if not _all(ok):
        j = _first_false(ok)
        value = values[j].as_py()
        problem = f"missing {name}" if value == "" else f"{name} {value!r} is not {kind}"
        raise lines.error(rows[j], problem)


def to_int64(values: pa.Array, name: str, lines: Lines, rows: np.ndarray, non_negative: bool = True,
             hint: str = "") -> pa.Array:
    """Integers (ids, timestamps); ids must also be non-negative."""
    _check_pattern(values, INT_PATTERN, name, "an integer" + hint, lines, rows)
    try:
        ints = pc.cast(values, pa.int64())
    except pa.ArrowInvalid:
        raise lines.error(rows[0], f"{name} out of the int64 range in this part of the file") from None
    if non_negative and len(ints) and pc.min(ints).as_py() < 0:
        j = int(np.argmax(ints.to_numpy() < 0))
        raise lines.error(rows[j], f"negative {name} {ints[j].as_py()}")
    return ints


def to_string_id(values: pa.Array, name: str, lines: Lines, rows: np.ndarray) -> pa.Array:
    empty = pc.equal(pc.utf8_length(values), 0)
    if pc.any(empty).as_py():
        raise lines.error(rows[int(np.argmax(empty.to_numpy(zero_copy_only=False)))], f"missing {name}")
    return pc.cast(values, pa.string())


def to_float32(values: pa.Array, name: str, lines: Lines, rows: np.ndarray) -> pa.Array:
    """Ratings / play counts: finite numbers."""
    try:
        floats = pc.cast(values, pa.float32())
    except pa.ArrowInvalid:
        _check_pattern(values, FLOAT_PATTERN, name, "a number", lines, rows)
        raise lines.error(rows[0], f"{name} column holds a value that is not a number") from None
    finite = pc.is_finite(floats)
    if not _all(finite):
        j = _first_false(finite)
        raise lines.error(rows[j], f"{name} {values[j].as_py()!r} is not a finite number")
    return floats


def to_id(values: pa.Array, name: str, id_type: pa.DataType, lines: Lines, rows: np.ndarray, hint: str = "") -> pa.Array:
    if pa.types.is_integer(id_type):
        return to_int64(values, name, lines, rows, hint=hint)
    return to_string_id(values, name, lines, rows)


def unquote(values: pa.Array) -> pa.Array:
    """Strip one layer of CSV double quotes (fields never contain the delimiter: see formats.py)."""
    return pc.utf8_trim(values, characters='"')
