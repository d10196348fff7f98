"""Files as larpix-control writes them, then damaged or rewritten the ways disks and operators
do it: one stored chunk with corrupt bytes, a file rewritten in place, an inode reused; and
files left alone long enough to count as finished."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
from larpix import TimestampPacket
from larpix.format import hdf5format, pacman_msg_format, rawhdf5format

from exporter.source.reader import SETTLE_SECONDS
from support.larpix import random_packet


def at_rest(path: Path) -> None:
    """As a file the writer finished with a while ago (unchanged for ``SETTLE_SECONDS``)."""
    settled = time.time() - SETTLE_SECONDS - 1
    os.utime(path, (settled, settled))


#: Rows per stored chunk of the datasets made here (larpix-control's raw files get 1024 too).
CHUNK = 1024


def larpix_packets(n: int, seed: int) -> list:
    """larpix-control packet objects: data, config and timestamp packets of known types."""
    rng = np.random.default_rng(seed)
    packets = []
    for i, kind in enumerate(rng.choice([0, 2, 3, 4], size=n, p=[0.85, 0.05, 0.05, 0.05])):
        if kind == 4:
            p = TimestampPacket(timestamp=1_700_000_000 + i)
            p.io_group = int(rng.integers(1, 3))
        else:
            p = random_packet(rng, kind)
        packets.append(p)
    return packets


def types_of(packets: list) -> Counter:
    """Packets by packet_type, from larpix-control's own objects."""
    return Counter(int(p.packet_type) for p in packets)


def packet_file(path: Path, packets: list) -> np.ndarray:
    """Written by larpix-control's to_file (mode 'w': a file already there is truncated
    and rewritten in place, same inode); the rows it wrote."""
    hdf5format.to_file(str(path), packet_list=packets, mode="w")
    with h5py.File(path, "r") as f:
        return f["packets"][:]


def append_rows(path: Path, rows: np.ndarray) -> None:
    """Append the way larpix-control's to_file does: resize, then write."""
    with h5py.File(path, "a") as f:
        dset = f["packets"]
        start = dset.shape[0]
        dset.resize(start + len(rows), axis=0)
        dset[start:] = rows


def gzip_packet_file(path: Path, rows: np.ndarray) -> None:
    """The rows larpix-control wrote, in a packet file laid out as its own but with the
    ``packets`` dataset gzip-compressed in chunks of ``CHUNK`` rows."""
    with h5py.File(path, "w") as f:
        header = f.create_group("_header")
        header.attrs["version"] = "2.4"
        header.attrs["created"] = header.attrs["modified"] = 1.7e9
        f.create_dataset("packets", data=rows, maxshape=(None,), chunks=(CHUNK,),
                         compression="gzip")


def raw_file(path: Path, n: int, seed: int) -> tuple[list[bytes], list[int]]:
    """``n`` PACMAN DATA messages written by larpix-control's to_rawfile; messages, io_groups."""
    rng = np.random.default_rng(seed)
    packets = larpix_packets(n * 3, seed)
    msgs = [pacman_msg_format.format(packets[3 * i:3 * i + int(rng.integers(1, 4))],
                                     msg_type="DATA") for i in range(n)]
    groups = [int(g) for g in rng.integers(1, 5, size=n)]
    rawhdf5format.to_rawfile(str(path), msgs=msgs, msg_headers={"io_groups": groups})
    return msgs, groups


def corrupt_chunk(path: Path, dataset: str, index: int) -> range:
    """Overwrite the middle of stored chunk ``index`` of ``dataset`` with garbage; the rows
    it held. Fails unless h5py itself can no longer read them."""
    with h5py.File(path, "r") as f:
        dset = f[dataset]
        info = dset.id.get_chunk_info(index)
        rows = range(info.chunk_offset[0], min(info.chunk_offset[0] + dset.chunks[0],
                                               dset.shape[0]))
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset + info.size // 4)
        raw.write(b"\xa5" * max(16, info.size // 2))
    with h5py.File(path, "r") as f:
        try:
            f[dataset][rows.start:rows.stop]
        except OSError:
            return rows
    raise AssertionError(f"chunk {index} of {dataset} still reads after corrupting it")
