// coil_sequencer: drives the two windings of the pump's bipolar stepper motor from step pulses.
//
// The electrical position (0..7) indexes the half-step table below; a step moves it forward or
// back. Half stepping moves one entry (8 states per electrical cycle, alternating one and two
// windings on). Full stepping keeps two windings on (the odd entries) and moves two entries; from
// an even entry (after half stepping) the first full step goes to the neighbouring odd entry, so
// full stepping is always two-phase-on. With enable low every coil output is off (the motor is
// free and uses no current) and steps are ignored: the position holds.
//
//   position   0    1      2    3      4    5      6    7
//   windings   A+   A+ B+  B+   A- B+  A-   A- B-  B-   A+ B-
//
// coils = {b_neg, b_pos, a_neg, a_pos}: the four inputs of a dual H-bridge (a_pos drives
// winding A forward, a_neg backward; never both). The outputs are registered: they change on
// the clock edge after the step pulse, glitch-free.
`timescale 1ns / 1ps
`default_nettype none

module coil_sequencer (
    input  wire       clk,
    input  wire       rst,        // synchronous: position 0, coils off
    input  wire       step,       // one-cycle step pulse (from step_generator)
    input  wire       direction,  // 1: forward (position counts up), 0: reverse
    input  wire       half_step,  // 1: half stepping, 0: full stepping (two-phase-on)
    input  wire       enable,     // 0: all coils off, steps ignored
    output reg  [2:0] position,   // electrical position in the half-step table
    output reg  [3:0] coils       // {b_neg, b_pos, a_neg, a_pos}
);
    // The winding pattern of a position.
    function automatic [3:0] pattern(input [2:0] pos);
        case (pos)
            3'd0:    pattern = 4'b0001;  // A+
            3'd1:    pattern = 4'b0101;  // A+ B+
            3'd2:    pattern = 4'b0100;  // B+
            3'd3:    pattern = 4'b0110;  // A- B+
            3'd4:    pattern = 4'b0010;  // A-
            3'd5:    pattern = 4'b1010;  // A- B-
            3'd6:    pattern = 4'b1000;  // B-
            default: pattern = 4'b1001;  // A+ B-
        endcase
    endfunction

    // How far one step moves: 1 when half stepping or when leaving an even (one-winding)
    // position, else 2.
    wire [2:0] stride = (half_step || !position[0]) ? 3'd1 : 3'd2;
    wire [2:0] moved  = direction ? position + stride : position - stride;
    wire [2:0] next_position = (step && enable) ? moved : position;

    always @(posedge clk) begin
        if (rst) begin
            position <= 3'd0;
            coils    <= 4'b0000;
        end else begin
            position <= next_position;
            coils    <= enable ? pattern(next_position) : 4'b0000;
        end
    end
endmodule

`default_nettype wire
