"""`make fuzz`: the atheris harness (fuzz_decoder.py) for its time budget, 10 minutes by default.

Marked slow, so the default run leaves it out; ITHIL_FUZZ_SECONDS changes the budget. The
harness raises on any broken invariant, which libFuzzer reports as a crash with a non-zero exit
and the input written under the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("fuzz_decoder.py")


@pytest.mark.slow
def test_atheris_finds_no_crash_in_the_decoder(tmp_path: Path) -> None:
    seconds = int(os.environ.get("ITHIL_FUZZ_SECONDS", "600"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), str(corpus), f"-max_total_time={seconds}", "-print_final_stats=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=seconds + 300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    runs = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", log).group(1))  # type: ignore[union-attr]
    print(f"atheris: {runs} inputs in {seconds} s, {len(list(corpus.iterdir()))} in the corpus")
    assert runs > 10 * seconds  # it really ran: hundreds of inputs a second
    assert not list(tmp_path.glob("crash-*"))
