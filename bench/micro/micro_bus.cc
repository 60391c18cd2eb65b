#include "micro_bus.h"

#include <stdlib.h>

#include <filesystem>
#include <stdexcept>

namespace sluice::micro {

namespace {
std::unique_ptr<MicroBus> g_current;
}

MicroBus::MicroBus(std::string key, std::string dir, Bus bus)
    : key_(std::move(key)), dir_(std::move(dir)), bus_(std::make_unique<Bus>(std::move(bus))) {}

MicroBus::~MicroBus() {
  bus_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

MicroBus& MicroBus::get(const std::string& key) {
  if (g_current && g_current->key_ == key) return *g_current;
  g_current.reset();
  std::string tmpl = "/dev/shm/sluice-micro-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp in /dev/shm failed");
  auto bus = Bus::open(tmpl);
  if (!bus) throw std::runtime_error("Bus::open: " + bus.error().to_string());
  g_current.reset(new MicroBus(key, tmpl, std::move(*bus)));
  g_current->next_topic();
  return *g_current;
}

void MicroBus::release() { g_current.reset(); }

void MicroBus::next_topic() {
  const std::string old = topic_;
  topic_ = "t" + std::to_string(generation_++);
  TopicOptions t;
  t.partitions = 1;
  t.segment_bytes = kSegmentBytes;
  t.prefault_segments = true;
  if (auto ok = bus_->create_topic(topic_, t); !ok)
    throw std::runtime_error("create_topic: " + ok.error().to_string());
  if (!old.empty()) (void)bus_->delete_topic(old);
  used_ = 0;
}

bool skip(benchmark::State& state, const std::string& what) {
  state.SkipWithError(what.c_str());
  return false;
}

}  // namespace sluice::micro
