"""A whole 7-year pump life driven through `Controller`, against the per-tick loop extrapolated.

The life (2557 days, the battery's maximum service life):
- day 0: first fill (Refill, morphine 10,000 µg/mL, 20 mL), PrimingBolus of the fluid path,
  continuous basal 0.15 mL/day (1.5 mg/day), patient bolus 25 µL (250 µg) over 10 min, at
  most 4 per rolling 24 h, lockout 3 h;
- 4 patient bolus requests a day at fixed times of day (07:00, 12:00, 17:00, 22:00);
- from day 730 on, a flex program: a daily table of 4 rate steps averaging 0.15 mL/day;
- a Refill every 60 days at 10:00 (measured residual = the pump's reservoir, 20 mL injected,
  same drug and concentration); at that visit the clinician acknowledges the ERI alarm if it
  sounds (a replacement is being planned);
- the pump reaches ERI and then EOS on its battery; after EOS no command is sent (the pump would
  refuse them), time just advances to day 2557.
The worst-case day is 0.25 mL = 2.5 mg of morphine, far under its 15 mg/day hard limit, so no
command is refused for its dose.

Baseline: the per-tick accumulator loop (`PerTickAccumulator.run`) measured in the same run at the
life's average delivered rate, ns per tick times the life's ticks. It is a lower bound of a
per-tick emulation (one accumulator, no controller logic), so the speedup is conservative.

Prints, last, one figure per line: sanity counts, then the life's wall time, the extrapolated
per-tick time and the speedup. Goal: under 1 s of wall time for the 7-year life.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import best_of, report  # noqa: E402
from firmware_model import (AcknowledgeAlarm, AlarmCode, BolusDenied, BolusGranted,  # noqa: E402
                            ConfigurePatientBolus, Controller, PatientBolusRequest, PrimingBolus,
                            ProgramContinuous, ProgramFlex, Refill)
from firmware_model.commands import Accepted  # noqa: E402
from firmware_model.event_log import LogCode  # noqa: E402
from firmware_model.step_scheduler import PerTickAccumulator, increment_for_rate  # noqa: E402
from firmware_model.units import (NL_PER_ML, TICKS_PER_DAY, TICKS_PER_HOUR,  # noqa: E402
                                  TICKS_PER_MINUTE)

LIFE_DAYS = 2557                      # 7 years, the battery's maximum service life
LIFE_TICKS = LIFE_DAYS * TICKS_PER_DAY
DRUG, CONCENTRATION = "morphine", 10_000   # µg/mL
FILL_NL = 20 * NL_PER_ML
REFILL_EVERY_DAYS = 60
REFILL_AT = 10 * TICKS_PER_HOUR
FLEX_FROM_DAY = 730
CONTINUOUS_NL_PER_DAY = 150_000       # 1.5 mg/day
FLEX_TABLE = (                        # start tick of day, nL/day; averages 150,000 nL/day
    (0, 100_000),
    (6 * TICKS_PER_HOUR, 200_000),
    (12 * TICKS_PER_HOUR, 180_000),
    (18 * TICKS_PER_HOUR, 120_000),
)
PATIENT_BOLUS = ConfigurePatientBolus(volume_nl=25_000, duration_ticks=10 * TICKS_PER_MINUTE,
                                      lockout_ticks=3 * TICKS_PER_HOUR, max_per_day=4)
REQUEST_TIMES = (7 * TICKS_PER_HOUR, 12 * TICKS_PER_HOUR, 17 * TICKS_PER_HOUR, 22 * TICKS_PER_HOUR)
PER_TICK_SPAN = 2_000_000             # ticks of the per-tick baseline measurement
PER_TICK_PHASE = 0x9E3779B9           # its start phase (any; the cost does not depend on it)


@dataclass
class LifeResult:
    steps: int = 0
    delivered_nl: int = 0
    events: int = 0
    alarm_tones: int = 0
    commands: int = 0
    granted: int = 0
    denied: int = 0
    refills: int = 0
    eri_day: float = 0.0
    eos_day: float = 0.0
    log_records: int = 0


def _schedule() -> list[tuple[int, int, object]]:
    """Every command of the life after day 0, as (tick, order, command), in time order."""
    out: list[tuple[int, int, object]] = []
    for day in range(LIFE_DAYS):
        base = day * TICKS_PER_DAY
        if day and day % REFILL_EVERY_DAYS == 0:
            out.append((base + REFILL_AT, 0, "refill"))
        if day == FLEX_FROM_DAY:
            out.append((base + 9 * TICKS_PER_HOUR, 1, ProgramFlex(FLEX_TABLE)))
        for at in REQUEST_TIMES:
            out.append((base + at, 2, PatientBolusRequest()))
    out.sort(key=lambda item: (item[0], item[1]))
    return out


SCHEDULE = _schedule()


def run_life() -> LifeResult:
    """One pump life, from implant to day 2557."""
    ctl = Controller()
    res = LifeResult()

    def run_to(tick: int) -> None:
        events = ctl.advance(tick)
        res.events += len(events)
        res.alarm_tones += sum(1 for e in events if e.code == LogCode.ALARM_TONE)

    def send(cmd: object, tick: int) -> list[object]:
        """Collect the events up to `tick`, then send the command (its own run to `tick` finds nothing new)."""
        run_to(tick)
        res.commands += 1
        return ctl.handle(cmd, tick)

    # Implant day: first fill, priming, therapy, patient bolus settings.
    send(Refill(measured_residual_nl=0, injected_nl=FILL_NL, drug=DRUG,
                concentration_ug_per_ml=CONCENTRATION), 0)
    res.refills += 1
    send(PrimingBolus(volume_nl=ctl.mech.fluid_path_nl, duration_ticks=TICKS_PER_HOUR), TICKS_PER_MINUTE)
    send(ProgramContinuous(CONTINUOUS_NL_PER_DAY), 2 * TICKS_PER_HOUR)
    send(PATIENT_BOLUS, 2 * TICKS_PER_HOUR + TICKS_PER_MINUTE)

    st = ctl.state
    for tick, _, cmd in SCHEDULE:
        run_to(tick)
        if st.eos:  # EOS refuses every command but status and acknowledgement: stop sending
            break
        res.commands += 1
        if cmd == "refill":
            if st.alarms.is_active(AlarmCode.ELECTIVE_REPLACEMENT) and st.alarms.sounding() is not None:
                ctl.handle(AcknowledgeAlarm(AlarmCode.ELECTIVE_REPLACEMENT), tick)
                res.commands += 1
            cmd = Refill(measured_residual_nl=st.reservoir_nl, injected_nl=FILL_NL, drug=DRUG,
                         concentration_ug_per_ml=CONCENTRATION)
            answer = ctl.handle(cmd, tick)
            assert isinstance(answer[0], Accepted), answer
            res.refills += 1
            continue
        answer = ctl.handle(cmd, tick)
        if isinstance(cmd, PatientBolusRequest):
            if isinstance(answer[0], BolusGranted):
                res.granted += 1
            else:
                assert isinstance(answer[0], BolusDenied), answer
                res.denied += 1

    run_to(LIFE_TICKS)
    assert st.tick == LIFE_TICKS
    res.steps = st.steps_total
    res.delivered_nl = st.delivered_nl
    assert res.granted == st.boluses_granted and res.denied == st.boluses_denied
    assert st.eri_tick is not None and st.eos, "the life must reach ERI and EOS"
    res.eri_day = st.eri_tick / TICKS_PER_DAY
    eos = [a for a in st.alarms.active if a.code == AlarmCode.END_OF_SERVICE]
    res.eos_day = eos[0].raised_tick / TICKS_PER_DAY
    res.log_records = ctl.log.next_seq
    return res


def main() -> None:
    t_life, life = best_of(run_life, repeat=3)
    # Deterministic model: every run must give the very same life.
    again = run_life()
    assert again == life, (again, life)
    assert life.steps * 250 == life.delivered_nl

    # Baseline at the life's average delivered rate (over the whole 7 years).
    avg_rate = life.delivered_nl * TICKS_PER_DAY // LIFE_TICKS
    increment = increment_for_rate(avg_rate, 250)
    t_span, made = best_of(lambda: PerTickAccumulator(increment, PER_TICK_PHASE, 0).run(PER_TICK_SPAN), repeat=3)
    ns_per_tick = t_span / PER_TICK_SPAN * 1e9
    extrapolated = t_span / PER_TICK_SPAN * LIFE_TICKS

    print(f"life: {LIFE_DAYS} days = {LIFE_TICKS} ticks; average {avg_rate} nL/day; "
          f"ERI day {life.eri_day:.1f}, EOS day {life.eos_day:.1f}; "
          f"per-tick baseline {len(made)} steps in {PER_TICK_SPAN} ticks")
    report([
        ("pump_life_steps", life.steps, "steps"),
        ("pump_life_delivered", life.delivered_nl / NL_PER_ML, "mL"),
        ("pump_life_commands", life.commands, "commands"),
        ("pump_life_events", life.events, "events"),
        ("pump_life_alarm_tones", life.alarm_tones, "tones"),
        ("pump_life_patient_boluses_granted", life.granted, "boluses"),
        ("pump_life_patient_boluses_denied", life.denied, "boluses"),
        ("pump_life_refills", life.refills, "refills"),
        ("pump_life_log_records", life.log_records, "records"),
        ("pump_life_eri_day", life.eri_day, "days"),
        ("pump_life_eos_day", life.eos_day, "days"),
        ("per_tick_ns_per_tick", ns_per_tick, "ns"),
        ("pump_life_7y_wall", t_life, "s"),
        ("pump_life_per_tick_extrapolated", extrapolated, "s"),
        ("pump_life_speedup", extrapolated / t_life, "x"),
    ])


if __name__ == "__main__":
    main()
