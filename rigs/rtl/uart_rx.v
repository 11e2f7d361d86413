// uart_rx: an 8N1 UART receiver (idle high, start bit 0, eight data bits LSB first, stop bit 1).
//
// The line is synchronised by two flip-flops. A falling edge starts a byte; the start bit is
// checked again half a bit later (a shorter glitch is ignored) and every following bit is
// sampled one bit time apart, in the middle of the bit. A byte whose stop bit reads 0 is not
// delivered: `framing_error` pulses instead and the receiver waits for the line to go idle (a
// break holds it low) before it looks for the next start bit.
// clks_per_bit: clock cycles per bit (clock / baud), at least 4.
`timescale 1ns / 1ps
`default_nettype none

module uart_rx (
    input  wire        clk,
    input  wire        rst,            // synchronous
    input  wire        rx,             // the line, asynchronous
    input  wire [15:0] clks_per_bit,
    output reg         data_valid,     // one cycle: data holds a received byte
    output reg  [7:0]  data,
    output reg         framing_error   // one cycle: a byte ended without its stop bit
);
    localparam [2:0] IDLE = 3'd0, START = 3'd1, DATA = 3'd2, STOP = 3'd3, BREAK = 3'd4;

    reg  [1:0]  rx_sync;
    reg  [2:0]  state;
    reg  [15:0] count;     // cycles into the current bit
    reg  [2:0]  bit_index;
    reg  [7:0]  shift;

    wire        line      = rx_sync[1];
    wire [15:0] half_bit  = {1'b0, clks_per_bit[15:1]};
    wire        mid_start = (count == half_bit - 16'd1);
    wire        mid_bit   = (count == clks_per_bit - 16'd1);

    always @(posedge clk) begin
        if (rst) begin
            rx_sync       <= 2'b11;
            state         <= IDLE;
            count         <= 16'd0;
            bit_index     <= 3'd0;
            shift         <= 8'd0;
            data_valid    <= 1'b0;
            data          <= 8'd0;
            framing_error <= 1'b0;
        end else begin
            rx_sync       <= {rx_sync[0], rx};
            data_valid    <= 1'b0;
            framing_error <= 1'b0;
            count         <= count + 16'd1;
            case (state)
                IDLE: begin
                    count <= 16'd0;
                    if (!line) begin
                        state <= START;
                    end
                end
                START: if (mid_start) begin
                    count     <= 16'd0;
                    bit_index <= 3'd0;
                    state     <= line ? IDLE : DATA;
                end
                DATA: if (mid_bit) begin
                    count     <= 16'd0;
                    shift     <= {line, shift[7:1]};
                    bit_index <= bit_index + 3'd1;
                    if (bit_index == 3'd7) begin
                        state <= STOP;
                    end
                end
                STOP: if (mid_bit) begin
                    count <= 16'd0;
                    if (line) begin
                        data_valid <= 1'b1;
                        data       <= shift;
                        state      <= IDLE;
                    end else begin
                        framing_error <= 1'b1;
                        state         <= BREAK;
                    end
                end
                default: begin                 // BREAK: wait for the idle line
                    count <= 16'd0;
                    if (line) begin
                        state <= IDLE;
                    end
                end
            endcase
        end
    end
endmodule

`default_nettype wire
