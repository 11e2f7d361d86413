// step_generator: the motor's step generator, a 32-bit phase accumulator (numerically
// controlled oscillator), the same one as firmware_model.step_scheduler.StepScheduler.
//
// One clock cycle is one tick of the pump's 32,768 Hz crystal. At every tick the phase gains
// the increment; a carry out of bit 31 (an overflow of 2^32) is one motor step. So the k-th step
// after a load falls on tick ceil((k * 2^32 - phase) / increment), exactly as in the model.
//
// Loads take effect at a tick and carry the phase as the model does:
// - inc_load at tick t: tick t still adds the old increment; ticks after t add inc_in
//   (StepScheduler.advance(t) then set_increment(inc_in)).
// - phase_load at tick t: tick t adds (and may step) as usual, then the phase after tick t is
//   phase_in (StepScheduler.advance(t) then phase = phase_in).
// `step` is registered: it is high for the one cycle after the tick whose add overflowed, when a
// tick counter clocked alongside holds that tick.
`timescale 1ns / 1ps
`default_nettype none

module step_generator (
    input  wire        clk,         // the 32,768 Hz tick
    input  wire        rst,         // synchronous, active high: phase 0, increment 0 (stopped)
    input  wire        inc_load,    // ticks after this one add inc_in
    input  wire [31:0] inc_in,      // phase increment per tick (0: stopped)
    input  wire        phase_load,  // the phase after this tick is phase_in
    input  wire [31:0] phase_in,
    output reg  [31:0] phase,       // the phase after the last tick
    output reg  [31:0] increment,   // the increment the next tick adds
    output reg         step         // one cycle: the last tick made a step
);
    wire [32:0] sum = {1'b0, phase} + {1'b0, increment};

    always @(posedge clk) begin
        if (rst) begin
            phase     <= 32'd0;
            increment <= 32'd0;
            step      <= 1'b0;
        end else begin
            step  <= sum[32];
            phase <= phase_load ? phase_in : sum[31:0];
            if (inc_load) begin
                increment <= inc_in;
            end
        end
    end
endmodule

`default_nettype wire
