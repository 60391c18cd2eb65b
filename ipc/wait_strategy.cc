// wait_strategy.h is header-only (the wait loop is inlined into each
// consumer's poll); this file holds nothing but keeps the header compiled
// on its own.
#include "ipc/wait_strategy.h"
