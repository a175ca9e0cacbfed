// SPDX-License-Identifier: GPL-2.0
/*
 * A seeded fuzzer of gmem_uffd's guest memory files.
 *
 * Random operations on up to MAX_FILES files of 1 to MAX_PAGES pages:
 * create, close, fallocate (allocate, punch hole, a bad range now and
 * then), pread and pwrite (any offset and length, unaligned, crossing EOF
 * and past it), mmap (MAP_SHARED, the whole file, up to MAPS_PER_FILE per
 * file) and munmap, reads and writes through a mapping, pwrite from a
 * mapping and pread into one (the copy faults inside the syscall),
 * userfaultfd registration (MISSING, MINOR or both) and unregistration,
 * UFFDIO_ZEROPAGE and UFFDIO_COPY on a registered range, and fork (the
 * child reads a few bytes through a mapping).  A handler thread serves the
 * faults of registered mappings: MISSING with UFFDIO_COPY of the expected
 * content, MINOR with UFFDIO_CONTINUE.
 *
 * A model keeps what every byte of every file must hold (zeros where never
 * written) and which pages exist in the file.  Every read is checked
 * against it, every return value against the EOF rules (pwrite at or past
 * EOF: EINVAL; across it: short; pread there: 0 or short), every
 * userfault against the page's existence (MISSING only for an absent page,
 * MINOR only for a present one), UFFDIO_ZEROPAGE and UFFDIO_COPY against
 * it (EEXIST, or a partial count, where a page exists), and now and then
 * the debugfs counters against it (files: the live files; folios: their
 * existing pages).
 *
 * GMEM_FUZZ_OPS operations (100000), seed GMEM_FUZZ_SEED (time based,
 * printed first: a failure replays with the same seed), whole files and
 * counters checked every GMEM_FUZZ_CHECK_EVERY operations (1000; the
 * period does not change the operations drawn).  A failure prints
 * the operation's index, the file, the offset, expected and seen values,
 * and the last operations.  A watchdog thread turns a hang (a fault never
 * served) into a failure.  GMEM_TEST_MEMFD=1 runs the same operations on
 * sealed shmem memfds (EPERM instead of EINVAL, no counters): a failure
 * there too is a bug of the fuzzer, not of the module.
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
#include <signal.h>
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
#include <sys/wait.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/userfaultfd.h>

#include "kselftest_harness.h"
#include "gmem_util.h"

#define MAX_FILES		4
#define MAPS_PER_FILE		2
#define MAX_PAGES		64
#define FORK_READS		4
#define HISTORY			16
#define OPS_DEFAULT		100000
#define CHECK_EVERY		1000	/* ops between whole-file and counter checks */

/* Bounds of every wait. */
#define POLL_MS			100	/* the handler's poll() */
#define OP_TIMEOUT_S		60	/* one operation, faults included */
#define FAILED_GRACE_S		3	/* the handler failed and the operation hangs */
#define CHILD_TIMEOUT_MS	20000

enum op {
	OP_PWRITE, OP_PREAD, OP_MAP_WRITE, OP_MAP_READ, OP_FALLOCATE, OP_PUNCH,
	OP_CREATE, OP_CLOSE, OP_MMAP, OP_MUNMAP, OP_REGISTER, OP_UNREGISTER,
	OP_ZEROPAGE, OP_UFFD_COPY, OP_PWRITE_FROM_MAP, OP_PREAD_TO_MAP, OP_FORK,
	OP_CHECK, NR_OPS
};

/* Relative weights: cheap operations first, mmap, uffd and fork rarer. */
static const struct {
	const char *name;
	unsigned int weight;
} ops[NR_OPS] = {
	[OP_PWRITE]		= { "pwrite",		260 },
	[OP_PREAD]		= { "pread",		260 },
	[OP_MAP_WRITE]		= { "map_write",	110 },
	[OP_MAP_READ]		= { "map_read",		130 },
	[OP_FALLOCATE]		= { "fallocate",	25 },
	[OP_PUNCH]		= { "punch_hole",	35 },
	[OP_CREATE]		= { "create",		12 },
	[OP_CLOSE]		= { "close",		6 },
	[OP_MMAP]		= { "mmap",		18 },
	[OP_MUNMAP]		= { "munmap",		10 },
	[OP_REGISTER]		= { "uffd_register",	18 },
	[OP_UNREGISTER]		= { "uffd_unregister",	6 },
	[OP_ZEROPAGE]		= { "uffd_zeropage",	18 },
	[OP_UFFD_COPY]		= { "uffd_copy",	12 },
	[OP_PWRITE_FROM_MAP]	= { "pwrite_from_map",	15 },
	[OP_PREAD_TO_MAP]	= { "pread_to_map",	15 },
	[OP_FORK]		= { "fork",		2 },
	[OP_CHECK]		= { "check",		5 },
};

struct fmap {
	char *addr;		/* NULL: a free slot */
	__u64 mode;		/* its userfaultfd registration, 0 for none */
};

struct ffile {
	bool live;		/* an fd or a mapping keeps the file alive */
	int fd;			/* -1 once closed */
	unsigned int serial;	/* which file this is, for the messages */
	long size;
	long pages;
	unsigned char *shadow;	/* what every byte must read as */
	bool present[MAX_PAGES];	/* the page exists in the file */
	struct fmap maps[MAPS_PER_FILE];
};

/* The child's report of a failed fork check, in a shared page. */
struct child_report {
	long off;
	int expected, got;
};

static struct fuzz {
	struct ffile files[MAX_FILES];
	int dev, uffd;
	bool memfd;
	long page_size;
	uint64_t seed, rs;
	unsigned long nr_ops, check_every;
	unsigned int next_serial;
	unsigned char *wbuf, *rbuf;
	struct child_report *child;
	long long files0, folios0;	/* debugfs counters at the start, or -1 */

	/* The operation under way; the watchdog watches it move. */
	unsigned long op;
	char history[HISTORY][160];

	/* The pages a pwrite() from a mapping may create while it runs. */
	struct ffile *busy;
	long busy_first, busy_last;

	/* The first failure, from any thread. */
	int failed, msg_ready;
	char msg[1024];

	int stop;			/* handler and watchdog leave */
	pthread_t handler, watchdog;

	/* Statistics */
	uint64_t us[NR_OPS];		/* time spent in each operation */
	unsigned long count[NR_OPS], missing, minor, cont_eagain, zp_eexist, copy_eexist;
	unsigned long eof_writes, short_writes, forks;
} F;

/* ---- Helpers ---- */

/* xorshift64* (gmem_util.h) on the fuzzer's one state */
static uint64_t fz_rnd_next(void)
{
	return rnd_next(&F.rs);
}

static long rnd(long n)
{
	return n > 0 ? (long)(fz_rnd_next() % (uint64_t)n) : 0;
}

/* Random bytes, a word at a time (the fuzzer's own time counts under TCG). */
static void rnd_fill(unsigned char *buf, long len)
{
	uint64_t v;
	long i;

	for (i = 0; i + 8 <= len; i += 8) {
		v = fz_rnd_next();
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		v = fz_rnd_next();
		memcpy(buf + i, &v, len - i);
	}
}

static long min_l(long a, long b)
{
	return a < b ? a : b;
}

/* Record the first failure; the main thread (or the watchdog) reports it. */
static __printf(1, 2) void fz_fail(const char *fmt, ...)
{
	va_list ap;

	if (__atomic_exchange_n(&F.failed, 1, __ATOMIC_SEQ_CST))
		return;
	va_start(ap, fmt);
	vsnprintf(F.msg, sizeof(F.msg), fmt, ap);
	va_end(ap);
	__atomic_store_n(&F.msg_ready, 1, __ATOMIC_RELEASE);
}

static bool fz_failed(void)
{
	return __atomic_load_n(&F.failed, __ATOMIC_ACQUIRE);
}

static __printf(1, 2) void history(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(F.history[F.op % HISTORY], sizeof(F.history[0]), fmt, ap);
	va_end(ap);
}

static void print_history(FILE *out)
{
	unsigned long i, first = F.op >= HISTORY - 1 ? F.op - (HISTORY - 1) : 0;

	fprintf(out, "# the last operations (GMEM_FUZZ_SEED=%#" PRIx64 "):\n", F.seed);
	for (i = first; i <= F.op; i++)
		fprintf(out, "#   %7lu %s\n", i, F.history[i % HISTORY]);
}

static int fid(const struct ffile *f)
{
	return f - F.files;
}

/* The errno of a pwrite() at or past EOF. */
static int eof_errno(void)
{
	/* A memfd sealed against growth says EPERM. */
	return F.memfd ? EPERM : EINVAL;
}

static int create_file(long size)
{
	return F.memfd ? create_sealed_memfd("gmem_fuzz", size) :
			 create_gmem(F.dev, size, GMEM_SHARED);
}

static bool debugfs_present(void)
{
	return !F.memfd && gmem_counters_present();
}

static long long counter(const char *name)
{
	return gmem_counter(name);
}

/* ---- The model ---- */

static void mark_present(struct ffile *f, long off, long len)
{
	long p;

	if (len <= 0)
		return;
	for (p = off / F.page_size; p <= (off + len - 1) / F.page_size; p++)
		f->present[p] = true;
}

static void file_gone_if_unused(struct ffile *f)
{
	int m;

	if (f->fd >= 0)
		return;
	for (m = 0; m < MAPS_PER_FILE; m++) {
		if (f->maps[m].addr)
			return;
	}
	f->live = false;
}

/* Compare @len bytes read at @off of @f with the model. */
static bool check_bytes(const char *what, const struct ffile *f, long off,
			const unsigned char *got, long len)
{
	long i, bad = 0, first = -1;

	if (!memcmp(f->shadow + off, got, len))
		return true;
	for (i = 0; i < len; i++) {
		if (f->shadow[off + i] != got[i]) {
			if (first < 0)
				first = i;
			bad++;
		}
	}
	fz_fail("op %lu %s: file %d (#%u, %ld pages, page %ld %s) offset %ld: expected %#04x got %#04x (%ld of %ld bytes differ)",
		F.op, what, fid(f), f->serial, f->pages, (off + first) / F.page_size,
		f->present[(off + first) / F.page_size] ? "present" : "absent", off + first,
		f->shadow[off + first], got[first], bad, len);
	return false;
}

static struct ffile *pick_file(bool need_fd, bool need_map, bool need_reg)
{
	struct ffile *cand[MAX_FILES], *f;
	int i, m, n = 0;
	bool ok;

	for (i = 0; i < MAX_FILES; i++) {
		f = &F.files[i];
		if (!f->live || (need_fd && f->fd < 0))
			continue;
		ok = !need_map && !need_reg;
		for (m = 0; m < MAPS_PER_FILE && !ok; m++)
			ok = f->maps[m].addr && (!need_reg || f->maps[m].mode);
		if (ok)
			cand[n++] = f;
	}
	return n ? cand[rnd(n)] : NULL;
}

static struct fmap *pick_map(struct ffile *f, bool need_reg)
{
	struct fmap *cand[MAPS_PER_FILE];
	int m, n = 0;

	for (m = 0; m < MAPS_PER_FILE; m++) {
		if (f->maps[m].addr && (!need_reg || f->maps[m].mode))
			cand[n++] = &f->maps[m];
	}
	return n ? cand[rnd(n)] : NULL;
}

/* A length for I/O on a file of @size bytes: mostly small, up to the whole file. */
static long rnd_len(long size)
{
	long r = rnd(100);

	if (r < 55)
		return 1 + rnd(min_l(64, size));
	if (r < 80)
		return 1 + rnd(min_l(F.page_size, size));
	if (r < 94)
		return 1 + rnd(min_l(2 * F.page_size + F.page_size / 2, size));
	return 1 + rnd(size);
}

/* An offset for @len bytes: anywhere, page aligned, across EOF, or past it. */
static long rnd_off(long size, long len)
{
	long r = rnd(100);

	if (r < 5)
		return size + rnd(2 * F.page_size);
	if (r < 13)
		return size - 1 - rnd(min_l(size, len + 64));
	if (r < 30)
		return rnd(size / F.page_size) * F.page_size;
	return rnd(size);
}

/* An offset and length inside the file, at most @max bytes. */
static void rnd_range_in(long size, long max, long *off, long *len)
{
	*len = 1 + rnd(min_l(size, max));
	if (rnd(4) == 0)
		*len = min_l(*len, 16);
	*off = rnd(size - *len + 1);
}

/* ---- userfaultfd ---- */

/* Which file and mapping hold @addr. */
static struct ffile *find_addr(unsigned long addr, struct fmap **map)
{
	struct ffile *f;
	int i, m;

	for (i = 0; i < MAX_FILES; i++) {
		f = &F.files[i];
		if (!f->live)
			continue;
		for (m = 0; m < MAPS_PER_FILE; m++) {
			unsigned long base = (unsigned long)f->maps[m].addr;

			if (base && addr >= base && addr < base + f->size) {
				*map = &f->maps[m];
				return f;
			}
		}
	}
	return NULL;
}

/*
 * Serve one fault.  The thread that faults is the main thread, blocked
 * until this returns: the model is stable meanwhile.
 */
static void serve_fault(const struct uffd_msg *msg)
{
	unsigned long addr = msg->arg.pagefault.address & ~((unsigned long)F.page_size - 1);
	bool minor = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR;
	struct uffdio_continue cont;
	struct uffdio_copy copy;
	struct fmap *map = NULL;
	struct ffile *f;
	long page;
	int ret;

	f = find_addr(addr, &map);
	if (!f) {
		fz_fail("op %lu: %s fault at %#llx, in no mapping", F.op,
			minor ? "MINOR" : "MISSING",
			(unsigned long long)msg->arg.pagefault.address);
		return;
	}
	page = (addr - (unsigned long)map->addr) / F.page_size;
	if (!(map->mode & (minor ? MODE_MINOR : MODE_MISSING)))
		fz_fail("op %lu: %s fault on file %d page %ld, a mapping registered for %#llx",
			F.op, minor ? "MINOR" : "MISSING", fid(f), page,
			(unsigned long long)map->mode);
	/*
	 * MISSING only for an absent page, MINOR only for a present one: or
	 * one the syscall under way created (a pwrite() from a mapping of the
	 * file it writes reads pages its earlier pieces wrote).
	 */
	if (minor ? !f->present[page] && !(f == F.busy && page >= F.busy_first &&
					   page <= F.busy_last) : f->present[page])
		fz_fail("op %lu: %s fault on file %d (#%u) page %ld, which %s in the file",
			F.op, minor ? "MINOR" : "MISSING", fid(f), f->serial, page,
			f->present[page] ? "exists" : "does not exist");

	if (minor) {
		F.minor++;
		memset(&cont, 0, sizeof(cont));
		cont.range.start = addr;
		cont.range.len = F.page_size;
		ret = uffd_ioctl_retry(F.uffd, UFFDIO_CONTINUE, &cont, &F.cont_eagain);
		if (ret)
			fz_fail("op %lu: UFFDIO_CONTINUE of file %d page %ld: %s", F.op, fid(f),
				page, strerror(-ret));
		return;
	}
	F.missing++;
	memset(&copy, 0, sizeof(copy));
	copy.dst = addr;
	copy.src = (unsigned long)(f->shadow + page * F.page_size);
	copy.len = F.page_size;
	/*
	 * The model first: the ioctl wakes the main thread, which may go on
	 * (even punch the page again) before the ioctl returns here.
	 */
	f->present[page] = true;
	if (ioctl(F.uffd, UFFDIO_COPY, &copy)) {
		fz_fail("op %lu: UFFDIO_COPY for the MISSING fault of file %d page %ld: %s (copy %lld)",
			F.op, fid(f), page, strerror(errno), (long long)copy.copy);
		f->present[page] = false;
	}
}

static void *handler_fn(void *arg)
{
	struct uffd_msg msg;
	int ret;

	while (!__atomic_load_n(&F.stop, __ATOMIC_ACQUIRE)) {
		ret = uffd_read_msg(F.uffd, &msg, POLL_MS);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret) {
			fz_fail("handler: reading the uffd: %s", strerror(-ret));
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT) {
			fz_fail("handler: unexpected uffd event %#x", msg.event);
			break;
		}
		serve_fault(&msg);
	}
	return NULL;
}

/*
 * The watchdog: an operation that does not end (a fault nobody serves, a
 * stuck syscall) ends the test with a failure and the story so far.
 */
static void *watchdog_fn(void *arg)
{
	unsigned long last = ~0UL, op;
	uint64_t since = now_ms(), now;

	while (!__atomic_load_n(&F.stop, __ATOMIC_ACQUIRE)) {
		usleep(200000);
		op = __atomic_load_n(&F.op, __ATOMIC_RELAXED);
		now = now_ms();
		if (op != last) {
			last = op;
			since = now;
			continue;
		}
		if (now - since > OP_TIMEOUT_S * 1000ULL ||
		    (fz_failed() && now - since > FAILED_GRACE_S * 1000ULL)) {
			fflush(stdout);
			fprintf(stderr, "# watchdog: operation %lu has not ended after %llu s\n", op,
				(unsigned long long)(now - since) / 1000);
			if (__atomic_load_n(&F.msg_ready, __ATOMIC_ACQUIRE))
				fprintf(stderr, "# %s\n", F.msg);
			print_history(stderr);
			fflush(stderr);
			_exit(KSFT_FAIL);
		}
	}
	return NULL;
}

/* ---- Operations ---- */

static void op_create(void)
{
	struct ffile *f = NULL;
	long pages, r = rnd(100);
	int i, fd;

	for (i = 0; i < MAX_FILES && !f; i++) {
		if (!F.files[i].live)
			f = &F.files[i];
	}
	if (!f) {
		history("create: no free slot");
		return;
	}
	pages = r < 40 ? 1 + rnd(4) : r < 70 ? 1 + rnd(16) : 1 + rnd(MAX_PAGES);
	history("create file %d (#%u): %ld pages", fid(f), F.next_serial, pages);
	fd = create_file(pages * F.page_size);
	if (fd < 0) {
		fz_fail("op %lu: creating a file of %ld pages: %s", F.op, pages, strerror(-fd));
		return;
	}
	f->live = true;
	f->fd = fd;
	f->serial = F.next_serial++;
	f->size = pages * F.page_size;
	f->pages = pages;
	memset(f->shadow, 0, f->size);
	memset(f->present, 0, sizeof(f->present));
	memset(f->maps, 0, sizeof(f->maps));
}

static void op_close(struct ffile *f)
{
	history("close file %d (#%u) fd %d", fid(f), f->serial, f->fd);
	if (close(f->fd))
		fz_fail("op %lu: close of file %d: %s", F.op, fid(f), strerror(errno));
	f->fd = -1;
	file_gone_if_unused(f);
}

/* The byte count a pwrite() of @len at @off must return, or -errno. */
static long expected_write(const struct ffile *f, long off, long len)
{
	if (off >= f->size)
		return -eof_errno();
	return min_l(len, f->size - off);
}

static void op_pwrite(struct ffile *f)
{
	long len = rnd_len(f->size), off = rnd_off(f->size, len);
	long want = expected_write(f, off, len), got;

	history("pwrite file %d (#%u) off %ld len %ld", fid(f), f->serial, off, len);
	rnd_fill(F.wbuf, len);
	got = pwrite(f->fd, F.wbuf, len, off);
	if (got < 0)
		got = -errno;
	if (got != want) {
		fz_fail("op %lu pwrite: file %d (#%u, %ld bytes) offset %ld length %ld: expected %ld got %ld (%s)",
			F.op, fid(f), f->serial, f->size, off, len, want, got,
			got < 0 ? strerror(-got) : "bytes");
		return;
	}
	if (want < 0) {
		F.eof_writes++;
		return;
	}
	if (want < len)
		F.short_writes++;
	memcpy(f->shadow + off, F.wbuf, want);
	mark_present(f, off, want);
}

static void op_pread(struct ffile *f)
{
	long len = rnd_len(f->size), off = rnd_off(f->size, len);
	long want = off >= f->size ? 0 : min_l(len, f->size - off), got;

	history("pread file %d (#%u) off %ld len %ld", fid(f), f->serial, off, len);
	memset(F.rbuf, 0xa5, len);
	got = pread(f->fd, F.rbuf, len, off);
	if (got < 0)
		got = -errno;
	if (got != want) {
		fz_fail("op %lu pread: file %d (#%u, %ld bytes) offset %ld length %ld: expected %ld got %ld (%s)",
			F.op, fid(f), f->serial, f->size, off, len, want, got,
			got < 0 ? strerror(-got) : "bytes");
		return;
	}
	check_bytes("pread", f, off, F.rbuf, want);
}

static void op_map_write(struct ffile *f)
{
	struct fmap *m = pick_map(f, false);
	long off, len;

	rnd_range_in(f->size, 2 * F.page_size, &off, &len);
	history("map_write file %d (#%u) map %#llx off %ld len %ld", fid(f), f->serial,
		(unsigned long long)m->mode, off, len);
	rnd_fill(F.wbuf, len);
	memcpy(m->addr + off, F.wbuf, len);
	/* The model changes once the faults, served with the old content, are over. */
	memcpy(f->shadow + off, F.wbuf, len);
	mark_present(f, off, len);
}

static void op_map_read(struct ffile *f)
{
	struct fmap *m = pick_map(f, false);
	long off, len;

	rnd_range_in(f->size, 2 * F.page_size, &off, &len);
	history("map_read file %d (#%u) map %#llx off %ld len %ld", fid(f), f->serial,
		(unsigned long long)m->mode, off, len);
	memcpy(F.rbuf, m->addr + off, len);
	mark_present(f, off, len);
	check_bytes("map_read", f, off, F.rbuf, len);
}

static void op_fallocate(struct ffile *f, bool punch)
{
	long first = rnd(f->pages), n = 1 + rnd(min_l(f->pages - first, rnd(4) ? 4 : MAX_PAGES));
	long off = first * F.page_size, len = n * F.page_size, p, want = 0, got;
	int mode = punch ? PUNCH_HOLE : rnd(2) ? FALLOC_FL_KEEP_SIZE : 0;
	/* A memfd takes unaligned or (KEEP_SIZE) out of bounds ranges. */
	bool bad = rnd(10) == 0 && !F.memfd;

	if (bad) {
		/*
		 * Unaligned: refused, nothing changes.  Across EOF: an
		 * allocation is refused; a hole punch frees the pages up to
		 * EOF, as KVM's guest_memfd does.
		 */
		if (rnd(2)) {
			off += 1 + rnd(F.page_size - 1);
		} else {
			len = f->size - off + F.page_size;
			if (punch) {
				bad = false;
				n = f->pages - first;
			}
		}
		want = bad ? -EINVAL : 0;
	}
	history("%s file %d (#%u) mode %#x off %ld len %ld", punch ? "punch_hole" : "fallocate",
		fid(f), f->serial, mode, off, len);
	got = fallocate(f->fd, mode, off, len) ? -errno : 0;
	if (got != want) {
		fz_fail("op %lu fallocate: file %d (#%u, %ld bytes) mode %#x offset %ld length %ld: expected %ld got %ld (%s)",
			F.op, fid(f), f->serial, f->size, mode, off, len, want, got,
			strerror(-got));
		return;
	}
	if (bad)
		return;
	for (p = first; p < first + n; p++) {
		f->present[p] = !punch;
		if (punch)
			memset(f->shadow + p * F.page_size, 0, F.page_size);
	}
}

static void op_mmap(struct ffile *f)
{
	struct fmap *m = NULL;
	void *addr;
	int i;

	for (i = 0; i < MAPS_PER_FILE && !m; i++) {
		if (!f->maps[i].addr)
			m = &f->maps[i];
	}
	if (!m) {
		history("mmap file %d: no free slot", fid(f));
		return;
	}
	history("mmap file %d (#%u) slot %ld", fid(f), f->serial, (long)(m - f->maps));
	addr = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (addr == MAP_FAILED) {
		fz_fail("op %lu: mmap of file %d (%ld bytes): %s", F.op, fid(f), f->size,
			strerror(errno));
		return;
	}
	m->addr = addr;
	m->mode = 0;
}

static void op_munmap(struct ffile *f)
{
	struct fmap *m = pick_map(f, false);

	history("munmap file %d (#%u) map %#llx", fid(f), f->serial,
		(unsigned long long)m->mode);
	if (munmap(m->addr, f->size))
		fz_fail("op %lu: munmap of file %d: %s", F.op, fid(f), strerror(errno));
	m->addr = NULL;
	m->mode = 0;
	file_gone_if_unused(f);
}

static void op_register(struct ffile *f, bool reg)
{
	static const __u64 modes[] = { MODE_MISSING, MODE_MINOR, MODE_MISSING | MODE_MINOR };
	struct uffdio_register r = { 0 };
	struct uffdio_range range;
	struct fmap *m = pick_map(f, reg ? false : true);

	if (!m)
		return;
	if (!reg) {
		history("uffd_unregister file %d (#%u) map %#llx", fid(f), f->serial,
			(unsigned long long)m->mode);
		range.start = (unsigned long)m->addr;
		range.len = f->size;
		if (ioctl(F.uffd, UFFDIO_UNREGISTER, &range))
			fz_fail("op %lu: UFFDIO_UNREGISTER of file %d: %s", F.op, fid(f),
				strerror(errno));
		m->mode = 0;
		return;
	}
	r.range.start = (unsigned long)m->addr;
	r.range.len = f->size;
	r.mode = modes[rnd(3)];
	history("uffd_register file %d (#%u) mode %#llx (was %#llx)", fid(f), f->serial,
		(unsigned long long)r.mode, (unsigned long long)m->mode);
	if (ioctl(F.uffd, UFFDIO_REGISTER, &r)) {
		fz_fail("op %lu: UFFDIO_REGISTER of file %d mode %#llx: %s", F.op, fid(f),
			(unsigned long long)r.mode, strerror(errno));
		return;
	}
	/* A VMA registered for all the modes asked already keeps its modes. */
	if ((m->mode & r.mode) != r.mode)
		m->mode = r.mode;
}

/*
 * UFFDIO_ZEROPAGE or UFFDIO_COPY of @n pages at @first: they fill the
 * leading absent pages and stop at the first present one (EEXIST if it is
 * the first, else EAGAIN with the count done).
 */
static void op_fill(struct ffile *f, bool copy)
{
	struct fmap *m = pick_map(f, true);
	long first = rnd(f->pages), n = 1 + rnd(min_l(3, f->pages - first));
	long k, want_count, got_count, p;
	int want_ret, got_ret;
	struct uffdio_zeropage zp;
	struct uffdio_copy cp;

	for (k = 0; k < n && !f->present[first + k]; k++)
		;
	want_count = k ? k * F.page_size : -EEXIST;
	want_ret = k == n ? 0 : k ? -EAGAIN : -EEXIST;
	history("%s file %d (#%u) map %#llx pages %ld+%ld", copy ? "uffd_copy" : "uffd_zeropage",
		fid(f), f->serial, (unsigned long long)m->mode, first, n);
	if (copy) {
		rnd_fill(F.wbuf, n * F.page_size);
		memset(&cp, 0, sizeof(cp));
		cp.dst = (unsigned long)m->addr + first * F.page_size;
		cp.src = (unsigned long)F.wbuf;
		cp.len = n * F.page_size;
		got_ret = ioctl(F.uffd, UFFDIO_COPY, &cp) ? -errno : 0;
		got_count = cp.copy;
	} else {
		memset(&zp, 0, sizeof(zp));
		zp.range.start = (unsigned long)m->addr + first * F.page_size;
		zp.range.len = n * F.page_size;
		got_ret = ioctl(F.uffd, UFFDIO_ZEROPAGE, &zp) ? -errno : 0;
		got_count = zp.zeropage;
	}
	if (got_ret != want_ret || got_count != want_count) {
		fz_fail("op %lu %s: file %d (#%u) pages %ld..%ld (%ld absent first): expected %d/%ld got %d/%ld (%s)",
			F.op, copy ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", fid(f), f->serial, first,
			first + n - 1, k, want_ret, want_count, got_ret, got_count,
			strerror(-got_ret));
		return;
	}
	if (!k) {
		if (copy)
			F.copy_eexist++;
		else
			F.zp_eexist++;
	}
	for (p = first; p < first + k; p++) {
		f->present[p] = true;
		if (copy)
			memcpy(f->shadow + p * F.page_size, F.wbuf + (p - first) * F.page_size,
			       F.page_size);
	}
}

/*
 * pwrite() to @dst from a mapping of @src: the source faults inside the
 * syscall.  @src may be @dst, with byte ranges that do not overlap; a
 * source page may still be one an earlier piece of the write created.
 */
static void op_pwrite_from_map(struct ffile *dst)
{
	struct ffile *src = pick_file(false, true, false);
	struct fmap *m = pick_map(src, false);
	long soff, slen, len, off, want, got, done, piece;

	rnd_range_in(src->size, 2 * F.page_size, &soff, &slen);
	len = slen;
	off = rnd_off(dst->size, len);
	/*
	 * shmem faults the source in before it finds EOF: keep a memfd's
	 * writes inside the file, or the model would miss those pages.
	 */
	if (F.memfd && off + len > dst->size) {
		len = min_l(len, dst->size);
		off = rnd(dst->size - len + 1);
	}
	want = expected_write(dst, off, len);
	/*
	 * Both copy straight from the source into the page cache, a page at
	 * a time: an overlap is memcpy()'s undefined case.
	 */
	if (src == dst && off < soff + len && soff < off + len) {
		history("pwrite_from_map file %d: overlap, skipped", fid(dst));
		return;
	}
	history("pwrite_from_map file %d (#%u) off %ld len %ld from file %d (#%u) map %#llx off %ld",
		fid(dst), dst->serial, off, len, fid(src), src->serial,
		(unsigned long long)m->mode, soff);
	if (want > 0) {
		F.busy = dst;
		F.busy_first = off / F.page_size;
		F.busy_last = (off + want - 1) / F.page_size;
	}
	got = pwrite(dst->fd, m->addr + soff, len, off);
	if (got < 0)
		got = -errno;
	F.busy = NULL;
	if (got != want) {
		fz_fail("op %lu pwrite from a mapping: file %d (#%u, %ld bytes) offset %ld length %ld: expected %ld got %ld (%s)",
			F.op, fid(dst), dst->serial, dst->size, off, len, want, got,
			got < 0 ? strerror(-got) : "bytes");
		return;
	}
	if (want <= 0)
		return;
	mark_present(src, soff, want);
	for (done = 0; done < want; done += piece) {
		piece = min_l(want - done, F.page_size - (off + done) % F.page_size);
		memcpy(F.rbuf, src->shadow + soff + done, piece);
		memcpy(dst->shadow + off + done, F.rbuf, piece);
	}
	mark_present(dst, off, want);
}

/* pread() from @src into a mapping of @dst (not overlapping in the same file). */
static void op_pread_to_map(struct ffile *src)
{
	struct ffile *dst = pick_file(false, true, false);
	struct fmap *m = pick_map(dst, false);
	long doff, dlen, off, want, got;

	rnd_range_in(dst->size, 2 * F.page_size, &doff, &dlen);
	off = rnd_off(src->size, dlen);
	want = off >= src->size ? 0 : min_l(dlen, src->size - off);
	if (src == dst && off < doff + dlen && doff < off + dlen) {
		history("pread_to_map file %d: overlap, skipped", fid(src));
		return;
	}
	history("pread_to_map file %d (#%u) off %ld len %ld to file %d (#%u) map %#llx off %ld",
		fid(src), src->serial, off, dlen, fid(dst), dst->serial,
		(unsigned long long)m->mode, doff);
	got = pread(src->fd, m->addr + doff, dlen, off);
	if (got < 0)
		got = -errno;
	if (got != want) {
		fz_fail("op %lu pread into a mapping: file %d (#%u, %ld bytes) offset %ld length %ld: expected %ld got %ld (%s)",
			F.op, fid(src), src->serial, src->size, off, dlen, want, got,
			got < 0 ? strerror(-got) : "bytes");
		return;
	}
	if (want <= 0)
		return;
	memcpy(dst->shadow + doff, src->shadow + off, want);
	mark_present(dst, doff, want);
}

/* A child reads a few bytes through a mapping and checks them itself. */
static void op_fork(struct ffile *f)
{
	struct fmap *m = pick_map(f, false);
	long offs[FORK_READS];
	uint64_t deadline;
	int i, status = 0;
	pid_t pid, w;

	for (i = 0; i < FORK_READS; i++)
		offs[i] = rnd(f->size);
	history("fork: read file %d (#%u) map %#llx at %ld %ld %ld %ld", fid(f), f->serial,
		(unsigned long long)m->mode, offs[0], offs[1], offs[2], offs[3]);
	memset(F.child, 0, sizeof(*F.child));
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fz_fail("op %lu: fork: %s", F.op, strerror(errno));
		return;
	}
	if (!pid) {
		/* The child's copy of the model is the parent's at the fork. */
		for (i = 0; i < FORK_READS; i++) {
			unsigned char got = __atomic_load_n(m->addr + offs[i], __ATOMIC_RELAXED);

			if (got != f->shadow[offs[i]]) {
				F.child->off = offs[i];
				F.child->expected = f->shadow[offs[i]];
				F.child->got = got;
				_exit(1);
			}
		}
		_exit(0);
	}
	F.forks++;
	deadline = now_ms() + CHILD_TIMEOUT_MS;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		usleep(1000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fz_fail("op %lu fork: the child reading file %d did not end in %d ms", F.op,
			fid(f), CHILD_TIMEOUT_MS);
		return;
	}
	if (w != pid) {
		fz_fail("op %lu fork: waitpid: %s", F.op, strerror(errno));
		return;
	}
	if (WIFSIGNALED(status)) {
		fz_fail("op %lu fork: the child reading file %d was killed by signal %d", F.op,
			fid(f), WTERMSIG(status));
		return;
	}
	if (WEXITSTATUS(status)) {
		fz_fail("op %lu fork: the child read file %d (#%u) offset %ld (page %ld %s): expected %#04x got %#04x",
			F.op, fid(f), f->serial, F.child->off, F.child->off / F.page_size,
			f->present[F.child->off / F.page_size] ? "present" : "absent",
			F.child->expected, F.child->got);
		return;
	}
	/* The child's faults were not registered: they made absent pages exist. */
	for (i = 0; i < FORK_READS; i++)
		mark_present(f, offs[i], 1);
}

/* Every file read whole, and the module's counters against the model. */
static void op_check(void)
{
	long long live = 0, present = 0, files, folios;
	struct ffile *f;
	long p;
	int i;

	for (i = 0; i < MAX_FILES && !fz_failed(); i++) {
		f = &F.files[i];
		if (!f->live)
			continue;
		live++;
		for (p = 0; p < f->pages; p++)
			present += f->present[p];
		if (f->fd < 0)
			continue;
		memset(F.rbuf, 0xa5, f->size);
		if (pread(f->fd, F.rbuf, f->size, 0) != f->size) {
			fz_fail("op %lu check: pread of all of file %d: %s", F.op, i,
				strerror(errno));
			return;
		}
		check_bytes("check (whole file pread)", f, 0, F.rbuf, f->size);
	}
	if (fz_failed() || F.files0 < 0)
		return;
	files = counter("files");
	folios = counter("folios");
	if (files != F.files0 + live || folios != F.folios0 + present)
		fz_fail("op %lu check: debugfs files %lld folios %lld, expected %lld and %lld (%lld live files with %lld existing pages)",
			F.op, files, folios, F.files0 + live, F.folios0 + present, live, present);
}

/* Run @op on a file it suits; false, doing nothing, when no file does. */
static bool run_op(enum op op)
{
	bool need_fd = op == OP_PWRITE || op == OP_PREAD || op == OP_FALLOCATE ||
		       op == OP_PUNCH || op == OP_CLOSE || op == OP_MMAP ||
		       op == OP_PWRITE_FROM_MAP || op == OP_PREAD_TO_MAP;
	bool need_map = op == OP_MAP_WRITE || op == OP_MAP_READ || op == OP_MUNMAP ||
			op == OP_REGISTER || op == OP_UNREGISTER || op == OP_FORK;
	bool need_reg = op == OP_ZEROPAGE || op == OP_UFFD_COPY || op == OP_UNREGISTER;
	struct ffile *f = NULL;
	uint64_t t0;

	if (op != OP_CREATE && op != OP_CHECK) {
		f = pick_file(need_fd, need_map, need_reg);
		/* The mapping-to-file copies need a mapping somewhere too. */
		if ((op == OP_PWRITE_FROM_MAP || op == OP_PREAD_TO_MAP) &&
		    !pick_file(false, true, false))
			f = NULL;
		if (!f)
			return false;
	}
	F.count[op]++;
	t0 = now_us();
	switch (op) {
	case OP_PWRITE:
		op_pwrite(f);
		break;
	case OP_PREAD:
		op_pread(f);
		break;
	case OP_MAP_WRITE:
		op_map_write(f);
		break;
	case OP_MAP_READ:
		op_map_read(f);
		break;
	case OP_FALLOCATE:
		op_fallocate(f, false);
		break;
	case OP_PUNCH:
		op_fallocate(f, true);
		break;
	case OP_CREATE:
		op_create();
		break;
	case OP_CLOSE:
		op_close(f);
		break;
	case OP_MMAP:
		op_mmap(f);
		break;
	case OP_MUNMAP:
		op_munmap(f);
		break;
	case OP_REGISTER:
		op_register(f, true);
		break;
	case OP_UNREGISTER:
		op_register(f, false);
		break;
	case OP_ZEROPAGE:
		op_fill(f, false);
		break;
	case OP_UFFD_COPY:
		op_fill(f, true);
		break;
	case OP_PWRITE_FROM_MAP:
		op_pwrite_from_map(f);
		break;
	case OP_PREAD_TO_MAP:
		op_pread_to_map(f);
		break;
	case OP_FORK:
		op_fork(f);
		break;
	case OP_CHECK:
		history("check");
		op_check();
		break;
	case NR_OPS:
		break;
	}
	F.us[op] += now_us() - t0;
	return true;
}

static enum op pick_op(unsigned int total)
{
	unsigned int r = rnd(total), i;

	for (i = 0; i < NR_OPS; i++) {
		if (r < ops[i].weight)
			return i;
		r -= ops[i].weight;
	}
	return OP_PREAD;
}

static void close_all(void)
{
	struct ffile *f;
	int i, m;

	for (i = 0; i < MAX_FILES; i++) {
		f = &F.files[i];
		if (!f->live)
			continue;
		for (m = 0; m < MAPS_PER_FILE; m++) {
			if (f->maps[m].addr)
				munmap(f->maps[m].addr, f->size);
			f->maps[m].addr = NULL;
		}
		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		f->live = false;
	}
}

FIXTURE(fuzz) {
};

FIXTURE_SETUP(fuzz)
{
	int i;

	F.page_size = sysconf(_SC_PAGESIZE);
	F.memfd = env_ulong("GMEM_TEST_MEMFD", 0, 0, 1);
	F.dev = -1;
	if (!F.memfd) {
		F.dev = open(GMEM_DEV, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, F.dev) TH_LOG("open %s: %s (is gmem_uffd loaded?)", GMEM_DEV,
					   strerror(errno));
	}
	F.uffd = uffd_open();
	ASSERT_LE(0, F.uffd) TH_LOG("userfaultfd: %s", strerror(-F.uffd));
	F.wbuf = malloc((MAX_PAGES + 2) * F.page_size);
	F.rbuf = malloc((MAX_PAGES + 2) * F.page_size);
	ASSERT_TRUE(F.wbuf && F.rbuf);
	F.child = mmap(NULL, F.page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	ASSERT_NE(MAP_FAILED, F.child);
	for (i = 0; i < MAX_FILES; i++) {
		F.files[i].fd = -1;
		F.files[i].shadow = malloc(MAX_PAGES * F.page_size);
		ASSERT_TRUE(F.files[i].shadow != NULL);
	}
}

FIXTURE_TEARDOWN(fuzz)
{
	close_all();
	if (F.uffd >= 0)
		close(F.uffd);
	if (F.dev >= 0)
		close(F.dev);
}

TEST_F_TIMEOUT(fuzz, random_ops, 1800)
{
	unsigned int total = 0, i, tries;
	uint64_t t0 = now_ms();

	F.seed = env_ulong("GMEM_FUZZ_SEED", 0, 0, ~0UL);
	if (!F.seed)
		F.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	F.nr_ops = env_ulong("GMEM_FUZZ_OPS", OPS_DEFAULT, 1, ~0UL);
	/* GMEM_FUZZ_CHECK_EVERY=1 finds the first operation that goes wrong. */
	F.check_every = env_ulong("GMEM_FUZZ_CHECK_EVERY", CHECK_EVERY, 1, ~0UL);
	ksft_print_msg("%s: GMEM_FUZZ_SEED=%#" PRIx64 " GMEM_FUZZ_OPS=%lu GMEM_FUZZ_CHECK_EVERY=%lu\n",
		       F.memfd ? "memfd" : "gmem", F.seed, F.nr_ops, F.check_every);
	F.rs = F.seed ^ 0x9e3779b97f4a7c15ULL;
	if (!F.rs)
		F.rs = 1;
	for (i = 0; i < NR_OPS; i++)
		total += ops[i].weight;

	F.files0 = F.folios0 = -1;
	if (debugfs_present()) {
		F.files0 = counter("files");
		F.folios0 = counter("folios");
	}
	ASSERT_EQ(0, pthread_create(&F.handler, NULL, handler_fn, NULL));
	ASSERT_EQ(0, pthread_create(&F.watchdog, NULL, watchdog_fn, NULL));

	for (F.op = 0; F.op < F.nr_ops; __atomic_add_fetch(&F.op, 1, __ATOMIC_RELAXED)) {
		/* Another pick when no file suits, a new file after a few. */
		for (tries = 0; tries < 4 && !run_op(pick_op(total)); tries++)
			;
		if (tries == 4)
			run_op(OP_CREATE);
		/* The checks take no random number: any period replays the same run. */
		if (!fz_failed() && (F.op + 1) % F.check_every == 0)
			op_check();
		if (fz_failed())
			break;
	}
	if (!fz_failed())
		op_check();
	if (fz_failed()) {
		print_history(stderr);
		ASSERT_FALSE(fz_failed()) TH_LOG("%s", F.msg);
	}
	__atomic_store_n(&F.stop, 1, __ATOMIC_RELEASE);
	pthread_join(F.handler, NULL);
	pthread_join(F.watchdog, NULL);

	ksft_print_msg("%lu operations in %.1f s; faults served: %lu MISSING, %lu MINOR (CONTINUE EAGAIN %lu); EEXIST: zeropage %lu copy %lu; pwrite at/past EOF %lu, short %lu; forks %lu\n",
		       F.nr_ops, (now_ms() - t0) / 1000.0, F.missing, F.minor, F.cont_eagain,
		       F.zp_eexist, F.copy_eexist, F.eof_writes, F.short_writes, F.forks);
	for (i = 0; i < NR_OPS; i++)
		ksft_print_msg("  %-16s %7lu ops %8.1f ms\n", ops[i].name, F.count[i],
			       F.us[i] / 1000.0);

	/* Everything closed: no file and no folio may be left. */
	close_all();
	if (F.files0 >= 0) {
		EXPECT_EQ(F.files0, counter("files")) TH_LOG("gmem files left behind");
		EXPECT_EQ(F.folios0, counter("folios")) TH_LOG("folios left behind");
	}
}

TEST_HARNESS_MAIN
