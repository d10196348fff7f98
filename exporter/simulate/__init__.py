"""Simulated LArPix runs: realistic files in both formats, live appending, ground truth."""

from exporter.simulate.detector import SimConfig
from exporter.simulate.faults import Faults
from exporter.simulate.run import FORMATS, LiveSimulation, simulate_command, simulate_file
from exporter.simulate.truth import detector_path, truth_path

__all__ = ["FORMATS", "Faults", "LiveSimulation", "SimConfig", "simulate_command", "simulate_file",
           "detector_path", "truth_path"]
