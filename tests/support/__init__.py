"""Helpers shared by the tests: real processes, real files, independent truth."""
