"""rigs/qemu-m3/step_scheduler.c, built natively and checked against firmware_model.step_scheduler.

tests/rigs/c/step_driver.c links the scheduler (gcc -std=c11 -Wall -Wextra -Werror, plus
-Wconversion -Wsign-conversion -pedantic, with ASan and UBSan) and answers one line per command.
Each test writes a batch of commands, runs the driver once and compares every answer with what the
Python model (exact big integers) answers for the same input: the increment of a rate, the
effective rate, the steps in a span, the tick of the k-th step, and chained advances whose phase
carries. The C side is 64-bit only and must be exact over the whole uint64 tick range; where the
model's answer does not fit a uint64 (a step tick >= 2^64) the C must say "none", never wrap.
The target build is checked too: arm-none-eabi-gcc with the Makefile's own CFLAGS, and `make`.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from firmware_build import FIRMWARE_DIR, NATIVE_FLAGS, SANITIZERS, build_firmware
from firmware_model.errors import LimitExceeded
from firmware_model.step_scheduler import (PerTickAccumulator, StepScheduler, effective_rate_nl_per_day,
                                           increment_for_rate)
from firmware_model.units import TICKS_PER_DAY, TICKS_PER_YEAR

DRIVER_SOURCE = Path(__file__).resolve().parent / "c" / "step_driver.c"
SOURCE = FIRMWARE_DIR / "step_scheduler.c"
HEADER = FIRMWARE_DIR / "step_scheduler.h"
STRICT = ["-Wconversion", "-Wsign-conversion", "-Wshadow", "-pedantic"]
U64 = 1 << 64
U32 = 1 << 32
STROKE = 250                      # nL per step of the reference mechanism
RATE_MIN, RATE_MAX = 48_000, 24_000_000   # 0.048 .. 24 mL/day in nL/day
SEVEN_YEARS = 7 * TICKS_PER_YEAR + 2 * TICKS_PER_DAY   # with leap days: about 2^42.7 ticks


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc is not None, "no native C compiler (gcc) on PATH"
    out = tmp_path_factory.mktemp("step_native") / "step_driver"
    done = subprocess.run([cc, *SANITIZERS, *NATIVE_FLAGS, *STRICT, f"-I{FIRMWARE_DIR}", "-o", str(out),
                           str(DRIVER_SOURCE), str(SOURCE)], capture_output=True, text=True)
    assert done.returncode == 0, f"native build failed:\n{done.stderr}"
    return out


def run(driver: Path, lines: list[str]) -> list[str]:
    """Feed a batch of commands; the answers, one per command."""
    done = subprocess.run([str(driver)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and not done.stderr, f"driver exit {done.returncode}:\n{done.stderr[-4000:]}"
    answers = done.stdout.splitlines()
    assert len(answers) == len(lines)
    return answers


def log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi], spread over the bit lengths."""
    bits = rng.randint(max(lo, 1).bit_length(), hi.bit_length())
    return min(hi, max(lo, rng.randrange(1 << (bits - 1), 1 << bits)))


# ---- increment_for_rate ---------------------------------------------------------------------------

def model_increment(rate: int, stroke: int) -> str:
    try:
        return f"ok {increment_for_rate(rate, stroke)}"
    except ZeroDivisionError:
        return "err 3"
    except LimitExceeded as e:
        return "err 1" if "below one step per tick" in e.limit else "err 2"


def _rate_cases() -> list[tuple[int, int]]:
    rng = random.Random(20)
    cases = []
    for _ in range(3000):    # the clinical range, the reference stroke and others
        cases.append((rng.randint(RATE_MIN, RATE_MAX), STROKE))
        cases.append((rng.randint(RATE_MIN, RATE_MAX), rng.randint(1, 10_000)))
    for _ in range(3000):    # everything a uint64 rate and a uint32 stroke can be
        cases.append((log_uniform(rng, 0, U64 - 1), log_uniform(rng, 1, U32 - 1)))
    for stroke in (1, 2, 100, 250, 251, 2048, 4096, 10**6, U32 - 1):
        d = stroke * 86400
        low = -(-d // (1 << 18))                       # the least rate with increment 1
        high = -(-((1 << 33) - 1) * d // (1 << 18)) - 1   # the greatest with increment 2^32 - 1
        for rate in (0, 1, low - 1, low, low + 1, high - 1, high, high + 1, RATE_MIN, RATE_MAX,
                     RATE_MAX * 10, U64 - 1, (1 << 46) - 1, 1 << 46, (1 << 46) + 1):
            if 0 <= rate < U64:
                cases.append((rate, stroke))
        for j in (1, 2, 3, 1000, 12345):               # exact half quanta: round half up
            num = (2 * j - 1) * d
            if num % (1 << 18) == 0:
                for rate in (num // (1 << 18) - 1, num // (1 << 18), num // (1 << 18) + 1):
                    cases.append((rate, stroke))
    cases += [(1000, 0), (0, 0), (U64 - 1, 0)]
    return cases


def test_increment_for_rate_equals_the_model(driver):
    cases = _rate_cases()
    answers = run(driver, [f"inc {r} {s}" for r, s in cases])
    for (rate, stroke), got in zip(cases, answers):
        assert got == model_increment(rate, stroke), (rate, stroke)
    kinds = {a.split(" ")[0] + (a.split(" ")[1] if a.startswith("err") else "") for a in answers}
    assert kinds == {"ok", "err1", "err2", "err3"}
    assert len(cases) > 9_000
    halves = [(r, s) for r, s in cases if s in (2048, 4096) and (r * (1 << 18) + s * 86400) % (2 * s * 86400) == 0]
    assert len(halves) >= 8    # the round-half-up points really were hit


def test_clinical_range_quantisation(driver):
    """0.048 and 24 mL/day at 250 nL: both in range; the quantisation is at most half an increment
    (at 0.048 mL/day the increment is 291, the effective rate 0.093 % low)."""
    answers = run(driver, [f"inc {RATE_MIN} {STROKE}", f"inc {RATE_MAX} {STROKE}"])
    inc_min, inc_max = (int(a.split(" ")[1]) for a in answers)
    assert inc_min == increment_for_rate(RATE_MIN, STROKE) and inc_max == increment_for_rate(RATE_MAX, STROKE)
    assert inc_min == 291
    for rate, inc in ((RATE_MIN, inc_min), (RATE_MAX, inc_max)):
        err = abs(effective_rate_nl_per_day(inc, STROKE) - rate) / rate
        assert 0 < err <= Fraction(1, 2 * inc)


# ---- effective rate -------------------------------------------------------------------------------

def test_effective_rate_equals_the_model(driver):
    rng = random.Random(21)
    cases = [(0, STROKE), (1, 1), (U32 - 1, U32 - 1), (U32 - 1, 1), (1, U32 - 1), (1023, 1), (1024, 1)]
    cases += [(increment_for_rate(rng.randint(RATE_MIN, RATE_MAX), STROKE), STROKE) for _ in range(2000)]
    cases += [(log_uniform(rng, 0, U32 - 1), log_uniform(rng, 1, U32 - 1)) for _ in range(3000)]
    answers = run(driver, [f"eff {i} {s}" for i, s in cases])
    for (inc, stroke), got in zip(cases, answers):
        whole, frac = (int(x) for x in got.split(" "))
        assert frac < 1024
        assert Fraction(whole * 1024 + frac, 1024) == effective_rate_nl_per_day(inc, stroke), (inc, stroke)


# ---- one scheduler: steps_until, tick_of_step, advance ----------------------------------------------

def model_tos(s: StepScheduler, k: int) -> str:
    if k == 0:
        return "none"
    t = s.tick_of_step(k)
    return "none" if t is None or t >= U64 else str(t)


def _random_state(rng: random.Random) -> tuple[int, int, int]:
    kind = rng.random()
    if kind < 0.4:
        inc = increment_for_rate(rng.randint(RATE_MIN, RATE_MAX), STROKE)
    elif kind < 0.55:
        inc = increment_for_rate(rng.randint(RATE_MAX, 10**10), STROKE)   # beyond the clinical range
    elif kind < 0.95:
        inc = log_uniform(rng, 1, U32 - 1)
    else:
        inc = rng.choice((0, 1, 2, U32 - 1, U32 - 2, 1 << 31))
    phase = rng.choice((0, 1, U32 - 1, U32 - 2, rng.randrange(U32), rng.randrange(U32)))
    tick = rng.choice((0, rng.randrange(1 << 40), rng.randrange(1 << 63), rng.randrange(U64 - (1 << 44), U64),
                       log_uniform(rng, 0, U64 - 1)))
    return inc, phase, tick


def _random_span(rng: random.Random, tick: int) -> int:
    room = U64 - 1 - tick
    span = rng.choice((0, 1, 2, rng.randrange(1 << 20), rng.randrange(1 << 40), rng.randrange(1 << 41, 1 << 44),
                       SEVEN_YEARS, log_uniform(rng, 1, U64 - 1), room))
    return min(span, room)


def test_single_spans_equal_the_model(driver):
    rng = random.Random(22)
    lines, expected = [], []
    n_cases = 4000
    for _ in range(n_cases):
        inc, phase, tick = _random_state(rng)
        to = tick + _random_span(rng, tick)
        m = StepScheduler(increment=inc, phase=phase, tick=tick)
        count = m.steps_until(to)
        lines += [f"init {inc} {phase} {tick}", f"until {to}", f"until {max(tick - 1, 0)}"]
        expected += ["ok", str(count), "0"]
        ks = {0, 1, 2, count, count + 1, rng.randint(1, count + 1), log_uniform(rng, 1, U64 - 1), U64 - 1}
        for k in sorted(ks):
            lines.append(f"tos {k}")
            expected.append(model_tos(m, k))
        made = m.advance(to)
        lines.append(f"adv {to}")
        expected.append(f"{made} {m.phase} {m.tick} {m.steps}")
        if to > tick:
            lines.append(f"adv {to - 1}")        # backwards: refused, nothing changes
            lines.append("state")
            expected += ["back", f"{inc} {m.phase} {m.tick} {m.steps}"]
    answers = run(driver, lines)
    for i, (line, got, want) in enumerate(zip(lines, answers, expected)):
        assert got == want, f"command {i} '{line}' after '{lines[max(0, i - 12):i]}'"
    assert len(lines) > 40_000


def test_step_ticks_bracket_every_span(driver):
    """The last step in (t0, t1] is at or before t1, the next one after it (O(1) on both sides)."""
    rng = random.Random(23)
    lines, cases = [], []
    for _ in range(3000):
        inc, phase, tick = _random_state(rng)
        inc = inc or 1
        to = tick + _random_span(rng, tick)
        n = StepScheduler(increment=inc, phase=phase, tick=tick).steps_until(to)
        lines += [f"init {inc} {phase} {tick}", f"until {to}", f"tos {max(n, 1)}", f"tos {n + 1}"]
        cases.append((tick, to))
    answers = run(driver, lines)
    for j, (tick, to) in enumerate(cases):
        n, last, after = answers[4 * j + 1:4 * j + 4]
        if int(n) > 0:
            assert tick < int(last) <= to
        if after != "none":
            assert int(after) > to
        else:
            assert to > U64 - 1 - (U32 * 2)    # only when the next step lies past 2^64 - 1


def test_chained_advances_carry_the_phase(driver):
    """Rate changes and advances in a row: the phase carries, no step is lost or doubled."""
    rng = random.Random(24)
    lines, expected = [], []
    chains, links = 300, 40
    for _ in range(chains):
        inc, phase, tick = _random_state(rng)
        tick = rng.choice((0, rng.randrange(1 << 40)))
        m = StepScheduler(increment=inc, phase=phase, tick=tick)
        lines.append(f"init {inc} {phase} {tick}")
        expected.append("ok")
        for _ in range(links):
            if rng.random() < 0.3:
                new = rng.choice((0, increment_for_rate(rng.randint(RATE_MIN, RATE_MAX), STROKE),
                                  log_uniform(rng, 1, U32 - 1)))
                m.set_increment(new)
                lines.append(f"set {new}")
                expected.append("ok")
            span = rng.choice((0, 1, rng.randrange(1, 1 << 16), rng.randrange(1 << 32), rng.randrange(1 << 40),
                               rng.randrange(1 << 44), TICKS_PER_DAY))
            to = m.tick + span
            count = m.steps_until(to)
            k = rng.randint(1, count + 2)
            lines += [f"until {to}", f"tos {k}"]
            expected += [str(count), model_tos(m, k)]
            made = m.advance(to)
            lines.append(f"adv {to}")
            expected.append(f"{made} {m.phase} {m.tick} {m.steps}")
    answers = run(driver, lines)
    for i, (line, got, want) in enumerate(zip(lines, answers, expected)):
        assert got == want, f"command {i} '{line}'"
    assert m.tick > 1 << 40


def test_seven_years_at_the_maximum_rate(driver):
    """A 7-year pump at 24 mL/day (10x that, and 0.048 mL/day): one advance over the 7 years and
    2,557 day-by-day advances end in the same steps and phase, as the model's."""
    assert SEVEN_YEARS % TICKS_PER_DAY == 0 and SEVEN_YEARS > 1 << 42
    lines, expected = [], []
    for rate in (RATE_MAX, 10 * RATE_MAX, RATE_MIN):
        inc = increment_for_rate(rate, STROKE)
        whole = StepScheduler(increment=inc, phase=0x89ABCDEF, tick=0)
        total = whole.steps_until(SEVEN_YEARS)
        lines += [f"init {inc} {0x89ABCDEF} 0", f"until {SEVEN_YEARS}", f"tos {total}", f"tos {total + 1}",
                  f"adv {SEVEN_YEARS}"]
        expected += ["ok", str(total), model_tos(whole, total), model_tos(whole, total + 1)]
        whole.advance(SEVEN_YEARS)
        expected.append(f"{total} {whole.phase} {SEVEN_YEARS} {total}")
        daily = StepScheduler(increment=inc, phase=0x89ABCDEF, tick=0)
        lines.append(f"init {inc} {0x89ABCDEF} 0")
        expected.append("ok")
        for day in range(1, SEVEN_YEARS // TICKS_PER_DAY + 1):
            made = daily.advance(day * TICKS_PER_DAY)
            lines.append(f"adv {day * TICKS_PER_DAY}")
            expected.append(f"{made} {daily.phase} {daily.tick} {daily.steps}")
        assert (daily.steps, daily.phase) == (total, whole.phase)
        if rate == RATE_MAX:
            assert total > 245_000_000     # 96,000 steps a day for 2,557 days
    answers = run(driver, lines)
    for i, (line, got, want) in enumerate(zip(lines, answers, expected)):
        assert got == want, f"command {i} '{line}'"


# ---- against the per-tick oracle and the model's step listing --------------------------------------

def test_step_listing_equals_the_per_tick_oracle(driver):
    rng = random.Random(25)
    lines, expected = [], []
    for _ in range(400):
        inc = rng.choice((log_uniform(rng, 1, U32 - 1), rng.randrange(U32 // 2, U32), U32 - 1, 1 << 31,
                          increment_for_rate(rng.randint(RATE_MIN, RATE_MAX), 1)))
        phase = rng.choice((0, U32 - 1, rng.randrange(U32)))
        tick = rng.choice((0, rng.randrange(1 << 40), U64 - 5000))
        span = rng.randrange(0, 3000)
        oracle = PerTickAccumulator(increment=inc, phase=phase, tick=tick).run(tick + span)
        model = StepScheduler(increment=inc, phase=phase, tick=tick)
        if tick + span < 1 << 63:
            assert model.step_ticks(tick + span).tolist() == oracle
        lines += [f"init {inc} {phase} {tick}", f"list {tick + span}"]
        expected += ["ok", " ".join(map(str, oracle)) or "-"]
    answers = run(driver, lines)
    for i, (line, got, want) in enumerate(zip(lines, answers, expected)):
        assert got == want, f"command {i} '{line}'"


# ---- edges ------------------------------------------------------------------------------------------

def test_edges(driver):
    top = U64 - 1
    script = [
        # stopped: no step, no tick of a step, the phase stays
        ("init 0 12345 1000", "ok"), (f"until {top}", "0"), ("tos 1", "none"),
        (f"adv {1 << 50}", f"0 12345 {1 << 50} 0"), ("state", f"0 12345 {1 << 50} 0"),
        # phase one short of 2^32, increment 1: the very next tick steps
        (f"init 1 {U32 - 1} 7", "ok"), ("tos 1", "8"), ("tos 2", f"{8 + U32}"), ("until 8", "1"),
        ("adv 8", "1 0 8 1"), ("tos 1", f"{8 + U32}"),
        # the largest increment: a step almost every tick
        (f"init {U32 - 1} {U32 - 1} 0", "ok"), ("until 1", "1"), (f"until {U32}", f"{U32 - 1}"),
        (f"tos {U32 - 1}", f"{U32 - 1}"), (f"tos {U32}", f"{U32 + 1}"),
        (f"adv {top}", None),
        # k = 0 is no step; a step past 2^64 - 1 is refused, not wrapped
        (f"init 5 0 {top - 10}", "ok"), ("tos 0", "none"), ("tos 1", "none"),
        (f"until {top}", "0"), (f"adv {top}", f"0 50 {top} 0"), (f"adv {top - 1}", "back"),
        (f"init {U32 - 1} 0 {top - 3}", "ok"), ("tos 2", f"{top}"), ("tos 3", "none"),
        (f"tos {top}", "none"), (f"until {top}", "2"),
        # the whole uint64 range in one span
        (f"init {U32 - 1} {U32 - 1} 0", "ok"), (f"until {top}", None), (f"adv {top}", None),
        (f"init 1 0 0", "ok"), (f"until {top}", f"{top >> 32}"), (f"tos {top >> 32}", f"{(top >> 32) << 32}"),
    ]
    answers = run(driver, [c for c, _ in script])
    m = StepScheduler()
    for (cmd, want), got in zip(script, answers):
        words = cmd.split(" ")
        if words[0] == "init":
            m = StepScheduler(increment=int(words[1]), phase=int(words[2]), tick=int(words[3]))
        elif words[0] == "until":
            assert got == str(m.steps_until(int(words[1]))), cmd
        elif words[0] == "tos":
            assert got == model_tos(m, int(words[1])), cmd
        elif words[0] == "adv" and got != "back":
            made = m.advance(int(words[1]))
            assert got == f"{made} {m.phase} {m.tick} {m.steps}", cmd
        if want is not None:
            assert got == want, cmd


# ---- the target build -------------------------------------------------------------------------------

def _make_var(name: str) -> str:
    done = subprocess.run(["make", "-s", "-C", str(FIRMWARE_DIR), "--eval", f"print-var: ; @echo $({name})",
                           "print-var"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_freestanding_sources():
    for path in (SOURCE, HEADER):
        includes = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', path.read_text(), re.M)
        assert set(includes) <= {"stdint.h", "stdbool.h", "step_scheduler.h"}, path.name
        text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        assert not re.search(r"\b(float|double|malloc|free|__int128)\b", text), path.name


def test_builds_for_the_target_with_the_firmware_flags(tmp_path, tmp_path_factory):
    cross = _make_var("CC")
    assert shutil.which(cross), f"{cross} not on PATH (apt install gcc-arm-none-eabi)"
    assert "step_scheduler.c" in _make_var("PURE").split()
    flags = _make_var("CFLAGS").split()
    assert "-Werror" in flags
    obj = tmp_path / "step_scheduler.o"
    done = subprocess.run([cross, *flags, *STRICT, "-c", str(SOURCE), "-o", str(obj)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
    nm = subprocess.run([cross.replace("gcc", "nm"), "-u", str(obj)], capture_output=True, text=True, check=True)
    undefined = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()}
    # libgcc's 64-bit division (linked with -lgcc); arm gcc names the signed one too, without a call to it
    assert undefined <= {"__aeabi_uldivmod", "__aeabi_ldivmod"}, undefined
    build_firmware(tmp_path_factory.getbasetemp().parent)  # `make` stays clean with the new source
