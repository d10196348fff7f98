"""Files written by larpix-control 3.7.0 read exactly as larpix-control reads them.

Packet files: our rows against ``hdf5format.from_file``'s packet objects.
Raw files: our decoded rows against larpix-control's own conversion
(``from_rawfile`` + ``pacman_msg_format.parse`` + ``to_file``) and against the
parsed packet objects themselves, including real detector bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from larpix import MessagePacket, Packet_v2, SyncPacket, TimestampPacket, TriggerPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format
from support.larpix import convert_raw_file
from support.paths import FIXTURES

from exporter.packets import PACKET_DTYPE
from exporter.source.reader import FileReader

REAL_MESSAGES = FIXTURES / "pacman-messages-tpc12-2023-03-15.json"


def read_all(path: Path, chunk_rows: int = 1 << 20) -> tuple[np.ndarray, list]:
    chunks = list(FileReader(path, chunk_rows=chunk_rows).read_new())
    return np.concatenate([c.packets for c in chunks]), chunks


def mixed_packets(rng: np.random.Generator, n: int, version: str) -> list:
    """Every packet kind larpix-control logs in that version, with random contents."""
    kinds = 8 if version >= "2.2" else 6  # sync and trigger packets came with 2.2
    packets = []
    for i in range(n):
        kind = i % kinds
        if kind < 4:  # data, test, config write, config read: random bits, type forced
            raw = bytearray(rng.bytes(8))
            raw[0] = (raw[0] & 0xFC) | kind
            p = Packet_v2(bytes(raw))
            p.io_group, p.io_channel = int(rng.integers(1, 9)), int(rng.integers(1, 33))
            p.receipt_timestamp = int(rng.integers(0, 2**32))
            p.direction = int(rng.integers(0, 2))
        elif kind == 4:
            p = TimestampPacket(timestamp=int(rng.integers(1.6e9, 1.8e9)))
        elif kind == 5:
            p = MessagePacket(f"run note {i}", int(rng.integers(1.6e9, 1.8e9)))
        elif kind == 6:
            p = SyncPacket(sync_type=bytes([rng.choice([83, 72, 67])]),
                           clk_source=int(rng.integers(0, 2)),
                           timestamp=int(rng.integers(0, 2**32)), io_group=int(rng.integers(1, 9)))
        else:
            p = TriggerPacket(trigger_type=bytes([int(rng.integers(0, 256))]),
                              timestamp=int(rng.integers(0, 2**32)),
                              io_group=int(rng.integers(1, 9)))
        packets.append(p)
    return packets


def assert_row_matches_object(row: np.void, obj: object, version: str, messages,
                              original: object) -> None:
    """The fields larpix-control's reader gives an object equal our row's fields.

    ``original`` is the packet as written: parity validity is a property of all
    64 bits, which a packet rebuilt from the file's fields no longer has.
    """
    assert row["packet_type"] == obj.packet_type
    if isinstance(obj, Packet_v2):
        for name in ("io_group", "io_channel", "chip_id", "downstream_marker", "parity"):
            assert row[name] == getattr(obj, name), name
        assert row["direction"] == getattr(obj, "direction", 0)  # parse() sets none
        assert row["valid_parity"] == original.has_valid_parity()
        if obj.packet_type == Packet_v2.DATA_PACKET:
            for name in ("channel_id", "timestamp", "dataword", "trigger_type", "local_fifo",
                         "shared_fifo"):
                assert row[name] == getattr(obj, name), name
        if obj.packet_type in (Packet_v2.CONFIG_WRITE_PACKET, Packet_v2.CONFIG_READ_PACKET):
            assert row["register_address"] == obj.register_address
            assert row["register_data"] == obj.register_data
        if version >= "2.1":
            assert row["first_packet"] == obj.first_packet
        if version >= "2.3":
            assert row["receipt_timestamp"] == obj.receipt_timestamp
    elif isinstance(obj, MessagePacket):
        assert row["timestamp"] == obj.timestamp
        assert messages[row["counter"]]["message"].decode() == obj.message
    elif isinstance(obj, SyncPacket):
        assert (row["io_group"], row["timestamp"], row["dataword"]) == (
            obj.io_group, obj.timestamp, obj.clk_source)
        assert bytes([row["trigger_type"]]) == obj.sync_type
    elif isinstance(obj, TriggerPacket):
        assert (row["io_group"], row["timestamp"]) == (obj.io_group, obj.timestamp)
        assert bytes([row["trigger_type"]]) == obj.trigger_type
    else:
        assert isinstance(obj, TimestampPacket) and row["timestamp"] == obj.timestamp


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2", "2.3", "2.4"])
def test_packet_files_of_every_version_equal_from_file(tmp_path, version):
    path = tmp_path / f"packets_v{version}.h5"
    written = mixed_packets(np.random.default_rng(int(version[-1])), 160, version)
    hdf5format.to_file(str(path), packet_list=written, version=version)
    ours, chunks = read_all(path, chunk_rows=37)
    theirs = hdf5format.from_file(str(path))["packets"]
    assert len(ours) == len(theirs) > 0
    with h5py.File(path, "r") as f:
        messages = f["messages"][:]
    for row, obj, original in zip(ours, theirs, written, strict=True):
        assert_row_matches_object(row, obj, version, messages, original)
    kinds = {type(obj) for obj in theirs}
    assert {Packet_v2, TimestampPacket, MessagePacket} <= kinds
    if version >= "2.2":
        assert {SyncPacket, TriggerPacket} <= kinds
    assert chunks[0].has_receipt_timestamp


DOCUMENTED_2_0 = [(n, PACKET_DTYPE[n].str) for n in PACKET_DTYPE.names
                  if n not in ("first_packet", "receipt_timestamp")]
DOCUMENTED_2_1 = [*DOCUMENTED_2_0, ("first_packet", "u1")]


@pytest.mark.parametrize("version, layouts", [
    ("2.0", {"2.0": DOCUMENTED_2_0}),
    ("2.1", {"2.1": DOCUMENTED_2_1}),
    ("2.2", {"2.1": DOCUMENTED_2_1, "2.2": DOCUMENTED_2_1}),  # 2.2 encodes via 2.1's dtype
])
def test_documented_older_layouts_read_with_absent_fields_zero(tmp_path, monkeypatch,
                                                               version, layouts):
    """larpix-control's older dtypes as documented (its own lists have later fields mixed in)."""
    for name, fields in layouts.items():
        monkeypatch.setitem(hdf5format.dtypes, name,
                            {**hdf5format.dtypes[name], "packets": fields})
    fields = layouts[version]
    path = tmp_path / f"documented_v{version}.h5"
    written = mixed_packets(np.random.default_rng(3), 80, version)
    hdf5format.to_file(str(path), packet_list=written, version=version)
    with h5py.File(path, "r") as f:
        assert len(f["packets"].dtype.names) == len(fields)
        messages = f["messages"][:]
    ours, chunks = read_all(path)
    assert ours.dtype == PACKET_DTYPE
    assert not chunks[0].has_receipt_timestamp
    assert not ours["receipt_timestamp"].any()
    if version == "2.0":
        assert not ours["first_packet"].any()
    theirs = hdf5format.from_file(str(path))["packets"]
    for row, obj, original in zip(ours, theirs, written, strict=True):
        assert_row_matches_object(row, obj, version, messages, original)


def assert_every_field_equal(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert theirs.dtype == PACKET_DTYPE and len(ours) == len(theirs)
    for name in PACKET_DTYPE.names:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_raw_file_equals_larpix_conversion(tmp_path):
    rng = np.random.default_rng(21)
    msgs, io_groups = [], []
    for _ in range(60):
        words = []
        for kind in rng.choice(["data", "sync", "trigger"], size=int(rng.integers(0, 40)),
                               p=[0.9, 0.05, 0.05]):
            if kind == "data":
                p = Packet_v2(rng.bytes(8))
                p.io_channel = int(rng.integers(1, 33))
                p.receipt_timestamp = int(rng.integers(2**32))
            elif kind == "sync":
                p = SyncPacket(sync_type=bytes([rng.choice([83, 72, 67])]),
                               clk_source=int(rng.integers(0, 4)),
                               timestamp=int(rng.integers(2**32)))
            else:
                p = TriggerPacket(trigger_type=bytes([int(rng.integers(256))]),
                                  timestamp=int(rng.integers(2**32)))
            words.append(p)
        msgs.append(pacman_msg_format.format(words, msg_type="DATA"))
        io_groups.append(int(rng.integers(1, 9)))
    path = tmp_path / "raw.h5"
    rawhdf5format.to_rawfile(str(path), msgs=msgs[:25], msg_headers={"io_groups": io_groups[:25]})
    rawhdf5format.to_rawfile(str(path), msgs=msgs[25:], msg_headers={"io_groups": io_groups[25:]})
    ours, chunks = read_all(path, chunk_rows=64)
    theirs, objects = convert_raw_file(path, tmp_path)
    assert_every_field_equal(ours, theirs)
    assert sum(c.rows for c in chunks) == 60 and sum(c.malformed for c in chunks) == 0
    assert (ours["packet_type"] == 4).sum() == 60  # one timestamp packet per message
    markers = np.isin(ours["packet_type"], [4, 6, 7])
    assert not ours["io_channel"][markers].any()
    for row, obj in zip(ours, objects, strict=True):
        assert_row_matches_object(row, obj, "2.4", None, obj)


def real_messages() -> tuple[list[bytes], list[int]]:
    fixture = json.loads(REAL_MESSAGES.read_text())
    return [bytes.fromhex(h) for h in fixture["messages_hex"]], fixture["io_groups"]


def test_real_detector_messages_equal_larpix_conversion(tmp_path):
    msgs, io_groups = real_messages()
    path = tmp_path / "tpc12-binary.h5"
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": io_groups})
    ours, chunks = read_all(path)
    theirs, objects = convert_raw_file(path, tmp_path)
    assert_every_field_equal(ours, theirs)
    for row, obj in zip(ours, objects, strict=True):
        assert_row_matches_object(row, obj, "2.4", None, obj)
    # hand-decoded: header '<cLxH' = type, unix time, pad, word count
    headers = [struct.unpack("<cLxH", m[:8]) for m in msgs]
    timestamps = ours[ours["packet_type"] == 4]
    assert timestamps["timestamp"].tolist() == [h[1] for h in headers]
    assert timestamps["io_group"].tolist() == io_groups
    assert not timestamps["io_channel"].any()
    assert len(ours) == len(msgs) + sum(h[2] for h in headers)
    assert chunks[0].nbytes == sum(map(len, msgs)) + len(msgs)
