"""The emulated analytical balance, read over a real TCP socket through real pyvisa (pyvisa-py)."""

from __future__ import annotations

import os
import socket
import statistics

import pytest
import pyvisa
from hypothesis import given
from hypothesis import strategies as st

from hil.balance import (BalanceReader, BalanceServer, BalanceSpec, format_grams, gross_reading_ug,
                         mass_of_volume_ug, net_reading_ug, noise_ug, parse_balance_listen, parse_mass_ug)
from hil.errors import BalanceConfigError, BalanceOverload, BalanceReadError, HilError

SPEC = BalanceSpec()
ONE_ML_NL = 1_000_000


class Pan:
    """What lies on the pan: a volume the test sets, read by the balance as the emulator's plant is."""

    def __init__(self, volume_nl: int = 0) -> None:
        self.volume_nl = volume_nl

    def __call__(self) -> int:
        return self.volume_nl


@pytest.fixture
def pan() -> Pan:
    return Pan(ONE_ML_NL)


@pytest.fixture
def balance(pan: Pan):
    with BalanceServer(pan, SPEC) as server:
        yield server


@pytest.fixture
def reader(balance: BalanceServer):
    with BalanceReader(balance.resource, timeout_s=1.0) as reader:
        yield reader


@pytest.fixture
def raw(balance: BalanceServer):
    """A plain pyvisa session on the balance, for commands the reader does not send."""
    inst = pyvisa.ResourceManager("@py").open_resource(balance.resource, read_termination="\n",
                                                       write_termination="\n", timeout=1000)
    yield inst
    inst.close()


# ---- through the socket and pyvisa ----------------------------------------------------------------

def test_resource_and_identity(balance: BalanceServer, reader: BalanceReader) -> None:
    assert balance.resource == f"TCPIP::127.0.0.1::{balance.address[1]}::SOCKET"
    manufacturer, model, serial, version = reader.identify().split(",")
    assert (manufacturer, model) == ("ithil", "emulated analytical balance") and serial and version


def test_readings_follow_the_volume_and_are_exactly_the_predicted_ones(pan: Pan, reader: BalanceReader) -> None:
    seen = []
    for n, volume_nl in enumerate((0, 250, ONE_ML_NL, 20 * ONE_ML_NL, 3)):
        pan.volume_nl = volume_nl
        mass = reader.mass_ug()
        assert mass == net_reading_ug(SPEC, volume_nl, n)  # the n-th reading since power-on
        assert abs(mass - volume_nl * 998 // 1000) <= 5 * SPEC.repeatability_ug + SPEC.readability_ug
        seen.append(mass)
    assert seen[3] > seen[2] > seen[1] > seen[0]


def test_noise_statistics_resolution_and_determinism(pan: Pan) -> None:
    spec = BalanceSpec(seed=11)
    true_ug = mass_of_volume_ug(pan.volume_nl, spec.density_ug_per_ul)
    runs = []
    for _ in range(2):
        with BalanceServer(pan, spec) as server, BalanceReader(server.resource) as reader:
            runs.append([reader.mass_ug() for _ in range(400)])
    assert runs[0] == runs[1]  # same seed, same readings
    readings = runs[0]
    assert all(m % spec.readability_ug == 0 for m in readings)
    assert abs(statistics.fmean(readings) - true_ug) < 3 * 15 / 400 ** 0.5 + spec.readability_ug / 2
    # Rounding to 10 µg adds 10/sqrt(12) µg in quadrature to the 15 µg repeatability.
    assert 13 < statistics.stdev(readings) < 18
    with BalanceServer(pan, BalanceSpec(seed=12)) as other, BalanceReader(other.resource) as reader:
        assert [reader.mass_ug() for _ in range(20)] != readings[:20]


def test_the_reading_on_the_wire_has_five_decimals_and_the_unit(raw) -> None:
    reply = raw.query("MEAS:MASS?")
    assert reply.startswith("+0.99") and reply.endswith(" g") and len(reply.split()[0].split(".")[1]) == 5


def test_tare_makes_later_readings_net(pan: Pan, balance: BalanceServer, reader: BalanceReader) -> None:
    reader.tare()  # reading 0 is the tare
    reader.identify()  # TARE answers nothing: a query after it is done once it is answered
    tare = gross_reading_ug(SPEC, pan.volume_nl, 0)
    assert balance.tare_ug == tare
    assert abs(reader.mass_ug()) <= 5 * SPEC.repeatability_ug
    pan.volume_nl += 250
    assert reader.mass_ug() == net_reading_ug(SPEC, pan.volume_nl, 2, tare)


def test_reset_clears_tare_and_error_queue(raw, reader: BalanceReader) -> None:
    reader.tare()
    raw.write("BOGUS")
    reader.reset()
    assert reader.next_error() == (0, "No error")
    assert reader.mass_ug() > 900_000  # gross again: 1 mL of water


def test_unknown_command_queues_undefined_header_and_answers_nothing(raw, reader: BalanceReader) -> None:
    raw.write("MEAS:VOLT?")
    raw.write("fly away")
    assert reader.identify().startswith("ithil")  # nothing was answered to the unknown lines
    assert reader.next_error() == (-113, "Undefined header")
    assert raw.query("syst:err?") == '-113,"Undefined header"'  # case-insensitive
    assert raw.query("SYSTEM:ERROR?") == '0,"No error"'


def test_error_queue_overflow_keeps_the_oldest_and_says_so(raw, reader: BalanceReader) -> None:
    for _ in range(15):
        raw.write("NOPE")
    errors = [reader.next_error() for _ in range(11)]
    assert errors == [(-113, "Undefined header")] * 9 + [(-350, "Queue overflow"), (0, "No error")]


def test_overload_raises_and_tare_keeps_the_old_tare(pan: Pan, balance: BalanceServer, raw,
                                                     reader: BalanceReader) -> None:
    reader.tare()
    reader.identify()  # TARE answers nothing: sync before looking at the balance's tare
    tare = balance.tare_ug
    assert tare > 900_000
    pan.volume_nl = 230 * ONE_ML_NL  # 229.5 g on a 220 g balance
    assert raw.query("MEAS:MASS?") == "+9.9E+37 g"
    assert reader.next_error() == (-231, "Data questionable;Overload")
    with pytest.raises(BalanceOverload, match="capacity") as caught:
        reader.mass_ug()
    assert "-231" in str(caught.value) and isinstance(caught.value, HilError)
    reader.tare()
    assert reader.next_error()[0] == -231 and balance.tare_ug == tare
    pan.volume_nl = ONE_ML_NL
    assert abs(reader.mass_ug()) <= 5 * SPEC.repeatability_ug


def test_a_failing_volume_source_gives_not_a_number_and_a_hardware_error(pan: Pan, reader: BalanceReader) -> None:
    def broken() -> int:
        raise RuntimeError("the emulator is gone")

    with BalanceServer(broken) as server, BalanceReader(server.resource) as failing:
        with pytest.raises(BalanceReadError, match="not a mass") as caught:
            failing.mass_ug()
        assert "-240" in str(caught.value) and not isinstance(caught.value, BalanceOverload)
        assert failing.identify().startswith("ithil")  # the balance still answers


def test_several_clients_at_once_share_one_balance(balance: BalanceServer, reader: BalanceReader) -> None:
    with BalanceReader(balance.resource) as second:
        masses = [r.mass_ug() for _ in range(5) for r in (reader, second)]
    assert masses == [net_reading_ug(SPEC, ONE_ML_NL, n) for n in range(10)]


def ask(sock: socket.socket, *chunks: bytes, answers: int) -> list[str]:
    for chunk in chunks:
        sock.sendall(chunk)
    answer = b""
    while answer.count(b"\n") < answers:
        answer += sock.recv(4096)
    return answer.decode().splitlines()


def test_crlf_lines_partial_writes_and_overlong_lines(balance: BalanceServer) -> None:
    with socket.create_connection(balance.address, timeout=1.0) as sock:
        assert ask(sock, b"*ID", b"N?\r\n", answers=1) == ["ithil,emulated analytical balance,EB000000,1.0"]
        # An overlong line, whole or in pieces (the balance sees no end to it), is one error.
        assert ask(sock, b"X" * 300 + b"\nSYST:ERR?\n", answers=1) == ['-363,"Input buffer overrun"']
        ask(sock, b"X" * 200, answers=0)
        ask(sock, b"X" * 200, answers=0)
        ask(sock, b"X" * 200, answers=0)
        assert ask(sock, b"\nSYST:ERR?\nSYST:ERR?\n", answers=2) == ['-363,"Input buffer overrun"', '0,"No error"']


def test_stop_closes_every_descriptor(pan: Pan) -> None:
    pyvisa.ResourceManager("@py")  # the shared resource manager, opened once per process
    before = len(os.listdir("/proc/self/fd"))
    with BalanceServer(pan) as server:
        with BalanceReader(server.resource) as a, BalanceReader(server.resource) as b:
            a.mass_ug(), b.mass_ug()
    assert len(os.listdir("/proc/self/fd")) == before
    server.stop()  # idempotent


def test_reader_of_a_balance_that_is_not_there(pan: Pan) -> None:
    with BalanceServer(pan) as server:
        resource = server.resource
    with pytest.raises(BalanceReadError, match=f"balance {resource}: cannot open it.*expected"):
        BalanceReader(resource)
    with pytest.raises(BalanceReadError, match="cannot open it"):
        BalanceReader("TCPIP::127.0.0.1::not-a-port::SOCKET")


# ---- the pure parts --------------------------------------------------------------------------------

@pytest.mark.parametrize("reply", ["", "OK", "+0.01234", "0.01234 mg", "+0.01234 g extra", "+.5 g",
                                   "+0.0123456 g", "+9.91E+37 g", "1e-3 g", "-1,\"err\""])
def test_malformed_replies_raise_naming_what_was_received_and_expected(reply: str) -> None:
    with pytest.raises(BalanceReadError) as caught:
        parse_mass_ug(reply)
    assert repr(reply) in str(caught.value) and "expected" in str(caught.value)
    assert not isinstance(caught.value, BalanceOverload)


def test_parse_known_replies() -> None:
    assert parse_mass_ug("+0.01234 g") == 12_340
    assert parse_mass_ug("-0.00010 g\r") == -100
    assert parse_mass_ug("+220.00000 g") == 220_000_000
    assert parse_mass_ug("0.5 g") == 500_000
    with pytest.raises(BalanceOverload, match="'\\+9.9E\\+37 g'.*expected"):
        parse_mass_ug("+9.9E+37 g")


@given(mass_ug=st.integers(-10**9, 10**9), readability_ug=st.sampled_from([1, 2, 10, 20, 100, 1000, 10**6]))
def test_format_and_parse_round_trip(mass_ug: int, readability_ug: int) -> None:
    shown = mass_ug // readability_ug * readability_ug
    assert parse_mass_ug(format_grams(shown, readability_ug)) == shown


def test_noise_is_counter_based_and_centred() -> None:
    assert [noise_ug(SPEC, n) for n in range(50)] == [noise_ug(SPEC, n) for n in range(50)]
    noise = [noise_ug(SPEC, n) for n in range(20_000)]
    assert abs(statistics.fmean(noise)) < 0.5 and abs(statistics.pstdev(noise) - 15) < 0.5
    assert max(noise) < 4 * 15 and min(noise) > -4 * 15 + 0  # a sum of four uniforms ends at ±3.46 SD
    assert noise_ug(BalanceSpec(repeatability_ug=0), 7) == 0


@pytest.mark.parametrize("field, value", [("readability_ug", 0), ("repeatability_ug", -1), ("capacity_ug", 5),
                                          ("density_ug_per_ul", 0), ("seed", -1), ("readability_ug", 1.5)])
def test_spec_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(BalanceConfigError, match=f"BalanceSpec.{field} = .*expected"):
        BalanceSpec(**{field: value})


@pytest.mark.parametrize("listen", ["udp:127.0.0.1:0", "tcp:127.0.0.1", "tcp::5", "tcp:127.0.0.1:99999", "pty",
                                    "tcp:[::1]:0"])
def test_listen_forms(listen: str) -> None:
    with pytest.raises(BalanceConfigError, match="expected tcp:HOST:PORT"):
        parse_balance_listen(listen)
    assert parse_balance_listen("tcp:localhost:0") == ("localhost", 0)


def test_listening_on_a_taken_port_is_a_config_error(balance: BalanceServer) -> None:
    with pytest.raises(BalanceConfigError, match="cannot listen.*expected"):
        BalanceServer(Pan(), listen=f"tcp:127.0.0.1:{balance.address[1]}")
