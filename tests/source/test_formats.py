"""PACMAN decoding and packet normalisation, against bytes and bits built by hand.

The expected values here come from the LArPix v2 bit layout (bit 0 = least
significant bit of byte 0) and the PACMAN message layout, not from any decoder.
"""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest
from support.recount import words_recount

from exporter.packets import PACKET_DTYPE
from exporter.source.formats import detect, normalise_packets
from exporter.source.pacman import _BLOCK_ROWS, decode_messages


def larpix_word(packet_type=0, chip_id=0, channel_id=0, timestamp=0, first_packet=0,
                dataword=0, trigger_type=0, local_fifo=0, shared_fifo=0, downstream=0,
                parity=None) -> int:
    """A 64-bit LArPix v2 data word; parity None = the valid (odd) one."""
    bits = (packet_type | chip_id << 2 | channel_id << 10 | timestamp << 16
            | first_packet << 47 | dataword << 48 | trigger_type << 56 | local_fifo << 58
            | shared_fifo << 60 | downstream << 62)
    if parity is None:
        parity = 1 - bin(bits).count("1") % 2
    return bits | parity << 63


def data_word(io_channel: int, receipt: int, word: int) -> bytes:
    return b"D" + bytes([io_channel]) + struct.pack("<L", receipt) + b"\0\0" + struct.pack(
        "<Q", word)


def sync_word(sync_type: bytes, clk_source: int, timestamp: int) -> bytes:
    return b"S" + sync_type + bytes([clk_source, 0]) + struct.pack("<L", timestamp) + bytes(8)


def trigger_word(trigger_type: int, timestamp: int) -> bytes:
    return b"T" + bytes([trigger_type, 0, 0]) + struct.pack("<L", timestamp) + bytes(8)


def message(unix_time: int, *words: bytes, msg_type: bytes = b"D", count: int | None = None
            ) -> np.ndarray:
    header = msg_type + struct.pack("<L", unix_time) + b"\0" + struct.pack(
        "<H", len(words) if count is None else count)
    return np.frombuffer(header + b"".join(words), np.uint8)


def as_vlen(*msgs: np.ndarray) -> np.ndarray:
    """Messages as h5py returns a slice of the ``msgs`` dataset: an object array."""
    out = np.empty(len(msgs), object)
    out[:] = list(msgs)
    return out


def decode(*msgs: np.ndarray, io_groups: list[int] | None = None) -> tuple[np.ndarray, int]:
    """Packets and the malformed count; the words that come with the packets are checked
    on the way, against the packets' own fields."""
    groups = np.array(io_groups or [1] * len(msgs), np.uint8)
    packets, words, malformed = decode_messages(as_vlen(*msgs), groups)
    for name, expected in words_recount(packets).items():
        np.testing.assert_array_equal(getattr(words, name), expected, err_msg=name)
    return packets, malformed


def test_data_word_fields():
    word = larpix_word(packet_type=0, chip_id=0xB7, channel_id=0x2D, timestamp=0x5ABCDEF1,
                       first_packet=1, dataword=0xC3, trigger_type=2, local_fifo=3,
                       shared_fifo=1, downstream=1)
    packets, malformed = decode(message(1_678_851_900, data_word(17, 0xDEADBEEF, word)),
                                io_groups=[5])
    assert malformed == 0 and len(packets) == 2
    ts, data = packets
    assert (ts["packet_type"], ts["timestamp"], ts["io_group"], ts["io_channel"]) == (
        4, 1_678_851_900, 5, 0)
    expected = dict(io_group=5, io_channel=17, packet_type=0, chip_id=0xB7, channel_id=0x2D,
                    timestamp=0x5ABCDEF1, first_packet=1, dataword=0xC3, trigger_type=2,
                    local_fifo=3, shared_fifo=1, downstream_marker=1, valid_parity=1,
                    receipt_timestamp=0xDEADBEEF,
                    # config view of the same bits: bits 10-17 and 18-25
                    register_address=(word >> 10) & 0xFF, register_data=(word >> 18) & 0xFF,
                    parity=word >> 63, direction=0, counter=0, local_fifo_events=0,
                    shared_fifo_events=0, fifo_diagnostics_enabled=0)
    assert {name: int(data[name]) for name in expected} == expected


def test_config_word_register_fields():
    word = 2 | 0x4F << 2 | 0x81 << 10 | 0x3C << 18
    packets, _ = decode(message(7, data_word(3, 0, word)))
    row = packets[1]
    assert (row["packet_type"], row["chip_id"], row["register_address"], row["register_data"]) == (
        2, 0x4F, 0x81, 0x3C)


@pytest.mark.parametrize("flip, valid", [(False, 1), (True, 0)])
def test_valid_parity_is_odd_parity_of_all_64_bits(flip, valid):
    word = larpix_word(chip_id=0x33, timestamp=12345, dataword=99)
    if flip:
        word ^= 1 << 63
    packets, _ = decode(message(1, data_word(1, 0, word)))
    assert packets["valid_parity"].tolist() == [0, valid]


def test_sync_and_trigger_words():
    packets, _ = decode(message(100, sync_word(b"S", 3, 10_000_123), sync_word(b"H", 0, 42),
                                trigger_word(0x82, 777)), io_groups=[2])
    assert packets["packet_type"].tolist() == [4, 6, 6, 7]
    assert packets["trigger_type"].tolist() == [0, ord("S"), ord("H"), 0x82]
    assert packets["dataword"].tolist() == [0, 1, 0, 0]  # clk_source & 1
    assert packets["timestamp"].tolist() == [100, 10_000_123, 42, 777]
    assert packets["io_group"].tolist() == [2, 2, 2, 2]
    assert not packets["io_channel"].any() and not packets["valid_parity"].any()
    assert not packets["receipt_timestamp"].any()


def test_one_timestamp_packet_per_message_even_within_a_second():
    msgs = [message(1_700_000_000, data_word(1, n, larpix_word(chip_id=n))) for n in range(5)]
    msgs.append(message(1_700_000_000))  # a message without words still has its header
    packets, _ = decode(*msgs, io_groups=[1, 2, 1, 2, 1, 2])
    assert packets["packet_type"].tolist() == [4, 0] * 5 + [4]
    assert packets["io_group"].tolist() == [1, 1, 2, 2, 1, 1, 2, 2, 1, 1, 2]
    assert packets["chip_id"][1::2].tolist() == [0, 1, 2, 3, 4]


def test_no_messages():
    packets, words, malformed = decode_messages(as_vlen(), np.zeros(0, np.uint8))
    assert packets.dtype == PACKET_DTYPE and len(packets) == 0 and malformed == 0
    assert len(words.ids) == len(words.other) == 0


GOOD = message(50, data_word(9, 1, larpix_word(chip_id=21)))


@pytest.mark.parametrize("bad", [
    message(50, data_word(9, 1, 0), count=2),                        # count says 2, holds 1
    message(50, data_word(9, 1, 0), msg_type=b"?"),                  # a request, not data
    message(50, b"P" + bytes(15)),                                   # a ping word in data
    message(50, data_word(9, 1, 0), bytes(16)),                      # a word of type 0
    message(50, data_word(9, 1, 0), data_word(9, 1, 0))[:-3],        # cut inside a word
    message(50)[:5],                                                 # cut inside the header
    np.zeros(0, np.uint8),                                           # empty, followed by data
])
def test_malformed_message_skipped_and_neighbours_kept(bad):
    packets, malformed = decode(GOOD, bad, GOOD, io_groups=[1, 2, 3])
    assert malformed == 1
    assert packets["io_group"].tolist() == [1, 1, 3, 3]
    assert packets["chip_id"].tolist() == [0, 21, 0, 21]


def test_many_messages_of_mixed_sizes_in_order():
    rng = np.random.default_rng(0)
    msgs, expected_chips, groups = [], [], []
    for m in range(300):
        chips = rng.integers(0, 256, size=int(rng.integers(0, 20)))
        msgs.append(message(m, *(data_word(1, 0, larpix_word(chip_id=int(c))) for c in chips)))
        expected_chips += [0, *chips.tolist()]
        groups.append(m % 7 + 1)
    packets, malformed = decode(*msgs, io_groups=groups)
    assert malformed == 0
    assert packets["chip_id"].tolist() == expected_chips
    assert packets["timestamp"][packets["packet_type"] == 4].tolist() == list(range(300))


def test_blocks_of_messages_bigger_ones_and_malformed_ones_anywhere():
    """The decoder works through blocks of ``_BLOCK_ROWS`` rows: messages across block
    edges, messages bigger than a block and malformed ones in several blocks."""
    rng = np.random.default_rng(1)
    sizes = [int(n) for n in rng.integers(0, 400, size=600)]
    sizes[60] = sizes[150] = sizes[400] = 40_000
    broken = {3, 59, 60, 61, 120, 150, 599}  # 60 and 150 are big ones, 400 is a good one
    msgs, expected_chips, groups = [], [], []
    for m, size in enumerate(sizes):
        chips = rng.integers(0, 256, size=size)
        words = [data_word(1, 0, larpix_word(chip_id=int(c))) for c in chips]
        bad = m in broken
        msgs.append(message(m, *words, count=size + 1 if bad else None))
        groups.append(m % 5 + 1)
        if not bad:
            expected_chips += [0, *chips.tolist()]
    packets, malformed = decode(*msgs, io_groups=groups)
    assert malformed == len(broken)
    assert 40_000 > _BLOCK_ROWS
    assert sum(size + 1 for m, size in enumerate(sizes) if m not in broken) > 4 * _BLOCK_ROWS
    assert packets["chip_id"].tolist() == expected_chips
    stamps = packets["timestamp"][packets["packet_type"] == 4].tolist()
    assert stamps == [m for m in range(len(sizes)) if m not in broken]
    assert packets["io_group"][packets["packet_type"] == 4].tolist() == [
        m % 5 + 1 for m in stamps]


def test_normalise_older_dtype_by_field_name():
    older = np.dtype([("timestamp", "<u8"), ("io_group", "u1"), ("packet_type", "u1"),
                      ("chip_id", "u1")])
    rows = np.array([(123456789012, 3, 4, 0), (99, 1, 0, 42)], older)
    out = normalise_packets(rows)
    assert out.dtype == PACKET_DTYPE
    assert out["timestamp"].tolist() == [123456789012, 99]
    assert out["io_group"].tolist() == [3, 1] and out["chip_id"].tolist() == [0, 42]
    assert not out["receipt_timestamp"].any() and not out["first_packet"].any()


def test_detect_prefers_contents(tmp_path):
    path = tmp_path / "looks_raw_but_is_packets.raw.h5"
    with h5py.File(path, "w") as f:
        f.create_group("_header").attrs["version"] = np.bytes_(b"2.3")
        f.create_dataset("packets", shape=(0,), dtype=PACKET_DTYPE)
    with h5py.File(path, "r") as f:
        layout = detect(f, str(path))
    assert (layout.format, layout.version, layout.native) == ("packet", "2.3", True)
