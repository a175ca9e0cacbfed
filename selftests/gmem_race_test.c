// SPDX-License-Identifier: GPL-2.0
/*
 * Race tests of gmem_uffd: pwrite() population of a guest memory file
 * against userfaultfd faults on a mapping of it, the pattern of a VMM's
 * lazy restore (Firecracker restoring a snapshot with userfaultfd: one
 * thread copies the memory in with pwrite() while the vCPUs fault and a
 * handler serves their faults).
 *
 * populate_vs_faults: a gmem file of GMEM_RACE_PAGES pages (256) is mapped
 *   and registered for MISSING|MINOR.  A population thread pwrite()s whole
 *   pages, each filled with a pattern unique to the page and the round
 *   (64-bit words ((round + 1) << 32 | page << 12 | word)), in ascending
 *   or random order; three reader threads touch every page, descending or
 *   in random orders (one with write faults that do not change the data),
 *   and check every word of it; a handler thread serves each MISSING or
 *   MINOR event with pwrite() of the page's content (unless pread() shows
 *   it is there already: pread() must show all of it or zeros) and
 *   UFFDIO_CONTINUE (EEXIST: another fault of the same page won; EAGAIN:
 *   retried).  A reader must never see zeros, a mix or another page's
 *   data; after the round pread() shows every page whole.  The race is
 *   only exercised if some page faulted before its population (MISSING)
 *   and some after it (MINOR): while the rounds have not shown both,
 *   up to RACE_EXTRA_ROUNDS more are run, and if they never do the test
 *   fails.
 *
 * partial_write_order: a new page is written as four 1 KiB pwrite()s,
 *   in order, while a reader faults on it.  The handler only maps the page
 *   (UFFDIO_CONTINUE; for a MISSING event once pread() shows the page is
 *   there) and never writes.  The reader reads the page backwards (last
 *   word first) and checks every copy it takes: the first chunk complete
 *   (the page can only be mapped once the write that created it finished),
 *   every chunk either complete or zeros except a chunk whose pwrite() ran
 *   during the copy, which may be partly written, and no chunk written
 *   before a chunk that precedes it.
 *
 * After all rounds the module's debugfs counters must show no file and no
 * folio left, and at least as many events raised as served.
 *
 * Each round runs on a fresh file; GMEM_RACE_ROUNDS rounds (10) and seed
 * GMEM_RACE_SEED (time based, printed).  Every wait is bounded: the
 * handler polls with a timeout, the threads are joined against a round
 * deadline, so a lost wakeup fails the test with a message instead of
 * hanging.  With GMEM_TEST_MEMFD=1 a sealed shmem memfd stands in for the
 * gmem file (same MISSING/MINOR rules): a failure seen there too is a bug
 * of the test, not of the module.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#define RACE_PAGES_DEFAULT	256
#define RACE_ROUNDS_DEFAULT	10
#define RACE_READERS		3
#define RACE_EXTRA_ROUNDS	20	/* rounds run at most to see both kinds of event */
#define PW_PAGES		64	/* pages (iterations) per round of partial_write_order */
#define PW_CHUNKS		4

/* Bounds of every wait. */
#define POLL_MS			100	/* the handler's poll() */
#define ROUND_TIMEOUT_S		60	/* a whole round, all threads joined */
#define GATE_TIMEOUT_MS		10000	/* a thread waiting for its partner */
#define PRESENT_TIMEOUT_MS	5000	/* the handler waiting for a page to be written */
#define SNAP_TIMEOUT_MS		5000	/* the reader waiting for the last chunk */
#define FAILED_GRACE_MS		2000	/* the threads ending after a failure */

static long page_size;
static bool use_memfd;

/* ---- Helpers ---- */

static uint64_t rnd_seed(uint64_t seed, uint64_t stream)
{
	uint64_t s = seed ^ (stream + 1) * 0x9e3779b97f4a7c15ULL;

	return s ? s : 1;
}

/* A short busy wait of a random length, 0 to 2^16 loops, spread over scales. */
static void rnd_spin(uint64_t *s)
{
	unsigned long n = rnd_below(s, 1UL << rnd_below(s, 17));
	unsigned long i;

	for (i = 0; i < n; i++)
		__asm__ __volatile__("" ::: "memory");
}

static void shuffle(unsigned int *a, unsigned long n, uint64_t *s)
{
	unsigned long i, j;
	unsigned int t;

	for (i = 0; i < n; i++)
		a[i] = i;
	for (i = n - 1; i > 0; i--) {
		j = rnd_below(s, i + 1);
		t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

/* A guest memory file of @size bytes (or a sealed memfd): the fd or -errno. */
static int create_file(int dev, long size)
{
	return use_memfd ? create_sealed_memfd("gmem_race", size) :
			   create_gmem(dev, size, GMEM_SHARED);
}

/*
 * UFFDIO_CONTINUE on one page: 0 when this call or another one mapped it
 * (EEXIST; the waiters are woken explicitly then), else -errno.  EAGAIN
 * is retried a bounded number of times; *@eexist and *@eagain count.
 */
static int uffd_continue_page(int uffd, void *page, unsigned long *eexist,
			      unsigned long *eagain)
{
	struct uffdio_continue cont = {
		.range = { .start = (unsigned long)page, .len = page_size },
	};
	int ret = uffd_ioctl_retry(uffd, UFFDIO_CONTINUE, &cont, eagain);

	if (ret != -EEXIST)
		return ret;
	(*eexist)++;
	return ioctl(uffd, UFFDIO_WAKE, &cont.range) ? -errno : 0;
}

static bool debugfs_present(void)
{
	return !use_memfd && gmem_counters_present();
}

/* A debugfs counter of gmem_uffd, or -1 when it cannot be read. */
static long long counter(const char *name)
{
	return gmem_counter(name);
}

/*
 * The first error of a round: the thread that finds it writes the message,
 * every thread stops at its next check, the main thread prints it.
 */
struct round_err {
	int claimed;
	int ready;
	char msg[768];
};

static __printf(2, 3) void round_fail(struct round_err *e, const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(&e->claimed, 1, __ATOMIC_SEQ_CST))
		return;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	__atomic_store_n(&e->ready, 1, __ATOMIC_RELEASE);
}

static bool round_failed(struct round_err *e)
{
	return __atomic_load_n(&e->claimed, __ATOMIC_RELAXED);
}

/*
 * The body of both tests' handler threads: read uffd events until *@stop
 * is set or the round failed, and hand each page fault to @resolve with
 * two scratch pages; @resolve records its own failure and returns non-zero
 * to end the loop.
 */
static void serve_faults(int uffd, const int *stop, struct round_err *err,
			 int (*resolve)(void *round, const struct uffd_msg *msg,
					void *scratch0, void *scratch1),
			 void *round)
{
	void *scratch0 = malloc(page_size), *scratch1 = malloc(page_size);
	struct uffd_msg msg;
	int ret;

	if (!scratch0 || !scratch1) {
		round_fail(err, "handler: out of memory");
		goto out;
	}
	while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE) && !round_failed(err)) {
		ret = uffd_read_msg(uffd, &msg, POLL_MS);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret) {
			round_fail(err, "handler: reading the uffd: %s", strerror(-ret));
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			round_fail(err, "handler: unexpected uffd event %#x", msg.event);
			break;
		}
		if (resolve(round, &msg, scratch0, scratch1))
			break;
	}
out:
	free(scratch0);
	free(scratch1);
}

/* A barrier whose waits time out, and which a failing thread can break. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int need, count, gen;
	bool broken;
};

static int gate_init(struct gate *g, unsigned int need)
{
	pthread_condattr_t attr;
	int ret;

	memset(g, 0, sizeof(*g));
	g->need = need;
	ret = pthread_mutex_init(&g->lock, NULL);
	if (ret)
		return ret;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	ret = pthread_cond_init(&g->cond, &attr);
	pthread_condattr_destroy(&attr);
	return ret;
}

static void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

static void gate_break(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->broken = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* 0 once all @need threads arrived; -ETIMEDOUT or -ECANCELED (broken). */
static int gate_wait(struct gate *g, int timeout_ms)
{
	struct timespec ts;
	unsigned int gen;
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&g->lock);
	gen = g->gen;
	if (++g->count == g->need) {
		g->count = 0;
		g->gen++;
		pthread_cond_broadcast(&g->cond);
	}
	while (!ret && g->gen == gen && !g->broken)
		ret = -pthread_cond_timedwait(&g->cond, &g->lock, &ts);
	if (g->gen != gen)
		ret = 0;
	else if (g->broken)
		ret = -ECANCELED;
	pthread_mutex_unlock(&g->lock);
	return ret;
}

/*
 * Join @n threads by the monotonic time @deadline_ms, or FAILED_GRACE_MS
 * after @err records a failure (a thread blocked in a fault that the
 * failed handler will not serve never ends); the names of those still
 * running are listed in @stuck.  Returns how many could not be joined.
 */
static int join_all(pthread_t *threads, const char *const *names, int n, uint64_t deadline_ms,
		    struct round_err *err, bool *joined, char *stuck, size_t stuck_len)
{
	bool failed = false;
	int i, left, ret;
	uint64_t now;
	size_t off;

	do {
		if (!failed && round_failed(err)) {
			failed = true;
			if (deadline_ms > now_ms() + FAILED_GRACE_MS)
				deadline_ms = now_ms() + FAILED_GRACE_MS;
		}
		left = 0;
		for (i = 0; i < n; i++) {
			if (joined[i])
				continue;
			ret = pthread_tryjoin_np(threads[i], NULL);
			if (!ret)
				joined[i] = true;
			else
				left++;
		}
		now = now_ms();
		if (left && now < deadline_ms)
			usleep(2000);
	} while (left && now < deadline_ms);

	stuck[0] = '\0';
	for (i = 0, off = 0; i < n; i++) {
		if (!joined[i] && off < stuck_len)
			off += snprintf(stuck + off, stuck_len - off, " %s", names[i]);
	}
	return left;
}

/* ---- populate_vs_faults ---- */

struct race_round {
	int fd, uffd;
	char *base;
	unsigned long pages;
	unsigned int round;
	uint64_t seed;
	bool ascending;		/* the population order; random otherwise */
	struct gate start;
	struct round_err err;
	int stop;		/* the handler may leave */
	/* Counted by the handler */
	unsigned long missing, minor, handler_writes, cont_eexist, cont_eagain;
};

struct race_reader {
	struct race_round *r;
	int id;
	bool write_fault;
	unsigned int *order;
};

static uint64_t race_word(unsigned int round, unsigned long page, unsigned long word)
{
	/* round + 1: never a zero word, not even word 0 of page 0. */
	return (uint64_t)(round + 1) << 32 | (uint64_t)page << 12 | word;
}

static void race_fill(uint64_t *buf, unsigned int round, unsigned long page)
{
	unsigned long w;

	for (w = 0; w < (unsigned long)page_size / 8; w++)
		buf[w] = race_word(round, page, w);
}

static const char *race_describe(uint64_t got, unsigned int round, unsigned long page)
{
	if (!got)
		return "zero";
	if (got >> 32 != round + 1)
		return "a word of another round";
	if (((got >> 12) & 0xfffff) != page)
		return "a word of another page";
	return "another word of this page";
}

static void *race_populate_fn(void *arg)
{
	struct race_round *r = arg;
	uint64_t rs = rnd_seed(r->seed, 100), *buf;
	unsigned int *order;
	unsigned long i;
	ssize_t n;

	buf = malloc(page_size);
	order = calloc(r->pages, sizeof(*order));
	if (!buf || !order) {
		round_fail(&r->err, "populate: out of memory");
		goto out;
	}
	shuffle(order, r->pages, &rs);
	if (r->ascending) {
		for (i = 0; i < r->pages; i++)
			order[i] = i;
	}
	if (gate_wait(&r->start, GATE_TIMEOUT_MS)) {
		round_fail(&r->err, "populate: the start gate timed out or broke");
		goto out;
	}
	for (i = 0; i < r->pages && !round_failed(&r->err); i++) {
		race_fill(buf, r->round, order[i]);
		n = pwrite(r->fd, buf, page_size, (off_t)order[i] * page_size);
		if (n != page_size) {
			round_fail(&r->err, "populate: pwrite of page %u: %zd (%s)", order[i], n,
				   n < 0 ? strerror(errno) : "short");
			break;
		}
	}
out:
	free(order);
	free(buf);
	return NULL;
}

static void *race_reader_fn(void *arg)
{
	struct race_reader *rd = arg;
	struct race_round *r = rd->r;
	uint64_t rs = rnd_seed(r->seed, rd->id), want, got;
	const unsigned long words = page_size / 8;
	unsigned long i, w, page;
	uint64_t *p;

	if (gate_wait(&r->start, GATE_TIMEOUT_MS)) {
		round_fail(&r->err, "reader %d: the start gate timed out or broke", rd->id);
		return NULL;
	}
	for (i = 0; i < r->pages && !round_failed(&r->err); i++) {
		page = rd->order[i];
		p = (uint64_t *)(r->base + page * page_size);
		/* The first touch, a random word: the fault is taken here. */
		w = rnd_below(&rs, words);
		if (rd->write_fault)
			__atomic_fetch_or(&p[w], 0, __ATOMIC_SEQ_CST);
		else
			(void)__atomic_load_n(&p[w], __ATOMIC_RELAXED);
		for (w = 0; w < words; w++) {
			got = __atomic_load_n(&p[w], __ATOMIC_RELAXED);
			want = race_word(r->round, page, w);
			if (got != want) {
				round_fail(&r->err,
					   "reader %d (%s faults): round %u page %lu word %lu: expected %#" PRIx64 " got %#" PRIx64 " (%s)",
					   rd->id, rd->write_fault ? "write" : "read", r->round, page,
					   w, want, got, race_describe(got, r->round, page));
				break;
			}
		}
	}
	return NULL;
}

/* Serve one fault: write the page unless it is there already, then map it. */
static int race_resolve(void *round, const struct uffd_msg *msg, void *scratch0, void *scratch1)
{
	struct race_round *r = round;
	uint64_t *pat = scratch0, *rbuf = scratch1;
	unsigned long addr = msg->arg.pagefault.address & ~((unsigned long)page_size - 1);
	unsigned long page = (addr - (unsigned long)r->base) / page_size, w;
	bool zero = true;
	ssize_t n;
	int ret;

	if (addr < (unsigned long)r->base || page >= r->pages) {
		round_fail(&r->err, "handler: fault at %#llx, outside the mapping",
			   (unsigned long long)msg->arg.pagefault.address);
		return -EINVAL;
	}
	if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
		r->minor++;
	else
		r->missing++;
	race_fill(pat, r->round, page);

	/*
	 * pread() sees a page either absent (zeros) or complete: the only
	 * writes of this page all put the same pattern there.
	 */
	n = pread(r->fd, rbuf, page_size, (off_t)page * page_size);
	if (n != page_size) {
		round_fail(&r->err, "handler: pread of page %lu: %zd (%s)", page, n,
			   n < 0 ? strerror(errno) : "short");
		return -EIO;
	}
	for (w = 0; w < (unsigned long)page_size / 8 && zero; w++)
		zero = !rbuf[w];
	if (!zero && memcmp(rbuf, pat, page_size)) {
		for (w = 0; rbuf[w] == pat[w]; w++)
			;
		round_fail(&r->err,
			   "handler: pread of page %lu (%s event), word %lu: expected %#" PRIx64 " got %#" PRIx64 " (%s)",
			   page, msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR ?
			   "MINOR" : "MISSING", w, pat[w], rbuf[w],
			   race_describe(rbuf[w], r->round, page));
		return -EIO;
	}
	if (zero) {
		n = pwrite(r->fd, pat, page_size, (off_t)page * page_size);
		if (n != page_size) {
			round_fail(&r->err, "handler: pwrite of page %lu: %zd (%s)", page, n,
				   n < 0 ? strerror(errno) : "short");
			return -EIO;
		}
		r->handler_writes++;
	}
	ret = uffd_continue_page(r->uffd, (void *)addr, &r->cont_eexist, &r->cont_eagain);
	if (ret)
		round_fail(&r->err, "handler: UFFDIO_CONTINUE of page %lu: %s", page,
			   strerror(-ret));
	return ret;
}

static void *race_handler_fn(void *arg)
{
	struct race_round *r = arg;

	serve_faults(r->uffd, &r->stop, &r->err, race_resolve, r);
	return NULL;
}

FIXTURE(race) {
	int dev;
	uint64_t seed;
	unsigned long rounds;
	long long files0, folios0;	/* debugfs counters before the test, or -1 */
};

FIXTURE_SETUP(race)
{
	page_size = sysconf(_SC_PAGESIZE);
	use_memfd = env_ulong("GMEM_TEST_MEMFD", 0, 0, 1);
	self->dev = -1;
	if (!use_memfd) {
		self->dev = open(GMEM_DEV, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, self->dev) TH_LOG("open %s: %s (is gmem_uffd loaded?)", GMEM_DEV,
					       strerror(errno));
	}
	self->seed = env_ulong("GMEM_RACE_SEED", 0, 0, ~0UL);
	if (!self->seed)
		self->seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	self->rounds = env_ulong("GMEM_RACE_ROUNDS", RACE_ROUNDS_DEFAULT, 1, 100000);
	ksft_print_msg("%s: GMEM_RACE_SEED=%#" PRIx64 " GMEM_RACE_ROUNDS=%lu\n",
		       use_memfd ? "memfd" : "gmem", self->seed, self->rounds);
	self->files0 = self->folios0 = -1;
	if (debugfs_present()) {
		self->files0 = counter("files");
		self->folios0 = counter("folios");
	}
}

FIXTURE_TEARDOWN(race)
{
	if (self->dev >= 0)
		close(self->dev);
}

/* After all rounds: every file and every folio of the test is gone. */
static void check_no_leak(struct __test_metadata *_metadata, long long files0, long long folios0)
{
	if (files0 < 0 || folios0 < 0)
		return;
	EXPECT_EQ(files0, counter("files")) TH_LOG("gmem files left behind");
	EXPECT_EQ(folios0, counter("folios")) TH_LOG("folios left behind");
}

TEST_F_TIMEOUT(race, populate_vs_faults, 600)
{
	const char *const names[] = { "handler", "populate", "reader0", "reader1", "reader2" };
	unsigned long pages = env_ulong("GMEM_RACE_PAGES", RACE_PAGES_DEFAULT, 1, 1UL << 16);
	unsigned long missing = 0, minor = 0, writes = 0, eexist = 0, eagain = 0;
	long long missing0 = -1, minor0 = -1;
	struct race_reader readers[RACE_READERS];
	pthread_t threads[2 + RACE_READERS];
	struct pollfd pfd = { .events = POLLIN };
	bool joined[2 + RACE_READERS];
	struct race_round *r;
	uint64_t t0 = now_ms(), rs, *expect, *got;
	char stuck[128];
	unsigned int round;
	unsigned long p, w;
	int i, left;

	r = calloc(1, sizeof(*r));
	expect = malloc(page_size);
	got = malloc(pages * page_size);
	ASSERT_TRUE(r && expect && got);
	for (i = 0; i < RACE_READERS; i++) {
		readers[i].order = calloc(pages, sizeof(unsigned int));
		ASSERT_TRUE(readers[i].order != NULL);
	}
	if (self->files0 >= 0) {
		missing0 = counter("missing_events");
		minor0 = counter("minor_events");
	}

	for (round = 0; round < self->rounds ||
	     (round < self->rounds + RACE_EXTRA_ROUNDS && !(missing && minor)); round++) {
		memset(r, 0, sizeof(*r));
		r->pages = pages;
		r->round = round;
		r->seed = rnd_seed(self->seed, round);
		r->ascending = !(round & 1);
		rs = rnd_seed(r->seed, 200);
		ASSERT_EQ(0, gate_init(&r->start, 1 + RACE_READERS));
		r->fd = create_file(self->dev, pages * page_size);
		ASSERT_LE(0, r->fd) TH_LOG("creating a file of %lu pages: %s", pages,
					   strerror(-r->fd));
		r->base = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       r->fd, 0);
		ASSERT_NE(MAP_FAILED, r->base) TH_LOG("mmap: %s", strerror(errno));
		r->uffd = uffd_open();
		ASSERT_LE(0, r->uffd) TH_LOG("userfaultfd: %s", strerror(-r->uffd));
		ASSERT_EQ(0, uffd_register(r->uffd, r->base, pages * page_size, MODE_BOTH,
					       NULL));

		/* Reader 0 descends, 1 and 2 go in random orders, 2 with write faults. */
		for (i = 0; i < RACE_READERS; i++) {
			readers[i].r = r;
			readers[i].id = i;
			readers[i].write_fault = i == 2;
			shuffle(readers[i].order, pages, &rs);
		}
		for (p = 0; p < pages; p++)
			readers[0].order[p] = pages - 1 - p;

		memset(joined, 0, sizeof(joined));
		ASSERT_EQ(0, pthread_create(&threads[0], NULL, race_handler_fn, r));
		ASSERT_EQ(0, pthread_create(&threads[1], NULL, race_populate_fn, r));
		for (i = 0; i < RACE_READERS; i++)
			ASSERT_EQ(0, pthread_create(&threads[2 + i], NULL, race_reader_fn,
						    &readers[i]));

		/* The populator and the readers first, then the handler. */
		left = join_all(threads + 1, names + 1, 1 + RACE_READERS,
				now_ms() + ROUND_TIMEOUT_S * 1000, &r->err, joined + 1, stuck,
				sizeof(stuck));
		__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
		if (left)
			round_fail(&r->err, "round %u: threads stuck after %d s:%s", round,
				   ROUND_TIMEOUT_S, stuck);
		left += join_all(threads, names, 1, now_ms() + 5000, &r->err, joined, stuck,
				 sizeof(stuck));
		ASSERT_FALSE(round_failed(&r->err))
			TH_LOG("round %u (%s population, seed %#" PRIx64 "): %s", round,
			       r->ascending ? "ascending" : "random", r->seed,
			       __atomic_load_n(&r->err.ready, __ATOMIC_ACQUIRE) ? r->err.msg :
			       "(message not written yet)");
		ASSERT_EQ(0, left) TH_LOG("round %u: the handler does not stop:%s", round, stuck);

		/* No event is left, and the file holds every page's pattern. */
		pfd.fd = r->uffd;
		EXPECT_EQ(0, poll(&pfd, 1, 0)) TH_LOG("round %u: uffd event left", round);
		ASSERT_EQ((ssize_t)(pages * page_size), pread(r->fd, got, pages * page_size, 0));
		for (p = 0; p < pages; p++) {
			race_fill(expect, round, p);
			if (!memcmp(expect, got + p * page_size / 8, page_size))
				continue;
			for (w = 0; expect[w] == got[p * page_size / 8 + w]; w++)
				;
			ASSERT_EQ(expect[w], got[p * page_size / 8 + w])
				TH_LOG("round %u: pread after the round: page %lu word %lu", round,
				       p, w);
		}

		missing += r->missing;
		minor += r->minor;
		writes += r->handler_writes;
		eexist += r->cont_eexist;
		eagain += r->cont_eagain;
		close(r->uffd);
		munmap(r->base, pages * page_size);
		close(r->fd);
		gate_destroy(&r->start);
	}

	ksft_print_msg("%u rounds of %lu pages in %.1f s: %lu MISSING and %lu MINOR events, %lu handler writes, CONTINUE: %lu EEXIST %lu EAGAIN\n",
		       round, pages, (now_ms() - t0) / 1000.0, missing, minor, writes, eexist,
		       eagain);
	EXPECT_TRUE(missing && minor)
		TH_LOG("no %s event in %u rounds: the race was not exercised",
		       missing ? "MINOR" : minor ? "MISSING" : "MISSING or MINOR", round);
	if (missing0 >= 0) {
		/* The module counts each event it raised; some faults raise more. */
		EXPECT_LE((long long)missing, counter("missing_events") - missing0);
		EXPECT_LE((long long)minor, counter("minor_events") - minor0);
	}
	check_no_leak(_metadata, self->files0, self->folios0);
	for (i = 0; i < RACE_READERS; i++)
		free(readers[i].order);
	free(got);
	free(expect);
	free(r);
}

/* ---- partial_write_order ---- */

enum chunk_state { CHUNK_ZERO, CHUNK_PARTIAL, CHUNK_FULL };

static const char *const chunk_state_name[] = { "zero", "partial", "full" };

struct pw_round {
	int fd, uffd;
	char *base;
	unsigned long pages;
	unsigned int round;
	uint64_t seed;
	struct gate gate;	/* writer and reader, once per page */
	struct round_err err;
	int stop;
	/* Per page: chunks whose pwrite() started, and finished. */
	unsigned int *started, *finished;
	/* Counted by the handler */
	unsigned long missing, minor, cont_eexist, cont_eagain;
	/* Counted by the reader */
	unsigned long snapshots, partial_seen;
	unsigned long first_seen[PW_CHUNKS + 1];	/* full chunks at the first look */
};

static unsigned long pw_chunk_size(void)
{
	return page_size / PW_CHUNKS;
}

/* Byte @off of chunk @c of @page in @round: never zero. */
static unsigned char pw_byte(unsigned int round, unsigned long page, unsigned int c,
			     unsigned long off)
{
	return 1 + (off + 37 * c + 101 * page + 13 * round) % 255;
}

static void pw_fill(unsigned char *buf, unsigned int round, unsigned long page, unsigned int c)
{
	unsigned long i;

	for (i = 0; i < pw_chunk_size(); i++)
		buf[i] = pw_byte(round, page, c, i);
}

static void *pw_writer_fn(void *arg)
{
	struct pw_round *r = arg;
	uint64_t rs = rnd_seed(r->seed, 300);
	unsigned long page, csize = pw_chunk_size();
	unsigned char *buf = malloc(csize);
	unsigned int c;
	ssize_t n;

	if (!buf) {
		round_fail(&r->err, "writer: out of memory");
		gate_break(&r->gate);
		return NULL;
	}
	for (page = 0; page < r->pages && !round_failed(&r->err); page++) {
		if (gate_wait(&r->gate, GATE_TIMEOUT_MS)) {
			round_fail(&r->err, "writer: page %lu: the reader did not come", page);
			break;
		}
		for (c = 0; c < PW_CHUNKS; c++) {
			/* Sometimes long pauses: the reader sees every stage. */
			if (rnd_below(&rs, 4) == 0)
				usleep(1 + rnd_below(&rs, 300));
			else
				rnd_spin(&rs);
			pw_fill(buf, r->round, page, c);
			__atomic_store_n(&r->started[page], c + 1, __ATOMIC_SEQ_CST);
			n = pwrite(r->fd, buf, csize, (off_t)(page * page_size + c * csize));
			if (n != (ssize_t)csize) {
				round_fail(&r->err, "writer: pwrite of page %lu chunk %u: %zd (%s)",
					   page, c, n, n < 0 ? strerror(errno) : "short");
				break;
			}
			__atomic_store_n(&r->finished[page], c + 1, __ATOMIC_SEQ_CST);
		}
	}
	gate_break(&r->gate);
	free(buf);
	return NULL;
}

/*
 * Check one copy of @page, taken backwards between reading finished[]
 * (@fin) and started[] (@st): returns the number of complete chunks, or -1
 * after reporting what is wrong.
 */
static int pw_check(struct pw_round *r, unsigned long page, const unsigned char *snap,
		    unsigned int fin, unsigned int st, unsigned long nsnap)
{
	enum chunk_state state[PW_CHUNKS];
	unsigned long csize = pw_chunk_size(), i;
	unsigned int c, nfull = 0, ndata, nzero;
	char states[64];
	int highest = -1, len = 0;
	unsigned char want;
	const char *why = NULL;

	for (c = 0; c < PW_CHUNKS; c++) {
		ndata = nzero = 0;
		for (i = 0; i < csize; i++) {
			want = pw_byte(r->round, page, c, i);
			if (snap[c * csize + i] == want) {
				ndata++;
			} else if (!snap[c * csize + i]) {
				nzero++;
			} else {
				round_fail(&r->err,
					   "round %u page %lu look %lu: byte %lu (chunk %u): expected %#x or 0, got %#x",
					   r->round, page, nsnap, c * csize + i, c, want,
					   snap[c * csize + i]);
				return -1;
			}
		}
		state[c] = !ndata ? CHUNK_ZERO : !nzero ? CHUNK_FULL : CHUNK_PARTIAL;
		if (state[c] != CHUNK_ZERO)
			highest = c;
		if (state[c] == CHUNK_FULL)
			nfull++;
	}

	if (state[0] != CHUNK_FULL)
		why = "the first chunk is not complete though the page is mapped";
	for (c = 0; !why && (int)c < highest; c++) {
		if (state[c] != CHUNK_FULL)
			why = "a chunk is not complete while a later one has data";
	}
	for (c = 0; !why && c < PW_CHUNKS; c++) {
		if (c < fin && state[c] != CHUNK_FULL)
			why = "a chunk written before the copy is not complete";
		else if (c >= st && state[c] != CHUNK_ZERO)
			why = "a chunk not written yet has data";
	}
	if (!why) {
		if (state[highest] == CHUNK_PARTIAL)
			r->partial_seen++;
		return nfull;
	}
	for (c = 0; c < PW_CHUNKS; c++)
		len += snprintf(states + len, sizeof(states) - len, "%s%s", c ? "," : "",
				chunk_state_name[state[c]]);
	round_fail(&r->err,
		   "round %u page %lu look %lu: %s: chunks %s; pwrite()s finished before the copy %u, started after it %u",
		   r->round, page, nsnap, why, states, fin, st);
	return -1;
}

static void *pw_reader_fn(void *arg)
{
	struct pw_round *r = arg;
	const unsigned long words = page_size / 8;
	uint64_t rs = rnd_seed(r->seed, 400), deadline, *snap;
	unsigned int fin, st;
	unsigned long page, w, nsnap;
	uint64_t *p;
	int full;

	snap = malloc(page_size);
	if (!snap) {
		round_fail(&r->err, "reader: out of memory");
		gate_break(&r->gate);
		return NULL;
	}
	for (page = 0; page < r->pages && !round_failed(&r->err); page++) {
		if (gate_wait(&r->gate, GATE_TIMEOUT_MS)) {
			round_fail(&r->err, "reader: page %lu: the writer did not come", page);
			break;
		}
		rnd_spin(&rs);
		if (rnd_below(&rs, 4) == 0)
			rnd_spin(&rs);
		p = (uint64_t *)(r->base + page * page_size);
		deadline = now_ms() + SNAP_TIMEOUT_MS;
		for (nsnap = 0;; nsnap++) {
			fin = __atomic_load_n(&r->finished[page], __ATOMIC_SEQ_CST);
			/* Backwards: the first load takes the fault. */
			for (w = words; w-- > 0;)
				snap[w] = __atomic_load_n(&p[w], __ATOMIC_ACQUIRE);
			st = __atomic_load_n(&r->started[page], __ATOMIC_SEQ_CST);
			r->snapshots++;
			full = pw_check(r, page, (unsigned char *)snap, fin, st, nsnap);
			if (full < 0)
				break;
			if (!nsnap)
				r->first_seen[full]++;
			if (full == PW_CHUNKS)
				break;
			if (round_failed(&r->err))
				break;
			if (now_ms() > deadline) {
				round_fail(&r->err,
					   "round %u page %lu: still %d complete chunk(s) after %d ms",
					   r->round, page, full, SNAP_TIMEOUT_MS);
				break;
			}
			if (nsnap > 64)
				sched_yield();
		}
	}
	gate_break(&r->gate);
	free(snap);
	return NULL;
}

/*
 * The handler never writes: a MINOR fault is mapped at once, a MISSING
 * one once pread() shows the page's first chunk (the page exists then).
 */
static int pw_resolve(void *round, const struct uffd_msg *msg, void *scratch0, void *scratch1)
{
	struct pw_round *r = round;
	unsigned char *rbuf = scratch0, *chunk0 = scratch1;
	unsigned long addr = msg->arg.pagefault.address & ~((unsigned long)page_size - 1);
	unsigned long page = (addr - (unsigned long)r->base) / page_size;
	unsigned long csize = pw_chunk_size(), i;
	uint64_t deadline = now_ms() + PRESENT_TIMEOUT_MS;
	unsigned long polls = 0;
	bool zero;
	ssize_t n;
	int ret;

	if (addr < (unsigned long)r->base || page >= r->pages) {
		round_fail(&r->err, "handler: fault at %#llx, outside the mapping",
			   (unsigned long long)msg->arg.pagefault.address);
		return -EINVAL;
	}
	if (msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) {
		r->minor++;
	} else {
		r->missing++;
		pw_fill(chunk0, r->round, page, 0);
		for (;;) {
			n = pread(r->fd, rbuf, csize, (off_t)page * page_size);
			if (n != (ssize_t)csize) {
				round_fail(&r->err, "handler: pread of page %lu: %zd (%s)", page,
					   n, n < 0 ? strerror(errno) : "short");
				return -EIO;
			}
			for (i = 0, zero = true; i < csize && zero; i++)
				zero = !rbuf[i];
			if (!zero)
				break;
			if (round_failed(&r->err))
				return -ECANCELED;
			if (now_ms() > deadline) {
				round_fail(&r->err,
					   "handler: page %lu still absent %d ms after its MISSING event",
					   page, PRESENT_TIMEOUT_MS);
				return -ETIMEDOUT;
			}
			if (++polls < 1000)
				sched_yield();
			else
				usleep(50);
		}
		/* pread() never shows a page before its first write completed. */
		if (memcmp(rbuf, chunk0, csize)) {
			for (i = 0; rbuf[i] == chunk0[i]; i++)
				;
			round_fail(&r->err,
				   "handler: pread of page %lu byte %lu: expected %#x, got %#x (first chunk torn)",
				   page, i, chunk0[i], rbuf[i]);
			return -EIO;
		}
	}
	ret = uffd_continue_page(r->uffd, (void *)addr, &r->cont_eexist, &r->cont_eagain);
	if (ret)
		round_fail(&r->err, "handler: UFFDIO_CONTINUE of page %lu: %s", page,
			   strerror(-ret));
	return ret;
}

static void *pw_handler_fn(void *arg)
{
	struct pw_round *r = arg;

	serve_faults(r->uffd, &r->stop, &r->err, pw_resolve, r);
	return NULL;
}

TEST_F_TIMEOUT(race, partial_write_order, 600)
{
	const char *const names[] = { "handler", "writer", "reader" };
	unsigned long missing = 0, minor = 0, eexist = 0, eagain = 0, snapshots = 0, partial = 0;
	unsigned long first_seen[PW_CHUNKS + 1] = { 0 }, csize = pw_chunk_size(), page, i;
	const unsigned long pages = PW_PAGES;
	pthread_t threads[3];
	bool joined[3];
	struct pw_round *r;
	uint64_t t0 = now_ms();
	unsigned char *got, *want;
	unsigned int round, c;
	char stuck[128];
	int left;

	ASSERT_EQ(0, page_size % (PW_CHUNKS * 8));
	r = calloc(1, sizeof(*r));
	got = malloc(pages * page_size);
	want = malloc(csize);
	ASSERT_TRUE(r && got && want);
	r->started = calloc(pages, sizeof(unsigned int));
	r->finished = calloc(pages, sizeof(unsigned int));
	ASSERT_TRUE(r->started && r->finished);

	for (round = 0; round < self->rounds; round++) {
		unsigned int *started = r->started, *finished = r->finished;

		memset(r, 0, sizeof(*r));
		memset(started, 0, pages * sizeof(unsigned int));
		memset(finished, 0, pages * sizeof(unsigned int));
		r->started = started;
		r->finished = finished;
		r->pages = pages;
		r->round = round;
		r->seed = rnd_seed(self->seed, 1000 + round);
		ASSERT_EQ(0, gate_init(&r->gate, 2));
		r->fd = create_file(self->dev, pages * page_size);
		ASSERT_LE(0, r->fd) TH_LOG("creating a file: %s", strerror(-r->fd));
		r->base = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       r->fd, 0);
		ASSERT_NE(MAP_FAILED, r->base) TH_LOG("mmap: %s", strerror(errno));
		r->uffd = uffd_open();
		ASSERT_LE(0, r->uffd) TH_LOG("userfaultfd: %s", strerror(-r->uffd));
		ASSERT_EQ(0, uffd_register(r->uffd, r->base, pages * page_size, MODE_BOTH,
					       NULL));

		memset(joined, 0, sizeof(joined));
		ASSERT_EQ(0, pthread_create(&threads[0], NULL, pw_handler_fn, r));
		ASSERT_EQ(0, pthread_create(&threads[1], NULL, pw_writer_fn, r));
		ASSERT_EQ(0, pthread_create(&threads[2], NULL, pw_reader_fn, r));
		left = join_all(threads + 1, names + 1, 2, now_ms() + ROUND_TIMEOUT_S * 1000,
				&r->err, joined + 1, stuck, sizeof(stuck));
		__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
		if (left)
			round_fail(&r->err, "round %u: threads stuck after %d s:%s", round,
				   ROUND_TIMEOUT_S, stuck);
		left += join_all(threads, names, 1, now_ms() + 5000, &r->err, joined, stuck,
				 sizeof(stuck));
		ASSERT_FALSE(round_failed(&r->err))
			TH_LOG("round %u (seed %#" PRIx64 "): %s", round, r->seed,
			       __atomic_load_n(&r->err.ready, __ATOMIC_ACQUIRE) ? r->err.msg :
			       "(message not written yet)");
		ASSERT_EQ(0, left) TH_LOG("round %u: the handler does not stop:%s", round, stuck);

		/* Every page ends complete. */
		ASSERT_EQ((ssize_t)(pages * page_size), pread(r->fd, got, pages * page_size, 0));
		for (page = 0; page < pages; page++) {
			for (c = 0; c < PW_CHUNKS; c++) {
				pw_fill(want, round, page, c);
				if (!memcmp(want, got + page * page_size + c * csize, csize))
					continue;
				for (i = 0; want[i] == got[page * page_size + c * csize + i]; i++)
					;
				ASSERT_EQ(want[i], got[page * page_size + c * csize + i])
					TH_LOG("round %u: pread after the round: page %lu chunk %u byte %lu",
					       round, page, c, i);
			}
		}
		missing += r->missing;
		minor += r->minor;
		eexist += r->cont_eexist;
		eagain += r->cont_eagain;
		snapshots += r->snapshots;
		partial += r->partial_seen;
		for (c = 0; c <= PW_CHUNKS; c++)
			first_seen[c] += r->first_seen[c];
		close(r->uffd);
		munmap(r->base, pages * page_size);
		close(r->fd);
		gate_destroy(&r->gate);
	}

	ksft_print_msg("%lu rounds of %lu pages in %.1f s: %lu MISSING and %lu MINOR events, CONTINUE: %lu EEXIST %lu EAGAIN\n",
		       self->rounds, pages, (now_ms() - t0) / 1000.0, missing, minor, eexist,
		       eagain);
	ksft_print_msg("first look at a page: 1/2/3/4 chunks complete %lu/%lu/%lu/%lu; %lu copies checked, %lu with a chunk being written\n",
		       first_seen[1], first_seen[2], first_seen[3], first_seen[4], snapshots,
		       partial);
	check_no_leak(_metadata, self->files0, self->folios0);
	free(r->started);
	free(r->finished);
	free(want);
	free(got);
	free(r);
}

TEST_HARNESS_MAIN
