// What holds a partition's last stable offset, as text and JSON: shared by
// `sluice group describe`, `topic describe` and `txn list`. Header-only.
#pragma once

#include <sluice/bus.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "json_text.h"

namespace sluice::cli {

// "2.1s", "350.0ms", "12.0us"; "-" for 0 (nothing to age).
inline std::string age_text(int64_t ns) {
  if (ns <= 0) return "-";
  char buf[32];
  if (ns < 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1fus", ns / 1e3);
  else if (ns < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.1fms", ns / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1fs", ns / 1e9);
  return buf;
}

// The HELD-BY line of a held partition, e.g.
//   held-by orders/3 txn payments-1 pid 4294967297 epoch 3 ongoing 2.1s alive
// or "... claim in flight alive" for a writer's claim. `held_by` empty while
// the LSO is below the end: the frame's header did not validate.
inline std::string held_by_line(const std::string& topic, uint32_t partition,
                                const std::optional<StableOffsetHolder>& held_by) {
  std::string s = "  held-by " + topic + "/" + std::to_string(partition) + " ";
  if (!held_by) return s + "unknown (the first undecided frame's header does not validate)";
  const StableOffsetHolder& h = *held_by;
  if (h.state == "claimed") return s + "claim in flight " + (h.alive ? "alive" : "dead");
  s += "txn " + (h.name.empty() ? std::string("(unnamed)") : h.name) + " pid " + std::to_string(h.pid) + " epoch " +
       std::to_string(h.epoch) + " " + h.state + " " + age_text(h.held_ns) + " " + (h.alive ? "alive" : "dead");
  return s;
}

// `"held_by":null` or `"held_by":{...}` (no separator before it).
inline void append_held_by_json(std::string& out, const std::optional<StableOffsetHolder>& held_by) {
  out += "\"held_by\":";
  if (!held_by) {
    out += "null";
    return;
  }
  const StableOffsetHolder& h = *held_by;
  out += "{\"state\":";
  append_json_string(out, h.state);
  out += ",\"pid\":" + std::to_string(h.pid) + ",\"name\":";
  append_json_string(out, h.name);
  out += ",\"epoch\":" + std::to_string(h.epoch) + ",\"alive\":" + (h.alive ? "true" : "false") +
         ",\"held_ns\":" + std::to_string(h.held_ns) + ",\"deadline_unix_ms\":" + std::to_string(h.deadline_unix_ms) +
         "}";
}

}  // namespace sluice::cli
