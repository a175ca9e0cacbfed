// SPDX-License-Identifier: GPL-2.0
/*
 * userfaultfd event tests of gmem_uffd: how faults on a mapping of a guest
 * memory file are reported, woken and torn down.
 *
 *  - dontwake_*: UFFDIO_COPY / UFFDIO_CONTINUE with the DONTWAKE mode map
 *    the page but leave the faulting thread asleep (another thread reads
 *    the page meanwhile without an event) until UFFDIO_WAKE.
 *  - same_page_*: several threads fault on the same absent page (or page
 *    of the file not mapped yet); each raises its MISSING (MINOR) event,
 *    one UFFDIO_COPY (UFFDIO_CONTINUE) wakes them all, the page is
 *    allocated once (not again), and no event is left.
 *  - flags_*: read faults never carry UFFD_PAGEFAULT_FLAG_WRITE; a store
 *    is reported with it (or, if the CPU reports the store as a load first,
 *    by a read fault followed by a write fault at the same address);
 *    MINOR is set exactly for MINOR faults.
 *  - fork_*: fork() with a registered mapping, without UFFD_FEATURE_EVENT_FORK
 *    (the child's mapping is not registered: it sees the file's pages and
 *    absent pages are zero-filled, no event anywhere) and with it
 *    (UFFD_EVENT_FORK carries the child's userfaultfd; the child's faults
 *    are reported there, none on the parent's).
 *  - unmap_event, remap_event, remap_without_event: UFFD_EVENT_UNMAP and
 *    UFFD_EVENT_REMAP with their ranges, and what stays registered.
 *  - close_*: closing the userfaultfd while threads are blocked in MISSING
 *    and MINOR faults wakes them, and their faults complete without
 *    userfaultfd (zero-fill, or the page in the file).
 *  - punch_*: a punched page that was mapped raises a new fault on the next
 *    access, and the content served then is what the thread sees, never
 *    the old page.
 *
 * A thread is known to be asleep in a fault when /proc/self/task/TID/wchan
 * shows handle_userfault.  Every wait is bounded (poll timeouts, timed
 * joins, child processes killed after CHILD_TIMEOUT_MS), so a lost event or
 * a thread that is never woken fails the test instead of hanging it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

/* Bounds of every wait. */
#define EVENT_TIMEOUT_MS	5000
#define BLOCKED_TIMEOUT_MS	10000
#define JOIN_TIMEOUT_S		10
#define CHILD_TIMEOUT_MS	20000
/* How long a thread that must stay asleep is given to wake by mistake. */
#define STAY_ASLEEP_MS		300

#define NR_SAME_PAGE		4
#define MAX_TOUCH_EVENTS	4

static long page_size;

static void __attribute__((constructor)) init_page_size(void)
{
	page_size = sysconf(_SC_PAGESIZE);
}

static void *page_of(const struct uffd_msg *msg)
{
	return (void *)(unsigned long)(msg->arg.pagefault.address & ~((__u64)page_size - 1));
}

/* No message is waiting on @uffd. */
static bool no_event(int uffd)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };

	return poll(&pfd, 1, 0) == 0;
}

static int uffd_copy(int uffd, void *dst, const void *src, __u64 mode)
{
	struct uffdio_copy copy = {
		.dst = (unsigned long)dst,
		.src = (unsigned long)src,
		.len = page_size,
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_COPY, &copy))
		return -errno;
	return copy.copy == page_size ? 0 : -EIO;
}

static int uffd_continue(int uffd, void *dst, __u64 mode)
{
	struct uffdio_continue cont = {
		.range = { .start = (unsigned long)dst, .len = page_size },
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_CONTINUE, &cont))
		return -errno;
	return cont.mapped == page_size ? 0 : -EIO;
}

/* Wait until @t sleeps in its userfault: 0, or -ETIMEDOUT. */
static int wait_asleep(struct toucher *t)
{
	uint64_t deadline = now_ms() + BLOCKED_TIMEOUT_MS;
	int tid;

	while (now_ms() < deadline) {
		tid = __atomic_load_n(&t->tid, __ATOMIC_ACQUIRE);
		if (tid && !toucher_done(t) && task_sleeps_in(tid, "handle_userfault"))
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

/* Wait for child @pid: its exit code, or -1 after killing it at the timeout. */
static int wait_child(pid_t pid)
{
	uint64_t deadline = now_ms() + CHILD_TIMEOUT_MS;
	int status;
	pid_t w;

	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(2000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	if (w < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * Each test: a GMEM_SHARED file of NR_PAGES pages, mapped whole, a page of
 * pattern in pat_a and one in pat_b, and a read buffer.
 */
#define NR_PAGES		4

FIXTURE(events) {
	int dev, fd, uffd;
	char *mem;
	char *pat_a, *pat_b, *buf;
};

FIXTURE_SETUP(events)
{
	self->uffd = -1;
	self->mem = NULL;
	self->pat_a = malloc(page_size);
	self->pat_b = malloc(page_size);
	self->buf = malloc(page_size);
	ASSERT_TRUE(self->pat_a && self->pat_b && self->buf);
	fill(self->pat_a, page_size, 0x41);
	fill(self->pat_b, page_size, 0x62);
	self->dev = gmem_open_dev();
	ASSERT_LE(0, self->dev) TH_LOG("open %s: %s (is %s loaded?)", GMEM_DEV,
				       strerror(-self->dev), GMEM_MODULE);
	self->fd = create_gmem(self->dev, NR_PAGES * page_size, GMEM_SHARED);
	ASSERT_LE(0, self->fd) TH_LOG("KVM_CREATE_GUEST_MEMFD: %s", strerror(-self->fd));
	ASSERT_EQ(0, map_gmem(self->fd, NR_PAGES * page_size, MAP_SHARED, &self->mem));
}

FIXTURE_TEARDOWN(events)
{
	if (self->uffd >= 0)
		close(self->uffd);
	if (self->mem)
		munmap(self->mem, NR_PAGES * page_size);
	close(self->fd);
	close(self->dev);
}

/* Open the fixture's uffd with @features and register the whole mapping for @mode. */
static void setup_uffd(struct __test_metadata *_metadata, struct _test_data_events *self,
		       __u64 features, __u64 mode)
{
	self->uffd = uffd_open_features(features);
	ASSERT_LE(0, self->uffd) TH_LOG("userfaultfd (features %#llx): %s",
					(unsigned long long)features, strerror(-self->uffd));
	ASSERT_EQ(0, uffd_register(self->uffd, self->mem, NR_PAGES * page_size, mode, NULL));
}

static char *page_addr(struct _test_data_events *self, long page)
{
	return self->mem + page * page_size;
}

/* Read the next page fault of @uffd and check it is a @minor fault on @page. */
static void expect_fault(struct __test_metadata *_metadata, int uffd, char *page, bool minor,
			 struct uffd_msg *msg)
{
	ASSERT_EQ(0, uffd_read_msg(uffd, msg, EVENT_TIMEOUT_MS)) TH_LOG("no fault event");
	ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg->event);
	EXPECT_EQ(page, page_of(msg));
	EXPECT_EQ(minor, !!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR))
		TH_LOG("expected a %s fault, flags %#llx", minor ? "MINOR" : "MISSING",
		       (unsigned long long)msg->arg.pagefault.flags);
}

/* A thread reads @page (absent): a MISSING event, served with a copy of @src. */
static void missing_copy(struct __test_metadata *_metadata, struct _test_data_events *self,
			 char *page, const char *src)
{
	struct uffd_msg msg;
	struct toucher t;

	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, page, false, 0));
	expect_fault(_metadata, self->uffd, page, false, &msg);
	ASSERT_EQ(0, uffd_copy(self->uffd, page, src, 0));
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S)) TH_LOG("the copy did not wake the thread");
	EXPECT_EQ(0, memcmp(src, t.seen, page_size));
	toucher_free(&t);
}

/*
 * DONTWAKE: page 1 is faulted by thread A (MISSING, or MINOR when @minor:
 * the page is in the file), resolved with DONTWAKE; A stays asleep while
 * thread B reads the page without an event; UFFDIO_WAKE wakes A.
 */
static void dontwake_flow(struct __test_metadata *_metadata, struct _test_data_events *self,
			  bool minor)
{
	char *page = page_addr(self, 1);
	struct toucher a, b;
	struct uffd_msg msg;
	int ret;

	if (minor)
		ASSERT_EQ(0, write_page(self->fd, self->pat_a, page_size));
	setup_uffd(_metadata, self, 0, minor ? MODE_MINOR : MODE_MISSING);
	ASSERT_EQ(0, toucher_start(&a, TOUCH_PLAIN, page + 8, false, 0));
	expect_fault(_metadata, self->uffd, page, minor, &msg);
	ASSERT_EQ(0, wait_asleep(&a)) TH_LOG("thread A is not asleep in its fault");

	if (minor)
		ret = uffd_continue(self->uffd, page, UFFDIO_CONTINUE_MODE_DONTWAKE);
	else
		ret = uffd_copy(self->uffd, page, self->pat_a, UFFDIO_COPY_MODE_DONTWAKE);
	ASSERT_EQ(0, ret) TH_LOG("%s with DONTWAKE: %s", minor ? "UFFDIO_CONTINUE" :
				 "UFFDIO_COPY", strerror(-ret));

	/* The page is mapped: B's read completes without an event. */
	ASSERT_EQ(0, toucher_start(&b, TOUCH_PLAIN, page + 16, false, 0));
	ASSERT_EQ(0, toucher_join(&b, JOIN_TIMEOUT_S))
		TH_LOG("thread B blocked on a page already mapped");
	EXPECT_EQ(0, memcmp(self->pat_a, b.seen, page_size));
	EXPECT_TRUE(no_event(self->uffd)) TH_LOG("an event for a mapped page");

	/* A was not woken. */
	usleep(STAY_ASLEEP_MS * 1000);
	EXPECT_FALSE(toucher_done(&a)) TH_LOG("DONTWAKE woke the faulting thread");
	EXPECT_TRUE(task_sleeps_in(a.tid, "handle_userfault"));

	ASSERT_EQ(0, uffd_wake(self->uffd, page));
	ASSERT_EQ(0, toucher_join(&a, JOIN_TIMEOUT_S)) TH_LOG("UFFDIO_WAKE did not wake thread A");
	EXPECT_EQ(0, memcmp(self->pat_a, a.seen, page_size));
	EXPECT_TRUE(no_event(self->uffd));
	ASSERT_EQ(0, read_page(self->fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat_a, self->buf, page_size));
	toucher_free(&a);
	toucher_free(&b);
}

TEST_F(events, dontwake_copy_then_wake)
{
	dontwake_flow(_metadata, self, false);
}

TEST_F(events, dontwake_continue_then_wake)
{
	dontwake_flow(_metadata, self, true);
}

/*
 * NR_SAME_PAGE threads fault on page 2 (half read, half write at their own
 * offsets): NR_SAME_PAGE events, MISSING (absent page) or MINOR (@minor:
 * the page is in the file); one UFFDIO_COPY or UFFDIO_CONTINUE wakes them
 * all, and the page is allocated once at most.
 */
static void same_page_flow(struct __test_metadata *_metadata, struct _test_data_events *self,
			   bool minor)
{
	const char *events = minor ? "minor_events" : "missing_events";
	long long folios = -1, nr_events = -1;
	struct toucher t[NR_SAME_PAGE];
	char *page = page_addr(self, 2);
	struct uffd_msg msg;
	int i, j, ret, writes = 0;

	if (minor)
		ASSERT_EQ(0, write_page(self->fd, self->pat_a, 2 * page_size));
	setup_uffd(_metadata, self, 0, minor ? MODE_MINOR : MODE_MISSING);
	if (gmem_counters_present()) {
		folios = gmem_counter("folios");
		nr_events = gmem_counter(events);
	}
	for (i = 0; i < NR_SAME_PAGE; i++)
		ASSERT_EQ(0, toucher_start(&t[i], TOUCH_PLAIN,
					   page + 64 * i, i & 1, (char)(0xa0 + i)));
	/* Nothing is filled before every thread has raised its event. */
	for (i = 0; i < NR_SAME_PAGE; i++) {
		expect_fault(_metadata, self->uffd, page, minor, &msg);
		if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE)
			writes++;
	}
	EXPECT_GE(NR_SAME_PAGE / 2, writes) TH_LOG("more write faults than writing threads");
	for (i = 0; i < NR_SAME_PAGE; i++)
		ASSERT_EQ(0, wait_asleep(&t[i])) TH_LOG("thread %d is not asleep in its fault", i);
	EXPECT_TRUE(no_event(self->uffd)) TH_LOG("more events than faulting threads");

	if (minor)
		ret = uffd_continue(self->uffd, page, 0);
	else
		ret = uffd_copy(self->uffd, page, self->pat_a, 0);
	ASSERT_EQ(0, ret);
	for (i = 0; i < NR_SAME_PAGE; i++)
		ASSERT_EQ(0, toucher_join(&t[i], JOIN_TIMEOUT_S))
			TH_LOG("thread %d was not woken", i);
	EXPECT_TRUE(no_event(self->uffd)) TH_LOG("an event after the page was filled");

	/* Every thread saw the copy and every store landed in the one page. */
	memcpy(self->buf, self->pat_a, page_size);
	for (i = 0; i < NR_SAME_PAGE; i++) {
		if (i & 1)
			self->buf[64 * i] = (char)(0xa0 + i);
	}
	for (i = 0; i < NR_SAME_PAGE; i++) {
		for (j = 0; j < NR_SAME_PAGE; j++) {
			/* A thread may have copied before another one stored. */
			if (j & 1 && j != i && t[i].seen[64 * j] == self->pat_a[64 * j])
				t[i].seen[64 * j] = self->buf[64 * j];
		}
		EXPECT_EQ(0, memcmp(self->buf, t[i].seen, page_size)) TH_LOG("thread %d", i);
	}
	ASSERT_EQ(0, read_page(self->fd, t[0].seen, 2 * page_size));
	EXPECT_EQ(0, memcmp(self->buf, t[0].seen, page_size)) TH_LOG("pread of the page");
	if (folios >= 0) {
		EXPECT_EQ(folios + !minor, gmem_counter("folios")) TH_LOG("pages allocated");
		EXPECT_LE(nr_events + NR_SAME_PAGE, gmem_counter(events));
	}
	for (i = 0; i < NR_SAME_PAGE; i++)
		toucher_free(&t[i]);
}

TEST_F(events, same_page_many_threads_one_copy)
{
	same_page_flow(_metadata, self, false);
}

TEST_F(events, same_page_many_threads_one_continue)
{
	same_page_flow(_metadata, self, true);
}

/*
 * One touch of page 1 by a thread, every event it raises recorded and
 * served (MISSING: UFFDIO_COPY of pat_a; MINOR: UFFDIO_CONTINUE), until the
 * thread is done.
 */
static int touch_and_serve(struct __test_metadata *_metadata, struct _test_data_events *self,
			   bool write, struct uffd_msg *msgs)
{
	char *page = page_addr(self, 1);
	uint64_t deadline = now_ms() + BLOCKED_TIMEOUT_MS;
	struct toucher t;
	struct uffd_msg msg;
	int n = 0, ret;

	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, page + 100, write, 0x7b));
	/* Until the touch is done: the first event must come. */
	while (!toucher_done(&t) && now_ms() < deadline) {
		ret = uffd_read_msg(self->uffd, &msg, n ? 100 : EVENT_TIMEOUT_MS);
		if (ret == -ETIMEDOUT && n)
			continue;
		ASSERT_EQ(0, ret) TH_LOG("no event for the touch: %s", strerror(-ret));
		ASSERT_EQ(UFFD_EVENT_PAGEFAULT, msg.event);
		ASSERT_GT(MAX_TOUCH_EVENTS, n) TH_LOG("too many events for one touch");
		msgs[n++] = msg;
		if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
			ret = uffd_continue(self->uffd, page_of(&msg), 0);
		else
			ret = uffd_copy(self->uffd, page_of(&msg), self->pat_a, 0);
		if (ret == -EEXIST)
			ret = uffd_wake(self->uffd, page_of(&msg));
		ASSERT_EQ(0, ret) TH_LOG("serving event %d: %s", n, strerror(-ret));
	}
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S)) TH_LOG("the touching thread is stuck");
	memcpy(self->buf, self->pat_a, page_size);
	if (write)
		self->buf[100] = 0x7b;
	EXPECT_EQ(0, memcmp(self->buf, t.seen, page_size));
	toucher_free(&t);
	return n;
}

/*
 * The events of one read or write touch of page 1: for a read, none has
 * the WRITE flag; for a write, a WRITE-flagged fault, preceded only by
 * read faults at the same address.  Every one is MINOR exactly if @minor.
 */
static void flags_flow(struct __test_metadata *_metadata, struct _test_data_events *self,
		       bool minor, bool write)
{
	struct uffd_msg msgs[MAX_TOUCH_EVENTS];
	char *addr = page_addr(self, 1);
	int i, n, first_write = -1;
	__u64 flags;

	if (minor)
		ASSERT_EQ(0, write_page(self->fd, self->pat_a, page_size));
	setup_uffd(_metadata, self, 0, MODE_BOTH);
	n = touch_and_serve(_metadata, self, write, msgs);
	ASSERT_LE(1, n);
	for (i = 0; i < n; i++) {
		flags = msgs[i].arg.pagefault.flags;
		EXPECT_EQ(addr, page_of(&msgs[i]));
		EXPECT_EQ(minor, !!(flags & UFFD_PAGEFAULT_FLAG_MINOR))
			TH_LOG("event %d: flags %#llx", i, (unsigned long long)flags);
		EXPECT_EQ(0ULL, flags & UFFD_PAGEFAULT_FLAG_WP);
		if (!write) {
			EXPECT_EQ(0ULL, flags & UFFD_PAGEFAULT_FLAG_WRITE)
				TH_LOG("a load reported as a write fault (event %d)", i);
		} else if (first_write < 0 && (flags & UFFD_PAGEFAULT_FLAG_WRITE)) {
			first_write = i;
		}
	}
	if (write) {
		EXPECT_LE(0, first_write)
			TH_LOG("a store raised %d event(s), none with the WRITE flag", n);
		if (first_write > 0)
			ksft_print_msg("the store was first reported as %d read fault(s)\n",
				       first_write);
	} else {
		EXPECT_EQ(1, n) TH_LOG("one load, %d events", n);
	}
	EXPECT_TRUE(no_event(self->uffd));
}

TEST_F(events, flags_missing_read)
{
	flags_flow(_metadata, self, false, false);
}

TEST_F(events, flags_missing_write)
{
	flags_flow(_metadata, self, false, true);
}

TEST_F(events, flags_minor_read)
{
	flags_flow(_metadata, self, true, false);
}

TEST_F(events, flags_minor_write)
{
	flags_flow(_metadata, self, true, true);
}

/*
 * fork() without UFFD_FEATURE_EVENT_FORK: the child's copy of the mapping
 * is not registered.  It sees page 0 (in the file), gets page 1 (absent)
 * zero-filled and writes to it; the parent sees that write through the
 * file and its mapping, and no event is raised anywhere.
 */
TEST_F(events, fork_without_event_fork)
{
	char *p0 = page_addr(self, 0), *p1 = page_addr(self, 1);
	pid_t pid;

	ASSERT_EQ(0, write_page(self->fd, self->pat_a, 0));
	setup_uffd(_metadata, self, 0, MODE_MISSING);
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (memcmp(p0, self->pat_a, page_size))
			_exit(10);
		if (!all_zero(p1, page_size))
			_exit(11);
		p1[5] = 0x5a;
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid))
		TH_LOG("child: 10 page 0 wrong, 11 page 1 not zeros, -1 stuck");
	EXPECT_TRUE(no_event(self->uffd)) TH_LOG("the child's fault reached the parent's uffd");
	ASSERT_EQ(0, read_page(self->fd, self->buf, page_size));
	EXPECT_EQ(0x5a, self->buf[5]);
	self->buf[5] = 0;
	EXPECT_TRUE(all_zero(self->buf, page_size));
	/* Present now: the parent's registered mapping maps it without an event. */
	EXPECT_EQ(0x5a, __atomic_load_n(p1 + 5, __ATOMIC_RELAXED));
	EXPECT_TRUE(no_event(self->uffd));
	/* Still registered for the parent: page 2 raises MISSING. */
	missing_copy(_metadata, self, page_addr(self, 2), self->pat_b);
}

/* The handler of the fork tests: the fork event, then the child's faults. */
struct fork_handler {
	int uffd;
	char *page;		/* the page the child faults */
	const char *src;	/* what is copied there */
	/* Results */
	int err;		/* 0, or the first error */
	int child_uffd;
	int child_faults;
	struct uffd_msg fault;
	int stop;
	pthread_t thread;
};

static void *fork_handler_fn(void *arg)
{
	struct fork_handler *h = arg;
	struct uffd_msg msg;
	int ret;

	h->child_uffd = -1;
	ret = uffd_read_msg(h->uffd, &msg, CHILD_TIMEOUT_MS);
	if (ret) {
		h->err = ret;
		return NULL;
	}
	if (msg.event != UFFD_EVENT_FORK) {
		h->err = -EPROTO;
		return NULL;
	}
	h->child_uffd = msg.arg.fork.ufd;
	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		ret = uffd_read_msg(h->child_uffd, &msg, 100);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret || msg.event != UFFD_EVENT_PAGEFAULT) {
			h->err = ret ? ret : -EPROTO;
			break;
		}
		if (!h->child_faults++)
			h->fault = msg;
		ret = uffd_copy(h->child_uffd, page_of(&msg), h->src, 0);
		if (ret == -EEXIST)
			ret = uffd_wake(h->child_uffd, page_of(&msg));
		if (ret) {
			h->err = ret;
			break;
		}
	}
	return NULL;
}

/*
 * fork() with UFFD_FEATURE_EVENT_FORK: the handler gets UFFD_EVENT_FORK
 * with the child's userfaultfd; the child's MISSING fault on page 1 is
 * reported there and served with pat_b, which the parent then sees in the
 * file.  Page 0 (in the file) raises nothing; the parent's uffd gets no
 * fault.
 */
TEST_F(events, fork_with_event_fork)
{
	struct fork_handler h = { .page = page_addr(self, 1), .src = self->pat_b };
	char *p0 = page_addr(self, 0), *p1 = page_addr(self, 1);
	int status;
	pid_t pid;

	ASSERT_EQ(0, write_page(self->fd, self->pat_a, 0));
	setup_uffd(_metadata, self, UFFD_FEATURE_EVENT_FORK, MODE_MISSING);
	h.uffd = self->uffd;
	ASSERT_EQ(0, pthread_create(&h.thread, NULL, fork_handler_fn, &h));
	/* fork() returns once the handler has read the fork event. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		if (memcmp(p0, self->pat_a, page_size))
			_exit(10);
		if (memcmp(p1, self->pat_b, page_size))
			_exit(11);
		_exit(0);
	}
	status = wait_child(pid);
	__atomic_store_n(&h.stop, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, join_timeout(h.thread, JOIN_TIMEOUT_S));
	ASSERT_EQ(0, h.err) TH_LOG("handler: %s (child uffd %d)", strerror(-h.err),
				   h.child_uffd);
	ASSERT_LE(0, h.child_uffd) TH_LOG("no UFFD_EVENT_FORK");
	EXPECT_NE(self->uffd, h.child_uffd);
	EXPECT_EQ(0, status)
		TH_LOG("child: 10 page 0 wrong, 11 page 1 not the copy, -1 stuck");
	EXPECT_EQ(1, h.child_faults);
	EXPECT_EQ(p1, page_of(&h.fault));
	EXPECT_EQ(0ULL, h.fault.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR);
	EXPECT_TRUE(no_event(self->uffd)) TH_LOG("an event on the parent's uffd");
	ASSERT_EQ(0, read_page(self->fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat_b, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat_b, p1, page_size));
	EXPECT_TRUE(no_event(self->uffd));
	close(h.child_uffd);
}

/* A thread that reads one non-fault event (the syscall waits for that). */
struct event_reader {
	int uffd;
	int err;
	struct uffd_msg msg;
	pthread_t thread;
};

static void *event_reader_fn(void *arg)
{
	struct event_reader *r = arg;

	r->err = uffd_read_msg(r->uffd, &r->msg, CHILD_TIMEOUT_MS);
	return NULL;
}

/*
 * munmap() of pages 1-2 with UFFD_FEATURE_EVENT_UNMAP: UFFD_EVENT_UNMAP
 * with that range; the file keeps its data; pages 0 and 3 stay registered.
 */
TEST_F(events, unmap_event)
{
	struct event_reader r = { 0 };

	ASSERT_EQ(0, write_page(self->fd, self->pat_a, page_size));
	setup_uffd(_metadata, self, UFFD_FEATURE_EVENT_UNMAP, MODE_MISSING);
	r.uffd = self->uffd;
	ASSERT_EQ(0, pthread_create(&r.thread, NULL, event_reader_fn, &r));
	ASSERT_EQ(0, munmap(page_addr(self, 1), 2 * page_size));
	ASSERT_EQ(0, join_timeout(r.thread, JOIN_TIMEOUT_S));
	ASSERT_EQ(0, r.err) TH_LOG("no event: %s", strerror(-r.err));
	ASSERT_EQ(UFFD_EVENT_UNMAP, r.msg.event);
	EXPECT_EQ((unsigned long)page_addr(self, 1), r.msg.arg.remove.start);
	EXPECT_EQ((unsigned long)page_addr(self, 3), r.msg.arg.remove.end);
	EXPECT_TRUE(no_event(self->uffd));
	ASSERT_EQ(0, read_page(self->fd, self->buf, page_size));
	EXPECT_EQ(0, memcmp(self->pat_a, self->buf, page_size));

	missing_copy(_metadata, self, page_addr(self, 3), self->pat_b);
	/* The teardown unmaps the whole range again: an event for 0 and 3. */
	close(self->uffd);
	self->uffd = -1;
}

/* mremap() of the whole mapping to @dst (reserved, NR_PAGES pages). */
static char *move_mapping(struct _test_data_events *self, char *dst)
{
	char *p = mremap(self->mem, NR_PAGES * page_size, NR_PAGES * page_size,
			 MREMAP_MAYMOVE | MREMAP_FIXED, dst);

	if (p == MAP_FAILED)
		return NULL;
	self->mem = p;
	return p;
}

/*
 * mremap() with UFFD_FEATURE_EVENT_REMAP: UFFD_EVENT_REMAP from, to, len;
 * the moved mapping stays registered (page 2, absent, raises MISSING at
 * its new address) and keeps its pages (page 1).
 */
TEST_F(events, remap_event)
{
	char *old = self->mem, *dst, *moved;
	struct event_reader r = { 0 };

	ASSERT_EQ(0, write_page(self->fd, self->pat_a, page_size));
	EXPECT_EQ(0, memcmp(self->pat_a, page_addr(self, 1), page_size));
	setup_uffd(_metadata, self, UFFD_FEATURE_EVENT_REMAP, MODE_MISSING);
	dst = mmap(NULL, NR_PAGES * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, dst);
	r.uffd = self->uffd;
	ASSERT_EQ(0, pthread_create(&r.thread, NULL, event_reader_fn, &r));
	moved = move_mapping(self, dst);
	ASSERT_EQ(dst, moved) TH_LOG("mremap: %s", strerror(errno));
	ASSERT_EQ(0, join_timeout(r.thread, JOIN_TIMEOUT_S));
	ASSERT_EQ(0, r.err) TH_LOG("no event: %s", strerror(-r.err));
	ASSERT_EQ(UFFD_EVENT_REMAP, r.msg.event);
	EXPECT_EQ((unsigned long)old, r.msg.arg.remap.from);
	EXPECT_EQ((unsigned long)dst, r.msg.arg.remap.to);
	EXPECT_EQ((unsigned long)(NR_PAGES * page_size), r.msg.arg.remap.len);
	EXPECT_TRUE(no_event(self->uffd));

	EXPECT_EQ(0, memcmp(self->pat_a, page_addr(self, 1), page_size));
	missing_copy(_metadata, self, page_addr(self, 2), self->pat_b);
	ASSERT_EQ(0, read_page(self->fd, self->buf, 2 * page_size));
	EXPECT_EQ(0, memcmp(self->pat_b, self->buf, page_size));
}

/*
 * mremap() without UFFD_FEATURE_EVENT_REMAP: no event, and the moved
 * mapping is no longer registered (an absent page is zero-filled).
 */
TEST_F(events, remap_without_event)
{
	struct toucher t;
	char *dst;

	setup_uffd(_metadata, self, 0, MODE_MISSING);
	dst = mmap(NULL, NR_PAGES * page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, dst);
	ASSERT_EQ(dst, move_mapping(self, dst)) TH_LOG("mremap: %s", strerror(errno));
	EXPECT_TRUE(no_event(self->uffd));
	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, page_addr(self, 2), false, 0));
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S))
		TH_LOG("a fault on the moved mapping blocked");
	EXPECT_TRUE(all_zero(t.seen, page_size));
	EXPECT_TRUE(no_event(self->uffd));
	toucher_free(&t);
}

/*
 * Threads asleep in faults when the userfaultfd is closed: two on page 0,
 * one writing page 1 (MISSING: absent), one reading page 3 (MINOR: in the
 * file); some of their events read, some not.  close() wakes them all and
 * the faults complete without userfaultfd: zeros, the store, the file's
 * page.
 */
TEST_F(events, close_uffd_wakes_blocked_faults)
{
	struct toucher t[4];
	struct uffd_msg msg;
	int i;

	ASSERT_EQ(0, write_page(self->fd, self->pat_a, 3 * page_size));
	setup_uffd(_metadata, self, 0, MODE_BOTH);
	ASSERT_EQ(0, toucher_start(&t[0], TOUCH_PLAIN, page_addr(self, 0), false, 0));
	ASSERT_EQ(0, toucher_start(&t[1], TOUCH_PLAIN, page_addr(self, 0) + 8, false, 0));
	ASSERT_EQ(0, toucher_start(&t[2], TOUCH_PLAIN, page_addr(self, 1) + 24, true, 0x33));
	ASSERT_EQ(0, toucher_start(&t[3], TOUCH_PLAIN, page_addr(self, 3), false, 0));
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, wait_asleep(&t[i])) TH_LOG("thread %d is not asleep in its fault", i);
	/* Take two of the events; the others stay queued. */
	ASSERT_EQ(0, uffd_read_msg(self->uffd, &msg, EVENT_TIMEOUT_MS));
	ASSERT_EQ(0, uffd_read_msg(self->uffd, &msg, EVENT_TIMEOUT_MS));

	ASSERT_EQ(0, close(self->uffd));
	self->uffd = -1;
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, toucher_join(&t[i], JOIN_TIMEOUT_S))
			TH_LOG("thread %d still blocked after close", i);
	EXPECT_TRUE(all_zero(t[0].seen, page_size));
	EXPECT_TRUE(all_zero(t[1].seen, page_size));
	EXPECT_EQ(0x33, t[2].seen[24]);
	t[2].seen[24] = 0;
	EXPECT_TRUE(all_zero(t[2].seen, page_size));
	EXPECT_EQ(0, memcmp(self->pat_a, t[3].seen, page_size));
	/* No registration is left: page 2 is zero-filled. */
	EXPECT_TRUE(all_zero(page_addr(self, 2), page_size));
	ASSERT_EQ(0, read_page(self->fd, self->buf, page_size));
	EXPECT_EQ(0x33, self->buf[24]);
	for (i = 0; i < 4; i++)
		toucher_free(&t[i]);
}

/*
 * Page 1, mapped and read (served with pat_a: UFFDIO_COPY, or pwrite +
 * UFFDIO_CONTINUE of a MINOR fault), then punched: the next access raises
 * a MISSING fault, served with pat_b, which is what the thread sees.
 */
static void punch_flow(struct __test_metadata *_metadata, struct _test_data_events *self,
		       bool minor)
{
	char *page = page_addr(self, 1);
	struct toucher t;
	struct uffd_msg msg;
	int ret;

	if (minor)
		ASSERT_EQ(0, write_page(self->fd, self->pat_a, page_size));
	setup_uffd(_metadata, self, 0, MODE_BOTH);
	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, page, false, 0));
	expect_fault(_metadata, self->uffd, page, minor, &msg);
	if (minor)
		ret = uffd_continue(self->uffd, page, 0);
	else
		ret = uffd_copy(self->uffd, page, self->pat_a, 0);
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S));
	EXPECT_EQ(0, memcmp(self->pat_a, t.seen, page_size));
	toucher_free(&t);
	/* Mapped: no event. */
	EXPECT_EQ(0, memcmp(self->pat_a, page, page_size));
	EXPECT_TRUE(no_event(self->uffd));

	ASSERT_EQ(0, fallocate(self->fd, PUNCH_HOLE, page_size, page_size));
	ASSERT_EQ(0, toucher_start(&t, TOUCH_PLAIN, page + 200, false, 0));
	expect_fault(_metadata, self->uffd, page, false, &msg);
	ASSERT_EQ(0, write_page(self->fd, self->pat_b, page_size));
	ASSERT_EQ(0, uffd_continue(self->uffd, page, 0));
	ASSERT_EQ(0, toucher_join(&t, JOIN_TIMEOUT_S));
	EXPECT_EQ(0, memcmp(self->pat_b, t.seen, page_size)) TH_LOG("stale data after the punch");
	EXPECT_TRUE(no_event(self->uffd));
	toucher_free(&t);
}

TEST_F(events, punch_mapped_page_refaults_after_copy)
{
	punch_flow(_metadata, self, false);
}

TEST_F(events, punch_mapped_page_refaults_after_continue)
{
	punch_flow(_metadata, self, true);
}

TEST_HARNESS_MAIN
