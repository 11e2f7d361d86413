"""The drug library: per-drug hard limits (refused) and soft limits (accepted, flagged).

Figures from domain.md §3.1 (PACC 2012/2017 as commonly cited, [M]) except ziconotide
(Prialt label, [V S47]) and baclofen (label and monograph, [V S26, S49]). A clinic or a rig may
override any figure through configuration; every override is reported, never applied silently
(SR-22, domain.md §4.5).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Mapping

from .errors import LimitExceeded, NotAllowedNow, PrescriptionError


PG_PER_NG = 1_000

@dataclass(frozen=True)
class DrugLimits:
    """One drug's limits: concentration in µg/mL, daily dose in ng/day (ziconotide needs 19.2 µg)."""

    name: str
    max_concentration_ug_per_ml: int
    max_daily_dose_ng: int
    soft_daily_dose_ng: int | None = None
    source: str = ""

@dataclass(frozen=True)
class SoftLimitFlag:
    """An accepted value above a soft limit: the programmer must show it and the log keeps it."""

    drug: str
    field: str
    value: int
    soft_limit: int
    source: str

    def __str__(self) -> str:
        return f"{self.drug}: {self.field} = {self.value} is above the soft limit {self.soft_limit} ({self.source})"

DEFAULT_LIMITS: tuple[DrugLimits, ...] = (
    DrugLimits("morphine", 20_000, 15_000_000, None, "domain.md §3.1, PACC [M]"),
    DrugLimits("hydromorphone", 15_000, 10_000_000, None, "domain.md §3.1, PACC [M]"),
    DrugLimits("fentanyl", 10_000, 1_000_000, None, "domain.md §3.1, PACC, often cited ~1000 µg/day [M]"),
    DrugLimits("sufentanil", 5_000, 500_000, None, "domain.md §3.1, PACC, often cited ~500 µg/day [M]"),
    DrugLimits("bupivacaine", 30_000, 20_000_000, 10_000_000,
               "domain.md §3.1, PACC 15-20 mg/day, some summaries 10 mg/day [M]"),
    DrugLimits("clonidine", 1_000, 600_000, None, "domain.md §3.1, PACC 40-600 µg/day [M]"),
    DrugLimits("ziconotide", 100, 19_200, 10_000,
               "domain.md §3.1, Prialt label max 19.2 µg/day [V S47]; effect usually 8-10 µg/day [V S48]"),
    DrugLimits("baclofen", 2_000, 2_000_000, 800_000,
               "domain.md §3.1, up to 2000 µg/day used, maintenance 300-800 µg/day [V S26]"),
)

_INT_FIELDS = {f.name for f in fields(DrugLimits)} - {"name", "source"}

@dataclass(frozen=True)
class DrugLibrary:
    """The limits the controller checks every prescription against."""

    drugs: tuple[DrugLimits, ...] = DEFAULT_LIMITS
    overrides: tuple[str, ...] = ()

    def limits(self, drug: str) -> DrugLimits:
        """The limits of a drug; a drug not in the library is refused (SR-22)."""
        for entry in self.drugs:
            if entry.name == drug:
                return entry
        names = ", ".join(d.name for d in self.drugs)   # the name quoted verbatim, not repr'd: a firmware can say it
        raise NotAllowedNow(f"drug = '{drug}' is not in the drug library; expected one of: {names} (SR-22, domain.md §4.5)")

    def check_concentration(self, drug: str, concentration_ug_per_ml: int) -> None:
        """Refuse a concentration above the drug's hard limit."""
        lim = self.limits(drug)
        if not 0 < concentration_ug_per_ml <= lim.max_concentration_ug_per_ml:
            raise LimitExceeded(f"{drug}.concentration_ug_per_ml", concentration_ug_per_ml,
                                f"0 < c <= {lim.max_concentration_ug_per_ml} µg/mL", lim.source)

    def check_daily_dose(self, drug: str, daily_dose_pg: int) -> list[SoftLimitFlag]:
        """Refuse a daily dose above the hard limit; flag one above the soft limit."""
        lim = self.limits(drug)
        if daily_dose_pg > lim.max_daily_dose_ng * PG_PER_NG:
            raise LimitExceeded(f"{drug}.daily_dose_ug", _ug(daily_dose_pg),
                                f"<= {_ug(lim.max_daily_dose_ng * PG_PER_NG)} µg/day", lim.source)
        if lim.soft_daily_dose_ng is not None and daily_dose_pg > lim.soft_daily_dose_ng * PG_PER_NG:
            return [SoftLimitFlag(drug, "daily_dose_ng", daily_dose_pg // PG_PER_NG,
                                  lim.soft_daily_dose_ng, lim.source)]
        return []

    def with_overrides(self, table: Mapping[str, Mapping[str, object]], origin: str) -> "DrugLibrary":
        """A library with a clinic's or a rig's figures; each change is recorded in `overrides`."""
        drugs = {d.name: d for d in self.drugs}
        notes = list(self.overrides)
        for name, entry in table.items():
            if not isinstance(entry, Mapping):
                raise PrescriptionError(f"drug_library.{name}: expected a table of limits, got {entry!r}")
            for key, value in entry.items():
                if key not in _INT_FIELDS:
                    raise PrescriptionError(f"drug_library.{name}.{key}: unknown limit; expected one of {sorted(_INT_FIELDS)}")
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise PrescriptionError(f"drug_library.{name}.{key} = {value!r}: expected a positive integer")
            if name in drugs:
                old = drugs[name]
                drugs[name] = replace(old, **entry, source=f"overridden by {origin}")
                for key, value in entry.items():
                    notes.append(f"{name}.{key}: {getattr(old, key)} -> {value} ({origin})")
            else:
                missing = {"max_concentration_ug_per_ml", "max_daily_dose_ng"} - set(entry)
                if missing:
                    raise PrescriptionError(f"drug_library.{name}: a new drug needs {sorted(missing)}")
                drugs[name] = DrugLimits(name=name, source=f"added by {origin}", **entry)  # type: ignore[arg-type]
                notes.append(f"{name}: added ({origin})")
        return DrugLibrary(tuple(drugs.values()), tuple(notes))

def _ug(pg: int) -> str:
    """Picograms as µg for messages, exact to the nanogram."""
    whole, frac = divmod(pg // PG_PER_NG, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")

