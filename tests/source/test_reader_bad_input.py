"""Every unusable file gives one InputError line naming the file and the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import Packet_v1, Packet_v2, TimestampPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format

from exporter.errors import InputError, TransientReadError
from exporter.packets import PACKET_DTYPE
from exporter.source.reader import FileReader


def read_error(path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        list(FileReader(path).read_new())
    error = caught.value
    assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    return error


def packet_file(path: Path, dtype: np.dtype | list, version: str = "2.4") -> None:
    with h5py.File(path, "w") as f:
        f.create_group("_header").attrs["version"] = version
        f.create_dataset("packets", shape=(3,), maxshape=(None,), dtype=dtype)


@pytest.mark.parametrize(("make", "reason", "detail"), [
    (Path.touch, "empty_file", "0 bytes"),
    (lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)), "not_hdf5",
     "not an HDF5 file"),
    (Path.mkdir, "not_a_file", "directory"),
    (os.mkfifo, "not_a_file", ""),  # refused without blocking on the open
], ids=["zero_bytes", "random_bytes", "directory", "fifo"])
def test_not_an_hdf5_file_named_h5(tmp_path, make, reason, detail):
    path = tmp_path / "x.h5"
    make(path)
    error = read_error(path)
    assert error.reason == reason and detail in error.detail


def test_truncated_hdf5(tmp_path):
    whole = tmp_path / "whole.h5"
    hdf5format.to_file(str(whole), packet_list=[TimestampPacket(n) for n in range(2000)])
    data = whole.read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    error = read_error(path)
    assert error.reason == "truncated"
    assert f"eof = {len(data) // 2}" in error.detail and f"stored_eof = {len(data)}" in error.detail


def test_damaged_hdf5_metadata(tmp_path):
    path = tmp_path / "damaged.h5"
    hdf5format.to_file(str(path), packet_list=[TimestampPacket(n) for n in range(100)])
    data = bytearray(path.read_bytes())
    data[96:160] = b"\xa5" * 64  # the root group's object header, after the 96-byte superblock
    path.write_bytes(bytes(data))
    error = read_error(path)
    assert error.reason == "truncated"
    assert error.detail.startswith("damaged or truncated HDF5 file (")


def test_raw_messages_not_bytes(tmp_path):
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as f:
        f.create_group("meta").attrs["version"] = "0.0"
        f.create_dataset("msgs", shape=(2,), dtype="f8")
        f.create_dataset("msg_headers", shape=(2,), dtype=[("io_groups", "u1")])
    error = read_error(path)
    assert error.reason == "bad_fields" and "'msgs'" in error.detail


def other_datasets(f: h5py.File) -> None:
    f["images"] = np.zeros((4, 4))


def header_only(f: h5py.File) -> None:
    f.create_group("_header").attrs["version"] = "2.4"


def raw_meta_without_headers(f: h5py.File) -> None:
    f.create_group("meta").attrs["version"] = "0.0"
    f.create_dataset("msgs", shape=(0,), dtype=h5py.vlen_dtype(np.uint8))


@pytest.mark.parametrize(("layout", "detail"), [
    (other_datasets, "'packets'"),
    (header_only, "version 2.4"),
    (raw_meta_without_headers, ""),
], ids=["other_datasets", "header_without_packets", "raw_meta_without_headers"])
def test_hdf5_without_larpix_datasets(tmp_path, layout, detail):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        layout(f)
    error = read_error(path)
    assert error.reason == "no_packet_dataset" and detail in error.detail


@pytest.mark.parametrize("version", ["0.0", "1.0"])
def test_old_larpix_formats_are_unsupported(tmp_path, version):
    path = tmp_path / f"v{version}.h5"
    hdf5format.to_file(str(path), packet_list=[Packet_v1(), TimestampPacket(3)], version=version)
    error = read_error(path)
    assert error.reason == "unsupported_version"
    assert error.detail == f"unsupported packet file format version {version} (need 2.0-2.4)"


def test_unknown_packet_version(tmp_path):
    path = tmp_path / "future.h5"
    packet_file(path, PACKET_DTYPE, version="3.1")
    assert read_error(path).detail == "unsupported packet file format version 3.1 (need 2.0-2.4)"


def test_missing_version_attribute(tmp_path):
    path = tmp_path / "noversion.h5"
    with h5py.File(path, "w") as f:
        f.create_group("_header")
        f.create_dataset("packets", shape=(1,), dtype=PACKET_DTYPE)
    error = read_error(path)
    assert error.reason == "unsupported_version" and "no format version" in error.detail


def test_odd_version_attribute_stays_one_line(tmp_path):
    path = tmp_path / "odd.h5"
    packet_file(path, PACKET_DTYPE)
    with h5py.File(path, "a") as f:
        f["_header"].attrs["version"] = np.arange(60).reshape(6, 10)
    error = read_error(path)
    assert error.reason == "unsupported_version" and len(error.detail) < 120


def test_unknown_raw_version(tmp_path):
    path = tmp_path / "raw.h5"
    with h5py.File(path, "w") as f:
        f.create_group("meta").attrs["version"] = "1.0"
        f.create_dataset("msgs", shape=(0,), dtype=h5py.vlen_dtype(np.uint8))
        f.create_dataset("msg_headers", shape=(0,), dtype=[("io_groups", "u1")])
    assert read_error(path).detail == "unsupported raw file format version 1.0 (need 0.0)"


def test_missing_fields_are_named(tmp_path):
    path = tmp_path / "missing.h5"
    fields = [(n, PACKET_DTYPE[n]) for n in PACKET_DTYPE.names
              if n not in ("timestamp", "chip_id")]
    packet_file(path, fields)
    error = read_error(path)
    assert error.reason == "bad_fields"
    assert error.detail == "'packets' has missing fields chip_id, timestamp"


def test_extra_fields_are_named(tmp_path):
    path = tmp_path / "extra.h5"
    packet_file(path, [*((n, PACKET_DTYPE[n]) for n in PACKET_DTYPE.names), ("adc_mv", "f4")])
    error = read_error(path)
    assert error.reason == "bad_fields"
    assert error.detail == "'packets' has unexpected fields adc_mv"


def test_wrong_field_type_is_named(tmp_path):
    path = tmp_path / "types.h5"
    packet_file(path, [(n, "f8" if n == "timestamp" else PACKET_DTYPE[n])
                       for n in PACKET_DTYPE.names])
    error = read_error(path)
    assert error.reason == "bad_fields" and "timestamp is float64 (need uint64)" in error.detail


def test_packets_not_a_table(tmp_path):
    path = tmp_path / "flat.h5"
    packet_file(path, "u8")
    assert read_error(path).reason == "bad_fields"


def test_empty_datasets_are_no_rows_not_errors(tmp_path):
    packets, raw = tmp_path / "packets.h5", tmp_path / "raw.h5"
    hdf5format.to_file(str(packets), packet_list=[])
    rawhdf5format.to_rawfile(str(raw), msgs=[], msg_headers={"io_groups": []})
    for path, fmt in ((packets, "packet"), (raw, "raw")):
        reader = FileReader(path)
        assert list(reader.read_new()) == []
        assert reader.cursor.rows == 0 and reader.cursor.format == fmt


def test_dangling_symlink(tmp_path):
    path = tmp_path / "link.h5"
    path.symlink_to(tmp_path / "gone.h5")
    error = read_error(path)
    assert error.reason == "unreadable" and "broken symbolic link" in error.detail


def test_vanished_file(tmp_path):
    error = read_error(tmp_path / "never.h5")
    assert error.reason == "vanished"


READ_AS_NOBODY = """
import os, sys
from exporter.errors import InputError
from exporter.source.reader import FileReader
os.setgid(65534)
os.setuid(65534)
try:
    list(FileReader(sys.argv[1]).read_new())
    print("read")
except InputError as error:
    print(error.reason, "|", error)
"""


def test_file_without_read_permission():
    """Root reads any file, so the read runs as 'nobody' (dropped after the imports)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        path = Path(tmp) / "locked.h5"
        hdf5format.to_file(str(path), packet_list=[TimestampPacket(1)])
        path.chmod(0)
        if os.geteuid() == 0:
            out = subprocess.run([sys.executable, "-c", READ_AS_NOBODY, str(path)],
                                 capture_output=True, text=True, timeout=60).stdout
            assert out.strip() == f"unreadable | {path}: permission denied"
        else:
            assert read_error(path).reason == "unreadable"


HOLD_OPEN_FOR_WRITE = """
import sys, h5py
with h5py.File(sys.argv[1], "a", libver="latest", locking=False):
    print("open", flush=True)
    sys.stdin.readline()
"""


def test_file_held_open_by_a_writer_is_busy_then_read(tmp_path):
    path = tmp_path / "raw.h5"
    msg = pacman_msg_format.format([Packet_v2(bytes(8))], msg_type="DATA")
    rawhdf5format.to_rawfile(str(path), msgs=[msg], msg_headers={"io_groups": [1]})
    writer = subprocess.Popen([sys.executable, "-c", HOLD_OPEN_FOR_WRITE, str(path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    reader = FileReader(path)
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(TransientReadError) as caught:
            list(reader.read_new())
    finally:
        writer.communicate("done\n", timeout=30)
    assert caught.value.reason == "busy" and "open for writing" in caught.value.detail
    assert reader.cursor.rows == 0
    assert [len(c.packets) for c in reader.read_new()] == [2]


def test_malformed_messages_are_skipped_and_counted(tmp_path):
    word = Packet_v2(bytes.fromhex("0123456789abcdef"))
    word.io_channel = 7
    good = pacman_msg_format.format([word, word], msg_type="DATA")
    wrong_count = good[:6] + (3).to_bytes(2, "little") + good[8:]
    request = b"?" + good[1:]
    ping_word = good[:24] + b"P" + good[25:]
    cut = good[:-5]
    stub = good[:5]
    msgs = [good, wrong_count, good, request, ping_word, cut, stub, good]
    path = tmp_path / "raw.h5"
    io_groups = [1, 1, 2, 1, 1, 1, 1, 3]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": io_groups})
    chunks = list(FileReader(path).read_new())
    assert sum(c.malformed for c in chunks) == 5
    assert sum(c.rows for c in chunks) == 8
    packets = np.concatenate([c.packets for c in chunks])
    assert packets["io_group"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # word 0x01 0x23 ...: packet type = low 2 bits of 0x01, chip id = bits 2-9 of 0x2301
    assert packets["packet_type"].tolist() == [4, 1, 1] * 3
    assert packets["chip_id"].tolist() == [0, 0xC0, 0xC0] * 3
    assert packets["io_channel"].tolist() == [0, 7, 7] * 3
