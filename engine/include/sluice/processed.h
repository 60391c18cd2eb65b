// The processed-id store: an idempotent-consumer helper for side effects
// outside the bus (docs/exactly-once.md, section 6). `process_once(id, fn)`
// runs fn at most once per id within the store's window, whatever process
// dies when; exactly once when fn's effect commits together with the id in
// the user's own store and the resolver looks there.
#pragma once

#include <sluice/status.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sluice {

struct ProcessedStoreState;

// A non-owning reference to something callable, for parameters that are
// only called during the call they are passed to: no allocation, unlike
// std::function with captures beyond 16 bytes. Never store one.
template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  FunctionRef() noexcept = default;

  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> && std::is_invocable_r_v<R, F&, Args...>)
  FunctionRef(F&& f) noexcept {  // implicit on purpose: process_once(id, [&] { ... })
    using T = std::remove_reference_t<F>;
    if constexpr (std::is_function_v<T>) {
      fn_ = reinterpret_cast<void (*)()>(&f);
      call_ = [](Target t, Args... args) -> R {
        return std::invoke(reinterpret_cast<T*>(t.fn), std::forward<Args>(args)...);
      };
    } else {
      obj_ = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
      call_ = [](Target t, Args... args) -> R {
        return std::invoke(*static_cast<T*>(t.obj), std::forward<Args>(args)...);
      };
    }
  }

  explicit operator bool() const noexcept { return call_ != nullptr; }
  R operator()(Args... args) const { return call_(Target{obj_, fn_}, std::forward<Args>(args)...); }

 private:
  struct Target {
    void* obj;
    void (*fn)();
  };
  void* obj_ = nullptr;
  void (*fn_)() = nullptr;
  R (*call_)(Target, Args...) = nullptr;
};

struct ProcessedStoreOptions {
  // How long a done id counts (and an in-doubt one waits to be settled):
  // 1 ms .. 365 days. Kept in the store when it is created.
  int64_t window_ns = 3'600'000'000'000;  // 1 h
  // Ids the window can hold: a multiple of 8, 8 .. 16777216, 88 bytes each
  // (11 MiB at 131072). Ids live in buckets of 8 by hash; a bucket whose 8
  // ids all still count refuses a ninth with kBusy, so size it at about 1.5x
  // the ids of one window. Kept in the store when it is created.
  uint32_t capacity = 131072;
  // This handle only: how long process_once waits while another live
  // process (or thread) runs fn for the same id, before kBusy. 0: no wait.
  int64_t pending_wait_ns = 5'000'000'000;
  // false: open an existing store only (kNotFound otherwise): for tools.
  bool create_if_missing = true;
};

enum class ProcessOutcome : uint8_t {
  kRan,          // fn ran and returned; the id is done
  kAlreadyDone,  // done within the window (or a resolver said so): fn did not run
  kInDoubt,      // a runner died inside fn and there is no resolver: fn did not run;
                 // settle it with mark_done or forget (`sluice processed`)
};

enum class ProcessedState : uint8_t {
  kAbsent,   // never seen, forgotten, fn threw, or its window is over
  kPending,  // fn is running in a live process
  kDone,     // fn returned, or it was marked done, within the window
  kInDoubt,  // its runner died inside fn: the effect may or may not have happened
};
// "absent", "pending", "done", "in-doubt".
std::string_view processed_state_name(ProcessedState state) noexcept;

// What the store keeps of an id: XXH3-128 of its bytes, seeded per store.
struct ProcessedKey {
  uint64_t lo = 0;
  uint64_t hi = 0;
  // 32 lowercase hex digits, hi then lo.
  std::string hex() const;
  static std::optional<ProcessedKey> from_hex(std::string_view text) noexcept;
  friend bool operator==(const ProcessedKey&, const ProcessedKey&) = default;
};

struct ProcessedEntry {
  ProcessedKey key;
  ProcessedState state = ProcessedState::kAbsent;
  std::string id;             // the id, or its first 46 bytes when longer
  uint32_t id_bytes = 0;      // the whole id's length; 0: marked done by key, id unknown
  int64_t since_unix_ns = 0;  // kDone: when it became done; kPending, kInDoubt: when the run began
  bool id_complete() const noexcept { return id_bytes != 0 && id.size() == id_bytes; }
};

enum class ProcessedFilter : uint8_t {
  kUnsettled,  // pending and in doubt
  kInDoubt,    // in doubt only
  kAll,        // also the done ids of the window
};

struct ProcessedStoreStats {
  std::string name;
  uint32_t capacity = 0;
  int64_t window_ns = 0;
  // Ids that count now, by state (one walk over the buckets).
  uint64_t done = 0, pending = 0, in_doubt = 0;
  // Since the store was created, over all processes (approximate: relaxed).
  uint64_t ran = 0, already_done = 0, reported_in_doubt = 0, resolved_done = 0, resolved_ran = 0, busy = 0,
           fn_threw = 0, completions_lost = 0;
};

// A handle on one store, from Bus::open_processed_store. Thread-safe: any
// number of threads may share one handle. Keeps its bus attached (the
// liveness of its PENDING ids) while it lives.
class ProcessedStore {
 public:
  ProcessedStore(ProcessedStore&&) noexcept;
  ProcessedStore& operator=(ProcessedStore&&) noexcept;
  ~ProcessedStore();

  const std::string& name() const noexcept;
  int64_t window_ns() const noexcept;
  uint32_t capacity() const noexcept;
  ProcessedKey key(std::string_view id) const noexcept;

  // Runs fn unless `id` is done within the window:
  //   done                        -> kAlreadyDone, fn not run
  //   pending in a live process   -> waits (pending_wait_ns), then decides again; kBusy
  //   in doubt (its runner died inside fn) -> with `resolve`: the id is taken
  //       over and resolve(id) asked: true stores DONE, kAlreadyDone; false
  //       runs fn. Without: kInDoubt, fn not run.
  //   absent or expired           -> runs fn; on return DONE, kRan
  // An exception from fn frees the id (absent again) and propagates; one
  // from resolve leaves it in doubt and propagates. The bucket lock is never
  // held while fn or resolve runs.
  // Errors: kInvalidArgument (id empty or longer than 256 bytes), kBusy (the
  // id's bucket holds 8 ids that count, or the wait above ran out),
  // kCorruption (the id's bucket holds a word the format does not allow).
  // REQUIRES: fn does not call process_once for the same id (it would wait
  // for itself, then kBusy).
  Result<ProcessOutcome> process_once(std::string_view id, FunctionRef<void()> fn,
                                      FunctionRef<bool(std::string_view)> resolve = {});

  // Settling by hand (`sluice processed mark-done|forget`). Both return the
  // state the id had, and refuse (kBusy) an id pending in a live process.
  // mark_done: the id is done as of now (an absent one takes an entry: kBusy
  // when its bucket is full). forget: the id is absent (fn will run again).
  Result<ProcessedState> mark_done(std::string_view id);
  Result<ProcessedState> mark_done(const ProcessedKey& key);
  Result<ProcessedState> forget(std::string_view id);
  Result<ProcessedState> forget(const ProcessedKey& key);
  Result<ProcessedState> state(std::string_view id) const;
  Result<ProcessedState> state(const ProcessedKey& key) const;

  // The ids that count now, in bucket order, at most `max`.
  Result<std::vector<ProcessedEntry>> list(ProcessedFilter filter = ProcessedFilter::kUnsettled,
                                           size_t max = SIZE_MAX) const;
  Result<ProcessedStoreStats> stats() const;

 private:
  friend class Bus;
  explicit ProcessedStore(std::shared_ptr<ProcessedStoreState> state);
  std::shared_ptr<ProcessedStoreState> state_;
};

}  // namespace sluice
