"""The drug library: hard limits refuse, soft limits flag, overrides are recorded, never silent."""

from __future__ import annotations

import pytest

from firmware_model.drug_library import DEFAULT_LIMITS, DrugLibrary, DrugLimits, SoftLimitFlag
from firmware_model.errors import LimitExceeded, NotAllowedNow, PrescriptionError

PG_PER_UG = 1_000_000


def test_default_figures_follow_domain_md() -> None:
    lib = DrugLibrary()
    # domain.md §3.1: ziconotide max 19.2 µg/day [V S47]; baclofen 2000 µg/mL [V S26, S49].
    assert lib.limits("ziconotide").max_daily_dose_ng == 19_200
    assert lib.limits("ziconotide").max_concentration_ug_per_ml == 100
    assert lib.limits("baclofen").max_concentration_ug_per_ml == 2_000
    assert lib.limits("morphine").max_daily_dose_ng == 15_000_000
    assert lib.limits("morphine").max_concentration_ug_per_ml == 20_000
    assert {d.name for d in lib.drugs} == {"morphine", "hydromorphone", "fentanyl", "sufentanil",
                                          "bupivacaine", "clonidine", "ziconotide", "baclofen"}
    assert all(d.source for d in DEFAULT_LIMITS)
    assert lib.overrides == ()


def test_unknown_drug_lists_the_valid_ones() -> None:
    with pytest.raises(NotAllowedNow) as err:
        DrugLibrary().limits("aspirin")
    text = str(err.value)
    assert "'aspirin'" in text
    for d in DEFAULT_LIMITS:
        assert d.name in text


def test_concentration_hard_limit() -> None:
    lib = DrugLibrary()
    lib.check_concentration("morphine", 20_000)
    lib.check_concentration("morphine", 1)
    with pytest.raises(LimitExceeded) as err:
        lib.check_concentration("morphine", 20_001)
    assert err.value.field == "morphine.concentration_ug_per_ml" and err.value.value == 20_001
    assert "20000" in str(err.value) and "20001" in str(err.value)
    for bad in (0, -5):
        with pytest.raises(LimitExceeded):
            lib.check_concentration("morphine", bad)
    with pytest.raises(NotAllowedNow):
        lib.check_concentration("nothing", 1)


def test_daily_dose_hard_limit_is_inclusive() -> None:
    lib = DrugLibrary()
    # Exactly 19.2 µg/day (in pg) is allowed, with the soft-limit flag; a picogram more is refused.
    assert [f.value for f in lib.check_daily_dose("ziconotide", 19_200_000)] == [19_200]
    assert lib.check_daily_dose("morphine", 15_000 * PG_PER_UG) == []
    with pytest.raises(LimitExceeded):
        lib.check_daily_dose("morphine", 15_000 * PG_PER_UG + 1)
    with pytest.raises(LimitExceeded) as err:
        lib.check_daily_dose("ziconotide", 19_200_001)
    assert err.value.field == "ziconotide.daily_dose_ug"
    assert "19.2 µg/day" in str(err.value) and "19.2" in str(err.value.value)
    assert "S47" in str(err.value)


def test_soft_limit_flags_and_accepts() -> None:
    lib = DrugLibrary()
    assert lib.check_daily_dose("ziconotide", 10_000_000) == []       # at the soft limit
    flags = lib.check_daily_dose("ziconotide", 12_000_000)
    assert flags == [SoftLimitFlag("ziconotide", "daily_dose_ng", 12_000, 10_000, lib.limits("ziconotide").source)]
    assert "12000" in str(flags[0]) and "10000" in str(flags[0])
    assert lib.check_daily_dose("morphine", 15_000 * PG_PER_UG) == []  # no soft limit for morphine
    assert lib.check_daily_dose("baclofen", 900 * PG_PER_UG)[0].soft_limit == 800_000


def test_overrides_are_recorded_never_silent() -> None:
    base = DrugLibrary()
    lib = base.with_overrides({"morphine": {"max_daily_dose_ng": 20_000_000},
                               "ketamine": {"max_concentration_ug_per_ml": 50_000, "max_daily_dose_ng": 1_000_000}},
                              "rig.toml")
    assert lib.limits("morphine").max_daily_dose_ng == 20_000_000
    assert lib.limits("morphine").source == "overridden by rig.toml"
    assert lib.limits("morphine").max_concentration_ug_per_ml == 20_000  # untouched figures stay
    assert lib.limits("ketamine") == DrugLimits("ketamine", 50_000, 1_000_000, None, "added by rig.toml")
    assert lib.overrides == ("morphine.max_daily_dose_ng: 15000000 -> 20000000 (rig.toml)",
                             "ketamine: added (rig.toml)")
    # The original is unchanged and an override of an override keeps the whole history.
    assert base.limits("morphine").max_daily_dose_ng == 15_000_000
    again = lib.with_overrides({"morphine": {"soft_daily_dose_ng": 5_000_000}}, "clinic")
    assert again.overrides[:2] == lib.overrides
    assert again.overrides[2] == "morphine.soft_daily_dose_ng: None -> 5000000 (clinic)"
    assert again.check_daily_dose("morphine", 6 * PG_PER_UG * 1000)[0].soft_limit == 5_000_000
    lib.check_daily_dose("morphine", 20_000 * PG_PER_UG)
    with pytest.raises(LimitExceeded):
        base.check_daily_dose("morphine", 20_000 * PG_PER_UG)


@pytest.mark.parametrize("table, match", [
    ({"morphine": 5}, "drug_library.morphine: expected a table"),
    ({"morphine": {"max_rate": 5}}, "drug_library.morphine.max_rate: unknown limit"),
    ({"morphine": {"max_daily_dose_ng": 0}}, "drug_library.morphine.max_daily_dose_ng = 0"),
    ({"morphine": {"max_daily_dose_ng": -1}}, "positive integer"),
    ({"morphine": {"max_daily_dose_ng": 1.5}}, "positive integer"),
    ({"morphine": {"max_daily_dose_ng": True}}, "positive integer"),
    ({"ketamine": {"max_daily_dose_ng": 5}}, "a new drug needs \\['max_concentration_ug_per_ml'\\]"),
])
def test_bad_overrides_name_the_key(table, match) -> None:
    with pytest.raises(PrescriptionError, match=match):
        DrugLibrary().with_overrides(table, "rig.toml")
