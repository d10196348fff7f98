"""larpix-control's own raw -> packet conversion: the independent truth for raw decoding."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np
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
