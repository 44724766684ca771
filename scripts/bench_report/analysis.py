"""Why the goals are missed, as found with `perf record` on the benchmark
machine: printed under the goals when any goal is missed. Edit it when a
change to the library moves a cause."""

ANALYSIS = """\
Found with `perf record` / `perf annotate` of these benches (sampling works on this VM;
hardware counters do not), before and after the changes listed at the end.

- **Ring throughput vs rtrb.** rtrb moves a bare record through a ring of records with two
  indices; a consumer that finds many records behind one index load reads them from
  its own cache. shmstream moves a tensor's bytes *and* its descriptor (a 64-byte line:
  a Release-published sequence, offset, length, dtype, shape, nbytes, all validated by
  the consumer because the peer is untrusted; the id goes to a side table read only on
  demand). Batches (`put_many`: one `registered` store and one doorbell per batch) and
  the asymmetric wake-up handshake (a compiler fence on the publisher's side, the
  `membarrier` on the sleeper's) took the fence off the per-item path. What remains, per
  perf: about two cache lines per item that the producer must take back from the
  consumer's core (the descriptor line and the side-table id store stall on them).
  Issue 24 took the reservation words off the line the consumer spins on (written at
  commit now), built the id word in a register (its memcpy missed store forwarding) and
  loads `registered` only on every 1024th idle poll. One by one, each item still waits
  once for its descriptor line to come back from the spinning consumer (the stall shows on
  the first load after `register` returns): issue 24's 1.5x of rtrb is out of reach while
  the consumer spins on the line the producer writes next. The structural answer is a
  run: `put_many`, or adaptive batching (`Producer::set_batching`), where the consumer takes
  the producer's staged run with one CAS and never spins on an unwritten descriptor.
  On this VM the two-thread ring is bimodal from run to run (vCPU placement): compare
  runs, not single numbers.
- **Latency vs the floor.** The floor moves one line each way. A 64-byte tensor moves the
  descriptor line and then the payload line, whose address the consumer learns from the
  descriptor: two dependent line transfers, 2x the floor by construction, and above it
  in runs where the other core is busy (1.8-2.0x in issue 24's alternating rounds).
- **Streaming vs memcpy, 64 KiB to 64 MiB (issues 6 and 11).** The memcpy peer copies within
  one process, so up to 2 MiB its source and destination stay in that core's caches; a
  transfer between processes must move every byte the producer wrote to the other core
  (through L3, or DRAM once the payload ring outgrows the 32 MiB L3). The honest floor is
  the bare handoff (same bytes, same buffer count, two counters and nothing else): compare
  the "vs handoff" column, where shmstream is close to the floor from 64 KiB up (the rest is
  run-to-run noise on this shared VM and the per-item descriptor). A 0.8x-of-memcpy goal
  cannot be met by any cross-process transfer on this machine for sizes that fit one core's
  cache. The socket makes two kernel copies.
  Waiters keep looking for about a futex sleep-and-wake's cost (30 us) before sleeping;
  sleeping earlier made this bench 3x slower (every slot release woke a sleeping producer).
- **Small records vs the buffered socket.** The socket peer batches ~1000 records of 56 bytes
  per system call and pays a memcpy per record; the ring pays the per-item descriptor and
  fence on every record.
- **`pop_chunk`.** O(1) in the window: metadata is validated once per item at poll time,
  written in place into a private table, and a per-slot run length of same-shaped items
  makes the stacked-view check O(1). The "with poll" column therefore grows with the
  window (each new item is validated once, ~20-30 ns); the pre-polled pop is flat but for a
  few cache misses: at window 4 consecutive pops touch the same lines, at window 1024 each
  pop touches lines 1024 items away.
  Items committed together (`put_many`, or a staged run) are one descriptor run: the
  poll checks one descriptor per run, and the "runs, with poll" column is flat but for
  the same cache misses: 1.9-2.0x from window 4 to 1024 in quiet runs, and 2.6-4.5x
  when other work on the host takes the L3 (70-98 ns at window 1024, then 160-210 ns,
  with the code before issue 24's last changes the same; window 4 stays at 37 ns).
- **Shared memory at window 28 (issue 11).** The byte-granular payload packs the 28 frames
  back to back (56 bytes apart), so the payload is one page, the double-mapping minimum:
  2.6x the 1568 bytes buffered (the first version's slots took 84x). The segment adds the
  header page and, per item of capacity, a 64-byte descriptor and a 128-byte side-table
  entry (id and wide dims): 32 x 192 bytes = 6 KiB, two pages, 10.4x in all. Within 2x of
  1568 bytes is below one page, and a double-mapped payload cannot be smaller than a
  page: at this size the goal is out of reach by construction; per item buffered the
  stream costs 56 + 192 bytes of shared memory.
- **Wake-up latency** (no goal): a wake of an idle vCPU costs 10-20 us on this VM whatever
  the library does.

Changes made from these profiles: descriptors validated in place instead of moved through
`Result`s (was ~120 ns of copies per item), O(1) stacked-view check (was O(window)), the
consumer's walk no longer reads the producer's `registered` line, the producer writes only
the id words and dims in use, and waiters look with short doubling pauses (up to 16) for
5 us, then between yields up to 30 us, before sleeping on the futex."""
