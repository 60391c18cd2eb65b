// The exactly-once chaos run (docs/exactly-once.md, section 9), shared by
// `sluice chaos` and tests/process/exactly_once_chaos_test.cc:
//
//   input producer  idempotent, named "chaos-input": keyed records k0..k63
//                   to topic `in` (4 partitions), record j of partition p
//                   being sequence j of that partition; a restart resumes
//                   from next_sequence(p) (and resends its last record,
//                   which must come back a duplicate).
//   transformers    slot s owns the partitions p with p % 3 == s under the
//                   transactional id "chaos-xform-<s>": polls `in`
//                   read-committed, sends one output per input to the same
//                   partition of `out` (headers: source partition, offset,
//                   transaction tag) and publishes the input to queue
//                   `outq` (FIFO group = the key, de-duplication id = the
//                   input's place), commits the group's offsets with them;
//                   aborts some transactions on purpose. At-least-once
//                   mode: plain producer and publisher, and the group
//                   committed after the sends.
//   supervisor      SIGKILLs transformers and the input producer at random
//                   intervals and restarts them; SIGSTOPs a transformer past
//                   its transaction timeout, starts its replacement, then
//                   SIGCONTs the zombie, which must be fenced and exit.
//   checker         once `in` is consumed: the invariants of section 9.
//
// Roles run in their own processes: `sluice chaos-worker ROLE ...` exec'd by
// the tool, or forked by the test (the Launcher decides).
#pragma once

#include <sluice/sluice.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "demo_processes.h"
#include "demo_protocol.h"

namespace sluice::cli::chaos {

inline constexpr std::string_view kInTopic = "in";
inline constexpr std::string_view kOutTopic = "out";
inline constexpr std::string_view kOutQueue = "outq";
inline constexpr std::string_view kGroup = "chaos";
inline constexpr std::string_view kInputName = "chaos-input";
inline constexpr std::string_view kTransformerIdPrefix = "chaos-xform-";  // + the slot: a transformer's identity
inline constexpr uint32_t kPartitions = 4;
inline constexpr uint32_t kKeys = 64;  // k0 .. k63
inline constexpr uint32_t kMaxTransformers = kPartitions;
// Headers of an output record: where its input is.
inline constexpr std::string_view kSourcePartition = "src-partition";
inline constexpr std::string_view kSourceOffset = "src-offset";
// Header of an output record and a queue message: the transaction (or, at
// least once, the batch) that wrote it, "<slot>.<epoch>.<n>" (format_tag).
// A queue message must carry its input's committed output's tag.
inline constexpr std::string_view kTxnTag = "txn";
// How long a de-duplication id of `outq` counts. At least once, a killed
// transformer's repeat comes within a few hundred ms of the first publish;
// exactly once the ids only meet a zombie's or an aborted transaction's
// pending ones (held until the decision, whatever the window).
inline constexpr int64_t kQueueDedupWindowNs = 2'000'000'000;

// Exit codes of a role process besides 0 (stopped or done) and 1 (failed).
inline constexpr int kExitFenced = 4;    // a newer instance of its identity was opened
inline constexpr int kExitTimedOut = 5;  // its transaction ran past the timeout and was aborted by another process

enum class Mode : uint8_t { kExactlyOnce, kAtLeastOnce };
std::string_view mode_name(Mode mode) noexcept;

// What one role process does.
struct RoleSpec {
  std::string role;  // "input" or "transformer"
  std::string dir;   // the bus
  Mode mode = Mode::kExactlyOnce;
  uint32_t slot = 0;                   // transformer: which one
  uint32_t transformers = 3;           // transformer: how many share the partitions
  uint64_t seed = 1;                   // this instance's random choices
  uint64_t records_per_partition = 0;  // input: stop there; 0: run until SIGTERM
  uint64_t rate = 1000;                // input: records per second, all partitions together
  int64_t txn_timeout_ms = 100;        // transformer
  uint32_t abort_percent = 5;          // transformer: transactions aborted on purpose
  uint32_t max_batch = 64;             // transformer: records per transaction, at most
  // transformer: each transaction "works" 0..work_ms ms halfway through its
  // sends, so that kills and stops land inside transactions too.
  uint32_t work_ms = 2;
  // transformer: transactions that run past their timeout on purpose (a
  // slow holder: a helper aborts it, the holder learns kAborted and exits).
  uint32_t late_percent = 1;
  // transformer: once it has committed this many records (0: never), the
  // next transaction sends its records and is never decided: the instance
  // reports "holding ..." (the first offset of its PREPARED records in each
  // partition of `out`, and when the first went out) and waits to be
  // SIGKILLed with it open (`sluice demo`'s victim).
  uint64_t hold_after_records = 0;
  // transformer: inputs whose offset is a multiple of this are also
  // published to `outq`, in the same transaction; 0: none.
  uint32_t queue_every = 1;
};

// Runs a role until it is done, SIGTERMed (it then finishes its current
// transaction or send and exits 0), fenced or failed. Reports on stdout:
// "ready ..." once it works, "fenced ..." or "timed-out ..." before those
// exits, "result ..." before a clean one; errors are one line on stderr.
int run_role(const RoleSpec& spec);

// The roles themselves, and what they share (chaos_protocol.cc).
int run_input(const RoleSpec& spec);
int run_transformer(const RoleSpec& spec);
void install_stop_handler();     // SIGTERM: stop_requested() becomes true
bool stop_requested() noexcept;
void say(const demo::Report& report);  // one line on stdout, flushed

// The partitions transformer `slot` of `transformers` owns.
std::vector<uint32_t> owned_partitions(uint32_t slot, uint32_t transformers);

// An input record's value: "key=k<k> n=<per-key number> i=<index in its partition>".
std::string format_value(uint32_t key, uint64_t n, uint64_t index);
struct InputValue {
  uint32_t key = 0;
  uint64_t n = 0, index = 0;
};
bool parse_value(std::string_view value, InputValue* out) noexcept;

// The kTxnTag header: slot, the instance's epoch (0 at least once) and the
// transaction's (batch's) number in the instance, from 1; parse_tag packs
// it into one nonzero number, 0 when malformed.
std::string format_tag(uint32_t slot, uint64_t epoch, uint64_t n);
uint64_t parse_tag(std::string_view tag) noexcept;
// The de-duplication id of input (`partition`, `offset`)'s queue message.
std::string dedup_id(uint32_t partition, uint64_t offset);

// Milliseconds in [lo, hi].
struct MsRange {
  int64_t lo = 0, hi = 0;
};

struct ChaosOptions {
  Mode mode = Mode::kExactlyOnce;
  uint64_t seed = 1;
  // The chaos lasts `duration_ms`, or until the input producer has written
  // `records_per_partition` to every partition (whichever is set; both:
  // whichever comes first). Then the input stops, the transformers catch up
  // within `catch_up_ms`, stop, and the checker runs.
  int64_t duration_ms = 0;
  uint64_t records_per_partition = 0;
  uint64_t rate = 2000;  // input records per second
  uint32_t transformers = 3;
  MsRange transformer_kill_ms{20, 200};  // between SIGKILLs of a random transformer
  MsRange input_kill_ms{100, 500};       // between SIGKILLs of the input producer
  MsRange zombie_ms{1500, 4000};         // between SIGSTOPped zombies; {0, 0}: none (always none at least once)
  int64_t txn_timeout_ms = 100;
  uint32_t abort_percent = 5;
  uint32_t work_ms = 2;
  uint32_t late_percent = 1;
  uint32_t queue_every = 1;  // as RoleSpec::queue_every
  uint32_t segment_bytes = 1u << 20;
  int64_t catch_up_ms = 60'000;
  int64_t progress_every_ms = 0;  // a progress line this often; 0: none
};

// Starts one role process; `name` labels it in messages.
using Launcher = std::function<Result<demo::WorkerProcess>(const std::string& name, const RoleSpec& spec)>;
// The Launcher of the `sluice` binary: execs it as `sluice chaos-worker ROLE
// ...` (the hidden subcommand of chaos_command.cc). Not for test binaries,
// which fork the role instead (demo::WorkerProcess::fork_call).
Result<demo::WorkerProcess> exec_role(const std::string& name, const RoleSpec& spec);

// A message of `outq` as a worker received it (and acked it at once).
struct QueueSeen {
  uint64_t offset = 0;  // of its input (kSourceOffset)
  uint64_t n = 0;       // its value's per-key number
  uint64_t tag = 0;     // parse_tag of its kTxnTag
  uint32_t partition = kPartitions;  // of its input; kPartitions: unreadable headers
  uint32_t key = 0;
};
// Receives everything `outq` delivers to `worker` within `timeout_ns` of
// the first receive and then until a receive finds nothing, acking each
// message and appending it to `seen`. Returns how many.
Result<uint64_t> drain_queue(Worker& worker, std::vector<QueueSeen>& seen, int64_t timeout_ns);

// What the supervisor did and saw.
struct ChaosTally {
  uint64_t transformer_kills = 0, input_kills = 0, restarts = 0;
  uint64_t zombies_stopped = 0, zombies_fenced = 0;
  uint64_t zombies_timed_out = 0;      // zombies that learned of their transaction's timeout before the fencing
  uint64_t timed_out_exits = 0;        // instances whose transaction a helper aborted (kAborted)
  uint64_t failed_exits = 0;           // role processes that failed (exit 1 or a crash)
  uint64_t tail_committed_seen = 0;    // records a read-committed reader of `out` saw during the run
  uint64_t tail_uncommitted_seen = 0;  // ... and a read-uncommitted one
  std::vector<std::string> problems;   // the supervisor's own failed expectations
  // Offsets of `out` the tails saw, per partition, in order; both empty
  // when no tails ran (the checker then skips the tails invariant).
  std::vector<std::vector<uint64_t>> committed_offsets, uncommitted_offsets;
  // What a worker of `outq` received during the run, in order.
  std::vector<QueueSeen> queue_seen;
};

struct Invariant {
  std::string name;
  bool ok = false;
  std::string detail;
};

struct ChaosReport {
  ChaosTally tally;
  std::vector<Invariant> invariants;
  uint64_t inputs = 0, outputs = 0, duplicates = 0, lost = 0;
  uint64_t commits = 0, holder_aborts = 0, helper_aborts = 0, fenced_sends = 0, input_duplicates = 0;
  uint64_t uncommitted_later_aborted = 0;  // records the read-uncommitted tail saw that ended aborted
  // `outq`: inputs due a message, messages received, duplicates and lost;
  // offsets its level assigned (aborted publishes included).
  uint64_t queue_due = 0, queue_messages = 0, queue_duplicates = 0, queue_lost = 0, queue_published = 0;
  double seconds = 0;
  bool ok() const {
    for (const Invariant& i : invariants)
      if (!i.ok) return false;
    return !invariants.empty();
  }
};

// The transformers' identities' counters, summed: since each identity was
// made, over all its instances (and over earlier runs on the same bus).
struct TransactionCounts {
  uint64_t commits = 0, holder_aborts = 0, helper_aborts = 0, fenced_sends = 0;
};
Result<TransactionCounts> transaction_counts(Bus& bus);

// Creates the topics, the queue and the group in a bus that has none of them yet.
Status set_up(Bus& bus, const ChaosOptions& options);
// Whether the group's committed offsets have reached `in`'s end offsets in
// every partition: the transformers have nothing left to do.
Result<bool> caught_up(const Bus& bus);
// The supervisor: runs the roles as options say, stops them, and returns
// what happened. Prints progress to `log`.
Result<ChaosTally> supervise(const std::string& dir, const ChaosOptions& options, const Launcher& launch, FILE* log);
// The checker: prints each invariant to `log` as it is checked.
Result<ChaosReport> check(Bus& bus, const ChaosOptions& options, ChaosTally tally, FILE* log);
// All of it on the bus in `dir` (created; it must not hold `in` or `out`),
// then the summary.
Result<ChaosReport> run(const std::string& dir, const ChaosOptions& options, const Launcher& launch, FILE* log);

}  // namespace sluice::cli::chaos
