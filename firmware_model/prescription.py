"""A prescription: the pump set-up, the therapy and the clinic's schedule, read from a TOML table.

The clinician's units (mg/mL, mg/day, mL, minutes, "HH:MM") are turned into the pump's (µg/mL,
nL/day, nL, ticks) exactly: decimals that do not fit the pump's integer units are refused, as is
every unknown or missing key, with the key named. Parsing is pure; reading the file is the
caller's job.

    [pump]            reservoir_ml (20 or 40), low_reservoir_ml, empty_reservoir_ml
    [mechanism]       stroke_nl, min/max/safe_rate_nl_per_day, pump_tubing_nl, catheter_nl
    [drug]            name, concentration_mg_per_ml | concentration_ug_per_ml, fill_ml
    [priming]         duration_min, volume_ml (default: pump tubing + catheter)
    [therapy]         mode = "continuous" | "flex" | "minimum" | "stopped";
                      continuous: dose_mg_per_day | dose_ug_per_day | rate_ml_per_day;
                      flex: [[therapy.steps]] start = "HH:MM" and a dose or a rate
    [patient_bolus]   dose_mg | dose_ug, duration_min, lockout_min, max_per_day,
                      requests = ["HH:MM", ...] (pressed every day)
    [[refill]]        every_days | day, time, fill_ml, concentration_*, residual_error_ml,
                      bridge, dose_mg_per_day | dose_ug_per_day (the program after it)
    [[clinician_bolus]] day, time, dose_mg | dose_ug, duration_min, period_h, count
    [drug_library.NAME] limit overrides (see drug_library.DrugLimits)
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from .calibration import Mechanism
from .commands import (ClinicianBolus, Command, ConfigurePatientBolus,
                       PrimingBolus, ProgramContinuous, ProgramFlex, ProgramMinimumRate,
                       ProgramStopped)
from .controller import PumpConfig
from .drug_library import DrugLibrary
from .errors import PrescriptionError
from .toml_table import Table, time_of_day
from .units import NL_PER_ML, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE


@dataclass(frozen=True)
class RefillPlan:
    """A refill the clinic will do: on `day` (or every `every_days`) at `time_ticks` of day."""

    day: int
    every_days: int
    time_ticks: int
    fill_nl: int
    concentration_ug_per_ml: int
    residual_error_nl: int
    bridge: bool
    therapy: Command | None


@dataclass(frozen=True)
class Prescription:
    """Everything a simulated year needs: the pump, the first fill, and what happens when."""

    config: PumpConfig
    drug: str
    concentration_ug_per_ml: int
    fill_nl: int
    priming: PrimingBolus | None
    therapy: Command
    patient_bolus: ConfigurePatientBolus | None
    patient_request_ticks: tuple[int, ...]
    refills: tuple[RefillPlan, ...]
    clinician_boluses: tuple[tuple[int, ClinicianBolus], ...]
    library_overrides: tuple[str, ...]


_SECTIONS = {"pump", "mechanism", "drug", "priming", "therapy", "patient_bolus", "refill",
             "clinician_bolus", "drug_library"}


_CONCENTRATION = {"concentration_mg_per_ml": (1000, "µg/mL"), "concentration_ug_per_ml": (1, "µg/mL")}
_DAILY_DOSE = {"dose_mg_per_day": (1_000_000, "ng/day"), "dose_ug_per_day": (1000, "ng/day")}
_DOSE = {"dose_mg": (1_000_000, "ng"), "dose_ug": (1000, "ng")}


def _rate(table: Table, concentration: int, what: str) -> int:
    """A dose per day at the concentration, or a rate in mL/day, as nL/day."""
    options = dict(_DAILY_DOSE, rate_ml_per_day=(NL_PER_ML, "nL/day"))
    key, value = table.one_of(options, what)
    if key == "rate_ml_per_day":
        return value
    return _volume_nl(value, concentration)


def _volume_nl(dose_ng: int, concentration_ug_per_ml: int) -> int:
    """The volume (nL) that carries a dose at a concentration: ng x 1000 / (µg/mL), rounded."""
    return (2 * dose_ng * 1000 + concentration_ug_per_ml) // (2 * concentration_ug_per_ml)


def _volume_of_dose(table: Table, concentration: int) -> int:
    _, dose_ng = table.one_of(_DOSE, "bolus dose")
    return _volume_nl(dose_ng, concentration)


def _therapy(table: Table, concentration: int) -> Command:
    mode = table.raw("mode")
    if mode == "continuous":
        return ProgramContinuous(_rate(table, concentration, "basal dose"))
    if mode == "flex":
        steps_raw = table.raw("steps")
        if not isinstance(steps_raw, list) or not steps_raw:
            raise PrescriptionError(f"{table.name}.steps: expected a non-empty array of tables [[therapy.steps]]")
        steps = []
        for i, raw in enumerate(steps_raw):
            step = Table(raw, f"{table.name}.steps[{i}]", {"start"} | set(_DAILY_DOSE) | {"rate_ml_per_day"})
            steps.append((step.time_of_day("start"), _rate(step, concentration, "step dose")))
        return ProgramFlex(tuple(steps))
    if mode == "minimum":
        return ProgramMinimumRate()
    if mode == "stopped":
        return ProgramStopped()
    raise PrescriptionError(f"{table.name}.mode = {mode!r}: expected \"continuous\", \"flex\", \"minimum\" or \"stopped\"")


def load_prescription(data: Mapping[str, Any], origin: str = "prescription") -> Prescription:
    """Read a parsed TOML prescription; raises PrescriptionError naming the first bad key."""
    unknown = set(data) - _SECTIONS
    if unknown:
        raise PrescriptionError(f"{origin}: unknown section(s) {sorted(unknown)}; expected some of {sorted(_SECTIONS)}")

    pump = Table(data.get("pump", {}), "pump", {"reservoir_ml", "low_reservoir_ml", "empty_reservoir_ml"})
    mech_table = Table(data.get("mechanism", {}), "mechanism",
                        {"stroke_nl", "min_rate_nl_per_day", "max_rate_nl_per_day", "safe_rate_nl_per_day",
                         "pump_tubing_nl", "catheter_nl"})
    mechanism = Mechanism(**{k: mech_table.integer(k, minimum=1 if k != "catheter_nl" and k != "pump_tubing_nl" else 0)
                             for k in mech_table.data})
    library = DrugLibrary()
    if "drug_library" in data:
        library = library.with_overrides(Table(data["drug_library"], "drug_library", set(data["drug_library"])).data,
                                         origin)
    capacity = pump.scaled("reservoir_ml", NL_PER_ML, "nL", 20 * NL_PER_ML)
    config_kwargs: dict[str, Any] = {"mechanism": mechanism, "reservoir_capacity_nl": capacity, "library": library}
    if pump.has("low_reservoir_ml"):
        config_kwargs["low_reservoir_nl"] = pump.scaled("low_reservoir_ml", NL_PER_ML, "nL")
    if pump.has("empty_reservoir_ml"):
        config_kwargs["empty_reservoir_nl"] = pump.scaled("empty_reservoir_ml", NL_PER_ML, "nL")
    try:
        config = PumpConfig(**config_kwargs)
    except PrescriptionError:
        raise
    except Exception as exc:  # a LimitExceeded from the config's own checks
        raise PrescriptionError(f"[pump]: {exc}") from exc

    drug = Table(data.get("drug", None) if "drug" in data else _missing("drug"), "drug",
                  {"name"} | set(_CONCENTRATION) | {"fill_ml"})
    name = drug.raw("name")
    if not isinstance(name, str):
        raise PrescriptionError(f"drug.name = {name!r}: expected a drug name (string)")
    _, concentration = drug.one_of(_CONCENTRATION, "concentration")
    fill_nl = drug.scaled("fill_ml", NL_PER_ML, "nL", capacity)

    priming = None
    if "priming" in data:
        prime = Table(data["priming"], "priming", {"duration_min", "volume_ml"})
        priming = PrimingBolus(prime.scaled("volume_ml", NL_PER_ML, "nL", mechanism.fluid_path_nl, minimum=1),
                               prime.scaled("duration_min", TICKS_PER_MINUTE, "ticks", minimum=1))

    therapy = _therapy(Table(data.get("therapy") if "therapy" in data else _missing("therapy"), "therapy",
                              {"mode", "steps", "rate_ml_per_day"} | set(_DAILY_DOSE)), concentration)

    patient, requests = None, ()
    if "patient_bolus" in data:
        pb = Table(data["patient_bolus"], "patient_bolus",
                    set(_DOSE) | {"duration_min", "lockout_min", "max_per_day", "requests"})
        patient = ConfigurePatientBolus(_volume_of_dose(pb, concentration),
                                        pb.scaled("duration_min", TICKS_PER_MINUTE, "ticks", minimum=1),
                                        pb.scaled("lockout_min", TICKS_PER_MINUTE, "ticks", minimum=1),
                                        pb.integer("max_per_day", minimum=1))
        raw_requests = pb.raw("requests", [])
        if not isinstance(raw_requests, list):
            raise PrescriptionError(f"patient_bolus.requests = {raw_requests!r}: expected an array of \"HH:MM\"")
        requests = tuple(sorted(time_of_day(r, f"patient_bolus.requests[{i}]") for i, r in enumerate(raw_requests)))

    refills = []
    raw_refills = data.get("refill", [])
    if not isinstance(raw_refills, list):
        raise PrescriptionError("refill: expected an array of tables [[refill]]")
    for i, raw in enumerate(raw_refills):
        rf = Table(raw, f"refill[{i}]", {"day", "every_days", "time", "fill_ml", "residual_error_ml", "bridge"}
                    | set(_CONCENTRATION) | set(_DAILY_DOSE) | {"rate_ml_per_day"})
        if rf.has("day") == rf.has("every_days"):
            raise PrescriptionError(f"[refill[{i}]]: expected exactly one of day or every_days")
        new_conc = rf.one_of(_CONCENTRATION, "concentration", concentration)[1]
        program = None
        if any(rf.has(k) for k in (*_DAILY_DOSE, "rate_ml_per_day")):
            program = ProgramContinuous(_rate(rf, new_conc, "basal dose after the refill"))
        refills.append(RefillPlan(
            day=rf.integer("day", 0), every_days=rf.integer("every_days", 0),
            time_ticks=rf.time_of_day("time", "09:00"),
            fill_nl=rf.scaled("fill_ml", NL_PER_ML, "nL", fill_nl, minimum=0),
            concentration_ug_per_ml=new_conc,
            residual_error_nl=_signed_ml(rf, "residual_error_ml"),
            bridge=rf.flag("bridge"), therapy=program))

    clinician = []
    raw_cb = data.get("clinician_bolus", [])
    if not isinstance(raw_cb, list):
        raise PrescriptionError("clinician_bolus: expected an array of tables [[clinician_bolus]]")
    for i, raw in enumerate(raw_cb):
        cb = Table(raw, f"clinician_bolus[{i}]", {"day", "time", "duration_min", "period_h", "count"} | set(_DOSE))
        at = cb.integer("day") * TICKS_PER_DAY + cb.time_of_day("time", "10:00")
        clinician.append((at, ClinicianBolus(_volume_of_dose(cb, concentration),
                                             cb.scaled("duration_min", TICKS_PER_MINUTE, "ticks", minimum=1),
                                             cb.scaled("period_h", TICKS_PER_HOUR, "ticks", 0),
                                             cb.integer("count", 1))))

    return Prescription(config, name, concentration, fill_nl, priming, therapy, patient, requests,
                        tuple(refills), tuple(sorted(clinician, key=lambda c: c[0])), library.overrides)


def _missing(section: str) -> Any:
    raise PrescriptionError(f"[{section}]: missing; a prescription needs it")


def _signed_ml(table: Table, key: str) -> int:
    value = table.raw(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrescriptionError(f"{table.name}.{key} = {value!r}: expected a number of mL (may be negative)")
    exact = Decimal(str(value)) * NL_PER_ML
    if exact != exact.to_integral_value():
        raise PrescriptionError(f"{table.name}.{key} = {value}: expected at most 6 decimals (whole nL)")
    return int(exact)

