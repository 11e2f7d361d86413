"""The requirement catalogue: the pump's safety and performance requirements a suite judges.

    [[requirement]]
    id = "REQ-PB-LOCKOUT"
    title = "Patient bolus lockout"
    text = "A patient bolus requested within the lockout after the last one is denied and logged."
    hazard = "over-delivery"             # one of HAZARDS, or a list of them
    sr = "SR-1"                          # the GPCA-derived requirement of domain.md §4.5, if one fits
    source = "domain.md §4.5 SR-1 (Open PCA R5.2.0(3) [V S85])"

Each requirement cites its domain.md source and the hazard it guards, so that a verdict reads as
"this hazard is (not) controlled on this build".
"""

from __future__ import annotations

from pathlib import Path

from firmware_model.toml_table import Table, read_toml

from .errors import ScenarioError
from .scenario import Scenario
from .verdicts import Requirement

HAZARDS = ("over-delivery", "under-delivery", "wrong drug or concentration", "lost therapy", "unintended bolus")
DEFAULT_CATALOGUE = Path(__file__).resolve().parent.parent / "suites" / "requirements.toml"


def load_requirements(path: Path = DEFAULT_CATALOGUE) -> dict[str, Requirement]:
    """The catalogue by id, in file order; ScenarioError names the entry and the key."""
    doc = Table(read_toml(path, ScenarioError), str(path), {"requirement"}, ScenarioError)
    entries = doc.raw("requirement")
    if not isinstance(entries, list) or not entries:
        raise ScenarioError(f"{path}: expected [[requirement]] entries")
    out: dict[str, Requirement] = {}
    for i, raw in enumerate(entries):
        t = Table(raw, f"{path.name}: requirement[{i}]", {"id", "title", "text", "hazard", "sr", "source"},
                  ScenarioError)
        hazards = [t.raw("hazard")] if isinstance(t.raw("hazard"), str) else t.strings("hazard")
        wrong = [h for h in hazards if h not in HAZARDS]
        if wrong or not hazards:
            raise ScenarioError(f"{t.name}.hazard = {t.raw('hazard')!r}: expected one or more of {list(HAZARDS)}")
        req = Requirement(t.text("id"), t.text("title"), t.text("text"), ", ".join(hazards), t.text("source"),
                          t.text("sr", ""))
        if req.id in out:
            raise ScenarioError(f"{t.name}.id = {req.id!r}: used twice; expected unique ids")
        if "domain.md" not in req.source:
            raise ScenarioError(f"{t.name}.source = {req.source!r}: expected a citation of domain.md (section, source)")
        out[req.id] = req
    return out


def check_coverage(catalogue: dict[str, Requirement], scenarios: list[Scenario]) -> None:
    """Every id a scenario covers is catalogued (a typo would make a requirement look untested)."""
    for s in scenarios:
        unknown = [r for r in s.covers if r not in catalogue]
        if unknown:
            raise ScenarioError(f"{s.source}: scenario.covers names {unknown}, not in the requirement catalogue; "
                                f"expected ids such as {list(catalogue)[:3]}")
