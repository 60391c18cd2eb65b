// A small, strict JSON reader for the tool tests: enough to check what the
// CLI prints (one value per input; integers only; \u00XX as one byte).
// Header-only, shared by the tool tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice::test {

struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  bool boolean = false;
  std::string text;  // a number's digits, or a string's decoded bytes (\u00XX as one byte)
  std::vector<Json> items;
  std::map<std::string, Json> fields;

  const Json& operator[](const std::string& name) const {
    static const Json missing;
    auto it = fields.find(name);
    return it == fields.end() ? missing : it->second;
  }
  bool has(const std::string& name) const { return fields.count(name) != 0; }
  uint64_t u64() const { return kind == Kind::kNumber ? std::stoull(text) : UINT64_MAX; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& s) : s_(s) {}
  // The whole input must be one value (surrounding whitespace allowed).
  bool parse(Json* out) {
    if (!value(out)) return false;
    space();
    return at_ == s_.size();
  }

 private:
  void space() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\n' || s_[at_] == '\t' || s_[at_] == '\r')) ++at_;
  }
  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(at_, w.size(), w) != 0) return false;
    at_ += w.size();
    return true;
  }
  bool string(std::string* out) {
    if (at_ >= s_.size() || s_[at_] != '"') return false;
    for (++at_; at_ < s_.size(); ++at_) {
      const char c = s_[at_];
      if (c == '"') {
        ++at_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (++at_ >= s_.size()) return false;
      switch (s_[at_]) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          if (at_ + 4 >= s_.size()) return false;
          const unsigned long code = std::stoul(s_.substr(at_ + 1, 4), nullptr, 16);
          if (code > 0xFF) return false;  // the CLI escapes only control and stray bytes
          *out += static_cast<char>(code);
          at_ += 4;
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool value(Json* out) {
    space();
    if (at_ >= s_.size()) return false;
    const char c = s_[at_];
    if (c == '{') {
      out->kind = Json::Kind::kObject;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == '}') return ++at_, true;
      for (;;) {
        space();
        std::string name;
        if (!string(&name)) return false;
        space();
        if (at_ >= s_.size() || s_[at_++] != ':') return false;
        if (out->fields.count(name)) return false;  // duplicate field
        if (!value(&out->fields[name])) return false;
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == '}') return ++at_, true;
        if (s_[at_++] != ',') return false;
      }
    }
    if (c == '[') {
      out->kind = Json::Kind::kArray;
      ++at_;
      space();
      if (at_ < s_.size() && s_[at_] == ']') return ++at_, true;
      for (;;) {
        out->items.emplace_back();
        if (!value(&out->items.back())) return false;
        space();
        if (at_ >= s_.size()) return false;
        if (s_[at_] == ']') return ++at_, true;
        if (s_[at_++] != ',') return false;
      }
    }
    if (c == '"') {
      out->kind = Json::Kind::kString;
      return string(&out->text);
    }
    if (literal("null")) return true;
    if (literal("true") || literal("false")) {
      out->kind = Json::Kind::kBool;
      out->boolean = s_[at_ - 1] == 'e' && s_[at_ - 2] == 'u';
      return true;
    }
    // Numbers: the CLI prints integers only.
    const size_t start = at_;
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
    if (at_ == start || (at_ == start + 1 && s_[start] == '-')) return false;
    out->kind = Json::Kind::kNumber;
    out->text = s_.substr(start, at_ - start);
    return true;
  }

  const std::string& s_;
  size_t at_ = 0;
};

// Parses one line of JSON; fails the test if it is not.
inline Json parse_json(const std::string& line) {
  Json j;
  EXPECT_TRUE(JsonParser(line).parse(&j)) << "not JSON: " << line;
  return j;
}

// The value of header `name` in a received message's "headers" array.
inline std::string header(const Json& message, const std::string& name) {
  for (const Json& h : message["headers"].items)
    if (h["name"].text == name) return h["value"].text;
  return "<missing>";
}

}  // namespace sluice::test
