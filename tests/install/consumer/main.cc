#include <sluice/sluice.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto bus = sluice::Bus::open(argv[1]);
  if (!bus) return std::fprintf(stderr, "%s\n", bus.error().to_string().c_str()), 1;
  if (!bus->create_topic("t", {})) return 1;
  auto producer = bus->create_producer("t");
  if (!producer || !producer->send({.key = "k", .value = "installed"}).ok()) return 1;
  std::puts("ok");
  return 0;
}
