"""Prescriptions: the clinician's units become the pump's exactly, and every bad key is named."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from firmware_model.commands import ConfigurePatientBolus, ProgramContinuous, ProgramFlex
from firmware_model.errors import PrescriptionError
from firmware_model.prescription import load_prescription
from firmware_model.simulate import run
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = {
    "pump": {"reservoir_ml": 20},
    "drug": {"name": "morphine", "concentration_mg_per_ml": 10, "fill_ml": 20},
    "therapy": {"mode": "continuous", "dose_mg_per_day": 2.5},
}


def rx_with(**sections):
    data = copy.deepcopy(BASE)
    data.update(sections)
    return data


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_loads_and_runs_a_week(path: Path) -> None:
    rx = load_prescription(tomllib.loads(path.read_text()), path.name)
    result = run(rx, 7)
    assert result.refused == []
    assert result.delivered_nl > 0 and result.dose_at_tip_ng > 0


def test_units_are_converted_exactly() -> None:
    rx = load_prescription(rx_with(patient_bolus={"dose_mg": 0.1, "duration_min": 10, "lockout_min": 180,
                                                  "max_per_day": 4, "requests": ["08:00", "20:30"]}))
    # 2.5 mg/day at 10 mg/mL = 0.25 mL/day; 0.1 mg = 10 µL.
    assert rx.therapy == ProgramContinuous(250_000)
    assert rx.patient_bolus == ConfigurePatientBolus(10_000, 10 * TICKS_PER_MINUTE, 3 * TICKS_PER_HOUR, 4)
    assert rx.patient_request_ticks == (8 * TICKS_PER_HOUR, 20 * TICKS_PER_HOUR + 30 * TICKS_PER_MINUTE)
    assert rx.concentration_ug_per_ml == 10_000 and rx.fill_nl == 20_000_000


def test_flex_table_and_sub_microgram_doses() -> None:
    rx = load_prescription(rx_with(
        drug={"name": "ziconotide", "concentration_ug_per_ml": 25, "fill_ml": 20},
        therapy={"mode": "flex", "steps": [{"start": "00:00", "dose_ug_per_day": 1.2},
                                           {"start": "12:00", "rate_ml_per_day": 0.048}]}))
    assert rx.therapy == ProgramFlex(((0, 48_000), (12 * TICKS_PER_HOUR, 48_000)))


@pytest.mark.parametrize("change, key", [
    ({"pump": {"reservoir_ml": 30}}, "reservoir_capacity_nl"),
    ({"pump": {"reservoir_ml": 20, "colour": "red"}}, "colour"),
    ({"drug": {"name": "morphine", "fill_ml": 20}}, "concentration"),
    ({"drug": {"name": "morphine", "concentration_mg_per_ml": 10, "concentration_ug_per_ml": 10}}, "exactly one of"),
    ({"therapy": {"mode": "continuous"}}, "basal dose"),
    ({"therapy": {"mode": "sometimes", "dose_mg_per_day": 1}}, "therapy.mode"),
    ({"therapy": {"mode": "continuous", "dose_mg_per_day": "lots"}}, "therapy.dose_mg_per_day"),
    ({"therapy": {"mode": "continuous", "dose_mg_per_day": 0.0000001}}, "therapy.dose_mg_per_day"),
    ({"therapy": {"mode": "flex", "steps": []}}, "therapy.steps"),
    ({"therapy": {"mode": "flex", "steps": [{"start": "25:00", "dose_mg_per_day": 1}]}}, "therapy.steps[0].start"),
    ({"patient_bolus": {"dose_mg": 0.1, "duration_min": 10, "lockout_min": 60, "max_per_day": 4,
                        "requests": "08:00"}}, "patient_bolus.requests"),
    ({"refill": [{"time": "10:00"}]}, "refill[0]"),
    ({"refill": [{"day": 3, "bridge": "yes"}]}, "refill[0].bridge"),
    ({"drug_library": {"morphine": {"max_daily_dose_ng": -1}}}, "drug_library.morphine.max_daily_dose_ng"),
    ({"extras": {}}, "extras"),
])
def test_malformed_prescription_names_the_key(change: dict, key: str) -> None:
    with pytest.raises(PrescriptionError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_prescription(rx_with(**change))


def test_missing_section_is_named() -> None:
    data = copy.deepcopy(BASE)
    del data["therapy"]
    with pytest.raises(PrescriptionError, match=r"\[therapy\]"):
        load_prescription(data)


def test_library_override_is_reported_and_applied() -> None:
    rx = load_prescription(rx_with(drug_library={"morphine": {"max_daily_dose_ng": 2_000_000}}), "clinic.toml")
    assert rx.library_overrides == ("morphine.max_daily_dose_ng: 15000000 -> 2000000 (clinic.toml)",)
    result = run(rx, 2)
    # 2.5 mg/day is now above the clinic's 2 mg/day: the program is refused, nothing is delivered.
    assert [c for _, c, _ in result.refused] == ["ProgramContinuous"]
    assert "morphine.daily_dose_ug" in result.refused[0][2] and "2000" in result.refused[0][2]
    assert result.delivered_nl == 0
    assert result.library_overrides == rx.library_overrides


def test_refill_schedule_runs_at_its_days() -> None:
    rx = load_prescription(rx_with(refill=[{"every_days": 10, "time": "09:30", "fill_ml": 20}]))
    result = run(rx, 35)
    assert [r.tick for r in result.refills[1:]] == [d * TICKS_PER_DAY + 9 * TICKS_PER_HOUR + 30 * TICKS_PER_MINUTE
                                                   for d in (10, 20, 30)]
    # The pump's expected residual is what a perfect measurement gives back: no discrepancy.
    assert all(r.expected_residual_nl == r.measured_residual_nl for r in result.refills)
