"""The plant: what the pump pushes into, what its pressure sensor reads, what holds its rotor.

The outlet is a compliance draining through a resistance into the intrathecal space (domain.md
§5, physics [V S75]): each motor step's stroke enters the compliance, which drains with the time
constant tau = R*C between steps. An occlusion multiplies the resistance (partial, x k) or closes
it (total); when it clears, the volume stored in the compliance is released as a bolus. The
sensor reads intrathecal pressure, the stored volume's pressure, posture and noise, one sample
per step. An MRI magnet holds the rotor: commanded steps are not achieved (domain.md §1.1 [V S3]).

Everything is integer and deterministic: the stored volume in nL, the drain as a Q30 factor
raised by exact integer powers, pressures in Pa, posture and noise from counter-based hashes of
(seed, step) and (seed, quarter hour), so a trace is the same however a run is chunked. All figures here are
[D] design values for ithil's reference pump, which unlike commercial ones has an outlet pressure
sensor (domain.md §5).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .errors import LimitExceeded
from .units import TICK_HZ, TICKS_PER_DAY

Q30 = 1 << 30


@dataclass(frozen=True)
class PlantParams:
    """The patient side of the catheter ([D] values; domain.md §5 names the physics).

    - compliance_nl_per_kpa: outlet compliance; one 250 nL stroke raises 125 Pa (the external
      line of the case study is 10 µL/kPa, §5 [V S75]; an implanted catheter is stiffer).
    - open_tau_ticks: R*C of the open catheter, 2 s.
    - icp_pa: CSF pressure lying down, ~10 mmHg; posture_offsets_pa: lying, sitting, standing.
    - posture_changes_per_day: mean number of posture changes (a Poisson process).
    - noise_pa: standard deviation of the sensor noise.
    """

    compliance_nl_per_kpa: int = 2_000
    open_tau_ticks: int = 2 * TICK_HZ
    icp_pa: int = 1_300
    posture_offsets_pa: tuple[int, ...] = (0, 1_500, 3_000)
    posture_changes_per_day: int = 8
    noise_pa: int = 60

    def __post_init__(self) -> None:
        for name in ("compliance_nl_per_kpa", "open_tau_ticks"):
            if getattr(self, name) <= 0:
                raise LimitExceeded(f"plant.{name}", getattr(self, name), "> 0")
        if self.noise_pa < 0 or self.posture_changes_per_day < 0 or not self.posture_offsets_pa:
            raise LimitExceeded("plant.noise_pa/posture", (self.noise_pa, self.posture_changes_per_day),
                                "noise >= 0, changes >= 0, at least one posture")

    def pressure_of_volume_pa(self, stored_nl: int | np.ndarray) -> int | np.ndarray:
        """The pressure a stored volume holds in the compliance."""
        return stored_nl * 1000 // self.compliance_nl_per_kpa


@dataclass(frozen=True)
class Occlusion:
    """A catheter occlusion from `start_tick` until `end_tick` (None: never clears).

    factor: the resistance multiplier of a partial occlusion (>= 2); 0 means total."""

    start_tick: int
    end_tick: int | None = None
    factor: int = 0

    def __post_init__(self) -> None:
        if self.factor == 1 or self.factor < 0:
            raise LimitExceeded("occlusion.factor", self.factor, "0 (total) or >= 2 (partial, resistance x factor)")
        if self.end_tick is not None and self.end_tick <= self.start_tick:
            raise LimitExceeded("occlusion.end_tick", self.end_tick, f"> start_tick ({self.start_tick})")


@dataclass(frozen=True)
class MriExposure:
    """A scan: the magnet holds the rotor from `start_tick` to `end_tick` (domain.md §1.1 [V S3])."""

    start_tick: int
    end_tick: int

    def __post_init__(self) -> None:
        if self.end_tick <= self.start_tick:
            raise LimitExceeded("mri.end_tick", self.end_tick, f"> start_tick ({self.start_tick})")


@dataclass(frozen=True)
class Jam:
    """Something holds the rotor from `start_tick` to `end_tick` (None: for good) with no magnetic
    field: shaft wear, gear corrosion, a foreign particle (domain.md §1.1 [V S17, S22])."""

    start_tick: int
    end_tick: int | None = None

    def __post_init__(self) -> None:
        if self.end_tick is not None and self.end_tick <= self.start_tick:
            raise LimitExceeded("jam.end_tick", self.end_tick, f"> start_tick ({self.start_tick})")


@functools.lru_cache(maxsize=4096)
def decay_q30(dt_ticks: int, tau_ticks: int) -> int:
    """(1 - 1/tau)^dt in Q30, by exact integer squaring with rounding: the share of the stored
    volume still stored after dt ticks (tau 0 means no drain: a total occlusion)."""
    if tau_ticks == 0 or dt_ticks == 0:
        return Q30
    if dt_ticks > 64 * tau_ticks:
        return 0
    base = Q30 - (Q30 + tau_ticks // 2) // tau_ticks
    result, n = Q30, dt_ticks
    while n:
        if n & 1:
            result = (result * base + Q30 // 2) >> 30
        base = (base * base + Q30 // 2) >> 30
        n >>= 1
    return result


def outlet_tau(params: PlantParams, occlusion: Occlusion | None) -> int:
    """The outlet's time constant under an occlusion (0: total, no drain)."""
    if occlusion is None:
        return params.open_tau_ticks
    return 0 if occlusion.factor == 0 else params.open_tau_ticks * occlusion.factor


def stored_volume_after_steps(stored_nl: int, last_tick: int, step_ticks: np.ndarray, stroke_nl: int,
                              tau_ticks: int) -> tuple[np.ndarray, int]:
    """The stored volume just after each step (drain since the previous one, then the stroke),
    and the outflow into the patient over the steps. One constant outlet across the span."""
    n = len(step_ticks)
    if tau_ticks == 0:  # total occlusion: nothing drains, the strokes pile up
        return stored_nl + stroke_nl * np.arange(1, n + 1, dtype=np.int64), 0
    ticks = step_ticks.tolist()
    dts = [b - a for a, b in zip([last_tick] + ticks[:-1], ticks)]
    factors = {dt: decay_q30(dt, tau_ticks) for dt in set(dts)}
    out: list[int] = []
    append, stored, half = out.append, stored_nl, Q30 // 2
    for dt in dts:
        stored = ((stored * factors[dt] + half) >> 30) + stroke_nl
        append(stored)
    final = out[-1] if out else stored_nl
    return np.array(out, dtype=np.int64), stored_nl + n * stroke_nl - final


def drain(stored_nl: int, dt_ticks: int, tau_ticks: int) -> int:
    """The stored volume after draining for dt ticks without a step."""
    return (stored_nl * decay_q30(dt_ticks, tau_ticks) + Q30 // 2) >> 30


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_IRWIN_HALL_4_SIGMA = 37_837  # standard deviation of a sum of four uniform 16-bit numbers
SLOT_TICKS = 15 * 60 * TICK_HZ  # posture may change at each quarter hour
_SLOTS_PER_DAY = TICKS_PER_DAY // SLOT_TICKS


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x *= _MIX1
        x ^= x >> np.uint64(27)
        x *= _MIX2
        x ^= x >> np.uint64(31)
    return x


def _hash(seeds: np.ndarray, counters: np.ndarray, stream: int) -> np.ndarray:
    """Counter-based random bits for (seed, stream, counter), shape (counters, seeds): each seed
    and stream gets a scrambled 64-bit key and walks the SplitMix64 sequence from there, so a
    value depends only on its seed and counter, however a run is chunked and whichever seeds
    run beside it."""
    with np.errstate(over="ignore"):
        keys = _splitmix(seeds.astype(np.uint64) * _GOLDEN + np.uint64(stream) * _MIX2 + _MIX1)
        return _splitmix(keys[None, :] + counters.astype(np.uint64)[:, None] * _GOLDEN)


def noise_pa(params: PlantParams, seeds: np.ndarray, first_step: int, count: int) -> np.ndarray:
    """Sensor noise of steps [first_step, first_step + count) for each seed, shape (count, seeds):
    near-Gaussian (a sum of four uniforms) with standard deviation noise_pa, integer."""
    if count == 0 or params.noise_pa == 0:
        return np.zeros((count, len(seeds)), dtype=np.int32)
    bits = _hash(seeds, np.arange(first_step, first_step + count, dtype=np.uint64), 1)
    mask = np.uint64(0xFFFF)
    total = (bits & mask) + ((bits >> np.uint64(16)) & mask) + ((bits >> np.uint64(32)) & mask) + (bits >> np.uint64(48))
    centred = total.astype(np.int64) - 2 * 0xFFFF
    return ((centred * params.noise_pa + _IRWIN_HALL_4_SIGMA // 2) // _IRWIN_HALL_4_SIGMA).astype(np.int32)


def posture_pa(params: PlantParams, seeds: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Posture offset at each tick for each seed, shape (ticks, seeds): the patient may change
    posture at each quarter hour (posture_changes_per_day on average, a fresh posture at
    midnight), so the offset is piecewise constant and depends only on seed and time."""
    out_shape = (len(ticks), len(seeds))
    if len(ticks) == 0:
        return np.zeros(out_shape, dtype=np.int64)
    offsets = np.asarray(params.posture_offsets_pa, dtype=np.int64)
    slots = ticks // SLOT_TICKS
    first_slot = int(slots[0]) - int(slots[0]) % _SLOTS_PER_DAY  # back to midnight: a change is certain there
    slot_ids = np.arange(first_slot, int(slots[-1]) + 1, dtype=np.int64)
    bits = _hash(seeds, slot_ids.astype(np.uint64), 2)
    threshold = np.uint64(min(_SLOTS_PER_DAY, params.posture_changes_per_day) * (1 << 16) // _SLOTS_PER_DAY)
    changes = ((bits & np.uint64(0xFFFF)) < threshold) | (slot_ids % _SLOTS_PER_DAY == 0)[:, None]
    level = ((bits >> np.uint64(16)) % np.uint64(len(offsets))).astype(np.int64)
    rows = np.where(changes, np.arange(len(slot_ids))[:, None], 0)
    np.maximum.accumulate(rows, axis=0, out=rows)
    held = np.take_along_axis(level, rows, axis=0)
    return offsets[held[slots - first_slot]]


# ---- the same, one seed and a few strokes at a time, in plain integers -------------------------
# A lockstep host advancing minute by minute makes spans of one or two strokes, where numpy's
# set-up costs far more than the work; the tests prove these equal the vectorised forms.

SHORT_SPAN = 64
_M64 = (1 << 64) - 1


def _splitmix_int(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _hash_int(seed: int, counter: int, stream: int) -> int:
    key = _splitmix_int((seed * 0x9E3779B97F4A7C15 + stream * 0x94D049BB133111EB + 0xBF58476D1CE4E5B9) & _M64)
    return _splitmix_int((key + counter * 0x9E3779B97F4A7C15) & _M64)


def noise_one_pa(params: PlantParams, seed: int, step: int) -> int:
    """noise_pa of one step for one seed."""
    if params.noise_pa == 0:
        return 0
    bits = _hash_int(seed, step, 1)
    total = (bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48)
    return ((total - 2 * 0xFFFF) * params.noise_pa + _IRWIN_HALL_4_SIGMA // 2) // _IRWIN_HALL_4_SIGMA


def posture_one_pa(params: PlantParams, seed: int, tick: int) -> int:
    """posture_pa at one tick for one seed."""
    return _posture_of_slot(params.posture_offsets_pa, params.posture_changes_per_day, seed, tick // SLOT_TICKS)


@functools.lru_cache(maxsize=4096)
def _posture_of_slot(offsets: tuple[int, ...], changes_per_day: int, seed: int, slot: int) -> int:
    """The level of the latest change at or before `slot` (midnight always changes); cached, as
    a pump's strokes walk through the same quarter hours again and again."""
    threshold = min(_SLOTS_PER_DAY, changes_per_day) * (1 << 16) // _SLOTS_PER_DAY
    while True:
        bits = _hash_int(seed, slot, 2)
        if (bits & 0xFFFF) < threshold or slot % _SLOTS_PER_DAY == 0:
            return offsets[(bits >> 16) % len(offsets)]
        slot -= 1


def pressure_samples_pa(params: PlantParams, seeds: np.ndarray, first_step: int, step_ticks: np.ndarray,
                        stored_nl: np.ndarray) -> np.ndarray:
    """What the sensor reads just after each step, for each seed: shape (steps, seeds), int32."""
    if len(seeds) == 1 and len(step_ticks) <= SHORT_SPAN:
        seed = int(seeds[0]) & _M64
        return np.array([params.icp_pa + params.pressure_of_volume_pa(int(v)) + posture_one_pa(params, seed, int(t))
                         + noise_one_pa(params, seed, first_step + i)
                         for i, (t, v) in enumerate(zip(step_ticks.tolist(), stored_nl.tolist()))],
                        dtype=np.int32).reshape(-1, 1)
    samples = noise_pa(params, seeds, first_step, len(step_ticks))
    samples += (params.icp_pa + params.pressure_of_volume_pa(stored_nl)).astype(np.int32)[:, None]
    samples += posture_pa(params, seeds, step_ticks).astype(np.int32)
    return samples


@dataclass(slots=True)
class OutletState:
    """The physical state of one pump's outlet: what it holds, since when, and what it released."""

    stored_nl: int = 0
    last_tick: int = 0
    steps: int = 0            # strokes received so far (the sensor noise is keyed by it)
    outflow_nl: int = 0       # what reached the patient
    releases: list[tuple[int, int]] = field(default_factory=list)  # (tick, nL) when an occlusion cleared


@dataclass(frozen=True)
class OutletSpan:
    """What a run of strokes would do, computed without changing anything (see Plant.commit)."""

    step_ticks: np.ndarray
    stored_nl: np.ndarray
    samples_pa: np.ndarray
    after: OutletState


class Plant:
    """One patient and the world around one pump: the outlet, the sensor, and the scheduled
    occlusions and MRI scans. The controller asks it what its strokes did; it never decides."""

    def __init__(self, params: PlantParams | None = None, seed: int = 0, stroke_nl: int = 250,
                 occlusions: tuple[Occlusion, ...] = (), mri: tuple[MriExposure, ...] = (),
                 jams: tuple[Jam, ...] = ()) -> None:
        self.params = params or PlantParams()
        self.seed = seed
        self.stroke_nl = stroke_nl
        self.occlusions = tuple(sorted(occlusions, key=lambda o: o.start_tick))
        self.mri = tuple(sorted(mri, key=lambda m: m.start_tick))
        self.jams = tuple(sorted(jams, key=lambda j: j.start_tick))
        self.state = OutletState()
        self.present_tick = 0  # the tick the controller last ran the plant to (faults go after it)
        self._seeds = np.array([seed], dtype=np.int64)

    def next_change_tick(self, after: int) -> int | None:
        """The next tick after `after` at which an occlusion or a scan starts or ends."""
        ticks = [t for o in self.occlusions for t in (o.start_tick, o.end_tick) if t is not None and t > after]
        ticks += [t for m in (*self.mri, *self.jams) for t in (m.start_tick, m.end_tick) if t is not None and t > after]
        return min(ticks, default=None)

    def _occlusion_at(self, tick: int) -> Occlusion | None:
        """The occlusion acting on the ticks just after `tick` (spans split at every change)."""
        for o in self.occlusions:
            if o.start_tick <= tick and (o.end_tick is None or tick < o.end_tick):
                return o
        return None

    def rotor_held(self, tick: int) -> bool:
        """Whether a magnet or a jam holds the rotor over the ticks just after `tick`."""
        return any(m.start_tick <= tick and (m.end_tick is None or tick < m.end_tick) for m in (*self.mri, *self.jams))

    def emi(self, tick: int) -> bool:
        """Whether a scanner's field reaches the pump's telemetry over the ticks just after `tick`."""
        return any(m.start_tick <= tick < m.end_tick for m in self.mri)

    def tau_ticks(self, tick: int) -> int:
        return outlet_tau(self.params, self._occlusion_at(tick))

    def strokes(self, step_ticks: np.ndarray) -> OutletSpan:
        """What strokes at these ticks (all after the last update, one outlet state) would do."""
        st = self.state
        if len(step_ticks) == 0:
            return OutletSpan(step_ticks, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), st)
        stored, outflow = stored_volume_after_steps(st.stored_nl, st.last_tick, step_ticks, self.stroke_nl,
                                                    self.tau_ticks(st.last_tick))
        samples = pressure_samples_pa(self.params, self._seeds, st.steps, step_ticks, stored)[:, 0]
        after = OutletState(int(stored[-1]), int(step_ticks[-1]), st.steps + len(step_ticks),
                            st.outflow_nl + outflow, st.releases)
        return OutletSpan(step_ticks, stored, samples, after)

    def commit(self, span: OutletSpan, count: int | None = None) -> None:
        """Keep what the first `count` strokes of a span did (all of them by default)."""
        if count is None or count == len(span.step_ticks):
            self.state = span.after
        elif count > 0:
            self.state = self.strokes(span.step_ticks[:count]).after

    def settle(self, tick: int) -> int:
        """The controller has run to `tick`. The outlet drains lazily (from its last stroke to the
        next, in one step, so where a caller stops never changes a sample); only where the outlet
        itself changes, at an occlusion's start or end, is the drain taken to that tick. When an
        occlusion clears at `tick`, what the outlet held is released as a bolus and reported
        (returned, nL; 0 otherwise)."""
        st = self.state
        self.present_tick = max(self.present_tick, tick)
        boundary = any(tick in (o.start_tick, o.end_tick) for o in self.occlusions)
        if boundary and tick > st.last_tick:
            kept = drain(st.stored_nl, tick - st.last_tick, self.tau_ticks(st.last_tick))
            st.outflow_nl += st.stored_nl - kept
            st.stored_nl, st.last_tick = kept, tick
        if any(o.end_tick == tick for o in self.occlusions) and not (st.releases and st.releases[-1][0] == tick):
            st.releases.append((tick, st.stored_nl))
            return st.stored_nl
        return 0

    def outflow_nl_at(self, tick: int) -> int:
        """What has left the catheter tip by `tick` (no stroke after the last one committed): the
        outflow so far plus the lazy drain since then, taken piecewise at every occlusion start or
        end on the way, exactly as `settle` there would. Pure: a balance reads it, nothing changes."""
        st = self.state
        if tick < st.last_tick:
            raise LimitExceeded("plant.outflow_nl_at.tick", tick,
                                f">= the outlet's last update tick {st.last_tick} (the outflow before it is not kept)")
        boundaries = sorted({t for o in self.occlusions for t in (o.start_tick, o.end_tick)
                             if t is not None and st.last_tick < t < tick})
        stored, since = st.stored_nl, st.last_tick
        for until in (*boundaries, tick):
            stored, since = drain(stored, until - since, self.tau_ticks(since)), until
        return st.outflow_nl + st.stored_nl - stored

    # ---- faults injected at run time (an emulated rig's test mode) -------------------------------
    # The same faults as the constructor's schedule, added while the pump runs. Each must lie in
    # the plant's future (after `present_tick`, the tick the controller last ran it to), so
    # that a pump whose fault was injected before its start runs exactly as one built with it.

    def _check_future(self, field_name: str, tick: int) -> None:
        now = self.present_tick
        if tick <= now:
            raise LimitExceeded(field_name, tick, f"> the plant's present tick {now} (a fault cannot change the past)")

    def add_occlusion(self, occlusion: Occlusion) -> None:
        """Schedule an occlusion that starts after the present tick; occlusions may not overlap."""
        self._check_future("occlusion.start_tick", occlusion.start_tick)
        self._check_no_overlap(occlusion, ignore=None)
        self.occlusions = tuple(sorted(self.occlusions + (occlusion,), key=lambda o: o.start_tick))

    def set_occlusion_end(self, start_tick: int, end_tick: int | None) -> Occlusion:
        """Clear (or re-time the clearing of) the occlusion that starts at `start_tick`: it ends at
        `end_tick` (None: never), which must be after the present tick; returns the new occlusion.
        What the outlet holds then is released as a bolus, as for a scheduled end."""
        old = next((o for o in self.occlusions if o.start_tick == start_tick), None)
        if old is None:
            starts = [o.start_tick for o in self.occlusions]
            raise LimitExceeded("occlusion.start_tick", start_tick,
                                f"the start of a scheduled occlusion: {starts or 'none'}")
        if old.end_tick is not None and old.end_tick <= self.present_tick:
            raise LimitExceeded("occlusion.end_tick", end_tick,
                                f"an occlusion still acting; the one from {start_tick} cleared at {old.end_tick}")
        if end_tick is not None:
            self._check_future("occlusion.end_tick", end_tick)
        new = Occlusion(start_tick, end_tick, old.factor)
        self._check_no_overlap(new, ignore=old)
        self.occlusions = tuple(new if o is old else o for o in self.occlusions)
        return new

    def _check_no_overlap(self, new: Occlusion, ignore: Occlusion | None) -> None:
        end = new.end_tick
        for o in self.occlusions:
            if o is ignore:
                continue
            if (end is None or o.start_tick < end) and (o.end_tick is None or new.start_tick < o.end_tick):
                raise LimitExceeded("occlusion.start_tick", new.start_tick,
                                    f"an occlusion outside the one already scheduled from {o.start_tick} to "
                                    f"{'never' if o.end_tick is None else o.end_tick} (occlusions do not overlap)")

    def add_jam(self, jam: Jam) -> None:
        """Schedule a jam of the rotor that starts after the present tick."""
        self._check_future("jam.start_tick", jam.start_tick)
        self.jams = tuple(sorted(self.jams + (jam,), key=lambda j: j.start_tick))

    def add_mri(self, exposure: MriExposure) -> None:
        """Schedule an MRI scan that starts after the present tick (scans may overlap)."""
        self._check_future("mri.start_tick", exposure.start_tick)
        self.mri = tuple(sorted(self.mri + (exposure,), key=lambda m: m.start_tick))
