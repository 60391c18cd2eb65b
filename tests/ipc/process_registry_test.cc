#include "ipc/process_registry.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "support/test_support.h"

namespace sluice::ipc {
namespace {

TEST(ProcessRegistry, TwoHandlesInOneProcessGetDistinctLiveSlots) {
  test::TempDir dir;
  auto a = ProcessRegistry::attach(dir.path());
  auto b = ProcessRegistry::attach(dir.path());
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->self(), b->self());
  EXPECT_TRUE(a->is_alive(b->self()));
  EXPECT_TRUE(b->is_alive(a->self()));
}

TEST(ProcessRegistry, KilledProcessIsSeenDeadAndItsSlotReuseChangesTheOwnerId) {
  test::TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = test::fork_child([&] {
    auto r = ProcessRegistry::attach(dir.path());
    if (!r) return 1;
    OwnerId id = r->self();
    if (::write(fds[1], &id, sizeof id) != sizeof id) return 2;
    ::pause();
    return 0;
  });
  OwnerId child_id = 0;
  ASSERT_EQ(::read(fds[0], &child_id, sizeof child_id), static_cast<ssize_t>(sizeof child_id));
  auto me = ProcessRegistry::attach(dir.path());
  ASSERT_TRUE(me);
  EXPECT_TRUE(me->is_alive(child_id));
  ::kill(child, SIGKILL);
  EXPECT_EQ(test::wait_child(child, 5000), 128 + SIGKILL);
  EXPECT_FALSE(me->is_alive(child_id));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(ProcessRegistry, ForkChildDoesNotKeepParentSlotAlive) {
  test::TempDir dir;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  // A parent attaches, forks a long-lived child, then dies: the child's
  // inherited descriptor must not keep the parent's slot locked.
  pid_t parent = test::fork_child([&] {
    auto r = ProcessRegistry::attach(dir.path());
    if (!r) return 1;
    OwnerId id = r->self();
    int ready[2];
    if (::pipe(ready) != 0) return 3;
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      // fork() returned here, so the atfork child handler has already closed
      // the inherited lock descriptor; say so, then outlive the parent.
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(1);
      ::sleep(5);
      ::_exit(0);
    }
    char c;
    if (::read(ready[0], &c, 1) != 1) return 4;
    if (::write(fds[1], &id, sizeof id) != sizeof id) return 2;
    if (::write(fds[1], &grandchild, sizeof grandchild) != sizeof grandchild) return 2;
    return 0;
  });
  OwnerId parent_id = 0;
  pid_t grandchild = 0;
  ASSERT_EQ(::read(fds[0], &parent_id, sizeof parent_id), static_cast<ssize_t>(sizeof parent_id));
  ASSERT_EQ(::read(fds[0], &grandchild, sizeof grandchild), static_cast<ssize_t>(sizeof grandchild));
  EXPECT_EQ(test::wait_child(parent, 5000), 0);
  auto me = ProcessRegistry::attach(dir.path());
  ASSERT_TRUE(me);
  EXPECT_FALSE(me->is_alive(parent_id));
  ::kill(grandchild, SIGKILL);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace sluice::ipc
