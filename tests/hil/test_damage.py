"""Damaged frames (hil.damage): the reference pump answers each damage as its table says and
changes nothing; a scenario's link step judges what the device did, and says so when it is wrong."""

from __future__ import annotations

import pytest

from firmware_model import commands as c
from hil.damage import ANOTHER_COMMAND, DAMAGES, NO_ANSWER, RUN_ONCE, damaged_frames
from hil.device import EmulatedDevice, default_test_keys
from hil.errors import ScenarioError
from hil.rig import load_rig
from hil.runner import run_scenario
from hil.scenario import scenario_from
from hil.verdicts import Verdict
from hil.wire_model import command_to_wire
from protocol import Decoder, NakReason, Role, Signer
from protocol import messages as m

CLINICIAN_KEY, PATIENT_KEY = default_test_keys()
REFILL = c.Refill(0, 20_000_000, "morphine", 10_000)
REFILL_AGAIN = c.Refill(19_000_000, 0, "morphine", 10_000)


def command_for(name: str) -> c.Command:
    """A command each damage fits: a text field for text_*, a clinician's command for the rest."""
    return REFILL_AGAIN if name.startswith("text_") or name == "extra_byte" else c.ProgramContinuous(1_000_000)


def answers_of(device: EmulatedDevice, data: bytes) -> list:
    return [f.message for f in Decoder().feed(device.receive(data)) if type(f.message) is not m.Telemetry]


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_the_reference_pump_answers_each_damage_as_its_table_says_and_changes_nothing(name: str) -> None:
    device = EmulatedDevice()
    signers = {Role.CLINICIAN: Signer(CLINICIAN_KEY), Role.PATIENT: Signer(PATIENT_KEY)}
    good, _ = damaged_frames("retry", command_to_wire(REFILL), 7, signers, signers[Role.CLINICIAN])[0]
    assert type(answers_of(device, good)[0]) is m.Ack     # a drug to program, and a timestamp to replay
    before, ran = device.status(), sum(device.executed.values())
    message = command_to_wire(command_for(name))
    frames = damaged_frames(name, message, 9, signers, signers[Role.CLINICIAN])
    assert [due for _, due in frames] == list(DAMAGES[name].expected)
    status = damaged_frames("retry", command_to_wire(c.GetStatus()), 11, signers, signers[Role.PATIENT])[0][0]
    answers = [answers_of(device, data if due is not ANOTHER_COMMAND else status) for data, due in frames]
    for got, (_, due) in zip(answers, frames):
        if due is ANOTHER_COMMAND:
            assert [type(a) for a in got] == [m.StatusReport]
        elif due is NO_ANSWER:
            assert got == []
        elif due is RUN_ONCE:
            assert got and type(got[-1]) in (m.Ack, m.AckSoftLimits) and got == answers[0]
        else:
            assert [(type(a), a.reason) for a in got] == [(m.Nak, due)], got
    if RUN_ONCE in DAMAGES[name].expected:
        between = DAMAGES[name].expected.count(ANOTHER_COMMAND)     # the status asked in between ran too
        assert sum(device.executed.values()) == ran + 1 + between
        assert device.executed[type(message).SPEC.name] == 1 and device.status().programmed_rate_nl_per_day == 1_000_000
    else:
        assert device.status() == before and sum(device.executed.values()) == ran


def test_a_damage_that_does_not_fit_the_command_is_refused_when_the_scenario_is_read() -> None:
    def scenario(step: dict) -> None:
        scenario_from({"scenario": {"id": "x", "title": "x", "covers": ["REQ-LINK"]},
                       "step": [{"at": "0 s", **step}]})

    with pytest.raises(ScenarioError, match="expected one of"):
        scenario({"do": "status", "damage": "scrambled"})
    with pytest.raises(ScenarioError, match="has no text field"):
        scenario({"do": "status", "damage": "text_invalid"})
    with pytest.raises(ScenarioError, match="a patient may send"):
        scenario({"do": "patient_bolus", "damage": "patient_key"})
    with pytest.raises(ScenarioError, match="expected a command step"):
        scenario({"do": "check", "damage": "crc"})


def test_a_link_step_whose_expectation_the_device_does_not_meet_fails_with_what_it_answered() -> None:
    doc = {"scenario": {"id": "x", "title": "x", "covers": ["REQ-LINK"]},
           "step": [{"at": "1 min", "do": "program_continuous", "with": {"rate_nl_per_day": 1_000_000},
                     "damage": "length", "expect": {"answer": "refused", "reason": "BAD_CRC"}},
                    {"at": "2 min", "do": "program_continuous", "with": {"rate_nl_per_day": 1_000_000},
                     "damage": "cobs", "expect": {"answer": "refused"}}]}
    result = run_scenario(load_rig("emulator"), scenario_from(doc))
    assert result.verdict is Verdict.FAIL and result.divergence is None      # the device did as it should
    failed = [(c.what, c.measured) for c in result.checks if not c.passed]
    assert failed == [("reason BAD_CRC", "MALFORMED"), ("answered refused", "no answer")], failed


def test_the_damage_names_are_the_decoders_reasons_and_the_link_rules() -> None:
    reasons = {due for d in DAMAGES.values() for due in d.expected if isinstance(due, NakReason)}
    assert reasons == {NakReason.MALFORMED, NakReason.BAD_CRC, NakReason.UNSUPPORTED_VERSION, NakReason.UNKNOWN_ID,
                       NakReason.UNSIGNED, NakReason.BAD_SIGNATURE, NakReason.REPLAY, NakReason.ROLE_NOT_ALLOWED}
