// SPDX-License-Identifier: GPL-2.0
/*
 * The 32-bit compat paths of guest memory files, built with -m32 and run
 * on the 64-bit guest kernel (IA32 emulation):
 *
 *  - device: KVM_CREATE_GUEST_MEMFD through the device's compat_ioctl
 *    (the structure has the same layout and ioctl number in both ABIs),
 *    its errnos (EINVAL for bad flags, size and reserved fields; ENOTTY
 *    for an unknown command).
 *  - io: pwrite()/pread() round trips, also at offsets past 4 GiB
 *    (pread64/pwrite64 with split offsets); fallocate() zeroing and hole
 *    punching past 4 GiB.
 *  - uffd: a MISSING fault on a mapping served with UFFDIO_COPY, and a
 *    MINOR fault served with pwrite() + UFFDIO_CONTINUE, from a 32-bit
 *    handler; the faulting thread sees exactly the page served.
 *
 * Every test also runs on a sealed memfd, the reference.
 */
#define _FILE_OFFSET_BITS 64
#include "gmem_util.h"
#include "kselftest_harness.h"

#if !defined(__i386__)
#error "gmem_compat32_test is built with -m32 (selftests/Makefile)"
#endif

#define HIGH_OFF	((5ULL << 30) + 3 * 4096)	/* past 4 GiB */
#define FILE_SIZE	(6ULL << 30)			/* sparse: nothing allocated */

enum backend { GMEM, MEMFD };

FIXTURE(compat)
{
	int dev;
	int fd;
	long ps;
};

FIXTURE_VARIANT(compat)
{
	enum backend backend;
};

FIXTURE_VARIANT_ADD(compat, gmem) { .backend = GMEM };
FIXTURE_VARIANT_ADD(compat, memfd) { .backend = MEMFD };

FIXTURE_SETUP(compat)
{
	self->ps = sysconf(_SC_PAGESIZE);
	self->dev = -1;
	if (variant->backend == GMEM) {
		self->dev = gmem_open_dev();
		ASSERT_LE(0, self->dev) TH_LOG("open %s: %s", GMEM_DEV, strerror(-self->dev));
		self->fd = create_gmem(self->dev, FILE_SIZE, GMEM_SHARED);
	} else {
		self->fd = create_sealed_memfd("compat32", FILE_SIZE);
	}
	ASSERT_LE(0, self->fd) TH_LOG("create: %s", strerror(-self->fd));
}

FIXTURE_TEARDOWN(compat)
{
	close(self->fd);
	if (self->dev >= 0)
		close(self->dev);
}

/* The device's compat_ioctl: the creation ioctl and its errnos. */
TEST(device_ioctls)
{
	struct kvm_create_guest_memfd args;
	struct stat st;
	int dev, fd;

	/* The same layout in both ABIs, so the same command number. */
	ASSERT_EQ(64, (int)sizeof(args));
	dev = gmem_open_dev();
	ASSERT_LE(0, dev) TH_LOG("open %s: %s", GMEM_DEV, strerror(-dev));

	fd = create_gmem(dev, FILE_SIZE, GMEM_SHARED);
	ASSERT_LE(0, fd) TH_LOG("KVM_CREATE_GUEST_MEMFD: %s", strerror(-fd));
	ASSERT_EQ(0, fstat(fd, &st));
	EXPECT_EQ((off_t)FILE_SIZE, st.st_size);
	EXPECT_TRUE(S_ISREG(st.st_mode));
	close(fd);

	EXPECT_EQ(-EINVAL, create_gmem(dev, FILE_SIZE, 1ULL << 63));
	EXPECT_EQ(-EINVAL, create_gmem(dev, 4096 + 1, GMEM_SHARED));
	EXPECT_EQ(-EINVAL, create_gmem(dev, 0, GMEM_SHARED));
	memset(&args, 0, sizeof(args));
	args.size = 4096;
	args.flags = GMEM_SHARED;
	args.reserved[5] = 1;
	EXPECT_EQ(-EINVAL, create_gmem_args(dev, &args));
	EXPECT_EQ(-ENOTTY, err_of(ioctl(dev, _IO('x', 0x7f), 0)));
	EXPECT_EQ(-ENOTTY, err_of(ioctl(dev, KVM_GET_API_VERSION, 0)));
	close(dev);
}

TEST_F(compat, io_high_offsets)
{
	const off_t offs[] = { 0, (off_t)(4ULL << 30) - self->ps, (off_t)HIGH_OFF };
	char *in = malloc(self->ps), *out = malloc(self->ps);
	unsigned int i;

	ASSERT_TRUE(in != NULL);
	ASSERT_TRUE(out != NULL);
	for (i = 0; i < ARRAY_SIZE(offs); i++) {
		fill(in, self->ps, 100 + i);
		ASSERT_EQ(self->ps, pwrite(self->fd, in, self->ps, offs[i]))
			TH_LOG("pwrite at %#llx: %s", (unsigned long long)offs[i], strerror(errno));
		memset(out, 0, self->ps);
		ASSERT_EQ(self->ps, pread(self->fd, out, self->ps, offs[i]));
		EXPECT_EQ(0, memcmp(in, out, self->ps))
			TH_LOG("offset %#llx read back differs", (unsigned long long)offs[i]);
	}

	/* A hole punched past 4 GiB reads back as zeros, its neighbour kept. */
	ASSERT_EQ(self->ps, pwrite(self->fd, in, self->ps, offs[2] + self->ps));
	ASSERT_EQ(0, fallocate(self->fd, PUNCH_HOLE, offs[2], self->ps));
	ASSERT_EQ(self->ps, pread(self->fd, out, self->ps, offs[2]));
	EXPECT_TRUE(all_zero(out, self->ps));
	ASSERT_EQ(self->ps, pread(self->fd, out, self->ps, offs[2] + self->ps));
	EXPECT_EQ(0, memcmp(in, out, self->ps));

	/* Allocation past 4 GiB, and the end of the file. */
	EXPECT_EQ(0, fallocate(self->fd, 0, offs[2] + 4 * self->ps, self->ps));
	EXPECT_EQ(0, pread(self->fd, out, self->ps, (off_t)FILE_SIZE));
	free(in);
	free(out);
}

/* Serve the one fault of @uffd on @mem (MISSING: COPY; MINOR: pwrite + CONTINUE). */
static int serve_one(int uffd, int fd, char *mem, long ps, const char *page, bool minor)
{
	struct uffd_msg msg;
	unsigned long addr;
	int ret;

	ret = uffd_read_msg(uffd, &msg, 10000);
	if (ret)
		return ret;
	if (msg.event != UFFD_EVENT_PAGEFAULT)
		return -EPROTO;
	if (!!(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) != minor)
		return -EPROTO;
	addr = (unsigned long)msg.arg.pagefault.address & ~(ps - 1);
	if (addr != (unsigned long)mem)
		return -EFAULT;
	if (minor) {
		struct uffdio_continue cont = {
			.range = { .start = addr, .len = ps },
		};

		if (pwrite(fd, page, ps, 0) != ps)
			return -errno;
		if (ioctl(uffd, UFFDIO_CONTINUE, &cont))
			return -errno;
		return cont.mapped == ps ? 0 : -EIO;
	}
	struct uffdio_copy copy = {
		.dst = addr, .src = (unsigned long)page, .len = ps,
	};

	if (ioctl(uffd, UFFDIO_COPY, &copy))
		return -errno;
	return copy.copy == ps ? 0 : -EIO;
}

static void uffd_case(struct __test_metadata *_metadata, int fd, long ps, bool minor)
{
	char *mem = NULL, *page = malloc(ps);
	struct toucher t;
	int uffd, ret;

	ASSERT_TRUE(page != NULL);
	fill(page, ps, minor ? 7 : 8);
	ASSERT_EQ(0, map_gmem(fd, 2 * ps, MAP_SHARED, &mem));
	uffd = uffd_open_features(minor ? UFFD_FEATURE_MINOR_SHMEM : 0);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(-uffd));
	ret = uffd_register(uffd, mem, 2 * ps, minor ? MODE_MINOR : MODE_MISSING, NULL);
	ASSERT_EQ(0, ret) TH_LOG("UFFDIO_REGISTER: %s", strerror(-ret));
	if (minor) {
		/* A MINOR fault needs the page in the file: zeros, replaced by the handler. */
		ASSERT_EQ(0, fallocate(fd, 0, 0, ps));
	}

	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, mem + 5, false, 0));
	ret = serve_one(uffd, fd, mem, ps, page, minor);
	EXPECT_EQ(0, ret) TH_LOG("serving the %s fault: %s", minor ? "MINOR" : "MISSING",
				 strerror(-ret));
	ASSERT_EQ(0, toucher_join(&t, 10)) TH_LOG("the faulting thread is stuck");
	EXPECT_EQ(0, memcmp(page, t.seen, ps)) TH_LOG("the thread saw another page");
	EXPECT_EQ(0, memcmp(page, mem, ps));
	toucher_free(&t);
	close(uffd);
	munmap(mem, 2 * ps);
	free(page);
}

TEST_F(compat, uffd_missing_copy)
{
	uffd_case(_metadata, self->fd, self->ps, false);
}

TEST_F(compat, uffd_minor_continue)
{
	uffd_case(_metadata, self->fd, self->ps, true);
}

TEST_HARNESS_MAIN
