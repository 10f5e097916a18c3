"""Raw readers: small real files in every format, read back through Ray Data."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raytrain.config import DataConfig
from raytrain.data.formats import read_interactions

pytestmark = pytest.mark.usefixtures("ray_session")


def read(tmp_path, name: str, text: str, **config) -> pd.DataFrame:
    path = tmp_path / name
    path.write_text(text)
    return read_path(str(path), **config)


def read_table(path: str, **config) -> pa.Table:
    batches = read_interactions(DataConfig(path=path, **config)).iter_batches(batch_format="pyarrow", batch_size=None)
    return pa.concat_tables(list(batches))


def read_path(path: str, **config) -> pd.DataFrame:
    frame = read_table(path, **config).to_pandas()
    # Every column: a file may hold one (user, item) pair twice, and blocks may come back in any order.
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def test_movielens_u_data_tab_separated(tmp_path):
    frame = read(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", format="movielens")
    assert frame.to_dict("list") == {"user_id": [186, 196], "item_id": [302, 242], "value": [3.0, 3.0],
                                     "timestamp": [891717742, 881250949]}
    assert read_table(str(tmp_path / "u.data"), format="movielens").schema == pa.schema(
        [("user_id", pa.int64()), ("item_id", pa.int64()), ("value", pa.float32()), ("timestamp", pa.int64())])


def test_movielens_ratings_dat_double_colon(tmp_path):
    frame = read(tmp_path, "ratings.dat", "1::1193::5::978300760\r\n1::661::3::978302109\r\n", format="movielens")
    assert frame["item_id"].tolist() == [661, 1193] and frame["value"].tolist() == [3.0, 5.0]


@pytest.mark.parametrize("header", ["userId,movieId,rating,timestamp", "user_id,item_id,rating,timestamp",
                                    "movieId,userId,timestamp,rating"])
def test_movielens_ratings_csv_maps_header_names(tmp_path, header):
    names = header.split(",")
    rows = [{"userId": 1, "user_id": 1, "movieId": 31, "item_id": 31, "rating": 2.5, "timestamp": 1260759144},
            {"userId": 7, "user_id": 7, "movieId": 2, "item_id": 2, "rating": 4.0, "timestamp": 5}]
    text = header + "\n" + "".join(",".join(str(r[n]) for n in names) + "\n" for r in rows)
    frame = read(tmp_path, "ratings.csv", text, format="movielens")
    assert frame.to_dict("list") == {"user_id": [1, 7], "item_id": [31, 2], "value": [2.5, 4.0],
                                     "timestamp": [1260759144, 5]}


def test_movielens_directory_finds_the_ratings_file(tmp_path):
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "movies.csv").write_text("movieId,title\n1,Toy Story\n")
    (tmp_path / "ml" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n3,1,5,10\n")
    assert read_path(str(tmp_path / "ml"), format="movielens")["user_id"].tolist() == [3]


def test_netflix_headers_assign_movies_across_files(tmp_path):
    (tmp_path / "combined_data_1.txt").write_text("1:\n1488844,3,2005-09-06\n822109,5,2005-05-13\n2:\n30878,4,2005-12-26\n")
    (tmp_path / "combined_data_2.txt").write_text("3:\n1488844,1,2004-01-01\n")
    frame = read_path(str(tmp_path), format="netflix")
    assert frame.to_dict("list") == {
        "user_id": [30878, 822109, 1488844, 1488844], "item_id": [2, 1, 1, 3], "value": [4.0, 5.0, 3.0, 1.0],
        "timestamp": [1135555200, 1115942400, 1125964800, 1072915200]}


def test_netflix_chunks_that_start_inside_a_movie_block(tmp_path):
    rng = np.random.default_rng(0)
    lines, expected = [], []
    for movie in range(1, 40):
        lines.append(f"{movie}:")
        for _ in range(rng.integers(1, 120)):
            user, rating = int(rng.integers(1, 10**6)), int(rng.integers(1, 6))
            lines.append(f"{user},{rating},2005-01-0{rating}")
            expected.append((user, movie, float(rating)))
    (tmp_path / "combined_data_1.txt").write_text("\n".join(lines) + "\n")
    frame = read_path(str(tmp_path / "combined_data_1.txt"), format="netflix", read_blocks=17)
    assert sorted(zip(frame.user_id, frame.item_id, frame.value)) == sorted(expected)


def test_msd_triplets_keep_string_ids(tmp_path):
    text = "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t1\nb80344d0\tSOAPDEY12A81C210A9\t12\n"
    frame = read(tmp_path, "train_triplets.txt", text, format="msd")
    assert frame["item_id"].tolist() == ["SOAPDEY12A81C210A9", "SOAKIMP12A8C130995"]
    assert frame["value"].tolist() == [12.0, 1.0] and "timestamp" not in frame


def test_generic_csv_column_map_quotes_and_implicit_values(tmp_path):
    text = 'who,what,when\n"u1","i9",100\n"u2","i8",200\n'
    frame = read(tmp_path, "events.csv", text, format="csv", user_col="who", item_col="what", value_col="",
                 timestamp_col="when")
    assert frame.to_dict("list") == {"user_id": ["u1", "u2"], "item_id": ["i9", "i8"], "value": [1.0, 1.0],
                                     "timestamp": [100, 200]}


def test_generic_csv_gzip_and_integer_ids(tmp_path):
    path = tmp_path / "part.csv.gz"
    path.write_bytes(gzip.compress(b"user_id,item_id,value\n5,6,2.5\n7,8,1\n"))
    frame = read_path(str(path), format="csv")
    assert frame["user_id"].tolist() == [5, 7] and frame["user_id"].dtype == np.int64


def test_generic_parquet_files_with_a_column_map(tmp_path):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"uid": [1, 2], "iid": [10, 20], "plays": [3, 4], "ts": [1, 2]}), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"uid": [3], "iid": [30], "plays": [5], "ts": [3]}), tmp_path / "in" / "b.parquet")
    frame = read_path(str(tmp_path / "in"), format="parquet", user_col="uid", item_col="iid", value_col="plays",
                      timestamp_col="ts")
    assert frame.to_dict("list") == {"user_id": [1, 2, 3], "item_id": [10, 20, 30], "value": [3.0, 4.0, 5.0],
                                     "timestamp": [1, 2, 3]}


def test_many_read_blocks_give_the_same_rows(tmp_path):
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"u": rng.integers(0, 500, 3000), "i": rng.integers(0, 90, 3000),
                         "r": rng.integers(1, 6, 3000), "t": rng.integers(0, 10**9, 3000)})
    text = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows.itertuples(index=False))
    (tmp_path / "ratings.dat").write_text(text)
    one = read_path(str(tmp_path / "ratings.dat"), format="movielens", read_blocks=1)
    many = read_path(str(tmp_path / "ratings.dat"), format="movielens", read_blocks=23)
    assert len(one) == 3000
    pd.testing.assert_frame_equal(one, many)
