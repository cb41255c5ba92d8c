"""Libraries reading through the reader: h5py and xarray on ``open()``, pandas, xarray and
zarr through fsspec."""

from __future__ import annotations

import io
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import kachery_resource

from .conftest import Served


def _recording() -> tuple[bytes, np.ndarray]:
    """An HDF5 file shaped like a small recording: groups, attributes, chunked datasets."""
    rng = np.random.default_rng(7)
    traces = rng.integers(-2000, 2000, size=(20000, 64), dtype=np.int16)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["session"] = "test"
        acq = h5.create_group("acquisition")
        ds = acq.create_dataset("traces", data=traces, chunks=(1000, 64))
        ds.attrs["rate"] = 30000.0
        h5.create_group("processing").create_dataset(
            "lfp", data=rng.standard_normal((5000, 16)).astype("f4"), chunks=(500, 16))
        h5.create_group("general").attrs["lab"] = "kachery"
    return buffer.getvalue(), traces


def test_h5py_reads_a_slice_through_open(zone: Served, kc_dir: Path) -> None:
    data, traces = _recording()
    sha1 = zone.put(data)
    with kachery_resource.open(f"sha1://{sha1}", settings=zone.settings(kc_dir),
                               block_size=16 * 1024) as f, h5py.File(f, "r") as h5:
        assert sorted(h5) == ["acquisition", "general", "processing"]
        assert h5.attrs["session"] == "test" and h5["general"].attrs["lab"] == "kachery"
        ds = h5["acquisition/traces"]
        assert ds.attrs["rate"] == 30000.0
        np.testing.assert_array_equal(ds[10000:10500, 3:9], traces[10000:10500, 3:9])
        fetched = sum(end - start for start, end in f.range_requests)
    assert fetched < len(data) / 4  # lazy: a slice does not fetch the file


@pytest.fixture
def kachery_env(local_zone: Served, kc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Served:
    """fsspec builds its filesystem from the environment, as every client call does."""
    monkeypatch.setenv("KACHERY_GATEWAY_URL", local_zone.url)
    monkeypatch.setenv("KACHERY_CLOUD_DIR", str(kc_dir))
    monkeypatch.setenv("KACHERY_ZONE", "default")
    monkeypatch.delenv("KACHERY_RESOURCE_URL", raising=False)
    return local_zone


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"unit": np.arange(2000), "rate": rng.random(2000),
                         "region": rng.choice(["CA1", "CA3", "DG"], 2000)})


def test_fsspec_and_pandas_read_csv(kachery_env: Served) -> None:
    frame = _frame()
    sha1 = kachery_env.put(frame.to_csv(index=False).encode())
    text = frame.to_csv(index=False)
    with fsspec.open(f"sha1://{sha1}?label=units.csv", "rb") as f:
        assert f.read(9) == b"unit,rate"
    with fsspec.open(f"sha1://{sha1}", "rt") as f:
        assert f.readline() == "unit,rate,region\n"
        assert f.read() == text[len("unit,rate,region\n"):]
    with kachery_resource.open(f"sha1://{sha1}", block_size=4096) as raw:
        assert [line.decode() for line in raw] == text.splitlines(keepends=True)  # readline
    read = pd.read_csv(f"sha1://{sha1}?label=units.csv")
    pd.testing.assert_frame_equal(read, frame)


def test_pandas_reads_parquet_through_fsspec(kachery_env: Served) -> None:
    frame = _frame()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    sha1 = kachery_env.put(buffer.getvalue())
    read = pd.read_parquet(f"sha1://{sha1}", columns=["unit", "region"])
    pd.testing.assert_frame_equal(read, frame[["unit", "region"]])
    fs = fsspec.filesystem("sha1")
    assert fs.info(f"sha1://{sha1}")["size"] == len(buffer.getvalue())
    assert fs.cat_file(f"sha1://{sha1}", start=-4) == b"PAR1"


def test_fsspec_reads_the_kachery_form(kachery_env: Served) -> None:
    data = b"kachery form through fsspec\n" * 100
    sha1 = kachery_env.put(data)
    with fsspec.open(f"kachery://default:sha1:{sha1}", "rb") as f:
        assert f.read() == data


def test_xarray_reads_netcdf_lazily(kachery_env: Served, kc_dir: Path) -> None:
    """netCDF4 (HDF5) through xarray's h5netcdf engine: on ``open()``, reading a slice
    fetches a small part of the file; on a ``sha1://`` URL, through fsspec."""
    rng = np.random.default_rng(11)
    values = rng.standard_normal((20000, 64)).astype("f4")
    ds = xr.Dataset({"lfp": (("time", "channel"), values)},
                    coords={"time": np.arange(20000) / 1000.0}, attrs={"lab": "kachery"})
    data = bytes(ds.to_netcdf(engine="h5netcdf",
                              encoding={"lfp": {"chunksizes": (500, 64)}}))
    sha1 = kachery_env.put(data)
    with kachery_resource.open(f"sha1://{sha1}", block_size=16 * 1024) as f, \
            xr.open_dataset(f, engine="h5netcdf") as read:
        assert read.attrs["lab"] == "kachery" and read["lfp"].shape == (20000, 64)
        np.testing.assert_array_equal(read["lfp"][2000:2010].values, values[2000:2010])
        fetched = sum(end - start for start, end in f.range_requests)
    assert fetched < len(data) / 4  # the time index and the chunk of the slice
    with xr.open_dataset(f"sha1://{sha1}", engine="h5netcdf") as read:
        np.testing.assert_array_equal(read["time"].values, np.arange(20000) / 1000.0)


def test_zarr_reads_a_zipped_store_through_fsspec(kachery_env: Served, tmp_path: Path) -> None:
    """A Zarr store shared as one zip file: ``zip::sha1://…`` chains fsspec's zip
    filesystem over ours."""
    values = np.arange(100_000, dtype="f4").reshape(2000, 50)
    path = tmp_path / "units.zarr.zip"
    store = zarr.storage.ZipStore(path, mode="w")
    zarr.create_array(store, shape=values.shape, chunks=(200, 50), dtype="f4")[:] = values
    store.close()
    sha1 = kachery_env.put(path.read_bytes())
    array = zarr.open_array(f"zip::sha1://{sha1}", mode="r")
    assert array.shape == values.shape
    np.testing.assert_array_equal(array[1234:1240], values[1234:1240])
