// File-system helpers the segment recycling relies on.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "ipc/file_lock.h"
#include "ipc/filesystem.h"
#include "support/test_support.h"

namespace sluice::ipc {
namespace {

TEST(RenameNoReplace, MovesAFileToAFreeName) {
  test::TempDir dir;
  ASSERT_TRUE(write_file_atomic(dir.sub("a"), "spare"));
  ASSERT_TRUE(rename_noreplace(dir.sub("a"), dir.sub("b")));
  EXPECT_FALSE(path_exists(dir.sub("a")));
  auto b = read_file(dir.sub("b"));
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, "spare");
}

TEST(RenameNoReplace, RefusesToReplaceAnExistingFileAndLeavesBoth) {
  test::TempDir dir;
  ASSERT_TRUE(write_file_atomic(dir.sub("a"), "spare"));
  ASSERT_TRUE(write_file_atomic(dir.sub("b"), "live segment"));
  errno = 0;
  EXPECT_FALSE(rename_noreplace(dir.sub("a"), dir.sub("b")));
  EXPECT_EQ(errno, EEXIST);
  EXPECT_EQ(read_file(dir.sub("a")).value_or(""), "spare");
  EXPECT_EQ(read_file(dir.sub("b")).value_or(""), "live segment");
}

TEST(FileLockSize, IsTheLockedFilesSizeWhateverItsNameBecomes) {
  test::TempDir dir;
  ASSERT_TRUE(write_file_atomic(dir.sub("f"), std::string(12345, 'x')));
  auto lock = FileLock::try_lock_existing(dir.sub("f"), FileLock::Mode::kExclusive);
  ASSERT_TRUE(lock);
  ASSERT_TRUE(rename_noreplace(dir.sub("f"), dir.sub("g")));
  EXPECT_EQ(lock->size(), 12345u);
  lock->release();
  EXPECT_EQ(lock->size(), UINT64_MAX);
}

}  // namespace
}  // namespace sluice::ipc
