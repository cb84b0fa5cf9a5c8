"""A simulated Databricks workspace that speaks the real REST wire protocol, for demos and tests.

The exporter only points at its URL; its CLI imports it for `demo` and `simulate` alone.
"""

from .server import SimulatorServer, run
from .workspace import SimulatedWorkspace

__all__ = ["SimulatedWorkspace", "SimulatorServer", "run"]
