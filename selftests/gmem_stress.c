// SPDX-License-Identifier: GPL-2.0
/*
 * Stress test of gmem_uffd: worker threads run a random mix of operations
 * on one guest memory file, mapped and registered with userfaultfd for
 * MISSING and MINOR, for a given time, while handler threads serve the
 * faults; every page read is checked against a checksum.
 *
 *   gmem_stress [-t THREADS] [-s SECONDS] [-p PAGES] [-S SEED]
 *   (defaults: 8 threads, 10 s, 128 pages, a time-based seed, printed)
 *
 * The model: page p always reads as content(p, gen[p]) -- a header with p
 * and gen[p], then words derived from both -- or, through pread(), as
 * zeros while it is absent from the file.  Its checksum is kept in sum[p].
 * Two locks per page keep the model exact:
 *  - access (a rwlock): operations that only read the page or put the
 *    same content back (mapping reads and stores of the same value,
 *    pread, UFFDIO_COPY, pwrite + UFFDIO_CONTINUE, MADV_DONTNEED) share
 *    it; operations that change the content or free the page (pwrite or a
 *    mapping write of a new generation, punch hole) hold it exclusively;
 *  - fill (a mutex): held by whoever writes content into the page: the
 *    writers while they change gen[p] and write it, the handlers while
 *    they serve a MISSING fault, the UFFDIO_COPY and CONTINUE operations,
 *    and the punch.  So a page is absent, or holds content(p, gen[p]),
 *    whenever its fill lock is free; a handler serving a MISSING fault
 *    (however late) writes the current generation.
 * A mapping write of a new generation first faults the page in, then
 * takes the fill lock: the page cannot become absent meanwhile (that takes
 * the access lock), so only MINOR faults (which need no lock) can follow.
 *
 * Operations: read through the mapping (MISSING and MINOR faults), store
 * the same bytes back through the mapping (write faults), pread,
 * pwrite of a new generation, a mapping write of a new generation, punch
 * hole of 1-4 pages, UFFDIO_COPY, pwrite + UFFDIO_CONTINUE, MADV_DONTNEED.
 * Handlers serve MISSING faults with UFFDIO_COPY or pwrite +
 * UFFDIO_CONTINUE (at random), MINOR faults with UFFDIO_CONTINUE; EEXIST
 * means another fill won (the waiters are woken with UFFDIO_WAKE).  EFAULT
 * or ENOENT on CONTINUE means the page left the file after the event (woken:
 * the fault is retried as MISSING), which only a punch does: it is accepted
 * only if a punch of that page started after the handler read the event.
 * Each punch takes the next number of a sequence and stamps its pages with
 * it (both locks held); the handler notes the sequence right before it
 * reads an event.  No punch of the page can fall between the fault and
 * that read: the faulting worker holds the page's access lock until its
 * fault is served, and a fault woken before its event is read takes the
 * event with it.
 *
 * At the end every page is read once more through the mapping and with
 * pread(), no event may be left, and the module's debugfs counters must be
 * back at their values from before.  Any mismatch, an unexpected errno or
 * an operation that does not end within OP_TIMEOUT_S fails the test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
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
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"
#include "gmem_util.h"

#define DEF_THREADS		8
#define DEF_SECONDS		10
#define DEF_PAGES		128
#define MAX_THREADS		64
#define NR_HANDLERS		2
#define MAX_PUNCH		4
#define HEADER_MAGIC		0x676d656d73747273ULL	/* "gmemstrs" */

/* Bounds of every wait. */
#define POLL_MS			100
#define OP_TIMEOUT_S		60	/* one operation, its faults included */
#define JOIN_TIMEOUT_S		30

enum op {
	OP_READ_MAP, OP_STORE_SAME, OP_PREAD, OP_PWRITE_NEW, OP_MAP_WRITE_NEW, OP_PUNCH,
	OP_COPY, OP_CONTINUE, OP_DONTNEED, NR_OPS
};

static const struct {
	const char *name;
	unsigned int weight;
} ops[NR_OPS] = {
	[OP_READ_MAP]		= { "read_map",		30 },
	[OP_STORE_SAME]		= { "store_same",	10 },
	[OP_PREAD]		= { "pread",		14 },
	[OP_PWRITE_NEW]		= { "pwrite",		10 },
	[OP_MAP_WRITE_NEW]	= { "map_write",	8 },
	[OP_PUNCH]		= { "punch",		8 },
	[OP_COPY]		= { "uffd_copy",	8 },
	[OP_CONTINUE]		= { "pwrite_continue",	8 },
	[OP_DONTNEED]		= { "dontneed",		4 },
};

struct page_state {
	pthread_rwlock_t access;
	pthread_mutex_t fill;
	uint64_t gen;		/* changed with both locks held */
	uint64_t sum;		/* checksum of content(p, gen) */
	uint64_t punched;	/* S.punch_seq of its last punch */
};

struct worker {
	int id;
	uint64_t rs;		/* its random state */
	uint64_t op_start_ms;	/* 0 between operations */
	enum op cur;
	long cur_page;
	unsigned long count[NR_OPS];
	char *buf, *buf2;
	pthread_t thread;
};

struct handler {
	int id;
	uint64_t rs;
	unsigned long missing, minor, eexist, efault, eagain;
	uint64_t since;		/* S.punch_seq before the event was read */
	char *buf;
	pthread_t thread;
};

static struct {
	long page_size, pages;
	int fd, uffd;
	char *mem;
	struct page_state *ps;
	uint64_t punch_seq;	/* punches so far */
	int stop_workers, stop_handlers;
	int failed;
	char msg[512];
} S;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* content(p, gen): magic ^ p, gen, then a word per index derived from both. */
static void make_content(uint64_t *buf, long page, uint64_t gen)
{
	uint64_t base = mix((uint64_t)page << 32 ^ gen);
	long w;

	buf[0] = HEADER_MAGIC ^ page;
	buf[1] = gen;
	for (w = 2; w < S.page_size / 8; w++)
		buf[w] = mix(base + w);
}

static uint64_t checksum(const uint64_t *buf)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	long w;

	for (w = 0; w < S.page_size / 8; w++)
		h = (h ^ buf[w]) * 0x100000001b3ULL;
	return h;
}

static __printf(1, 2) void fail(const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(&S.failed, 1, __ATOMIC_SEQ_CST))
		return;
	va_start(ap, fmt);
	vsnprintf(S.msg, sizeof(S.msg), fmt, ap);
	va_end(ap);
	__atomic_store_n(&S.stop_workers, 1, __ATOMIC_RELEASE);
}

static bool failed(void)
{
	return __atomic_load_n(&S.failed, __ATOMIC_ACQUIRE);
}

/* What a page that is not content(p, gen) looks like, for the message. */
static void describe(char *out, size_t len, const uint64_t *buf, long page, uint64_t gen)
{
	uint64_t want[2] = { HEADER_MAGIC ^ page, gen };
	long w;

	for (w = 0; w < S.page_size / 8 && !buf[w]; w++)
		;
	if (w == S.page_size / 8) {
		snprintf(out, len, "all zeros");
		return;
	}
	if ((buf[0] ^ HEADER_MAGIC) < (uint64_t)S.pages)
		snprintf(out, len, "header of page %" PRIu64 " gen %" PRIu64 " (want page %ld gen %" PRIu64 ")%s",
			 (uint64_t)(buf[0] ^ HEADER_MAGIC), buf[1], page, gen,
			 !memcmp(buf, want, sizeof(want)) ? ", body differs" : "");
	else
		snprintf(out, len, "no header (%#" PRIx64 " %#" PRIx64 ")", buf[0], buf[1]);
}

/* Check a copy of page @page against the model; @zero_ok: zeros pass too. */
static bool check_page(const char *what, const uint64_t *buf, long page, bool zero_ok)
{
	struct page_state *ps = &S.ps[page];
	char d[200];
	long w;

	if (checksum(buf) == ps->sum)
		return true;
	if (zero_ok) {
		for (w = 0; w < S.page_size / 8 && !buf[w]; w++)
			;
		if (w == S.page_size / 8)
			return true;
	}
	describe(d, sizeof(d), buf, page, ps->gen);
	fail("%s of page %ld: checksum mismatch: %s", what, page, d);
	return false;
}

static char *addr_of(long page)
{
	return S.mem + page * S.page_size;
}

static int uffd_copy_page(long page, const void *src)
{
	struct uffdio_copy copy = {
		.dst = (unsigned long)addr_of(page),
		.src = (unsigned long)src,
		.len = S.page_size,
	};

	return uffd_ioctl_retry(S.uffd, UFFDIO_COPY, &copy, NULL);
}

static int uffd_continue_page(long page)
{
	struct uffdio_continue cont = {
		.range = { .start = (unsigned long)addr_of(page), .len = S.page_size },
	};

	return uffd_ioctl_retry(S.uffd, UFFDIO_CONTINUE, &cont, NULL);
}

static int uffd_wake_page(long page)
{
	struct uffdio_range range = { .start = (unsigned long)addr_of(page), .len = S.page_size };

	return ioctl(S.uffd, UFFDIO_WAKE, &range) ? -errno : 0;
}

static int pwrite_page(long page, const void *buf)
{
	ssize_t n = pwrite(S.fd, buf, S.page_size, page * S.page_size);

	return n == S.page_size ? 0 : n < 0 ? -errno : -EIO;
}

/* Put content(page, gen) in the file and map it: fill lock held. */
static int fill_page(long page, bool copy, char *buf, unsigned long *eexist)
{
	int ret;

	make_content((uint64_t *)buf, page, S.ps[page].gen);
	if (copy) {
		ret = uffd_copy_page(page, buf);
	} else {
		ret = pwrite_page(page, buf);
		if (!ret)
			ret = uffd_continue_page(page);
	}
	if (ret == -EEXIST) {
		(*eexist)++;
		ret = uffd_wake_page(page);
	}
	return ret;
}

/* ---- Handlers ---- */

static void serve(struct handler *h, const struct uffd_msg *msg)
{
	unsigned long addr = msg->arg.pagefault.address;
	bool minor = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR;
	long page;
	int ret;

	if (addr < (unsigned long)S.mem || addr >= (unsigned long)addr_of(S.pages)) {
		fail("a fault at %#lx, outside the mapping", addr);
		return;
	}
	page = (addr - (unsigned long)S.mem) / S.page_size;
	if (minor) {
		h->minor++;
		ret = uffd_continue_page(page);
		if (ret == -EEXIST) {
			h->eexist++;
			ret = uffd_wake_page(page);
		} else if ((ret == -EFAULT || ret == -ENOENT) &&
			   __atomic_load_n(&S.ps[page].punched, __ATOMIC_SEQ_CST) > h->since) {
			/* Punched since: the fault comes back as MISSING. */
			h->efault++;
			ret = uffd_wake_page(page);
		}
		if (ret)
			fail("handler %d: MINOR fault on page %ld: %s%s", h->id, page, strerror(-ret),
			     ret == -EFAULT || ret == -ENOENT ?
			     " with no punch of the page since the event" : "");
		return;
	}
	h->missing++;
	pthread_mutex_lock(&S.ps[page].fill);
	ret = fill_page(page, rnd_below(&h->rs, 2), h->buf, &h->eexist);
	pthread_mutex_unlock(&S.ps[page].fill);
	if (ret)
		fail("handler %d: MISSING fault on page %ld: %s", h->id, page, strerror(-ret));
}

static void *handler_fn(void *arg)
{
	struct handler *h = arg;
	struct pollfd pfd = { .fd = S.uffd, .events = POLLIN };
	struct uffd_msg msg;
	int ret;

	while (!__atomic_load_n(&S.stop_handlers, __ATOMIC_ACQUIRE)) {
		/* Wait for an event, note the punches so far, then read it. */
		if (!poll(&pfd, 1, POLL_MS))
			continue;
		h->since = __atomic_load_n(&S.punch_seq, __ATOMIC_SEQ_CST);
		ret = uffd_read_msg(S.uffd, &msg, 1);
		if (ret == -ETIMEDOUT)	/* the other handler took it */
			continue;
		if (ret) {
			fail("handler %d: reading the uffd: %s", h->id, strerror(-ret));
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			fail("handler %d: unexpected event %#x", h->id, msg.event);
			break;
		}
		serve(h, &msg);
	}
	return NULL;
}

/* ---- Workers ---- */

static void op_read_map(struct worker *w, long page)
{
	memcpy(w->buf, addr_of(page), S.page_size);
	check_page("a read through the mapping", (uint64_t *)w->buf, page, false);
}

static void op_store_same(struct worker *w, long page)
{
	uint64_t *word = (uint64_t *)addr_of(page) + rnd_below(&w->rs, S.page_size / 8);
	uint64_t v = __atomic_load_n(word, __ATOMIC_RELAXED);

	__atomic_store_n(word, v, __ATOMIC_RELAXED);
	/* The first word can fault as a write, before any read. */
	word = (uint64_t *)addr_of(page);
	if (rnd_below(&w->rs, 2))
		__atomic_store_n(word, HEADER_MAGIC ^ page, __ATOMIC_RELAXED);
	op_read_map(w, page);
}

static void op_pread(struct worker *w, long page)
{
	ssize_t n = pread(S.fd, w->buf, S.page_size, page * S.page_size);

	if (n != S.page_size) {
		fail("pread of page %ld: %zd (%s)", page, n, n < 0 ? strerror(errno) : "short");
		return;
	}
	check_page("pread", (uint64_t *)w->buf, page, true);
}

/* A new generation of @page, by pwrite() or through the mapping. */
static void op_write_new(struct worker *w, long page, bool map)
{
	struct page_state *ps = &S.ps[page];
	int ret = 0;

	if (map)	/* fault it in first (see the top) */
		(void)__atomic_load_n((uint64_t *)addr_of(page), __ATOMIC_RELAXED);
	pthread_mutex_lock(&ps->fill);
	make_content((uint64_t *)w->buf, page, ps->gen + 1);
	ps->gen++;
	ps->sum = checksum((uint64_t *)w->buf);
	if (map)
		memcpy(addr_of(page), w->buf, S.page_size);
	else
		ret = pwrite_page(page, w->buf);
	pthread_mutex_unlock(&ps->fill);
	if (ret) {
		fail("pwrite of page %ld: %s", page, strerror(-ret));
		return;
	}
	op_read_map(w, page);
}

static void op_fill(struct worker *w, long page, bool copy)
{
	unsigned long eexist = 0;
	int ret;

	pthread_mutex_lock(&S.ps[page].fill);
	ret = fill_page(page, copy, w->buf2, &eexist);
	pthread_mutex_unlock(&S.ps[page].fill);
	if (ret)
		fail("%s of page %ld: %s", copy ? "UFFDIO_COPY" : "pwrite + UFFDIO_CONTINUE",
		     page, strerror(-ret));
}

static void run_op(struct worker *w, enum op what, long page)
{
	long n = 1, i;
	uint64_t seq;

	if (what == OP_PUNCH) {
		n = 1 + rnd_below(&w->rs, MAX_PUNCH);
		if (page + n > S.pages)
			n = S.pages - page;
	}
	w->cur = what;
	w->cur_page = page;
	__atomic_store_n(&w->op_start_ms, now_ms(), __ATOMIC_RELEASE);
	for (i = 0; i < n; i++) {
		if (what == OP_PUNCH || what == OP_PWRITE_NEW || what == OP_MAP_WRITE_NEW)
			pthread_rwlock_wrlock(&S.ps[page + i].access);
		else
			pthread_rwlock_rdlock(&S.ps[page].access);
	}
	switch (what) {
	case OP_READ_MAP:
		op_read_map(w, page);
		break;
	case OP_STORE_SAME:
		op_store_same(w, page);
		break;
	case OP_PREAD:
		op_pread(w, page);
		break;
	case OP_PWRITE_NEW:
		op_write_new(w, page, false);
		break;
	case OP_MAP_WRITE_NEW:
		op_write_new(w, page, true);
		break;
	case OP_PUNCH:
		seq = __atomic_add_fetch(&S.punch_seq, 1, __ATOMIC_SEQ_CST);
		for (i = 0; i < n; i++) {
			pthread_mutex_lock(&S.ps[page + i].fill);
			__atomic_store_n(&S.ps[page + i].punched, seq, __ATOMIC_SEQ_CST);
		}
		if (fallocate(S.fd, PUNCH_HOLE, page * S.page_size, n * S.page_size))
			fail("punch hole of pages %ld-%ld: %s", page, page + n - 1,
			     strerror(errno));
		for (i = 0; i < n; i++)
			pthread_mutex_unlock(&S.ps[page + i].fill);
		break;
	case OP_COPY:
		op_fill(w, page, true);
		break;
	case OP_CONTINUE:
		op_fill(w, page, false);
		break;
	case OP_DONTNEED:
		if (madvise(addr_of(page), S.page_size, MADV_DONTNEED))
			fail("MADV_DONTNEED of page %ld: %s", page, strerror(errno));
		break;
	default:
		break;
	}
	for (i = 0; i < n; i++)
		pthread_rwlock_unlock(&S.ps[page + i].access);
	__atomic_store_n(&w->op_start_ms, 0, __ATOMIC_RELEASE);
	w->count[what]++;
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	unsigned int total = 0, r, i;

	for (i = 0; i < NR_OPS; i++)
		total += ops[i].weight;
	while (!__atomic_load_n(&S.stop_workers, __ATOMIC_ACQUIRE)) {
		r = rnd_below(&w->rs, total);
		for (i = 0; r >= ops[i].weight; i++)
			r -= ops[i].weight;
		run_op(w, i, rnd_below(&w->rs, S.pages));
	}
	return NULL;
}

/* Exit at once with the message and what each worker is doing. */
static __noreturn void abort_stuck(const char *why, struct worker *w, int n)
{
	uint64_t now = now_ms(), t;
	int i;

	ksft_print_msg("%s\n", why);
	if (failed())
		ksft_print_msg("first failure: %s\n", S.msg);
	for (i = 0; i < n; i++) {
		t = __atomic_load_n(&w[i].op_start_ms, __ATOMIC_ACQUIRE);
		if (t)
			ksft_print_msg("worker %d: %s of page %ld for %" PRIu64 " ms\n", i,
				       ops[w[i].cur].name, w[i].cur_page, now - t);
	}
	ksft_test_result_fail("stress: no operation stuck\n");
	ksft_exit_fail();
}

static void usage(const char *prog)
{
	fprintf(stderr, "%s [-t threads] [-s seconds] [-p pages] [-S seed]\n", prog);
	exit(KSFT_FAIL);
}

int main(int argc, char **argv)
{
	unsigned long threads = DEF_THREADS, secs = DEF_SECONDS, pages = DEF_PAGES;
	long long files0 = -1, folios0 = -1, missing0 = -1, minor0 = -1;
	unsigned long count[NR_OPS] = { 0 }, total = 0;
	struct handler h[NR_HANDLERS] = { 0 };
	unsigned long missing = 0, minor = 0, eexist = 0, efault = 0;
	struct pollfd pfd = { .events = POLLIN };
	struct worker *w;
	uint64_t seed = 0, t0, end, t;
	char *buf;
	int opt, dev, i, ret;
	long p;
	bool ok;

	while ((opt = getopt(argc, argv, "t:s:p:S:")) != -1) {
		switch (opt) {
		case 't':
			threads = strtoul(optarg, NULL, 0);
			break;
		case 's':
			secs = strtoul(optarg, NULL, 0);
			break;
		case 'p':
			pages = strtoul(optarg, NULL, 0);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0);
			break;
		default:
			usage(argv[0]);
		}
	}
	if (!threads || threads > MAX_THREADS || !secs || pages < MAX_PUNCH || pages > 1UL << 20)
		usage(argv[0]);
	if (!seed)
		seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;

	ksft_print_header();
	ksft_set_plan(3);
	ksft_print_msg("%lu threads, %lu s, %lu pages, seed -S %#" PRIx64 "\n", threads, secs,
		       pages, seed);

	S.page_size = sysconf(_SC_PAGESIZE);
	S.pages = pages;
	if (gmem_counters_present()) {
		files0 = gmem_counter("files");
		folios0 = gmem_counter("folios");
		missing0 = gmem_counter("missing_events");
		minor0 = gmem_counter("minor_events");
	}
	dev = gmem_open_dev();
	if (dev < 0)
		ksft_exit_fail_msg("open %s: %s (is %s loaded?)\n", GMEM_DEV, strerror(-dev),
				   GMEM_MODULE);
	S.fd = create_gmem(dev, pages * S.page_size, GMEM_SHARED);
	close(dev);
	if (S.fd < 0)
		ksft_exit_fail_msg("KVM_CREATE_GUEST_MEMFD: %s\n", strerror(-S.fd));
	ret = map_gmem(S.fd, pages * S.page_size, MAP_SHARED, &S.mem);
	if (ret)
		ksft_exit_fail_msg("mmap: %s\n", strerror(-ret));
	S.uffd = uffd_open();
	if (S.uffd < 0)
		ksft_exit_fail_msg("userfaultfd: %s\n", strerror(-S.uffd));
	ret = uffd_register(S.uffd, S.mem, pages * S.page_size, MODE_BOTH, NULL);
	if (ret)
		ksft_exit_fail_msg("UFFDIO_REGISTER: %s\n", strerror(-ret));

	S.ps = calloc(pages, sizeof(*S.ps));
	w = calloc(threads, sizeof(*w));
	buf = malloc(S.page_size);
	if (!S.ps || !w || !buf)
		ksft_exit_fail_msg("out of memory\n");
	for (p = 0; p < S.pages; p++) {
		pthread_rwlock_init(&S.ps[p].access, NULL);
		pthread_mutex_init(&S.ps[p].fill, NULL);
		make_content((uint64_t *)buf, p, 0);
		S.ps[p].sum = checksum((uint64_t *)buf);
	}
	for (i = 0; i < NR_HANDLERS; i++) {
		h[i].id = i;
		h[i].rs = mix(seed ^ (1000 + i)) | 1;
		h[i].buf = malloc(S.page_size);
		if (!h[i].buf || pthread_create(&h[i].thread, NULL, handler_fn, &h[i]))
			ksft_exit_fail_msg("starting handler %d\n", i);
	}
	for (i = 0; i < (int)threads; i++) {
		w[i].id = i;
		w[i].rs = mix(seed ^ i) | 1;
		w[i].buf = malloc(S.page_size);
		w[i].buf2 = malloc(S.page_size);
		if (!w[i].buf || !w[i].buf2 || pthread_create(&w[i].thread, NULL, worker_fn, &w[i]))
			ksft_exit_fail_msg("starting worker %d\n", i);
	}

	/* Run, watching for a failure or an operation that does not end. */
	t0 = now_ms();
	end = t0 + secs * 1000;
	while (now_ms() < end && !failed()) {
		usleep(100000);
		for (i = 0; i < (int)threads; i++) {
			t = __atomic_load_n(&w[i].op_start_ms, __ATOMIC_ACQUIRE);
			if (t && now_ms() - t > OP_TIMEOUT_S * 1000ULL)
				abort_stuck("an operation did not end", w, threads);
		}
	}
	__atomic_store_n(&S.stop_workers, 1, __ATOMIC_RELEASE);
	for (i = 0; i < (int)threads; i++) {
		if (join_timeout(w[i].thread, JOIN_TIMEOUT_S))
			abort_stuck("a worker did not stop", w, threads);
		for (opt = 0; opt < NR_OPS; opt++)
			count[opt] += w[i].count[opt];
	}

	/* Every page once more, through the mapping (handlers still serving) and pread. */
	for (p = 0; p < S.pages && !failed(); p++) {
		memcpy(buf, addr_of(p), S.page_size);
		check_page("the final read through the mapping", (uint64_t *)buf, p, false);
		if (pread(S.fd, buf, S.page_size, p * S.page_size) != S.page_size)
			fail("final pread of page %ld: %s", p, strerror(errno));
		else
			check_page("the final pread", (uint64_t *)buf, p, false);
	}
	__atomic_store_n(&S.stop_handlers, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NR_HANDLERS; i++) {
		if (join_timeout(h[i].thread, JOIN_TIMEOUT_S))
			abort_stuck("a handler did not stop", w, 0);
		missing += h[i].missing;
		minor += h[i].minor;
		eexist += h[i].eexist;
		efault += h[i].efault;
	}

	for (opt = 0; opt < NR_OPS; opt++) {
		total += count[opt];
		ksft_print_msg("  %-16s %lu\n", ops[opt].name, count[opt]);
	}
	ksft_print_msg("%lu operations in %.1f s; handlers: %lu MISSING, %lu MINOR, %lu EEXIST, %lu EFAULT/ENOENT (punched since)\n",
		       total, (now_ms() - t0) / 1000.0, missing, minor, eexist, efault);
	if (failed())
		ksft_print_msg("FAILED: %s\n", S.msg);
	ok = !failed() && total && missing && minor;
	if (!failed() && !(missing && minor))
		ksft_print_msg("no %s fault was served: the mix did not exercise it\n",
			       missing ? "MINOR" : "MISSING");
	ksft_test_result(ok, "stress: %lu threads for %lu s, every read checked\n", threads,
			 secs);

	pfd.fd = S.uffd;
	ksft_test_result(poll(&pfd, 1, 0) == 0, "stress: no userfaultfd event left\n");

	close(S.uffd);
	munmap(S.mem, pages * S.page_size);
	close(S.fd);
	if (files0 < 0) {
		ksft_test_result_skip("stress: debugfs counters (not mounted)\n");
	} else {
		ok = gmem_counter("files") == files0 && gmem_counter("folios") == folios0 &&
		     gmem_counter("missing_events") - missing0 >= (long long)missing &&
		     gmem_counter("minor_events") - minor0 >= (long long)minor;
		if (!ok)
			ksft_print_msg("counters: files %lld (was %lld), folios %lld (was %lld), missing_events +%lld (served %lu), minor_events +%lld (served %lu)\n",
				       gmem_counter("files"), files0, gmem_counter("folios"),
				       folios0, gmem_counter("missing_events") - missing0,
				       missing, gmem_counter("minor_events") - minor0, minor);
		ksft_test_result(ok, "stress: debugfs files and folios back, events counted\n");
	}
	ksft_finished();
}
