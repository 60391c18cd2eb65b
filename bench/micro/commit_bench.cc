// Committing a group's offset for one partition: Consumer::commit(p, next,
// sync), which commit_async()/commit_sync() do for every partition with new
// records. Async is one atomic store into the shared offsets file; sync adds
// an msync of its page (on /dev/shm, where these run).
#include "micro_bus.h"

namespace sluice::micro {
namespace {

void commit_loop(benchmark::State& state, bool sync) {
  MicroBus& env = MicroBus::get(sync ? "commit-sync" : "commit-async");
  ConsumerOptions o;
  o.auto_commit = false;
  auto c = env.bus().create_consumer(env.topic(), "bench", o);
  if (!c) return (void)skip(state, "create_consumer: " + c.error().to_string());
  uint64_t next = c->position(0);
  for (auto _ : state) {
    if (auto ok = c->commit(0, ++next, sync); !ok) {
      skip(state, "commit: " + ok.error().to_string());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Commit_Async(benchmark::State& state) { commit_loop(state, false); }
void BM_Commit_Sync(benchmark::State& state) { commit_loop(state, true); }

[[maybe_unused]] const bool registered = [] {
  benchmark::RegisterBenchmark("BM_Commit_Async", BM_Commit_Async);
  benchmark::RegisterBenchmark("BM_Commit_Sync", BM_Commit_Sync);
  return true;
}();

}  // namespace
}  // namespace sluice::micro
