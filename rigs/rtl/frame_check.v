// frame_check: the receiver's frame check for the protocol's frames (protocol/framing.py):
//
//     COBS( header | payload | [signature] | CRC-32/ISO-HDLC, little-endian ) 0x00
//
// Bytes from uart_rx are COBS-decoded on the fly (a code byte n announces n - 1 data bytes and,
// unless n is 0xFF or the frame ends, a zero after them) into the frame buffer while the CRC runs
// over the decoded bytes. At the 0x00 delimiter the frame is judged, in the order of the
// protocol's own decoder (protocol/decoder.py), so the counts agree frame for frame:
//   LENGTH  more than MAX_ENCODED_BYTES without a delimiter: judged at the first byte too many,
//           then every byte up to the next delimiter is skipped;
//   COBS    the delimiter came inside a block (the encoding is cut short);
//   LENGTH  decoded length below MIN_FRAME_BYTES (header and CRC) or above MAX_FRAME_BYTES;
//   CRC     the CRC register did not end at the residue 0xDEBB20E3;
//   OK      accepted: frame_len bytes (header to CRC) are in the buffer, readable at
//           read_addr until the next frame's first decoded byte.
// A frame in which the UART lost a byte (framing error) is dropped as UART, which the protocol's
// decoder cannot see. Two delimiters in a row are not a frame (a sender's flush). Every frame
// judged pulses frame_end with its verdict; every verdict has a counter (16 bits, wrapping).
// The header's own fields (version, id, length, signature) are the firmware's to check.
`timescale 1ns / 1ps
`default_nettype none

module frame_check #(
    parameter integer MIN_FRAME_BYTES   = 11,    // header (7) and CRC (4)
    parameter integer MAX_FRAME_BYTES   = 1051,  // header, 1024-byte payload, signature (16), CRC
    parameter integer MAX_ENCODED_BYTES = 1056,  // MAX_FRAME_BYTES plus COBS overhead
    parameter integer LENGTH_BITS       = 11     // holds MAX_ENCODED_BYTES + 1
) (
    input  wire                   clk,
    input  wire                   rst,           // synchronous: between frames, counters 0
    input  wire                   byte_valid,    // one cycle: byte_in was received
    input  wire [7:0]             byte_in,
    input  wire                   byte_error,    // one cycle: a byte was lost (UART framing error)
    input  wire [LENGTH_BITS-1:0] read_addr,     // frame buffer read port
    output wire [7:0]             read_data,
    output reg                    frame_end,     // one cycle: a frame was judged
    output reg  [2:0]             verdict,       // VERDICT_* of that frame
    output reg  [LENGTH_BITS-1:0] frame_len,     // decoded bytes of the last accepted frame
    output reg  [15:0]            frames_ok,
    output reg  [15:0]            frames_bad_cobs,
    output reg  [15:0]            frames_bad_length,
    output reg  [15:0]            frames_bad_crc,
    output reg  [15:0]            frames_bad_uart
);
    localparam [2:0] VERDICT_OK = 3'd0, VERDICT_COBS = 3'd1, VERDICT_LENGTH = 3'd2,
                     VERDICT_CRC = 3'd3, VERDICT_UART = 3'd4;
    localparam [31:0] CRC_INIT = 32'hFFFF_FFFF, CRC_RESIDUE = 32'hDEBB_20E3;
    localparam [LENGTH_BITS-1:0] MIN_LEN = MIN_FRAME_BYTES[LENGTH_BITS-1:0],
                                 MAX_LEN = MAX_FRAME_BYTES[LENGTH_BITS-1:0],
                                 MAX_ENCODED = MAX_ENCODED_BYTES[LENGTH_BITS-1:0];

    reg  [7:0]             buffer [0:MAX_FRAME_BYTES-1];
    reg  [LENGTH_BITS-1:0] encoded_len;   // bytes of this frame so far
    reg  [LENGTH_BITS-1:0] decoded_len;
    reg  [7:0]             block_left;    // data bytes left in the current COBS block
    reg                    block_ff;      // the current block's code was 0xFF (no zero after it)
    reg                    at_start;      // no code byte yet in this frame
    reg                    skipping;      // an overlong frame: skip to the delimiter
    reg                    lost_byte;     // the UART lost a byte of this frame
    reg  [31:0]            crc;

    assign read_data = buffer[read_addr];

    // What a non-delimiter byte decodes to: a data byte, or the zero a finished block implies.
    wire       is_code  = (block_left == 8'd0);
    wire       emit     = is_code ? (!at_start && !block_ff) : 1'b1;
    wire [7:0] decoded  = is_code ? 8'd0 : byte_in;
    wire [31:0] crc_next;
    crc32_iso_hdlc u_crc (.crc_in(crc), .data(decoded), .crc_out(crc_next));

    wire delimiter  = byte_valid && (byte_in == 8'd0);
    wire data_byte  = byte_valid && (byte_in != 8'd0);
    wire overlong   = (encoded_len == MAX_ENCODED);
    wire [2:0] judged = lost_byte                                    ? VERDICT_UART
                      : (block_left != 8'd0)                         ? VERDICT_COBS
                      : (decoded_len < MIN_LEN || decoded_len > MAX_LEN) ? VERDICT_LENGTH
                      : (crc != CRC_RESIDUE)                         ? VERDICT_CRC
                      : VERDICT_OK;

    task automatic count(input [2:0] which);
        begin
            frame_end <= 1'b1;
            verdict   <= which;
            case (which)
                VERDICT_OK:     frames_ok         <= frames_ok + 16'd1;
                VERDICT_COBS:   frames_bad_cobs   <= frames_bad_cobs + 16'd1;
                VERDICT_LENGTH: frames_bad_length <= frames_bad_length + 16'd1;
                VERDICT_CRC:    frames_bad_crc    <= frames_bad_crc + 16'd1;
                default:        frames_bad_uart   <= frames_bad_uart + 16'd1;
            endcase
        end
    endtask

    task automatic new_frame;
        begin
            encoded_len <= {LENGTH_BITS{1'b0}};
            decoded_len <= {LENGTH_BITS{1'b0}};
            block_left  <= 8'd0;
            block_ff    <= 1'b0;
            at_start    <= 1'b1;
            lost_byte   <= 1'b0;
            crc         <= CRC_INIT;
        end
    endtask

    always @(posedge clk) begin
        if (data_byte && !skipping && !overlong && emit && decoded_len < MAX_LEN) begin
            buffer[decoded_len] <= decoded;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            new_frame;
            skipping          <= 1'b0;
            frame_end         <= 1'b0;
            verdict           <= VERDICT_OK;
            frame_len         <= {LENGTH_BITS{1'b0}};
            frames_ok         <= 16'd0;
            frames_bad_cobs   <= 16'd0;
            frames_bad_length <= 16'd0;
            frames_bad_crc    <= 16'd0;
            frames_bad_uart   <= 16'd0;
        end else begin
            frame_end <= 1'b0;
            if (delimiter) begin
                if (!skipping && encoded_len != {LENGTH_BITS{1'b0}}) begin
                    count(judged);
                    if (judged == VERDICT_OK) begin
                        frame_len <= decoded_len;
                    end
                end
                skipping <= 1'b0;
                new_frame;
            end else if (skipping) begin
                // an overlong frame's tail: nothing until the delimiter
            end else if (byte_error || data_byte) begin
                if (overlong) begin
                    count(lost_byte ? VERDICT_UART : VERDICT_LENGTH);
                    skipping <= 1'b1;
                end else begin
                    encoded_len <= encoded_len + 1'b1;
                    if (byte_error) begin
                        lost_byte <= 1'b1;
                    end else begin
                        if (is_code) begin
                            block_left <= byte_in - 8'd1;
                            block_ff   <= (byte_in == 8'hFF);
                            at_start   <= 1'b0;
                        end else begin
                            block_left <= block_left - 8'd1;
                        end
                        if (emit) begin
                            decoded_len <= decoded_len + 1'b1;
                            crc         <= crc_next;
                        end
                    end
                end
            end
        end
    end
endmodule

`default_nettype wire
