"""A simulated Databricks workspace that speaks the real REST wire protocol, for demos and tests.

The exporter never imports this package; it is only pointed at the simulator's URL.
"""

from .server import SimulatorServer, run
from .workspace import SimulatedWorkspace

__all__ = ["SimulatedWorkspace", "SimulatorServer", "run"]
