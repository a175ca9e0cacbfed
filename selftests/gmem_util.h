/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the gmem_uffd selftests.
 */
#ifndef GMEM_UTIL_H
#define GMEM_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

/*
 * A userfaultfd with the API handshake done, or -errno.  O_NONBLOCK: poll()
 * on a blocking userfaultfd reports POLLERR.
 */
static inline int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int uffd, ret;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (uffd < 0)
		return -errno;
	if (ioctl(uffd, UFFDIO_API, &api)) {
		ret = -errno;
		close(uffd);
		return ret;
	}
	return uffd;
}

#endif /* GMEM_UTIL_H */
