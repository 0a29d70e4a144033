// Simulated DRAM for the Tandem benches.
//
// * In-order request queue; a read request's first beat is ready cfg_latency cycles after the
//   request was accepted, so requests overlap their latencies (many outstanding bursts).
// * Bandwidth: a token bucket refilled by cfg_bw bytes per cycle and capped at one beat, so the
//   port moves at most min(cfg_bw, BEAT) bytes per cycle, shared by reads and writes.
// * Write beats are buffered as they arrive and retired with their request (byte strobes).
// * Bulk access for the bench: a rising edge on `load` reads "dram_in.hex" ($readmemh, one
//   BEAT-byte word per line, @address lines allowed); a rising edge on `dump` writes words
//   [dump_base, dump_base + dump_words) to "dram_out.hex". Both files are in the simulator's
//   working directory.
// * `wack` pulses when a write burst has been committed to memory.
// * `oob` is set (sticky) by any access beyond WORDS.
module tandem_dram #(
    parameter BEAT = 16,
    parameter WORDS = 1048576,
    parameter QDEPTH = 64
) (
    input clk,
    input rst,
    input [15:0] cfg_latency,
    input [15:0] cfg_bw,
    input load,
    input dump,
    input [31:0] dump_base,
    input [31:0] dump_words,
    output reg oob,
    output reg wack,
    input req_valid,
    output req_ready,
    input [31:0] req_addr,
    input [7:0] req_len,
    input req_write,
    input w_valid,
    output w_ready,
    input [8*BEAT-1:0] w_data,
    input [BEAT-1:0] w_strb,
    output r_valid,
    input r_ready,
    output [8*BEAT-1:0] r_data
);
  localparam QB = $clog2(QDEPTH);
  localparam AB = $clog2(BEAT);

  reg [8*BEAT-1:0] mem[0:WORDS-1];

  always @(posedge load) $readmemh("dram_in.hex", mem);
  always @(posedge dump) $writememh("dram_out.hex", mem, dump_base, dump_base + dump_words - 1);

  reg [63:0] now;
  reg [31:0] q_addr[0:QDEPTH-1];
  reg [7:0] q_len[0:QDEPTH-1];
  reg q_write[0:QDEPTH-1];
  reg [63:0] q_time[0:QDEPTH-1];
  reg [QB:0] q_head, q_tail;
  wire q_empty = q_head == q_tail;
  // occupancy in QB+1 bits: compared at 32 bits, (tail - head) would miss "full" once the
  // pointers wrap, and a new request would overwrite the queue's head
  wire [QB:0] q_used = q_tail - q_head;
  wire q_full = q_used == QDEPTH;
  assign req_ready = !q_full;

  reg [8*BEAT-1:0] wf_data[0:QDEPTH-1];
  reg [BEAT-1:0] wf_strb[0:QDEPTH-1];
  reg [QB:0] wf_head, wf_tail;
  wire wf_empty = wf_head == wf_tail;
  wire [QB:0] wf_used = wf_tail - wf_head;
  assign w_ready = wf_used != QDEPTH;

  reg [15:0] credit;
  reg [7:0] count;
  wire [QB-1:0] h = q_head[QB-1:0];
  wire [31:0] word = (q_addr[h] >> AB) + count;
  wire can_beat = credit >= BEAT;
  wire head_read = !q_empty && !q_write[h] && now >= q_time[h];
  wire head_write = !q_empty && q_write[h] && !wf_empty;
  assign r_valid = head_read && can_beat;
  assign r_data = word < WORDS ? mem[word] : {8 * BEAT{1'bx}};
  wire read_beat = r_valid && r_ready;
  wire write_beat = head_write && can_beat;
  wire beat = read_beat || write_beat;
  wire [16:0] refill = (beat ? credit - BEAT : credit) + cfg_bw;

  integer i;
  always @(posedge clk) begin
    if (rst) begin
      now <= 0;
      q_head <= 0;
      q_tail <= 0;
      wf_head <= 0;
      wf_tail <= 0;
      credit <= 0;
      count <= 0;
      oob <= 0;
      wack <= 0;
    end else begin
      now <= now + 1;
      wack <= beat && q_write[h] && count == q_len[h];
      credit <= refill > BEAT ? BEAT : refill[15:0];
      if (req_valid && req_ready) begin
        q_addr[q_tail[QB-1:0]] <= req_addr;
        q_len[q_tail[QB-1:0]] <= req_len;
        q_write[q_tail[QB-1:0]] <= req_write;
        q_time[q_tail[QB-1:0]] <= now + cfg_latency;
        q_tail <= q_tail + 1;
      end
      if (w_valid && w_ready) begin
        wf_data[wf_tail[QB-1:0]] <= w_data;
        wf_strb[wf_tail[QB-1:0]] <= w_strb;
        wf_tail <= wf_tail + 1;
      end
      if (beat) begin
        if (word >= WORDS) oob <= 1;
        if (write_beat) begin
          for (i = 0; i < BEAT; i = i + 1)
            if (wf_strb[wf_head[QB-1:0]][i] && word < WORDS)
              mem[word][8*i+:8] <= wf_data[wf_head[QB-1:0]][8*i+:8];
          wf_head <= wf_head + 1;
        end
        if (count == q_len[h]) begin
          count <= 0;
          q_head <= q_head + 1;
        end else count <= count + 1;
      end
    end
  end
endmodule
