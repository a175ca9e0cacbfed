/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the gmem_uffd selftests: the device, guest memory files
 * (and the sealed memfd that stands in for one in the tests' self checks),
 * the debugfs counters, userfaultfd set-up, the environment and the clock.
 * Every helper that can fail returns -errno (or -1 where said) instead of
 * asserting, so that both kselftest-harness tests and plain programs can
 * use it.
 */
#ifndef GMEM_UTIL_H
#define GMEM_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"

#define GMEM_DEV		"/dev/guest_memfd"
#define GMEM_MODULE		"gmem_uffd"
#define DEBUGFS_DIR		"/sys/kernel/debug"
#define GMEM_DEBUGFS_DIR	DEBUGFS_DIR "/" GMEM_MODULE
#define GMEM_SHARED		(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
#define PUNCH_HOLE		(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define MODE_MISSING		UFFDIO_REGISTER_MODE_MISSING
#define MODE_MINOR		UFFDIO_REGISTER_MODE_MINOR
#define MODE_BOTH		(MODE_MISSING | MODE_MINOR)

/* /dev/guest_memfd opened read-write: the fd, or -errno. */
static inline int gmem_open_dev(void)
{
	int fd = open(GMEM_DEV, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static inline int create_gmem_args(int dev, struct kvm_create_guest_memfd *args)
{
	int fd = ioctl(dev, KVM_CREATE_GUEST_MEMFD, args);

	return fd < 0 ? -errno : fd;
}

/* A guest memory file of @size bytes made on @dev: its fd, or -errno. */
static inline int create_gmem(int dev, __u64 size, __u64 flags)
{
	struct kvm_create_guest_memfd args = { .size = size, .flags = flags };

	return create_gmem_args(dev, &args);
}

/*
 * A shmem memfd of @size bytes sealed against growing and shrinking: the
 * stand-in for a GMEM_SHARED file (same MISSING/MINOR rules; a pwrite()
 * past the end fails with EPERM instead of ENOSPC).  The fd, or -errno.
 */
static inline int create_sealed_memfd(const char *name, long size)
{
	int fd, ret;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) || fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Map the first @len bytes of @fd read-write: 0 or -errno. */
static inline int map_gmem(int fd, long len, int flags, char **mem)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	*mem = p;
	return 0;
}

/*
 * Read a file holding one decimal number and a newline, as the module's
 * debugfs counters do ("%llu\n"): 0, -EINVAL for any other format, or
 * -errno.
 */
static inline int read_number(const char *path, unsigned long long *val)
{
	char buf[32], *end;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[n] = '\0';
	if (n < 2 || buf[n - 1] != '\n' || buf[0] < '0' || buf[0] > '9')
		return -EINVAL;
	errno = 0;
	*val = strtoull(buf, &end, 10);
	if (errno || end != buf + n - 1)
		return -EINVAL;
	return 0;
}

static inline bool debugfs_mounted(void)
{
	struct statfs sfs;

	return !statfs(DEBUGFS_DIR, &sfs) && sfs.f_type == DEBUGFS_MAGIC;
}

/* debugfs is mounted and the module's counters are there. */
static inline bool gmem_counters_present(void)
{
	return debugfs_mounted() && !access(GMEM_DEBUGFS_DIR "/files", R_OK);
}

/* The module's debugfs counter @name, or -1 when it cannot be read. */
static inline long long gmem_counter(const char *name)
{
	unsigned long long val = 0;
	char path[128];

	snprintf(path, sizeof(path), GMEM_DEBUGFS_DIR "/%s", name);
	if (read_number(path, &val))
		return -1;
	return val;
}

static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline uint64_t now_ms(void)
{
	return now_us() / 1000;
}

/*
 * A userfaultfd with the API handshake done for @features, or -errno.
 * O_NONBLOCK: poll() on a blocking userfaultfd reports POLLERR.
 */
static inline int uffd_open_features(__u64 features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
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

static inline int uffd_open(void)
{
	return uffd_open_features(0);
}

/*
 * The next message of @uffd (opened O_NONBLOCK) within @timeout_ms: 0 with
 * *@msg filled, -ETIMEDOUT, or -errno of poll() or read() (-EIO: short).
 * A message another reader took first is waited for again.
 */
static inline int uffd_read_msg(int uffd, struct uffd_msg *msg, int timeout_ms)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };
	uint64_t deadline = now_ms() + timeout_ms;
	ssize_t n;
	int ret, left;

	for (;;) {
		left = (int)(deadline - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return -errno;
		if (!ret)
			return -ETIMEDOUT;
		n = read(uffd, msg, sizeof(*msg));
		if (n == (ssize_t)sizeof(*msg))
			return 0;
		if (n < 0 && errno == EAGAIN)
			continue;
		return n < 0 ? -errno : -EIO;
	}
}

/* How often a filling ioctl that fails with EAGAIN is tried before giving up. */
#define UFFD_EAGAIN_TRIES	1000

/*
 * A filling ioctl (@req: UFFDIO_COPY, UFFDIO_CONTINUE, ...) on @uffd with
 * @arg, tried again while it fails with EAGAIN (the mm is changing under a
 * non-cooperative event), up to UFFD_EAGAIN_TRIES times; *@eagain, unless
 * NULL, counts the retries.  0 or -errno.
 */
static inline int uffd_ioctl_retry(int uffd, unsigned long req, void *arg,
				   unsigned long *eagain)
{
	int i;

	for (i = 0; i < UFFD_EAGAIN_TRIES; i++) {
		if (!ioctl(uffd, req, arg))
			return 0;
		if (errno != EAGAIN)
			return -errno;
		if (eagain)
			(*eagain)++;
		sched_yield();
	}
	return -EAGAIN;
}

/* Register [@addr, @addr + @len) for @mode: 0 or -errno; *@ioctls unless NULL. */
static inline int uffd_register(int uffd, void *addr, unsigned long len, __u64 mode,
				__u64 *ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = (unsigned long)addr, .len = len },
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

/* The environment variable @name as a number in [@min, @max], else @def. */
static inline unsigned long env_ulong(const char *name, unsigned long def, unsigned long min,
				      unsigned long max)
{
	const char *s = getenv(name);
	unsigned long v;
	char *end;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v < min || v > max) {
		ksft_print_msg("ignoring %s=%s (want %lu..%lu)\n", name, s, min, max);
		return def;
	}
	return v;
}

/* A byte pattern of @seed over @len bytes. */
static inline void fill(char *buf, long len, unsigned int seed)
{
	long i;

	for (i = 0; i < len; i++)
		buf[i] = (char)(seed + i % 251 + 1);
}

static inline bool all_zero(const char *buf, long len)
{
	long i;

	for (i = 0; i < len; i++) {
		if (buf[i])
			return false;
	}
	return true;
}

/* pthread_join() bounded by @secs seconds: 0 or ETIMEDOUT. */
static inline int join_timeout(pthread_t thread, int secs)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	return pthread_timedjoin_np(thread, NULL, &ts);
}

/* xorshift64*: the next number of the generator whose state is *@s (never 0). */
static inline uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static inline unsigned long rnd_below(uint64_t *s, unsigned long n)
{
	return n ? rnd_next(s) % n : 0;
}

#endif /* GMEM_UTIL_H */
