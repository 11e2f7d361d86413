// stall_detector: commanded versus achieved motor steps, with the model's decision rule.
//
// Every commanded step opens a feedback window of `window_ticks` cycles. The rotor's step
// feedback (an asynchronous level from the rotor sensor; each rising edge is one achieved step)
// is synchronised by two flip-flops; its edge counts for the open window when it arrives within
// the window (age 1..window_ticks cycles after the command cycle, the synchroniser's two cycles
// included). A step is judged:
//   - achieved when its feedback arrives in its window: the consecutive-miss count drops to 0
//     (the rotor turns, so misses must be consecutive to mean a stall);
//   - missed when its window closes without feedback, or when the next step is commanded first.
// A stall is declared when a miss makes the consecutive-miss count reach `detect_steps`
// (firmware_model PumpConfig.stall_detect_steps, 3 by default): exactly the model's rule, which
// counts missed steps and resets on a landed one. `stall` then latches, with the number of the
// step that declared it, until `clear` (the firmware's recovery). Feedback with no window open
// is ignored.
`timescale 1ns / 1ps
`default_nettype none

module stall_detector (
    input  wire        clk,
    input  wire        rst,               // synchronous: no window, no misses, no stall
    input  wire        step,              // one-cycle pulse: a commanded step
    input  wire        feedback_in,       // rotor step feedback, asynchronous; rising edge = achieved
    input  wire [15:0] window_ticks,      // cycles a command waits for its feedback
    input  wire [7:0]  detect_steps,      // consecutive misses that declare a stall (>= 1)
    input  wire        clear,             // one-cycle pulse: forget the misses and the stall
    output reg         stall,             // latched until clear
    output reg  [31:0] stall_step,        // number (from 1) of the commanded step that declared it
    output reg  [7:0]  missed_steps,      // consecutive missed steps, saturating at 255
    output reg  [31:0] steps_commanded,   // commanded steps since reset
    output reg         judged,            // one cycle: a step was judged ...
    output reg         judged_missed      // ... and it was missed
);
    reg  [1:0]  feedback_sync;
    reg         feedback_prev;
    reg         window_open;
    reg  [15:0] age;          // cycles since the open window's command
    reg  [31:0] window_step;  // number of the step the open window judges

    wire feedback_edge = feedback_sync[1] && !feedback_prev;
    wire in_window     = window_open && (age <= window_ticks);
    wire achieved      = in_window && feedback_edge;
    wire missed        = window_open && !achieved && (age >= window_ticks || step);
    wire [7:0] misses  = (missed_steps == 8'hFF) ? 8'hFF : missed_steps + 8'd1;

    always @(posedge clk) begin
        if (rst) begin
            feedback_sync   <= 2'b00;
            feedback_prev   <= 1'b0;
            window_open     <= 1'b0;
            age             <= 16'd0;
            window_step     <= 32'd0;
            stall           <= 1'b0;
            stall_step      <= 32'd0;
            missed_steps    <= 8'd0;
            steps_commanded <= 32'd0;
            judged          <= 1'b0;
            judged_missed   <= 1'b0;
        end else begin
            feedback_sync <= {feedback_sync[0], feedback_in};
            feedback_prev <= feedback_sync[1];
            judged        <= achieved || missed;
            judged_missed <= missed;

            if (step) begin                     // a new window replaces any open one
                window_open     <= 1'b1;
                age             <= 16'd1;
                window_step     <= steps_commanded + 32'd1;
                steps_commanded <= steps_commanded + 32'd1;
            end else if (achieved || missed) begin
                window_open <= 1'b0;
            end else if (window_open) begin
                age <= age + 16'd1;
            end

            if (clear) begin
                missed_steps <= 8'd0;
                stall        <= 1'b0;
                stall_step   <= 32'd0;
            end else if (achieved) begin
                missed_steps <= 8'd0;
            end else if (missed) begin
                missed_steps <= misses;
                if (!stall && misses >= detect_steps) begin
                    stall      <= 1'b1;
                    stall_step <= window_step;
                end
            end
        end
    end
endmodule

`default_nettype wire
