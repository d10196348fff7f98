"""Channels masked off in the ASIC configs (``channel_mask``): never dead, never quiet.

Three sources, later ones winning chip by chip:

* the ``configs`` dataset of packet files (hdf5format 2.4 logs each chip's 239
  registers; ``channel_mask`` is registers 131-138, channel ``c`` at bit
  ``c % 8`` of register ``131 + c // 8``; the latest row of a chip counts);
* a ``daq_configs`` dataset (the bytes of a tar archive, gzip or not, of
  ``config_<io_group>-<io_channel>-<chip_id>.json`` ASIC configs, as the 2x2
  raw files carry);
* ``--asic-configs DIR``: the same JSON files in a directory.

An ASIC config JSON is larpix-control's (``{"register_values": {...}}``) or
the 2x2 DAQ's flat register dict (with ``CHIP_KEY``); both hold
``channel_mask``, 64 values, 1 = masked.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from exporter.quality.table import channel_key

CHANNELS = 64
MASK_REGISTERS = slice(131, 139)
_CHIP_KEY = re.compile(r"(\d+)-(\d+)-(\d+)")


class MaskError(Exception):
    """An ASIC config source that cannot be read; ``str()`` is one line naming it."""


@dataclass
class ChannelMasks:
    """Chip key (io_group, io_channel, chip_id) -> 64 booleans, True = masked."""

    chips: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)

    def update(self, other: ChannelMasks) -> None:
        self.chips.update(other.chips)

    def masked_keys(self) -> np.ndarray:
        """Channel keys of every masked channel, sorted."""
        keys = [channel_key(g, c, chip, np.flatnonzero(mask))
                for (g, c, chip), mask in self.chips.items() if mask.any()]
        return np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(sum(mask.sum() for mask in self.chips.values()))


def masks_from_registers(rows: np.ndarray) -> ChannelMasks:
    """Masks from ``configs`` rows (io_group, io_channel, chip_id, registers); latest wins."""
    masks = ChannelMasks()
    if len(rows) == 0:
        return masks
    bits = np.unpackbits(rows["registers"][:, MASK_REGISTERS].astype(np.uint8), axis=1,
                         bitorder="little").astype(bool)
    for i, (group, channel, chip) in enumerate(zip(rows["io_group"].tolist(),
                                                   rows["io_channel"].tolist(),
                                                   rows["chip_id"].tolist(), strict=True)):
        masks.chips[(group, channel, chip)] = bits[i]
    return masks


def mask_from_json(text: str | bytes, name: str) -> tuple[tuple[int, int, int], np.ndarray]:
    """(chip key, mask) of one ASIC config JSON; ``name`` gives the key when it lacks CHIP_KEY."""
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MaskError(f"{name}: not JSON ({error.msg if hasattr(error, 'msg') else error})"
                        ) from None
    registers = config.get("register_values", config) if isinstance(config, dict) else None
    if not isinstance(registers, dict) or "channel_mask" not in registers:
        raise MaskError(f"{name}: ASIC config without channel_mask")
    mask = np.asarray(registers["channel_mask"])
    if mask.shape != (CHANNELS,):
        raise MaskError(f"{name}: channel_mask must have {CHANNELS} values")
    found = _CHIP_KEY.search(str(config.get("CHIP_KEY", ""))) or _CHIP_KEY.search(
        Path(name).name)
    if found is None:
        raise MaskError(f"{name}: no chip key (CHIP_KEY or config_<io_group>-<io_channel>-"
                        "<chip_id>.json)")
    key = tuple(int(x) for x in found.groups())
    return key, mask.astype(bool)


def masks_from_directory(directory: str | Path) -> ChannelMasks:
    """``--asic-configs DIR``: every ``*.json`` in it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MaskError(f"{directory}: ASIC config directory "
                        f"{'is not a directory' if directory.exists() else 'does not exist'}")
    masks = ChannelMasks()
    for path in sorted(directory.glob("*.json")):
        key, mask = mask_from_json(path.read_bytes(), str(path))
        masks.chips[key] = mask
    return masks


def masks_from_tar(data: bytes, name: str) -> ChannelMasks:
    """The JSON members of a tar archive (gzip or plain)."""
    masks = ChannelMasks()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.endswith(".json"):
                    text = archive.extractfile(member).read()
                    key, mask = mask_from_json(text, f"{name}:{member.name}")
                    masks.chips[key] = mask
    except tarfile.TarError as error:
        raise MaskError(f"{name}: not a tar archive of ASIC configs ({error})") from None
    return masks


def masks_from_file(path: str | Path) -> ChannelMasks:
    """Masks a data file carries: its ``configs`` dataset, then its ``daq_configs``."""
    masks = ChannelMasks()
    with h5py.File(path, "r", locking=False) as f:
        if "configs" in f and f["configs"].dtype.names and "registers" in f["configs"].dtype.names:
            masks.update(masks_from_registers(f["configs"][()]))
        if "daq_configs" in f:
            masks.update(masks_from_tar(_as_bytes(f["daq_configs"][()]), f"{path}:daq_configs"))
    return masks


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, np.void):
        return value.tobytes()
    return np.asarray(value, np.uint8).tobytes()
