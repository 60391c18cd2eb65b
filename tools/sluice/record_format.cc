#include "record_format.h"

#include <cstdio>

#include "json_text.h"

namespace sluice::cli {

void append_record_line(std::string& out, const RecordView& r, RecordFormat format) {
  if (format == RecordFormat::kValue) {
    out.append(r.value);
    out += '\n';
    return;
  }
  out += "{\"partition\":" + std::to_string(r.partition);
  out += ",\"offset\":" + std::to_string(r.offset);
  out += ",\"timestamp\":" + std::to_string(r.timestamp_ns);
  out += ",\"key\":";
  if (r.key.empty()) {
    out += "null";
  } else {
    append_json_string(out, r.key);
  }
  out += ",\"value\":";
  append_json_string(out, r.value);
  out += ",\"headers\":[";
  bool first = true;
  for (Header h : r.headers) {
    out += first ? "{\"name\":" : ",{\"name\":";
    first = false;
    append_json_string(out, h.name);
    out += ",\"value\":";
    append_json_string(out, h.value);
    out += '}';
  }
  out += "]}\n";
}

void append_dump_title(std::string& out) {
  char line[160];
  std::snprintf(line, sizeof line, "%-12s %-14s %-20s %8s %8s %7s  %s\n", "offset", "position", "timestamp_ns", "key_B",
                "value_B", "headers", "key");
  out += line;
}

void append_dump_line(std::string& out, const RecordView& r) {
  char line[160];
  std::snprintf(line, sizeof line, "%-12llu %-14llu %-20lld %8zu %8zu %7u  ", static_cast<unsigned long long>(r.offset),
                static_cast<unsigned long long>(r.position), static_cast<long long>(r.timestamp_ns), r.key.size(),
                r.value.size(), static_cast<unsigned>(r.headers.size()));
  out += line;
  // Keys can be long or binary: show at most 48 bytes, JSON-escaped.
  constexpr size_t kMaxKeyShown = 48;
  if (r.key.empty()) {
    out += "-";
  } else {
    append_json_string(out, r.key.substr(0, kMaxKeyShown));
    if (r.key.size() > kMaxKeyShown) out += "...";
  }
  out += '\n';
}

}  // namespace sluice::cli
