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

}  // namespace
