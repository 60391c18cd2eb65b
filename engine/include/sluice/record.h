// What producers hand in and consumers get back.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace sluice {

// A record attribute (Kafka's record headers). Bytes, not necessarily text.
struct Header {
  std::string_view name;
  std::string_view value;
};

// A record to send. Views only: the bytes are copied into the log by send().
struct Message {
  std::string_view key;    // empty: no key (partitioner decides)
  std::string_view value;
  std::span<const Header> headers{};
  int64_t timestamp_ns = 0;  // 0: the bus clock's now
};

// Iterates the headers of a consumed record without copying.
class HeadersView {
 public:
  HeadersView() = default;
  HeadersView(const std::byte* data, uint32_t bytes, uint16_t count)
      : data_(data), bytes_(bytes), count_(count) {}
  uint16_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }

  class iterator {
   public:
    iterator(const std::byte* p, uint16_t left) : p_(p), left_(left) {}
    Header operator*() const noexcept {
      uint32_t nl, vl;
      std::memcpy(&nl, p_, 4);
      std::memcpy(&vl, p_ + 4, 4);
      const char* s = reinterpret_cast<const char*>(p_ + 8);
      return {std::string_view(s, nl), std::string_view(s + nl, vl)};
    }
    iterator& operator++() noexcept {
      uint32_t nl, vl;
      std::memcpy(&nl, p_, 4);
      std::memcpy(&vl, p_ + 4, 4);
      p_ += 8 + nl + vl;
      --left_;
      return *this;
    }
    bool operator==(const iterator& o) const noexcept { return left_ == o.left_; }

   private:
    const std::byte* p_;
    uint16_t left_;
  };
  iterator begin() const noexcept { return {data_, count_}; }
  iterator end() const noexcept { return {nullptr, 0}; }
  // The value of the first header called `name`, or an empty view.
  std::string_view find(std::string_view name) const noexcept {
    for (Header h : *this)
      if (h.name == name) return h.value;
    return {};
  }

 private:
  const std::byte* data_ = nullptr;
  uint32_t bytes_ = 0;
  uint16_t count_ = 0;
};

// A consumed record. key, value and headers point into the shared mapping
// (zero-copy). Lifetime: valid until the next poll(), seek() or close of the
// Consumer that returned it; copy what must live longer.
struct RecordView {
  uint32_t partition = 0;
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  std::string_view key;
  std::string_view value;
  HeadersView headers;
  uint64_t producer_id = 0;   // reserved for idempotent producers
  uint16_t producer_epoch = 0;
  uint16_t attributes = 0;
  uint32_t sequence = 0;
  uint64_t position = 0;      // logical byte position of the record's frame
};

}  // namespace sluice
