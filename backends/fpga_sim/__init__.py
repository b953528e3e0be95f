"""fpga-sim: a simulated int8 systolic-array accelerator, with its timing and energy model.

``backend`` is the Backend (entry point ``backends.fpga_sim:FpgaSimBackend``); ``systolic`` the
analytical array model; ``onnx_graph`` the walk from an ONNX graph to array layers;
``presets.toml`` the shipped accelerator presets and their sources.
"""

from backends.fpga_sim.backend import FpgaSimBackend

__all__ = ["FpgaSimBackend"]
