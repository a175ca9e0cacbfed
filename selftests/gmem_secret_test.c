// SPDX-License-Identifier: GPL-2.0
/*
 * Secret hiding: GUEST_MEMFD_FLAG_NO_DIRECT_MAP.  The fixture "secret" runs
 * each test on a shared guest memory file with the flag (variant "hidden")
 * and without it (variant "plain", the control: the same steps, the direct
 * map present and every kernel access allowed).
 *
 *  - Every population path works and leaves the page out of the direct map:
 *    pwrite() into a hole and into a page already out of it, pread(),
 *    fallocate() zeroing, a zero-fill fault, UFFDIO_COPY and
 *    UFFDIO_ZEROPAGE of a MISSING fault, pwrite() + UFFDIO_CONTINUE of a
 *    MINOR fault.  The data is checked through the mapping and pread().
 *  - The proof: the module's debugfs file "direct_map" answers, from the
 *    kernel's page tables (kernel_page_present()), whether the direct map
 *    maps a page of the file: 0 for every page of a hidden file, 1 for a
 *    plain one; after a hole punch the page it held (still referenced by
 *    the query) is mapped again: it got its entry back when it left the
 *    file, before it could be freed.
 *  - The kernel never reaches the memory through GUP: process_vm_readv(),
 *    process_vm_writev(), /proc/self/mem, ptrace(PTRACE_PEEKDATA/POKEDATA),
 *    vmsplice() and io_uring fixed buffers fail on a mapping of a hidden
 *    file (EFAULT; EIO for /proc/self/mem and ptrace), as they do on
 *    memfd_secret(), and work on a plain one.
 *  - The same for a file that KVM_CREATE_GUEST_MEMFD made on a VM
 *    (variants kvm_hidden and kvm_plain): KVM takes the flag, and reports
 *    it, while the module serves KVM.  vCPUs on such memory:
 *    kvm/gmem_kvm_test.
 *
 *  - O_DIRECT I/O from and into such a mapping (to brd's /dev/ram0) is
 *    refused the same way (EFAULT).
 *  - Populating the mapping (MADV_POPULATE_READ/WRITE) works, as it takes
 *    no page: unlike memfd_secret().
 */
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <linux/io_uring.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#define NPAGES		8

static long page_size;

FIXTURE(secret) {
	int dev;
	int fd;
	char *mem;
	char *buf;
};

FIXTURE_VARIANT(secret) {
	bool hidden;
	bool kvm;	/* made by KVM_CREATE_GUEST_MEMFD on a VM */
};

FIXTURE_VARIANT_ADD(secret, hidden) {
	.hidden = true,
};

FIXTURE_VARIANT_ADD(secret, plain) {
	.hidden = false,
};

FIXTURE_VARIANT_ADD(secret, kvm_hidden) {
	.hidden = true,
	.kvm = true,
};

FIXTURE_VARIANT_ADD(secret, kvm_plain) {
	.hidden = false,
	.kvm = true,
};

/* A VM, whose KVM_CREATE_GUEST_MEMFD the module serves (kvm=1, its default). */
static int create_vm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;

	if (kvm < 0)
		return -errno;
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		vm = -errno;
	close(kvm);
	return vm;
}

FIXTURE_SETUP(secret)
{
	__u64 flags = GMEM_SHARED | (variant->hidden ? GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0);

	page_size = sysconf(_SC_PAGESIZE);
	/* A VM's ioctl(KVM_CREATE_GUEST_MEMFD) is the device's. */
	self->dev = variant->kvm ? create_vm() : gmem_open_dev();
	ASSERT_LE(0, self->dev);
	self->fd = create_gmem(self->dev, NPAGES * page_size, flags);
	ASSERT_LE(0, self->fd);
	ASSERT_TRUE(gmem_uffd_file(self->fd));
	ASSERT_EQ(0, map_gmem(self->fd, NPAGES * page_size, MAP_SHARED, &self->mem));
	self->buf = malloc(page_size);
	ASSERT_NE(NULL, self->buf);
}

FIXTURE_TEARDOWN(secret)
{
	long answer;

	direct_map_cmd("drop", &answer);
	free(self->buf);
	munmap(self->mem, NPAGES * page_size);
	close(self->fd);
	close(self->dev);
}

/* What "direct_map" answers for a page of the file. */
#define MAPPED(v)	((v)->hidden ? 0 : 1)

TEST_F(secret, pwrite_pread)
{
	char *out = malloc(page_size);

	ASSERT_NE(NULL, out);
	EXPECT_EQ(-1, direct_map(self->fd, 0));
	fill(self->buf, page_size, 1);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 0));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 0));
	ASSERT_EQ(0, read_page(self->fd, out, 0));
	EXPECT_EQ(0, memcmp(out, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->mem, self->buf, page_size));
	/* Still out of the direct map after the read. */
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 0));
	free(out);
}

TEST_F(secret, pwrite_into_hidden_page)
{
	char *out = malloc(page_size);

	ASSERT_NE(NULL, out);
	fill(self->buf, page_size, 2);
	ASSERT_EQ(0, write_page(self->fd, self->buf, page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 1));
	/* A partial write into the page, which is out of the direct map now. */
	memset(self->buf + 100, 0x5a, 200);
	ASSERT_EQ(200, pwrite(self->fd, self->buf + 100, 200, page_size + 100));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 1));
	ASSERT_EQ(0, read_page(self->fd, out, page_size));
	EXPECT_EQ(0, memcmp(out, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->mem + page_size, self->buf, page_size));
	free(out);
}

TEST_F(secret, fallocate_and_fault_zero_fill)
{
	int i;

	ASSERT_EQ(0, fallocate(self->fd, 0, 0, 4 * page_size));
	for (i = 0; i < 4; i++)
		EXPECT_EQ(MAPPED(variant), direct_map(self->fd, i)) TH_LOG("page %d", i);
	EXPECT_TRUE(all_zero(self->mem, 4 * page_size));
	/* A fault on a hole: a zero page, out of the direct map. */
	EXPECT_EQ(0, self->mem[5 * page_size]);
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 5));
	self->mem[5 * page_size + 7] = 0x42;
	ASSERT_EQ(0, read_page(self->fd, self->buf, 5 * page_size));
	EXPECT_EQ(0x42, self->buf[7]);
	EXPECT_TRUE(all_zero(self->buf, 7));
}

struct reader {
	char *addr;
	char seen;
};

static void *reader_fn(void *arg)
{
	struct reader *r = arg;

	r->seen = __atomic_load_n(r->addr, __ATOMIC_RELAXED);
	return NULL;
}

/* Start a thread reading @addr, wait for its fault's event, check its kind. */
static int fault_event(struct __test_metadata *_metadata, int uffd, char *addr,
		       pthread_t *thread, struct reader *r, bool minor)
{
	struct uffd_msg msg;

	r->addr = addr;
	if (pthread_create(thread, NULL, reader_fn, r))
		return -1;
	if (uffd_read_msg(uffd, &msg, 5000))
		return -1;
	EXPECT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);
	EXPECT_EQ((unsigned long)addr, msg.arg.pagefault.address & ~(page_size - 1));
	EXPECT_EQ(minor, !!(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR));
	return 0;
}

TEST_F(secret, uffd_copy_and_zeropage)
{
	struct uffdio_zeropage zp = { .range = { .len = page_size } };
	struct uffdio_copy copy = { .len = page_size };
	struct reader r;
	pthread_t thread;
	int uffd;

	uffd = uffd_open();
	ASSERT_LE(0, uffd);
	ASSERT_EQ(0, uffd_register(uffd, self->mem, NPAGES * page_size, MODE_MISSING, NULL));

	ASSERT_EQ(0, fault_event(_metadata, uffd, self->mem + 2 * page_size, &thread, &r,
				 false));
	fill(self->buf, page_size, 3);
	copy.src = (unsigned long)self->buf;
	copy.dst = (unsigned long)self->mem + 2 * page_size;
	ASSERT_EQ(0, uffd_ioctl_retry(uffd, UFFDIO_COPY, &copy, NULL));
	ASSERT_EQ(0, join_timeout(thread, 5));
	EXPECT_EQ(self->buf[0], r.seen);
	EXPECT_EQ(0, memcmp(self->mem + 2 * page_size, self->buf, page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 2));

	ASSERT_EQ(0, fault_event(_metadata, uffd, self->mem + 3 * page_size, &thread, &r,
				 false));
	zp.range.start = (unsigned long)self->mem + 3 * page_size;
	ASSERT_EQ(0, uffd_ioctl_retry(uffd, UFFDIO_ZEROPAGE, &zp, NULL));
	ASSERT_EQ(0, join_timeout(thread, 5));
	EXPECT_EQ(0, r.seen);
	EXPECT_TRUE(all_zero(self->mem + 3 * page_size, page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 3));
	ASSERT_EQ(0, read_page(self->fd, self->buf, 2 * page_size));
	EXPECT_EQ(0, memcmp(self->mem + 2 * page_size, self->buf, page_size));
	close(uffd);
}

TEST_F(secret, pwrite_and_continue)
{
	struct uffdio_continue cont = { .range = { .len = page_size } };
	struct reader r;
	pthread_t thread;
	char *other = NULL;
	int uffd;

	/* The page exists (out of the direct map) before the fault. */
	fill(self->buf, page_size, 4);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 4 * page_size));
	/* A second mapping, registered for MINOR faults: not yet populated. */
	ASSERT_EQ(0, map_gmem(self->fd, NPAGES * page_size, MAP_SHARED, &other));
	uffd = uffd_open();
	ASSERT_LE(0, uffd);
	ASSERT_EQ(0, uffd_register(uffd, other, NPAGES * page_size, MODE_MINOR, NULL));
	ASSERT_EQ(0, fault_event(_metadata, uffd, other + 4 * page_size, &thread, &r, true));
	/* The handler writes the page, out of the direct map, then maps it. */
	fill(self->buf, page_size, 5);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 4 * page_size));
	cont.range.start = (unsigned long)other + 4 * page_size;
	ASSERT_EQ(0, uffd_ioctl_retry(uffd, UFFDIO_CONTINUE, &cont, NULL));
	ASSERT_EQ(0, join_timeout(thread, 5));
	EXPECT_EQ(self->buf[0], r.seen);
	EXPECT_EQ(0, memcmp(other + 4 * page_size, self->buf, page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 4));
	close(uffd);
	munmap(other, NPAGES * page_size);
}

TEST_F(secret, punch_gives_direct_map_back)
{
	long answer = -2;

	fill(self->buf, page_size, 6);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 6 * page_size));
	/* The query holds the page. */
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 6));
	ASSERT_EQ(0, fallocate(self->fd, PUNCH_HOLE, 6 * page_size, page_size));
	EXPECT_EQ(-1, direct_map(self->fd, 6));
	/* direct_map() above let the held page go: hold it again first. */
	fill(self->buf, page_size, 7);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 6 * page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 6));
	ASSERT_EQ(0, fallocate(self->fd, PUNCH_HOLE, 6 * page_size, page_size));
	/* Out of the file, still referenced: back in the direct map. */
	ASSERT_EQ(0, direct_map_cmd("held", &answer));
	EXPECT_EQ(1, answer);
	ASSERT_EQ(0, direct_map_cmd("drop", &answer));
	/* The hole reads as zeros, and is filled again like any other. */
	EXPECT_TRUE(all_zero(self->mem + 6 * page_size, page_size));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 6));
}

/*
 * Populating the mapping faults pages in without the kernel touching them
 * (GUP that takes no page): allowed, unlike on memfd_secret().
 */
TEST_F(secret, populate_allowed)
{
	ASSERT_EQ(0, madvise(self->mem + 7 * page_size, page_size, MADV_POPULATE_WRITE));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 7));
	EXPECT_TRUE(all_zero(self->mem + 7 * page_size, page_size));
	ASSERT_EQ(0, madvise(self->mem + 5 * page_size, page_size, MADV_POPULATE_READ));
	EXPECT_EQ(MAPPED(variant), direct_map(self->fd, 5));
}

TEST_F(secret, gup_refused)
{
	struct io_uring_params params = {};
	struct iovec local = { .iov_base = self->buf, .iov_len = page_size };
	struct iovec remote = { .iov_base = self->mem, .iov_len = page_size };
	int expect = variant->hidden ? -EFAULT : 0;
	int pipefd[2], mem, ring;
	ssize_t n;

	fill(self->buf, page_size, 8);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 0));
	EXPECT_EQ(0, memcmp(self->mem, self->buf, page_size));

	n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	EXPECT_EQ(variant->hidden ? -EFAULT : page_size, err_of(n));
	n = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
	EXPECT_EQ(variant->hidden ? -EFAULT : page_size, err_of(n));

	mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, mem);
	n = pread(mem, self->buf, page_size, (off_t)(unsigned long)self->mem);
	EXPECT_EQ(variant->hidden ? -EIO : page_size, err_of(n));
	n = pwrite(mem, self->buf, page_size, (off_t)(unsigned long)self->mem);
	EXPECT_EQ(variant->hidden ? -EIO : page_size, err_of(n));
	close(mem);

	ASSERT_EQ(0, pipe(pipefd));
	n = vmsplice(pipefd[1], &remote, 1, 0);
	EXPECT_EQ(variant->hidden ? -EFAULT : page_size, err_of(n));
	close(pipefd[0]);
	close(pipefd[1]);

	ring = syscall(__NR_io_uring_setup, 4, &params);
	ASSERT_LE(0, ring);
	EXPECT_EQ(expect, err_of(syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS,
					 &remote, 1)));
	close(ring);

	/* Whatever was refused, the page is intact. */
	ASSERT_EQ(0, read_page(self->fd, self->buf, 0));
	EXPECT_EQ(0, memcmp(self->mem, self->buf, page_size));
}

/*
 * O_DIRECT I/O pins the user buffer for the block layer (GUP): refused for a
 * hidden mapping, in both directions, and the page is untouched.  The block
 * device is brd's /dev/ram0 (CONFIG_BLK_DEV_RAM in config/base.config).
 */
TEST_F(secret, o_direct_refused)
{
	int expect = variant->hidden ? -EFAULT : page_size;
	int blk = open("/dev/ram0", O_RDWR | O_DIRECT | O_CLOEXEC);
	char *out;

	ASSERT_LE(0, blk) TH_LOG("/dev/ram0: %s", strerror(errno));
	fill(self->buf, page_size, 10);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 0));
	/* From the mapping to the device, and from the device into the mapping. */
	EXPECT_EQ(expect, err_of(pwrite(blk, self->mem, page_size, 0)));
	EXPECT_EQ(expect, err_of(pread(blk, self->mem, page_size, page_size)));
	close(blk);
	out = malloc(page_size);
	ASSERT_NE(NULL, out);
	ASSERT_EQ(0, read_page(self->fd, out, 0));
	if (variant->hidden) {
		EXPECT_EQ(0, memcmp(out, self->buf, page_size));
	} else {
		/* What the device held at page_size (brd starts zeroed) came in. */
		EXPECT_TRUE(all_zero(out, page_size));
	}
	free(out);
}

TEST_F(secret, ptrace_peek_poke_refused)
{
	long word, expect;
	int status;
	pid_t pid;

	fill(self->buf, page_size, 9);
	ASSERT_EQ(0, write_page(self->fd, self->buf, 0));
	memcpy(&expect, self->buf, sizeof(expect));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		/* The child shares the mapping; its tracer reads it. */
		ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		raise(SIGSTOP);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFSTOPPED(status));
	errno = 0;
	word = ptrace(PTRACE_PEEKDATA, pid, self->mem, NULL);
	if (variant->hidden) {
		EXPECT_EQ(EIO, errno);
	} else {
		EXPECT_EQ(0, errno);
		EXPECT_EQ(expect, word);
	}
	EXPECT_EQ(variant->hidden ? -EIO : 0,
		  err_of(ptrace(PTRACE_POKEDATA, pid, self->mem, (void *)~expect)));
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	/* The tracer's write went through the mapping only where it was allowed. */
	memcpy(&word, self->mem, sizeof(word));
	EXPECT_EQ(variant->hidden ? expect : ~expect, word);
}

/* memfd_secret(), the reference: the same calls fail the same way. */
TEST(memfd_secret_reference)
{
	struct iovec local, remote;
	int fd, mem, pipefd[2];
	char *buf, *p = NULL;
	long ps = sysconf(_SC_PAGESIZE);

	fd = syscall(__NR_memfd_secret, 0);
	ASSERT_LE(0, fd) TH_LOG("memfd_secret: %s", strerror(errno));
	ASSERT_EQ(0, ftruncate(fd, ps));
	ASSERT_EQ(0, map_gmem(fd, ps, MAP_SHARED, &p));
	memset(p, 1, ps);
	buf = malloc(ps);
	ASSERT_NE(NULL, buf);
	local = (struct iovec){ .iov_base = buf, .iov_len = ps };
	remote = (struct iovec){ .iov_base = p, .iov_len = ps };
	EXPECT_EQ(-EFAULT, err_of(process_vm_readv(getpid(), &local, 1, &remote, 1, 0)));
	mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, mem);
	EXPECT_EQ(-EIO, err_of(pread(mem, buf, ps, (off_t)(unsigned long)p)));
	close(mem);
	ASSERT_EQ(0, pipe(pipefd));
	EXPECT_EQ(-EFAULT, err_of(vmsplice(pipefd[1], &remote, 1, 0)));
	close(pipefd[0]);
	close(pipefd[1]);
	free(buf);
	munmap(p, ps);
	close(fd);
}

TEST(flag_without_mmap)
{
	int dev = gmem_open_dev(), fd;
	char *mem;

	ASSERT_LE(0, dev);
	fd = create_gmem(dev, sysconf(_SC_PAGESIZE), GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-ENODEV, map_gmem(fd, sysconf(_SC_PAGESIZE), MAP_SHARED, &mem));
	close(fd);
	close(dev);
}

/* KVM reports the flag while the module serves it (the fixture's kvm_* variants use it). */
TEST(kvm_reports_flag)
{
	int vm = create_vm(), caps;

	ASSERT_LE(0, vm);
	caps = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	ASSERT_LE(0, caps);
	EXPECT_EQ(GUEST_MEMFD_FLAG_NO_DIRECT_MAP, (__u64)caps & GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	close(vm);
}

TEST_HARNESS_MAIN
