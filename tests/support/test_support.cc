#include "support/test_support.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "ipc/file_header.h"
#include "producer_format.h"

namespace sluice::test {

TempDir::TempDir() {
  const char* root = std::getenv("SLUICE_TEST_TMP");
  std::string base = root && *root ? root : "/dev/shm";
  std::random_device rd;
  path_ = base + "/sluice-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

pid_t fork_child(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  return pid;
}

int wait_child(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void rewrite_producer_control(const std::string& bus_dir, uint64_t pid,
                              const std::function<uint64_t(uint64_t)>& change) {
  const std::string path = bus_dir + "/producers/table";
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  const auto at =
      static_cast<off_t>(format::kProducerSlotsOffset + format::pid_slot(pid) * sizeof(format::ProducerSlot));
  uint64_t c = 0;
  EXPECT_EQ(::pread(fd, &c, sizeof c, at), 8);
  c = change(c);
  EXPECT_EQ(::pwrite(fd, &c, sizeof c, at), 8);
  ::close(fd);
}

void set_producer_state(const std::string& bus_dir, uint64_t pid, uint8_t state, uint16_t epoch_bump) {
  rewrite_producer_control(bus_dir, pid, [&](uint64_t c) {
    return format::make_producer_control(static_cast<format::ProducerSlotState>(state),
                                         static_cast<uint16_t>(format::producer_epoch(c) + epoch_bump),
                                         format::producer_owner(c), format::producer_txn(c));
  });
}

bool newest_segment_zero_from(const std::string& partition_dir, size_t from) {
  std::string newest;
  for (auto& e : std::filesystem::directory_iterator(partition_dir))
    if (e.path().extension() == ".seg") newest = std::max(newest, e.path().string());
  std::ifstream f(newest, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ipc::FileHeader h{};
  EXPECT_GE(bytes.size(), sizeof h) << newest;
  if (bytes.size() < sizeof h) return false;
  std::memcpy(&h, bytes.data(), sizeof h);
  const size_t start = std::min(bytes.size(), size_t{h.data_offset} + from);
  return std::all_of(bytes.begin() + static_cast<std::ptrdiff_t>(start), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace sluice::test
