"""Tests of jaxpro.io: reading data files and validating in-memory arrays."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxpro.errors import InputError
from jaxpro.io import Table, as_array, read_table

CSV = "x,y,sigma\n1.0,2.5,0.1\n2.0,3.5,0.2\n3.0,4.5,0.3\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def csv(tmp_path):
    return write(tmp_path / "data.csv", CSV)


# ------------------------------------------------------------------ formats


def test_csv_reads_all_columns(csv):
    table = read_table(csv)
    assert isinstance(table, Table)
    assert table.names == ("x", "y", "sigma")
    assert table.n_rows == 3
    np.testing.assert_array_equal(table["y"], [2.5, 3.5, 4.5])
    assert table.source == str(csv)


def test_columns_come_in_requested_order(csv):
    table = read_table(csv, ["sigma", "x"])
    assert table.names == ("sigma", "x")
    np.testing.assert_array_equal(table.to_matrix(["sigma", "x"]), [[0.1, 1], [0.2, 2], [0.3, 3]])


def test_single_string_selects_one_column(csv):
    assert read_table(csv, "y").names == ("y",)


def test_columns_are_contiguous_float64(csv):
    for values in read_table(csv).columns.values():
        assert values.dtype == np.float64
        assert values.ndim == 1
        assert values.flags.c_contiguous


def test_to_matrix_defaults_to_all_columns(csv):
    matrix = read_table(csv).to_matrix()
    assert matrix.shape == (3, 3)
    assert matrix.dtype == np.float64
    assert matrix.flags.c_contiguous


def test_table_unknown_name_is_key_error(csv):
    table = read_table(csv)
    assert "x" in table
    with pytest.raises(KeyError, match=r"available: x, y, sigma"):
        table["nope"]


def test_header_spaces_are_ignored(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "x, y\n1, 2\n3, 4\n"), ["y"])
    np.testing.assert_array_equal(table["y"], [2, 4])


def test_tsv(tmp_path):
    table = read_table(write(tmp_path / "d.tsv", "x\ty\n1\t2\n3\t4\n"))
    assert table.names == ("x", "y")
    np.testing.assert_array_equal(table["y"], [2, 4])


def test_tab_extension_is_tsv(tmp_path):
    assert read_table(write(tmp_path / "d.tab", "a\tb\n1\t2\n")).names == ("a", "b")


def test_txt_is_whitespace_delimited(tmp_path):
    table = read_table(write(tmp_path / "d.txt", "x   y\n1 2\n  3\t4\n"))
    np.testing.assert_array_equal(table.to_matrix(["x", "y"]), [[1, 2], [3, 4]])


def test_gzipped_csv(tmp_path):
    path = tmp_path / "d.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(CSV)
    assert read_table(path).n_rows == 3


def test_explicit_format_overrides_extension(tmp_path):
    path = write(tmp_path / "d.dat", "x\ty\n1\t2\n")
    assert read_table(path, format="tsv").names == ("x", "y")


def test_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}).to_parquet(path)
    table = read_table(path, ["y", "x"])
    assert table.names == ("y", "x")
    np.testing.assert_array_equal(table["y"], [3, 4])


def test_parquet_ignores_pandas_index(tmp_path):
    path = tmp_path / "d.pq"
    pd.DataFrame({"x": [1.0, 2.0]}, index=[10, 20]).to_parquet(path)
    assert read_table(path).names == ("x",)


def test_npy_1d(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.array([1.0, 2.0, 3.0]))
    table = read_table(path)
    assert table.names == ("0",)
    np.testing.assert_array_equal(table["0"], [1, 2, 3])


def test_npy_2d_columns_are_numbered(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.arange(6.0).reshape(3, 2))
    table = read_table(path, ["1", "0"])
    np.testing.assert_array_equal(table["1"], [1, 3, 5])
    assert table["1"].flags.c_contiguous


def test_npy_structured_uses_field_names(tmp_path):
    path = tmp_path / "d.npy"
    data = np.array([(1, 2.5), (2, 3.5)], dtype=[("t", "i4"), ("v", "f8")])
    np.save(path, data)
    table = read_table(path)
    assert table.names == ("t", "v")
    assert table["t"].dtype == np.float64


def test_npy_3d_rejected(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match=r"expected 1-D or 2-D"):
        read_table(path)


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(3), y=np.ones(3))
    table = read_table(path, ["y", "x"])
    assert table.names == ("y", "x")
    np.testing.assert_array_equal(table["x"], [0, 1, 2])


def test_npz_2d_array_rejected(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(3), m=np.ones((3, 2)))
    assert read_table(path, ["x"]).n_rows == 3
    with pytest.raises(InputError, match=r"column 'm' .* is not 1-D"):
        read_table(path)


def test_npz_different_lengths_rejected(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(3), y=np.ones(4))
    with pytest.raises(InputError, match=r"different lengths"):
        read_table(path)


def test_ints_and_bools_become_float64(tmp_path):
    table = read_table(write(tmp_path / "d.csv", "n,b\n1,True\n2,False\n"))
    assert table["n"].dtype == np.float64
    np.testing.assert_array_equal(table["b"], [1.0, 0.0])


# ------------------------------------------------------------------ file errors


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"^data: file not found: .*nope\.csv"):
        read_table(tmp_path / "nope.csv")


def test_directory(tmp_path):
    with pytest.raises(InputError, match=r"is a directory"):
        read_table(tmp_path)


def test_unknown_extension(tmp_path):
    path = write(tmp_path / "d.xlsx", "x")
    with pytest.raises(InputError, match=r"cannot tell the format.*supported: csv, tsv"):
        read_table(path)


def test_unknown_format_argument(csv):
    with pytest.raises(InputError, match=r"^format: unknown format 'excel'"):
        read_table(csv, format="excel")


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(InputError, match=r"cannot read .* as Parquet: .*magic bytes") as info:
        read_table(path)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None


def test_corrupt_npz(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"not a valid .npz file"):
        read_table(path)


def test_corrupt_npy(tmp_path):
    path = tmp_path / "d.npy"
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"not a valid .npy file"):
        read_table(path)


def test_row_longer_than_header_rejected(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,2\n3,4,5\n")
    with pytest.raises(InputError, match=r"cannot read .* as csv"):
        read_table(path)


def test_first_row_longer_than_header_rejected(tmp_path):
    # pandas would otherwise silently use the first column as an index
    path = write(tmp_path / "d.csv", "x,y\n1,2,3\n4,5,6\n")
    with pytest.raises(InputError, match=r"cannot read"):
        read_table(path)


# ------------------------------------------------------------------ column errors


def test_missing_column_lists_available(csv):
    with pytest.raises(InputError) as info:
        read_table(csv, ["x", "yy"])
    message = str(info.value)
    assert message.startswith("data: column 'yy' not found in ")
    assert "available: x, y, sigma" in message
    assert "did you mean 'y'" in message


def test_missing_column_list_is_truncated(tmp_path):
    header = ",".join(f"c{i}" for i in range(30))
    path = write(tmp_path / "d.csv", header + "\n" + ",".join(["1"] * 30) + "\n")
    with pytest.raises(InputError, match=r"c19, \.\.\. \(10 more\)"):
        read_table(path, ["nope"])


def test_argument_name_is_used(csv):
    with pytest.raises(InputError, match=r"^--data: column 'q'"):
        read_table(csv, ["q"], argument="--data")


def test_duplicate_column_rejected(csv):
    with pytest.raises(InputError, match=r"more than once"):
        read_table(csv, ["x", "x"])


def test_non_numeric_value_reports_row(tmp_path):
    rows = "\n".join(f"{i},{i * 2}" for i in range(1, 7))
    path = write(tmp_path / "d.csv", f"x,y\n{rows}\n7,abc\n8,16\n")
    with pytest.raises(InputError, match=r"column 'y' .*non-numeric value 'abc' at row 7"):
        read_table(path)


def test_non_numeric_parquet_strings_report_row(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"y": ["1.5", "2", "oops"]}).to_parquet(path)
    with pytest.raises(InputError, match=r"non-numeric value 'oops' at row 3"):
        read_table(path)


def test_non_numeric_parquet_type(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])}).to_parquet(path)
    with pytest.raises(InputError, match=r"column 't' .* non-numeric type timestamp"):
        read_table(path)


def test_unselected_non_numeric_column_is_ignored(tmp_path):
    path = write(tmp_path / "d.csv", "label,y\na,1\nb,2\n")
    np.testing.assert_array_equal(read_table(path, ["y"])["y"], [1, 2])


def test_nan_reports_rows(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,1\n2,2\n3,3\n4,nan\n5,5\n6,NaN\n")
    with pytest.raises(InputError, match=r"column 'y' .* 2 non-finite values .* at rows 4, 6$"):
        read_table(path)


def test_inf_reports_row(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,1\n2,-inf\n")
    with pytest.raises(InputError, match=r"1 non-finite value .* at row 2$"):
        read_table(path)


def test_nonfinite_rows_are_truncated(tmp_path):
    path = write(tmp_path / "d.csv", "y\n" + "nan\n" * 8)
    with pytest.raises(InputError, match=r"8 non-finite values .* at rows 1, 2, 3, 4, 5, \.\.\.$"):
        read_table(path)


def test_empty_cells_are_nonfinite(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,1\n2,\n3,3\n")
    with pytest.raises(InputError, match=r"column 'y' .* at row 2$"):
        read_table(path)


def test_parquet_nulls_are_nonfinite(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")}).to_parquet(path)
    with pytest.raises(InputError, match=r"column 'n' .* at row 2$"):
        read_table(path)


def test_allow_nonfinite_passes_nan_through(tmp_path):
    path = write(tmp_path / "d.csv", "x,y\n1,nan\n2,\n3,inf\n")
    y = read_table(path, allow_nonfinite=True)["y"]
    assert np.isnan(y[0])
    assert np.isnan(y[1])
    assert y[2] == np.inf


# ------------------------------------------------------------------ empty data


def test_header_only_csv(tmp_path):
    with pytest.raises(InputError, match=r"no data rows"):
        read_table(write(tmp_path / "d.csv", "x,y\n"))


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match=r"no data rows"):
        read_table(write(tmp_path / "d.csv", ""))


def test_zero_row_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"x": pd.Series([], dtype="float64")}).to_parquet(path)
    with pytest.raises(InputError, match=r"no data rows"):
        read_table(path)


def test_zero_length_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros(0))
    with pytest.raises(InputError, match=r"no data rows"):
        read_table(path)


# ------------------------------------------------------------------ as_array


def test_as_array_good_input():
    out = as_array([1, 2, 3], argument="x", ndim=1)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [1.0, 2.0, 3.0])


def test_as_array_dtype():
    assert as_array(np.arange(3), argument="x", dtype=np.float32).dtype == np.float32


def test_as_array_object_dtype():
    with pytest.raises(InputError, match=r"^y: must be numeric, got dtype object"):
        as_array([1.0, None], argument="y")


def test_as_array_strings():
    with pytest.raises(InputError, match=r"^y: must be numeric, got dtype <U"):
        as_array(["1", "2"], argument="y")


def test_as_array_complex():
    with pytest.raises(InputError, match=r"^y: must be real, got complex dtype complex128"):
        as_array([1 + 2j], argument="y")


def test_as_array_ragged():
    with pytest.raises(InputError, match=r"^y: cannot be converted to an array"):
        as_array([[1.0, 2.0], [3.0]], argument="y")


def test_as_array_wrong_ndim():
    with pytest.raises(InputError, match=r"^x: must be 1-D, got a 2-D array of shape \(2, 1\)"):
        as_array([[1.0], [2.0]], argument="x", ndim=1)


def test_as_array_ndim_choices():
    assert as_array([[1.0]], argument="x", ndim=(1, 2)).shape == (1, 1)


def test_as_array_nan_reports_zero_based_index():
    with pytest.raises(InputError, match=r"^y: has 2 non-finite values .* at indices 1, 3$"):
        as_array([0.0, np.nan, 2.0, np.inf], argument="y")


def test_as_array_nan_in_2d_reports_index_tuple():
    with pytest.raises(InputError, match=r"at index \(1, 0\)$"):
        as_array([[0.0, 1.0], [np.nan, 2.0]], argument="x")


def test_as_array_allow_nonfinite():
    assert np.isnan(as_array([np.nan], argument="y", allow_nonfinite=True)[0])


def test_as_array_empty():
    with pytest.raises(InputError, match=r"^y: is empty"):
        as_array([], argument="y")


# ------------------------------------------------------------------ import cost


def test_import_is_light():
    code = (
        "import jaxpro.io, sys; "
        "assert 'jax' not in sys.modules and 'pandas' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'pandas', 'pyarrow'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ round trips

frames = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 50), st.integers(1, 4)),
    elements=st.floats(allow_nan=False, allow_infinity=False),
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@settings(max_examples=40, deadline=None)
@given(data=frames)
def test_round_trip_is_exact(tmp_path_factory, suffix, data):
    names = [f"c{j}" for j in range(data.shape[1])]
    frame = pd.DataFrame(data, columns=names)
    path = tmp_path_factory.mktemp("round_trip") / f"d{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False, float_format="%.17g")
    else:
        frame.to_parquet(path)
    table = read_table(path, names[::-1])
    assert table.names == tuple(names[::-1])
    np.testing.assert_array_equal(table.to_matrix(names), data)


def test_column_names_and_labels_without_reading_rows(tmp_path):
    import pandas as pd

    from jaxpro.io import column_names, read_labels

    frame = pd.DataFrame({"id": ["a", "b"], "0.5": [1.0, 2.0], "1.5": [3.0, 4.0]})
    frame.to_csv(tmp_path / "w.csv", index=False)
    frame.to_parquet(tmp_path / "w.parquet")
    for name in ("w.csv", "w.parquet"):
        assert column_names(tmp_path / name) == ("id", "0.5", "1.5")
        assert read_labels(tmp_path / name, "id") == ["a", "b"]
    with pytest.raises(InputError, match="column 'nope' not found"):
        read_labels(tmp_path / "w.csv", "nope")
