// uart_tx: an 8N1 UART transmitter. A byte offered while `ready` goes out as a start bit, eight
// data bits LSB first and a stop bit, each clks_per_bit cycles long; the line idles high.
// Offered back to back (valid held high), bytes follow each other with no idle time.
`timescale 1ns / 1ps
`default_nettype none

module uart_tx (
    input  wire        clk,
    input  wire        rst,            // synchronous: line idle
    input  wire [15:0] clks_per_bit,   // at least 1
    input  wire        data_valid,     // a byte is offered; taken when ready is high too
    input  wire [7:0]  data,
    output wire        ready,          // no byte in flight
    output reg         tx              // the line
);
    reg  [8:0]  shift;      // the bits still to send after the current one, LSB first
    reg  [3:0]  bits_left;  // bits still to send, the current one included
    reg  [15:0] count;      // cycles into the current bit

    assign ready = (bits_left == 4'd0);

    always @(posedge clk) begin
        if (rst) begin
            shift     <= 9'h1FF;
            bits_left <= 4'd0;
            count     <= 16'd0;
            tx        <= 1'b1;
        end else if (ready) begin
            if (data_valid) begin
                tx        <= 1'b0;                 // start bit
                shift     <= {1'b1, data};         // data, then the stop bit
                bits_left <= 4'd10;
                count     <= 16'd0;
            end
        end else if (count == clks_per_bit - 16'd1) begin
            count     <= 16'd0;
            bits_left <= bits_left - 4'd1;
            if (bits_left != 4'd1) begin
                tx    <= shift[0];
                shift <= {1'b1, shift[8:1]};
            end else begin
                tx    <= 1'b1;                     // idle
            end
        end else begin
            count <= count + 16'd1;
        end
    end
endmodule

`default_nettype wire
