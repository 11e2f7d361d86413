"""The fluid path: a FIFO of concentration segments; volume is conserved, old drug leaves first."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_model.fluid_path import FluidPath, Segment
from firmware_model.units import dose_pg

PUSHES = st.lists(st.tuples(st.integers(0, 50_000), st.sampled_from([0, 25, 100, 2_000, 10_000, 20_000])),
                  max_size=40)


def _model_fifo(path_nl: int, pushes: list[tuple[int, int]]) -> list[int]:
    """The oracle: one entry per nanolitre, oldest first; what leaves is what entered earliest."""
    fifo = deque([0] * path_nl)
    out = []
    for volume, conc in pushes:
        fifo.extend([conc] * volume)
        out.append(sum(fifo.popleft() for _ in range(volume)))
    return out


@settings(max_examples=200, deadline=None)
@given(path_nl=st.integers(0, 30_000), pushes=PUSHES)
def test_path_is_a_fifo_that_conserves_volume(path_nl: int, pushes: list[tuple[int, int]]) -> None:
    path = FluidPath.unprimed(path_nl)
    pushed_pg = 0
    got = []
    for volume, conc in pushes:
        before = path.volume_nl
        got.append(path.push(volume, conc))
        pushed_pg += dose_pg(volume, conc)
        assert path.volume_nl == before == path_nl  # what goes in at the pump leaves at the tip
        assert all(s.volume_nl > 0 for s in path.segments)
        # Neighbouring segments always differ (merged at the pump end).
        segs = list(path.segments)
        assert all(a.concentration_ug_per_ml != b.concentration_ug_per_ml
                   for a, b in zip(segs[-2:-1], segs[-1:]))
    assert got == _model_fifo(path_nl, pushes)
    # Mass balance: everything pushed is either out of the tip or still in the path.
    held_pg = sum(dose_pg(s.volume_nl, s.concentration_ug_per_ml) for s in path.segments)
    assert sum(got) + held_pg == pushed_pg


def test_old_concentration_reaches_the_tip_first() -> None:
    path = FluidPath(deque([Segment(370_000, 10_000)]))       # primed with 10 mg/mL
    # The reservoir now holds 20 mg/mL: the first 370 µL out still carry 10 mg/mL.
    assert path.push(250, 20_000) == dose_pg(250, 10_000)
    assert path.old_drug_nl(20_000) == 370_000 - 250
    assert path.push(369_500, 20_000) == dose_pg(369_500, 10_000)
    # The last 250 nL of old drug and then the new one.
    assert path.push(500, 20_000) == dose_pg(250, 10_000) + dose_pg(250, 20_000)
    assert path.old_drug_nl(20_000) == 0
    assert list(path.segments) == [Segment(370_000, 20_000)]


def test_unprimed_path_delivers_no_drug_until_filled() -> None:
    path = FluidPath.unprimed(370_000)
    assert path.old_drug_nl(10_000) == 370_000
    assert path.push(369_750, 10_000) == 0
    assert path.push(250, 10_000) == 0
    assert path.push(250, 10_000) == dose_pg(250, 10_000)


def test_empty_path_passes_through_and_zero_push_is_nothing() -> None:
    assert FluidPath.unprimed(0).segments == deque()
    path = FluidPath.unprimed(0)
    assert path.push(1_000, 50) == 50_000
    assert path.volume_nl == 0
    assert path.push(0, 50) == 0 and path.push(-5, 50) == 0
