// SPDX-License-Identifier: GPL-2.0
/*
 * API tests of gmem_uffd: /dev/guest_memfd, the guest memory files
 * ("gmem fds") that KVM_CREATE_GUEST_MEMFD makes on it, and their
 * userfaultfd support.
 *
 * Covered:
 *  - device: ENOTTY for unknown ioctls; KVM_CREATE_GUEST_MEMFD returns a
 *    new O_RDWR, close-on-exec fd; EINVAL for unknown flags, INIT_SHARED
 *    without MMAP, non-zero reserved words, bad sizes; 1 TiB accepted.
 *  - file: fstat size, ftruncate refused, fallocate (allocate, keep size,
 *    punch hole, unsupported modes, alignment and range checks),
 *    pread/pwrite at any offset (zero fill, EOF: short, 0, EINVAL),
 *    read/write/lseek.
 *  - mmap: MAP_PRIVATE refused, ENODEV without GUEST_MEMFD_FLAG_MMAP,
 *    SIGBUS without INIT_SHARED and past EOF, zero page on first touch,
 *    coherence with pread/pwrite, punch hole of a mapped page.
 *  - userfaultfd: MISSING, MINOR and MISSING|MINOR registration and the
 *    ioctls reported, WP refused; the fault policy (MISSING event for an
 *    absent page, MINOR event for a present page not mapped yet, no event
 *    otherwise); UFFDIO_COPY (read and write faults), UFFDIO_ZEROPAGE,
 *    UFFDIO_CONTINUE after pwrite, fallocate or a write through a second
 *    mapping, pwrite + UFFDIO_CONTINUE for a MISSING fault, UFFDIO_POISON;
 *    EEXIST, past-EOF and absent-page errors.
 *  - debugfs counters (files, folios, missing_events, minor_events): their
 *    format ("%llu\n", checked on every read) and how they move.
 *  - lifecycle: the module cannot be unloaded while a gmem fd, or only a
 *    mapping of one, is alive.
 *
 * Every wait is bounded: the uffd handler thread polls with a timeout and
 * the threads that fault are joined with a timeout, so a lost event or a
 * stuck fault fails the test instead of hanging it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#define MODULE_REFCNT		"/sys/module/" GMEM_MODULE "/refcnt"
#define GMEM_MAX_SIZE		0x10000000000ULL	/* 1 TiB */
#define MODE_WP			UFFDIO_REGISTER_MODE_WP
#define UFFD_IOCTL(name)	((__u64)1 << _UFFDIO_##name)

/* Bounds of every wait. */
#define POLL_TIMEOUT_MS		3000
#define JOIN_TIMEOUT_S		5
#define MAX_EVENTS		4

/*
 * Scratch buffers of SCRATCH_PAGES pages: two patterns and a read buffer
 * (the faulting thread copies to its toucher's own page).  Every test runs
 * in its own process, so every test has its own copy.
 */
#define SCRATCH_PAGES		4
static long page_size;
static char *pat_a, *pat_b, *rbuf;

static void __attribute__((constructor)) init_globals(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	pat_a = calloc(SCRATCH_PAGES, page_size);
	pat_b = calloc(SCRATCH_PAGES, page_size);
	rbuf = calloc(SCRATCH_PAGES, page_size);
}

static long long file_size(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	return st.st_size;
}

/* pread of @len bytes at @off into rbuf: the byte count or -errno. */
static long read_at(int fd, long len, long off)
{
	return err_of(pread(fd, rbuf, len, off));
}

static unsigned long long counter(struct __test_metadata *_metadata, const char *name)
{
	unsigned long long val = 0;
	char path[128];

	snprintf(path, sizeof(path), GMEM_DEBUGFS_DIR "/%s", name);
	ASSERT_EQ(0, read_number(path, &val)) TH_LOG("reading %s", path);
	return val;
}

/*
 * access_sigbus() reads one byte (or writes @val there) and tells whether
 * that raised SIGBUS (sigbus_probe() of gmem_util.h: the thread that faults
 * is the one that catches).
 */
static bool access_sigbus(char *p, bool write, char val)
{
	return sigbus_probe(p, write, val, NULL);
}

/* userfaultfd helpers: each returns 0 or -errno. */

static int uffd_unregister(int uffd, void *addr, long len)
{
	struct uffdio_range range = { .start = (unsigned long)addr, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &range) ? -errno : 0;
}

/* The fill ioctls act on the one page at @dst; *@res gets their result field. */
static int uffd_copy(int uffd, void *dst, const void *src, __s64 *res)
{
	struct uffdio_copy copy = {
		.dst = (unsigned long)dst,
		.src = (unsigned long)src,
		.len = page_size,
	};
	int ret = ioctl(uffd, UFFDIO_COPY, &copy) ? -errno : 0;

	if (res)
		*res = copy.copy;
	return ret;
}

/*
 * UFFDIO_ZEROPAGE, UFFDIO_CONTINUE and UFFDIO_POISON take the same layout:
 * a range, a mode and the result (struct uffdio_continue stands for all).
 */
static int uffd_range_op(int uffd, unsigned long cmd, void *dst, __s64 *res)
{
	struct uffdio_continue arg = {
		.range = { .start = (unsigned long)dst, .len = page_size },
	};
	int ret = ioctl(uffd, cmd, &arg) ? -errno : 0;

	static_assert(sizeof(struct uffdio_zeropage) == sizeof(arg), "layout");
	static_assert(sizeof(struct uffdio_poison) == sizeof(arg), "layout");
	if (res)
		*res = arg.mapped;
	return ret;
}

/*
 * The handler thread: reads up to @nr_events page faults from @uffd,
 * waiting at most POLL_TIMEOUT_MS for each, records them in @msgs and
 * resolves each with the @resolve callback.  It stops at the first error
 * and leaves it in @err.
 */
struct uffd_handler {
	int uffd;
	int nr_events;
	int (*resolve)(struct uffd_handler *h, const struct uffd_msg *msg);
	int gmem;		/* the gmem fd mapped at @base, from offset 0 */
	char *base;
	const char *src;	/* one page: what the resolver places */
	/* Results */
	int served;
	int err;
	struct uffd_msg msgs[MAX_EVENTS];
	pthread_t thread;
};

static void *fault_page(const struct uffd_msg *msg)
{
	return (void *)(unsigned long)(msg->arg.pagefault.address & ~((__u64)page_size - 1));
}

static int resolve_copy(struct uffd_handler *h, const struct uffd_msg *msg)
{
	return uffd_copy(h->uffd, fault_page(msg), h->src, NULL);
}

static int resolve_zeropage(struct uffd_handler *h, const struct uffd_msg *msg)
{
	return uffd_range_op(h->uffd, UFFDIO_ZEROPAGE, fault_page(msg), NULL);
}

static int resolve_continue(struct uffd_handler *h, const struct uffd_msg *msg)
{
	return uffd_range_op(h->uffd, UFFDIO_CONTINUE, fault_page(msg), NULL);
}

/* Fill the file page behind the fault with pwrite(), then map it. */
static int resolve_pwrite_continue(struct uffd_handler *h, const struct uffd_msg *msg)
{
	char *addr = fault_page(msg);
	ssize_t n;

	n = pwrite(h->gmem, h->src, page_size, addr - h->base);
	if (n != page_size)
		return n < 0 ? -errno : -EIO;
	return uffd_range_op(h->uffd, UFFDIO_CONTINUE, addr, NULL);
}

static void *uffd_handler_fn(void *arg)
{
	struct uffd_handler *h = arg;
	struct uffd_msg msg;
	int ret;

	while (h->served < h->nr_events) {
		ret = uffd_read_msg(h->uffd, &msg, POLL_TIMEOUT_MS);
		if (ret) {
			h->err = ret;
			break;
		}
		h->msgs[h->served++] = msg;
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			h->err = -EPROTO;
			break;
		}
		ret = h->resolve(h, &msg);
		if (ret) {
			h->err = ret;
			break;
		}
	}
	return NULL;
}

/*
 * Touch @addr in a thread while @h serves its @nr_events events (0: the
 * fault must be served without any); both threads must finish, and no
 * further event may be left.
 */
static void run_fault(struct __test_metadata *_metadata, struct uffd_handler *h,
		      struct toucher *t, char *addr, bool write, char val)
{
	struct pollfd pfd = { .fd = h->uffd, .events = POLLIN };

	ASSERT_GE(MAX_EVENTS, h->nr_events);
	ASSERT_EQ(0, pthread_create(&h->thread, NULL, uffd_handler_fn, h));
	ASSERT_EQ(0, toucher_start(t, TOUCH_SIGBUS, addr, write, val));
	ASSERT_EQ(0, join_timeout(h->thread, JOIN_TIMEOUT_S * (h->nr_events + 1)));
	ASSERT_EQ(0, h->err)
		TH_LOG("uffd handler failed after %d of %d event(s)", h->served, h->nr_events);
	ASSERT_EQ(h->nr_events, h->served);
	ASSERT_EQ(0, join_timeout(t->thread, JOIN_TIMEOUT_S))
		TH_LOG("the faulting thread is stuck (uffd event pending: %s)",
		       poll(&pfd, 1, 0) > 0 ? "yes" : "no");
	ASSERT_FALSE(t->sig);
	EXPECT_EQ(0, poll(&pfd, 1, 0)) TH_LOG("unexpected uffd event");
}

static void check_fault(struct __test_metadata *_metadata, const struct uffd_msg *msg,
			void *addr, bool minor, bool write)
{
	__u64 flags = msg->arg.pagefault.flags;

	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg->event);
	EXPECT_EQ((unsigned long)addr, msg->arg.pagefault.address);
	EXPECT_EQ(minor, !!(flags & UFFD_PAGEFAULT_FLAG_MINOR))
		TH_LOG("expected a %s fault", minor ? "MINOR" : "MISSING");
	EXPECT_EQ(write, !!(flags & UFFD_PAGEFAULT_FLAG_WRITE));
	EXPECT_EQ(0ULL, flags & UFFD_PAGEFAULT_FLAG_WP);
}

/* A GMEM_SHARED file, mapped; the mapping registered with a new uffd for @mode unless 0. */
struct gmem_map {
	int fd;
	char *mem;
	long map_len;
	int uffd;
};

static void setup_map(struct __test_metadata *_metadata, int dev, struct gmem_map *m,
		      long file_len, long map_len, __u64 mode)
{
	m->uffd = -1;
	m->mem = NULL;
	m->map_len = map_len;
	m->fd = create_gmem(dev, file_len, GMEM_SHARED);
	ASSERT_LE(0, m->fd);
	ASSERT_EQ(0, map_gmem(m->fd, map_len, MAP_SHARED, &m->mem));
	if (!mode)
		return;
	m->uffd = uffd_open();
	ASSERT_LE(0, m->uffd) TH_LOG("userfaultfd");
	ASSERT_EQ(0, uffd_register(m->uffd, m->mem, map_len, mode, NULL));
}

static void put_map(struct gmem_map *m)
{
	if (m->uffd >= 0)
		close(m->uffd);
	munmap(m->mem, m->map_len);
	close(m->fd);
}

/*
 * MISSING flow: a thread touches page 1, absent from the file, of a
 * mapping registered for @mode; the handler sees a MISSING fault and
 * resolves it with @resolve (UFFDIO_COPY of a pattern, UFFDIO_ZEROPAGE, or
 * pwrite of the pattern + UFFDIO_CONTINUE); the thread and pread() see the
 * result.
 */
static void missing_flow(struct __test_metadata *_metadata, int dev, __u64 mode,
			 int (*resolve)(struct uffd_handler *h, const struct uffd_msg *msg),
			 bool write)
{
	struct uffd_handler h = { .nr_events = 1, .resolve = resolve, .src = pat_a };
	char *expect = pat_b, *target;
	struct gmem_map m;
	struct toucher t;

	setup_map(_metadata, dev, &m, 2 * page_size, 2 * page_size, mode);
	target = m.mem + page_size;
	fill(pat_a, page_size, 0x40);
	if (resolve == resolve_zeropage)
		memset(expect, 0, page_size);
	else
		memcpy(expect, pat_a, page_size);
	if (write)
		expect[0] = 0x77;
	h.uffd = m.uffd;
	h.gmem = m.fd;
	h.base = m.mem;

	run_fault(_metadata, &h, &t, target, write, 0x77);
	check_fault(_metadata, &h.msgs[0], target, false, write);
	EXPECT_EQ(0, memcmp(expect, t.seen, page_size))
		TH_LOG("the faulting thread sees the wrong content");
	toucher_free(&t);
	ASSERT_EQ(page_size, read_at(m.fd, page_size, page_size));
	EXPECT_EQ(0, memcmp(expect, rbuf, page_size)) TH_LOG("pread sees the wrong content");
	/* Page 0 was never touched. */
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 0));
	EXPECT_TRUE(all_zero(rbuf, page_size));
	put_map(&m);
}

enum populate { BY_PWRITE, BY_FALLOCATE, BY_OTHER_MAPPING };

/*
 * MINOR flow: page 1 of a mapping registered for @mode is put in the file
 * (pwrite, fallocate, or a write through a second, unregistered mapping),
 * then touched: a MINOR fault, resolved with UFFDIO_CONTINUE.
 */
static void minor_flow(struct __test_metadata *_metadata, int dev, __u64 mode,
		       enum populate how)
{
	struct uffd_handler h = { .nr_events = 1, .resolve = resolve_continue };
	char *target, *other = NULL;
	struct gmem_map m;
	struct toucher t;

	setup_map(_metadata, dev, &m, 2 * page_size, 2 * page_size, mode);
	target = m.mem + page_size;
	fill(pat_a, page_size, 0x30);
	switch (how) {
	case BY_PWRITE:
		ASSERT_EQ(page_size, err_of(pwrite(m.fd, pat_a, page_size, page_size)));
		break;
	case BY_FALLOCATE:
		ASSERT_EQ(0, err_of(fallocate(m.fd, 0, page_size, page_size)));
		memset(pat_a, 0, page_size);
		break;
	case BY_OTHER_MAPPING:
		ASSERT_EQ(0, map_gmem(m.fd, 2 * page_size, MAP_SHARED, &other));
		memcpy(other + page_size, pat_a, page_size);
		break;
	}
	h.uffd = m.uffd;

	run_fault(_metadata, &h, &t, target, false, 0);
	check_fault(_metadata, &h.msgs[0], target, true, false);
	EXPECT_EQ(0, memcmp(pat_a, t.seen, page_size))
		TH_LOG("the faulting thread sees the wrong content");
	toucher_free(&t);
	if (other) {
		/* Both mappings now map the same page. */
		other[page_size] = 0x5a;
		EXPECT_EQ(0x5a, target[0]);
		munmap(other, 2 * page_size);
	}
	put_map(&m);
}

FIXTURE(gmem_dev) {
	int dev;
};

FIXTURE_SETUP(gmem_dev)
{
	ASSERT_TRUE(pat_a && pat_b && rbuf);
	self->dev = gmem_open_dev();
	ASSERT_LE(0, self->dev) TH_LOG("open %s (is %s loaded?)", GMEM_DEV, GMEM_MODULE);
}

FIXTURE_TEARDOWN(gmem_dev)
{
	if (self->dev >= 0)
		close(self->dev);
}

/* ---- The device and KVM_CREATE_GUEST_MEMFD ---- */

/* A character device, private to the VMM (root) by default. */
TEST_F(gmem_dev, device_node_0600)
{
	struct stat st;

	ASSERT_EQ(0, fstat(self->dev, &st));
	EXPECT_TRUE(S_ISCHR(st.st_mode));
	EXPECT_EQ(0600U, st.st_mode & 07777);
}

TEST_F(gmem_dev, unknown_ioctl_enotty)
{
	struct kvm_create_guest_memfd args = { .size = page_size };

	EXPECT_EQ(-ENOTTY, err_of(ioctl(self->dev, _IO('x', 0x7f), 0)));
	EXPECT_EQ(-ENOTTY, err_of(ioctl(self->dev, KVM_GET_API_VERSION, 0)));
	EXPECT_EQ(-ENOTTY, err_of(ioctl(self->dev, KVM_CREATE_VM, 0)));
	/* The right number with the wrong size is another command. */
	EXPECT_EQ(-ENOTTY, err_of(ioctl(self->dev, _IOWR(KVMIO, 0xd4, __u64), &args)));
}

TEST_F(gmem_dev, create_returns_new_fd)
{
	static const __u64 flags[] = { 0, GUEST_MEMFD_FLAG_MMAP, GMEM_SHARED };
	unsigned int i;
	int fd, fl;

	for (i = 0; i < ARRAY_SIZE(flags); i++) {
		fd = create_gmem(self->dev, (i + 1) * page_size, flags[i]);
		ASSERT_LE(0, fd) TH_LOG("flags %#llx", flags[i]);
		EXPECT_NE(self->dev, fd);
		fl = err_of(fcntl(fd, F_GETFL));
		ASSERT_LE(0, fl);
		EXPECT_EQ(O_RDWR, fl & O_ACCMODE);
		fl = err_of(fcntl(fd, F_GETFD));
		ASSERT_LE(0, fl);
		EXPECT_EQ(FD_CLOEXEC, fl & FD_CLOEXEC);
		EXPECT_EQ((i + 1) * page_size, file_size(fd));
		close(fd);
	}
}

TEST_F(gmem_dev, create_bad_flags_or_reserved_einval)
{
	struct kvm_create_guest_memfd args;
	__u64 bit;
	int i;

	EXPECT_EQ(-EINVAL, create_gmem(self->dev, page_size, GUEST_MEMFD_FLAG_INIT_SHARED));
	EXPECT_EQ(-EINVAL, create_gmem(self->dev, page_size,
				       GUEST_MEMFD_FLAG_INIT_SHARED | GUEST_MEMFD_FLAG_NO_DIRECT_MAP));
	/* Bit 2 is GUEST_MEMFD_FLAG_NO_DIRECT_MAP (gmem_secret_test). */
	for (i = 3; i < 64; i++) {
		bit = 1ULL << i;
		EXPECT_EQ(-EINVAL, create_gmem(self->dev, page_size, bit)) TH_LOG("bit %d", i);
		EXPECT_EQ(-EINVAL, create_gmem(self->dev, page_size, GMEM_SHARED | bit))
			TH_LOG("GMEM_SHARED | bit %d", i);
	}
	/* Any non-zero reserved word. */
	for (i = 0; i < (int)ARRAY_SIZE(args.reserved); i++) {
		memset(&args, 0, sizeof(args));
		args.size = page_size;
		args.reserved[i] = 1;
		EXPECT_EQ(-EINVAL, create_gmem_args(self->dev, &args)) TH_LOG("reserved[%d]", i);
		args.reserved[i] = 1ULL << 63;
		EXPECT_EQ(-EINVAL, create_gmem_args(self->dev, &args)) TH_LOG("reserved[%d]", i);
	}
}

TEST_F(gmem_dev, create_bad_size_einval)
{
	const __u64 sizes[] = {
		0, 1, page_size - 1, page_size + 1, 3 * page_size / 2,
		GMEM_MAX_SIZE + page_size, GMEM_MAX_SIZE * 2, 1ULL << 63,
		~0ULL, ~0ULL & ~((__u64)page_size - 1),
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		EXPECT_EQ(-EINVAL, create_gmem(self->dev, sizes[i], 0))
			TH_LOG("size %#llx", sizes[i]);
		EXPECT_EQ(-EINVAL, create_gmem(self->dev, sizes[i], GMEM_SHARED))
			TH_LOG("size %#llx, mmap", sizes[i]);
	}
}

TEST_F(gmem_dev, create_max_size)
{
	const long long last = GMEM_MAX_SIZE - page_size;
	/* 1 TiB is accepted: the file is sparse. */
	int fd = create_gmem(self->dev, GMEM_MAX_SIZE, GMEM_SHARED);

	ASSERT_LE(0, fd);
	EXPECT_EQ((long long)GMEM_MAX_SIZE, file_size(fd));
	fill(pat_a, page_size, 0x10);
	ASSERT_EQ(page_size, err_of(pwrite(fd, pat_a, page_size, last)));
	ASSERT_EQ(page_size, read_at(fd, page_size, last));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, page_size));
	EXPECT_EQ(-EINVAL, err_of(pwrite(fd, pat_a, page_size, GMEM_MAX_SIZE)));
	EXPECT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, last, page_size)));
	close(fd);
}

/* ---- The guest memory file: size, fallocate, read and write ---- */

TEST_F(gmem_dev, ftruncate_einval)
{
	const long size = 2 * page_size;
	int fd = create_gmem(self->dev, size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	EXPECT_EQ(-EINVAL, err_of(ftruncate(fd, size)));
	EXPECT_EQ(-EINVAL, err_of(ftruncate(fd, size + page_size)));
	EXPECT_EQ(-EINVAL, err_of(ftruncate(fd, page_size)));
	EXPECT_EQ(-EINVAL, err_of(ftruncate(fd, 0)));
	EXPECT_EQ(size, file_size(fd));
	close(fd);
}

TEST_F(gmem_dev, fallocate_allocate)
{
	int fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	fill(pat_a, page_size, 0x21);
	ASSERT_EQ(page_size, err_of(pwrite(fd, pat_a, page_size, page_size)));

	EXPECT_EQ(0, err_of(fallocate(fd, 0, 0, 4 * page_size)));
	EXPECT_EQ(0, err_of(fallocate(fd, FALLOC_FL_KEEP_SIZE, page_size, 2 * page_size)));
	EXPECT_EQ(4 * page_size, file_size(fd));
	/* New pages are zeroed, existing data is kept. */
	ASSERT_EQ(4 * page_size, read_at(fd, 4 * page_size, 0));
	EXPECT_TRUE(all_zero(rbuf, page_size));
	EXPECT_EQ(0, memcmp(pat_a, rbuf + page_size, page_size));
	EXPECT_TRUE(all_zero(rbuf + 2 * page_size, 2 * page_size));
	close(fd);
}

TEST_F(gmem_dev, fallocate_punch_hole)
{
	int fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	fill(pat_a, 3 * page_size, 0x22);
	ASSERT_EQ(3 * page_size, err_of(pwrite(fd, pat_a, 3 * page_size, 0)));

	EXPECT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, page_size, page_size)));
	ASSERT_EQ(4 * page_size, read_at(fd, 4 * page_size, 0));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, page_size));
	EXPECT_TRUE(all_zero(rbuf + page_size, page_size));
	EXPECT_EQ(0, memcmp(pat_a + 2 * page_size, rbuf + 2 * page_size, page_size));

	/* A hole that was never allocated, then the whole file. */
	EXPECT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, 3 * page_size, page_size)));
	EXPECT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, 0, 4 * page_size)));
	ASSERT_EQ(4 * page_size, read_at(fd, 4 * page_size, 0));
	EXPECT_TRUE(all_zero(rbuf, 4 * page_size));
	EXPECT_EQ(4 * page_size, file_size(fd));
	close(fd);
}

TEST_F(gmem_dev, fallocate_bad_mode_eopnotsupp)
{
	static const int modes[] = {
		FALLOC_FL_PUNCH_HOLE,
		FALLOC_FL_ZERO_RANGE,
		FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		FALLOC_FL_COLLAPSE_RANGE,
		FALLOC_FL_INSERT_RANGE,
		FALLOC_FL_UNSHARE_RANGE,
		FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
	};
	int fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);
	unsigned int i;

	ASSERT_LE(0, fd);
	fill(pat_a, 4 * page_size, 0x23);
	ASSERT_EQ(4 * page_size, err_of(pwrite(fd, pat_a, 4 * page_size, 0)));
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		EXPECT_EQ(-EOPNOTSUPP, err_of(fallocate(fd, modes[i], page_size, page_size)))
			TH_LOG("mode %#x", modes[i]);
	}
	/* Nothing was zeroed, moved or freed. */
	ASSERT_EQ(4 * page_size, read_at(fd, 4 * page_size, 0));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, 4 * page_size));
	EXPECT_EQ(4 * page_size, file_size(fd));
	close(fd);
}

/*
 * Unaligned or empty ranges are invalid for every mode; a range crossing or
 * past EOF only for allocation: as KVM's guest_memfd, a hole may be punched
 * anywhere (past EOF there is nothing to remove).
 */
TEST_F(gmem_dev, fallocate_bad_range_einval)
{
	static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE, PUNCH_HOLE };
	const long size = 4 * page_size;
	const struct { long off, len; bool eof; } ranges[] = {
		{ 1, page_size },			/* offset not aligned */
		{ page_size / 2, page_size },
		{ 0, page_size + 1 },			/* len not aligned */
		{ 0, page_size - 1 },
		{ 0, 0 },				/* empty */
		{ 3 * page_size, 2 * page_size, true },	/* crosses EOF */
		{ 0, size + page_size, true },
		{ size, page_size, true },		/* at or past EOF */
		{ 8 * page_size, page_size, true },
	};
	int fd = create_gmem(self->dev, size, GMEM_SHARED);
	unsigned int i, j;

	ASSERT_LE(0, fd);
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		for (j = 0; j < ARRAY_SIZE(ranges); j++) {
			int want = ranges[j].eof && modes[i] == PUNCH_HOLE ? 0 : -EINVAL;

			EXPECT_EQ(want, err_of(fallocate(fd, modes[i], ranges[j].off,
							 ranges[j].len)))
				TH_LOG("mode %#x offset %ld len %ld", modes[i],
				       ranges[j].off, ranges[j].len);
		}
	}
	EXPECT_EQ(size, file_size(fd));
	close(fd);
}

/* read() and write() reach only memory the host may map: ENODEV without MMAP. */
TEST_F(gmem_dev, rw_without_mmap_enodev)
{
	int fd = create_gmem(self->dev, 4 * page_size, 0);

	ASSERT_LE(0, fd);
	fill(pat_a, page_size, 0x5c);
	EXPECT_EQ(-ENODEV, err_of(pwrite(fd, pat_a, page_size, 0)));
	EXPECT_EQ(-ENODEV, err_of(write(fd, pat_a, 16)));
	EXPECT_EQ(-ENODEV, err_of(pread(fd, rbuf, page_size, 0)));
	EXPECT_EQ(-ENODEV, err_of(read(fd, rbuf, 16)));
	/* Nothing was written: fallocate still works, and the memory stays private. */
	EXPECT_EQ(0, err_of(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, page_size)));
	close(fd);
}

TEST_F(gmem_dev, rw_unaligned)
{
	const long off = 2 * page_size + 123, len = page_size + 500;
	int fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	fill(pat_a, 2 * page_size, 0x24);
	/* 100 bytes across the page 0/1 boundary. */
	ASSERT_EQ(100, err_of(pwrite(fd, pat_a, 100, page_size - 50)));
	ASSERT_EQ(200, read_at(fd, 200, page_size - 100));
	EXPECT_TRUE(all_zero(rbuf, 50));
	EXPECT_EQ(0, memcmp(pat_a, rbuf + 50, 100));
	EXPECT_TRUE(all_zero(rbuf + 150, 50));

	/* More than a page, aligned at neither end. */
	ASSERT_EQ(len, err_of(pwrite(fd, pat_a, len, off)));
	ASSERT_EQ(len, read_at(fd, len, off));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, len));
	ASSERT_EQ(7, read_at(fd, 7, off + 1000));
	EXPECT_EQ(0, memcmp(pat_a + 1000, rbuf, 7));
	close(fd);
}

TEST_F(gmem_dev, rw_partial_page_zero_fill)
{
	int fd = create_gmem(self->dev, 2 * page_size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	/* A never-written page reads as zeros. */
	ASSERT_EQ(page_size, read_at(fd, page_size, 0));
	EXPECT_TRUE(all_zero(rbuf, page_size));

	/* A write inside a new page: the rest of that page is zeros. */
	fill(pat_a, 10, 0x25);
	ASSERT_EQ(10, err_of(pwrite(fd, pat_a, 10, page_size + 100)));
	ASSERT_EQ(page_size, read_at(fd, page_size, page_size));
	EXPECT_TRUE(all_zero(rbuf, 100));
	EXPECT_EQ(0, memcmp(pat_a, rbuf + 100, 10));
	EXPECT_TRUE(all_zero(rbuf + 110, page_size - 110));
	close(fd);
}

TEST_F(gmem_dev, rw_eof)
{
	const long size = 2 * page_size;
	int fd = create_gmem(self->dev, size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	fill(pat_a, 100, 0x26);
	EXPECT_EQ(0, read_at(fd, 16, size));
	EXPECT_EQ(0, read_at(fd, 16, size + page_size));
	EXPECT_EQ(page_size, read_at(fd, 2 * page_size, page_size));
	EXPECT_EQ(10, read_at(fd, 100, size - 10));

	EXPECT_EQ(-EINVAL, err_of(pwrite(fd, pat_a, 16, size)));
	EXPECT_EQ(-EINVAL, err_of(pwrite(fd, pat_a, 16, size + 1)));
	EXPECT_EQ(-EINVAL, err_of(pwrite(fd, pat_a, 16, size + 8 * page_size)));
	/* A write crossing EOF stops there. */
	EXPECT_EQ(10, err_of(pwrite(fd, pat_a, 100, size - 10)));
	ASSERT_EQ(10, read_at(fd, 100, size - 10));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, 10));
	EXPECT_EQ(size, file_size(fd));
	close(fd);
}

/*
 * write() applies the checks of every regular file (generic_write_checks()):
 * O_APPEND writes at the end, which for a file of fixed size is past it, and
 * RLIMIT_FSIZE limits the offset (EFBIG, and SIGXFSZ unless ignored), as on a
 * memfd.
 */
TEST_F(gmem_dev, rw_write_checks)
{
	const long size = 4 * page_size;
	struct rlimit old, lim = { .rlim_cur = 2 * page_size };
	int fd;

	fd = create_gmem(self->dev, size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_APPEND));
	fill(pat_a, 16, 0x31);
	EXPECT_EQ(-EINVAL, err_of(write(fd, pat_a, 16)));
	/* On Linux a pwrite() to an O_APPEND file appends too (pwrite(2), BUGS). */
	EXPECT_EQ(-EINVAL, err_of(pwrite(fd, pat_a, 16, 0)));
	ASSERT_EQ(0, fcntl(fd, F_SETFL, 0));

	ASSERT_EQ(0, getrlimit(RLIMIT_FSIZE, &old));
	lim.rlim_max = old.rlim_max;
	ASSERT_NE(SIG_ERR, signal(SIGXFSZ, SIG_IGN));
	ASSERT_EQ(0, setrlimit(RLIMIT_FSIZE, &lim));
	EXPECT_EQ(-EFBIG, err_of(pwrite(fd, pat_a, 16, 2 * page_size)));
	/* A write crossing the limit stops there. */
	EXPECT_EQ(10, err_of(pwrite(fd, pat_a, 16, 2 * page_size - 10)));
	EXPECT_EQ(16, err_of(pwrite(fd, pat_a, 16, 0)));
	ASSERT_EQ(0, setrlimit(RLIMIT_FSIZE, &old));
	signal(SIGXFSZ, SIG_DFL);
	EXPECT_EQ(16, err_of(pwrite(fd, pat_a, 16, 2 * page_size)));
	close(fd);
}

/* Which of the first @pages pages of @mem are in the page cache (bit i). */
static unsigned long resident(char *mem, int pages)
{
	unsigned char vec[16];
	unsigned long bits = 0;
	int i;

	assert(pages <= 16);
	if (mincore(mem, pages * page_size, vec))
		return ~0UL;
	for (i = 0; i < pages; i++)
		bits |= (unsigned long)(vec[i] & 1) << i;
	return bits;
}

/*
 * pwrite() from a buffer that faults: EFAULT with nothing written and no
 * page left in the file; a buffer that goes bad part way: a short write of
 * the pages before.
 */
TEST_F(gmem_dev, rw_bad_buffer_efault)
{
	struct gmem_map m;
	char *buf;

	setup_map(_metadata, self->dev, &m, 4 * page_size, 4 * page_size, 0);
	buf = mmap(NULL, 2 * page_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	fill(buf, page_size, 0x31);
	ASSERT_EQ(0, mprotect(buf + page_size, page_size, PROT_NONE));

	/* The second page of the address space: below mmap_min_addr, never mapped. */
	EXPECT_EQ(-EFAULT, err_of(pwrite(m.fd, (void *)(uintptr_t)page_size, 10, 100)));
	EXPECT_EQ(-EFAULT, err_of(pwrite(m.fd, buf + page_size, page_size, 0)));
	EXPECT_EQ(-EFAULT, err_of(pwrite(m.fd, buf + page_size, 2 * page_size, page_size)));
	EXPECT_EQ(0UL, resident(m.mem, 4)) TH_LOG("a failed write left a page in the file");

	/* The first page copies, the second faults: a short write. */
	EXPECT_EQ(page_size, err_of(pwrite(m.fd, buf, 2 * page_size, page_size)));
	EXPECT_EQ(0x2UL, resident(m.mem, 4));
	/* Unaligned: the piece up to the bad page is written. */
	EXPECT_EQ(100, err_of(pwrite(m.fd, buf + page_size - 100, 300, 2 * page_size + 7)));
	EXPECT_EQ(0x6UL, resident(m.mem, 4));
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 2 * page_size));
	EXPECT_TRUE(all_zero(rbuf, 7));
	EXPECT_EQ(0, memcmp(buf + page_size - 100, rbuf + 7, 100));
	EXPECT_TRUE(all_zero(rbuf + 107, page_size - 107));
	EXPECT_EQ(0, memcmp(buf, m.mem + page_size, page_size));
	munmap(buf, 2 * page_size);
	put_map(&m);
}

/*
 * pwrite() whose source is a mapping of the same file: a present page to a
 * new one, a page never touched onto itself (the source's fault creates the
 * page the write then fills: no deadlock on its lock), and a written but
 * unmapped page onto itself, unaligned.
 */
TEST_F(gmem_dev, rw_source_in_same_file)
{
	struct gmem_map m;

	setup_map(_metadata, self->dev, &m, 4 * page_size, 4 * page_size, 0);
	fill(pat_a, 2 * page_size, 0x32);
	memcpy(m.mem, pat_a, page_size);

	ASSERT_EQ(page_size, err_of(pwrite(m.fd, m.mem, page_size, 2 * page_size)));
	EXPECT_EQ(0, memcmp(pat_a, m.mem + 2 * page_size, page_size));

	ASSERT_EQ(page_size, err_of(pwrite(m.fd, m.mem + page_size, page_size, page_size)));
	EXPECT_TRUE(all_zero(m.mem + page_size, page_size));

	ASSERT_EQ(page_size, err_of(pwrite(m.fd, pat_a + page_size, page_size, 3 * page_size)));
	ASSERT_EQ(300, err_of(pwrite(m.fd, m.mem + 3 * page_size + 50, 300, 3 * page_size + 50)));
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 3 * page_size));
	EXPECT_EQ(0, memcmp(pat_a + page_size, rbuf, page_size));
	EXPECT_EQ(0xfUL, resident(m.mem, 4));
	put_map(&m);
}

struct zap_arg {
	char *src;
	long len;
	bool stop;
};

static void *zap_loop(void *p)
{
	struct zap_arg *z = p;

	while (!__atomic_load_n(&z->stop, __ATOMIC_RELAXED))
		madvise(z->src, z->len, MADV_DONTNEED);
	return NULL;
}

/*
 * pwrite() while another thread keeps unmapping its source (a shared
 * memfd mapping, so the data stays): a copy that finds the source gone is
 * done again through a bounce page, and a new page it left empty is not
 * left in the file.  Every write must be complete and every page hold its
 * source.  Every MADV_DONTNEED of the zapper is a TLB shootdown, which
 * under TCG makes the test take 3-17 s (25 runs): hence the timeout.
 */
TEST_F_TIMEOUT(gmem_dev, rw_source_unmapped_meanwhile, 120)
{
	const int pages = 16, rounds = 40;
	struct zap_arg z = { .len = pages * page_size };
	pthread_t zapper;
	int fd, src_fd, r, i;

	src_fd = memfd_create("gmem-src", 0);
	ASSERT_LE(0, src_fd);
	ASSERT_EQ(0, ftruncate(src_fd, z.len));
	z.src = mmap(NULL, z.len, PROT_READ | PROT_WRITE, MAP_SHARED, src_fd, 0);
	ASSERT_NE(MAP_FAILED, z.src);
	ASSERT_EQ(0, pthread_create(&zapper, NULL, zap_loop, &z));
	for (r = 0; r < rounds; r++) {
		fd = create_gmem(self->dev, z.len, GMEM_SHARED);
		ASSERT_LE(0, fd);
		fill(z.src, z.len, r);
		ASSERT_EQ(z.len, err_of(pwrite(fd, z.src, z.len, 0))) TH_LOG("round %d", r);
		for (i = 0; i < pages; i++) {
			ASSERT_EQ(page_size, read_at(fd, page_size, i * page_size));
			ASSERT_EQ(0, memcmp(z.src + i * page_size, rbuf, page_size))
				TH_LOG("round %d page %d", r, i);
		}
		close(fd);
	}
	__atomic_store_n(&z.stop, true, __ATOMIC_RELAXED);
	pthread_join(zapper, NULL);
	munmap(z.src, z.len);
	close(src_fd);
}

TEST_F(gmem_dev, lseek_read_write)
{
	const long size = 4 * page_size;
	int fd = create_gmem(self->dev, size, GMEM_SHARED);

	ASSERT_LE(0, fd);
	fill(pat_a, 64, 0x27);
	EXPECT_EQ(0, err_of(lseek(fd, 0, SEEK_CUR)));
	ASSERT_EQ(page_size, err_of(lseek(fd, page_size, SEEK_SET)));
	ASSERT_EQ(64, err_of(write(fd, pat_a, 64)));
	EXPECT_EQ(page_size + 64, err_of(lseek(fd, 0, SEEK_CUR)));
	ASSERT_EQ(page_size, err_of(lseek(fd, -64, SEEK_CUR)));
	ASSERT_EQ(64, err_of(read(fd, rbuf, 64)));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, 64));

	EXPECT_EQ(size, err_of(lseek(fd, 0, SEEK_END)));
	EXPECT_EQ(0, err_of(read(fd, rbuf, 64)));
	EXPECT_EQ(-EINVAL, err_of(write(fd, pat_a, 64)));
	EXPECT_EQ(size - 10, err_of(lseek(fd, -10, SEEK_END)));
	EXPECT_EQ(10, err_of(read(fd, rbuf, 64)));
	EXPECT_EQ(size, err_of(lseek(fd, 0, SEEK_CUR)));

	EXPECT_EQ(-EINVAL, err_of(lseek(fd, -1, SEEK_SET)));
	/* As for a regular file, the offset may go past EOF. */
	EXPECT_EQ(size + page_size, err_of(lseek(fd, size + page_size, SEEK_SET)));
	EXPECT_EQ(0, err_of(read(fd, rbuf, 64)));
	close(fd);
}

/* ---- mmap ---- */

TEST_F(gmem_dev, mmap_refused)
{
	char *mem = NULL;
	int fd;

	fd = create_gmem(self->dev, page_size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EINVAL, map_gmem(fd, page_size, MAP_PRIVATE, &mem));
	EXPECT_EQ(MAP_FAILED, mmap(NULL, page_size, PROT_READ, MAP_PRIVATE, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	close(fd);

	/* Not created with GUEST_MEMFD_FLAG_MMAP. */
	fd = create_gmem(self->dev, page_size, 0);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-ENODEV, map_gmem(fd, page_size, MAP_SHARED, &mem));
	close(fd);
}

/* Files of gmem_uffd's file system are never executable: PROT_EXEC is EPERM. */
TEST_F(gmem_dev, mmap_exec_eperm)
{
	char *mem;
	int fd;

	fd = create_gmem(self->dev, page_size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	mem = mmap(NULL, page_size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
	EXPECT_EQ(MAP_FAILED, mem);
	EXPECT_EQ(EPERM, errno);
	mem = mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	EXPECT_EQ(-1, mprotect(mem, page_size, PROT_READ | PROT_EXEC));
	EXPECT_EQ(EACCES, errno);
	munmap(mem, page_size);
	close(fd);
}

TEST_F(gmem_dev, mmap_not_shared_sigbus)
{
	char *mem = NULL;
	int fd;

	fd = create_gmem(self->dev, 2 * page_size, GUEST_MEMFD_FLAG_MMAP);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, map_gmem(fd, 2 * page_size, MAP_SHARED, &mem));
	EXPECT_TRUE(access_sigbus(mem, false, 0));
	EXPECT_TRUE(access_sigbus(mem, true, 1));
	/* Also when the page exists in the file. */
	fill(pat_a, 16, 0x28);
	ASSERT_EQ(16, err_of(pwrite(fd, pat_a, 16, page_size)));
	EXPECT_TRUE(access_sigbus(mem + page_size, false, 0));
	EXPECT_TRUE(access_sigbus(mem + page_size, true, 1));
	ASSERT_EQ(16, read_at(fd, 16, page_size));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, 16));
	munmap(mem, 2 * page_size);
	close(fd);
}

TEST_F(gmem_dev, mmap_beyond_eof_sigbus)
{
	struct gmem_map m;

	setup_map(_metadata, self->dev, &m, page_size, 2 * page_size, 0);
	EXPECT_FALSE(access_sigbus(m.mem, false, 0));
	EXPECT_EQ(0, m.mem[0]);
	EXPECT_TRUE(access_sigbus(m.mem + page_size, false, 0));
	EXPECT_TRUE(access_sigbus(m.mem + page_size, true, 1));
	EXPECT_EQ(page_size, file_size(m.fd));
	put_map(&m);
}

TEST_F(gmem_dev, mmap_coherent_with_rw)
{
	struct gmem_map m;

	setup_map(_metadata, self->dev, &m, 3 * page_size, 3 * page_size, 0);
	/* First touch: zero pages. */
	EXPECT_TRUE(all_zero(m.mem, 2 * page_size));
	/* Mapping to pread. */
	fill(pat_a, page_size, 0x29);
	memcpy(m.mem, pat_a, page_size);
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 0));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, page_size));
	/* pwrite to a page already mapped, and to one not mapped yet. */
	fill(pat_a, 2 * page_size, 0x2a);
	ASSERT_EQ(2 * page_size, err_of(pwrite(m.fd, pat_a, 2 * page_size, page_size)));
	EXPECT_EQ(0, memcmp(pat_a, m.mem + page_size, 2 * page_size));
	put_map(&m);
}

/* Whether the page at @addr is mapped in this process (/proc/self/pagemap). */
static int pte_present(void *addr)
{
	uint64_t ent;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = pread(fd, &ent, sizeof(ent), (uintptr_t)addr / page_size * sizeof(ent));
	close(fd);
	return n == sizeof(ent) ? !!(ent >> 63) : -1;
}

/* Bit i set when page i of the @pages at @mem is mapped; ~0 on error. */
static unsigned long ptes_present(char *mem, int pages)
{
	unsigned long bits = 0;
	int i, p;

	for (i = 0; i < pages; i++) {
		p = pte_present(mem + i * page_size);
		if (p < 0)
			return ~0UL;
		bits |= (unsigned long)p << i;
	}
	return bits;
}

/*
 * Fault-around: a read fault maps the pages around it that the file holds
 * (as for shmem), and never one it does not hold: pages 0-3 written, a read
 * of page 1 maps 0, 2 and 3 too and leaves 4-7 unmapped and absent.
 *
 * Which pages are "around" is core mm's choice (do_fault_around()): from
 * the faulting page aligned down to fault_around_bytes (debugfs, 64 KiB by
 * default), or from the VMA's start if that is later, that many bytes,
 * clamped to the VMA and to the page table.  Where mmap() puts the mapping
 * (ASLR), page 0 may lie before the window of page 1 (when page 1 starts a
 * 64 KiB block: 1 address in 16) or pages 2-3 in the next page table (2 in
 * 512): the mapping is placed at the start of a page-table-aligned area
 * instead, where the window of page 1 starts at page 0 and holds pages 0-3
 * if it is 4 pages or more (a smaller one is skipped).
 */
TEST_F(gmem_dev, mmap_fault_around)
{
	/* What one page table maps: PTRS_PER_PTE pages of 8-byte entries. */
	const unsigned long pmd_size = page_size / 8 * page_size;
	unsigned long long window = 64 << 10;
	struct gmem_map m;
	char *area, *at;

	/* No debugfs (or another layout): the default. */
	if (read_number("/sys/kernel/debug/fault_around_bytes", &window) == 0 &&
	    window < 4 * (unsigned long long)page_size)
		SKIP(return, "fault_around_bytes is %llu", window);

	m.uffd = -1;
	m.map_len = 8 * page_size;
	m.fd = create_gmem(self->dev, 8 * page_size, GMEM_SHARED);
	ASSERT_LE(0, m.fd);
	area = mmap(NULL, 2 * pmd_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	at = (char *)(((uintptr_t)area + pmd_size - 1) & ~(pmd_size - 1));
	m.mem = mmap(at, m.map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.fd, 0);
	ASSERT_EQ(at, m.mem);
	/* Keep only the mapping of the file (put_map() unmaps it). */
	if (at > area)
		ASSERT_EQ(0, munmap(area, at - area));
	ASSERT_EQ(0, munmap(at + m.map_len, area + 2 * pmd_size - (at + m.map_len)));

	fill(pat_a, 4 * page_size, 0x2b);
	ASSERT_EQ(4 * page_size, err_of(pwrite(m.fd, pat_a, 4 * page_size, 0)));
	ASSERT_EQ(0UL, ptes_present(m.mem, 8));
	(void)__atomic_load_n(m.mem + page_size, __ATOMIC_RELAXED);
	/* Bit i: page i mapped.  Pages 0-3 (held) are, 4-7 (holes) not. */
	EXPECT_EQ(0xfUL, ptes_present(m.mem, 8));
	EXPECT_EQ(0xfUL, resident(m.mem, 8));
	EXPECT_EQ(0, memcmp(pat_a, m.mem, 4 * page_size));
	put_map(&m);
}

TEST_F(gmem_dev, mmap_punch_hole)
{
	struct gmem_map m;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, 0);
	fill(pat_a, 2 * page_size, 0x2c);
	memcpy(m.mem, pat_a, 2 * page_size);
	ASSERT_EQ(0, err_of(fallocate(m.fd, PUNCH_HOLE, 0, page_size)));
	EXPECT_TRUE(all_zero(m.mem, page_size));
	EXPECT_EQ(0, memcmp(pat_a + page_size, m.mem + page_size, page_size));
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 0));
	EXPECT_TRUE(all_zero(rbuf, page_size));
	put_map(&m);
}

/* ---- userfaultfd ---- */

TEST_F(gmem_dev, uffd_register_modes)
{
	static const __u64 modes[] = { MODE_MISSING, MODE_MINOR, MODE_MISSING | MODE_MINOR };
	const __u64 fill_ioctls = UFFD_IOCTL(COPY) | UFFD_IOCTL(ZEROPAGE) |
				  UFFD_IOCTL(WAKE) | UFFD_IOCTL(POISON);
	struct gmem_map m;
	unsigned int i;
	__u64 ioctls;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, 0);
	m.uffd = uffd_open();
	ASSERT_LE(0, m.uffd);
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		ioctls = 0;
		ASSERT_EQ(0, uffd_register(m.uffd, m.mem, 2 * page_size, modes[i], &ioctls))
			TH_LOG("mode %#llx", modes[i]);
		EXPECT_EQ(fill_ioctls, ioctls & fill_ioctls) TH_LOG("ioctls %#llx", ioctls);
		EXPECT_EQ(!!(modes[i] & MODE_MINOR), !!(ioctls & UFFD_IOCTL(CONTINUE)))
			TH_LOG("mode %#llx ioctls %#llx", modes[i], ioctls);
		EXPECT_EQ(0ULL, ioctls & UFFD_IOCTL(WRITEPROTECT));
		ASSERT_EQ(0, uffd_unregister(m.uffd, m.mem, 2 * page_size));
	}
	put_map(&m);
}

TEST_F(gmem_dev, uffd_register_wp_einval)
{
	static const __u64 modes[] = {
		MODE_WP, MODE_MISSING | MODE_WP, MODE_MINOR | MODE_WP,
		MODE_MISSING | MODE_MINOR | MODE_WP,
	};
	struct gmem_map m;
	unsigned int i;

	setup_map(_metadata, self->dev, &m, page_size, page_size, 0);
	m.uffd = uffd_open();
	ASSERT_LE(0, m.uffd);
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		EXPECT_EQ(-EINVAL, uffd_register(m.uffd, m.mem, page_size, modes[i], NULL))
			TH_LOG("mode %#llx", modes[i]);
	}
	/* The refused registrations left nothing behind. */
	EXPECT_EQ(0, uffd_register(m.uffd, m.mem, page_size, MODE_MISSING, NULL));
	put_map(&m);
}

/*
 * Memory private to the guest (no INIT_SHARED) is never mapped by the host:
 * userfaultfd cannot be registered on it, in any mode, so UFFDIO_COPY and
 * UFFDIO_CONTINUE can never fill it (pwrite() still can, before the guest
 * runs).
 */
TEST_F(gmem_dev, uffd_register_private_einval)
{
	static const __u64 modes[] = { MODE_MISSING, MODE_MINOR, MODE_BOTH };
	char *mem = NULL;
	unsigned int i;
	int fd, uffd;

	fd = create_gmem(self->dev, page_size, GUEST_MEMFD_FLAG_MMAP);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, map_gmem(fd, page_size, MAP_SHARED, &mem));
	uffd = uffd_open();
	ASSERT_LE(0, uffd);
	for (i = 0; i < ARRAY_SIZE(modes); i++)
		EXPECT_EQ(-EINVAL, uffd_register(uffd, mem, page_size, modes[i], NULL))
			TH_LOG("mode %#llx", modes[i]);
	fill(pat_a, 16, 0x32);
	EXPECT_EQ(16, err_of(pwrite(fd, pat_a, 16, 0)));
	close(uffd);
	munmap(mem, page_size);
	close(fd);
}

/*
 * With UFFD_FEATURE_WP_ASYNC, core mm accepts a WP-only registration on every
 * VMA without asking the memory's uffd operations (mm/userfaultfd.c,
 * vma_can_userfault()), so gmem cannot refuse it: it is accepted, as on a
 * memfd, and leaves the memory usable.  Synchronous WP stays refused.
 */
TEST_F(gmem_dev, uffd_register_wp_async)
{
	struct gmem_map m;
	int uffd;

	setup_map(_metadata, self->dev, &m, page_size, page_size, 0);
	uffd = uffd_open_features(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED);
	ASSERT_LE(0, uffd);
	EXPECT_EQ(0, uffd_register(uffd, m.mem, page_size, MODE_WP, NULL));
	EXPECT_EQ(-EINVAL, uffd_register(uffd, m.mem, page_size, MODE_WP | MODE_MISSING, NULL));
	m.mem[0] = 0x33;
	ASSERT_EQ(1, read_at(m.fd, 1, 0));
	EXPECT_EQ(0x33, rbuf[0]);
	close(uffd);
	put_map(&m);
}

TEST_F(gmem_dev, uffd_missing_copy)
{
	missing_flow(_metadata, self->dev, MODE_MISSING, resolve_copy, false);
}

TEST_F(gmem_dev, uffd_missing_copy_write_fault)
{
	missing_flow(_metadata, self->dev, MODE_MISSING, resolve_copy, true);
}

TEST_F(gmem_dev, uffd_missing_zeropage)
{
	missing_flow(_metadata, self->dev, MODE_MISSING, resolve_zeropage, false);
}

TEST_F(gmem_dev, uffd_minor_continue_after_pwrite)
{
	minor_flow(_metadata, self->dev, MODE_MINOR, BY_PWRITE);
}

TEST_F(gmem_dev, uffd_minor_continue_after_fallocate)
{
	minor_flow(_metadata, self->dev, MODE_MINOR, BY_FALLOCATE);
}

TEST_F(gmem_dev, uffd_minor_continue_second_mapping)
{
	minor_flow(_metadata, self->dev, MODE_MINOR, BY_OTHER_MAPPING);
}

/* Both modes, absent page: MISSING, resolved with pwrite + UFFDIO_CONTINUE. */
TEST_F(gmem_dev, uffd_both_modes_missing_pwrite_continue)
{
	missing_flow(_metadata, self->dev, MODE_MISSING | MODE_MINOR, resolve_pwrite_continue,
		     false);
}

/* Both modes, page present in the file: MINOR. */
TEST_F(gmem_dev, uffd_both_modes_present_page_minor)
{
	minor_flow(_metadata, self->dev, MODE_MISSING | MODE_MINOR, BY_PWRITE);
}

/* MINOR only, absent page: served with a zero page, no event. */
TEST_F(gmem_dev, uffd_minor_absent_page_no_event)
{
	struct uffd_handler h = { .nr_events = 0 };
	struct gmem_map m;
	struct toucher t;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, MODE_MINOR);
	h.uffd = m.uffd;
	run_fault(_metadata, &h, &t, m.mem + page_size, false, 0);
	EXPECT_TRUE(all_zero(t.seen, page_size));
	toucher_free(&t);
	/* The fault put the page in the file and mapped it: still no event. */
	fill(pat_a, page_size, 0x33);
	ASSERT_EQ(page_size, err_of(pwrite(m.fd, pat_a, page_size, page_size)));
	run_fault(_metadata, &h, &t, m.mem + page_size, false, 0);
	EXPECT_EQ(0, memcmp(pat_a, t.seen, page_size));
	toucher_free(&t);
	put_map(&m);
}

/* MISSING only, page present in the file: mapped, no event. */
TEST_F(gmem_dev, uffd_missing_present_page_no_event)
{
	struct uffd_handler h = { .nr_events = 0 };
	struct gmem_map m;
	struct toucher t;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, MODE_MISSING);
	fill(pat_a, page_size, 0x34);
	ASSERT_EQ(page_size, err_of(pwrite(m.fd, pat_a, page_size, page_size)));
	h.uffd = m.uffd;
	run_fault(_metadata, &h, &t, m.mem + page_size, false, 0);
	EXPECT_EQ(0, memcmp(pat_a, t.seen, page_size));
	toucher_free(&t);
	put_map(&m);
}

TEST_F(gmem_dev, uffd_copy_eexist)
{
	struct gmem_map m;
	__s64 res = 0;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, MODE_MISSING);
	fill(pat_a, page_size, 0x35);
	fill(pat_b, page_size, 0x36);

	/* Page 0 exists in the file (not mapped): COPY must not replace it. */
	ASSERT_EQ(page_size, err_of(pwrite(m.fd, pat_a, page_size, 0)));
	EXPECT_EQ(-EEXIST, uffd_copy(m.uffd, m.mem, pat_b, &res));
	EXPECT_EQ(-EEXIST, res);
	ASSERT_EQ(page_size, read_at(m.fd, page_size, 0));
	EXPECT_EQ(0, memcmp(pat_a, rbuf, page_size));

	/* Page 1: the first COPY fills it, a second one finds it. */
	ASSERT_EQ(0, uffd_copy(m.uffd, m.mem + page_size, pat_b, &res));
	EXPECT_EQ(page_size, res);
	EXPECT_EQ(-EEXIST, uffd_copy(m.uffd, m.mem + page_size, pat_a, &res));
	EXPECT_EQ(-EEXIST, res);
	ASSERT_EQ(page_size, read_at(m.fd, page_size, page_size));
	EXPECT_EQ(0, memcmp(pat_b, rbuf, page_size));
	put_map(&m);
}

TEST_F(gmem_dev, uffd_poison_sigbus)
{
	struct gmem_map m;
	struct toucher t;
	__s64 res = 0;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, MODE_MISSING);
	ASSERT_EQ(0, uffd_range_op(m.uffd, UFFDIO_POISON, m.mem + page_size, &res));
	EXPECT_EQ(page_size, res);

	ASSERT_EQ(0, toucher_start(&t, TOUCH_SIGBUS, m.mem + page_size, false, 0));
	ASSERT_EQ(0, join_timeout(t.thread, JOIN_TIMEOUT_S))
		TH_LOG("touching a poisoned page blocked (an event instead of SIGBUS?)");
	EXPECT_EQ(SIGBUS, t.sig);
	toucher_free(&t);
	/* The poison is in the page table only: the file still reads zeros. */
	ASSERT_EQ(page_size, read_at(m.fd, page_size, page_size));
	EXPECT_TRUE(all_zero(rbuf, page_size));
	put_map(&m);
}

TEST_F(gmem_dev, uffd_copy_beyond_eof_fails)
{
	unsigned long long folios = 0;
	struct gmem_map m;
	int ret;

	/* A one-page file under a two-page mapping. */
	setup_map(_metadata, self->dev, &m, page_size, 2 * page_size, MODE_MISSING);
	fill(pat_a, page_size, 0x37);
	if (debugfs_mounted())
		folios = counter(_metadata, "folios");
	ret = uffd_copy(m.uffd, m.mem + page_size, pat_a, NULL);
	EXPECT_TRUE(ret == -EFAULT || ret == -ENOENT) TH_LOG("UFFDIO_COPY past EOF: %d", ret);
	EXPECT_EQ(page_size, file_size(m.fd));
	/* No folio was left behind past EOF. */
	if (debugfs_mounted())
		EXPECT_EQ(folios, counter(_metadata, "folios"));
	put_map(&m);
}

TEST_F(gmem_dev, uffd_continue_absent_efault)
{
	struct gmem_map m;
	__s64 res = 0;

	setup_map(_metadata, self->dev, &m, 2 * page_size, 2 * page_size, MODE_MINOR);
	EXPECT_EQ(-EFAULT, uffd_range_op(m.uffd, UFFDIO_CONTINUE, m.mem + page_size, &res));
	EXPECT_EQ(-EFAULT, res);
	ASSERT_EQ(page_size, read_at(m.fd, page_size, page_size));
	EXPECT_TRUE(all_zero(rbuf, page_size));
	put_map(&m);
}

/* ---- debugfs counters ---- */

TEST_F(gmem_dev, debugfs_files)
{
	unsigned long long base;
	char *mem = NULL;
	int fd, fd2;

	if (!debugfs_mounted())
		SKIP(return, "debugfs is not mounted at " DEBUGFS_DIR);
	base = counter(_metadata, "files");
	fd = create_gmem(self->dev, page_size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	EXPECT_EQ(base + 1, counter(_metadata, "files"));
	/* A refused create leaves no file. */
	EXPECT_EQ(-EINVAL, create_gmem(self->dev, 0, 0));
	EXPECT_EQ(base + 1, counter(_metadata, "files"));
	fd2 = create_gmem(self->dev, page_size, 0);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(base + 2, counter(_metadata, "files"));
	close(fd2);
	EXPECT_EQ(base + 1, counter(_metadata, "files"));

	/* A mapping keeps the file alive after close(). */
	ASSERT_EQ(0, map_gmem(fd, page_size, MAP_SHARED, &mem));
	mem[0] = 1;
	close(fd);
	EXPECT_EQ(base + 1, counter(_metadata, "files"));
	munmap(mem, page_size);
	EXPECT_EQ(base, counter(_metadata, "files"));
}

TEST_F(gmem_dev, debugfs_folios)
{
	unsigned long long base0, base;
	char *mem = NULL;
	int fd;

	if (!debugfs_mounted())
		SKIP(return, "debugfs is not mounted at " DEBUGFS_DIR);
	base0 = counter(_metadata, "folios");
	fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	base = counter(_metadata, "folios");
	EXPECT_EQ(base0, base) TH_LOG("a new file has no folio");

	fill(pat_a, 3 * page_size, 0x38);
	ASSERT_EQ(3 * page_size, err_of(pwrite(fd, pat_a, 3 * page_size, 0)));
	EXPECT_EQ(base + 3, counter(_metadata, "folios"));
	/* Rewriting existing pages adds none. */
	ASSERT_EQ(10, err_of(pwrite(fd, pat_a, 10, page_size + 5)));
	EXPECT_EQ(base + 3, counter(_metadata, "folios"));
	ASSERT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, 0, 3 * page_size)));
	EXPECT_EQ(base, counter(_metadata, "folios"));

	ASSERT_EQ(0, err_of(fallocate(fd, 0, 0, 3 * page_size)));
	EXPECT_EQ(base + 3, counter(_metadata, "folios"));
	ASSERT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, 0, 3 * page_size)));
	EXPECT_EQ(base, counter(_metadata, "folios"));

	/* A fault allocates the page; closing the file frees it. */
	ASSERT_EQ(0, map_gmem(fd, 4 * page_size, MAP_SHARED, &mem));
	EXPECT_EQ(0, mem[3 * page_size]);
	EXPECT_EQ(base + 1, counter(_metadata, "folios"));
	munmap(mem, 4 * page_size);
	close(fd);
	EXPECT_EQ(base0, counter(_metadata, "folios"));
}

TEST_F(gmem_dev, debugfs_missing_events)
{
	unsigned long long missing, minor;

	if (!debugfs_mounted())
		SKIP(return, "debugfs is not mounted at " DEBUGFS_DIR);
	missing = counter(_metadata, "missing_events");
	minor = counter(_metadata, "minor_events");
	missing_flow(_metadata, self->dev, MODE_MISSING, resolve_copy, false);
	EXPECT_LE(missing + 1, counter(_metadata, "missing_events"));
	EXPECT_EQ(minor, counter(_metadata, "minor_events"));
}

TEST_F(gmem_dev, debugfs_minor_events)
{
	unsigned long long missing, minor;

	if (!debugfs_mounted())
		SKIP(return, "debugfs is not mounted at " DEBUGFS_DIR);
	missing = counter(_metadata, "missing_events");
	minor = counter(_metadata, "minor_events");
	minor_flow(_metadata, self->dev, MODE_MINOR, BY_PWRITE);
	EXPECT_LE(minor + 1, counter(_metadata, "minor_events"));
	EXPECT_EQ(missing, counter(_metadata, "missing_events"));
}

/*
 * ---- Module lifetime ----
 * A fixture of its own, declared last, so that these run after every other
 * test.  The runner unloads the module at the end; success is not tested.
 */

static int try_unload(void)
{
	return syscall(SYS_delete_module, GMEM_MODULE, O_NONBLOCK) ? -errno : 0;
}

/*
 * For a module in use, delete_module() fails with EWOULDBLOCK (== EAGAIN);
 * EBUSY is what it returns for a module that is not live.  Either is a
 * refusal; success or anything else is not.
 */
static bool unload_refused(int ret)
{
	return ret == -EWOULDBLOCK || ret == -EBUSY;
}

FIXTURE(module_ref) {
	unsigned long long ref0;	/* the module's refcnt before the test */
};

FIXTURE_SETUP(module_ref)
{
	ASSERT_EQ(0, read_number(MODULE_REFCNT, &self->ref0)) TH_LOG("is %s loaded?", GMEM_MODULE);
}

FIXTURE_TEARDOWN(module_ref)
{
}

/*
 * Leave only a gmem fd (@mapping_only: only a mapping of one) holding the
 * module: delete_module() must refuse, and the module reference must go
 * with the file.
 */
static void check_module_busy(struct __test_metadata *_metadata, unsigned long long ref0,
			      bool mapping_only)
{
	unsigned long long ref = 0;
	char *mem = NULL;
	int dev, fd, ret;

	dev = gmem_open_dev();
	ASSERT_LE(0, dev);
	fd = create_gmem(dev, page_size, GMEM_SHARED);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, close(dev));
	if (mapping_only) {
		ASSERT_EQ(0, map_gmem(fd, page_size, MAP_SHARED, &mem));
		ASSERT_EQ(0, close(fd));
		mem[0] = 0x5a;
	}
	ASSERT_EQ(0, read_number(MODULE_REFCNT, &ref));
	EXPECT_LT(ref0, ref);

	ret = try_unload();
	ASSERT_TRUE(unload_refused(ret))
		TH_LOG("delete_module with only a gmem %s left: %d",
		       mapping_only ? "mapping" : "fd", ret);

	if (mapping_only) {
		EXPECT_EQ(0x5a, mem[0]);
		ASSERT_EQ(0, munmap(mem, page_size));
	} else {
		/* The file outlives the device fd. */
		fill(pat_a, 64, 0x39);
		ASSERT_EQ(64, err_of(pwrite(fd, pat_a, 64, 0)));
		ASSERT_EQ(64, read_at(fd, 64, 0));
		EXPECT_EQ(0, memcmp(pat_a, rbuf, 64));
		ASSERT_EQ(0, close(fd));
	}
	ASSERT_EQ(0, read_number(MODULE_REFCNT, &ref));
	EXPECT_EQ(ref0, ref) TH_LOG("module reference leaked");
}

TEST_F(module_ref, busy_with_open_gmem_fd)
{
	check_module_busy(_metadata, self->ref0, false);
}

TEST_F(module_ref, busy_with_mapping_only)
{
	check_module_busy(_metadata, self->ref0, true);
}

TEST_HARNESS_MAIN
