#include "queue_exactly_once.h"

#include <algorithm>
#include <charconv>
#include <string>

namespace sluice {

std::string_view processed_id_of(const Delivery& d, std::string_view queue, int64_t epoch_unix_ms,
                                 std::span<char, kProcessedIdBufferBytes> buf) noexcept {
  if (std::string_view named = d.headers().find(kHeaderProcessedId); !named.empty()) return named;
  char* p = buf.data();
  char* const end = buf.data() + buf.size();
  auto put = [&](std::string_view s) {
    const size_t n = std::min<size_t>(s.size(), static_cast<size_t>(end - p));
    std::copy_n(s.data(), n, p);
    p += n;
  };
  auto number = [&](auto v) {
    auto r = std::to_chars(p, end, v);
    if (r.ec == std::errc()) p = r.ptr;
  };
  put("queue:");
  put(queue);
  put(":");
  number(d.priority());
  put(":");
  number(d.offset());
  put("@");
  number(epoch_unix_ms);
  return std::string_view(buf.data(), static_cast<size_t>(p - buf.data()));
}

void ExactlyOnceHandling::handle(Delivery& d, std::string_view id, const Handler& handler, WorkerStats& stats) {
  // FunctionRefs: nothing is allocated per message.
  auto fn = [&] { handler(d); };
  FunctionRef<bool(std::string_view)> resolve;
  if (resolve_) resolve = resolve_;
  auto r = store_.process_once(id, fn, resolve);
  if (!r) {
    // Another live runner holds the id (a lease that expired under a slow
    // handler), or its bucket is full of ids that count: both pass, so the
    // message comes back after the retry delay. Anything else (an id too
    // long, a damaged bucket) would fail the same way every time.
    if (r.error().code == Errc::kBusy) {
      (void)d.nack(Failure{"ProcessedIdBusy", r.error().to_string(), ""});
    } else {
      const char* type = r.error().code == Errc::kInvalidArgument ? "InvalidProcessedId" : "ProcessedStoreError";
      (void)d.reject(Failure{type, r.error().to_string(), ""});
    }
    return;
  }
  switch (*r) {
    case ProcessOutcome::kRan:
      break;
    case ProcessOutcome::kAlreadyDone:
      ++stats.already_done;
      break;
    case ProcessOutcome::kInDoubt: {
      // A runner died inside the handler and nothing can tell whether its
      // effect happened: an operator decides, nothing is lost or run twice
      // meanwhile. The letter keeps the id (kHeaderProcessedId), so a
      // replay after settling is acked (mark-done) or run (forget), and a
      // replay before is in doubt again.
      ++stats.in_doubt;
      const std::string store = store_.name();
      const std::string quoted = "'" + std::string(id) + "'";
      (void)d.reject(Failure{"InDoubt",
                             "processed store " + store + ": id " + quoted +
                                 " is in doubt: a worker died while handling it, so its effect may or may not "
                                 "have happened, and the worker has no resolver. Settle it with `sluice processed "
                                 "mark-done " + store + " " + quoted + "` (it happened) or `sluice processed forget " +
                                 store + " " + quoted + "` (it did not), then replay this letter",
                             ""});
      return;
    }
  }
  (void)d.ack();  // a lost lease: the next holder finds the id done
}

}  // namespace sluice
