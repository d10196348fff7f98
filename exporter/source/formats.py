"""The two LArPix HDF5 layouts: recognising them and turning their rows into packets.

The format is told by the file's contents, never by its name. Packet files
(``larpix.format.hdf5format`` 2.0-2.4) are matched to ``PACKET_DTYPE`` by field
name, because larpix-control's own "2.0" and "2.1" dtypes already carry later
fields. Raw files (``larpix.format.rawhdf5format`` 0.0) hold PACMAN messages, which
``exporter.source.pacman`` decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from exporter.errors import InputError
from exporter.packets import PACKET_DTYPE

PACKET_FORMAT = "packet"
RAW_FORMAT = "raw"

PACKET_VERSIONS = ("2.0", "2.1", "2.2", "2.3", "2.4")
RAW_VERSIONS = ("0.0",)

#: Fields a packet file may lack (added in 2.1 and 2.3); they read as 0.
OPTIONAL_PACKET_FIELDS = ("first_packet", "receipt_timestamp")
REQUIRED_PACKET_FIELDS = tuple(n for n in PACKET_DTYPE.names if n not in OPTIONAL_PACKET_FIELDS)

@dataclass(frozen=True)
class Layout:
    """What a file holds and where: enough to read its rows without looking again."""

    format: str
    version: str
    #: dtype of the ``packets`` dataset (packet files only).
    packet_dtype: np.dtype | None
    has_receipt_timestamp: bool

    @property
    def native(self) -> bool:
        """Rows can be read straight into ``PACKET_DTYPE`` (same fields, same layout)."""
        return self.packet_dtype == PACKET_DTYPE


def _version(attrs: h5py.AttributeManager) -> str | None:
    """The ``version`` attribute as one short line of text, whatever type it was stored as."""
    value = attrs.get("version")
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = " ".join(str(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def detect(f: h5py.File, path: str) -> Layout:
    """Recognise a packet or raw file from its groups, datasets and version attributes."""
    if "_header" in f and isinstance(f["_header"], h5py.Group):
        return _packet_layout(f, path)
    if "meta" in f and isinstance(f["meta"], h5py.Group) and "msgs" in f:
        return _raw_layout(f, path)
    raise InputError(path, "no_packet_dataset",
                     "no LArPix data: neither a 'packets' dataset (packet file) "
                     "nor 'msgs' (raw file)")


def _unsupported(path: str, version: str | None, supported: tuple[str, ...], kind: str
                 ) -> InputError:
    need = f"{supported[0]}-{supported[-1]}" if len(supported) > 1 else supported[0]
    found = "no format version" if version is None else f"format version {version}"
    return InputError(path, "unsupported_version",
                      f"unsupported {kind} {found} (need {need})")


def _packet_layout(f: h5py.File, path: str) -> Layout:
    version = _version(f["_header"].attrs)
    if version not in PACKET_VERSIONS:
        raise _unsupported(path, version, PACKET_VERSIONS, "packet file")
    dset = f.get("packets")
    if not isinstance(dset, h5py.Dataset):
        raise InputError(path, "no_packet_dataset",
                         f"packet file (version {version}) has no 'packets' dataset")
    dtype = dset.dtype
    if dtype.names is None or dset.ndim != 1:
        raise InputError(path, "bad_fields",
                         f"'packets' is not a one-dimensional table of fields ({dtype})")
    _check_fields(path, dtype)
    return Layout(PACKET_FORMAT, version, dtype, "receipt_timestamp" in dtype.names)


def _check_fields(path: str, dtype: np.dtype) -> None:
    names = set(dtype.names)
    missing = [n for n in REQUIRED_PACKET_FIELDS if n not in names]
    extra = sorted(names - set(PACKET_DTYPE.names))
    wrong = [f"{n} is {dtype[n]} (need {PACKET_DTYPE[n]})"
             for n in dtype.names if n in PACKET_DTYPE.names and dtype[n] != PACKET_DTYPE[n]]
    problems = []
    if missing:
        problems.append("missing fields " + ", ".join(missing))
    if extra:
        problems.append("unexpected fields " + ", ".join(extra))
    if wrong:
        problems.append("field types " + ", ".join(wrong))
    if problems:
        raise InputError(path, "bad_fields", "'packets' has " + "; ".join(problems))


def _raw_layout(f: h5py.File, path: str) -> Layout:
    version = _version(f["meta"].attrs)
    if version not in RAW_VERSIONS:
        raise _unsupported(path, version, RAW_VERSIONS, "raw file")
    msgs, headers = f.get("msgs"), f.get("msg_headers")
    if not isinstance(headers, h5py.Dataset):
        raise InputError(path, "no_packet_dataset", "raw file has 'msgs' but no 'msg_headers'")
    if (not isinstance(msgs, h5py.Dataset) or msgs.ndim != 1
            or h5py.check_vlen_dtype(msgs.dtype) != np.uint8):
        raise InputError(path, "bad_fields", "'msgs' is not a list of variable-length bytes")
    if headers.ndim != 1 or headers.dtype.names is None or "io_groups" not in headers.dtype.names:
        raise InputError(path, "bad_fields", "'msg_headers' has no 'io_groups' field")
    return Layout(RAW_FORMAT, version, None, True)


def normalise_packets(rows: np.ndarray) -> np.ndarray:
    """Rows of any supported packet-file dtype as ``PACKET_DTYPE`` (absent fields 0)."""
    if rows.dtype == PACKET_DTYPE:
        return rows
    out = np.zeros(rows.shape, dtype=PACKET_DTYPE)
    for name in rows.dtype.names:
        out[name] = rows[name]
    return out


def created_time(f: h5py.File, layout: Layout) -> float | None:
    """The ``created`` attribute larpix-control writes once, when it makes the file
    (``_header`` of packet files, ``meta`` of raw files); None if absent or not a number."""
    group = f.get("_header" if layout.format == PACKET_FORMAT else "meta")
    value = group.attrs.get("created") if isinstance(group, h5py.Group) else None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return None
