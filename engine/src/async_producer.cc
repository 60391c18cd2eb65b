#include <sluice/async_producer.h>
#include <sluice/bus.h>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice {

namespace {

// One queued record with its own copy of the bytes. Items are recycled
// through a free list, so their strings keep their capacity and a warm
// producer stops allocating.
struct Item {
  // Hand-off flag between the sending thread and the appender thread.
  // moodycamel orders it already (with fences); this explicit release/acquire
  // pair states the contract in the code and is one TSan can see.
  std::atomic<uint32_t> filled{0};
  uint32_t partition = 0;
  std::string key, value;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t timestamp_ns = 0;
  AsyncProducer::Completion on_complete;
};

}  // namespace

struct AsyncProducerState {
  Producer producer;
  AsyncProducerOptions options;
  moodycamel::BlockingConcurrentQueue<Item*> work;
  moodycamel::ConcurrentQueue<Item*> free_items;
  std::atomic<uint64_t> queued{0}, completed{0}, failed{0}, batches{0};
  std::atomic<uint64_t> in_queue{0};
  std::atomic<uint32_t> round_robin{0};
  std::atomic<bool> stop{false};
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::thread thread;

  explicit AsyncProducerState(Producer p, const AsyncProducerOptions& o) : producer(std::move(p)), options(o) {}

  ~AsyncProducerState() {
    Item* it;
    while (work.try_dequeue(it)) delete it;
    while (free_items.try_dequeue(it)) delete it;
  }

  void run();
  void append(std::vector<Item*>& items, size_t begin, size_t end, std::vector<Message>& msgs,
              std::vector<std::vector<Header>>& hdrs);
};

void AsyncProducerState::append(std::vector<Item*>& items, size_t begin, size_t end, std::vector<Message>& msgs,
                                std::vector<std::vector<Header>>& hdrs) {
  msgs.clear();
  for (size_t i = begin; i < end; ++i) {
    Item& it = *items[i];
    // acquire: pairs with the release store in send(); the bytes are ours.
    while (it.filled.load(std::memory_order_acquire) == 0) {
    }
    auto& h = hdrs[i - begin];
    h.clear();
    for (auto& [n, v] : it.headers) h.push_back(Header{n, v});
    msgs.push_back(Message{it.key, it.value, h, it.timestamp_ns});
  }
  SendResult r = producer.send_batch(msgs, items[begin]->partition);
  batches.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = begin; i < end; ++i) {
    SendResult each = r;
    if (r.ok()) {
      each.offset = r.offset + (i - begin);
      each.sequence = r.sequence + static_cast<uint32_t>(i - begin);  // idempotent producers
    }
    if (items[i]->on_complete) items[i]->on_complete(each);
    if (!r.ok()) failed.fetch_add(1, std::memory_order_relaxed);
  }
}

void AsyncProducerState::run() {
  const size_t max_batch = std::max<uint32_t>(1, options.max_batch_records);
  std::vector<Item*> items(max_batch);
  std::vector<Message> msgs;
  std::vector<std::vector<Header>> hdrs(max_batch);
  msgs.reserve(max_batch);
  for (;;) {
    size_t n = work.wait_dequeue_bulk_timed(items.begin(), max_batch, std::chrono::milliseconds(50));
    if (n == 0) {
      if (stop.load(std::memory_order_acquire)) return;
      continue;
    }
    if (options.linger_ns > 0 && n < max_batch) {
      std::this_thread::sleep_for(std::chrono::nanoseconds(options.linger_ns));
      n += work.try_dequeue_bulk(items.begin() + static_cast<std::ptrdiff_t>(n), max_batch - n);
    }
    in_queue.fetch_sub(n, std::memory_order_relaxed);
    // One frame per partition: order within a partition is the order in
    // which send() calls were dequeued, which a stable sort keeps.
    std::stable_sort(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(n),
                     [](const Item* a, const Item* b) { return a->partition < b->partition; });
    for (size_t b = 0; b < n;) {
      size_t e = b + 1;
      while (e < n && items[e]->partition == items[b]->partition) ++e;
      append(items, b, e, msgs, hdrs);
      b = e;
    }
    for (size_t i = 0; i < n; ++i) {
      items[i]->on_complete = nullptr;
      // release: pairs with the acquire load in send() that reuses the item.
      items[i]->filled.store(0, std::memory_order_release);
      free_items.enqueue(items[i]);
    }
    {
      std::lock_guard lock(done_mu);
      // release: flush() acquires `completed` and then may read results the
      // completions published.
      completed.fetch_add(n, std::memory_order_release);
    }
    done_cv.notify_all();
  }
}

Result<AsyncProducer> AsyncProducer::create(Bus& bus, std::string_view topic, const AsyncProducerOptions& options) {
  auto p = bus.create_producer(topic, options.producer);
  if (!p) return std::unexpected(p.error());
  auto s = std::make_unique<AsyncProducerState>(std::move(*p), options);
  s->thread = std::thread([st = s.get()] { st->run(); });
  return AsyncProducer(std::move(s));
}

AsyncProducer::AsyncProducer(std::unique_ptr<AsyncProducerState> state) : state_(std::move(state)) {}
AsyncProducer::AsyncProducer(AsyncProducer&&) noexcept = default;
AsyncProducer& AsyncProducer::operator=(AsyncProducer&&) noexcept = default;

AsyncProducer::~AsyncProducer() {
  if (!state_) return;
  (void)flush(10'000'000'000);
  state_->stop.store(true, std::memory_order_release);
  state_->thread.join();
}

SendStatus AsyncProducer::send(const Message& m, std::optional<uint32_t> partition, Completion on_complete) {
  AsyncProducerState& s = *state_;
  // relaxed: an approximate bound; a few records over it are harmless.
  if (s.in_queue.load(std::memory_order_relaxed) >= s.options.max_queued_records) return SendStatus::kBackPressured;
  const uint32_t parts = s.producer.partition_count();
  if (partition && *partition >= parts) return SendStatus::kError;
  Item* it = nullptr;
  if (s.free_items.try_dequeue(it)) {
    // acquire: pairs with the release store in run() that recycled it.
    (void)it->filled.load(std::memory_order_acquire);
  } else {
    it = new Item();
  }
  it->partition = partition ? *partition
                  : !m.key.empty() ? s.producer.partition_for_key(m.key)
                                   : s.round_robin.fetch_add(1, std::memory_order_relaxed) /
                                         std::max<uint32_t>(1, s.options.max_batch_records) % parts;
  it->key.assign(m.key);
  it->value.assign(m.value);
  it->headers.resize(m.headers.size());
  for (size_t i = 0; i < m.headers.size(); ++i) {
    it->headers[i].first.assign(m.headers[i].name);
    it->headers[i].second.assign(m.headers[i].value);
  }
  it->timestamp_ns = m.timestamp_ns;
  it->on_complete = std::move(on_complete);
  it->filled.store(1, std::memory_order_release);
  s.in_queue.fetch_add(1, std::memory_order_relaxed);
  s.queued.fetch_add(1, std::memory_order_relaxed);
  s.work.enqueue(it);
  return SendStatus::kOk;
}

Status AsyncProducer::flush(int64_t timeout_ns) {
  AsyncProducerState& s = *state_;
  const uint64_t target = s.queued.load(std::memory_order_relaxed);
  std::unique_lock lock(s.done_mu);
  const bool done = s.done_cv.wait_for(lock, std::chrono::nanoseconds(timeout_ns), [&] {
    return s.completed.load(std::memory_order_acquire) >= target;
  });
  if (!done) return make_error(Errc::kTimeout, "flush timed out with records still queued");
  return {};
}

AsyncProducerStats AsyncProducer::stats() const noexcept {
  const AsyncProducerState& s = *state_;
  AsyncProducerStats st;
  st.queued = s.queued.load(std::memory_order_relaxed);
  st.appended = s.completed.load(std::memory_order_relaxed) - s.failed.load(std::memory_order_relaxed);
  st.failed = s.failed.load(std::memory_order_relaxed);
  st.batches = s.batches.load(std::memory_order_relaxed);
  return st;
}

}  // namespace sluice
