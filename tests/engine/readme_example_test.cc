// Keeps the README's quick start true: the same calls, compiled and run.
#include <gtest/gtest.h>
#include <sluice/sluice.h>

#include <vector>

#include "support/test_support.h"

namespace {

TEST(ReadmeQuickStart, RunsAsWritten) {
  sluice::test::TempDir dir;
  auto bus = sluice::Bus::open(dir.sub("my-bus"));
  ASSERT_TRUE(bus);
  sluice::TopicOptions topic;
  topic.partitions = 4;
  ASSERT_TRUE(bus->create_topic("orders", topic));
  EXPECT_EQ(bus->create_topic("orders", topic).error().code, sluice::Errc::kAlreadyExists);
  auto producer = bus->create_producer("orders");
  sluice::SendResult sent = producer->send({.key = "customer-42", .value = "order created"});
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent.partition, producer->partition_for_key("customer-42"));
  sluice::ConsumerOptions options;
  options.auto_commit = false;
  auto consumer = bus->create_consumer("orders", "billing", options);
  std::vector<sluice::RecordView> batch(64);
  auto n = consumer->poll(batch, 1'000'000'000);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 1u);
  EXPECT_EQ(batch[0].value, "order created");
  EXPECT_TRUE(consumer->commit_sync());
}

TEST(ReadmeQuickStart, WorkQueueRunsAsWritten) {
  sluice::test::TempDir dir;
  auto bus = sluice::Bus::open(dir.sub("my-bus"));
  ASSERT_TRUE(bus);
  sluice::QueueOptions queue;
  queue.retry.max_receives = 5;
  queue.retry.base_delay_ns = 1'000'000'000;
  ASSERT_TRUE(bus->create_queue("jobs", queue));
  auto publisher = bus->create_queue_publisher("jobs");
  ASSERT_TRUE(publisher);
  sluice::QueueMessage job;
  job.value = "resize image 17";
  job.group = "album-3";
  ASSERT_TRUE(publisher->publish(job).ok());
  auto worker = bus->create_worker("jobs");
  ASSERT_TRUE(worker);
  auto n = worker->run(
      [](const sluice::Delivery& job) {
        if (job.value().empty()) throw sluice::PermanentError("empty job");
      },
      {}, 1);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(bus->queue_stats("jobs")->total().acked, 1u);
}

TEST(ReadmeQuickStart, IdempotentProducerRunsAsWritten) {
  sluice::test::TempDir dir;
  auto bus = sluice::Bus::open(dir.sub("my-bus"));
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic("orders", sluice::TopicOptions{}));
  for (int restart = 0; restart < 2; ++restart) {
    sluice::ProducerOptions idem;
    idem.idempotent = true;
    idem.producer_name = "ingest-1";
    auto ingest = bus->create_producer("orders", idem);
    ASSERT_TRUE(ingest);
    uint32_t seq = *ingest->next_sequence(0);
    EXPECT_EQ(seq, static_cast<uint32_t>(restart));
    auto r = ingest->send_sequenced(sluice::Message{"k", "v"}, seq, 0);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r.duplicate);
    auto again = ingest->send_sequenced(sluice::Message{"k", "v"}, seq, 0);
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.offset, r.offset);
  }
}

TEST(ReadmeQuickStart, ConsumeTransformProduceRunsAsWritten) {
  sluice::test::TempDir dir;
  auto bus = sluice::Bus::open(dir.sub("my-bus"));
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->create_topic("orders", sluice::TopicOptions{}));
  ASSERT_TRUE(bus->create_topic("invoices", sluice::TopicOptions{}));
  ASSERT_TRUE(bus->create_producer("orders")->send({.key = "customer-42", .value = "order created"}).ok());
  std::vector<sluice::RecordView> batch(64);
  auto tx = bus->create_transactional_producer("enrich-0");
  ASSERT_TRUE(tx);
  sluice::Consumer* in = *tx->consumer("orders", "enrich");
  sluice::Producer* out = *tx->producer("invoices");
  ASSERT_TRUE(tx->begin());
  auto got = in->poll(batch, 1'000'000'000);
  ASSERT_TRUE(got);
  ASSERT_EQ(*got, 1u);
  for (size_t i = 0; got && i < *got; ++i)
    ASSERT_TRUE(out->send({.key = batch[i].key, .value = "invoice"}).ok());
  ASSERT_TRUE(tx->commit());
  auto invoices = bus->create_consumer("invoices", "");
  ASSERT_TRUE(invoices);
  auto n = invoices->poll(batch, 1'000'000'000);
  ASSERT_TRUE(n);
  ASSERT_EQ(*n, 1u);
  EXPECT_EQ(batch[0].key, "customer-42");
  auto lag = bus->describe_group("enrich");
  ASSERT_TRUE(lag);
  uint64_t committed = 0;
  for (const auto& p : lag->partitions) committed += p.committed == sluice::kNoOffset ? 0 : p.committed;
  EXPECT_EQ(committed, 1u) << "the order's offset committed with the invoice";
}

}  // namespace
