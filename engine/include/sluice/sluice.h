// sluice: an embedded, same-host, shared-memory message engine.
// Include this header only.
#pragma once

#include <sluice/async_producer.h>
#include <sluice/bus.h>
#include <sluice/clock.h>
#include <sluice/consumer.h>
#include <sluice/options.h>
#include <sluice/processed.h>
#include <sluice/producer.h>
#include <sluice/queue.h>
#include <sluice/record.h>
#include <sluice/retrying_consumer.h>
#include <sluice/status.h>
#include <sluice/transaction.h>
