// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of the gmem_uffd module: /dev/guest_memfd and the guest memory
 * files it creates.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define GMEM_DEV "/dev/guest_memfd"

TEST(device_node)
{
	struct stat st;

	ASSERT_EQ(0, stat(GMEM_DEV, &st)) {
		TH_LOG("%s: %s (is gmem_uffd loaded?)", GMEM_DEV, strerror(errno));
	}
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	/* Guest memory is private to the VMM by default. */
	EXPECT_EQ(0600U, st.st_mode & 07777);
}

TEST(open_close)
{
	int fd = open(GMEM_DEV, O_RDWR | O_CLOEXEC);

	ASSERT_LE(0, fd) TH_LOG("open: %s", strerror(errno));
	EXPECT_EQ(0, close(fd));
}

TEST(unknown_ioctl_enotty)
{
	int fd = open(GMEM_DEV, O_RDWR | O_CLOEXEC);

	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, _IO('x', 0x7f), 0));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
}

TEST_HARNESS_MAIN
