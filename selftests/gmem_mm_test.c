// SPDX-License-Identifier: GPL-2.0
/*
 * Memory accounting and placement of gmem_uffd folios.
 *
 *  - memcg: a folio that UFFDIO_COPY allocates is charged to the memory
 *    cgroup of the mm that faulted (the mm the userfaultfd belongs to), not
 *    to the cgroup of the handler that issued the ioctl.  The faulting
 *    process runs in one cgroup, the handler in another; memory.current of
 *    both is compared before and after.  A folio that a zero-fill fault
 *    allocates is charged to the faulting task too.
 *  - NUMA, on guest_memfd and on a memfd (shmem, the reference): mbind() on
 *    a mapping sets a policy of the file's range, which other mappings
 *    report and which outlives the mapping.  A folio that UFFDIO_COPY, a
 *    fault, pwrite() or fallocate() allocates follows that policy, and the
 *    task's (set_mempolicy) where the range has none.  The node of each page
 *    is read back with move_pages(2) in query mode.  Needs a guest with two
 *    NUMA nodes (scripts/run-qemu.sh makes two); with one node the tests
 *    skip.
 *
 * Needs cgroup v2 (mounted at CGROUP2_DIR if it is not yet) with the memory
 * controller, and root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/kvm.h>
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#define NPAGES		256		/* 1 MiB of 4 KiB pages */
#define POLL_TIMEOUT_MS	5000

/* One access to guest memory that the compiler may not elide or merge. */
#define PEEK(addr)		__atomic_load_n((char *)(addr), __ATOMIC_RELAXED)
#define POKE(addr, val)		__atomic_store_n((char *)(addr), (val), __ATOMIC_RELAXED)

static long page_size;

static void __attribute__((constructor)) init_globals(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

/* A GMEM_SHARED file of @size bytes: its fd, or -errno. */
static int gmem_create(size_t size)
{
	int dev = gmem_open_dev(), fd;

	if (dev < 0)
		return dev;
	fd = create_gmem(dev, size, GMEM_SHARED);
	close(dev);
	return fd;
}

/* ---- fd passing (the guest kernel has no sockets: CONFIG_NET is off) ---- */

/* The file descriptor @fd of process @pid, duplicated into ours: a new fd or -errno. */
static int take_fd(pid_t pid, int fd)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0), ret;

	if (pidfd < 0)
		return -errno;
	ret = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	ret = ret < 0 ? -errno : ret;
	close(pidfd);
	return ret;
}

/*
 * Serve MISSING faults on uffd with UFFDIO_COPY of a page of 'c' bytes
 * until n pages are served.  Returns the number served, or -errno.
 */
static int serve_copies(int uffd, int n)
{
	char *src = malloc(page_size);
	struct uffd_msg msg;
	int served = 0, ret;

	if (!src)
		return -ENOMEM;
	memset(src, 'c', page_size);
	while (served < n) {
		struct uffdio_copy copy = { 0 };

		ret = uffd_read_msg(uffd, &msg, POLL_TIMEOUT_MS);
		if (ret) {
			served = ret;
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			served = -EPROTO;
			break;
		}
		copy.dst = msg.arg.pagefault.address & ~(page_size - 1);
		copy.src = (unsigned long)src;
		copy.len = page_size;
		if (ioctl(uffd, UFFDIO_COPY, &copy)) {
			if (errno != EEXIST) {
				served = -errno;
				break;
			}
		} else {
			served++;
		}
	}
	free(src);
	return served;
}

FIXTURE(memcg)
{
	char faulter[32], handler[32];
};

FIXTURE_SETUP(memcg)
{
	int ret = cgroup2_setup();

	if (ret)
		SKIP(return, "no cgroup v2 memory controller: %s", strerror(-ret));
	snprintf(self->faulter, sizeof(self->faulter), "gmem_f%d", getpid());
	snprintf(self->handler, sizeof(self->handler), "gmem_h%d", getpid());
	ASSERT_EQ(0, cg_create(self->faulter));
	ASSERT_EQ(0, cg_create(self->handler));
}

FIXTURE_TEARDOWN(memcg)
{
	/* Back to the root cgroup, so that ours can be removed. */
	cg_enter("");
	cg_remove(self->faulter);
	cg_remove(self->handler);
}

/*
 * The child, in cgroup "faulter", maps the gmem file, registers MISSING and
 * touches NPAGES pages; the parent, in cgroup "handler", resolves every
 * fault with UFFDIO_COPY.  The folios are charged to "faulter".  The file
 * stays open in the parent, so the folios stay charged after the child
 * exits, and the counters are read then.
 */
TEST_F(memcg, copy_charged_to_faulting_mm)
{
	size_t size = NPAGES * page_size;
	long long f0, h0, f1, h1;
	int up[2], down[2], fd, uffd, status;
	pid_t pid;

	fd = gmem_create(size);
	ASSERT_LE(0, fd);
	/* The child says its uffd's number up, the parent says go down. */
	ASSERT_EQ(0, pipe2(up, O_CLOEXEC));
	ASSERT_EQ(0, pipe2(down, O_CLOEXEC));
	ASSERT_EQ(0, cg_enter(self->handler));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		char *p, go;
		long i;

		if (cg_enter(self->faulter))
			_exit(10);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(11);
		uffd = uffd_open();
		if (uffd < 0)
			_exit(12);
		if (uffd_register(uffd, p, size, MODE_MISSING, NULL))
			_exit(13);
		if (write(up[1], &uffd, sizeof(uffd)) != sizeof(uffd))
			_exit(14);
		/* Wait for the parent to read the counters first. */
		if (read(down[0], &go, 1) != 1)
			_exit(15);
		for (i = 0; i < NPAGES; i++)
			if (PEEK(p + i * page_size) != 'c')
				_exit(16);
		_exit(0);
	}

	ASSERT_EQ((ssize_t)sizeof(uffd), read(up[0], &uffd, sizeof(uffd)))
		TH_LOG("child sent no uffd");
	uffd = take_fd(pid, uffd);
	ASSERT_LE(0, uffd) TH_LOG("pidfd_getfd: %s", strerror(-uffd));
	f0 = cg_current(self->faulter);
	h0 = cg_current(self->handler);
	ASSERT_LE(0, f0);
	ASSERT_LE(0, h0);
	ASSERT_EQ(1, write(down[1], "g", 1));
	ASSERT_EQ(NPAGES, serve_copies(uffd, NPAGES));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	f1 = cg_current(self->faulter);
	h1 = cg_current(self->handler);
	TH_LOG("faulter %lld -> %lld, handler %lld -> %lld bytes", f0, f1, h0, h1);
	/* All NPAGES folios in the faulting mm's cgroup... */
	ASSERT_GE(f1 - f0, (long long)size);
	/* ... and not in the handler's (slack for its own page tables etc.). */
	ASSERT_LT(h1 - h0, (long long)size / 4);
	close(uffd);
	/* Freeing the file uncharges them. */
	close(fd);
	ASSERT_GE(f1 - cg_current(self->faulter), (long long)size * 3 / 4);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
}

/* A zero-fill fault (no uffd) charges the folio to the faulting task. */
TEST_F(memcg, zero_fill_fault_charged_to_faulter)
{
	size_t size = NPAGES * page_size;
	long long f0, f1;
	char *p;
	int fd, status;
	pid_t pid;
	long i;

	fd = gmem_create(size);
	ASSERT_LE(0, fd);
	f0 = cg_current(self->faulter);
	ASSERT_LE(0, f0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (cg_enter(self->faulter))
			_exit(10);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(11);
		for (i = 0; i < NPAGES; i++)
			POKE(p + i * page_size, 1);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	f1 = cg_current(self->faulter);
	TH_LOG("faulter %lld -> %lld bytes", f0, f1);
	ASSERT_GE(f1 - f0, (long long)size);
	/* Freeing the file uncharges them. */
	close(fd);
	ASSERT_GE(f1 - cg_current(self->faulter), (long long)size * 3 / 4);
}

/* ---- NUMA ---- */

/* The policy of the page mapped at @addr: its mode, and its nodes in *@nodes. */
static int policy_at(void *addr, unsigned long *nodes)
{
	int mode = -1;

	*nodes = 0;
	if (syscall(__NR_get_mempolicy, &mode, nodes, sizeof(*nodes) * 8, addr, MPOL_F_ADDR))
		return -errno;
	return mode;
}

FIXTURE(numa)
{
	int fd;
	size_t size;
	char *p;
};

/* Each test runs on guest_memfd and on a memfd, the reference. */
FIXTURE_VARIANT(numa)
{
	bool memfd;
};

FIXTURE_VARIANT_ADD(numa, gmem)
{
	.memfd = false,
};

FIXTURE_VARIANT_ADD(numa, memfd)
{
	.memfd = true,
};

FIXTURE_SETUP(numa)
{
	if (num_nodes() < 2)
		SKIP(return, "needs two NUMA nodes, the system has %d", num_nodes());
	self->size = 8 * page_size;
	self->fd = variant->memfd ? create_sealed_memfd("numa", self->size) :
				    gmem_create(self->size);
	ASSERT_LE(0, self->fd);
	self->p = mmap(NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, self->p);
}

FIXTURE_TEARDOWN(numa)
{
	if (self->p && self->p != MAP_FAILED)
		munmap(self->p, self->size);
	if (self->fd > 0)
		close(self->fd);
}

struct fault_arg {
	char *addr;
	char seen;
};

static void *touch(void *arg)
{
	struct fault_arg *a = arg;

	a->seen = PEEK(a->addr);
	return NULL;
}

/* UFFDIO_COPY places the folio on the node the faulting VMA is bound to. */
TEST_F(numa, copy_follows_vma_policy)
{
	int node;

	for (node = 0; node < 2; node++) {
		struct fault_arg a = { .addr = self->p + node * page_size };
		pthread_t t;
		int uffd;

		ASSERT_EQ(0, bind_to(self->p, self->size, node));
		uffd = uffd_open();
		ASSERT_LE(0, uffd);
		ASSERT_EQ(0, uffd_register(uffd, self->p, self->size, MODE_MISSING, NULL));
		ASSERT_EQ(0, pthread_create(&t, NULL, touch, &a));
		ASSERT_EQ(1, serve_copies(uffd, 1));
		ASSERT_EQ(0, pthread_join(t, NULL));
		ASSERT_EQ('c', a.seen);
		ASSERT_EQ(node, page_node(a.addr));
		close(uffd);
	}
}

/* A zero-fill fault allocates on the node of the VMA's policy. */
TEST_F(numa, zero_fill_follows_vma_policy)
{
	int node;

	for (node = 0; node < 2; node++) {
		char *q = self->p + (2 + node) * page_size;

		ASSERT_EQ(0, bind_to(self->p, self->size, node));
		ASSERT_EQ(0, PEEK(q));
		ASSERT_EQ(node, page_node(q));
	}
}

/* pwrite() allocates on the node of the writer's task policy. */
TEST_F(numa, pwrite_follows_task_policy)
{
	char *buf = malloc(page_size);
	int node;

	ASSERT_NE(NULL, buf);
	memset(buf, 'w', page_size);
	for (node = 0; node < 2; node++) {
		off_t off = (4 + node) * page_size;

		ASSERT_EQ(0, task_bind(node));
		ASSERT_EQ(page_size, pwrite(self->fd, buf, page_size, off));
		ASSERT_EQ(0, task_bind(-1));
		ASSERT_EQ('w', self->p[off]);
		ASSERT_EQ(node, page_node(self->p + off));
	}
	free(buf);
}

/*
 * mbind() on a mapping sets the policy of the file, as for shmem: a second
 * mapping of the same range reports it, it outlives the mapping it was set
 * on, and a fault through the other mapping follows it rather than the
 * faulting task's policy.  The rest of the file has no policy.
 */
TEST_F(numa, mbind_sets_file_policy)
{
	size_t half = self->size / 2;
	unsigned long nodes;
	char *q;

	ASSERT_EQ(0, bind_to(self->p, half, 1));
	q = mmap(NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
	ASSERT_NE(MAP_FAILED, q);
	ASSERT_EQ(MPOL_BIND, policy_at(q, &nodes));
	ASSERT_EQ(1UL << 1, nodes);
	ASSERT_EQ(MPOL_DEFAULT, policy_at(q + half, &nodes));

	ASSERT_EQ(0, munmap(self->p, self->size));
	self->p = NULL;
	ASSERT_EQ(MPOL_BIND, policy_at(q + half - page_size, &nodes));
	ASSERT_EQ(1UL << 1, nodes);

	ASSERT_EQ(0, task_bind(0));
	ASSERT_EQ(0, PEEK(q));
	ASSERT_EQ(0, PEEK(q + half));
	ASSERT_EQ(0, task_bind(-1));
	EXPECT_EQ(1, page_node(q));
	EXPECT_EQ(0, page_node(q + half));
	munmap(q, self->size);
}

/*
 * pwrite() and fallocate() allocate by the file's policy of the page they
 * fill, not by the writer's task policy (pwrite_follows_task_policy: the
 * task's where the file has none).
 */
TEST_F(numa, write_and_fallocate_follow_file_policy)
{
	char *buf = malloc(page_size);
	int node;

	ASSERT_NE(NULL, buf);
	memset(buf, 'w', page_size);
	for (node = 0; node < 2; node++) {
		off_t w = (2 * node) * page_size, f = (2 * node + 1) * page_size;

		ASSERT_EQ(0, bind_to(self->p + w, 2 * page_size, node));
		ASSERT_EQ(0, task_bind(!node));
		ASSERT_EQ(page_size, pwrite(self->fd, buf, page_size, w));
		ASSERT_EQ(0, fallocate(self->fd, 0, f, page_size));
		ASSERT_EQ(0, task_bind(-1));
		ASSERT_EQ('w', self->p[w]);
		ASSERT_EQ(0, PEEK(self->p + f));
		EXPECT_EQ(node, page_node(self->p + w));
		EXPECT_EQ(node, page_node(self->p + f));
	}
	free(buf);
}

TEST_HARNESS_MAIN
