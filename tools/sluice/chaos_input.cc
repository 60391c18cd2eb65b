// The chaos run's input producer: idempotent, named kInputName, it writes
// record j of partition p as sequence j of p, so that a restarted instance
// knows from next_sequence(p) alone where it stopped. Partition p's keys
// are the k0..k63 whose hash lands there, in turn, each numbered 0, 1, 2 ...
// (the per-key number the checker follows through the transformers).
#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "chaos.h"
#include "cli_common.h"

namespace sluice::cli::chaos {

namespace {

using demo::Report;

struct Partitions {
  std::array<std::vector<uint32_t>, kPartitions> keys;  // the keys of each partition
  std::array<uint64_t, kPartitions> next{};             // record (= sequence) to send next
};

Message record(const Partitions& parts, uint32_t p, uint64_t j, std::string& key, std::string& value) {
  const std::vector<uint32_t>& keys = parts.keys[p];
  const uint32_t k = keys[j % keys.size()];
  key = "k" + std::to_string(k);
  value = format_value(k, j / keys.size(), j);
  return Message{key, value};
}

std::string where(uint32_t p, uint64_t j) { return "partition " + std::to_string(p) + " record " + std::to_string(j); }

}  // namespace

int run_input(const RoleSpec& spec) {
  auto bus = Bus::open(spec.dir);
  if (!bus) return fail(bus.error());
  ProducerOptions o;
  o.idempotent = true;
  o.producer_name = std::string(kInputName);
  auto producer = bus->create_producer(kInTopic, o);
  if (!producer) return fail(producer.error());
  if (producer->partition_count() != kPartitions)
    return fail("chaos input: topic " + std::string(kInTopic) + " needs " + std::to_string(kPartitions) +
                " partitions");
  Partitions parts;
  for (uint32_t k = 0; k < kKeys; ++k)
    parts.keys[producer->partition_for_key("k" + std::to_string(k))].push_back(k);
  std::string key, value;
  uint64_t resent = 0;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    if (parts.keys[p].empty()) return fail("chaos input: no key k0..k63 hashes to partition " + std::to_string(p));
    auto next = producer->next_sequence(p);
    if (!next) return fail("chaos input: next_sequence: " + next.error().to_string());
    parts.next[p] = *next;
    if (*next == 0) continue;
    // What a producer unsure of its last send does: send it again. The log
    // holds it, so it must come back a duplicate with its original offset.
    const uint64_t j = *next - 1;
    const SendResult r = producer->send_sequenced(record(parts, p, j, key, value), static_cast<uint32_t>(j), p);
    if (!r.ok()) return fail("chaos input: resending " + where(p, j) + ": " + producer->last_error().to_string());
    if (!r.duplicate) return fail("chaos input: resending " + where(p, j) + " appended it again");
    ++resent;
  }
  // "ready" comes after the first new send, not before it: the supervisor
  // kills only a ready input, so every instance it kills has sent something
  // and a run whose input is killed often still makes progress.
  bool said_ready = false;
  const auto started = std::chrono::steady_clock::now();
  const uint64_t target = spec.records_per_partition;
  uint64_t sent = 0;
  while (!stop_requested()) {
    // The partition furthest behind: all of them grow together.
    uint32_t p = 0;
    for (uint32_t q = 1; q < kPartitions; ++q)
      if (parts.next[q] < parts.next[p]) p = q;
    if (target > 0 && parts.next[p] >= target) break;
    const uint64_t j = parts.next[p];
    const SendResult r = producer->send_sequenced(record(parts, p, j, key, value), static_cast<uint32_t>(j), p);
    if (r.status == SendStatus::kAborted) continue;  // our claim was aborted as stalled: the same sequence again
    if (r.status == SendStatus::kFenced) {
      say(Report("fenced"));
      return kExitFenced;
    }
    if (!r.ok()) return fail("chaos input: sending " + where(p, j) + ": " + producer->last_error().to_string());
    if (r.duplicate) return fail("chaos input: " + where(p, j) + " was new, yet called a duplicate");
    ++parts.next[p];
    ++sent;
    if (!said_ready) {
      say(Report("ready").set("resent", resent));
      said_ready = true;
    }
    if (spec.rate > 0 && sent % 8 == 0) {
      const auto due = started + std::chrono::nanoseconds(sent * 1'000'000'000ull / spec.rate);
      if (due > std::chrono::steady_clock::now()) std::this_thread::sleep_until(due);
    }
  }
  Report result("result");
  result.set("sent", sent);
  for (uint32_t p = 0; p < kPartitions; ++p) result.set("p" + std::to_string(p), parts.next[p]);
  say(result);
  return kExitOk;
}

}  // namespace sluice::cli::chaos
