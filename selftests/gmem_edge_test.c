// SPDX-License-Identifier: GPL-2.0
/*
 * Edge states of guest memory: gmem_uffd files put where the other tests
 * never put them.  The fixture "edge" runs each test on a guest memory file
 * (variant "gmem") and on a sealed memfd (variant "memfd", shmem) as the
 * reference; where the two differ, the variant says how and the comment
 * at FIXTURE_VARIANT_ADD why.
 *
 *  - Signals and userfaults: a signal (SIGUSR1, handler without
 *    SA_RESTART) to a thread asleep in a MISSING fault runs the handler,
 *    then the access is retried: a new MISSING event, the thread asleep
 *    again, and UFFDIO_COPY completes it with the data
 *    (uffd_signal_retries_fault).  SIGKILL ends a child asleep in the
 *    userfault of its own access, or of MADV_POPULATE_READ (a killable
 *    wait in the kernel), within KILL_TIMEOUT_MS; the page it waited for
 *    was never created and the file works (uffd_sigkill_*).
 *  - Signals and long calls: pwrite() whose source is a registered MISSING
 *    range sleeps in the source's fault, a fault of the kernel's, which
 *    only a fatal signal ends (fault_signal_pending()): after SIGUSR1 the
 *    fault is retried, each retry raising a new event at once, until it is
 *    served; then the write completes in full and the handler runs
 *    (pwrite_signal_retries_source_fault).  SIGKILL ends a child whose
 *    pwrite() sleeps there; the file holds the pages written before, and
 *    nothing else changed (pwrite_sigkill_unserved_source).  A 256 MiB
 *    fallocate(), signalled once it has begun: gmem stops for any signal
 *    (EINTR), shmem only for a fatal one; stopped, gmem keeps the pages
 *    allocated so far (zeros, the first ones of the range) and shmem
 *    removes them; the file works afterwards (fallocate_signal, SIGUSR1 to
 *    a thread; fallocate_sigkill, SIGKILL to a child).
 *  - A fault pending while its range changes (pending_fault_*): munmap()
 *    of the range or of its middle, mremap() moving, shrinking, growing in
 *    place and with MREMAP_DONTUNMAP, MADV_DONTNEED and MADV_REMOVE, with
 *    UFFD_FEATURE_EVENT_UNMAP/REMAP/REMOVE (and a munmap() without them):
 *    the event with its range (a move raises two: REMAP, then UNMAP of the
 *    source), and the faulting thread left asleep by the change.  Where
 *    the page is no longer mapped, UFFDIO_COPY to it fails with ENOENT and
 *    creates no page, and UFFDIO_WAKE lets the retried access die of
 *    SIGSEGV; where it still is (registered), UFFDIO_COPY completes the
 *    fault.  What stays mapped still works, and the file keeps its pages.
 *  - fork and population: MADV_DONTFORK (the child's access is SIGSEGV),
 *    MADV_WIPEONFORK refused with EINVAL on a shared mapping, a plain fork
 *    sharing the pages both ways; MAP_POPULATE allocates zero pages;
 *    MADV_POPULATE_READ/WRITE, mlock() and mlockall() of a MISSING range
 *    raise one event per page (served by a handler thread; WRITE-flagged
 *    for MADV_POPULATE_WRITE only) and succeed.
 *  - Thousands of files: files of one written page each are made until
 *    EMFILE (RLIMIT_NOFILE MANY_FILES); each keeps its own page; the debugfs
 *    counters and meminfo (Unevictable for gmem, Shmem for memfd) rise by
 *    as many pages, and are back once the files are closed.
 *  - Errnos: fallocate() whose offset + len overflows fails with EFBIG
 *    (the VFS's check, before the file sees it); UFFDIO_COPY, ZEROPAGE,
 *    CONTINUE and POISON of a page of the mapping past EOF fail (EFAULT;
 *    shmem: ENOMEM for COPY and ZEROPAGE) and leave nothing there.
 *  - unpriv (gmem only): the device node is root's (0600); a child that
 *    dropped to uid NOBODY gets EACCES opening it, and after chmod 0666
 *    (undone at once, and by the teardown) creates and uses files,
 *    userfaultfd included (UFFD_USER_MODE_ONLY); a device fd and a file
 *    that root opened and the child inherited keep working after the drop.
 *
 * Not tested: ENOENT from KVM_CREATE_GUEST_MEMFD while the module is being
 * unloaded (the ioctl would have to race with delete_module()); PROT_EXEC
 * (gmem_api_test.mmap_exec_eperm).
 *
 * A thread or child is known to be asleep in a userfault when its
 * /proc/TID/wchan shows handle_userfault (wait_in_userfault(), a bounded
 * poll); a fallocate() is known to have begun when the file holds a page
 * (a bounded poll too: the call offers nothing else to wait on).
 * Every wait is bounded.  No ASSERT runs in a forked child or a helper
 * thread (it would run the teardown there): children report a step number
 * in their exit code, threads through their structure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP	4
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ	22
#define MADV_POPULATE_WRITE	23
#endif

/* Bounds of every wait. */
#define EVENT_TIMEOUT_MS	5000
#define BLOCKED_TIMEOUT_MS	10000
#define CHILD_TIMEOUT_MS	20000
#define JOIN_TIMEOUT_S		10
/* A child asleep in a userfault is reaped this soon after SIGKILL, or fails. */
#define KILL_TIMEOUT_MS		5000

#define NR_PAT			4	/* pages of pattern in the fixture */
#define NOBODY			65534

static long page_size;

static void __attribute__((constructor)) init_page_size(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

static void *page_of(const struct uffd_msg *msg)
{
	return (void *)(unsigned long)(msg->arg.pagefault.address & ~((__u64)page_size - 1));
}

static long long file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -errno : st.st_size;
}

/*
 * How many of the @pages pages mapped at @mem the file holds up to date
 * (mincore()), or -errno; *@first_absent, unless NULL, gets the first page
 * it does not hold (@pages if none).
 */
static long resident_pages(char *mem, long pages, long *first_absent)
{
	unsigned char *vec = malloc(pages);
	long i, n = 0;

	if (!vec)
		return -ENOMEM;
	if (first_absent)
		*first_absent = pages;
	if (mincore(mem, pages * page_size, vec)) {
		n = -errno;
		goto out;
	}
	for (i = 0; i < pages; i++) {
		if (vec[i] & 1)
			n++;
		else if (first_absent && *first_absent == pages)
			*first_absent = i;
	}
out:
	free(vec);
	return n;
}

/* ---- userfaultfd ---- */

/*
 * Fill the page at @dst with @cmd: UFFDIO_COPY of @src, or UFFDIO_ZEROPAGE,
 * UFFDIO_CONTINUE or UFFDIO_POISON (one layout for the three), retried
 * while the mm is changing (EAGAIN): 0 or -errno; *@res, unless NULL, gets
 * the ioctl's own result field.
 */
static int fill_page(int uffd, unsigned long cmd, void *dst, const void *src, __s64 *res)
{
	struct uffdio_copy copy = {
		.dst = (unsigned long)dst,
		.src = (unsigned long)src,
		.len = page_size,
	};
	struct uffdio_continue range = {
		.range = { .start = (unsigned long)dst, .len = page_size },
	};
	int ret;

	static_assert(sizeof(struct uffdio_zeropage) == sizeof(range), "layout");
	static_assert(sizeof(struct uffdio_poison) == sizeof(range), "layout");
	if (cmd == UFFDIO_COPY) {
		ret = uffd_ioctl_retry(uffd, cmd, &copy, NULL);
		if (res)
			*res = copy.copy;
	} else {
		ret = uffd_ioctl_retry(uffd, cmd, &range, NULL);
		if (res)
			*res = range.mapped;
	}
	return ret;
}

static int copy_page(int uffd, void *dst, const void *src)
{
	return fill_page(uffd, UFFDIO_COPY, dst, src, NULL);
}

/* No message is waiting on @uffd. */
static bool no_event(int uffd)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 0;
}

/* Read the next message of @uffd: a MISSING fault on @page. */
static void expect_fault(struct __test_metadata *_metadata, int uffd, char *page,
			 struct uffd_msg *msg)
{
	int ret = uffd_read_msg(uffd, msg, EVENT_TIMEOUT_MS);

	ASSERT_EQ(0, ret) TH_LOG("no fault event: %s", strerror(-ret));
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg->event);
	EXPECT_EQ(page, page_of(msg));
	EXPECT_EQ(0ULL, msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR);
}

/*
 * A handler thread: reads @uffd until stopped.  With @serve it fills every
 * MISSING fault with UFFDIO_COPY of the same page of @src (page i of the
 * mapping at @base from src + i pages); without, a fault is an error.
 * Other events are recorded in @events.
 */
#define MAX_EVENTS	8

struct server {
	int uffd;
	bool serve;
	char *base;
	const char *src;
	/* Results */
	int faults;
	int write_faults;
	int nr_events;
	struct uffd_msg events[MAX_EVENTS];
	int err;		/* 0, or the first error */
	int stop;
	pthread_t thread;
};

static void *server_fn(void *arg)
{
	struct server *s = arg;
	struct uffd_msg msg;
	char *page;
	int ret;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		ret = uffd_read_msg(s->uffd, &msg, 50);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret) {
			s->err = ret;
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			if (s->nr_events < MAX_EVENTS)
				s->events[s->nr_events] = msg;
			s->nr_events++;
			continue;
		}
		if (!s->serve) {
			s->err = -EPROTO;
			break;
		}
		s->faults++;
		if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
			s->write_faults++;
		page = page_of(&msg);
		ret = copy_page(s->uffd, page, s->src + (page - s->base));
		if (ret == -EEXIST)
			ret = uffd_wake(s->uffd, page);
		if (ret) {
			s->err = ret;
			break;
		}
	}
	return NULL;
}

static int server_start(struct server *s)
{
	s->faults = 0;
	s->write_faults = 0;
	s->nr_events = 0;
	s->err = 0;
	s->stop = 0;
	return -pthread_create(&s->thread, NULL, server_fn, s);
}

/* 0, or ETIMEDOUT if the thread did not stop. */
static int server_stop(struct server *s)
{
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	return join_timeout(s->thread, JOIN_TIMEOUT_S);
}

/*
 * Wait until the thread that publishes its tid in *@tid sleeps in a
 * userfault, *@done still unset: 0, -ETIMEDOUT, or -EBUSY if it is done.
 */
static int wait_asleep(int *tid, int *done)
{
	uint64_t deadline = now_ms() + BLOCKED_TIMEOUT_MS;
	int id;

	while (!(id = __atomic_load_n(tid, __ATOMIC_ACQUIRE))) {
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
	if (wait_in_userfault(id, BLOCKED_TIMEOUT_MS))
		return -ETIMEDOUT;
	return __atomic_load_n(done, __ATOMIC_ACQUIRE) ? -EBUSY : 0;
}

/* ---- Signals ---- */

/* SIGUSR1 is counted, by a handler without SA_RESTART. */
static int usr1_seen;

static void on_usr1(int sig)
{
	__atomic_add_fetch(&usr1_seen, 1, __ATOMIC_SEQ_CST);
}

static int catch_usr1(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };

	sigemptyset(&sa.sa_mask);
	__atomic_store_n(&usr1_seen, 0, __ATOMIC_SEQ_CST);
	return sigaction(SIGUSR1, &sa, NULL) ? -errno : 0;
}

static int usr1_count(void)
{
	return __atomic_load_n(&usr1_seen, __ATOMIC_SEQ_CST);
}

/* A thread making one pwrite() or fallocate() (mode 0) call. */
enum bg_op { BG_PWRITE, BG_FALLOCATE };

struct bg_call {
	enum bg_op op;
	int fd;
	const char *buf;
	long len;
	long off;
	/* Results */
	long ret;
	int err;
	int tid;
	int done;
	pthread_t thread;
};

static void *bg_call_fn(void *arg)
{
	struct bg_call *c = arg;

	__atomic_store_n(&c->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (c->op == BG_PWRITE)
		c->ret = pwrite(c->fd, c->buf, c->len, c->off);
	else
		c->ret = fallocate(c->fd, 0, c->off, c->len);
	c->err = c->ret < 0 ? errno : 0;
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int bg_start(struct bg_call *c)
{
	c->ret = 0;
	c->err = 0;
	c->tid = 0;
	c->done = 0;
	return -pthread_create(&c->thread, NULL, bg_call_fn, c);
}

/* ---- The fixture ---- */

FIXTURE(edge) {
	int dev;		/* /dev/guest_memfd for the gmem variant, else -1 */
	char *pat[NR_PAT];	/* a page of pattern each, page aligned */
	char *buf;		/* a page to read into */
};

FIXTURE_VARIANT(edge) {
	bool gmem;
	/* The errno of UFFDIO_COPY and UFFDIO_ZEROPAGE to a page past EOF. */
	int fill_past_eof;
	/* fallocate() stops for any signal (else for fatal ones only). */
	bool falloc_intr;
	/* A fallocate() that a signal ends keeps the pages it allocated. */
	bool falloc_keeps;
};

/* Documentation/guest_memfd.rst; fallocate() as KVM's kvm_gmem_allocate(). */
FIXTURE_VARIANT_ADD(edge, gmem) {
	.gmem = true,
	.fill_past_eof = EFAULT,
	.falloc_intr = true,
	.falloc_keeps = true,
};

/*
 * shmem, where it differs: its uffd alloc_folio() (shmem_mfill_folio_alloc())
 * returns NULL for an offset past EOF, which core mm reports as ENOMEM;
 * shmem_fallocate() stops only for a fatal signal ("periodic timers may
 * result in fallocate constantly restarting"), and then removes the pages
 * it allocated.
 */
FIXTURE_VARIANT_ADD(edge, memfd) {
	.gmem = false,
	.fill_past_eof = ENOMEM,
	.falloc_intr = false,
	.falloc_keeps = false,
};

FIXTURE_SETUP(edge)
{
	char *pages;
	int i;

	self->dev = -1;
	pages = mmap(NULL, (NR_PAT + 1) * page_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, pages);
	for (i = 0; i < NR_PAT; i++) {
		self->pat[i] = pages + i * page_size;
		fill(self->pat[i], page_size, 0x41 + 0x10 * i);
	}
	self->buf = pages + NR_PAT * page_size;
	if (!variant->gmem)
		return;
	self->dev = gmem_open_dev();
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s (is %s loaded?)", GMEM_DEV,
				       strerror(-self->dev), GMEM_MODULE);
}

FIXTURE_TEARDOWN(edge)
{
	if (self->dev >= 0)
		close(self->dev);
	munmap(self->pat[0], (NR_PAT + 1) * page_size);
}

/* A file of the variant's kind, @size bytes: its fd, or -errno. */
static int new_file(struct _test_data_edge *self, const struct _fixture_variant_edge *variant, long size)
{
	if (variant->gmem)
		return create_gmem(self->dev, size, GMEM_SHARED);
	return create_sealed_memfd("gmem_edge", size);
}

/* gmem's debugfs counter @name, or -1 (memfd, or no debugfs). */
static long long counter(const struct _fixture_variant_edge *variant, const char *name)
{
	return variant->gmem ? gmem_counter(name) : -1;
}

/* A file of @file_pages pages mapped over @map_pages, registered for @mode unless 0. */
struct area {
	int fd;
	int uffd;
	char *mem;
	long len;
};

static void area_setup(struct __test_metadata *_metadata, struct _test_data_edge *self,
		       const struct _fixture_variant_edge *variant, struct area *a,
		       long file_pages, long map_pages, __u64 mode)
{
	a->uffd = -1;
	a->len = map_pages * page_size;
	a->fd = new_file(self, variant, file_pages * page_size);
	ASSERT_LE(0, a->fd) TH_LOG("new file: %s", strerror(-a->fd));
	ASSERT_EQ(0, map_gmem(a->fd, a->len, MAP_SHARED, &a->mem));
	if (!mode)
		return;
	a->uffd = uffd_open();
	ASSERT_LE(0, a->uffd) TH_LOG("userfaultfd: %s", strerror(-a->uffd));
	ASSERT_EQ(0, uffd_register(a->uffd, a->mem, a->len, mode, NULL));
}

static void area_put(struct area *a)
{
	if (a->uffd >= 0)
		close(a->uffd);
	munmap(a->mem, a->len);
	close(a->fd);
}

/* ---- A signal to a thread or a child asleep in a userfault ---- */

/*
 * SIGUSR1 to a thread asleep in a MISSING fault: the handler runs, the
 * access is retried (a second MISSING event for the same page, the thread
 * asleep again, not killed), and UFFDIO_COPY completes it with the data.
 */
TEST_F(edge, uffd_signal_retries_fault)
{
	uint64_t deadline;
	struct uffd_msg msg;
	struct toucher t;
	struct area a;
	char *page;

	area_setup(_metadata, self, variant, &a, 2, 2, MODE_MISSING);
	page = a.mem + page_size;
	ASSERT_EQ(0, catch_usr1());
	ASSERT_EQ(0, toucher_start(&t, TOUCH_SIGBUS_SEGV, page + 64, false, 0));
	expect_fault(_metadata, a.uffd, page, &msg);
	ASSERT_EQ(0, wait_asleep(&t.tid, &t.done)) TH_LOG("the thread is not asleep in its fault");

	ASSERT_EQ(0, pthread_kill(t.thread, SIGUSR1));
	deadline = now_ms() + BLOCKED_TIMEOUT_MS;
	while (!usr1_count() && now_ms() < deadline)
		usleep(1000);
	ASSERT_EQ(1, usr1_count()) TH_LOG("the signal handler did not run");
	expect_fault(_metadata, a.uffd, page, &msg);
	ASSERT_EQ(0, wait_asleep(&t.tid, &t.done)) TH_LOG("the retried access is not asleep");
	EXPECT_TRUE(no_event(a.uffd));

	ASSERT_EQ(0, copy_page(a.uffd, page, self->pat[0]));
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S))
		TH_LOG("UFFDIO_COPY did not wake the thread");
	EXPECT_EQ(0, t.sig);
	EXPECT_EQ(0, memcmp(self->pat[0], t.seen, page_size));
	EXPECT_EQ(1, usr1_count());
	EXPECT_TRUE(no_event(a.uffd));
	ASSERT_EQ(0, read_page(a.fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat[0], self->buf, page_size));
	toucher_free(&t);
	area_put(&a);
}

/*
 * SIGKILL child @pid (asleep in the kernel): it must be reaped within
 * KILL_TIMEOUT_MS, killed by the signal; or, if @may_finish, have exited 0
 * before the signal came, which is returned as true.
 */
static bool sigkill_child(struct __test_metadata *_metadata, pid_t pid, bool may_finish)
{
	long long elapsed;
	int status = 0;
	uint64_t t0;

	t0 = now_ms();
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(0, wait_child_timeout(pid, CHILD_TIMEOUT_MS, &status));
	elapsed = now_ms() - t0;
	EXPECT_GT(KILL_TIMEOUT_MS, elapsed) TH_LOG("reaped %lld ms after SIGKILL", elapsed);
	if (may_finish && WIFEXITED(status) && !WEXITSTATUS(status))
		return true;
	EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		TH_LOG("status %#x", status);
	return false;
}

/*
 * In a child: register @page for MISSING with a userfaultfd of its own and
 * read it (@populate: MADV_POPULATE_READ it), which sleeps for good, as
 * nobody serves the fault.  Returns only if something failed: the step.
 */
static int child_block_in_userfault(char *page, bool populate)
{
	int uffd = uffd_open();

	if (uffd < 0)
		return 10;
	if (uffd_register(uffd, page, page_size, MODE_MISSING, NULL))
		return 11;
	if (populate) {
		if (madvise(page, page_size, MADV_POPULATE_READ))
			return 12;
	} else {
		(void)__atomic_load_n(page, __ATOMIC_RELAXED);
	}
	return 13;
}

/*
 * SIGKILL to a child asleep in a userfault (of its own access, or of
 * MADV_POPULATE_READ: a killable wait in GUP): it is gone within
 * KILL_TIMEOUT_MS, killed by the signal; the page it waited for was never
 * created; the file works.
 */
static void sigkill_flow(struct __test_metadata *_metadata, struct _test_data_edge *self,
			 const struct _fixture_variant_edge *variant, bool populate)
{
	int status = 0, ret;
	long long folios;
	struct area a;
	pid_t pid;

	area_setup(_metadata, self, variant, &a, 2, 2, 0);
	folios = counter(variant, "folios");
	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(child_block_in_userfault(a.mem + page_size, populate));
	ret = wait_in_userfault(pid, BLOCKED_TIMEOUT_MS);
	if (ret)
		wait_child_timeout(pid, 0, &status);
	ASSERT_EQ(0, ret) TH_LOG("the child is not asleep in a userfault (status %#x)", status);
	sigkill_child(_metadata, pid, false);

	EXPECT_EQ(0, resident_pages(a.mem + page_size, 1, NULL));
	if (folios >= 0)
		EXPECT_EQ(folios, gmem_counter("folios"));
	ASSERT_EQ(0, write_page(a.fd, self->pat[0], page_size));
	EXPECT_EQ(0, memcmp(self->pat[0], a.mem + page_size, page_size));
	ASSERT_EQ(0, read_page(a.fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat[0], self->buf, page_size));
	area_put(&a);
}

TEST_F(edge, uffd_sigkill_blocked_fault)
{
	sigkill_flow(_metadata, self, variant, false);
}

TEST_F(edge, uffd_sigkill_blocked_populate)
{
	sigkill_flow(_metadata, self, variant, true);
}

/* ---- A signal to a long pwrite() or fallocate() ---- */

/*
 * The pwrite() tests: PW_PAGES pages written at offset 0 from a source of
 * which only the first PW_PRESENT pages are present, the rest registered
 * MISSING.  The write sleeps in the fault of source page PW_PRESENT, a fault
 * of the kernel's (fault_in_readable(), so without the WRITE flag).  Page i
 * of the source is, or gets, page i of pw_data(); pages PW_PRESENT and
 * PW_PRESENT + 1 of the file hold pattern B before.
 */
#define PW_PAGES	64
#define PW_PRESENT	4

static void pw_data(char *buf, long page)
{
	fill(buf, page_size, 0x70 + page);
}

/* The source: its address, and its userfaultfd in *@uffd; NULL on failure. */
static char *pw_source(int *uffd)
{
	char *src;
	long i;

	src = mmap(NULL, PW_PAGES * page_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED)
		return NULL;
	for (i = 0; i < PW_PRESENT; i++)
		pw_data(src + i * page_size, i);
	*uffd = uffd_open();
	if (*uffd < 0 || uffd_register(*uffd, src, PW_PAGES * page_size, MODE_MISSING, NULL))
		return NULL;
	return src;
}

static void pw_target(struct __test_metadata *_metadata, struct _test_data_edge *self,
		      const struct _fixture_variant_edge *variant, struct area *a)
{
	area_setup(_metadata, self, variant, a, PW_PAGES, PW_PAGES, 0);
	ASSERT_EQ(0, write_page(a->fd, self->pat[1], PW_PRESENT * page_size));
	ASSERT_EQ(0, write_page(a->fd, self->pat[1], (PW_PRESENT + 1) * page_size));
}

/*
 * A non-fatal signal does not end the pwrite(): a fault taken in the kernel
 * gives up only for a fatal signal (fault_signal_pending()), so it is
 * retried, and with the signal pending each retry raises a new event at
 * once instead of sleeping.  Served, the write completes in full, and the
 * handler runs after it.
 */
TEST_F(edge, pwrite_signal_retries_source_fault)
{
	struct bg_call c = { .op = BG_PWRITE, .len = PW_PAGES * page_size };
	struct server s = { .serve = true };
	struct uffd_msg msg;
	long long folios;
	struct area a;
	char *src, *data;
	long i;

	pw_target(_metadata, self, variant, &a);
	folios = counter(variant, "folios");
	data = malloc(PW_PAGES * page_size);
	ASSERT_NE(NULL, data);
	for (i = 0; i < PW_PAGES; i++)
		pw_data(data + i * page_size, i);
	src = pw_source(&s.uffd);
	ASSERT_NE(NULL, src);
	ASSERT_EQ(0, catch_usr1());
	c.fd = a.fd;
	c.buf = src;
	ASSERT_EQ(0, bg_start(&c));
	expect_fault(_metadata, s.uffd, src + PW_PRESENT * page_size, &msg);
	EXPECT_EQ(0ULL, msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
	ASSERT_EQ(0, wait_asleep(&c.tid, &c.done)) TH_LOG("pwrite() is not asleep in the fault");

	ASSERT_EQ(0, pthread_kill(c.thread, SIGUSR1));
	expect_fault(_metadata, s.uffd, src + PW_PRESENT * page_size, &msg);
	EXPECT_FALSE(__atomic_load_n(&c.done, __ATOMIC_ACQUIRE))
		TH_LOG("pwrite: %ld (%s)", c.ret, strerror(c.err));
	EXPECT_EQ(0, usr1_count());

	s.base = src;
	s.src = data;
	ASSERT_EQ(0, server_start(&s));
	ASSERT_EQ(0, join_timeout(c.thread, JOIN_TIMEOUT_S)) TH_LOG("served, pwrite() still waits");
	ASSERT_EQ(0, server_stop(&s));
	EXPECT_EQ(0, s.err) TH_LOG("handler: %s", strerror(-s.err));
	EXPECT_LE(PW_PAGES - PW_PRESENT, s.faults);
	EXPECT_EQ(PW_PAGES * page_size, c.ret) TH_LOG("pwrite: %ld (%s)", c.ret, strerror(c.err));
	EXPECT_EQ(1, usr1_count());
	for (i = 0; i < PW_PAGES; i++) {
		ASSERT_EQ(0, read_page(a.fd, self->buf, i * page_size));
		EXPECT_EQ(0, memcmp(data + i * page_size, self->buf, page_size))
			TH_LOG("page %ld", i);
	}
	if (folios >= 0)
		EXPECT_EQ(folios + PW_PAGES - 2, gmem_counter("folios"));
	close(s.uffd);
	munmap(src, PW_PAGES * page_size);
	free(data);
	area_put(&a);
}

/* In a child: the pwrite() of pwrite_sigkill_unserved_source; the step if it returns. */
static int child_pwrite_unserved(int fd)
{
	char *src;
	int uffd;

	src = pw_source(&uffd);
	if (!src)
		return 10;
	pwrite(fd, src, PW_PAGES * page_size, 0);
	return 11;
}

/*
 * SIGKILL to a child whose pwrite() sleeps in the source's fault: it is gone
 * within KILL_TIMEOUT_MS; the file holds the pages written before, and
 * nothing else changed (pages PW_PRESENT on still pattern B, or absent).
 */
TEST_F(edge, pwrite_sigkill_unserved_source)
{
	long first_absent = 0, i;
	int status = 0, ret;
	long long folios;
	struct area a;
	char *want;
	pid_t pid;

	pw_target(_metadata, self, variant, &a);
	folios = counter(variant, "folios");
	fflush(NULL);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(child_pwrite_unserved(a.fd));
	ret = wait_in_userfault(pid, BLOCKED_TIMEOUT_MS);
	if (ret)
		wait_child_timeout(pid, 0, &status);
	ASSERT_EQ(0, ret) TH_LOG("the child is not asleep in a userfault (status %#x)", status);
	sigkill_child(_metadata, pid, false);

	EXPECT_EQ(PW_PRESENT + 2, resident_pages(a.mem, PW_PAGES, &first_absent));
	EXPECT_EQ(PW_PRESENT + 2, first_absent);
	want = malloc(page_size);
	ASSERT_NE(NULL, want);
	for (i = 0; i < PW_PRESENT + 2; i++) {
		if (i < PW_PRESENT)
			pw_data(want, i);
		else
			memcpy(want, self->pat[1], page_size);
		ASSERT_EQ(0, read_page(a.fd, self->buf, i * page_size));
		EXPECT_EQ(0, memcmp(want, self->buf, page_size)) TH_LOG("page %ld", i);
	}
	free(want);
	if (folios >= 0)
		EXPECT_EQ(folios + PW_PRESENT, gmem_counter("folios"));
	area_put(&a);
}

#define FALLOC_SIZE	(64L << 20)
/* How many of the pages a signalled fallocate() kept are read back (and the last). */
#define FALLOC_CHECKED	256

/*
 * How many pages the file holds: for gmem, those of the first @pages pages
 * of its mapping @mem that mincore() reports (every page gmem allocates is
 * up to date), *@first_absent the first it does not hold; for shmem its
 * block count, as mincore() leaves out the pages that fallocate() allocated
 * and nothing wrote yet (not up to date).
 */
static long held_pages(const struct _fixture_variant_edge *variant, int fd, char *mem, long pages,
		       long *first_absent)
{
	struct stat st;

	if (variant->gmem)
		return resident_pages(mem, pages, first_absent);
	if (fstat(fd, &st))
		return -errno;
	return st.st_blocks * 512 / page_size;
}

/*
 * fallocate() of FALLOC_SIZE, signalled as soon as the file holds its first
 * page (a bounded poll: there is nothing else to wait on), with SIGUSR1 to
 * a thread or (@fatal) SIGKILL to a child.  A fatal signal ends it on both
 * backends, a child so killed is gone within KILL_TIMEOUT_MS; gmem also
 * stops for any other signal (EINTR), shmem does not (it completes).  gmem
 * keeps the pages allocated so far, the first ones of the range; shmem
 * removes them.  Every page reads as zeros, and the file works afterwards:
 * a write, a complete fallocate() that keeps it, a punch of everything.
 */
static void falloc_signal_flow(struct __test_metadata *_metadata, struct _test_data_edge *self,
			       const struct _fixture_variant_edge *variant, bool fatal)
{
	const long pages = FALLOC_SIZE / page_size;
	struct bg_call c = { .op = BG_FALLOCATE, .len = FALLOC_SIZE };
	long kept, first_absent = 0, n;
	bool stopped, completed = false;
	char *mem = NULL, *zbuf;
	long long folios;
	uint64_t deadline;
	pid_t pid = 0;
	int fd, ret;

	fd = new_file(self, variant, FALLOC_SIZE);
	ASSERT_LE(0, fd) TH_LOG("new file: %s", strerror(-fd));
	ASSERT_EQ(0, map_gmem(fd, FALLOC_SIZE, MAP_SHARED, &mem));
	folios = counter(variant, "folios");
	c.fd = fd;
	if (fatal) {
		fflush(NULL);
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid)
			_exit(fallocate(fd, 0, 0, FALLOC_SIZE) ? 1 : 0);
	} else {
		ASSERT_EQ(0, catch_usr1());
		ASSERT_EQ(0, bg_start(&c));
	}
	deadline = now_ms() + BLOCKED_TIMEOUT_MS;
	while (held_pages(variant, fd, mem, 1, NULL) < 1 && now_ms() < deadline)
		usleep(100);
	if (fatal) {
		completed = sigkill_child(_metadata, pid, true);
	} else {
		ret = pthread_kill(c.thread, SIGUSR1);
		ASSERT_TRUE(!ret || ret == ESRCH);
		ASSERT_EQ(0, join_timeout(c.thread, 60)) TH_LOG("fallocate() still runs");
		completed = !c.ret;
	}

	stopped = fatal || variant->falloc_intr;
	kept = held_pages(variant, fd, mem, pages, &first_absent);
	if (completed) {
		if (stopped)
			ksft_print_msg("fallocate() of %ld MiB completed before the signal\n",
				       FALLOC_SIZE >> 20);
		EXPECT_EQ(pages, kept);
	} else if (variant->falloc_keeps) {
		EXPECT_LE(1, kept);
		EXPECT_GT(pages, kept);
		EXPECT_EQ(kept, first_absent) TH_LOG("the pages kept are not the first ones");
	} else {
		EXPECT_EQ(0, kept) TH_LOG("%ld pages kept", kept);
	}
	if (!fatal) {
		EXPECT_EQ(stopped ? -1 : 0, c.ret) TH_LOG("fallocate: %s", strerror(c.err));
		if (stopped)
			EXPECT_EQ(EINTR, c.err);
		EXPECT_EQ(1, usr1_count());
	}
	if (folios >= 0)
		EXPECT_EQ(folios + kept, gmem_counter("folios"));
	n = kept < FALLOC_CHECKED ? kept + 1 : FALLOC_CHECKED;
	zbuf = malloc(n * page_size);
	ASSERT_NE(NULL, zbuf);
	ASSERT_EQ(n * page_size, err_of(pread(fd, zbuf, n * page_size, 0)));
	EXPECT_TRUE(all_zero(zbuf, n * page_size));
	if (kept > n) {
		ASSERT_EQ(0, read_page(fd, zbuf, (kept - 1) * page_size));
		EXPECT_TRUE(all_zero(zbuf, page_size));
	}
	free(zbuf);

	ASSERT_EQ(0, write_page(fd, self->pat[0], page_size));
	EXPECT_EQ(0, err_of(fallocate(fd, 0, 0, 64 * page_size)));
	ASSERT_EQ(0, read_page(fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat[0], self->buf, page_size));
	ASSERT_EQ(0, read_page(fd, self->buf, 2 * page_size));
	EXPECT_TRUE(all_zero(self->buf, page_size));
	EXPECT_EQ(0, err_of(fallocate(fd, PUNCH_HOLE, 0, FALLOC_SIZE)));
	EXPECT_EQ(0, held_pages(variant, fd, mem, pages, NULL));
	if (folios >= 0)
		EXPECT_EQ(folios, gmem_counter("folios"));
	munmap(mem, FALLOC_SIZE);
	close(fd);
}

TEST_F_TIMEOUT(edge, fallocate_signal, 120)
{
	falloc_signal_flow(_metadata, self, variant, false);
}

TEST_F_TIMEOUT(edge, fallocate_sigkill, 120)
{
	falloc_signal_flow(_metadata, self, variant, true);
}

/* ---- The range of a pending fault changes ---- */

enum range_op {
	OP_MUNMAP,
	OP_MUNMAP_MIDDLE,
	OP_MREMAP_MOVE,
	OP_MREMAP_SHRINK,
	OP_MREMAP_GROW,
	OP_MREMAP_DONTUNMAP,
	OP_MADV_DONTNEED,
	OP_MADV_REMOVE,
};

#define RANGE_PAGES	4	/* mapped and registered at first */
#define RANGE_FILE	8	/* pages in the file: room to grow */
/* Address space reserved: the mapping at 0, a destination at RANGE_FILE. */
#define RANGE_SPAN	16

/* The message of an UNMAP or REMOVE event for @pages pages at @start, in *@msg: 1. */
static int want_remove(struct uffd_msg *msg, __u8 event, char *start, long pages)
{
	memset(msg, 0, sizeof(*msg));
	msg->event = event;
	msg->arg.remove.start = (unsigned long)start;
	msg->arg.remove.end = (unsigned long)start + pages * page_size;
	return 1;
}

/* The message of the REMAP event of RANGE_PAGES pages from @from to @to, in *@msg: 1. */
static int want_remap(struct uffd_msg *msg, char *from, char *to)
{
	memset(msg, 0, sizeof(*msg));
	msg->event = UFFD_EVENT_REMAP;
	msg->arg.remap.from = (unsigned long)from;
	msg->arg.remap.to = (unsigned long)to;
	msg->arg.remap.len = RANGE_PAGES * page_size;
	return 1;
}

/*
 * The file: page 0 = pattern A, page 1 = B, the rest absent.  Its first
 * RANGE_PAGES pages are mapped at @old (registered MISSING, with the
 * UNMAP, REMAP and REMOVE events if @events); page 0 is read (mapped, no
 * event), a thread reads page 2 and sleeps in its MISSING fault.  Then
 * @op, while a server thread reads the events it raises (the call waits for
 * them); the page 2 fault is then resolved: UFFDIO_COPY of C if page 2 is
 * still mapped, else UFFDIO_COPY fails (ENOENT, no page created) and
 * UFFDIO_WAKE lets the access retry and die of SIGSEGV.
 */
static void pending_fault_flow(struct __test_metadata *_metadata, struct _test_data_edge *self,
			       const struct _fixture_variant_edge *variant, enum range_op op, bool events)
{
	const __u64 features = events ? UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP |
					UFFD_FEATURE_EVENT_REMOVE : 0;
	const long ps = page_size;
	struct server ev = { .serve = false };
	char *span, *old, *dst, *fault, *p;
	struct uffd_msg want[2] = { 0 };
	int fd, uffd, i, nr_want = 0;
	bool gone = false;
	struct uffd_msg msg;
	struct toucher t;
	long long folios;

	fd = new_file(self, variant, RANGE_FILE * ps);
	ASSERT_LE(0, fd) TH_LOG("new file: %s", strerror(-fd));
	ASSERT_EQ(0, write_page(fd, self->pat[0], 0));
	ASSERT_EQ(0, write_page(fd, self->pat[1], ps));
	span = mmap(NULL, RANGE_SPAN * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	ASSERT_NE(MAP_FAILED, span);
	old = mmap(span, RANGE_PAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	ASSERT_EQ(span, old);
	dst = span + RANGE_FILE * ps;
	fault = old + 2 * ps;
	uffd = uffd_open_features(features);
	ASSERT_LE(0, uffd) TH_LOG("userfaultfd: %s", strerror(-uffd));
	ASSERT_EQ(0, uffd_register(uffd, old, RANGE_PAGES * ps, MODE_MISSING, NULL));
	EXPECT_EQ(0, memcmp(self->pat[0], old, ps));

	ASSERT_EQ(0, toucher_start(&t, TOUCH_SIGBUS_SEGV, fault + 8, false, 0));
	expect_fault(_metadata, uffd, fault, &msg);
	ASSERT_EQ(0, wait_asleep(&t.tid, &t.done)) TH_LOG("the thread is not asleep in its fault");

	ev.uffd = uffd;
	ASSERT_EQ(0, server_start(&ev));
	switch (op) {
	case OP_MUNMAP:
		ASSERT_EQ(0, munmap(old, RANGE_PAGES * ps));
		nr_want = want_remove(want, UFFD_EVENT_UNMAP, old, RANGE_PAGES);
		gone = true;
		break;
	case OP_MUNMAP_MIDDLE:
		ASSERT_EQ(0, munmap(old + ps, 2 * ps));
		nr_want = want_remove(want, UFFD_EVENT_UNMAP, old + ps, 2);
		gone = true;
		break;
	case OP_MREMAP_MOVE:
		p = mremap(old, RANGE_PAGES * ps, RANGE_PAGES * ps, MREMAP_MAYMOVE | MREMAP_FIXED,
			   dst);
		ASSERT_EQ(dst, p) TH_LOG("mremap: %s", strerror(errno));
		/* The move, then the unmapping of the source, still registered then. */
		nr_want = want_remap(want, old, dst);
		nr_want += want_remove(want + 1, UFFD_EVENT_UNMAP, old, RANGE_PAGES);
		gone = true;
		break;
	case OP_MREMAP_SHRINK:
		p = mremap(old, RANGE_PAGES * ps, 2 * ps, 0);
		ASSERT_EQ(old, p) TH_LOG("mremap: %s", strerror(errno));
		nr_want = want_remove(want, UFFD_EVENT_UNMAP, old + 2 * ps, RANGE_PAGES - 2);
		gone = true;
		break;
	case OP_MREMAP_GROW:
		/* The reservation after the mapping makes way: it grows in place. */
		ASSERT_EQ(0, munmap(old + RANGE_PAGES * ps, (RANGE_FILE - RANGE_PAGES) * ps));
		p = mremap(old, RANGE_PAGES * ps, RANGE_FILE * ps, 0);
		ASSERT_EQ(old, p) TH_LOG("mremap: %s", strerror(errno));
		break;
	case OP_MREMAP_DONTUNMAP:
		p = mremap(old, RANGE_PAGES * ps, RANGE_PAGES * ps,
			   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, dst);
		ASSERT_EQ(dst, p) TH_LOG("mremap: %s", strerror(errno));
		nr_want = want_remap(want, old, dst);
		break;
	case OP_MADV_DONTNEED:
		ASSERT_EQ(0, madvise(old, RANGE_PAGES * ps, MADV_DONTNEED));
		nr_want = want_remove(want, UFFD_EVENT_REMOVE, old, RANGE_PAGES);
		break;
	case OP_MADV_REMOVE:
		ASSERT_EQ(0, madvise(old + ps, 2 * ps, MADV_REMOVE)) TH_LOG("%s", strerror(errno));
		nr_want = want_remove(want, UFFD_EVENT_REMOVE, old + ps, 2);
		break;
	}
	ASSERT_EQ(0, server_stop(&ev));
	ASSERT_EQ(0, ev.err) TH_LOG("reading the events: %s", strerror(-ev.err));
	if (!events)
		nr_want = 0;
	EXPECT_EQ(nr_want, ev.nr_events);
	for (i = 0; i < ev.nr_events && i < MAX_EVENTS; i++) {
		EXPECT_TRUE(i < nr_want && !memcmp(&want[i], &ev.events[i], sizeof(msg)))
			TH_LOG("event %d: %#x %#llx %#llx %#llx", i, ev.events[i].event,
			       (unsigned long long)ev.events[i].arg.reserved.reserved1,
			       (unsigned long long)ev.events[i].arg.reserved.reserved2,
			       (unsigned long long)ev.events[i].arg.reserved.reserved3);
	}
	EXPECT_TRUE(no_event(uffd));
	/* The change did not wake the faulting thread. */
	EXPECT_TRUE(task_sleeps_in(t.tid, "handle_userfault"));
	EXPECT_FALSE(toucher_done(&t));

	if (gone) {
		folios = counter(variant, "folios");
		EXPECT_EQ(-ENOENT, copy_page(uffd, fault, self->pat[2]));
		if (folios >= 0)
			EXPECT_EQ(folios, gmem_counter("folios"))
				TH_LOG("the failed copy left a page");
		EXPECT_EQ(0, uffd_wake(uffd, fault));
		ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S))
			TH_LOG("UFFDIO_WAKE did not wake the thread");
		EXPECT_EQ(SIGSEGV, t.sig);
	} else {
		EXPECT_EQ(0, copy_page(uffd, fault, self->pat[2]));
		ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S))
			TH_LOG("UFFDIO_COPY did not wake the thread");
		EXPECT_EQ(0, t.sig);
		EXPECT_EQ(0, memcmp(self->pat[2], t.seen, ps));
	}
	toucher_free(&t);

	/* What is still (or now) mapped works, and stays registered. */
	switch (op) {
	case OP_MUNMAP_MIDDLE:
		EXPECT_EQ(0, memcmp(self->pat[0], old, ps));
		EXPECT_EQ(0, copy_page(uffd, old + 3 * ps, self->pat[3]));
		EXPECT_EQ(0, memcmp(self->pat[3], old + 3 * ps, ps));
		break;
	case OP_MREMAP_MOVE:
		EXPECT_EQ(0, memcmp(self->pat[0], dst, ps));
		EXPECT_EQ(0, copy_page(uffd, dst + 3 * ps, self->pat[3]));
		EXPECT_EQ(0, memcmp(self->pat[3], dst + 3 * ps, ps));
		break;
	case OP_MREMAP_SHRINK:
		EXPECT_EQ(0, memcmp(self->pat[0], old, ps));
		EXPECT_EQ(0, memcmp(self->pat[1], old + ps, ps));
		break;
	case OP_MREMAP_GROW:
		EXPECT_EQ(0, copy_page(uffd, old + 5 * ps, self->pat[3]));
		EXPECT_EQ(0, memcmp(self->pat[3], old + 5 * ps, ps));
		break;
	case OP_MREMAP_DONTUNMAP:
		/* The old range stays mapped and registered, with empty page tables. */
		EXPECT_EQ(0, memcmp(self->pat[0], old, ps));
		EXPECT_EQ(0, memcmp(self->pat[0], dst, ps));
		EXPECT_EQ(0, memcmp(self->pat[2], dst + 2 * ps, ps));
		break;
	case OP_MADV_DONTNEED:
		EXPECT_EQ(0, memcmp(self->pat[0], old, ps));
		break;
	default:
		break;
	}
	EXPECT_TRUE(no_event(uffd));

	/* The file kept its pages. */
	for (i = 0; i < RANGE_FILE; i++) {
		const char *want_page = NULL;

		if (i == 0)
			want_page = self->pat[0];
		else if (i == 1 && op != OP_MADV_REMOVE)
			want_page = self->pat[1];
		else if (i == 2 && !gone)
			want_page = self->pat[2];
		else if ((i == 3 && (op == OP_MUNMAP_MIDDLE || op == OP_MREMAP_MOVE)) ||
			 (i == 5 && op == OP_MREMAP_GROW))
			want_page = self->pat[3];
		ASSERT_EQ(0, read_page(fd, self->buf, i * ps));
		EXPECT_TRUE(want_page ? !memcmp(want_page, self->buf, ps) : all_zero(self->buf, ps))
			TH_LOG("page %d: not %s", i, want_page ? "its pattern" : "zeros");
	}

	/* Unregistered first: unmapping a registered range would wait for a reader. */
	close(uffd);
	munmap(span, RANGE_SPAN * ps);
	close(fd);
}

TEST_F(edge, pending_fault_munmap)
{
	pending_fault_flow(_metadata, self, variant, OP_MUNMAP, true);
}

TEST_F(edge, pending_fault_munmap_no_events)
{
	pending_fault_flow(_metadata, self, variant, OP_MUNMAP, false);
}

TEST_F(edge, pending_fault_munmap_middle)
{
	pending_fault_flow(_metadata, self, variant, OP_MUNMAP_MIDDLE, true);
}

TEST_F(edge, pending_fault_mremap_move)
{
	pending_fault_flow(_metadata, self, variant, OP_MREMAP_MOVE, true);
}

TEST_F(edge, pending_fault_mremap_shrink)
{
	pending_fault_flow(_metadata, self, variant, OP_MREMAP_SHRINK, true);
}

TEST_F(edge, pending_fault_mremap_grow)
{
	pending_fault_flow(_metadata, self, variant, OP_MREMAP_GROW, true);
}

TEST_F(edge, pending_fault_mremap_dontunmap)
{
	pending_fault_flow(_metadata, self, variant, OP_MREMAP_DONTUNMAP, true);
}

TEST_F(edge, pending_fault_madv_dontneed)
{
	pending_fault_flow(_metadata, self, variant, OP_MADV_DONTNEED, true);
}

TEST_F(edge, pending_fault_madv_remove)
{
	pending_fault_flow(_metadata, self, variant, OP_MADV_REMOVE, true);
}

/* ---- fork and population ---- */

/* Fork a child that returns @fn(@arg): its exit code, or -1 (killed, stuck). */
static int run_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid)
		_exit(fn(arg));
	if (wait_child_timeout(pid, CHILD_TIMEOUT_MS, &status))
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The signal that touching the page at @arg raises in a child, or 0. */
static int child_touch(void *arg)
{
	return sig_probe(arg, false, 0, true, NULL);
}

/* MADV_DONTFORK: the child has no mapping there (SIGSEGV); the parent keeps it. */
TEST_F(edge, fork_dontfork_child_segv)
{
	struct area a;

	area_setup(_metadata, self, variant, &a, 2, 2, 0);
	memcpy(a.mem, self->pat[0], page_size);
	ASSERT_EQ(0, madvise(a.mem, 2 * page_size, MADV_DONTFORK));
	EXPECT_EQ(SIGSEGV, run_child(child_touch, a.mem));
	EXPECT_EQ(0, memcmp(self->pat[0], a.mem, page_size));
	area_put(&a);
}

struct shared_pages {
	char *mem;
	char **pat;
};

/*
 * In a child of fork_child_shares_pages: page 0 (written through the
 * mapping) and 1 (by pwrite) are there, page 2 is zeros; it writes C to
 * page 2 and a byte of page 0.  0, or the step that failed.
 */
static int child_shares_pages(void *arg)
{
	struct shared_pages *s = arg;

	if (memcmp(s->pat[0], s->mem, page_size))
		return 10;
	if (memcmp(s->pat[1], s->mem + page_size, page_size))
		return 11;
	if (!all_zero(s->mem + 2 * page_size, page_size))
		return 12;
	memcpy(s->mem + 2 * page_size, s->pat[2], page_size);
	s->mem[5] = 0x5a;
	return 0;
}

/* The pages of a MAP_SHARED mapping are shared with a child, both ways. */
TEST_F(edge, fork_child_shares_pages)
{
	struct shared_pages s = { .pat = self->pat };
	long long folios;
	struct area a;

	folios = counter(variant, "folios");
	area_setup(_metadata, self, variant, &a, 4, 4, 0);
	s.mem = a.mem;
	memcpy(a.mem, self->pat[0], page_size);
	ASSERT_EQ(0, write_page(a.fd, self->pat[1], page_size));
	EXPECT_EQ(0, run_child(child_shares_pages, &s))
		TH_LOG("child: 10 page 0, 11 page 1, 12 page 2 not zeros, -1 killed or stuck");
	EXPECT_EQ(0x5a, a.mem[5]);
	EXPECT_EQ(0, memcmp(self->pat[2], a.mem + 2 * page_size, page_size));
	ASSERT_EQ(0, read_page(a.fd, self->buf, 2 * page_size));
	EXPECT_EQ(0, memcmp(self->pat[2], self->buf, page_size));
	if (folios >= 0)
		EXPECT_EQ(folios + 3, gmem_counter("folios"));
	area_put(&a);
}

/* The child of fork_wipeonfork_einval: 0 if page 0 still holds A, else 1. */
static int child_sees_pattern(void *arg)
{
	struct shared_pages *s = arg;

	return memcmp(s->pat[0], s->mem, page_size) ? 1 : 0;
}

/* MADV_WIPEONFORK is for private anonymous memory: EINVAL, and nothing is wiped. */
TEST_F(edge, fork_wipeonfork_einval)
{
	struct shared_pages s = { .pat = self->pat };
	struct area a;

	area_setup(_metadata, self, variant, &a, 2, 2, 0);
	s.mem = a.mem;
	memcpy(a.mem, self->pat[0], page_size);
	EXPECT_EQ(-EINVAL, err_of(madvise(a.mem, 2 * page_size, MADV_WIPEONFORK)));
	EXPECT_EQ(0, run_child(child_sees_pattern, &s));
	area_put(&a);
}

/* MAP_POPULATE: every page of the mapping is in the file, zeros. */
TEST_F(edge, map_populate_zero_pages)
{
	const long pages = 16;
	long long folios;
	char *mem;
	int fd;

	fd = new_file(self, variant, pages * page_size);
	ASSERT_LE(0, fd) TH_LOG("new file: %s", strerror(-fd));
	folios = counter(variant, "folios");
	mem = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		   fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	EXPECT_EQ(pages, resident_pages(mem, pages, NULL));
	if (folios >= 0)
		EXPECT_EQ(folios + pages, gmem_counter("folios"));
	EXPECT_TRUE(all_zero(mem, pages * page_size));
	munmap(mem, pages * page_size);
	close(fd);
}

enum populate { POP_READ, POP_WRITE, POP_MLOCK, POP_MLOCKALL };

#define POP_PAGES	8

/*
 * A mapping registered MISSING, populated by @how: one MISSING event per
 * page (WRITE-flagged for MADV_POPULATE_WRITE only), served by a handler
 * thread with UFFDIO_COPY; the call succeeds and every page is there with
 * its data, also after munlock()/munlockall().
 */
static void populate_flow(struct __test_metadata *_metadata, struct _test_data_edge *self,
			  const struct _fixture_variant_edge *variant, enum populate how)
{
	struct server s = { .serve = true };
	long long missing;
	struct area a;
	char *src;
	int i, ret = -1;

	area_setup(_metadata, self, variant, &a, POP_PAGES, POP_PAGES, MODE_MISSING);
	src = mmap(NULL, POP_PAGES * page_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, src);
	for (i = 0; i < POP_PAGES; i++)
		fill(src + i * page_size, page_size, 0x90 + i);
	missing = counter(variant, "missing_events");
	s.uffd = a.uffd;
	s.base = a.mem;
	s.src = src;
	ASSERT_EQ(0, server_start(&s));
	switch (how) {
	case POP_READ:
		ret = err_of(madvise(a.mem, a.len, MADV_POPULATE_READ));
		break;
	case POP_WRITE:
		ret = err_of(madvise(a.mem, a.len, MADV_POPULATE_WRITE));
		break;
	case POP_MLOCK:
		ret = err_of(mlock(a.mem, a.len));
		break;
	case POP_MLOCKALL:
		ret = err_of(mlockall(MCL_CURRENT));
		break;
	}
	ASSERT_EQ(0, server_stop(&s));
	EXPECT_EQ(0, ret) TH_LOG("%s", strerror(-ret));
	ASSERT_EQ(0, s.err) TH_LOG("handler: %s", strerror(-s.err));
	EXPECT_EQ(POP_PAGES, s.faults);
	EXPECT_EQ(how == POP_WRITE ? POP_PAGES : 0, s.write_faults);
	EXPECT_EQ(0, s.nr_events);
	EXPECT_EQ(POP_PAGES, resident_pages(a.mem, POP_PAGES, NULL));
	/* Every page is mapped: reading them raises no event (none is served now). */
	EXPECT_EQ(0, memcmp(src, a.mem, a.len));
	EXPECT_TRUE(no_event(a.uffd));
	if (missing >= 0)
		EXPECT_LE(missing + POP_PAGES, gmem_counter("missing_events"));
	if (how == POP_MLOCK)
		EXPECT_EQ(0, err_of(munlock(a.mem, a.len)));
	if (how == POP_MLOCKALL)
		EXPECT_EQ(0, err_of(munlockall()));
	EXPECT_EQ(0, memcmp(src, a.mem, a.len));
	for (i = 0; i < POP_PAGES; i++) {
		ASSERT_EQ(0, read_page(a.fd, self->buf, i * page_size));
		EXPECT_EQ(0, memcmp(src + i * page_size, self->buf, page_size))
			TH_LOG("page %d", i);
	}
	munmap(src, POP_PAGES * page_size);
	area_put(&a);
}

TEST_F(edge, madv_populate_read_through_uffd)
{
	populate_flow(_metadata, self, variant, POP_READ);
}

TEST_F(edge, madv_populate_write_through_uffd)
{
	populate_flow(_metadata, self, variant, POP_WRITE);
}

TEST_F(edge, mlock_through_uffd)
{
	populate_flow(_metadata, self, variant, POP_MLOCK);
}

TEST_F(edge, mlockall_through_uffd)
{
	populate_flow(_metadata, self, variant, POP_MLOCKALL);
}

/* ---- Thousands of files ---- */

#define MANY_FILES		4096	/* RLIMIT_NOFILE of the test */
/* What meminfo may be off by: per-CPU LRU batches and vmstat deltas, other activity. */
#define MANY_MARGIN_PAGES	1024

/* File @i holds its page: its number, then the rest of a pattern. */
static bool many_file_ok(struct _test_data_edge *self, int fd, int i)
{
	if (read_page(fd, self->buf, 0))
		return false;
	return !memcmp(&i, self->buf, sizeof(i)) &&
	       !memcmp(self->pat[i % NR_PAT] + sizeof(i), self->buf + sizeof(i),
		       page_size - sizeof(i));
}

/*
 * Files of one page, each written (its number, then a pattern), until
 * EMFILE; each reads back its own page; the counters (gmem: files and
 * folios, exactly; meminfo Unevictable for gmem, Shmem for memfd, within
 * the margin) rise by as many pages, and are back once they are closed.
 */
TEST_F_TIMEOUT(edge, many_files_until_emfile, 300)
{
	const char *field = variant->gmem ? "Unevictable" : "Shmem";
	long long files, folios, kb0, kb1, kb2;
	struct rlimit old, lim;
	int *fds, n, i, err = 0;

	fds = calloc(MANY_FILES, sizeof(*fds));
	ASSERT_NE(NULL, fds);
	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old));
	lim.rlim_cur = MANY_FILES;
	lim.rlim_max = old.rlim_max > MANY_FILES ? old.rlim_max : MANY_FILES;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &lim));
	files = counter(variant, "files");
	folios = counter(variant, "folios");
	kb0 = meminfo_kb(field);
	ASSERT_LE(0, kb0) TH_LOG("/proc/meminfo has no %s", field);

	for (n = 0; n < MANY_FILES; n++) {
		fds[n] = new_file(self, variant, page_size);
		if (fds[n] < 0) {
			err = fds[n];
			break;
		}
		memcpy(self->buf, self->pat[n % NR_PAT], page_size);
		memcpy(self->buf, &n, sizeof(n));
		ASSERT_EQ(0, write_page(fds[n], self->buf, 0)) TH_LOG("file %d", n);
	}
	EXPECT_EQ(-EMFILE, err) TH_LOG("after %d files: %s", n, strerror(-err));
	/* Every fd but the few the process holds. */
	EXPECT_LE(MANY_FILES - 32, n);
	/* One fd back, to read the counters with. */
	ASSERT_LT(0, n);
	close(fds[--n]);
	for (i = 0; i < n; i += 97)
		EXPECT_TRUE(many_file_ok(self, fds[i], i)) TH_LOG("file %d", i);
	if (n)
		EXPECT_TRUE(many_file_ok(self, fds[n - 1], n - 1)) TH_LOG("file %d", n - 1);
	if (files >= 0) {
		EXPECT_EQ(files + n, gmem_counter("files"));
		EXPECT_EQ(folios + n, gmem_counter("folios"));
	}
	kb1 = meminfo_kb(field);
	EXPECT_LE((long long)(n - MANY_MARGIN_PAGES) * page_size / 1024, kb1 - kb0)
		TH_LOG("%s rose by %lld kB for %d pages", field, kb1 - kb0, n);

	for (i = 0; i < n; i++)
		close(fds[i]);
	if (files >= 0) {
		EXPECT_EQ(files, gmem_counter("files"));
		EXPECT_EQ(folios, gmem_counter("folios"));
	}
	kb2 = meminfo_kb(field);
	EXPECT_GE((long long)MANY_MARGIN_PAGES * page_size / 1024, llabs(kb2 - kb0))
		TH_LOG("%s: %lld kB before, %lld kB after", field, kb0, kb2);
	EXPECT_EQ(0, setrlimit(RLIMIT_NOFILE, &old));
	free(fds);
}

/* ---- Errnos ---- */

/*
 * fallocate() whose offset + len overflows: EFBIG in every mode, from the
 * VFS (vfs_fallocate()) before the file's own range checks; nothing moves.
 */
TEST_F(edge, fallocate_overflow_efbig)
{
	static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE, PUNCH_HOLE };
	const long long big = LLONG_MAX & ~((long long)page_size - 1);
	const struct { long long off, len; } ranges[] = {
		{ page_size, big },
		{ big, page_size },
		{ 2 * page_size, big - page_size },
	};
	long long folios;
	unsigned int i, j;
	int fd;

	fd = new_file(self, variant, 4 * page_size);
	ASSERT_LE(0, fd) TH_LOG("new file: %s", strerror(-fd));
	ASSERT_EQ(0, write_page(fd, self->pat[0], 0));
	folios = counter(variant, "folios");
	for (i = 0; i < ARRAY_SIZE(modes); i++) {
		for (j = 0; j < ARRAY_SIZE(ranges); j++) {
			EXPECT_EQ(-EFBIG, err_of(fallocate(fd, modes[i], ranges[j].off,
							   ranges[j].len)))
				TH_LOG("mode %#x offset %#llx len %#llx", modes[i],
				       ranges[j].off, ranges[j].len);
		}
	}
	EXPECT_EQ(4 * page_size, file_size(fd));
	ASSERT_EQ(0, read_page(fd, self->buf, 0));
	EXPECT_EQ(0, memcmp(self->pat[0], self->buf, page_size));
	ASSERT_EQ(0, read_page(fd, self->buf, page_size));
	EXPECT_TRUE(all_zero(self->buf, page_size));
	if (folios >= 0)
		EXPECT_EQ(folios, gmem_counter("folios"));
	close(fd);
}

/*
 * A one-page file under a two-page mapping registered MISSING | MINOR: every
 * filling ioctl on page 1 (past EOF) fails, with the errno in its result
 * field too; nothing is left there (no page, no poison marker: an access
 * is SIGBUS, with no event); page 0 still fills.
 */
TEST_F(edge, uffd_fill_past_eof)
{
	const struct { unsigned long cmd; const char *name; int err; } ops[] = {
		{ UFFDIO_COPY, "UFFDIO_COPY", variant->fill_past_eof },
		{ UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE", variant->fill_past_eof },
		{ UFFDIO_CONTINUE, "UFFDIO_CONTINUE", EFAULT },
		{ UFFDIO_POISON, "UFFDIO_POISON", EFAULT },
	};
	long long folios;
	struct area a;
	unsigned int i;
	__s64 res;
	int ret;

	area_setup(_metadata, self, variant, &a, 1, 2, MODE_BOTH);
	folios = counter(variant, "folios");
	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		res = 0;
		ret = fill_page(a.uffd, ops[i].cmd, a.mem + page_size, self->pat[0], &res);
		EXPECT_EQ(-ops[i].err, ret) TH_LOG("%s: %s", ops[i].name, strerror(-ret));
		EXPECT_EQ(-ops[i].err, res) TH_LOG("%s", ops[i].name);
	}
	EXPECT_EQ(page_size, file_size(a.fd));
	EXPECT_EQ(0, resident_pages(a.mem, 2, NULL));
	if (folios >= 0)
		EXPECT_EQ(folios, gmem_counter("folios"));
	EXPECT_EQ(SIGBUS, sig_probe(a.mem + page_size, false, 0, true, NULL));
	EXPECT_TRUE(no_event(a.uffd));
	EXPECT_EQ(0, copy_page(a.uffd, a.mem, self->pat[0]));
	EXPECT_EQ(0, memcmp(self->pat[0], a.mem, page_size));
	area_put(&a);
}

/* ---- An unprivileged user (gmem only) ---- */

FIXTURE(unpriv) {
	int dev;		/* root's */
	mode_t mode0;		/* of the device node, before the test */
	bool chmodded;		/* the teardown must restore mode0 */
	char *pat;		/* a page of pattern */
};

FIXTURE_SETUP(unpriv)
{
	struct stat st;

	self->dev = -1;
	self->chmodded = false;
	if (geteuid())
		SKIP(return, "needs root, to drop to uid %d", NOBODY);
	ASSERT_EQ(0, stat(GMEM_DEV, &st)) TH_LOG("is %s loaded?", GMEM_MODULE);
	self->mode0 = st.st_mode & 07777;
	self->pat = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	ASSERT_NE(MAP_FAILED, self->pat);
	fill(self->pat, page_size, 0x3c);
	self->dev = gmem_open_dev();
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s", GMEM_DEV, strerror(-self->dev));
}

FIXTURE_TEARDOWN(unpriv)
{
	if (self->chmodded)
		chmod(GMEM_DEV, self->mode0);
	if (self->dev >= 0)
		close(self->dev);
}

/* Drop every privilege for good: uid and gids NOBODY, no other group.  0 or -errno. */
static int drop_to_nobody(void)
{
	if (setgroups(0, NULL) || setresgid(NOBODY, NOBODY, NOBODY) ||
	    setresuid(NOBODY, NOBODY, NOBODY))
		return -errno;
	return geteuid() == NOBODY ? 0 : -EPERM;
}

/* Opening the device fails with EACCES: 0, or the step that did not. */
static int open_eacces(void)
{
	int fd = open(GMEM_DEV, O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		return 2;
	return errno == EACCES ? 0 : 3;
}

static int child_open_eacces(void *arg)
{
	return drop_to_nobody() ? 1 : open_eacces();
}

/*
 * What a VMM does with the 4-page file @fd, as far as a child can check
 * alone: 0, or the step that failed (from @step0 + 1 on).  Leaves page 0
 * punched, byte 7 of page 1 = 0x5a and page 3 = @pat (by UFFDIO_COPY, on a
 * user-mode-only userfaultfd).
 */
static int use_file(int fd, const char *pat, int step0)
{
	char *mem = NULL, *buf;
	int uffd;

	buf = malloc(page_size);
	if (!buf)
		return step0 + 1;
	if (write_page(fd, pat, 0) || read_page(fd, buf, 0) || memcmp(pat, buf, page_size))
		return step0 + 2;
	if (map_gmem(fd, 4 * page_size, MAP_SHARED, &mem))
		return step0 + 3;
	if (memcmp(pat, mem, page_size))
		return step0 + 4;
	mem[page_size + 7] = 0x5a;
	if (pread(fd, buf, 8, page_size) != 8 || buf[7] != 0x5a)
		return step0 + 5;
	uffd = uffd_open_flags(UFFD_USER_MODE_ONLY, 0);
	if (uffd < 0)
		return step0 + 6;
	if (uffd_register(uffd, mem + 3 * page_size, page_size, MODE_MISSING, NULL))
		return step0 + 7;
	if (copy_page(uffd, mem + 3 * page_size, pat) ||
	    memcmp(pat, mem + 3 * page_size, page_size))
		return step0 + 8;
	if (fallocate(fd, PUNCH_HOLE, 0, page_size) || !all_zero(mem, page_size))
		return step0 + 9;
	close(uffd);
	munmap(mem, 4 * page_size);
	free(buf);
	return 0;
}

/* As nobody, with the device open to all: a file of its own, used. */
static int child_uses_device(void *arg)
{
	int dev, fd;

	if (drop_to_nobody())
		return 1;
	dev = gmem_open_dev();
	if (dev < 0)
		return 2;
	fd = create_gmem(dev, 4 * page_size, GMEM_SHARED);
	if (fd < 0)
		return 3;
	return use_file(fd, arg, 10);
}

/*
 * The device is root's: nobody gets EACCES opening it.  Once it is open to
 * all (chmod 0666, undone right after), nobody makes a file and uses it.
 */
TEST_F(unpriv, device_eacces_until_chmod)
{
	struct stat st;
	int code;

	ASSERT_EQ(0U, self->mode0 & 0077) TH_LOG("the device is open to others: %#o", self->mode0);
	code = run_child(child_open_eacces, NULL);
	EXPECT_EQ(0, code) TH_LOG("child: 1 setresuid, 2 opened, 3 not EACCES, -1 killed or stuck");

	ASSERT_EQ(0, chmod(GMEM_DEV, 0666));
	self->chmodded = true;
	code = run_child(child_uses_device, self->pat);
	EXPECT_EQ(0, chmod(GMEM_DEV, self->mode0));
	self->chmodded = false;
	EXPECT_EQ(0, code)
		TH_LOG("child: 1 setresuid, 2 open, 3 create, 11-19 use_file(), -1 killed/stuck");
	ASSERT_EQ(0, stat(GMEM_DEV, &st));
	EXPECT_EQ(self->mode0, st.st_mode & 07777);
}

struct inherited {
	int dev;
	int fd;
	const char *pat;
};

/*
 * As nobody, with root's device fd and file: the device stays closed to it,
 * but the fd makes it a file, and root's file works.
 */
static int child_inherits(void *arg)
{
	struct inherited *in = arg;
	int fd, ret;

	if (drop_to_nobody())
		return 1;
	ret = open_eacces();
	if (ret)
		return ret;
	fd = create_gmem(in->dev, page_size, GMEM_SHARED);
	if (fd < 0)
		return 4;
	if (write_page(fd, in->pat, 0))
		return 5;
	close(fd);
	return use_file(in->fd, in->pat, 10);
}

/* A device fd and a file that root opened keep working in a child that dropped to nobody. */
TEST_F(unpriv, inherited_fds_work)
{
	struct inherited in = { .dev = self->dev, .pat = self->pat };
	char *buf;

	in.fd = create_gmem(self->dev, 4 * page_size, GMEM_SHARED);
	ASSERT_LE(0, in.fd);
	EXPECT_EQ(0, run_child(child_inherits, &in))
		TH_LOG("child: 1 setresuid, 2-3 open not EACCES, 4-5 create, 11-19 use, -1 killed");
	buf = malloc(page_size);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, read_page(in.fd, buf, 0));
	EXPECT_TRUE(all_zero(buf, page_size));
	ASSERT_EQ(0, read_page(in.fd, buf, page_size));
	EXPECT_EQ(0x5a, buf[7]);
	ASSERT_EQ(0, read_page(in.fd, buf, 3 * page_size));
	EXPECT_EQ(0, memcmp(self->pat, buf, page_size));
	free(buf);
	close(in.fd);
}

TEST_HARNESS_MAIN
