// crc32_iso_hdlc: one byte of CRC-32/ISO-HDLC (protocol/crc.py): poly 0x04C11DB7 reflected
// (0xEDB88320), input and output reflected. Combinational: eight shift-and-xor steps.
// The register starts at 0xFFFFFFFF; the CRC of the bytes is the register xor 0xFFFFFFFF, and
// over a frame followed by its own CRC (little-endian) the register ends at the residue
// 0xDEBB20E3, so a receiver checks a frame without knowing where its CRC starts.
`timescale 1ns / 1ps
`default_nettype none

module crc32_iso_hdlc (
    input  wire [31:0] crc_in,    // the register before the byte
    input  wire [7:0]  data,
    output reg  [31:0] crc_out    // the register after it
);
    integer i;
    always @* begin
        crc_out = crc_in ^ {24'd0, data};
        for (i = 0; i < 8; i = i + 1) begin
            crc_out = crc_out[0] ? ((crc_out >> 1) ^ 32'hEDB8_8320) : (crc_out >> 1);
        end
    end
endmodule

`default_nettype wire
