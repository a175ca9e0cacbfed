// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_bench: fault-service and population rates of gmem_uffd guest memory
 * files against shmem (memfd), anonymous memory and KVM's own guest_memfd,
 * measured side by side in one boot ("make bench", scripts/plans/bench.plan).
 *
 *   gmem_bench [-r ROUNDS] [-s MIB] [-t THREADS] [-c CHUNK_KIB] [-U] [-p] TEST
 *
 * TEST is one of
 *   first-touch  write one word in every page of a fresh mapping, no uffd:
 *                gmem, kvm_gmem (KVM_CREATE_GUEST_MEMFD on a VM, served by
 *                KVM itself: gmem_uffd loaded with kvm=0), memfd,
 *                gmem_secret
 *   missing      uffd MISSING, one handler thread resolving every fault
 *                with a 4 KiB UFFDIO_COPY, THREADS faulting threads
 *                reading one word per page: gmem, memfd, anon, gmem_secret
 *   minor        the file is filled with pwrite first (not timed), then
 *                uffd MINOR + UFFDIO_CONTINUE as above: gmem, memfd,
 *                gmem_secret
 *   pwrite       fill a fresh file with pwrite() calls of CHUNK_KIB each:
 *                gmem, memfd, gmem_secret
 *
 * gmem_secret is a gmem file with GUEST_MEMFD_FLAG_NO_DIRECT_MAP: each page
 * it publishes leaves the kernel's direct map, a TLB flush of the kernel
 * range on every CPU, and a write into a page already out of it maps it
 * back and out again; its ratio to gmem is what secret hiding costs.
 *
 * Each round gives every variant a fresh file of MIB MiB and does the work
 * in 2 MiB slices, alternating between the variants slice by slice (see
 * round_run()); round 0 is a warm-up.  Output, one line each, parsed by
 * scripts/bench-report.py:
 *   BENCH_TEST test=T unit=U variants=A,B,.. size_mib=N threads=N rounds=N
 *   BENCH test=T variant=V round=N value=X unit=U
 *   BENCH_SKIP test=T variant=V reason=...
 *   PROFILE test=T variant=V rank=N pct=P samples=N sym=S   (with -p)
 *   ASLEEP test=T variant=V samples=N of=N stack=F<F<F     (with -p)
 *   LATENCY test=T variant=V calls=N p50_us=.. p90_us=.. p99_us=.. max_us=..
 *                (with -p, pwrite only: the calls of the last round)
 * With -p the BENCH lines are printed as PROF_BENCH...: the sampling slows
 * the rounds down, so they are not results.
 * Every uffd-resolved page is read back and checked against the data the
 * handler supplied, every pwrite is checked with pread at a few offsets: a
 * wrong result is an error (exit 1).  No timing is judged here; a variant
 * that cannot run (no KVM in the guest) is reported with BENCH_SKIP and
 * the program exits 4 after measuring the others.
 *
 * Every thread is pinned to CPU 0 (see pin_self()); -U leaves them
 * unpinned.
 *
 * -p samples the CPUs during the measured rounds (perf_event_open, a
 * software cpu-clock event on every CPU, kernel symbols from
 * /proc/kallsyms) and prints the most frequent symbols per variant: perf
 * itself is not in the guest and the hardware counters do not count under
 * TCG.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/kvm.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"	/* __printf, __noreturn, KSFT_SKIP */
#include "gmem_util.h"

#define KVM_DEV		"/dev/kvm"
#define MAX_VARIANTS	4
#define SRC_BYTES	(2UL << 20)	/* the data source, >= the largest chunk */
#define MAGIC		0x676d656d62656e63ULL
#define MAX_THREADS	64

enum kind { K_GMEM, K_KVM, K_MEMFD, K_ANON, K_SECRET, K_NKINDS };
static const char *const kind_name[] = {
	"gmem", "kvm_gmem", "memfd", "anon", "gmem_secret",
};

static long psize;
static char *src;		/* SRC_BYTES of pattern */
static int gmem_dev = -1;	/* /dev/guest_memfd */
static int kvm_vm = -1;		/* one VM for the whole run, never one a round */
static const char *test_name = "?";

static void __noreturn __printf(1, 2) die(const char *fmt, ...)
{
	va_list ap;
	int err = errno;

	printf("BENCH_ERROR test=%s ", test_name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d: %s)\n", err, strerror(err));
	fflush(stdout);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The first word of page p of the data: what every check expects. */
static uint64_t pattern(unsigned long p)
{
	return MAGIC ^ (p % (SRC_BYTES / psize));
}

static void src_init(void)
{
	unsigned long p, i;

	src = mmap(NULL, SRC_BYTES, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (src == MAP_FAILED)
		die("mmap of the source buffer");
	for (p = 0; p < SRC_BYTES / psize; p++) {
		uint64_t *w = (uint64_t *)(src + p * psize);

		for (i = 0; i < psize / sizeof(*w); i++)
			w[i] = pattern(p) + i;
	}
}

/* ---- Memory of each kind ---- */

static const char *kvm_open(void)
{
	int kvm, flags;

	kvm = open(KVM_DEV, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return "no /dev/kvm (KVM not available in this guest)";
	kvm_vm = ioctl(kvm, KVM_CREATE_VM, 0);
	close(kvm);
	if (kvm_vm < 0)
		return "KVM_CREATE_VM failed";
	flags = ioctl(kvm_vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	if (flags < 0 || (flags & GMEM_SHARED) != GMEM_SHARED) {
		close(kvm_vm);
		kvm_vm = -1;
		return "the VM's guest_memfd lacks MMAP|INIT_SHARED";
	}
	/* kvm_gmem measures KVM's own guest_memfd, not the module through KVM. */
	{
		struct kvm_create_guest_memfd args = { .size = psize, .flags = GMEM_SHARED };
		int fd = ioctl(kvm_vm, KVM_CREATE_GUEST_MEMFD, &args);
		bool ours = fd >= 0 && gmem_uffd_file(fd);

		if (fd >= 0)
			close(fd);
		if (fd < 0 || ours) {
			close(kvm_vm);
			kvm_vm = -1;
			return fd < 0 ? "KVM_CREATE_GUEST_MEMFD failed" :
			       "the VM's guest_memfd is gmem_uffd's (load it with kvm=0)";
		}
	}
	return NULL;
}

static int mem_create(enum kind k, size_t size)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = GMEM_SHARED | (k == K_SECRET ? GUEST_MEMFD_FLAG_NO_DIRECT_MAP : 0),
	};
	int fd = -1;

	switch (k) {
	case K_GMEM:
	case K_SECRET:
		fd = ioctl(gmem_dev, KVM_CREATE_GUEST_MEMFD, &args);
		break;
	case K_KVM:
		fd = ioctl(kvm_vm, KVM_CREATE_GUEST_MEMFD, &args);
		break;
	case K_MEMFD:
		fd = memfd_create("bench", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, size))
			die("ftruncate of a memfd to %zu", size);
		break;
	case K_ANON:
	case K_NKINDS:
		return -1;
	}
	if (fd < 0)
		die("creating a %s file of %zu bytes", kind_name[k], size);
	return fd;
}

static char *mem_map(enum kind k, int fd, size_t size)
{
	char *p;

	if (k == K_ANON)
		p = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap of %zu bytes of %s", size, kind_name[k]);
	return p;
}

static void mem_free(int fd, char *p, size_t size)
{
	if (p && munmap(p, size))
		die("munmap");
	if (fd >= 0 && close(fd))
		die("close");
}

/* ---- Where the threads run ---- */

/*
 * Under TCG every vCPU is a host thread, and on a loaded host a wake-up
 * that crosses vCPUs (an IPI to a halted vCPU, a host thread to schedule)
 * costs milliseconds of host scheduling: more than the whole kernel work of
 * a userfault, and the same for every variant, so it would swamp what is
 * measured.  By default every thread of a benchmark (the faulting threads,
 * the uffd handler, the single-threaded loops) is pinned to CPU 0: a
 * userfault round trip is then two context switches on one vCPU, and the
 * rates compare the kernel's work.  -U leaves the threads unpinned.
 */
static bool pin = true;

static void pin_self(void)
{
	cpu_set_t set;

	if (!pin)
		return;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity to CPU 0");
}

/* ---- The profiler (-p) ---- */

struct sym {
	uint64_t addr;
	char *name;
};

struct hist {
	char *name;
	long n;
};

static struct {
	bool on;
	int ncpu;
	int fd[256];
	struct perf_event_mmap_page *ring[256];
	size_t ring_bytes;
	struct sym *syms;
	size_t nsyms;
	struct hist *h[MAX_VARIANTS];
	size_t nh[MAX_VARIANTS];
	long total[MAX_VARIANTS];
} prof;

#define RING_PAGES	1024	/* per CPU, a power of two */
#define SAMPLE_HZ	10000

static int sym_cmp(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void kallsyms_load(void)
{
	FILE *f = fopen("/proc/kallsyms", "r");
	char line[512], name[256], mod[256], type;
	unsigned long long addr;
	size_t cap = 0;

	if (!f)
		die("/proc/kallsyms");
	while (fgets(line, sizeof(line), f)) {
		int n = sscanf(line, "%llx %c %255s %255s", &addr, &type, name, mod);

		if (n < 3 || !addr || (type != 't' && type != 'T'))
			continue;
		if (prof.nsyms == cap) {
			cap = cap ? cap * 2 : 65536;
			prof.syms = realloc(prof.syms, cap * sizeof(*prof.syms));
			if (!prof.syms)
				die("realloc");
		}
		if (n == 4)
			strncat(name, mod, sizeof(name) - strlen(name) - 1);
		prof.syms[prof.nsyms].addr = addr;
		prof.syms[prof.nsyms].name = strdup(name);
		prof.nsyms++;
	}
	fclose(f);
	if (!prof.nsyms)
		die("no text symbols in /proc/kallsyms (kptr_restrict?)");
	qsort(prof.syms, prof.nsyms, sizeof(*prof.syms), sym_cmp);
}

static const char *sym_of(uint64_t ip)
{
	size_t lo = 0, hi = prof.nsyms;

	if (ip < 0xffff800000000000ULL)
		return "[user]";
	if (ip < prof.syms[0].addr)
		return "[kernel?]";
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (prof.syms[mid].addr <= ip)
			lo = mid;
		else
			hi = mid;
	}
	return prof.syms[lo].name;
}

static void prof_init(void)
{
	struct perf_event_attr attr = {
		.type = PERF_TYPE_SOFTWARE,
		.size = sizeof(attr),
		.config = PERF_COUNT_SW_CPU_CLOCK,
		.sample_freq = SAMPLE_HZ,
		.freq = 1,
		.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID,
		.disabled = 1,
	};
	int cpu;

	kallsyms_load();
	prof.ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (prof.ncpu > 256)
		prof.ncpu = 256;
	prof.ring_bytes = (RING_PAGES + 1) * psize;
	for (cpu = 0; cpu < prof.ncpu; cpu++) {
		prof.fd[cpu] = syscall(__NR_perf_event_open, &attr, -1, cpu, -1,
				       PERF_FLAG_FD_CLOEXEC);
		if (prof.fd[cpu] < 0)
			die("perf_event_open on cpu %d", cpu);
		prof.ring[cpu] = mmap(NULL, prof.ring_bytes, PROT_READ | PROT_WRITE,
				      MAP_SHARED, prof.fd[cpu], 0);
		if (prof.ring[cpu] == MAP_FAILED)
			die("mmap of the perf ring of cpu %d", cpu);
	}
	prof.on = true;
}

static void prof_count(int v, const char *name)
{
	size_t i;

	prof.total[v]++;
	for (i = 0; i < prof.nh[v]; i++) {
		if (prof.h[v][i].name == name) {
			prof.h[v][i].n++;
			return;
		}
	}
	prof.h[v] = realloc(prof.h[v], (prof.nh[v] + 1) * sizeof(*prof.h[v]));
	if (!prof.h[v])
		die("realloc");
	prof.h[v][prof.nh[v]].name = (char *)name;
	prof.h[v][prof.nh[v]].n = 1;
	prof.nh[v]++;
}

static void prof_enable(bool on)
{
	int cpu;

	if (!prof.on)
		return;
	for (cpu = 0; cpu < prof.ncpu; cpu++)
		if (ioctl(prof.fd[cpu], on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0))
			die("perf enable/disable");
}

/* Drain every ring into the histogram of variant v. */
static void prof_drain(int v)
{
	size_t data_bytes = RING_PAGES * psize;
	int cpu;

	if (!prof.on)
		return;
	for (cpu = 0; cpu < prof.ncpu; cpu++) {
		struct perf_event_mmap_page *m = prof.ring[cpu];
		char *data = (char *)m + psize;
		uint64_t head = __atomic_load_n(&m->data_head, __ATOMIC_ACQUIRE);
		uint64_t tail = m->data_tail;

		while (tail < head) {
			struct perf_event_header hdr;
			struct { uint64_t ip; uint32_t pid, tid; } smp;
			size_t off = tail % data_bytes, i;

			memcpy(&hdr, data + off, sizeof(hdr));
			if (hdr.type == PERF_RECORD_SAMPLE) {
				const char *name;

				/* The record may wrap around the end of the ring. */
				for (i = 0; i < sizeof(smp); i++)
					((char *)&smp)[i] =
						data[(off + sizeof(hdr) + i) % data_bytes];
				name = smp.pid ? sym_of(smp.ip) : "[idle]";
				prof_count(v, name);
			} else if (hdr.type == PERF_RECORD_LOST) {
				prof_count(v, "[lost records]");
			}
			tail += hdr.size;
		}
		__atomic_store_n(&m->data_tail, tail, __ATOMIC_RELEASE);
	}
}

static int hist_cmp(const void *a, const void *b)
{
	const struct hist *x = a, *y = b;

	return (y->n > x->n) - (y->n < x->n);
}

static void prof_report(int v, const char *variant)
{
	size_t i;

	if (!prof.on)
		return;
	qsort(prof.h[v], prof.nh[v], sizeof(*prof.h[v]), hist_cmp);
	for (i = 0; i < prof.nh[v] && i < 25; i++)
		printf("PROFILE test=%s variant=%s rank=%zu pct=%.1f samples=%ld sym=%s\n",
		       test_name, variant, i + 1,
		       100.0 * prof.h[v][i].n / prof.total[v], prof.h[v][i].n,
		       prof.h[v][i].name);
}

/*
 * ---- Where the measuring thread sleeps (-p) ----
 *
 * A thread on another CPU reads the measuring thread's kernel stack from
 * /proc every millisecond while it is asleep (state S or D) and counts the
 * three innermost functions: idle time in a profile says only that the
 * thread slept, this says where.
 */
static int cur_variant = -1;	/* atomic: read by the sampler */
static bool stack_stop;		/* atomic */
static pid_t measured_tid;
static pthread_t stack_thread;

struct stack_count {
	char key[160];
	long n;
};

static struct stack_count stacks[MAX_VARIANTS][64];
static long stack_samples[MAX_VARIANTS];

static void stack_add(int v, const char *key)
{
	int i;

	stack_samples[v]++;
	for (i = 0; i < 64 && stacks[v][i].n; i++) {
		if (!strcmp(stacks[v][i].key, key)) {
			stacks[v][i].n++;
			return;
		}
	}
	if (i < 64) {
		snprintf(stacks[v][i].key, sizeof(stacks[v][i].key), "%s", key);
		stacks[v][i].n = 1;
	}
}

static void *stack_sampler(void *arg)
{
	char path[64], buf[4096], key[160];
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(1, &set);
	sched_setaffinity(0, sizeof(set), &set);
	while (!__atomic_load_n(&stack_stop, __ATOMIC_RELAXED)) {
		int v = __atomic_load_n(&cur_variant, __ATOMIC_RELAXED), fd, frames = 0;
		char *line, *save = NULL, state = 0;
		ssize_t n;

		usleep(1000);
		if (v < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", measured_tid);
		fd = open(path, O_RDONLY);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = 0;
			line = strrchr(buf, ')');
			state = line ? line[2] : 0;
		}
		if (state != 'S' && state != 'D')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/stack", measured_tid);
		fd = open(path, O_RDONLY);
		n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		key[0] = 0;
		/* Lines are "[<0>] function+0x1/0x2": keep the names. */
		for (line = strtok_r(buf, "\n", &save); line && frames < 3;
		     line = strtok_r(NULL, "\n", &save)) {
			char *name = strchr(line, ' '), *plus;

			if (!name)
				continue;
			name++;
			plus = strchr(name, '+');
			if (plus)
				*plus = 0;
			if (!strncmp(name, "__schedule", 10) || !strcmp(name, "schedule"))
				continue;
			snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s%s",
				 frames ? "<" : "", name);
			frames++;
		}
		stack_add(v, key);
	}
	return NULL;
}

static void stacks_start(void)
{
	measured_tid = gettid();
	if (pthread_create(&stack_thread, NULL, stack_sampler, NULL))
		die("pthread_create");
}

static void stacks_report(int v, const char *variant)
{
	int i;

	for (i = 0; i < 64 && stacks[v][i].n; i++)
		if (stacks[v][i].n * 50 >= stack_samples[v])	/* >= 2% */
			printf("ASLEEP test=%s variant=%s samples=%ld of=%ld stack=%s\n",
			       test_name, variant, stacks[v][i].n, stack_samples[v],
			       stacks[v][i].key);
}

/*
 * ---- The benchmarks ----
 *
 * A round gives every variant a fresh file ("instance") and then does the
 * work in slices of SLICE_PAGES pages, alternating between the variants
 * slice by slice (A B, B A, A B, ...: the first one alternates too), and
 * adds up the time each variant's slices took.  A slow phase of a shared
 * host (seconds long) so hits every variant alike, where whole runs back
 * to back would each see a different host.
 */

#define SLICE_PAGES	512	/* 2 MiB */

struct params {
	size_t size;
	int threads;
	size_t chunk;
};

struct inst;

struct worker {
	struct inst *in;
	int idx;
	pthread_t th;
	long bad;
};

struct inst {
	enum kind k;
	int fd;
	char *base;
	double secs;
	/* uffd tests */
	bool minor;
	int uffd, stopfd, threads;
	pthread_t handler;
	long resolved, eexist;
	int err;		/* errno of a failed ioctl in the handler */
	const char *what;	/* the failed ioctl */
	struct worker w[MAX_THREADS];
	pthread_barrier_t go, done;
	size_t first, npages;	/* the slice the workers are to fault */
	bool quit;
};

/*
 * Latencies of single calls, kept with -p: a rate that is low because a
 * few calls sleep looks different from one where every call is slow.
 */
static double *lat[K_NKINDS];
static size_t nlat[K_NKINDS], lat_cap[K_NKINDS];

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void lat_report(enum kind k)
{
	double *l = lat[k];
	size_t n = nlat[k];

	if (!n)
		return;
	qsort(l, n, sizeof(*l), dbl_cmp);
	printf("LATENCY test=%s variant=%s calls=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       test_name, kind_name[k], n, l[n / 2] * 1e6, l[n * 9 / 10] * 1e6,
	       l[n * 99 / 100] * 1e6, l[n - 1] * 1e6);
}

static void lat_add(enum kind k, double secs)
{
	if (nlat[k] == lat_cap[k]) {
		lat_cap[k] = lat_cap[k] ? 2 * lat_cap[k] : 65536;
		lat[k] = realloc(lat[k], lat_cap[k] * sizeof(*lat[k]));
		if (!lat[k])
			die("realloc");
	}
	lat[k][nlat[k]++] = secs;
}

/* Fill a file, for MINOR (not timed). */
static void populate(int fd, size_t size, size_t chunk)
{
	size_t off;

	for (off = 0; off < size; off += chunk) {
		ssize_t n = pwrite(fd, src + off % SRC_BYTES, chunk, off);

		if (n != (ssize_t)chunk)
			die("pwrite of %zu bytes at %zu returned %zd", chunk, off, n);
	}
}

static void first_touch_setup(struct inst *in, const struct params *pr)
{
	in->fd = mem_create(in->k, pr->size);
	in->base = mem_map(in->k, in->fd, pr->size);
}

static void first_touch_step(struct inst *in, const struct params *pr, size_t first, size_t n)
{
	size_t off, end = (first + n) * psize;

	for (off = first * psize; off < end; off += psize)
		__atomic_store_n((uint64_t *)(in->base + off), off, __ATOMIC_RELAXED);
}

static void first_touch_done(struct inst *in, const struct params *pr)
{
	size_t off;

	for (off = 0; off < pr->size; off += 97 * psize)
		if (__atomic_load_n((uint64_t *)(in->base + off), __ATOMIC_RELAXED) != off)
			die("%s: page at %zu lost its write", kind_name[in->k], off);
	mem_free(in->fd, in->base, pr->size);
}

static void *uffd_handler(void *arg)
{
	struct inst *in = arg;
	struct pollfd pfd[2] = { { in->uffd, POLLIN, 0 }, { in->stopfd, POLLIN, 0 } };
	struct uffd_msg msg[16];

	pin_self();
	for (;;) {
		ssize_t n;
		int i;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			in->what = "poll";
			in->err = errno;
			return NULL;
		}
		if (pfd[1].revents)
			return NULL;
		n = read(in->uffd, msg, sizeof(msg));
		if (n < 0) {
			if (errno == EAGAIN)
				continue;
			in->what = "read";
			in->err = errno;
			return NULL;
		}
		for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
			__u64 page = msg[i].arg.pagefault.address & ~(__u64)(psize - 1);
			__u64 off = page - (__u64)in->base;
			int ret;

			if (msg[i].event != UFFD_EVENT_PAGEFAULT) {
				in->what = "unexpected event";
				in->err = EPROTO;
				return NULL;
			}
			if (in->minor) {
				struct uffdio_continue c = {
					.range = { .start = page, .len = psize },
				};

				ret = ioctl(in->uffd, UFFDIO_CONTINUE, &c);
			} else {
				struct uffdio_copy c = {
					.dst = page,
					.src = (__u64)(src + off % SRC_BYTES),
					.len = psize,
				};

				ret = ioctl(in->uffd, UFFDIO_COPY, &c);
			}
			if (ret && errno == EEXIST) {
				struct uffdio_range r = { .start = page, .len = psize };

				in->eexist++;
				if (ioctl(in->uffd, UFFDIO_WAKE, &r)) {
					in->what = "UFFDIO_WAKE";
					in->err = errno;
					return NULL;
				}
			} else if (ret) {
				in->what = in->minor ? "UFFDIO_CONTINUE" : "UFFDIO_COPY";
				in->err = errno;
				return NULL;
			}
			if (!ret)
				in->resolved++;
		}
	}
}

/* Read the first word of each page of [first, first + n): faults. */
static long fault_pages(struct inst *in, size_t first, size_t n)
{
	long bad = 0;
	size_t p;

	for (p = first; p < first + n; p++)
		if (__atomic_load_n((uint64_t *)(in->base + p * psize), __ATOMIC_RELAXED) !=
		    pattern(p))
			bad++;
	return bad;
}

/* A faulting thread of -t N > 1: its share of each slice. */
static void *uffd_worker(void *arg)
{
	struct worker *w = arg;
	struct inst *in = w->in;

	pin_self();
	for (;;) {
		size_t per;

		pthread_barrier_wait(&in->go);
		if (in->quit)
			return NULL;
		per = in->npages / in->threads;
		w->bad += fault_pages(in, in->first + w->idx * per,
				      w->idx == in->threads - 1 ? in->npages - w->idx * per : per);
		pthread_barrier_wait(&in->done);
	}
}

static void uffd_setup(struct inst *in, const struct params *pr, bool minor)
{
	struct uffdio_register reg = {
		.mode = minor ? UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING,
	};
	int i;

	in->minor = minor;
	in->threads = pr->threads;
	in->fd = mem_create(in->k, pr->size);
	if (minor)
		populate(in->fd, pr->size, SRC_BYTES);
	in->base = mem_map(in->k, in->fd, pr->size);
	in->uffd = uffd_open();
	if (in->uffd < 0) {
		errno = -in->uffd;
		die("userfaultfd");
	}
	reg.range.start = (__u64)in->base;
	reg.range.len = pr->size;
	if (ioctl(in->uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER %s on %s", minor ? "MINOR" : "MISSING", kind_name[in->k]);
	in->stopfd = eventfd(0, EFD_CLOEXEC);
	if (in->stopfd < 0)
		die("eventfd");
	if (pthread_create(&in->handler, NULL, uffd_handler, in))
		die("pthread_create");
	if (in->threads == 1)
		return;
	pthread_barrier_init(&in->go, NULL, in->threads + 1);
	pthread_barrier_init(&in->done, NULL, in->threads + 1);
	for (i = 0; i < in->threads; i++) {
		in->w[i] = (struct worker){ .in = in, .idx = i };
		if (pthread_create(&in->w[i].th, NULL, uffd_worker, &in->w[i]))
			die("pthread_create");
	}
}

static void missing_setup(struct inst *in, const struct params *pr)
{
	uffd_setup(in, pr, false);
}

static void minor_setup(struct inst *in, const struct params *pr)
{
	uffd_setup(in, pr, true);
}

static void uffd_step(struct inst *in, const struct params *pr, size_t first, size_t n)
{
	if (in->threads == 1) {
		in->w[0].bad += fault_pages(in, first, n);
		return;
	}
	in->first = first;
	in->npages = n;
	pthread_barrier_wait(&in->go);
	pthread_barrier_wait(&in->done);
}

static void uffd_done(struct inst *in, const struct params *pr)
{
	uint64_t one = 1;
	long bad = 0;
	int i;

	if (in->threads > 1) {
		in->quit = true;
		pthread_barrier_wait(&in->go);
		for (i = 0; i < in->threads; i++)
			pthread_join(in->w[i].th, NULL);
		pthread_barrier_destroy(&in->go);
		pthread_barrier_destroy(&in->done);
	}
	for (i = 0; i < in->threads; i++)
		bad += in->w[i].bad;
	if (write(in->stopfd, &one, sizeof(one)) != sizeof(one))
		die("eventfd write");
	pthread_join(in->handler, NULL);
	if (in->what) {
		errno = in->err;
		die("%s: handler: %s failed", kind_name[in->k], in->what);
	}
	if (bad)
		die("%s: %ld pages read back wrong", kind_name[in->k], bad);
	if (in->resolved + in->eexist < (long)(pr->size / psize))
		die("%s: %ld faults resolved for %zu pages", kind_name[in->k],
		    in->resolved + in->eexist, pr->size / psize);
	close(in->stopfd);
	close(in->uffd);
	mem_free(in->fd, in->base, pr->size);
}

static void pwrite_setup(struct inst *in, const struct params *pr)
{
	in->fd = mem_create(in->k, pr->size);
}

static void pwrite_step(struct inst *in, const struct params *pr, size_t first, size_t n)
{
	size_t off, end = (first + n) * psize;

	for (off = first * psize; off < end; off += pr->chunk) {
		double t0 = prof.on ? now() : 0;
		ssize_t ret = pwrite(in->fd, src + off % SRC_BYTES, pr->chunk, off);

		if (ret != (ssize_t)pr->chunk)
			die("pwrite of %zu bytes at %zu returned %zd", pr->chunk, off, ret);
		if (prof.on)
			lat_add(in->k, now() - t0);
	}
}

static void pwrite_done(struct inst *in, const struct params *pr)
{
	static char check[4096];
	size_t off;

	for (off = 0; off < pr->size; off += 101 * psize) {
		if (pread(in->fd, check, sizeof(check), off) != sizeof(check))
			die("pread at %zu", off);
		if (memcmp(check, src + off % SRC_BYTES, sizeof(check)))
			die("%s: pwrite data at %zu reads back wrong", kind_name[in->k], off);
	}
	mem_free(in->fd, NULL, pr->size);
}

struct test {
	const char *name;
	void (*setup)(struct inst *in, const struct params *pr);
	void (*step)(struct inst *in, const struct params *pr, size_t first, size_t n);
	void (*done)(struct inst *in, const struct params *pr);
	const char *unit;	/* pages/s, or MiB/s */
	size_t mib;		/* default size */
	int nvar;
	enum kind var[MAX_VARIANTS];	/* var[0] is what the others are compared to */
};

static const struct test tests[] = {
	{ "first-touch", first_touch_setup, first_touch_step, first_touch_done, "pages/s", 64,
	  4, { K_GMEM, K_KVM, K_MEMFD, K_SECRET } },
	{ "missing", missing_setup, uffd_step, uffd_done, "pages/s", 16,
	  4, { K_GMEM, K_MEMFD, K_ANON, K_SECRET } },
	{ "minor", minor_setup, uffd_step, uffd_done, "pages/s", 16,
	  3, { K_GMEM, K_MEMFD, K_SECRET } },
	{ "pwrite", pwrite_setup, pwrite_step, pwrite_done, "MiB/s", 64,
	  3, { K_GMEM, K_MEMFD, K_SECRET } },
};

/* One round: every variant on a fresh file, slice by slice in alternation. */
static void round_run(const struct test *t, const struct params *pr, const bool *skipped,
		      double *value, bool sample)
{
	struct inst in[MAX_VARIANTS];
	size_t pages = pr->size / psize, slice = SLICE_PAGES, first;
	int v, j, s;

	if (pr->chunk / psize > slice)
		slice = pr->chunk / psize;
	memset(in, 0, sizeof(in));
	for (v = 0; v < t->nvar; v++) {
		in[v].k = t->var[v];
		if (!skipped[v])
			t->setup(&in[v], pr);
	}
	for (first = 0, s = 0; first < pages; first += slice, s++) {
		size_t n = pages - first < slice ? pages - first : slice;

		for (j = 0; j < t->nvar; j++) {
			double t0;

			v = (s + j) % t->nvar;
			if (skipped[v])
				continue;
			if (sample) {
				prof_enable(true);
				__atomic_store_n(&cur_variant, v, __ATOMIC_RELAXED);
			}
			t0 = now();
			t->step(&in[v], pr, first, n);
			in[v].secs += now() - t0;
			if (sample) {
				__atomic_store_n(&cur_variant, -1, __ATOMIC_RELAXED);
				prof_enable(false);
				prof_drain(v);
			}
		}
	}
	for (v = 0; v < t->nvar; v++) {
		if (skipped[v])
			continue;
		t->done(&in[v], pr);
		if (!strcmp(t->unit, "MiB/s"))
			value[v] = pr->size / (double)(1 << 20) / in[v].secs;
		else
			value[v] = pages / in[v].secs;
	}
}

static void bad_args(void)
{
	fprintf(stderr,
		"usage: gmem_bench [-r ROUNDS] [-s MIB] [-t THREADS] [-c CHUNK_KIB] [-U] [-p] TEST\n"
		"TEST: first-touch | missing | minor | pwrite\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct params pr = { .threads = 1, .chunk = 4096 };
	const struct test *t = NULL;
	bool skipped[MAX_VARIANTS] = { false };
	bool profile = false, any_skip = false;
	char label[64], variants[128] = "";
	int rounds = 7, opt, r, v;
	size_t mib = 0, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	psize = sysconf(_SC_PAGESIZE);
	while ((opt = getopt(argc, argv, "r:s:t:c:pU")) != -1) {
		switch (opt) {
		case 'r':
			rounds = atoi(optarg);
			break;
		case 's':
			mib = strtoul(optarg, NULL, 0);
			break;
		case 't':
			pr.threads = atoi(optarg);
			break;
		case 'c':
			pr.chunk = strtoul(optarg, NULL, 0) << 10;
			break;
		case 'p':
			profile = true;
			break;
		case 'U':
			pin = false;
			break;
		default:
			bad_args();
		}
	}
	if (optind != argc - 1)
		bad_args();
	for (i = 0; i < ARRAY_SIZE(tests); i++)
		if (!strcmp(argv[optind], tests[i].name))
			t = &tests[i];
	if (!t || rounds < 1 || pr.threads < 1 || pr.threads > MAX_THREADS ||
	    !pr.chunk || pr.chunk > SRC_BYTES || pr.chunk % psize)
		bad_args();
	pr.size = (mib ? mib : t->mib) << 20;
	if (pr.size % (pr.chunk > SRC_BYTES ? pr.chunk : SRC_BYTES) ||
	    pr.size / psize < (size_t)pr.threads)
		bad_args();

	/* The name in the report: the test, and the knob that varies. */
	if (t->setup == missing_setup || t->setup == minor_setup)
		snprintf(label, sizeof(label), "%s-%dt", t->name, pr.threads);
	else if (t->setup == pwrite_setup && pr.chunk % (1 << 20) == 0)
		snprintf(label, sizeof(label), "%s-%zum", t->name, pr.chunk >> 20);
	else if (t->setup == pwrite_setup)
		snprintf(label, sizeof(label), "%s-%zuk", t->name, pr.chunk >> 10);
	else
		snprintf(label, sizeof(label), "%s", t->name);
	test_name = label;

	src_init();
	gmem_dev = open(GMEM_DEV, O_RDWR | O_CLOEXEC);
	if (gmem_dev < 0)
		die("open %s (is gmem_uffd loaded?)", GMEM_DEV);
	for (v = 0; v < t->nvar; v++) {
		if (t->var[v] == K_KVM) {
			const char *why = kvm_open();

			if (why) {
				printf("BENCH_SKIP test=%s variant=%s reason=%s\n",
				       label, kind_name[K_KVM], why);
				skipped[v] = any_skip = true;
			}
		}
		if (!skipped[v])
			snprintf(variants + strlen(variants), sizeof(variants) - strlen(variants),
				 "%s%s", variants[0] ? "," : "", kind_name[t->var[v]]);
	}
	/* Profiled rounds are slowed by the sampling: not for the report. */
	printf("%sBENCH_TEST test=%s unit=%s variants=%s size_mib=%zu threads=%d chunk_kib=%zu rounds=%d pinned=%d\n",
	       profile ? "PROF_" : "", label, t->unit, variants, pr.size >> 20, pr.threads, pr.chunk >> 10, rounds,
	       pin);
	if (profile) {
		prof_init();
		stacks_start();
	}
	pin_self();

	/* Round 0 is the warm-up. */
	for (r = 0; r <= rounds; r++) {
		double value[MAX_VARIANTS];

		memset(nlat, 0, sizeof(nlat));
		round_run(t, &pr, skipped, value, profile && r > 0);
		for (v = 0; v < t->nvar; v++) {
			if (skipped[v])
				continue;
			printf("%sBENCH test=%s variant=%s round=%d value=%.3f unit=%s%s\n",
			       profile ? "PROF_" : "", label, kind_name[t->var[v]], r, value[v],
			       t->unit, r ? "" : " warmup=1");
		}
	}
	/* The latencies of single calls in the last round (-p, pwrite). */
	for (v = 0; v < t->nvar; v++)
		lat_report(t->var[v]);
	if (profile) {
		__atomic_store_n(&stack_stop, true, __ATOMIC_RELAXED);
		pthread_join(stack_thread, NULL);
	}
	for (v = 0; v < t->nvar; v++) {
		if (skipped[v])
			continue;
		prof_report(v, kind_name[t->var[v]]);
		stacks_report(v, kind_name[t->var[v]]);
	}
	if (kvm_vm >= 0)
		close(kvm_vm);
	close(gmem_dev);
	return any_skip ? KSFT_SKIP : 0;
}
