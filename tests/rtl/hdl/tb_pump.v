// tb_pump: the harness around the pump hardware of rigs/rtl, one toplevel for all the cocotb
// benches so that each simulator builds once (a Verilator build takes tens of seconds).
//
// Four independent sections, each with its own clock made here (Python never drives a clock
// edge) and switched on by its *_clk_on input, so a bench simulates only the logic it checks:
//   motor      step_generator -> coil_sequencer; a one-entry schedule of loads applied at an
//              exact tick; every step logged as {coils, tick} into a wide vector that Python
//              reads once per LOG_DEPTH steps;
//   stall      stall_detector, with step commands and rotor feedback from Python;
//   occlusion  occlusion_detector, with pressure samples from Python;
//   uart       uart_tx sends a byte source (a wide vector Python fills) into uart_rx ->
//              frame_check, or Python drives the line itself.
// Strobes from Python are toggles (a change of the input is one pulse), so Python sets inputs at
// its own pace and never has to return to lower them.
// One cycle is one tick of the 32,768 Hz crystal: a period of 30,518 ns, so that waveforms
// show the pump's time.
`timescale 1ns / 1ps
`default_nettype none

module tb_pump #(
    parameter integer HALF_PERIOD_NS = 15259,
    parameter integer LOG_DEPTH      = 1024,  // steps per read of the step log
    parameter integer LOG_INDEX_BITS = 10,    // log2(LOG_DEPTH)
    parameter integer LOG_BITS       = 36,    // {coils[3:0], tick[31:0]}
    parameter integer SOURCE_BYTES   = 2048   // bytes of the UART byte source per go
) (
    // ---- motor ----
    input  wire                            motor_clk_on,
    input  wire                            motor_rst,
    input  wire [31:0]                     sched_tick,       // the tick at which the next load applies
    input  wire [31:0]                     sched_increment,
    input  wire [31:0]                     sched_phase,
    input  wire [4:0]                      sched_flags,      // {enable, half_step, direction, load_phase, load_inc}
    input  wire [7:0]                      sched_arm,        // != sched_done: a load is armed
    output reg  [7:0]                      sched_done,       // = sched_arm once applied
    output reg  [31:0]                     motor_tick,       // ticks since reset
    output wire                            motor_step,
    output wire [3:0]                      motor_coils,
    output wire [2:0]                      motor_position,
    output wire [31:0]                     motor_phase,
    /* verilator tracing_off */
    output reg  [LOG_DEPTH*LOG_BITS-1:0]   step_log,
    /* verilator tracing_on */
    output reg  [LOG_INDEX_BITS-1:0]       step_log_count,   // entries written in this round
    output reg                             step_log_full,    // one cycle: LOG_DEPTH entries written
    // ---- stall ----
    input  wire                            stall_clk_on,
    input  wire                            stall_rst,
    input  wire                            stall_step_toggle,
    input  wire                            stall_feedback,
    input  wire [15:0]                     stall_window_ticks,
    input  wire [7:0]                      stall_detect_steps,
    input  wire                            stall_clear_toggle,
    output wire                            stall_flag,
    output wire [31:0]                     stall_step_number,
    output wire [7:0]                      stall_missed_steps,
    output wire [31:0]                     stall_steps_commanded,
    output wire                            stall_judged,
    output wire                            stall_judged_missed,
    // ---- occlusion ----
    input  wire                            occ_clk_on,
    input  wire                            occ_rst,
    input  wire                            occ_sample_toggle,
    input  wire signed [31:0]              occ_sample_pa,
    input  wire [3:0]                      occ_rules_enable,
    input  wire signed [31:0]              occ_threshold_pa,
    input  wire signed [31:0]              occ_rise_pa,
    input  wire [9:0]                      occ_rise_steps,
    input  wire signed [31:0]              occ_deficit_pa,
    input  wire [9:0]                      occ_deficit_steps,
    input  wire [15:0]                     occ_cusum_kappa_pa,
    input  wire [15:0]                     occ_cusum_clip_pa,
    input  wire [31:0]                     occ_cusum_h_pa,
    input  wire                            occ_ack_toggle,
    output wire                            occ_ready,
    output wire                            occ_result,
    output wire                            occ_hit,
    output wire [2:0]                      occ_hit_rule,
    output wire [47:0]                     occ_cusum_pa,
    output wire                            occ_occluded,
    output wire [2:0]                      occ_occlusion_rule,
    output wire                            occ_overrun,
    // ---- uart ----
    input  wire                            uart_clk_on,
    input  wire                            uart_rst,
    input  wire [15:0]                     uart_tx_clks_per_bit,
    input  wire [15:0]                     uart_rx_clks_per_bit,
    input  wire                            uart_line_from_python,
    input  wire                            uart_line_python,
    input  wire [SOURCE_BYTES*8-1:0]       uart_source,
    input  wire [12:0]                     uart_source_len,
    input  wire                            uart_source_go_toggle,
    output reg                             uart_source_sent,  // one cycle: the last byte's stop bit is out
    output wire                            uart_tx_line,
    output wire                            uart_rx_valid,
    output wire [7:0]                      uart_rx_data,
    output wire                            uart_rx_framing_error,
    output reg  [31:0]                     uart_rx_bytes,     // bytes received since reset
    input  wire [10:0]                     uart_read_addr,
    output wire [7:0]                      uart_read_data,
    output wire                            uart_frame_end,
    output wire [2:0]                      uart_verdict,
    output wire [10:0]                     uart_frame_len,
    output wire [15:0]                     uart_frames_ok,
    output wire [15:0]                     uart_frames_bad_cobs,
    output wire [15:0]                     uart_frames_bad_length,
    output wire [15:0]                     uart_frames_bad_crc,
    output wire [15:0]                     uart_frames_bad_uart
);
    // ------------------------------------------------------------------------------ clocks
    reg motor_clk = 1'b0, stall_clk = 1'b0, occ_clk = 1'b0, uart_clk = 1'b0;
    always begin wait (motor_clk_on === 1'b1); #(HALF_PERIOD_NS) motor_clk = ~motor_clk; end
    always begin wait (stall_clk_on === 1'b1); #(HALF_PERIOD_NS) stall_clk = ~stall_clk; end
    always begin wait (occ_clk_on === 1'b1);   #(HALF_PERIOD_NS) occ_clk = ~occ_clk;     end
    always begin wait (uart_clk_on === 1'b1);  #(HALF_PERIOD_NS) uart_clk = ~uart_clk;   end

    // ------------------------------------------------------------------------------- motor
    wire sched_due = (sched_arm != sched_done) && (motor_tick + 32'd1 == sched_tick);
    reg  direction, half_step, enable;

    step_generator u_step_generator (
        .clk(motor_clk), .rst(motor_rst),
        .inc_load(sched_due && sched_flags[0]), .inc_in(sched_increment),
        .phase_load(sched_due && sched_flags[1]), .phase_in(sched_phase),
        .phase(motor_phase), .increment(), .step(motor_step));

    coil_sequencer u_coil_sequencer (
        .clk(motor_clk), .rst(motor_rst), .step(motor_step),
        .direction(direction), .half_step(half_step), .enable(enable),
        .position(motor_position), .coils(motor_coils));

    // A step's coils are on the outputs one cycle after its pulse: log it then.
    reg        log_pending;
    reg [31:0] log_pending_tick;

    always @(posedge motor_clk) begin
        if (motor_rst) begin
            motor_tick     <= 32'd0;
            sched_done     <= sched_arm;
            direction      <= 1'b1;
            half_step      <= 1'b0;
            enable         <= 1'b0;
            log_pending    <= 1'b0;
            step_log_count <= {LOG_INDEX_BITS{1'b0}};
            step_log_full  <= 1'b0;
        end else begin
            motor_tick <= motor_tick + 32'd1;
            if (sched_due) begin
                sched_done <= sched_arm;
                direction  <= sched_flags[2];
                half_step  <= sched_flags[3];
                enable     <= sched_flags[4];
            end
            log_pending      <= motor_step;
            log_pending_tick <= motor_tick;
            step_log_full    <= 1'b0;
            if (log_pending) begin
                step_log[step_log_count * LOG_BITS +: LOG_BITS] <= {motor_coils, log_pending_tick};
                step_log_count <= step_log_count + 1'b1;   // wraps to 0 after LOG_DEPTH
                step_log_full  <= (step_log_count == {LOG_INDEX_BITS{1'b1}});
            end
        end
    end

    // ------------------------------------------------------------------------------- stall
    reg stall_step_seen, stall_clear_seen;
    always @(posedge stall_clk) begin
        stall_step_seen  <= stall_step_toggle;
        stall_clear_seen <= stall_clear_toggle;
    end

    stall_detector u_stall_detector (
        .clk(stall_clk), .rst(stall_rst),
        .step(!stall_rst && (stall_step_toggle != stall_step_seen)),
        .feedback_in(stall_feedback),
        .window_ticks(stall_window_ticks), .detect_steps(stall_detect_steps),
        .clear(!stall_rst && (stall_clear_toggle != stall_clear_seen)),
        .stall(stall_flag), .stall_step(stall_step_number), .missed_steps(stall_missed_steps),
        .steps_commanded(stall_steps_commanded), .judged(stall_judged),
        .judged_missed(stall_judged_missed));

    // --------------------------------------------------------------------------- occlusion
    reg occ_sample_seen, occ_ack_seen;
    always @(posedge occ_clk) begin
        occ_sample_seen <= occ_sample_toggle;
        occ_ack_seen    <= occ_ack_toggle;
    end

    occlusion_detector u_occlusion_detector (
        .clk(occ_clk), .rst(occ_rst),
        .sample_valid(!occ_rst && (occ_sample_toggle != occ_sample_seen)), .sample_pa(occ_sample_pa),
        .rules_enable(occ_rules_enable), .threshold_pa(occ_threshold_pa),
        .rise_pa(occ_rise_pa), .rise_steps(occ_rise_steps),
        .deficit_pa(occ_deficit_pa), .deficit_steps(occ_deficit_steps),
        .cusum_kappa_pa(occ_cusum_kappa_pa), .cusum_clip_pa(occ_cusum_clip_pa),
        .cusum_h_pa(occ_cusum_h_pa),
        .ack(!occ_rst && (occ_ack_toggle != occ_ack_seen)),
        .sample_ready(occ_ready), .result_valid(occ_result), .hit(occ_hit), .hit_rule(occ_hit_rule),
        .cusum_pa(occ_cusum_pa), .occluded(occ_occluded), .occlusion_rule(occ_occlusion_rule),
        .overrun(occ_overrun));

    // -------------------------------------------------------------------------------- uart
    reg         source_go_seen, source_active;
    reg  [12:0] source_ptr;
    wire        tx_ready;
    wire        source_valid = source_active && (source_ptr != uart_source_len);
    wire [7:0]  source_byte  = uart_source[source_ptr * 8 +: 8];

    always @(posedge uart_clk) begin
        source_go_seen   <= uart_source_go_toggle;
        uart_source_sent <= 1'b0;
        if (uart_rst) begin
            source_active <= 1'b0;
            source_ptr    <= 13'd0;
        end else if (uart_source_go_toggle != source_go_seen) begin
            source_active <= 1'b1;
            source_ptr    <= 13'd0;
        end else if (source_valid && tx_ready) begin
            source_ptr <= source_ptr + 13'd1;
        end else if (source_active && !source_valid && tx_ready) begin
            source_active    <= 1'b0;
            uart_source_sent <= 1'b1;
        end
    end

    uart_tx u_uart_tx (
        .clk(uart_clk), .rst(uart_rst), .clks_per_bit(uart_tx_clks_per_bit),
        .data_valid(source_valid), .data(source_byte), .ready(tx_ready), .tx(uart_tx_line));

    uart_rx u_uart_rx (
        .clk(uart_clk), .rst(uart_rst),
        .rx(uart_line_from_python ? uart_line_python : uart_tx_line),
        .clks_per_bit(uart_rx_clks_per_bit),
        .data_valid(uart_rx_valid), .data(uart_rx_data), .framing_error(uart_rx_framing_error));

    always @(posedge uart_clk) begin
        if (uart_rst) begin
            uart_rx_bytes <= 32'd0;
        end else if (uart_rx_valid) begin
            uart_rx_bytes <= uart_rx_bytes + 32'd1;
        end
    end

    frame_check u_frame_check (
        .clk(uart_clk), .rst(uart_rst),
        .byte_valid(uart_rx_valid), .byte_in(uart_rx_data), .byte_error(uart_rx_framing_error),
        .read_addr(uart_read_addr), .read_data(uart_read_data),
        .frame_end(uart_frame_end), .verdict(uart_verdict), .frame_len(uart_frame_len),
        .frames_ok(uart_frames_ok), .frames_bad_cobs(uart_frames_bad_cobs),
        .frames_bad_length(uart_frames_bad_length), .frames_bad_crc(uart_frames_bad_crc),
        .frames_bad_uart(uart_frames_bad_uart));

    // ------------------------------------------------------------------ waveforms (Icarus)
    // Under Verilator the trace build writes them (run with --trace); Icarus dumps here when
    // +ithil_waves=<file> is given: the hardware and the harness, not the wide step log.
`ifndef VERILATOR
    reg [8*512-1:0] waves_path;
    initial begin
        if ($value$plusargs("ithil_waves=%s", waves_path)) begin
            $dumpfile(waves_path);
            $dumpvars(0, u_step_generator, u_coil_sequencer, u_stall_detector,
                      u_occlusion_detector, u_uart_tx, u_uart_rx, u_frame_check);
            $dumpvars(0, motor_clk, stall_clk, occ_clk, uart_clk, motor_tick, sched_due,
                      sched_done, step_log_count, step_log_full, direction, half_step, enable,
                      source_ptr, source_active);
        end
    end
`endif
endmodule

`default_nettype wire
