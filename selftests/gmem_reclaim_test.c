// SPDX-License-Identifier: GPL-2.0
/*
 * Guest memory is the only copy of the guest's data: nothing may drop it,
 * move it or hand out a corrupted page of it.  Every test runs on a gmem file
 * (GMEM_SHARED) and, as the reference that must pass on any kernel, on a
 * sealed memfd; the assertions are the same for both unless a comment says
 * why not.
 *
 *  - reclaim.<backend>_<pressure>.<fill>: the file (GMEM_RECLAIM_MIB, 2 MiB
 *    by default) is filled by pwrite(), fallocate(), zero-fill read faults,
 *    UFFDIO_COPY (a MISSING handler thread) or pwrite() + UFFDIO_CONTINUE (a
 *    MINOR handler thread), then put under memory pressure: MADV_PAGEOUT of
 *    its mapping, memory.reclaim of the cgroup its pages are charged to,
 *    drop_caches, or a memory hog in that cgroup.  Afterwards every byte
 *    reads back as written (each page has its own pattern; zeros for
 *    fallocate and faults), by pread() and through a new mapping, and gmem's
 *    debugfs folio count is what the fill made it: no page was dropped.
 *  - hwpoison.<backend>.poisoned_page: MADV_HWPOISON on one page of a filled
 *    file.  The page stays in the file: pread() and pwrite() of it fail with
 *    EIO, an access through the old or a new mapping raises SIGBUS
 *    (BUS_MCEERR_AR), UFFDIO_CONTINUE of it fails with EIO; the other pages
 *    are intact; punching the page makes its offset usable again.
 *  - migration.<backend>.move_pages, .compact_memory: move_pages(2) of the
 *    file's pages to the other NUMA node moves a memfd's pages and none of
 *    gmem's; compaction leaves the file intact.  No kernel warning.
 *  - memcg_limit.<backend>.<fill>: a child process in a cgroup with
 *    memory.max = 8 MiB writes 2 MiB of a 32 MiB file, then tries to fill
 *    the rest: the fill fails cleanly (ENOMEM from pwrite(), fallocate() and
 *    UFFDIO_COPY; the OOM kill or SIGBUS of a faulting child), the limit
 *    holds, and everything written before is intact.  These tests make the
 *    kernel print OOM reports (see the comment above the fixture).
 *  - memcg_charge.<backend>.remote_fault: pages faulted in by another
 *    process (process_vm_writev() into a child's mapping) are charged to the
 *    child's memory cgroup, not the writer's.
 *
 * Needs root (CAP_SYS_ADMIN for MADV_HWPOISON), cgroup v2 with the memory
 * controller (mounted at CGROUP2_DIR if it is not yet), CONFIG_MEMORY_FAILURE,
 * CONFIG_COMPACTION and two NUMA nodes, as the test guest has; a test whose
 * need is missing says so and skips.  The guest has no swap, which the
 * tests rely on for the memfd reference: without swap the kernel can only
 * keep a memfd's written pages.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

/* The pattern of every page written: page_word(SEED, page, word). */
#define SEED			0x5eed
/* How long the uffd handler waits for the next fault before giving up. */
#define EVENT_TIMEOUT_MS	10000
/* Bounds of the child processes (the memory hog, the memcg_limit fillers). */
#define CHILD_TIMEOUT_MS	60000

/* One access to guest memory that the compiler may not elide or merge. */
#define PEEK(addr)		__atomic_load_n((char *)(addr), __ATOMIC_RELAXED)

static long page_size;
/* Pages of the file in the reclaim tests: GMEM_RECLAIM_MIB MiB (default 2). */
static long reclaim_pages;

static void __attribute__((constructor)) init_globals(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	reclaim_pages = env_ulong("GMEM_RECLAIM_MIB", 2, 1, 1024) * (1 << 20) / page_size;
}

enum backend { GMEM, MEMFD };

/* The file under test, and what is needed to check it afterwards. */
struct subject {
	enum backend backend;
	int fd;
	long pages;
	long long folios0;	/* gmem: the module's folio count before the file existed */
	int kmsg;		/* /dev/kmsg from the start of the test on */
};

static void subject_init(struct subject *s)
{
	s->fd = -1;
	s->kmsg = -1;
}

/*
 * Makes @s a new file of @pages pages of @backend.  The folio count of debugfs
 * is global: it is read before the file exists, and every later count is
 * compared with it (the tests of this program run one at a time, and every
 * other file is gone by then).
 */
static void subject_open(struct __test_metadata *_metadata, struct subject *s,
			 enum backend backend, long pages)
{
	int dev;

	s->backend = backend;
	s->pages = pages;
	s->kmsg = kmsg_open();
	ASSERT_LE(0, s->kmsg) TH_LOG("/dev/kmsg: %s", strerror(-s->kmsg));
	if (backend == MEMFD) {
		s->fd = create_sealed_memfd("gmem_reclaim", pages * page_size);
		ASSERT_LE(0, s->fd) TH_LOG("memfd: %s", strerror(-s->fd));
		return;
	}
	ASSERT_TRUE(gmem_counters_present())
		TH_LOG("no %s (debugfs mounted? %s loaded?)", GMEM_DEBUGFS_DIR, GMEM_MODULE);
	s->folios0 = gmem_counter("folios");
	ASSERT_LE(0, s->folios0);
	dev = gmem_open_dev();
	ASSERT_LE(0, dev) TH_LOG("open %s: %s", GMEM_DEV, strerror(-dev));
	s->fd = create_gmem(dev, pages * page_size, GMEM_SHARED);
	close(dev);
	ASSERT_LE(0, s->fd) TH_LOG("KVM_CREATE_GUEST_MEMFD: %s", strerror(-s->fd));
}

static void subject_close(struct subject *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->kmsg >= 0)
		close(s->kmsg);
	subject_init(s);
}

/* gmem: the file holds @pages folios (memfd: nothing to count). */
static void expect_folios(struct __test_metadata *_metadata, struct subject *s, long pages,
			  const char *when)
{
	if (s->backend != GMEM)
		return;
	EXPECT_EQ(s->folios0 + pages, gmem_counter("folios"))
		TH_LOG("%s: the file should hold %ld folios", when, pages);
}

/* Nothing the harness would call a splat in the kernel log since the test began. */
static void expect_no_splat(struct __test_metadata *_metadata, struct subject *s, bool traces_ok)
{
	char line[256];

	EXPECT_FALSE(kmsg_splat(s->kmsg, traces_ok, line, sizeof(line)))
		TH_LOG("kernel log: %s", line);
}

/* pwrite() pages [@first, @first + @n) of @seed's pattern, a page at a time: 0 or -errno. */
static int write_pages(int fd, long first, long n, uint16_t seed)
{
	char *buf = malloc(page_size);
	long i;
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (i = first; i < first + n && !ret; i++) {
		fill_page_words(buf, page_size, seed, i);
		if (pwrite(fd, buf, page_size, i * page_size) != page_size)
			ret = errno ? -errno : -EIO;
	}
	free(buf);
	return ret;
}

static void touch_pages(char *mem, long first, long n)
{
	long i;

	for (i = first; i < first + n; i++)
		(void)PEEK(mem + i * page_size);
}

/*
 * Pages [@first, @first + @n) of @s hold @seed's pattern (0: zeros), read by
 * pread(), then through a new mapping of the file.  The first wrong word of
 * each way is logged (page_word() tells where a word came from; 0 is a page
 * that was dropped).
 */
static void check_pages(struct __test_metadata *_metadata, struct subject *s, long first,
			long n, uint16_t seed)
{
	long i, w, bad_read = 0, bad_map = 0;
	char *buf, *mem = NULL;

	buf = malloc(page_size);
	ASSERT_NE(NULL, buf);
	for (i = first; i < first + n; i++) {
		ssize_t got = pread(s->fd, buf, page_size, i * page_size);

		w = got == page_size ? bad_page_word(buf, page_size, seed, i) : 0;
		if (w < 0)
			continue;
		if (!bad_read++)
			TH_LOG("pread: page %ld: %zd bytes (%s), word %ld %#llx, expected %#llx",
			       i, got, got < 0 ? strerror(errno) : "ok", w,
			       (unsigned long long)((uint64_t *)buf)[w],
			       (unsigned long long)page_word(seed, i, w));
	}
	free(buf);
	ASSERT_EQ(0, map_gmem(s->fd, s->pages * page_size, MAP_SHARED, &mem));
	for (i = first; i < first + n; i++) {
		w = bad_page_word(mem + i * page_size, page_size, seed, i);
		if (w >= 0 && !bad_map++)
			TH_LOG("mapping: page %ld word %ld %#llx, expected %#llx", i, w,
			       (unsigned long long)((uint64_t *)(mem + i * page_size))[w],
			       (unsigned long long)page_word(seed, i, w));
	}
	munmap(mem, s->pages * page_size);
	EXPECT_EQ(0, bad_read) TH_LOG("%ld of %ld pages read wrong by pread()", bad_read, n);
	EXPECT_EQ(0, bad_map) TH_LOG("%ld of %ld pages wrong through a new mapping", bad_map, n);
}

/* ---- Filling a file ---- */

enum fill { FILL_PWRITE, FILL_FALLOCATE, FILL_READ_FAULT, FILL_UFFD_COPY, FILL_UFFD_CONTINUE };

/* The pattern a fill leaves: zeros for fallocate() and zero-fill faults. */
static uint16_t fill_seed(enum fill how)
{
	return how == FILL_FALLOCATE || how == FILL_READ_FAULT ? 0 : SEED;
}

/*
 * The userfaultfd handler of a fill: serves the faults on the registered
 * mapping @base until each of its @pages pages was filled once, by
 * UFFDIO_COPY of the page's pattern (@copy, MISSING faults) or by
 * UFFDIO_CONTINUE (MINOR faults).  It closes the userfaultfd when it stops,
 * so that a thread still faulting after an error completes without it
 * instead of hanging.
 */
struct filler {
	int uffd;
	char *base;
	long pages;
	bool copy;
	char *src;
	long served;
	int err;
	pthread_t thread;
};

static int filler_serve(struct filler *f, const struct uffd_msg *msg)
{
	unsigned long addr = msg->arg.pagefault.address & ~((unsigned long)page_size - 1);
	long page = (long)(addr - (unsigned long)f->base) / page_size;
	struct uffdio_range range = { .start = addr, .len = page_size };
	struct uffdio_continue cont = { .range = range };
	struct uffdio_copy copy = {
		.dst = addr, .src = (unsigned long)f->src, .len = page_size,
	};
	int ret;

	if (msg->event != UFFD_EVENT_PAGEFAULT || page < 0 || page >= f->pages ||
	    !(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) != f->copy)
		return -EPROTO;
	if (f->copy) {
		fill_page_words(f->src, page_size, SEED, page);
		ret = uffd_ioctl_retry(f->uffd, UFFDIO_COPY, &copy, NULL);
	} else {
		ret = uffd_ioctl_retry(f->uffd, UFFDIO_CONTINUE, &cont, NULL);
	}
	if (ret == -EEXIST)	/* a second event for a page filled already */
		return ioctl(f->uffd, UFFDIO_WAKE, &range) ? -errno : 0;
	if (!ret)
		f->served++;
	return ret;
}

static void *filler_fn(void *arg)
{
	struct filler *f = arg;
	struct uffd_msg msg;

	while (f->served < f->pages && !f->err) {
		f->err = uffd_read_msg(f->uffd, &msg, EVENT_TIMEOUT_MS);
		if (!f->err)
			f->err = filler_serve(f, &msg);
	}
	close(f->uffd);
	return NULL;
}

/* Fill every page of @s through @mem, registered for MISSING (@copy) or MINOR. */
static void uffd_fill(struct __test_metadata *_metadata, struct subject *s, char *mem, bool copy)
{
	struct filler f = { .base = mem, .pages = s->pages, .copy = copy };

	f.src = malloc(page_size);
	ASSERT_NE(NULL, f.src);
	f.uffd = uffd_open();
	ASSERT_LE(0, f.uffd) TH_LOG("userfaultfd: %s", strerror(-f.uffd));
	ASSERT_EQ(0, uffd_register(f.uffd, mem, s->pages * page_size,
				   copy ? MODE_MISSING : MODE_MINOR, NULL));
	ASSERT_EQ(0, pthread_create(&f.thread, NULL, filler_fn, &f));
	touch_pages(mem, 0, s->pages);
	ASSERT_EQ(0, join_timeout(f.thread, EVENT_TIMEOUT_MS / 1000 + 5));
	free(f.src);
	ASSERT_EQ(0, f.err) TH_LOG("uffd handler: %s after %ld of %ld pages",
				   strerror(-f.err), f.served, s->pages);
	ASSERT_EQ(s->pages, f.served);
}

/* Fill every page of @s by @how; @mem is a mapping of the whole file. */
static void fill_file(struct __test_metadata *_metadata, struct subject *s, char *mem,
		      enum fill how)
{
	switch (how) {
	case FILL_PWRITE:
		ASSERT_EQ(0, write_pages(s->fd, 0, s->pages, SEED));
		break;
	case FILL_FALLOCATE:
		ASSERT_EQ(0, err_of(fallocate(s->fd, 0, 0, s->pages * page_size)));
		break;
	case FILL_READ_FAULT:
		touch_pages(mem, 0, s->pages);
		break;
	case FILL_UFFD_COPY:
		uffd_fill(_metadata, s, mem, true);
		break;
	case FILL_UFFD_CONTINUE:
		ASSERT_EQ(0, write_pages(s->fd, 0, s->pages, SEED));
		uffd_fill(_metadata, s, mem, false);
		break;
	}
	if (s->backend == GMEM)
		ASSERT_EQ(s->folios0 + s->pages, gmem_counter("folios"))
			TH_LOG("the fill should have made a folio per page");
}

/* ---- Reclaim: fill methods x pressure methods ---- */

enum pressure { PAGEOUT, MEMCG_RECLAIM, DROP_CACHES, HOG };

/*
 * The memory hog: memory.high of the file's cgroup is set HOG_ROOM above
 * what the cgroup holds, and a child in the cgroup allocates HOG_ROOM +
 * HOG_OVER of anonymous memory.  Going over memory.high makes the kernel
 * reclaim from the cgroup (reclaim_high(), on the way back to user space),
 * where only the file's pages could go: with no swap the hog's own memory
 * cannot.  memory.high, not memory.max: over memory.max with nothing left to
 * reclaim the kernel would have to OOM-kill the hog, and an OOM report fails
 * the run as a kernel splat (its "Call Trace:"); over memory.high it only
 * throttles the hog, for a fraction of a second at HOG_OVER.  The hog
 * allocates a fixed amount, so it is bounded whatever the kernel does;
 * memory.max at twice memory.high is a second bound it never reaches.
 */
#define HOG_ROOM		(32 << 20)
#define HOG_OVER		(1 << 20)
#define HOG_CHUNK		(1 << 20)

static int hog(const char *cg, long bytes)
{
	long done;

	if (cg_enter(cg))
		return 10;
	for (done = 0; done < bytes; done += HOG_CHUNK) {
		if (mmap(NULL, HOG_CHUNK, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0) == MAP_FAILED)
			return 11;
	}
	return 0;
}

FIXTURE(reclaim)
{
	struct subject s;
	char cg[64];		/* the cgroup of the memcg pressures, or "" */
	pid_t hog;
};

FIXTURE_VARIANT(reclaim)
{
	enum backend backend;
	enum pressure pressure;
};

FIXTURE_VARIANT_ADD(reclaim, gmem_pageout)
{
	.backend = GMEM,
	.pressure = PAGEOUT,
};

FIXTURE_VARIANT_ADD(reclaim, gmem_memcg_reclaim)
{
	.backend = GMEM,
	.pressure = MEMCG_RECLAIM,
};

FIXTURE_VARIANT_ADD(reclaim, gmem_drop_caches)
{
	.backend = GMEM,
	.pressure = DROP_CACHES,
};

FIXTURE_VARIANT_ADD(reclaim, gmem_hog)
{
	.backend = GMEM,
	.pressure = HOG,
};

FIXTURE_VARIANT_ADD(reclaim, memfd_pageout)
{
	.backend = MEMFD,
	.pressure = PAGEOUT,
};

FIXTURE_VARIANT_ADD(reclaim, memfd_memcg_reclaim)
{
	.backend = MEMFD,
	.pressure = MEMCG_RECLAIM,
};

FIXTURE_VARIANT_ADD(reclaim, memfd_drop_caches)
{
	.backend = MEMFD,
	.pressure = DROP_CACHES,
};

FIXTURE_VARIANT_ADD(reclaim, memfd_hog)
{
	.backend = MEMFD,
	.pressure = HOG,
};

/*
 * The memcg pressures: the test process enters a cgroup of its own before the
 * file is filled, so that every page of the file is charged there.
 */
FIXTURE_SETUP(reclaim)
{
	int ret;

	subject_init(&self->s);
	self->cg[0] = '\0';
	self->hog = 0;
	if (variant->pressure == MEMCG_RECLAIM || variant->pressure == HOG) {
		ret = cgroup2_setup();
		if (ret)
			SKIP(return, "no cgroup v2 memory controller: %s", strerror(-ret));
	}
	subject_open(_metadata, &self->s, variant->backend, reclaim_pages);
	if (variant->pressure == MEMCG_RECLAIM || variant->pressure == HOG) {
		snprintf(self->cg, sizeof(self->cg), "gmem_reclaim_%d", getpid());
		ASSERT_EQ(0, cg_create(self->cg));
		ASSERT_EQ(0, cg_enter(self->cg));
	}
}

FIXTURE_TEARDOWN(reclaim)
{
	int status;

	if (self->hog > 0) {
		kill(self->hog, SIGKILL);
		waitpid(self->hog, &status, 0);
	}
	subject_close(&self->s);
	if (self->cg[0]) {
		cg_enter("");
		cg_remove(self->cg);
	}
}

static void run_hog(struct __test_metadata *_metadata, struct _test_data_reclaim *self)
{
	long long cur = cg_current(self->cg), high0, high;
	int status;

	ASSERT_LE(0, cur);
	ASSERT_EQ(0, cg_write_ll(self->cg, "memory.high", cur + HOG_ROOM));
	ASSERT_EQ(0, cg_write_ll(self->cg, "memory.max", 2 * (cur + HOG_ROOM)));
	high0 = cg_event(self->cg, "high");
	ASSERT_LE(0, high0);
	/* Out of the way: only the hog is throttled, and the file stays charged there. */
	ASSERT_EQ(0, cg_enter(""));
	self->hog = fork();
	ASSERT_LE(0, self->hog);
	if (!self->hog)
		_exit(hog(self->cg, HOG_ROOM + HOG_OVER));
	ASSERT_EQ(0, wait_child_timeout(self->hog, CHILD_TIMEOUT_MS, &status))
		TH_LOG("the hog did not finish");
	self->hog = 0;
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
		TH_LOG("the hog %s %d", WIFEXITED(status) ? "exited with" : "was killed by signal",
		       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	high = cg_event(self->cg, "high");
	/* Proof that the hog did press: memory.high was crossed and reclaimed from. */
	EXPECT_LT(high0, high) TH_LOG("the hog never went over memory.high");
}

/*
 * Fill the file by @how, press by the variant's pressure, then check every
 * page and gmem's folio count.  The fill's mapping is unmapped before the
 * pressure (except for MADV_PAGEOUT, which works on it): clean page cache
 * that nobody maps is what reclaim and drop_caches take first.
 */
static void run_reclaim(struct __test_metadata *_metadata, struct _test_data_reclaim *self,
			const struct _fixture_variant_reclaim *variant, enum fill how)
{
	struct subject *s = &self->s;
	long size = s->pages * page_size;
	char *mem = NULL;
	int ret;

	ASSERT_EQ(0, map_gmem(s->fd, size, MAP_SHARED, &mem));
	fill_file(_metadata, s, mem, how);
	if (self->cg[0])
		EXPECT_LE(size, cg_current(self->cg))
			TH_LOG("the file's pages should be charged to %s", self->cg);

	switch (variant->pressure) {
	case PAGEOUT:
		/* Every page mapped here, then paged out of this mapping. */
		touch_pages(mem, 0, s->pages);
		ASSERT_EQ(0, err_of(madvise(mem, size, MADV_PAGEOUT)));
		munmap(mem, size);
		break;
	case MEMCG_RECLAIM:
		munmap(mem, size);
		/* EAGAIN: less than asked for could be reclaimed, as it should. */
		ret = cg_write(self->cg, "memory.reclaim", "1G");
		ASSERT_TRUE(!ret || ret == -EAGAIN) TH_LOG("memory.reclaim: %s", strerror(-ret));
		break;
	case DROP_CACHES:
		/*
		 * drop_caches only visits the inodes on their super block's
		 * list: a memfd's are, a gmem file's (alloc_anon_inode()) are
		 * not, today.  For gmem this guards the day they are.
		 */
		munmap(mem, size);
		ASSERT_EQ(0, write_str("/proc/sys/vm/drop_caches", "3"));
		break;
	case HOG:
		munmap(mem, size);
		run_hog(_metadata, self);
		break;
	}

	/*
	 * gmem keeps every folio.  A memfd may drop a clean page that was never
	 * written (zero-filled by a read fault): it reads back as zeros all the
	 * same, which is all that is checked for it.
	 */
	expect_folios(_metadata, s, s->pages, "after the pressure");
	check_pages(_metadata, s, 0, s->pages, fill_seed(how));
	expect_folios(_metadata, s, s->pages, "after the checks");
	expect_no_splat(_metadata, s, false);
}

TEST_F_TIMEOUT(reclaim, pwrite, 120)
{
	run_reclaim(_metadata, self, variant, FILL_PWRITE);
}

TEST_F_TIMEOUT(reclaim, fallocate, 120)
{
	run_reclaim(_metadata, self, variant, FILL_FALLOCATE);
}

TEST_F_TIMEOUT(reclaim, read_fault, 120)
{
	run_reclaim(_metadata, self, variant, FILL_READ_FAULT);
}

TEST_F_TIMEOUT(reclaim, uffd_copy, 180)
{
	run_reclaim(_metadata, self, variant, FILL_UFFD_COPY);
}

TEST_F_TIMEOUT(reclaim, uffd_continue, 180)
{
	run_reclaim(_metadata, self, variant, FILL_UFFD_CONTINUE);
}

/* ---- Hardware poison ---- */

/*
 * One page poisoned per variant and run (it is never unpoisoned: the page is
 * lost to the guest for good), in a file of HW_PAGES pages.
 */
#define HW_PAGES		8
#define HW_VICTIM		3

FIXTURE(hwpoison)
{
	struct subject s;
};

FIXTURE_VARIANT(hwpoison)
{
	enum backend backend;
};

FIXTURE_VARIANT_ADD(hwpoison, gmem) { .backend = GMEM };
FIXTURE_VARIANT_ADD(hwpoison, memfd) { .backend = MEMFD };

FIXTURE_SETUP(hwpoison)
{
	unsigned long long recovery = 0;

	subject_init(&self->s);
	if (!has_cap(CAP_SYS_ADMIN))
		SKIP(return, "MADV_HWPOISON needs CAP_SYS_ADMIN");
	if (read_number("/proc/sys/vm/memory_failure_recovery", &recovery))
		SKIP(return, "no CONFIG_MEMORY_FAILURE (no vm.memory_failure_recovery)");
	/* Without recovery, memory_failure() panics the kernel. */
	if (recovery != 1)
		SKIP(return, "vm.memory_failure_recovery is %llu: a poisoned page would panic",
		     recovery);
	subject_open(_metadata, &self->s, variant->backend, HW_PAGES);
}

FIXTURE_TEARDOWN(hwpoison)
{
	subject_close(&self->s);
}

struct madvise_args {
	char *addr;
	long len;
	int advice;
	int ret;
};

static void do_madvise(void *arg)
{
	struct madvise_args *a = arg;

	a->ret = err_of(madvise(a->addr, a->len, a->advice));
}

/* An access to the poisoned page at @p raises SIGBUS, BUS_MCEERR_AR, at @p. */
static void expect_poison_sigbus(struct __test_metadata *_metadata, char *p, const char *what)
{
	siginfo_t si = { 0 };

	if (!sigbus_probe(p, false, 0, &si)) {
		EXPECT_TRUE(false) TH_LOG("%s: no SIGBUS", what);
		return;
	}
	EXPECT_EQ(BUS_MCEERR_AR, si.si_code) TH_LOG("%s: si_code %d", what, si.si_code);
	EXPECT_EQ(p, si.si_addr) TH_LOG("%s", what);
	EXPECT_EQ(page_size, 1L << si.si_addr_lsb) TH_LOG("%s", what);
}

static int uffd_continue_page(int uffd, char *addr)
{
	struct uffdio_continue cont = {
		.range = { .start = (unsigned long)addr, .len = page_size },
	};

	return uffd_ioctl_retry(uffd, UFFDIO_CONTINUE, &cont, NULL);
}

/*
 * The poisoned page stays in the file until it is punched, as on shmem:
 * its data exists nowhere else, so reading it as zeros, or refilling it
 * silently, would hand the guest corrupted memory.
 */
TEST_F_TIMEOUT(hwpoison, poisoned_page, 120)
{
	struct subject *s = &self->s;
	const long size = HW_PAGES * page_size, victim = HW_VICTIM;
	struct madvise_args adv = { .len = page_size, .advice = MADV_HWPOISON };
	char *mem = NULL, *mem2 = NULL, *buf;
	long long corrupted0;
	siginfo_t si = { 0 };
	int uffd;

	buf = malloc(page_size);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, write_pages(s->fd, 0, HW_PAGES, SEED));
	ASSERT_EQ(0, map_gmem(s->fd, size, MAP_SHARED, &mem));
	touch_pages(mem, 0, HW_PAGES);
	corrupted0 = meminfo_kb("HardwareCorrupted");
	ASSERT_LE(0, corrupted0);

	/*
	 * memory_failure() kills the processes that map a dirty page, the caller
	 * of MADV_HWPOISON first, with SIGBUS (BUS_MCEERR_AR): a memfd's written
	 * pages are dirty, and gmem's should be too, but either way is fine.
	 */
	adv.addr = mem + victim * page_size;
	adv.ret = INT_MIN;
	if (sigbus_call(do_madvise, &adv, &si)) {
		EXPECT_EQ(BUS_MCEERR_AR, si.si_code);
		EXPECT_EQ(adv.addr, si.si_addr);
	} else {
		EXPECT_EQ(0, adv.ret) TH_LOG("MADV_HWPOISON: %s", strerror(-adv.ret));
	}
	EXPECT_EQ(corrupted0 + page_size / 1024, meminfo_kb("HardwareCorrupted"))
		TH_LOG("the page was not poisoned");
	expect_folios(_metadata, s, HW_PAGES, "the poisoned page stays in the file");

	EXPECT_EQ(-EIO, err_of(pread(s->fd, buf, page_size, victim * page_size)));
	check_pages(_metadata, s, 0, victim, SEED);
	check_pages(_metadata, s, victim + 1, HW_PAGES - victim - 1, SEED);
	expect_poison_sigbus(_metadata, mem + victim * page_size, "the old mapping");
	ASSERT_EQ(0, map_gmem(s->fd, size, MAP_SHARED, &mem2));
	expect_poison_sigbus(_metadata, mem2 + victim * page_size, "a new mapping");
	munmap(mem2, size);
	fill_page_words(buf, page_size, SEED, victim);
	EXPECT_EQ(-EIO, err_of(pwrite(s->fd, buf, page_size, victim * page_size)));

	/* A VMM serving a MINOR fault on it is told, and its neighbours are served. */
	ASSERT_EQ(0, map_gmem(s->fd, size, MAP_SHARED, &mem2));
	uffd = uffd_open();
	ASSERT_LE(0, uffd);
	ASSERT_EQ(0, uffd_register(uffd, mem2, size, MODE_MINOR, NULL));
	EXPECT_EQ(-EIO, uffd_continue_page(uffd, mem2 + victim * page_size));
	EXPECT_EQ(0, uffd_continue_page(uffd, mem2 + (victim + 1) * page_size));
	EXPECT_EQ(-1, bad_page_word(mem2 + (victim + 1) * page_size, page_size, SEED, victim + 1));
	close(uffd);
	munmap(mem2, size);
	check_pages(_metadata, s, 0, victim, SEED);
	check_pages(_metadata, s, victim + 1, HW_PAGES - victim - 1, SEED);

	/*
	 * Punched, the offset is a hole again and can be written.  (The old
	 * mapping goes first: truncation leaves its poison entry in place.)
	 */
	munmap(mem, size);
	ASSERT_EQ(0, err_of(fallocate(s->fd, PUNCH_HOLE, victim * page_size, page_size)));
	ASSERT_EQ(page_size, err_of(pread(s->fd, buf, page_size, victim * page_size)));
	EXPECT_TRUE(all_zero(buf, page_size));
	fill_page_words(buf, page_size, SEED, victim);
	ASSERT_EQ(page_size, err_of(pwrite(s->fd, buf, page_size, victim * page_size)));
	check_pages(_metadata, s, 0, HW_PAGES, SEED);
	expect_folios(_metadata, s, HW_PAGES, "after the punch and the new write");
	expect_no_splat(_metadata, s, false);
	free(buf);
}

/* ---- Migration and compaction ---- */

#define MIG_PAGES		64

FIXTURE(migration)
{
	struct subject s;
	char *mem;
};

FIXTURE_VARIANT(migration)
{
	enum backend backend;
};

FIXTURE_VARIANT_ADD(migration, gmem) { .backend = GMEM };
FIXTURE_VARIANT_ADD(migration, memfd) { .backend = MEMFD };

/* A file of MIG_PAGES pages written with the pattern, mapped whole and touched. */
FIXTURE_SETUP(migration)
{
	subject_init(&self->s);
	self->mem = NULL;
	subject_open(_metadata, &self->s, variant->backend, MIG_PAGES);
	ASSERT_EQ(0, write_pages(self->s.fd, 0, MIG_PAGES, SEED));
	ASSERT_EQ(0, map_gmem(self->s.fd, MIG_PAGES * page_size, MAP_SHARED, &self->mem));
	touch_pages(self->mem, 0, MIG_PAGES);
}

FIXTURE_TEARDOWN(migration)
{
	if (self->mem)
		munmap(self->mem, MIG_PAGES * page_size);
	subject_close(&self->s);
}

/*
 * move_pages(2) of every page to another node.  Here the two backends
 * differ, and are meant to: a memfd's pages move (status and the node
 * afterwards are the target), gmem's pages are guest memory and never move
 * (no page is reported moved, each is on its node still).  Both keep their
 * contents, and the kernel has nothing to warn about.
 */
TEST_F_TIMEOUT(migration, move_pages, 120)
{
	struct subject *s = &self->s;
	int nodes = num_nodes(), node[MIG_PAGES], target[MIG_PAGES], status[MIG_PAGES];
	long moved_ok = 0, reported = 0, stayed = 0, i;
	void *pages[MIG_PAGES];
	long ret;

	if (nodes < 2)
		SKIP(return, "needs two NUMA nodes, the system has %d", nodes);
	for (i = 0; i < MIG_PAGES; i++) {
		pages[i] = self->mem + i * page_size;
		node[i] = page_node(pages[i]);
		ASSERT_LE(0, node[i]) TH_LOG("page %ld: %s", i, strerror(-node[i]));
		target[i] = (node[i] + 1) % nodes;
		status[i] = INT_MIN;
	}
	ret = err_of(syscall(__NR_move_pages, 0, MIG_PAGES, pages, target, status,
			     MPOL_MF_MOVE));
	ASSERT_LE(0, ret) TH_LOG("move_pages: %s", strerror(-ret));
	for (i = 0; i < MIG_PAGES; i++) {
		int now = page_node(pages[i]);

		/* With ret > 0 (pages not moved) the status words are not all written. */
		reported += !ret && status[i] == target[i];
		moved_ok += !ret && status[i] == target[i] && now == target[i];
		stayed += now == node[i];
		if (i == 0)
			TH_LOG("move_pages: %ld; page 0: node %d, target %d, status %d, now %d",
			       ret, node[0], target[0], status[0], now);
	}
	if (s->backend == MEMFD) {
		EXPECT_EQ(MIG_PAGES, moved_ok) TH_LOG("memfd pages should have moved");
	} else {
		EXPECT_EQ(0, reported) TH_LOG("gmem pages reported moved");
		EXPECT_EQ(MIG_PAGES, stayed) TH_LOG("gmem pages should stay on their node");
	}
	check_pages(_metadata, s, 0, MIG_PAGES, SEED);
	expect_folios(_metadata, s, MIG_PAGES, "after move_pages");
	expect_no_splat(_metadata, s, false);
}

/* Compaction migrates what it can, on every node: the file is the same after it. */
TEST_F_TIMEOUT(migration, compact_memory, 300)
{
	struct subject *s = &self->s;
	int ret;

	if (access("/proc/sys/vm/compact_memory", W_OK))
		SKIP(return, "no CONFIG_COMPACTION (no vm.compact_memory)");
	ret = write_str("/proc/sys/vm/compact_memory", "1");
	ASSERT_EQ(0, ret) TH_LOG("compact_memory: %s", strerror(-ret));
	check_pages(_metadata, s, 0, MIG_PAGES, SEED);
	expect_folios(_metadata, s, MIG_PAGES, "after compaction");
	expect_no_splat(_metadata, s, false);
}

/* ---- A memory cgroup smaller than the file ---- */

/*
 * A child process enters a cgroup with memory.max = LIMIT_BYTES, pwrite()s
 * the first LIMIT_PREFIX bytes of a LIMIT_FILE file (the data that must
 * survive), then fills the rest by the test's method until that fails.  With
 * nothing reclaimable (the file's pages are not, and there is no swap) the
 * charge that crosses memory.max fails, and the child sees it:
 *
 *  - pwrite(), fallocate(), UFFDIO_COPY: ENOMEM.  The child sets its
 *    oom_score_adj to -1000, so that the memcg OOM killer finds no victim
 *    and the charge fails instead of killing it.  A fault could not fail
 *    that way (VM_FAULT_OOM is retried for ever), so every page the child
 *    touches once the limit is reached is made present before.
 *  - read faults: the OOM killer kills the child (SIGKILL; its oom_kill
 *    event is counted), or the fault raises SIGBUS.
 *
 * Then: the pages the child reported filled are intact, the file holds no
 * more than the limit, and memory.current is within memory.max.  The
 * backends differ in one thing not asserted: a memfd undoes the part of a
 * failed fallocate() it had allocated, gmem keeps it (both are allowed).
 *
 * Either way the kernel prints an OOM report (with the OOM killer's
 * "Call Trace:"; "Out of memory and no killable processes" for the ENOMEM
 * cases), on every kernel: it is the expected outcome here, not a splat.
 * The kernel log check of these tests ignores bare call traces and still
 * fails on any warning or bug; scripts/results.py however counts every
 * "Call Trace:" of the run's kernel log as a splat.
 */
#define LIMIT_BYTES		(8 << 20)
#define LIMIT_FILE		(32 << 20)
#define LIMIT_PREFIX		(2 << 20)

enum { CHILD_COMPLETED, CHILD_FAILED, CHILD_PREFIX_FAILED, CHILD_SETUP_FAILED };

/* Shared with the child: how far it got. */
struct limit_report {
	long done;		/* pages the method filled (after the prefix) */
	int err;		/* errno of the call that failed */
};

FIXTURE(memcg_limit)
{
	struct subject s;
	char cg[64];
	struct limit_report *r;
};

FIXTURE_VARIANT(memcg_limit)
{
	enum backend backend;
};

FIXTURE_VARIANT_ADD(memcg_limit, gmem) { .backend = GMEM };
FIXTURE_VARIANT_ADD(memcg_limit, memfd) { .backend = MEMFD };

FIXTURE_SETUP(memcg_limit)
{
	int ret;

	subject_init(&self->s);
	self->cg[0] = '\0';
	self->r = NULL;
	ret = cgroup2_setup();
	if (ret)
		SKIP(return, "no cgroup v2 memory controller: %s", strerror(-ret));
	subject_open(_metadata, &self->s, variant->backend, LIMIT_FILE / page_size);
	self->r = mmap(NULL, sizeof(*self->r), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->r);
	snprintf(self->cg, sizeof(self->cg), "gmem_limit_%d", getpid());
	ASSERT_EQ(0, cg_create(self->cg));
	ASSERT_EQ(0, cg_write_ll(self->cg, "memory.max", LIMIT_BYTES));
}

FIXTURE_TEARDOWN(memcg_limit)
{
	subject_close(&self->s);
	if (self->r && self->r != MAP_FAILED)
		munmap(self->r, sizeof(*self->r));
	if (self->cg[0])
		cg_remove(self->cg);
}

/* The child of a memcg_limit test: one of CHILD_*, or killed. */
static int limit_child(struct subject *s, const char *cg, enum fill how, struct limit_report *r)
{
	const long prefix = LIMIT_PREFIX / page_size;
	char *buf, *mem = NULL;
	int uffd = -1;
	long i;

	/*
	 * What it touches is made present (and copied on write) before the
	 * cgroup limits it: the process as it is now by mlockall(), before the
	 * file is mapped; errno (written first by the call that fails), the
	 * report and the buffer by writing them.  The stack and the code the
	 * failing call uses were used by the same calls for the pages before.
	 */
	if (mlockall(MCL_CURRENT))
		return CHILD_SETUP_FAILED;
	r->done = 0;
	r->err = 0;
	errno = 0;
	buf = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (buf == MAP_FAILED)
		return CHILD_SETUP_FAILED;
	if (how != FILL_READ_FAULT && write_str("/proc/self/oom_score_adj", "-1000"))
		return CHILD_SETUP_FAILED;
	if ((how == FILL_READ_FAULT || how == FILL_UFFD_COPY) &&
	    map_gmem(s->fd, s->pages * page_size, MAP_SHARED, &mem))
		return CHILD_SETUP_FAILED;
	if (how == FILL_UFFD_COPY) {
		uffd = uffd_open();
		if (uffd < 0 || uffd_register(uffd, mem, s->pages * page_size, MODE_MISSING, NULL))
			return CHILD_SETUP_FAILED;
	}
	if (cg_enter(cg))
		return CHILD_SETUP_FAILED;

	for (i = 0; i < prefix; i++) {
		fill_page_words(buf, page_size, SEED, i);
		if (pwrite(s->fd, buf, page_size, i * page_size) != page_size) {
			r->err = errno;
			return CHILD_PREFIX_FAILED;
		}
	}
	if (how == FILL_FALLOCATE) {
		if (fallocate(s->fd, 0, 0, s->pages * page_size)) {
			r->err = errno;
			return CHILD_FAILED;
		}
		return CHILD_COMPLETED;
	}
	for (i = prefix; i < s->pages; i++) {
		struct uffdio_copy copy = {
			.dst = (unsigned long)(mem + i * page_size),
			.src = (unsigned long)buf, .len = page_size,
		};
		int ret = 0;

		fill_page_words(buf, page_size, fill_seed(how), i);
		if (how == FILL_PWRITE)
			ret = pwrite(s->fd, buf, page_size, i * page_size) == page_size ? 0 :
			      errno ? -errno : -EIO;
		else if (how == FILL_UFFD_COPY)
			ret = uffd_ioctl_retry(uffd, UFFDIO_COPY, &copy, NULL);
		else
			(void)PEEK(mem + i * page_size);
		if (ret) {
			r->err = -ret;
			return CHILD_FAILED;
		}
		r->done++;
	}
	return CHILD_COMPLETED;
}

static void run_limit(struct __test_metadata *_metadata, struct _test_data_memcg_limit *self,
		      enum fill how)
{
	struct subject *s = &self->s;
	const long prefix = LIMIT_PREFIX / page_size;
	long long oom0, current, folios;
	int status;
	pid_t pid;

	oom0 = cg_event(self->cg, "oom_kill");
	ASSERT_LE(0, oom0);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(limit_child(s, self->cg, how, self->r));
	ASSERT_EQ(0, wait_child_timeout(pid, CHILD_TIMEOUT_MS, &status))
		TH_LOG("the child did not finish: %ld pages after the prefix", self->r->done);
	TH_LOG("child: %s %d, %ld pages after the prefix, %s",
	       WIFEXITED(status) ? "exit" : "signal",
	       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
	       self->r->done, strerror(self->r->err));

	ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SETUP_FAILED)
		TH_LOG("the child's set-up failed");
	ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_PREFIX_FAILED)
		TH_LOG("the prefix, within the limit, failed: %s", strerror(self->r->err));
	EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_COMPLETED)
		TH_LOG("a %d MiB file filled in a %d MiB cgroup", LIMIT_FILE >> 20,
		       LIMIT_BYTES >> 20);
	if (how == FILL_READ_FAULT) {
		EXPECT_TRUE(WIFSIGNALED(status) &&
			    (WTERMSIG(status) == SIGKILL || WTERMSIG(status) == SIGBUS));
		if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			EXPECT_LT(oom0, cg_event(self->cg, "oom_kill")) TH_LOG("SIGKILL, not the OOM killer's");
	} else {
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == CHILD_FAILED);
		EXPECT_EQ(ENOMEM, self->r->err) TH_LOG("%s", strerror(self->r->err));
	}

	EXPECT_GE(LIMIT_BYTES / page_size, prefix + self->r->done)
		TH_LOG("more pages filled than the limit holds");
	current = cg_current(self->cg);
	ASSERT_LE(0, current);
	EXPECT_GE(LIMIT_BYTES, current) TH_LOG("memory.current over memory.max");
	if (s->backend == GMEM) {
		folios = gmem_counter("folios") - s->folios0;
		EXPECT_LE(prefix + self->r->done, folios);
		EXPECT_GE(LIMIT_BYTES / page_size, folios);
	}
	check_pages(_metadata, s, 0, prefix, SEED);
	check_pages(_metadata, s, prefix, self->r->done, fill_seed(how));
	expect_no_splat(_metadata, s, true);
}

TEST_F_TIMEOUT(memcg_limit, pwrite, 120)
{
	run_limit(_metadata, self, FILL_PWRITE);
}

TEST_F_TIMEOUT(memcg_limit, fallocate, 120)
{
	run_limit(_metadata, self, FILL_FALLOCATE);
}

TEST_F_TIMEOUT(memcg_limit, read_fault, 120)
{
	run_limit(_metadata, self, FILL_READ_FAULT);
}

TEST_F_TIMEOUT(memcg_limit, uffd_copy, 120)
{
	run_limit(_metadata, self, FILL_UFFD_COPY);
}

/* ---- Whose memory cgroup pays for a remote fault ---- */

/*
 * A page faulted in on behalf of another process is charged to the memory
 * cgroup of the mm that maps it (the VMA's mm: shmem's fault_mm), not to the
 * task that happens to cause the fault.  A child in cgroup "owner" maps the
 * file; the test process, in cgroup "remote", writes CHARGE_BYTES into the
 * child's mapping with process_vm_writev(), whose GUP faults the pages in
 * the child's mm.  The owner's memory.current must grow by the file's pages,
 * the remote's must not; the data must be in the file.
 */
#define CHARGE_BYTES		(8 << 20)

FIXTURE(memcg_charge)
{
	struct subject s;
	char owner[64];
	char remote[64];
	pid_t child;
};

FIXTURE_VARIANT(memcg_charge)
{
	enum backend backend;
};

FIXTURE_VARIANT_ADD(memcg_charge, gmem) { .backend = GMEM };
FIXTURE_VARIANT_ADD(memcg_charge, memfd) { .backend = MEMFD };

FIXTURE_SETUP(memcg_charge)
{
	int ret;

	subject_init(&self->s);
	self->owner[0] = self->remote[0] = '\0';
	self->child = 0;
	ret = cgroup2_setup();
	if (ret)
		SKIP(return, "no cgroup v2 memory controller: %s", strerror(-ret));
	subject_open(_metadata, &self->s, variant->backend, CHARGE_BYTES / page_size);
	snprintf(self->owner, sizeof(self->owner), "gmem_owner_%d", getpid());
	snprintf(self->remote, sizeof(self->remote), "gmem_remote_%d", getpid());
	ASSERT_EQ(0, cg_create(self->owner));
	ASSERT_EQ(0, cg_create(self->remote));
}

FIXTURE_TEARDOWN(memcg_charge)
{
	int status;

	if (self->child > 0) {
		kill(self->child, SIGKILL);
		waitpid(self->child, &status, 0);
	}
	subject_close(&self->s);
	cg_enter("");
	if (self->owner[0])
		cg_remove(self->owner);
	if (self->remote[0])
		cg_remove(self->remote);
}

/* The child: enter @cg, map @fd, report the address on @out, wait to be killed. */
static int charge_child(const char *cg, int fd, int out)
{
	char *mem;

	if (cg_enter(cg) || map_gmem(fd, CHARGE_BYTES, MAP_SHARED, &mem))
		return 1;
	if (write(out, &mem, sizeof(mem)) != sizeof(mem))
		return 1;
	for (;;)
		pause();
}

TEST_F_TIMEOUT(memcg_charge, remote_fault, 120)
{
	long long owner0, remote0, owner1, remote1;
	struct iovec local, remote;
	char *mem = NULL, *buf;
	int pipefd[2];
	long i;

	buf = malloc(CHARGE_BYTES);
	ASSERT_TRUE(buf != NULL);
	for (i = 0; i < self->s.pages; i++)
		fill_page_words(buf + i * page_size, page_size, SEED, i);
	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	self->child = fork();
	ASSERT_LE(0, self->child);
	if (!self->child)
		_exit(charge_child(self->owner, self->s.fd, pipefd[1]));
	close(pipefd[1]);
	ASSERT_EQ((ssize_t)sizeof(mem), read(pipefd[0], &mem, sizeof(mem)))
		TH_LOG("the child did not map the file");
	close(pipefd[0]);

	/* Everything the test process allocates from here on is charged to "remote". */
	ASSERT_EQ(0, cg_enter(self->remote));
	owner0 = cg_current(self->owner);
	remote0 = cg_current(self->remote);
	ASSERT_LE(0, owner0);
	ASSERT_LE(0, remote0);
	local.iov_base = buf;
	local.iov_len = CHARGE_BYTES;
	remote.iov_base = mem;
	remote.iov_len = CHARGE_BYTES;
	ASSERT_EQ(CHARGE_BYTES, err_of(process_vm_writev(self->child, &local, 1, &remote, 1, 0)))
		TH_LOG("process_vm_writev: %s", strerror(errno));
	owner1 = cg_current(self->owner);
	remote1 = cg_current(self->remote);
	ASSERT_EQ(0, cg_enter(""));
	TH_LOG("owner +%lld KiB, remote +%lld KiB", (owner1 - owner0) >> 10,
	       (remote1 - remote0) >> 10);
	EXPECT_LE(CHARGE_BYTES, owner1 - owner0) TH_LOG("the owner was not charged the file");
	EXPECT_GT(CHARGE_BYTES / 4, remote1 - remote0) TH_LOG("the remote task was charged");

	expect_folios(_metadata, &self->s, self->s.pages, "after the remote writes");
	check_pages(_metadata, &self->s, 0, self->s.pages, SEED);
	free(buf);
}

TEST_HARNESS_MAIN
