// How records look on stdout: `consume` (raw value or one JSON object per
// line) and `dump` (one descriptive line per record).
#pragma once

#include <sluice/record.h>

#include <string>

namespace sluice::cli {

enum class RecordFormat : uint8_t {
  kValue,  // the value bytes as they are, then '\n'
  kJson,   // {"partition":..,"offset":..,"timestamp":ns,"key":..,"value":..,"headers":[..]}
};

// Appends one line, '\n' included. JSON: "key" is null for a record without
// a key; headers keep their order and duplicates as [{"name":..,"value":..}].
void append_record_line(std::string& out, const RecordView& record, RecordFormat format);

// The column titles and one row of `sluice dump`.
void append_dump_title(std::string& out);
void append_dump_line(std::string& out, const RecordView& record);

}  // namespace sluice::cli
