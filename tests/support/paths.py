"""Where the tests' own files are."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
#: Real detector bytes: 20 PACMAN messages from a 2x2 tile in 2023.
FIXTURES = TESTS / "fixtures"
#: Plugins written to the seed's contract, unchanged.
SEED_PLUGINS = TESTS / "seed_plugins"
