// Entry point of `sluice bench`: the two-process benchmark harness.
// The command line (tools/) forwards its arguments here.
#pragma once

namespace sluice::bench {

// argv[0] is "bench"; returns the process exit code.
int run(int argc, char** argv);

}  // namespace sluice::bench
