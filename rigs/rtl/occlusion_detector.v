// occlusion_detector: the outlet-pressure comparators that flag a catheter occlusion, with the
// rules of firmware_model.occlusion (scan_per_step), one pressure sample per motor step.
//
// Rules, each switched on or off by `rules_enable` (a setting of None in the model is off):
//   bit 0  CUSUM      S = max(0, S + min(d, clip) - kappa), d = p - previous p (0 for the very
//                     first sample); fires when S > h. The clip makes a posture change count
//                     once: this is the detector's debounce (a single spike adds at most
//                     clip - kappa, so h needs several rising samples in a row).
//   bit 1  rise       p - (the sample rise_steps back) >= rise_pa, once that sample exists.
//   bit 2  deficit    p - (the sample deficit_steps back) >= deficit_pa, once it exists; the
//                     model's volume rule (p - old) * compliance // 1000 >= deficit_nl is the same
//                     comparison with deficit_pa = ceil(deficit_nl * 1000 / compliance), the
//                     threshold its vectorised scan uses too (the host computes it).
//   bit 3  threshold  p >= threshold_pa.
// When several fire on one sample the reported rule is the first of CUSUM, rise, deficit,
// threshold (the model's order), coded as firmware_model.occlusion.Rule: 1 threshold, 2 rise,
// 3 CUSUM, 4 volume deficit.
//
// The window rules need the last HISTORY_DEPTH samples: a single-port RAM (a block RAM in an
// FPGA) read twice and written once per sample, so a sample takes four cycles; `sample_ready`
// says when the next may come. A sample offered while busy is dropped and sets `overrun`.
// The first alarm latches `occluded` and its rule until `ack` (the model latches the alarm until
// it is acknowledged); the per-sample outputs go on being updated, as the model's state does.
// S is 48 bits wide: the model's integer is unbounded, and S grows by at most clip (< 2^16) per
// sample, so it stays exact for 2^32 samples, over a century of steps at the pump's top rate.
`timescale 1ns / 1ps
`default_nettype none

module occlusion_detector #(
    parameter integer HISTORY_DEPTH = 512,  // samples kept; rise_steps and deficit_steps <= it
    parameter integer HISTORY_BITS  = 9     // log2(HISTORY_DEPTH)
) (
    input  wire                    clk,
    input  wire                    rst,            // synchronous: empty history, S = 0, no alarm
    input  wire                    sample_valid,   // one cycle: sample_pa is the next sample
    input  wire signed [31:0]      sample_pa,      // outlet pressure, Pa
    input  wire [3:0]              rules_enable,   // {threshold, deficit, rise, cusum}
    input  wire signed [31:0]      threshold_pa,
    input  wire signed [31:0]      rise_pa,
    input  wire [HISTORY_BITS:0]   rise_steps,     // 1..HISTORY_DEPTH
    input  wire signed [31:0]      deficit_pa,
    input  wire [HISTORY_BITS:0]   deficit_steps,  // 1..HISTORY_DEPTH
    input  wire [15:0]             cusum_kappa_pa,
    input  wire [15:0]             cusum_clip_pa,  // > 0
    input  wire [31:0]             cusum_h_pa,
    input  wire                    ack,            // one cycle: clear the latched alarm and overrun
    output wire                    sample_ready,   // a sample may be offered now
    output reg                     result_valid,   // one cycle: the outputs below are this sample's
    output reg                     hit,            // some rule fired on this sample
    output reg  [2:0]              hit_rule,       // the first rule that fired (Rule code), 0: none
    output reg  [47:0]             cusum_pa,       // S after this sample
    output reg                     occluded,       // latched: an alarm since the last ack
    output reg  [2:0]              occlusion_rule, // the rule of the latched alarm
    output reg                     overrun         // a sample came while busy (dropped)
);
    localparam [2:0] RULE_NONE = 3'd0, RULE_THRESHOLD = 3'd1, RULE_RISE = 3'd2,
                     RULE_CUSUM = 3'd3, RULE_DEFICIT = 3'd4;
    localparam [HISTORY_BITS:0] FULL = HISTORY_DEPTH[HISTORY_BITS:0];
    localparam [1:0] IDLE = 2'd0, READ_RISE = 2'd1, READ_DEFICIT = 2'd2, DECIDE = 2'd3;

    reg  [31:0]             history [0:HISTORY_DEPTH-1];
    reg  [31:0]             history_q;      // synchronous read port
    reg  [HISTORY_BITS-1:0] write_ptr;      // where the next sample goes
    reg  [HISTORY_BITS:0]   filled;         // samples held, saturating at HISTORY_DEPTH
    reg  [1:0]              state;
    reg  signed [31:0]      pressure;       // the sample being judged
    reg  signed [31:0]      rise_old;       // the sample rise_steps back
    reg  signed [31:0]      last_pa;        // the previous sample
    reg                     have_last;

    assign sample_ready = (state == IDLE);

    wire [HISTORY_BITS-1:0] read_ptr = write_ptr -
        ((state == READ_RISE) ? rise_steps[HISTORY_BITS-1:0] : deficit_steps[HISTORY_BITS-1:0]);

    // Single port: written in DECIDE, read in the other states.
    always @(posedge clk) begin
        if (state == DECIDE) begin
            history[write_ptr] <= pressure;
        end else begin
            history_q <= history[read_ptr];
        end
    end

    // The rules on the sample in `pressure`, with the deficit sample in history_q (state DECIDE).
    wire signed [33:0] step_rise   = have_last ? {{2{pressure[31]}}, pressure} - {{2{last_pa[31]}}, last_pa}
                                               : 34'sd0;
    wire signed [33:0] clip_pa     = {18'd0, cusum_clip_pa};
    wire signed [33:0] clipped     = (step_rise < clip_pa) ? step_rise : clip_pa;
    wire signed [48:0] cusum_sum   = {1'b0, cusum_pa} + {{15{clipped[33]}}, clipped} - {33'd0, cusum_kappa_pa};
    wire [47:0]        cusum_next  = (!rules_enable[0] || cusum_sum[48]) ? 48'd0 : cusum_sum[47:0];
    wire signed [32:0] rise_diff     = {pressure[31], pressure} - {rise_old[31], rise_old};
    wire signed [32:0] deficit_diff  = {pressure[31], pressure} - {history_q[31], history_q};
    wire signed [32:0] rise_limit    = {rise_pa[31], rise_pa};
    wire signed [32:0] deficit_limit = {deficit_pa[31], deficit_pa};
    wire fire_cusum     = rules_enable[0] && (cusum_next > {16'd0, cusum_h_pa});
    wire fire_rise      = rules_enable[1] && (filled >= rise_steps)
                          && (rise_diff >= rise_limit);
    wire fire_deficit   = rules_enable[2] && (filled >= deficit_steps)
                          && (deficit_diff >= deficit_limit);
    wire fire_threshold = rules_enable[3] && (pressure >= threshold_pa);
    wire [2:0] rule = fire_cusum   ? RULE_CUSUM
                    : fire_rise    ? RULE_RISE
                    : fire_deficit ? RULE_DEFICIT
                    : fire_threshold ? RULE_THRESHOLD
                    : RULE_NONE;

    always @(posedge clk) begin
        if (rst) begin
            write_ptr      <= {HISTORY_BITS{1'b0}};
            filled         <= {(HISTORY_BITS + 1){1'b0}};
            state          <= IDLE;
            pressure       <= 32'sd0;
            rise_old       <= 32'sd0;
            last_pa        <= 32'sd0;
            have_last      <= 1'b0;
            result_valid   <= 1'b0;
            hit            <= 1'b0;
            hit_rule       <= RULE_NONE;
            cusum_pa       <= 48'd0;
            occluded       <= 1'b0;
            occlusion_rule <= RULE_NONE;
            overrun        <= 1'b0;
        end else begin
            result_valid <= 1'b0;
            if (ack) begin
                occluded       <= 1'b0;
                occlusion_rule <= RULE_NONE;
                overrun        <= 1'b0;
            end
            if (sample_valid && state != IDLE) begin
                overrun <= 1'b1;
            end
            case (state)
                IDLE: if (sample_valid) begin
                    pressure <= sample_pa;
                    state    <= READ_RISE;
                end
                READ_RISE: state <= READ_DEFICIT;     // history_q <= the sample rise_steps back
                READ_DEFICIT: begin                   // history_q <= the sample deficit_steps back
                    rise_old <= history_q;
                    state    <= DECIDE;
                end
                default: begin                        // DECIDE
                    write_ptr    <= write_ptr + 1'b1;
                    if (filled != FULL) begin
                        filled <= filled + 1'b1;
                    end
                    last_pa      <= pressure;
                    have_last    <= 1'b1;
                    cusum_pa     <= cusum_next;
                    result_valid <= 1'b1;
                    hit          <= (rule != RULE_NONE);
                    hit_rule     <= rule;
                    if (rule != RULE_NONE && (!occluded || ack)) begin  // an ack clears the old alarm
                        occluded       <= 1'b1;
                        occlusion_rule <= rule;
                    end
                    state        <= IDLE;
                end
            endcase
        end
    end
endmodule

`default_nettype wire
