"""Small, plausible bugs in the RTL, each of which one bench must catch (the benches' own test).

Each mutant changes one spot of one source, in a copy of rigs/rtl (the sources themselves are
never touched), and names the bench that must fail on it. `test_rtl.py` runs them (slow) on
Icarus: a mutant that passes its bench shows a check that cannot fail.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from rtl_rig import Rig, load_rig


@dataclass(frozen=True)
class Mutant:
    file: str
    old: str
    new: str
    bench: str
    bug: str


MUTANTS = (
    Mutant("step_generator.v", "step  <= sum[32];", "step  <= phase_load ? 1'b0 : sum[32];", "tb_motor",
           "a phase load swallows the step of its tick"),
    Mutant("step_generator.v", "phase <= phase_load ? phase_in : sum[31:0];", "phase <= sum[31:0];", "tb_motor",
           "the phase cannot be loaded"),
    Mutant("step_generator.v", "if (inc_load) begin", "if (inc_load && !phase_load) begin", "tb_motor",
           "a phase load drops the increment load of the same tick"),
    Mutant("coil_sequencer.v", "(half_step || !position[0])", "(half_step)", "tb_motor",
           "full stepping from a one-winding position stays one-winding"),
    Mutant("coil_sequencer.v", "3'd5:    pattern = 4'b1010;", "3'd5:    pattern = 4'b1001;", "tb_motor",
           "a wrong winding pattern"),
    Mutant("coil_sequencer.v", "(step && enable) ? moved", "step ? moved", "tb_motor",
           "a disabled motor still moves"),
    Mutant("stall_detector.v", "misses >= detect_steps", "misses > detect_steps", "tb_stall",
           "one miss too many before a stall"),
    Mutant("stall_detector.v", "(age <= window_ticks)", "(age < window_ticks)", "tb_stall",
           "the window one cycle short"),
    Mutant("stall_detector.v", "end else if (achieved) begin\n                missed_steps <= 8'd0;",
           "end else if (achieved) begin\n                missed_steps <= missed_steps;", "tb_stall",
           "a landed step does not reset the misses"),
    Mutant("stall_detector.v", "(age >= window_ticks || step)", "(age >= window_ticks)", "tb_stall",
           "a new command does not judge the open window"),
    Mutant("stall_detector.v", "feedback_prev <= feedback_sync[1];", "feedback_prev <= 1'b0;", "tb_stall",
           "feedback as a level: a stuck sensor hides a stall"),
    Mutant("occlusion_detector.v", "(cusum_next > {16'd0, cusum_h_pa})", "(cusum_next >= {16'd0, cusum_h_pa})",
           "tb_occlusion", "CUSUM alarm at S = h"),
    Mutant("occlusion_detector.v", "(step_rise < clip_pa) ? step_rise : clip_pa",
           "(step_rise < clip_pa) ? step_rise : step_rise", "tb_occlusion", "increments not clipped"),
    Mutant("occlusion_detector.v", "(!rules_enable[0] || cusum_sum[48]) ? 48'd0", "(!rules_enable[0]) ? 48'd0",
           "tb_occlusion", "S not floored at 0"),
    Mutant("occlusion_detector.v", "wire signed [33:0] step_rise   = have_last ?",
           "wire signed [33:0] step_rise   = 1'b1 ?", "tb_occlusion", "the first sample's increment is not 0"),
    Mutant("occlusion_detector.v", "(filled >= rise_steps)", "(filled > rise_steps)", "tb_occlusion",
           "the rise rule waits a sample too long"),
    Mutant("occlusion_detector.v", "(rise_diff >= rise_limit)", "(rise_diff > rise_limit)", "tb_occlusion",
           "rise at the limit does not fire"),
    Mutant("occlusion_detector.v", "(deficit_diff >= deficit_limit)", "(deficit_diff > deficit_limit)",
           "tb_occlusion", "deficit at the limit does not fire"),
    Mutant("occlusion_detector.v", "(pressure >= threshold_pa)", "(pressure > threshold_pa)", "tb_occlusion",
           "threshold at the limit does not fire"),
    Mutant("occlusion_detector.v", "wire signed [32:0] rise_limit    = {rise_pa[31], rise_pa};",
           "wire signed [32:0] rise_limit    = {1'b0, rise_pa};", "tb_occlusion", "a negative rise limit"),
    Mutant("occlusion_detector.v", ": fire_rise    ? RULE_RISE\n                    : fire_deficit ? RULE_DEFICIT",
           ": fire_deficit ? RULE_DEFICIT\n                    : fire_rise    ? RULE_RISE", "tb_occlusion",
           "the rules' priority"),
    Mutant("occlusion_detector.v", "if (rule != RULE_NONE && (!occluded || ack)) begin",
           "if (rule != RULE_NONE && (!occluded)) begin", "tb_occlusion", "an alarm on the ack's cycle is lost"),
    Mutant("occlusion_detector.v", "if (sample_valid && state != IDLE) begin", "if (1'b0) begin", "tb_occlusion",
           "a dropped sample is not flagged"),
    Mutant("frame_check.v", "emit     = is_code ? (!at_start && !block_ff) : 1'b1;",
           "emit     = is_code ? (!at_start) : 1'b1;", "tb_uart", "a zero after a 0xFF block"),
    Mutant("frame_check.v", "block_ff   <= (byte_in == 8'hFF);", "block_ff   <= 1'b0;", "tb_uart",
           "0xFF blocks not known"),
    Mutant("frame_check.v", "wire overlong   = (encoded_len == MAX_ENCODED);",
           "wire overlong   = (encoded_len == MAX_ENCODED + 1'b1);", "tb_uart", "an overlong frame judged a byte late"),
    Mutant("frame_check.v", "(decoded_len < MIN_LEN || decoded_len > MAX_LEN)", "(decoded_len < MIN_LEN)",
           "tb_uart", "no upper bound on the decoded length"),
    Mutant("frame_check.v", "if (!skipping && encoded_len != {LENGTH_BITS{1'b0}}) begin", "if (!skipping) begin",
           "tb_uart", "an empty frame counted"),
    Mutant("frame_check.v", "wire [2:0] judged = lost_byte ", "wire [2:0] judged = 1'b0 ", "tb_uart",
           "a frame that lost a byte is not dropped as such"),
    Mutant("crc32_iso_hdlc.v", "32'hEDB8_8320", "32'hEDB8_8321", "tb_uart", "a wrong polynomial"),
    Mutant("uart_rx.v", "shift     <= {line, shift[7:1]};", "shift     <= {shift[6:0], line};", "tb_uart",
           "MSB first"),
    Mutant("uart_rx.v", "state     <= line ? IDLE : DATA;", "state     <= DATA;", "tb_uart",
           "a glitch taken for a start bit"),
    Mutant("uart_rx.v", "wire        mid_start = (count == half_bit - 16'd1);",
           "wire        mid_start = (count == 16'd0);", "tb_uart", "bits sampled at their edge, not their middle"),
    Mutant("uart_rx.v", "if (line) begin\n                        state <= IDLE;\n                    end\n"
                        "                end\n            endcase",
           "state <= IDLE;\n                end\n            endcase", "tb_uart", "a break not waited out"),
    Mutant("uart_tx.v", "shift     <= {1'b1, data};", "shift     <= {1'b1, data[0], data[7:1]};", "tb_uart",
           "bits sent out of order"),
)


def mutant_rig(mutant: Mutant, folder: Path, rig: Rig | None = None) -> Rig:
    """A copy of the rig's sources in `folder` with the mutant applied; the rig that builds it."""
    rig = rig or load_rig()
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for source in rig.sources:
        copy = folder / source.name
        shutil.copyfile(source, copy)
        sources.append(copy)
    target = folder / mutant.file
    text = target.read_text()
    if text.count(mutant.old) != 1:
        raise ValueError(f"mutant of {mutant.file} ({mutant.bug}): {mutant.old!r} is not there exactly once")
    target.write_text(text.replace(mutant.old, mutant.new))
    return dataclasses.replace(rig, sources=tuple(sources))
