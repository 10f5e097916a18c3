"""Bad input: every mistake gets a DataError naming the file and the problem (never an empty model)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raytrain.config import ConfigError, DataConfig
from raytrain.data.files import DataError
from raytrain.data.formats import raise_data_errors, read_interactions
from raytrain.data.prepare import prepare_dataset

pytestmark = pytest.mark.usefixtures("ray_session")
ML100K = str((Path(__file__).resolve().parents[2] / "../shared/data/ml-100k/ratings.csv").resolve())


def read_error(path: Path, **config) -> str:
    with pytest.raises(DataError) as caught, raise_data_errors():  # one-line message, no worker traceback
        read_interactions(DataConfig(path=str(path), **config)).materialize()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_path(tmp_path):
    message = read_error(tmp_path / "nope.csv", format="movielens")
    assert message == f"{tmp_path / 'nope.csv'} does not exist"


def test_directory_without_matching_files(tmp_path):
    write(tmp_path, "notes.txt", "hello\n")
    assert "no netflix files found (looked for combined_data_*.txt" in read_error(tmp_path, format="netflix")


def test_generic_csv_missing_column(tmp_path):
    path = write(tmp_path, "events.csv", "user,item,rating\n1,2,3\n")
    message = read_error(path, format="csv", user_col="user", item_col="item_id", value_col="rating")
    assert message == f"{path}: no column 'item_id' (data.item_col); the header has: user, item, rating"


def test_movielens_misnamed_header(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,score,timestamp\n1,2,3,4\n")
    assert f"{path}: header 'userId,movieId,score,timestamp' has no value column" in read_error(path, format="movielens")


def test_parquet_missing_column(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1], "item": [2], "value": [1.0]}), path)
    message = read_error(path, format="parquet")
    assert message == f"{path}: no column 'item_id' (data.item_col); columns are: user_id, item, value"


def test_parquet_non_numeric_value_column(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1], "item_id": [2], "value": ["good"]}), path)
    assert "column 'value' (data.value_col) has type string, expected a number" in read_error(path, format="parquet")


def test_non_numeric_rating_names_the_line(tmp_path):
    path = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4,10\n1,3,abc,11\n")
    assert read_error(path, format="movielens") == f"{path}: line 3: value 'abc' is not a number"


def test_negative_id_names_the_line(tmp_path):
    path = write(tmp_path, "u.data", "1\t2\t3\t4\n-5\t2\t3\t4\n")
    assert read_error(path, format="movielens") == f"{path}: line 2: negative user id -5"


def test_empty_id_in_csv(tmp_path):
    path = write(tmp_path, "events.csv", "user_id,item_id,value\na,b,1\nc,,2\n")
    assert read_error(path, format="csv") == f"{path}: line 3: missing item id"


def test_null_id_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"user_id": [1, None], "item_id": [2, 3], "value": [1.0, 2.0]}), path)
    assert read_error(path, format="parquet") == f"{path}: row 2: missing user id (null)"


def test_unreadable_parquet(tmp_path):
    path = write(tmp_path, "x.parquet", "this is not parquet")
    assert read_error(path, format="parquet").startswith(f"{path}: cannot read as Parquet")


def test_binary_text_file(tmp_path):
    path = tmp_path / "train_triplets.txt"
    path.write_bytes(b"u1\ts1\t1\n\xff\xfe\x00garbage\n")
    assert read_error(path, format="msd") == f"{path}: line 2: not UTF-8 text (a binary or compressed file with a text name?)"


def test_netflix_malformed_line_number(tmp_path):
    path = write(tmp_path, "combined_data_1.txt", "1:\n10,4,2005-01-01\n11,5\n")
    assert read_error(path, format="netflix") == f"{path}: line 3: expected 3 fields 'CustomerID,Rating,Date', got 2: '11,5'"


def test_netflix_line_number_deep_in_a_later_chunk(tmp_path):
    lines = ["1:"] + [f"{u},3,2005-01-01" for u in range(5000)]
    lines[4321] = "12,3,2005-13-45"
    path = write(tmp_path, "combined_data_1.txt", "\n".join(lines) + "\n")
    assert read_error(path, format="netflix", read_blocks=9) == f"{path}: line 4322: date '2005-13-45' is not YYYY-MM-DD"


def test_netflix_data_before_any_header(tmp_path):
    path = write(tmp_path, "combined_data_1.txt", "10,4,2005-01-01\n1:\n")
    assert read_error(path, format="netflix") == f"{path}: line 1: data line '10,4,2005-01-01' before any 'MovieID:' header"


def test_nothing_left_after_the_threshold(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{ML100K}: no positive interactions (value >= data.threshold=6.0)")):
        prepare_dataset(DataConfig(path=ML100K, format="movielens", threshold=6.0), str(tmp_path / "out"))


def test_nothing_left_after_the_user_filter(tmp_path):
    with pytest.raises(DataError, match="no user has >= 1000 positive items"):
        prepare_dataset(DataConfig(path=ML100K, format="movielens", min_items_per_user=1000), str(tmp_path / "out"))


def test_more_heldout_users_than_exist(tmp_path):
    with pytest.raises(DataError, match=re.escape("data.n_heldout=500 asks for 1000 held-out users "
                                                  "(500 validation + 500 test) but only 938 users remain")):
        prepare_dataset(DataConfig(path=ML100K, format="movielens", n_heldout=500), str(tmp_path / "out"))


def test_bad_parameters_fail_before_reading(tmp_path):
    with pytest.raises(ConfigError, match="data.n_heldout must be a whole count"):
        prepare_dataset(DataConfig(path=ML100K, format="movielens", n_heldout=10.5), str(tmp_path / "out"))
    with pytest.raises(DataError, match=r"a fraction must be in \(0, 0.5\)"):
        prepare_dataset(DataConfig(path=ML100K, format="movielens", n_heldout=0.6), str(tmp_path / "out"))


def test_refuses_to_overwrite_an_unrelated_directory(tmp_path):
    write(tmp_path, "precious.txt", "keep me")
    with pytest.raises(DataError, match="is not empty and holds no prepared dataset"):
        prepare_dataset(DataConfig(path=ML100K, format="movielens"), str(tmp_path))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_guessed_integer_ids_then_a_string_id(tmp_path):
    rows = "".join(f"{u},{u % 7},1\n" for u in range(5000)) + "u5000,3,1\n"
    path = write(tmp_path, "events.csv", "user_id,item_id,value\n" + rows)
    assert read_error(path, format="csv") == (f"{path}: line 5002: user id 'u5000' is not an integer (ids looked like "
                                              "integers in the first lines; set data.id_dtype=string)")
