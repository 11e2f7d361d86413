"""cocotb bench: the UART and its frame check, against protocol/'s frames and its decoder.

- Frames built by protocol/, valid and corrupted, go out bit by bit from uart_tx into uart_rx and
  frame_check; every frame's verdict must be what the protocol's decoder says of the same bytes
  (frames.judge_stream), every accepted frame's bytes must be the frame, and every counter the
  decoder's count.
- The receiver alone: Python drives the line bit by bit, 3 % fast or slow, with gaps, a glitch
  and a byte whose stop bit is 0 (that frame is dropped as a UART error).
- The transmitter alone: Python samples its line in the middle of every bit (8N1, LSB first).
Settings (environment): ITHIL_RTL_UART_FRAMES (default 100).
"""

from __future__ import annotations

import os
import random
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer

from frames import Judged, Verdict, judge_stream, random_frame, random_stream, signer_for_tests
from rtl_harness import PERIOD_NS, Toggle, between_edges, cycles, start_section

SOURCE_BYTES = 2048
LOOPBACK_CLKS_PER_BIT = 4


class UartBench:
    def __init__(self, dut: Any, tx_clks_per_bit: int, rx_clks_per_bit: int) -> None:
        self.dut = dut
        self.go = Toggle(dut.uart_source_go_toggle)
        dut.uart_tx_clks_per_bit.value = tx_clks_per_bit
        dut.uart_rx_clks_per_bit.value = rx_clks_per_bit
        dut.uart_line_from_python.value = 0
        dut.uart_line_python.value = 1
        dut.uart_source.value = 0
        dut.uart_source_len.value = 0
        dut.uart_read_addr.value = 0
        self.frames: list[tuple[Verdict, bytes | None, int]] = []

    async def collect(self) -> None:
        """Record every frame the hardware judges, with its bytes when it accepts it."""
        d = self.dut
        buffer = d.u_frame_check.buffer
        while True:
            await RisingEdge(d.uart_frame_end)
            await ReadOnly()
            verdict = Verdict(int(d.uart_verdict.value))
            inner = None
            if verdict is Verdict.OK:
                inner = bytes(int(buffer[i].value) for i in range(int(d.uart_frame_len.value)))
            self.frames.append((verdict, inner, int(d.uart_rx_bytes.value)))

    async def send(self, stream: bytes) -> None:
        """Send bytes through uart_tx, SOURCE_BYTES at a time."""
        d = self.dut
        for start in range(0, len(stream), SOURCE_BYTES):
            chunk = stream[start:start + SOURCE_BYTES]
            d.uart_source.value = int.from_bytes(chunk, "little")
            d.uart_source_len.value = len(chunk)
            self.go.pulse()
            await RisingEdge(d.uart_source_sent)
            await between_edges(d, "uart")

    def counters(self) -> dict[Verdict, int]:
        d = self.dut
        return {Verdict.OK: int(d.uart_frames_ok.value), Verdict.COBS: int(d.uart_frames_bad_cobs.value),
                Verdict.LENGTH: int(d.uart_frames_bad_length.value), Verdict.CRC: int(d.uart_frames_bad_crc.value),
                Verdict.UART: int(d.uart_frames_bad_uart.value)}


def compare(got: list[tuple[Verdict, bytes | None, int]], want: list[Judged], timing: bool = True) -> None:
    """Frame by frame: the verdict, the accepted bytes and (timing) the byte count at the verdict."""
    for i, ((verdict, inner, at), w) in enumerate(zip(got, want)):
        assert (verdict, inner) == (w.verdict, w.inner), (
            f"frame {i}: RTL {verdict.name} {inner.hex() if inner else ''}; "
            f"expected {w.verdict.name} {w.inner.hex() if w.inner else ''}")
        assert not timing or at == w.at_byte, \
            f"frame {i} ({verdict.name}): judged after byte {at} of the stream; expected after byte {w.at_byte}"
    assert len(got) == len(want), f"the RTL judged {len(got)} frames; the protocol's decoder {len(want)}"


@cocotb.test()
async def protocol_frames_accepted_and_corrupt_ones_counted(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED)
    bench = UartBench(dut, LOOPBACK_CLKS_PER_BIT, LOOPBACK_CLKS_PER_BIT)
    await start_section(dut, "uart")
    stream = random_stream(rng, int(os.environ.get("ITHIL_RTL_UART_FRAMES", "100")))
    want, decoder = judge_stream(stream)
    collector = cocotb.start_soon(bench.collect())
    await bench.send(stream)
    await cycles(4)
    collector.cancel()
    compare(bench.frames, want)
    counts = bench.counters()
    assert counts == {v: sum(1 for w in want if w.verdict is v) for v in Verdict}, \
        f"RTL counters {counts}; the protocol's decoder counted {decoder.counts}, {decoder.frames_ok} ok"
    assert {v for v, _, _ in bench.frames} >= {Verdict.OK, Verdict.COBS, Verdict.CRC, Verdict.LENGTH}
    dut._log.info("%d bytes, %d frames: %s", len(stream), len(want), {v.name: n for v, n in counts.items()})


async def drive_line(dut: Any, data: bytes, bit_ns: int, rng: random.Random, bad_stop: int | None = None) -> None:
    """Drive the receiver's line from Python: 8N1 bytes of bit_ns each, random idle gaps.
    bad_stop: the index of a byte whose stop bit is sent as 0 (a framing error)."""
    line = dut.uart_line_python
    for i, byte in enumerate(data):
        bits = [0] + [(byte >> k) & 1 for k in range(8)] + [0 if i == bad_stop else 1]
        for bit in bits:
            line.value = bit
            await Timer(bit_ns, unit="ns")
        line.value = 1
        gap = rng.choice([0, 0, bit_ns // 3, 2 * bit_ns])
        if i == bad_stop:
            gap = 2 * bit_ns  # the line goes idle again after the break
        if gap:
            await Timer(gap, unit="ns")


@cocotb.test()
async def receiver_reads_a_line_driven_bit_by_bit(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED + 1)
    clks_per_bit = 16
    bench = UartBench(dut, clks_per_bit, clks_per_bit)
    dut.uart_line_from_python.value = 1
    await start_section(dut, "uart")
    signer = signer_for_tests()
    collector = cocotb.start_soon(bench.collect())
    frames: list[bytes] = []
    while len(frames) < 4:  # short frames: Python drives every bit of these
        frame = random_frame(rng, signer)
        if len(frame) < 200:
            frames.append(frame)
    want: list[Judged] = []
    for error_pct in (-3, 0, 3):  # the sender's clock 3 % slow, exact, 3 % fast
        bit_ns = round(clks_per_bit * PERIOD_NS * (1 + error_pct / 100))
        for frame in frames:
            await drive_line(dut, frame, bit_ns, rng)
            want += judge_stream(frame)[0]
        # a glitch shorter than half a bit on the idle line is not a start bit
        dut.uart_line_python.value = 0
        await Timer(3 * PERIOD_NS, unit="ns")
        dut.uart_line_python.value = 1
        await Timer(2 * bit_ns, unit="ns")
    # A byte whose stop bit is 0: that frame is dropped as a UART error, the next is accepted.
    await drive_line(dut, frames[0], bit_ns, rng, bad_stop=len(frames[0]) // 2)
    want.append(Judged(Verdict.UART, None, 0))
    await drive_line(dut, frames[-1], bit_ns, rng)
    want += judge_stream(frames[-1])[0]
    await Timer(4 * bit_ns, unit="ns")
    collector.cancel()
    compare(bench.frames, want, timing=False)  # the lost byte is not counted
    assert bench.counters()[Verdict.UART] == 1


@cocotb.test()
async def transmitter_sends_8n1_lsb_first(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED + 2)
    clks_per_bit = 8
    bench = UartBench(dut, clks_per_bit, clks_per_bit)
    await start_section(dut, "uart")
    data = bytes([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80]) + rng.randbytes(10)
    bit_ns = clks_per_bit * PERIOD_NS
    dut.uart_source.value = int.from_bytes(data, "little")
    dut.uart_source_len.value = len(data)
    bench.go.pulse()
    for byte in data:
        await FallingEdge(dut.uart_tx_line)             # the start bit begins
        await Timer(bit_ns // 2, unit="ns")
        bits = [int(dut.uart_tx_line.value)]
        for _ in range(9):
            await Timer(bit_ns, unit="ns")
            bits.append(int(dut.uart_tx_line.value))
        want = [0] + [(byte >> k) & 1 for k in range(8)] + [1]
        assert bits == want, f"byte {byte:#04x}: line bits {bits}, expected start, LSB first, stop: {want}"


@cocotb.test()
async def read_port_returns_the_accepted_frame(dut: Any) -> None:
    rng = random.Random(cocotb.RANDOM_SEED + 3)
    bench = UartBench(dut, LOOPBACK_CLKS_PER_BIT, LOOPBACK_CLKS_PER_BIT)
    await start_section(dut, "uart")
    frame = random_frame(rng, signer_for_tests())
    await bench.send(frame)
    await cycles(4)
    inner = judge_stream(frame)[0][0].inner
    assert inner is not None and int(dut.uart_frame_len.value) == len(inner)
    read = bytearray()
    for addr in range(len(inner)):
        dut.uart_read_addr.value = addr
        await Timer(1, unit="ns")
        read.append(int(dut.uart_read_data.value))
    assert bytes(read) == inner, f"read port {read.hex()}; frame {inner.hex()}"
