"""hil.mutation: mutants of the firmware's C sources, run against the scenario suite.

The parts on their own (sampling, mutant files, the copy of the rig folder, the report) and, end
to end on the qemu-m3 rig with a smoke scenario (tests/hil/data/mutation_smoke.toml: hello, status,
an hour on, status), the verdicts: a mutant that does not build is INVALID, one that changes what
the pump answers is KILLED by the scenario, one identical to the original SURVIVES (run, or by
its image), a hang is KILLED by the timeout with its QEMU, and a baseline that fails stops the
campaign before any mutant is made. The end-to-end tests allow a baseline that does not pass the
smoke scenario (the firmware's controller is still being written): a mutant is then killed only
when it ends the scenario otherwise than the original.

make test installs universalmutator (pyproject's dev extra), qemu-system-arm and
gcc-arm-none-eabi: without them these tests fail, never skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.mutation import (INVALID, KILLED, SAME_OBJECT, SURVIVED, TIMEOUT, BaselineFailed, Campaign, Job, Mutant,
                          MutantFile, MutationError, Outcome, ScenarioRun, Settings, SourceCount, allocate, build,
                          check_starts_own_firmware, compile_source, copy_rig, digest_of, draw_compiling, explanation,
                          generate_mutants, kills, load_equivalents, load_results, mutant_files, rebuilt_mutant,
                          rerun_survivors, resume_campaign, run_campaign, run_job, run_jobs, sample_mutants, save_results,
                          write_report)
from hil.rig import load_rig

ROOT = Path(__file__).resolve().parents[2]
QEMU_RIG = ROOT / "rigs" / "qemu-m3"
DATA = Path(__file__).resolve().parent / "data"
SMOKE = DATA / "mutation_smoke.toml"

TINY_C = """\
int clamp(int x, int lo, int hi)
{
    if (x < lo) {
        return lo;
    }
    return x > hi ? hi : x;
}
"""


def _fake(source: str, number: int, line: int = 1, original: str = "a = b + 1;", mutated: str = "a = b - 1;") -> Mutant:
    return Mutant(source, number, Path(f"/nowhere/{source}.mutant.{number}.c"), line, original, mutated)


# ---- sampling ------------------------------------------------------------------------------------

def test_allocation_is_proportional_and_exact() -> None:
    assert allocate({"a.c": 100, "b.c": 300, "c.c": 600}, 100) == {"a.c": 10, "b.c": 30, "c.c": 60}
    shares = allocate({"a.c": 405, "b.c": 506, "c.c": 3088, "d.c": 3652}, 300)
    assert sum(shares.values()) == 300
    for source, count in {"a.c": 405, "b.c": 506, "c.c": 3088, "d.c": 3652}.items():
        assert abs(shares[source] - 300 * count / 7651) < 1      # largest remainders: within one of the share
    assert allocate({"a.c": 3, "b.c": 4}, 50) == {"a.c": 3, "b.c": 4}   # fewer mutants than asked: all of them


def test_sample_is_seeded_and_spread_over_the_files() -> None:
    pools = {"a.c": [_fake("a.c", n) for n in range(200)], "b.c": [_fake("b.c", n) for n in range(600)]}
    first = sample_mutants(pools, 80, seed=7)
    assert first == sample_mutants(pools, 80, seed=7)                   # same seed, same sample
    assert first != sample_mutants(pools, 80, seed=8)
    assert len(first) == len(set(first)) == 80
    assert sum(m.source == "a.c" for m in first) == 20 and sum(m.source == "b.c" for m in first) == 60
    numbers = [m.number for m in first if m.source == "b.c"]
    assert numbers == sorted(numbers) and numbers != list(range(60))    # drawn, not the first ones


def test_generate_mutants_of_a_small_c_file(tmp_path: Path) -> None:
    rig = tmp_path / "rig"
    rig.mkdir()
    (rig / "clamp.c").write_text(TINY_C)
    generated, mutants = generate_mutants(rig, "clamp.c", tmp_path / "scratch")
    assert generated >= 20 and 0 < len(mutants) <= generated
    original = TINY_C.splitlines()
    contents = set()
    for m in mutants:
        text = m.path.read_text()
        assert m.path.name == f"clamp.mutant.{m.number}.c" and m.source == "clamp.c"
        assert text != TINY_C and text not in contents                  # copies of the original or of another dropped
        contents.add(text)
        lines = text.splitlines()
        assert original[m.line - 1] == m.original.splitlines()[0]
        assert lines[:m.line - 1] == original[:m.line - 1]              # the same up to the changed line
        assert lines[m.line - 1:m.line - 1 + len(m.mutated.splitlines())] == m.mutated.splitlines()
    assert any(m.original.strip() == "if (x < lo) {" and m.mutated.strip() == "if (x <= lo) {" for m in mutants)


# ---- the copy of the rig folder -------------------------------------------------------------------

def test_a_mutant_replaces_exactly_one_file_and_the_copy_starts_its_own_elf(tmp_path: Path) -> None:
    (tmp_path / "crc32.mutant.1.c").write_text("/* a mutant */\n")
    mutant = Mutant("crc32.c", 1, tmp_path / "crc32.mutant.1.c", 1, "#include \"crc32.h\"", "/* a mutant */")
    original = copy_rig(QEMU_RIG, tmp_path / "original")    # a snapshot: the firmware may be edited meanwhile
    assert not (original / "build").exists()                   # build outputs are left out
    copy = copy_rig(original, tmp_path / "copy", mutant=mutant)
    originals = {p.relative_to(original) for p in original.rglob("*") if p.is_file()}
    copied = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    assert copied == originals and Path("rig.toml") in copied and Path("crc32.c") in copied
    differ = [p for p in copied if (copy / p).read_bytes() != (original / p).read_bytes()]
    assert differ == [Path("crc32.c")]
    assert (copy / "crc32.c").read_text() == "/* a mutant */\n"
    rig = load_rig(copy / "rig.toml")                                    # the copy's own rig.toml, unchanged
    start = [a.format(folder=str(rig.config.folder), port="1") for a in rig.config.device["start"]]
    assert rig.config.folder == copy
    assert str(copy / "build" / "firmware.elf") in start
    assert not any(str(QEMU_RIG) in a or str(original) in a for a in start)
    check_starts_own_firmware(QEMU_RIG)


def test_a_rig_that_names_its_firmware_by_its_own_path_is_refused(tmp_path: Path) -> None:
    rig = tmp_path / "fixed"
    rig.mkdir()
    text = (QEMU_RIG / "rig.toml").read_text().replace("{folder}", str(QEMU_RIG))
    (rig / "rig.toml").write_text(text)
    with pytest.raises(MutationError, match=r"\{folder\}"):
        check_starts_own_firmware(rig)


# ---- verdicts ------------------------------------------------------------------------------------

def _run(id_: str, verdict: str, failure: str = "") -> ScenarioRun:
    return ScenarioRun(id_, verdict, 1.0, failure, (verdict, failure))


def test_a_mutant_with_the_original_image_is_not_run_and_one_that_does_not_build_is_invalid(tmp_path: Path) -> None:
    rig = tmp_path / "rig"                  # a rig whose "image" is its program without comment lines
    rig.mkdir()
    (rig / "rig.toml").write_text((QEMU_RIG / "rig.toml").read_text())
    (rig / "prog.c").write_text("// version 1\nint f(int x) { return x + 1; }\n")
    command = ("sh", "-c", "cc -fsyntax-only prog.c && mkdir -p build && grep -v '^//' prog.c > build/image")
    built, _, _ = build(copy_rig(rig, tmp_path / "original"), command)
    digest = digest_of(tmp_path / "original" / "build" / "image")
    assert built and digest
    (tmp_path / "comment.c").write_text("// version 2\nint f(int x) { return x + 1; }\n")
    (tmp_path / "broken.c").write_text("// version 1\nint f(int x) { return x + ; }\n")
    common = dict(rig_folder=rig, work_root=tmp_path / "work", build_command=command, suites=(SMOKE,),
                  order=("mutation-smoke",), artifact="build/image", original_digest=digest)
    same = run_job(Job("m1", mutant=Mutant("prog.c", 1, tmp_path / "comment.c", 1, "// version 1", "// version 2"),
                       **common))
    assert same.status == SURVIVED and same.same_binary and not same.runs
    invalid = run_job(Job("m2", mutant=Mutant("prog.c", 2, tmp_path / "broken.c", 2, "return x + 1;", "return x + ;"),
                          **common))
    assert invalid.status == INVALID and "error" in invalid.reason and not invalid.runs
    assert not (tmp_path / "work" / "m1").exists() and not (tmp_path / "work" / "m2").exists()


def test_a_scenario_kills_what_it_tells_from_the_original() -> None:
    assert kills(_run("s", "fail", "x"), _run("s", "pass"))
    assert not kills(_run("s", "pass"), _run("s", "pass"))
    assert kills(_run("s", "error", "boom"), None)
    # a scenario the original does not pass (--allow-failing-baseline): only ending otherwise kills
    assert not kills(_run("s", "error", "ReadLog refused"), _run("s", "error", "ReadLog refused"))
    assert kills(_run("s", "error", "GetStatus refused"), _run("s", "error", "ReadLog refused"))
    assert kills(_run("s", "pass"), _run("s", "error", "ReadLog refused"))


def _with_line(source: Path, pattern: str, change) -> str:
    """The source with the first line matching `pattern` changed by `change` (one line, as a mutant)."""
    lines = source.read_text().splitlines(keepends=True)
    index = next((i for i, ln in enumerate(lines) if re.search(pattern, ln)), None)
    assert index is not None, f"{source.name}: no line matches {pattern!r}"
    lines[index] = change(lines[index])
    return "".join(lines)


def _mutant(tmp_path: Path, source: str, number: int, text: str, rig: Path = QEMU_RIG) -> Mutant:
    path = tmp_path / f"{Path(source).stem}.mutant.{number}.c"
    path.write_text(text)
    original = (rig / source).read_text().splitlines()
    mutated = text.splitlines()
    line = next((i for i, (a, b) in enumerate(zip(original, mutated)) if a != b), 0) + 1
    return Mutant(source, number, path, line, original[line - 1], mutated[line - 1] if line <= len(mutated) else "")


def _qemu_left(folder: Path, wait_s: float = 3.0) -> list[str]:
    """Command lines of processes still running from `folder` (QEMU started for one of its copies),
    after giving killed ones `wait_s` to go."""
    deadline = time.monotonic() + wait_s
    while True:
        out = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if str(folder) in cmd:
                    out.append(cmd)
        if not out or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def test_end_to_end_invalid_killed_and_identical_mutants(tmp_path: Path) -> None:
    work = tmp_path / "work"
    rig = copy_rig(QEMU_RIG, tmp_path / "snapshot")    # as a campaign does: the firmware may be edited meanwhile
    common = dict(rig_folder=rig, work_root=work, build_command=("make",), suites=(SMOKE,),
                  order=("mutation-smoke",))
    baseline = run_jobs([Job("baseline", stop_at_kill=False, artifact="build/firmware.bin", **common)], 1, 120)[0]
    assert baseline.status == SURVIVED and baseline.build_s > 0 and baseline.digest
    assert [r.id for r in baseline.runs] == ["mutation-smoke"]
    original = baseline.runs[0]
    assert original.verdict in ("pass", "fail", "error")

    crc = rig / "crc32.c"
    broken = _mutant(tmp_path, "crc32.c", 1, _with_line(crc, r"crc = ~crc;", lambda ln: ln.replace(";", "", 1)), rig)
    # GetStatus's fixed payload size 0 -> 1 in the message catalogue: every GetStatus is MALFORMED
    status = _mutant(tmp_path, "frame.c", 2, _with_line(rig / "frame.c", r'"GetStatus"',
                                                        lambda ln: re.sub(r"\{\s*0x10,\s*0,", "{0x10, 1,", ln)), rig)
    assert status.mutated != status.original
    same = _mutant(tmp_path, "crc32.c", 3, crc.read_text(), rig)
    jobs = [Job(f"m{i}", mutant=m, originals={original.id: original}, original_digest=baseline.digest,
                artifact="build/firmware.bin", run_identical=True, **common)
            for i, m in enumerate([broken, status, same])]
    seen = []
    invalid, killed, survived = run_jobs(jobs, 2, 120, seen.append)
    assert len(seen) == 3

    assert invalid.status == INVALID and "error" in invalid.reason and not invalid.runs
    assert killed.status == KILLED and killed.scenario == "mutation-smoke"
    assert "GetStatus" in killed.reason and "MALFORMED" in killed.reason
    assert not killed.same_binary
    assert survived.status == SURVIVED and survived.same_binary                # the original's image, run all the
    assert [r.signature for r in survived.runs] == [original.signature]   # same (run_identical): ended as it did
    assert not work.exists() or not any(work.iterdir())                 # the copies are gone
    assert not _qemu_left(work)


def test_a_hang_is_killed_by_the_timeout_with_its_qemu(tmp_path: Path) -> None:
    work = tmp_path / "work"
    rig = copy_rig(QEMU_RIG, tmp_path / "snapshot")
    hang = _mutant(tmp_path, "crc32.c", 1, _with_line(rig / "crc32.c", r"crc = ~crc;",
                                                      lambda ln: "    for (;;) {\n    }\n" + ln), rig)
    job = Job("hang", rig, work, ("make",), (SMOKE,), ("mutation-smoke",), mutant=hang)
    [outcome] = run_jobs([job], 1, 2)      # the rig would wait 3.5 s for a hello before it gave up
    assert outcome.status == KILLED and outcome.scenario == TIMEOUT
    assert "still running 2 s after its first scenario started, in scenario mutation-smoke" in outcome.reason
    assert not _qemu_left(work)
    assert not (work / "hang").exists()


def test_a_failing_baseline_stops_the_campaign_before_any_mutant(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[scenario]\nid = "wrong"\ntitle = "a new pump at tick 1"\ncovers = ["REQ-EVENT-LOG"]\n\n'
                     '[[step]]\nat = "0 s"\ndo = "status"\nexpect = { status = { tick = 1 } }\n')
    settings = Settings(QEMU_RIG, ["crc32.c"], suites=(wrong,), sample_size=5, work_dir=tmp_path)
    with pytest.raises(BaselineFailed, match="does not pass the suite") as failed:
        run_campaign(settings)
    assert failed.value.baseline.runs[0].verdict in ("fail", "error")
    assert not list(tmp_path.glob("ithil-mutants-*"))                   # scratch removed, no mutant made


# ---- equivalents and the report ------------------------------------------------------------------

EQUIVALENTS = """\
[[mutant]]
file = "pump.c"
line = 12
mutated = "  if (n >=   0) {"
why = "n is unsigned"

[[mutant]]
file = "pump.c"
line = 30
mutated = "x = 2;"
why = "claimed, but killed"
"""


def test_equivalents_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "equivalent_mutants.toml"
    good.write_text(EQUIVALENTS)
    assert load_equivalents(good)[("pump.c", 12, "if (n >= 0) {")] == "n is unsigned"
    assert load_equivalents(tmp_path / "none.toml") == {}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[mutant]]\nfile = "pump.c"\nline = "12"\nmutated = "x"\nwhy = "y"\n')
    with pytest.raises(MutationError, match="line"):
        load_equivalents(bad)


def _campaign(tmp_path: Path) -> Campaign:
    rig = tmp_path / "rig"
    rig.mkdir(exist_ok=True)
    settings = Settings(rig, ["pump.c", "wire.c"], artifact="build/firmware.bin", sample_size=7, seed=42, jobs=2)
    runs = [ScenarioRun("quick", "pass", 0.8, "", ("pass",)), ScenarioRun("slow", "pass", 12.0, "", ("pass",)),
            ScenarioRun("needs-mri", "not run", 0.0, "rig cannot inject mri", ("not run",))]
    baseline = Outcome(None, SURVIVED, build_s=0.9, run_s=12.8, runs=runs, digest="ab")
    m = [_fake("pump.c", 1, 12, "if (n > 0) {", "if (n >= 0) {"),       # explained in the TOML
         _fake("pump.c", 2, 20, "return a | b;", "return a & b;"),        # unexplained (a '|' in it)
         _fake("wire.c", 3, 5, "y = 1;", "y = 2;"),                       # same image
         _fake("pump.c", 4, 30, "x = 1;", "x = 2;"),                      # killed, though the TOML says equivalent
         _fake("wire.c", 5, 7, "z = 1;", "z = 0;"),
         _fake("wire.c", 6, 8, "w = 1;", "w = 0;"),
         _fake("wire.c", 7, 9, "int v;", "int-1 v;")]
    outcomes = [Outcome(m[0], SURVIVED, wall_s=13.0, runs=runs[:2]), Outcome(m[1], SURVIVED, wall_s=13.0, runs=runs[:2]),
                Outcome(m[2], SURVIVED, same_binary=True, wall_s=1.0),
                Outcome(m[3], KILLED, "quick", "first divergence at tick 0: status.mode", wall_s=2.0, runs=runs[:1]),
                Outcome(m[4], KILLED, "slow", "alarm RESERVOIR_LOW raised within 2 h: never", wall_s=13.0,
                        runs=runs[:2]),
                Outcome(m[5], KILLED, TIMEOUT, "still running after 60 s in scenario slow; killed", wall_s=60.0),
                Outcome(m[6], INVALID, reason="wire.c:9: error: expected identifier", wall_s=0.7)]
    return Campaign(settings, "qemu-m3", dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.timezone.utc),
                    {"ithil": "0.1.0", "universalmutator": "1.14.1"}, baseline, ["quick", "slow"], [runs[2]],
                    [SourceCount("pump.c", 40, 38, 4), SourceCount("wire.c", 30, 30, 3)], outcomes, 90.0,
                    {"baseline": 15.0, "generate": 1.0, "mutants": 80.0, "total": 96.0})


def test_report_counts_explains_and_flags(tmp_path: Path) -> None:
    (tmp_path / "eq.toml").write_text(EQUIVALENTS)
    campaign = _campaign(tmp_path)
    assert campaign.kill_rate == 3 / 6
    text = write_report(campaign, tmp_path / "docs" / "mutation.md", load_equivalents(tmp_path / "eq.toml")).read_text()
    assert "2026-11-22 09:30 UTC" in text and "| seed | 42 |" in text and "1.14.1" in text
    assert "| drawn | 7 |" in text and "| invalid (do not compile or build; not counted) | 1 |" in text
    assert "| **built** (the sample: killed + survived) | **6** |" in text
    assert "| killed | 3 (1 by the timeout) |" in text and "| survived | 3 |" in text
    assert "| of which the original's image | 1 |" in text and "| of which **unexplained** | 1 |" in text
    assert "**50.0 %**" in text                                          # 3 / (3 + 3)
    assert "**75.0 %**" in text                                          # 3 / (3 + 1 unexplained)
    assert "| `pump.c` | 40 | 38 | 4 | 0 | 3 | 1 | 2 |" in text
    assert "| 1 | quick | pass | 0.8 s | 4 | 1 | 25 % |" in text          # two survivors and two killed ran it
    assert "| 2 | slow | pass | 12.0 s | 3 | 1 | 33 % |" in text
    assert "| | (timeout) | | | | 1 | |" in text and "- needs-mri: rig cannot inject mri" in text
    survivors = text.split("## Survivors")[1].split("##")[0]
    rows = [ln for ln in survivors.splitlines() if ln.startswith("| ") and "`" in ln]
    assert len(rows) == 3
    assert "`pump.c:12`" in rows[0] and "<code>- if (n &gt; 0) {</code><br><code>+ if (n &gt;= 0) {</code>" in rows[0]
    assert rows[0].endswith("| n is unsigned |")
    assert "`pump.c:20`" in rows[1] and "a &amp; b" in rows[1] and "a &#124; b" in rows[1]
    assert rows[1].endswith("| **unexplained** |")
    assert "`wire.c:5`" in rows[2] and "same image" in rows[2] and "build/firmware.bin" in rows[2]
    assert "Explained as equivalent, yet killed" in text and "`pump.c:30`" in text.split("yet killed")[1]


def test_cli_refuses_a_rig_that_is_not_there(tmp_path: Path) -> None:
    ithil = Path(sys.executable).with_name("ithil")
    proc = subprocess.run([str(ithil), "mutants", "--rig", str(tmp_path / "nope"), "--out", str(tmp_path / "m.md")],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "no rig.toml" in proc.stderr
    assert not (tmp_path / "m.md").exists()


# ---- the compile check: a sample of mutants that compile, and trivial compiler equivalence ---------

COMPILE = ("make", "-s", "-C", "{folder}", "object", "SRC={source}", "OBJ={object}")


def test_the_compile_check_draws_compiling_mutants_and_finds_those_with_the_originals_object_code(
        tmp_path: Path) -> None:
    rig = tmp_path / "rig"
    rig.mkdir()
    (rig / "Makefile").write_text((QEMU_RIG / "Makefile").read_text())   # the firmware's own object rule
    (rig / "clamp.c").write_text(TINY_C)
    _, files = mutant_files(rig, "clamp.c", tmp_path / "scratch")
    original = compile_source(COMPILE, rig, "clamp.c", TINY_C.encode(), tmp_path)
    assert original is not None and original[:4] == b"\x7fELF"
    assert compile_source(COMPILE, rig, "clamp.c", TINY_C.encode(), tmp_path) == original   # another folder, same bytes
    assert compile_source(COMPILE, rig, "clamp.c", b"int clamp(int x) { return y; }", tmp_path) is None

    def check(f: MutantFile) -> bytes | None:
        return compile_source(COMPILE, rig, "clamp.c", f.path.read_bytes(), tmp_path)

    drawn = draw_compiling({"clamp.c": files}, 6, seed=3, check=check, originals={"clamp.c": original}, workers=2)
    assert drawn == draw_compiling({"clamp.c": files}, 6, seed=3, check=check, originals={"clamp.c": original},
                                   workers=1)                              # the draw does not depend on the workers
    assert sum(d.compiles for d in drawn) == 6 and drawn[-1].compiles    # stops at the sixth that compiles
    for d in drawn:
        assert d.compiles == (check(d.file) is not None)
        assert d.same_object == (check(d.file) == original)
    assert len({d.file.number for d in drawn}) == len(drawn)
    # a mutant that only changes a comment or spacing compiles to the same object: equivalent unbuilt
    spaced = tmp_path / "clamp.mutant.0.c"
    spaced.write_text(TINY_C.replace("return lo;", "return  lo; /* the same */"))
    same = draw_compiling({"clamp.c": [MutantFile("clamp.c", 0, spaced)]}, 1, 0, check, {"clamp.c": original})
    assert same == [(MutantFile("clamp.c", 0, spaced), True, True)]
    outcome = Outcome(_fake("clamp.c", 0), SURVIVED, same_object=True)
    assert explanation(outcome, {}, None) == SAME_OBJECT


def test_saved_results_give_the_same_report_and_take_explanations_added_later(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path)
    first = write_report(campaign, tmp_path / "a.md", {}).read_text()
    again = load_results(save_results(campaign, tmp_path / "a.json"))
    assert again == campaign
    assert write_report(again, tmp_path / "a.md", {}).read_text() == first
    (tmp_path / "eq.toml").write_text(EQUIVALENTS)
    later = write_report(again, tmp_path / "b.md", load_equivalents(tmp_path / "eq.toml")).read_text()
    assert "| of which **unexplained** | 1 |" in later and "| of which **unexplained** | 2 |" in first
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MutationError, match="not the results of a mutation campaign"):
        load_results(tmp_path / "bad.json")


def test_survivors_run_again_against_the_suite_as_it_is_now(tmp_path: Path) -> None:
    rig = copy_rig(QEMU_RIG, tmp_path / "rig")
    status = _mutant(tmp_path, "frame.c", 2, _with_line(rig / "frame.c", r'"GetStatus"',
                                                        lambda ln: re.sub(r"\{\s*0x10,\s*0,", "{0x10, 1,", ln)), rig)
    moved = dataclasses.replace(status, number=3, line=status.line + 1)     # its source no longer holds it there
    explained = dataclasses.replace(status, number=4, mutated="/* explained */")
    assert rebuilt_mutant(rig, moved, tmp_path / "m") is None
    remade = rebuilt_mutant(rig, status, tmp_path / "m")
    assert remade is not None and remade.path.read_text() == status.path.read_text()
    settings = Settings(rig, ["frame.c"], artifact="build/firmware.bin", suites=(SMOKE,), sample_size=3, jobs=2,
                        allow_failing_baseline=True)
    # as if a campaign had run a suite without the smoke scenario: the three survived
    campaign = Campaign(settings, "qemu-m3", dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc), {}, Outcome(None, SURVIVED),
                        [], [], [SourceCount("frame.c", 9, 9, 3)],
                        [Outcome(m, SURVIVED, wall_s=1.0) for m in (status, moved, explained)], 60.0, {})
    why = {("frame.c", explained.line, "/* explained */"): "a reason"}
    again = rerun_survivors(campaign, why)
    by_number = {o.mutant.number: o for o in again.outcomes}
    assert by_number[2].status == KILLED and by_number[2].scenario == "mutation-smoke"
    assert by_number[2].mutant == status                               # the recorded mutant, not the scratch copy
    assert by_number[3] == campaign.outcomes[1] and by_number[4] == campaign.outcomes[2]
    assert len(again.reruns) == 1 and "2 unexplained survivors run again" in again.reruns[0]
    assert "1 killed, 0 survived, 1 not made again" in again.reruns[0]
    text = write_report(again, tmp_path / "r.md", why).read_text()
    assert "Survivors run again:" in text and load_results(save_results(again, tmp_path / "r.json")) == again


def test_an_interrupted_campaign_is_carried_on_from_its_saved_results(tmp_path: Path) -> None:
    rig = copy_rig(QEMU_RIG, tmp_path / "rig")
    status = _mutant(tmp_path, "frame.c", 2, _with_line(rig / "frame.c", r'"GetStatus"',
                                                        lambda ln: re.sub(r"\{\s*0x10,\s*0,", "{0x10, 1,", ln)), rig)
    settings = Settings(rig, ["frame.c"], artifact="build/firmware.bin", suites=(SMOKE,), sample_size=2, jobs=2)
    done = Outcome(dataclasses.replace(status, number=9, mutated="/* ran before */"), SURVIVED, wall_s=1.0)
    baseline = Outcome(None, SURVIVED, runs=[ScenarioRun("mutation-smoke", "pass", 1.0, "", ("pass",))])
    campaign = Campaign(settings, "qemu-m3", dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc), {},
                        baseline, ["mutation-smoke"], [], [SourceCount("frame.c", 9, 9, 2)], [done],
                        60.0, {"mutants": 5.0, "total": 9.0}, pending=[status])
    text = write_report(campaign, tmp_path / "m.md", {}).read_text()
    assert "**Interrupted**: 1 of the 2 mutants" in text and "--resume" in text
    saved = save_results(campaign, tmp_path / "m.json")
    seen: list[Outcome] = []
    again = resume_campaign(load_results(saved), on_outcome=lambda n, total, o: seen.append(o), save_to=saved)
    assert [o.status for o in again.outcomes] == [SURVIVED, KILLED] and again.pending == []
    assert again.outcomes[1].mutant.where == status.where and len(seen) == 1
    assert load_results(saved).pending == [] and len(load_results(saved).outcomes) == 2   # saved after the mutant
    assert "Interrupted" not in write_report(again, tmp_path / "m.md", {}).read_text()


def test_the_compile_check_settles_mutants_that_do_not_compile_or_keep_the_object_code_without_a_worker(
        tmp_path: Path) -> None:
    from hil.mutation import _draw_checked

    rig = tmp_path / "rig"
    rig.mkdir()
    (rig / "Makefile").write_text((QEMU_RIG / "Makefile").read_text())
    (rig / "clamp.c").write_text(TINY_C)
    files = []
    for number, text in enumerate([TINY_C.replace("return lo;", "return lo"),               # does not compile
                                   TINY_C.replace("return lo;", "return lo;   /* spaced */"),  # the same object
                                   TINY_C.replace("x < lo", "x <= lo")], 1):                 # another object
        path = tmp_path / f"clamp.mutant.{number}.c"
        path.write_text(text)
        files.append(MutantFile("clamp.c", number, path))
    settings = Settings(rig, ["clamp.c"], compile_command=COMPILE, sample_size=3, seed=5, jobs=2)
    (tmp_path / "work").mkdir()                          # a campaign's scratch folder
    said: list[str] = []
    sample, decided = _draw_checked(settings, rig, ["clamp.c"], {"clamp.c": files}, tmp_path / "work", said.append)
    assert [m.number for m in sample] == [3] and sample[0].mutated.strip() == "if (x <= lo) {"
    by_number = {o.mutant.number: o for o in decided}
    assert by_number[1].status == INVALID and "does not compile" in by_number[1].reason
    assert not by_number[1].runs and by_number[1].build_s == 0                         # no worker, no build
    assert by_number[2].status == SURVIVED and by_number[2].same_object and not by_number[2].runs
    assert explanation(by_number[2], {}, "build/firmware.bin") == SAME_OBJECT
    assert said and not list((tmp_path / "work" / "compile").iterdir())                # each check's folder is gone
    again = dataclasses.replace(settings, run_identical=True)                          # the same object run anyway
    sample, decided = _draw_checked(again, rig, ["clamp.c"], {"clamp.c": files}, tmp_path / "work", said.append)
    assert [m.number for m in sample] == [2, 3] and [o.status for o in decided] == [INVALID]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "Makefile").write_text((QEMU_RIG / "Makefile").read_text())
    (broken / "clamp.c").write_text("int clamp(int x) { return y; }\n")
    with pytest.raises(MutationError, match="the unmutated clamp.c does not compile"):
        _draw_checked(settings, broken, ["clamp.c"], {"clamp.c": files}, tmp_path / "work", said.append)


def test_results_keep_paths_inside_the_repository_relative(tmp_path: Path) -> None:
    campaign = _campaign(tmp_path)
    campaign = dataclasses.replace(campaign, settings=dataclasses.replace(campaign.settings, rig_folder=QEMU_RIG))
    saved = save_results(campaign, tmp_path / "m.json")
    text = saved.read_text()
    assert '"rig_folder": "rigs/qemu-m3"' in text and '"suites": [\n   "suites/standard"' in text
    assert str(ROOT) not in text
    assert load_results(saved) == campaign


def test_report_only_writes_the_report_again_with_explanations_added_since(tmp_path: Path) -> None:
    ithil = Path(sys.executable).with_name("ithil")
    campaign = _campaign(tmp_path)                        # its rig folder: tmp_path / "rig", no explanations yet
    results = save_results(campaign, tmp_path / "docs" / "mutation.json")
    expected = write_report(campaign, tmp_path / "docs" / "mutation.md", {}).read_text()   # as the campaign wrote it

    def report_only() -> str:
        proc = subprocess.run([str(ithil), "mutants", "--report-only", str(results), "--out",
                               str(tmp_path / "docs" / "mutation.md")], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "results saved" not in proc.stderr                           # nothing run, nothing saved
        return (tmp_path / "docs" / "mutation.md").read_text()

    assert report_only() == expected
    assert results.read_text() == save_results(campaign, tmp_path / "again.json").read_text()
    (tmp_path / "rig" / "equivalent_mutants.toml").write_text(EQUIVALENTS)   # explained after the campaign
    later = report_only()
    assert "| of which **unexplained** | 1 |" in later and "| of which **unexplained** | 2 |" in expected
    assert "n is unsigned" in later and "--report-only" in later.split("## Run it")[1]
