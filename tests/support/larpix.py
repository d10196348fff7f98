"""larpix-control's own packets and raw -> packet conversion: the independent truth for tests."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
from larpix import Packet_v2
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format


def parse_messages(msgs: Iterable[bytes], io_groups: Iterable[int]) -> list:
    """Each message parsed by larpix-control, with its io_group set: the packet objects."""
    packets = []
    for io_group, msg in zip(io_groups, msgs, strict=True):
        packets.extend(pacman_msg_format.parse(msg, io_group=io_group))
    return packets


def raw_file_packets(path: Path) -> list:
    """Every packet of a raw file, as larpix-control converts it (with io_group set)."""
    raw = rawhdf5format.from_rawfile(str(path))
    return parse_messages(raw["msgs"], raw["msg_headers"]["io_groups"])


def convert_messages(msgs: Iterable[bytes], io_groups: Iterable[int], workdir: Path
                     ) -> tuple[np.ndarray, list]:
    """Parse each message as larpix-control does, write with its to_file, read the rows back.

    Returns the rows and the packet objects they were written from.
    """
    objects = parse_messages(msgs, io_groups)
    out = workdir / f"converted_{time.monotonic_ns()}.h5"
    hdf5format.to_file(str(out), packet_list=objects)
    with h5py.File(out, "r") as f:
        return f["packets"][:], objects


def convert_raw_file(path: Path, workdir: Path) -> tuple[np.ndarray, list]:
    """``convert_messages`` of every message of a finished raw file."""
    raw = rawhdf5format.from_rawfile(str(path))
    return convert_messages(raw["msgs"], raw["msg_headers"]["io_groups"], workdir)


def random_packet(rng: np.random.Generator, packet_type: int = 0) -> Packet_v2:
    """A larpix-control packet of ``packet_type`` with random fields and valid parity."""
    p = Packet_v2()
    p.io_group = int(rng.integers(1, 3))
    p.io_channel = int(rng.integers(1, 33))
    p.chip_id = int(rng.integers(11, 111))
    p.packet_type = int(packet_type)
    p.channel_id = int(rng.integers(0, 64))
    p.timestamp = int(rng.integers(0, 1 << 31))
    p.dataword = int(rng.integers(0, 256))
    p.assign_parity()
    return p
