// Reading dead letters (docs/queues.md, section 7) for `sluice dlq ...` and
// the demo: their sluice.dlq.* metadata, filters over it, a read-only browse
// (dlq list, dlq show) and a lease-based scan (redrive, replay, purge).
//
// Browsing (browse_dead_letters) uses Bus::browse_queue: it copies out every
// unsettled letter, those leased by others (in flight) and delayed ones
// included, and changes nothing, neither the letters' receive counts nor the
// queue's counters.
//
// Moving letters needs leases: a scan (DeadLetterScan) receives every letter
// it can (an ordinary, process-bound lease, so a killed scan's leases come
// back at once) and later releases each it did not settle with a nack without
// delay. That leaves the letters where they were, in offset order, but it
// moves the dead-letter queue's own counters: received and nacked grow, and
// each released letter's receive count (Delivery::attempt) grows by one. The
// scanning worker raises max_receives to 255 so that it never drops a letter
// itself; see dlq_commands.cc.
#pragma once

#include <sluice/sluice.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli {

inline constexpr std::string_view kDlqHeaderPrefix = "sluice.dlq.";

// Unix ms of an RFC 3339 time: YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS with an
// optional fraction and a Z or +HH:MM / -HH:MM offset ('t' or ' ' may stand
// for 'T'). nullopt if it is not one.
std::optional<int64_t> parse_rfc3339_ms(std::string_view text);
// The value of header sluice.dlq.<field>, or nullopt when the letter has
// none (an empty value is a value).
std::optional<std::string_view> dead_letter_field(const HeadersView& headers, std::string_view field);
std::optional<std::string_view> dead_letter_field(std::span<const Header> headers, std::string_view field);

// --since / --until: RFC 3339 (as above) or Unix ms (digits only).
Result<int64_t> parse_time_option(std::string_view text, std::string_view what);

// Which dead letters a command acts on. Empty fields match everything.
struct DeadLetterFilter {
  std::string error_type;           // sluice.dlq.error_type, exactly
  std::string source;               // "queue:Q" / "topic:T" exactly, or a bare name matching either
  std::optional<int64_t> since_ms;  // failed_at >= since
  std::optional<int64_t> until_ms;  // failed_at < until
  bool empty() const { return error_type.empty() && source.empty() && !since_ms && !until_ms; }
  bool matches(const HeadersView& headers) const;
  bool matches(std::span<const Header> headers) const;
};

// The string options of a filter, as the commands take them.
struct FilterArgs {
  std::string error_type, source, since, until;
};
Result<DeadLetterFilter> parse_filter(const FilterArgs& a);

// A dead letter as the commands print it, from a browse (QueueEntry) or a
// lease (Delivery). Views into the entry or delivery it was made from.
struct DeadLetter {
  uint32_t priority = 0;
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  uint32_t receives = 0;                  // of the letter in the dead-letter queue
  std::optional<QueueEntryState> state;   // browsed letters only
  std::string_view value;
  std::vector<Header> headers;
};
DeadLetter dead_letter_of(const QueueEntry& e);
DeadLetter dead_letter_of(const Delivery& d);
// "waiting", "in_flight", "ready", "delayed", "blocked".
std::string_view queue_entry_state_name(QueueEntryState s);

// One line of JSON describing a dead letter ('\n' included): where it is
// ("queue", "priority", "offset", "timestamp" ns, "dlq_receives", and
// "state" for a browsed letter), every sluice.dlq.* field by its short name
// (null when absent; numbers as numbers), its "value" and its original
// "headers" (the sluice.dlq.* ones left out).
void append_dead_letter_json(std::string& out, std::string_view queue, const DeadLetter& d);
void append_dead_letter_json(std::string& out, std::string_view queue, const Delivery& d);
// The title and one row of `dlq list --format text`.
void append_dead_letter_title(std::string& out);
void append_dead_letter_row(std::string& out, const DeadLetter& d);

// Hands every unsettled letter of the dead-letter queue `queue` (levels
// 0..levels-1, each in offset order) to `fn`, read with Bus::browse_queue a
// page at a time: leased (in flight) and delayed letters included, nothing
// changed. Stops early, without error, when `fn` returns false.
Status browse_dead_letters(const Bus& bus, std::string_view queue, uint32_t levels,
                           const std::function<bool(const QueueEntry&)>& fn);
inline constexpr size_t kBrowsePage = 1000;

// The letters of one dead-letter queue, held (leased) by this process: for
// the commands that move or remove them (redrive, replay, purge).
class DeadLetterScan {
 public:
  // Receives every letter it can see now: not those leased by others or
  // delayed, and at most the queue's window (65,536 by default) per level.
  static Result<DeadLetterScan> take(Bus& bus, std::string_view queue);
  DeadLetterScan(DeadLetterScan&&) noexcept = default;
  DeadLetterScan& operator=(DeadLetterScan&&) noexcept = default;
  ~DeadLetterScan();  // releases what is still held

  // By (priority, offset). A settled (acked) or released entry is !valid().
  std::vector<Delivery>& letters() { return letters_; }
  // Offers `d` again at once, where it was (a nack without delay).
  Status release(Delivery& d);
  // Releases every letter still held; the first error, if any.
  Status release_all();
  // Pushes the lease of every letter still held to now + lease_ns.
  Status extend_all(int64_t lease_ns);
  // Leases others held on the queue when the scan began (not seen).
  uint64_t held_elsewhere() const { return held_elsewhere_; }

 private:
  explicit DeadLetterScan(Worker worker) : worker_(std::move(worker)) {}
  Worker worker_;  // declared first: the deliveries go before it
  std::vector<Delivery> letters_;
  uint64_t held_elsewhere_ = 0;
};

// The lease a scan takes: long enough for a listing; redrive extends it.
inline constexpr int64_t kScanLeaseNs = 60'000'000'000;

}  // namespace sluice::cli
