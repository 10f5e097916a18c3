"""Generic Parquet input: column map from DataConfig, type checks, row-numbered errors.

One Ray task per file streams it by record batches, so a file never has to fit in memory.
The driver opens only the first file (schema and id types), so a wrong column name fails
before any task starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raytrain.config import DataConfig
from raytrain.data.files import DataError, InputFile
from raytrain.data.textparse import INT_PATTERN

BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class ParquetColumns:
    """Source column per canonical column ("" when absent) and the id types every file is cast to."""

    user: str
    item: str
    value: str
    timestamp: str
    user_type: pa.DataType
    item_type: pa.DataType
    rows_per_byte: float

    def rows_per_byte_estimate(self, total_bytes: int) -> int:
        return int(total_bytes * self.rows_per_byte)

    def wanted(self) -> dict[str, str]:
        names = {"user_id": self.user, "item_id": self.item, "value": self.value, "timestamp": self.timestamp}
        return {k: v for k, v in names.items() if v}


KEYS = {"user_id": "user_col", "item_id": "item_col", "value": "value_col", "timestamp": "timestamp_col"}


def _open(file: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(file.fs.open_input_file(file.path))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{file.display}: cannot read as Parquet: {err}") from None


def _check_schema(file: InputFile, schema: pa.Schema, wanted: dict[str, str]) -> None:
    for canonical, name in wanted.items():
        if name not in schema.names:
            raise DataError(f"{file.display}: no column {name!r} (data.{KEYS[canonical]}); "
                            f"columns are: {', '.join(schema.names)}")
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        ok = {
            "user_id": pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind),
            "value": pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind),
            "timestamp": pa.types.is_integer(kind) or pa.types.is_timestamp(kind) or pa.types.is_date(kind),
        }[canonical if canonical != "item_id" else "user_id"]
        if not ok:
            need = {"value": "a number", "timestamp": "an integer or timestamp"}.get(canonical, "an integer or string")
            raise DataError(f"{file.display}: column {name!r} (data.{KEYS[canonical]}) has type {kind}, expected {need}")


def _id_type(schema: pa.Schema, name: str, id_dtype: str) -> pa.DataType:
    if id_dtype != "auto":
        return pa.int64() if id_dtype == "int64" else pa.string()
    kind = schema.field(name).type
    return pa.int64() if pa.types.is_integer(kind) else pa.string()


def parquet_columns(file: InputFile, data: DataConfig) -> ParquetColumns:
    """Check the first file's schema against the column map and fix the id types for all files."""
    parquet = _open(file)
    schema = parquet.schema_arrow
    columns = ParquetColumns(data.user_col, data.item_col, data.value_col, data.timestamp_col,
                             pa.int64(), pa.int64(), parquet.metadata.num_rows / max(1, file.size))
    _check_schema(file, schema, columns.wanted())
    return ParquetColumns(
        data.user_col, data.item_col, data.value_col, data.timestamp_col,
        _id_type(schema, data.user_col, data.id_dtype), _id_type(schema, data.item_col, data.id_dtype),
        columns.rows_per_byte,
    )


def _fail(file: InputFile, row: int, problem: str) -> DataError:
    return DataError(f"{file.display}: row {row + 1}: {problem}")


def _id_column(file: InputFile, values: pa.Array, name: str, target: pa.DataType, offset: int) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.null_count:
        raise _fail(file, offset + int(np.argmax(values.is_null().to_numpy(zero_copy_only=False))), f"missing {name} (null)")
    if pa.types.is_integer(values.type):
        ints = pc.cast(values, pa.int64())
        if len(ints) and pc.min(ints).as_py() < 0:
            j = int(np.argmax(ints.to_numpy() < 0))
            raise _fail(file, offset + j, f"negative {name} {ints[j].as_py()}")
        return ints if pa.types.is_integer(target) else pc.cast(ints, pa.string())
    text = pc.cast(values, pa.string())
    if pa.types.is_integer(target):
        ok = pc.match_substring_regex(text, INT_PATTERN).to_numpy(zero_copy_only=False)
        if not ok.all():
            j = int(np.argmin(ok))
            raise _fail(file, offset + j, f"{name} {text[j].as_py()!r} is not an integer (set data.id_dtype=string)")
        return _id_column(file, pc.cast(text, pa.int64()), name, target, offset)
    empty = pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        raise _fail(file, offset + int(np.argmax(empty)), f"missing {name} (empty string)")
    return text


def _value_column(file: InputFile, values: pa.Array, name: str, offset: int) -> pa.Array:
    if values.null_count:
        raise _fail(file, offset + int(np.argmax(values.is_null().to_numpy(zero_copy_only=False))), f"missing {name} (null)")
    floats = pc.cast(values, pa.float32())
    finite = pc.is_finite(floats).to_numpy(zero_copy_only=False)
    if not finite.all():
        j = int(np.argmin(finite))
        raise _fail(file, offset + j, f"{name} {values[j].as_py()!r} is not a finite number")
    return floats


def _timestamp_column(file: InputFile, values: pa.Array, offset: int) -> pa.Array:
    if values.null_count:
        raise _fail(file, offset + int(np.argmax(values.is_null().to_numpy(zero_copy_only=False))), "missing timestamp (null)")
    if pa.types.is_date(values.type):
        values = pc.cast(values, pa.timestamp("s"))
    if pa.types.is_timestamp(values.type):
        values = pc.cast(pc.cast(values, pa.timestamp("s"), safe=False), pa.int64())
    return pc.cast(values, pa.int64())


def read_parquet_file(file: InputFile, columns: ParquetColumns) -> Iterator[pa.Table]:
    """Stream one Parquet file as canonical tables of up to ~1M rows."""
    parquet = _open(file)
    wanted = columns.wanted()
    _check_schema(file, parquet.schema_arrow, wanted)
    offset = 0
    try:
        batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=sorted(set(wanted.values())))
        for batch in batches:
            out = {
                "user_id": _id_column(file, batch.column(columns.user), "user id", columns.user_type, offset),
                "item_id": _id_column(file, batch.column(columns.item), "item id", columns.item_type, offset),
                "value": (_value_column(file, batch.column(columns.value), "value", offset) if columns.value
                          else pa.array(np.ones(batch.num_rows, dtype=np.float32))),
            }
            if columns.timestamp:
                out["timestamp"] = _timestamp_column(file, batch.column(columns.timestamp), offset)
            offset += batch.num_rows
            yield pa.table(out)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{file.display}: cannot read as Parquet: {err}") from None
