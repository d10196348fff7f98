"""larpix-monitor: live data-quality monitoring for LArPix HDF5 files."""

__version__ = "1.0.0"

DEFAULT_PORT = 8470
