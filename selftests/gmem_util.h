/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the gmem_uffd selftests: the device, guest memory files
 * (and the sealed memfd that stands in for one in the tests' self checks),
 * the debugfs counters, userfaultfd set-up, the environment and the clock,
 * page patterns, SIGBUS probes, touching threads, cgroup v2, NUMA, child
 * processes and the kernel log.  Every helper that can fail returns -errno
 * (or -1 where said) instead of asserting, so that both kselftest-harness
 * tests and plain programs can use it.
 */
#ifndef GMEM_UTIL_H
#define GMEM_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/mempolicy.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"

#define GMEM_DEV		"/dev/guest_memfd"
#define GMEM_MODULE		"gmem_uffd"
#define DEBUGFS_DIR		"/sys/kernel/debug"
#define GMEM_DEBUGFS_DIR	DEBUGFS_DIR "/" GMEM_MODULE
#define GMEM_SHARED		(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
/* The value of the posted series "KVM: guest_memfd: direct map removal". */
#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP	(1ULL << 2)
#endif
#define PUNCH_HOLE		(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
#define MODE_MISSING		UFFDIO_REGISTER_MODE_MISSING
#define MODE_MINOR		UFFDIO_REGISTER_MODE_MINOR
#define MODE_BOTH		(MODE_MISSING | MODE_MINOR)

/* /dev/guest_memfd opened read-write: the fd, or -errno. */
static inline int gmem_open_dev(void)
{
	int fd = open(GMEM_DEV, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static inline int create_gmem_args(int dev, struct kvm_create_guest_memfd *args)
{
	int fd = ioctl(dev, KVM_CREATE_GUEST_MEMFD, args);

	return fd < 0 ? -errno : fd;
}

/* A guest memory file of @size bytes made on @dev: its fd, or -errno. */
static inline int create_gmem(int dev, __u64 size, __u64 flags)
{
	struct kvm_create_guest_memfd args = { .size = size, .flags = flags };

	return create_gmem_args(dev, &args);
}

/*
 * A shmem memfd of @size bytes sealed against growing and shrinking: the
 * stand-in for a GMEM_SHARED file (same MISSING/MINOR rules; a pwrite()
 * past the end fails with EPERM instead of ENOSPC).  The fd, or -errno.
 */
static inline int create_sealed_memfd(const char *name, off_t size)
{
	int fd, ret;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) || fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Map the first @len bytes of @fd read-write: 0 or -errno. */
static inline int map_gmem(int fd, long len, int flags, char **mem)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	*mem = p;
	return 0;
}

/*
 * Read a file holding one decimal number and a newline, as the module's
 * debugfs counters do ("%llu\n"): 0, -EINVAL for any other format, or
 * -errno.
 */
static inline int read_number(const char *path, unsigned long long *val)
{
	char buf[32], *end;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return n;
	buf[n] = '\0';
	if (n < 2 || buf[n - 1] != '\n' || buf[0] < '0' || buf[0] > '9')
		return -EINVAL;
	errno = 0;
	*val = strtoull(buf, &end, 10);
	if (errno || end != buf + n - 1)
		return -EINVAL;
	return 0;
}

static inline bool debugfs_mounted(void)
{
	struct statfs sfs;

	return !statfs(DEBUGFS_DIR, &sfs) && sfs.f_type == DEBUGFS_MAGIC;
}

/* The superblock magic of the module's files ("GMUF"). */
#define GMEM_UFFD_MAGIC		0x474d5546

/* @fd is a file of gmem_uffd (whoever created it: the device or KVM). */
static inline bool gmem_uffd_file(int fd)
{
	struct statfs sfs;

	return !fstatfs(fd, &sfs) && sfs.f_type == GMEM_UFFD_MAGIC;
}

/* debugfs is mounted and the module's counters are there. */
static inline bool gmem_counters_present(void)
{
	return debugfs_mounted() && !access(GMEM_DEBUGFS_DIR "/files", R_OK);
}

/* The module's debugfs counter @name, or -1 when it cannot be read. */
static inline long long gmem_counter(const char *name)
{
	unsigned long long val = 0;
	char path[128];

	snprintf(path, sizeof(path), GMEM_DEBUGFS_DIR "/%s", name);
	if (read_number(path, &val))
		return -1;
	return val;
}

static inline uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline uint64_t now_ms(void)
{
	return now_us() / 1000;
}

/*
 * A userfaultfd with the API handshake done for @features, or -errno;
 * @flags may add UFFD_USER_MODE_ONLY (what an unprivileged process needs
 * while vm.unprivileged_userfaultfd is 0).  O_NONBLOCK: poll() on a
 * blocking userfaultfd reports POLLERR.
 */
static inline int uffd_open_flags(int flags, __u64 features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int uffd, ret;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags);
	if (uffd < 0)
		return -errno;
	if (ioctl(uffd, UFFDIO_API, &api)) {
		ret = -errno;
		close(uffd);
		return ret;
	}
	return uffd;
}

static inline int uffd_open_features(__u64 features)
{
	return uffd_open_flags(0, features);
}

static inline int uffd_open(void)
{
	return uffd_open_features(0);
}

/*
 * The next message of @uffd (opened O_NONBLOCK) within @timeout_ms: 0 with
 * *@msg filled, -ETIMEDOUT, or -errno of poll() or read() (-EIO: short).
 * A message another reader took first is waited for again.
 */
static inline int uffd_read_msg(int uffd, struct uffd_msg *msg, int timeout_ms)
{
	struct pollfd pfd = { .fd = uffd, .events = POLLIN };
	uint64_t deadline = now_ms() + timeout_ms;
	ssize_t n;
	int ret, left;

	for (;;) {
		left = (int)(deadline - now_ms());
		if (left <= 0)
			return -ETIMEDOUT;
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0)
			return -errno;
		if (!ret)
			return -ETIMEDOUT;
		n = read(uffd, msg, sizeof(*msg));
		if (n == (ssize_t)sizeof(*msg))
			return 0;
		if (n < 0 && errno == EAGAIN)
			continue;
		return n < 0 ? -errno : -EIO;
	}
}

/* How often a filling ioctl that fails with EAGAIN is tried before giving up. */
#define UFFD_EAGAIN_TRIES	1000

/*
 * A filling ioctl (@req: UFFDIO_COPY, UFFDIO_CONTINUE, ...) on @uffd with
 * @arg, tried again while it fails with EAGAIN (the mm is changing under a
 * non-cooperative event), up to UFFD_EAGAIN_TRIES times; *@eagain, unless
 * NULL, counts the retries.  0 or -errno.
 */
static inline int uffd_ioctl_retry(int uffd, unsigned long req, void *arg,
				   unsigned long *eagain)
{
	int i;

	for (i = 0; i < UFFD_EAGAIN_TRIES; i++) {
		if (!ioctl(uffd, req, arg))
			return 0;
		if (errno != EAGAIN)
			return -errno;
		if (eagain)
			(*eagain)++;
		sched_yield();
	}
	return -EAGAIN;
}

/* Register [@addr, @addr + @len) for @mode: 0 or -errno; *@ioctls unless NULL. */
static inline int uffd_register(int uffd, void *addr, unsigned long len, __u64 mode,
				__u64 *ioctls)
{
	struct uffdio_register reg = {
		.range = { .start = (unsigned long)addr, .len = len },
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	if (ioctls)
		*ioctls = reg.ioctls;
	return 0;
}

/* The environment variable @name as a number in [@min, @max], else @def. */
static inline unsigned long env_ulong(const char *name, unsigned long def, unsigned long min,
				      unsigned long max)
{
	const char *s = getenv(name);
	unsigned long v;
	char *end;

	if (!s || !*s)
		return def;
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || *end || v < min || v > max) {
		ksft_print_msg("ignoring %s=%s (want %lu..%lu)\n", name, s, min, max);
		return def;
	}
	return v;
}

/* A byte pattern of @seed over @len bytes. */
static inline void fill(char *buf, long len, unsigned int seed)
{
	long i;

	for (i = 0; i < len; i++)
		buf[i] = (char)(seed + i % 251 + 1);
}

static inline bool all_zero(const char *buf, long len)
{
	long i;

	for (i = 0; i < len; i++) {
		if (buf[i])
			return false;
	}
	return true;
}

/* pthread_join() bounded by @secs seconds: 0 or ETIMEDOUT. */
static inline int join_timeout(pthread_t thread, int secs)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	return pthread_timedjoin_np(thread, NULL, &ts);
}

/* xorshift64*: the next number of the generator whose state is *@s (never 0). */
static inline uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static inline unsigned long rnd_below(uint64_t *s, unsigned long n)
{
	return n ? rnd_next(s) % n : 0;
}

/*
 * Word @w of page @page of the pattern of @seed: seed << 48 | page << 16 |
 * word, so that a hex dump of a wrong word tells where it came from, and no
 * two words of a file (up to 2^32 pages of up to 2^16 words) are the same.
 * Seed 0 is the pattern of a page never written: all zeros.
 */
static inline uint64_t page_word(uint16_t seed, unsigned long page, unsigned long w)
{
	if (!seed)
		return 0;
	return (uint64_t)seed << 48 | (uint64_t)(page & 0xffffffff) << 16 | (w & 0xffff);
}

/* Fill @buf (@len bytes, a multiple of 8) with page @page of the pattern of @seed. */
static inline void fill_page_words(void *buf, long len, uint16_t seed, unsigned long page)
{
	uint64_t *p = buf;
	long w;

	for (w = 0; w < len / 8; w++)
		p[w] = page_word(seed, page, w);
}

/* The first word of @buf (@len bytes) that is not page @page of @seed's pattern, or -1. */
static inline long bad_page_word(const void *buf, long len, uint16_t seed, unsigned long page)
{
	const uint64_t *p = buf;
	long w;

	for (w = 0; w < len / 8; w++) {
		if (p[w] != page_word(seed, page, w))
			return w;
	}
	return -1;
}

/*
 * gmem_access() loads one byte at @p, or stores @val there: a plain load or
 * store (one mov), not a seq_cst store (xchg on x86): QEMU's single-threaded
 * TCG emulates xchg as a load, then a store, and the fault of the load is a
 * read fault.
 */
static inline void gmem_access(char *p, bool write, char val)
{
	if (write)
		__atomic_store_n(p, val, __ATOMIC_RELAXED);
	else
		(void)__atomic_load_n(p, __ATOMIC_RELAXED);
}

/*
 * SIGBUS probes.  sig_probe() makes the access of gmem_access() and returns
 * 0, or the signal it raised: SIGBUS, or SIGSEGV too if @segv (without
 * @segv a SIGSEGV is not caught).  sigbus_probe() is sig_probe() without
 * @segv, sigbus_call() calls @fn(@arg); each tells whether that raised
 * SIGBUS.  Unless @si is NULL, each leaves the caught signal's siginfo
 * there.  The jump buffer is per thread: the thread that faults is the one
 * that catches.  A signal outside a probe, or one the probe does not catch,
 * kills the process, as it would have without the handler.
 */
static __thread sigjmp_buf gmem_probe_jmp;
static __thread int gmem_probe_armed;	/* 1 << each signal caught, or 0 */
static __thread int gmem_probe_sig;	/* the signal caught */
static __thread siginfo_t *gmem_probe_info;

static inline void gmem_probe_handler(int sig, siginfo_t *si, void *uc)
{
	if (__atomic_load_n(&gmem_probe_armed, __ATOMIC_SEQ_CST) & (1 << sig)) {
		if (gmem_probe_info)
			*gmem_probe_info = *si;
		gmem_probe_sig = sig;
		siglongjmp(gmem_probe_jmp, 1);
	}
	/* Not expected: die of it (@sig is blocked until we return). */
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Install the handler for SIGBUS (and SIGSEGV if @segv). */
static inline void gmem_probe_arm(siginfo_t *si, bool segv)
{
	struct sigaction sa = {
		.sa_sigaction = gmem_probe_handler,
		.sa_flags = SA_SIGINFO,
	};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (segv)
		sigaction(SIGSEGV, &sa, NULL);
	gmem_probe_info = si;
}

static inline int sig_probe(char *p, bool write, char val, bool segv, siginfo_t *si)
{
	gmem_probe_arm(si, segv);
	if (sigsetjmp(gmem_probe_jmp, 1)) {
		__atomic_store_n(&gmem_probe_armed, 0, __ATOMIC_SEQ_CST);
		return gmem_probe_sig;
	}
	__atomic_store_n(&gmem_probe_armed, 1 << SIGBUS | (segv ? 1 << SIGSEGV : 0),
			 __ATOMIC_SEQ_CST);
	/* The signal fences keep the access between the stores of the mask. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	gmem_access(p, write, val);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&gmem_probe_armed, 0, __ATOMIC_SEQ_CST);
	return 0;
}

static inline bool sigbus_probe(char *p, bool write, char val, siginfo_t *si)
{
	return sig_probe(p, write, val, false, si);
}

static inline bool sigbus_call(void (*fn)(void *), void *arg, siginfo_t *si)
{
	gmem_probe_arm(si, false);
	if (sigsetjmp(gmem_probe_jmp, 1)) {
		__atomic_store_n(&gmem_probe_armed, 0, __ATOMIC_SEQ_CST);
		return true;
	}
	__atomic_store_n(&gmem_probe_armed, 1 << SIGBUS, __ATOMIC_SEQ_CST);
	fn(arg);
	__atomic_store_n(&gmem_probe_armed, 0, __ATOMIC_SEQ_CST);
	return false;
}

/*
 * A thread that touches one address (gmem_access()), then copies the page
 * it sees there to ->seen, unless the touch raised a signal.  @catch says
 * what the touch catches: TOUCH_PLAIN, nothing (no handler is installed, a
 * SIGBUS or SIGSEGV kills the process); TOUCH_SIGBUS, SIGBUS
 * (sigbus_probe()); TOUCH_SIGBUS_SEGV, SIGBUS and SIGSEGV (sig_probe()).
 * The signal caught is left in ->sig.  toucher_start() returns 0 or
 * -errno; toucher_join() waits @secs seconds at most: 0 or ETIMEDOUT;
 * toucher_free() frees ->seen.
 */
enum touch_catch {
	TOUCH_PLAIN,
	TOUCH_SIGBUS,
	TOUCH_SIGBUS_SEGV,
};

struct toucher {
	char *addr;
	bool write;		/* store ->val at ->addr: a write fault */
	char val;
	enum touch_catch catch;
	int tid;		/* set once the thread runs */
	int done;		/* set after the touch */
	int sig;		/* what the touch raised, or 0 */
	char *seen;		/* one page */
	pthread_t thread;
};

static inline void *toucher_fn(void *arg)
{
	struct toucher *t = arg;
	long ps = sysconf(_SC_PAGESIZE);
	char *page = (char *)((unsigned long)t->addr & ~(ps - 1));

	__atomic_store_n(&t->tid, (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (t->catch == TOUCH_PLAIN)
		gmem_access(t->addr, t->write, t->val);
	else
		t->sig = sig_probe(t->addr, t->write, t->val,
				   t->catch == TOUCH_SIGBUS_SEGV, NULL);
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	if (!t->sig)
		memcpy(t->seen, page, ps);
	return NULL;
}

static inline int toucher_start(struct toucher *t, enum touch_catch catch, char *addr,
				bool write, char val)
{
	long ps = sysconf(_SC_PAGESIZE);

	t->addr = addr;
	t->write = write;
	t->val = val;
	t->catch = catch;
	t->tid = 0;
	t->done = 0;
	t->sig = 0;
	t->seen = malloc(ps);
	if (!t->seen)
		return -ENOMEM;
	/* Neither zeros nor a pattern: a page never seen cannot pass. */
	memset(t->seen, 0xee, ps);
	return -pthread_create(&t->thread, NULL, toucher_fn, t);
}

static inline bool toucher_done(struct toucher *t)
{
	return __atomic_load_n(&t->done, __ATOMIC_ACQUIRE);
}

static inline int toucher_join(struct toucher *t, int secs)
{
	int ret = join_timeout(t->thread, secs);

	if (!ret)
		t->thread = 0;
	return ret;
}

static inline void toucher_free(struct toucher *t)
{
	free(t->seen);
	t->seen = NULL;
}

/* The result of a libc call, or -errno when it failed. */
static inline long err_of(long ret)
{
	return ret < 0 ? -errno : ret;
}

/* pread()/pwrite() of one page at @off: 0, -EIO (short) or -errno. */
static inline int read_page(int fd, char *buf, off_t off)
{
	long ps = sysconf(_SC_PAGESIZE);
	ssize_t n = pread(fd, buf, ps, off);

	return n == ps ? 0 : n < 0 ? -errno : -EIO;
}

static inline int write_page(int fd, const char *buf, off_t off)
{
	long ps = sysconf(_SC_PAGESIZE);
	ssize_t n = pwrite(fd, buf, ps, off);

	return n == ps ? 0 : n < 0 ? -errno : -EIO;
}

/* UFFDIO_WAKE of the one page at @dst: 0 or -errno. */
static inline int uffd_wake(int uffd, void *dst)
{
	struct uffdio_range range = {
		.start = (unsigned long)dst, .len = sysconf(_SC_PAGESIZE),
	};

	return ioctl(uffd, UFFDIO_WAKE, &range) ? -errno : 0;
}

/* Write the string @val to the file @path (sysfs, procfs, cgroupfs): 0 or -errno. */
static inline int write_str(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * The module's debugfs file "direct_map" answers whether the kernel's direct
 * map maps a page of a file (secret hiding).  Write @cmd ("FD OFFSET",
 * "held", "drop") and read the answer back: 0, or -errno.
 */
static inline int direct_map_cmd(const char *cmd, long *answer)
{
	char buf[32] = "";
	int fd, ret;

	ret = write_str(GMEM_DEBUGFS_DIR "/direct_map", cmd);
	if (ret)
		return ret;
	fd = open(GMEM_DEBUGFS_DIR "/direct_map", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = read(fd, buf, sizeof(buf) - 1) > 0 ? 0 : -EIO;
	close(fd);
	if (!ret) {
		char *end;

		*answer = strtol(buf, &end, 10);
		if (end == buf || *end != '\n')
			ret = -EINVAL;
	}
	return ret;
}

/*
 * Whether the direct map maps page @page of @fd: 1, 0, -1 (no page), -2 if
 * the query failed.  The module holds the page until direct_map_cmd("drop").
 */
static inline long direct_map(int fd, long page)
{
	char cmd[32];
	long answer = -2;

	snprintf(cmd, sizeof(cmd), "%d %ld", fd, page * sysconf(_SC_PAGESIZE));
	if (direct_map_cmd(cmd, &answer))
		return -2;
	return answer;
}

/* The value in kB of the field @name of /proc/meminfo, or -errno. */
static inline long long meminfo_kb(const char *name)
{
	char line[128], key[64];
	long long val, ret = -ENOENT;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %lld", key, &val) == 2 && !strcmp(key, name)) {
			ret = val;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* The capability @cap is in this process's effective set (/proc/self/status). */
static inline bool has_cap(int cap)
{
	unsigned long long eff = 0;
	char line[128];
	bool found = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &eff) == 1;
	fclose(f);
	return found && cap < 64 && (eff >> cap & 1);
}

/*
 * cgroup v2.  A cgroup is named by its path under CGROUP2_DIR; "" is the
 * root.
 */
#define CGROUP2_DIR		"/sys/fs/cgroup"

/* Mount cgroup2 if needed and enable the memory controller for children: 0 or -errno. */
static inline int cgroup2_setup(void)
{
	char ctrl[256] = "";
	ssize_t n;
	int fd;

	if (access(CGROUP2_DIR "/cgroup.controllers", F_OK) &&
	    mount("cgroup2", CGROUP2_DIR, "cgroup2", 0, NULL))
		return -errno;
	fd = open(CGROUP2_DIR "/cgroup.controllers", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, ctrl, sizeof(ctrl) - 1);
	close(fd);
	if (n <= 0 || !strstr(ctrl, "memory"))
		return -ENOENT;
	return write_str(CGROUP2_DIR "/cgroup.subtree_control", "+memory");
}

static inline void cg_path(char *buf, size_t len, const char *cg, const char *file)
{
	snprintf(buf, len, CGROUP2_DIR "/%s%s%s", cg, *cg && file ? "/" : "", file ? file : "");
}

static inline int cg_create(const char *cg)
{
	char path[256];

	cg_path(path, sizeof(path), cg, NULL);
	return mkdir(path, 0755) ? -errno : 0;
}

static inline int cg_remove(const char *cg)
{
	char path[256];

	cg_path(path, sizeof(path), cg, NULL);
	return rmdir(path) ? -errno : 0;
}

/* Write @val to the control file @file of @cg: 0 or -errno. */
static inline int cg_write(const char *cg, const char *file, const char *val)
{
	char path[256];

	cg_path(path, sizeof(path), cg, file);
	return write_str(path, val);
}

static inline int cg_write_ll(const char *cg, const char *file, long long val)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", val);
	return cg_write(cg, file, buf);
}

/* Move the calling process into @cg: 0 or -errno. */
static inline int cg_enter(const char *cg)
{
	return cg_write(cg, "cgroup.procs", "0");
}

/* memory.current of @cg in bytes, or -errno. */
static inline long long cg_current(const char *cg)
{
	unsigned long long val = 0;
	char path[256];
	int ret;

	cg_path(path, sizeof(path), cg, "memory.current");
	ret = read_number(path, &val);
	return ret ? ret : (long long)val;
}

/* The count of @event ("high", "max", "oom", "oom_kill", ...) in memory.events of @cg, or -errno. */
static inline long long cg_event(const char *cg, const char *event)
{
	char path[256], line[128], key[64];
	long long val, ret = -ENOENT;
	FILE *f;

	cg_path(path, sizeof(path), cg, "memory.events");
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63s %lld", key, &val) == 2 && !strcmp(key, event)) {
			ret = val;
			break;
		}
	}
	fclose(f);
	return ret;
}

/* NUMA: the number of nodes (node0, node1, ... in sysfs). */
static inline int num_nodes(void)
{
	char path[64];
	int n = 0;

	for (;;) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", n);
		if (access(path, F_OK))
			return n;
		n++;
	}
}

/* Binds the range @addr..@addr+@len (its file's range, for a shared file) to @node. */
static inline long bind_to(void *addr, size_t len, int node)
{
	unsigned long mask = 1UL << node;

	return syscall(__NR_mbind, addr, len, MPOL_BIND, &mask, sizeof(mask) * 8, 0);
}

/* Binds the calling task to @node (-1: back to the default policy). */
static inline long task_bind(int node)
{
	unsigned long mask = 1UL << (node < 0 ? 0 : node);

	if (node < 0)
		return syscall(__NR_set_mempolicy, MPOL_DEFAULT, NULL, 0);
	return syscall(__NR_set_mempolicy, MPOL_BIND, &mask, sizeof(mask) * 8);
}

/* The node of the page mapped at @addr (move_pages in query mode), or -errno. */
static inline int page_node(void *addr)
{
	void *pages[1] = { addr };
	int status[1] = { -1 };

	if (syscall(__NR_move_pages, 0, 1, pages, NULL, status, 0))
		return -errno;
	return status[0];
}

/*
 * Wait up to @timeout_ms for the child @pid to end (a pidfd, no polling
 * loop): 0 with its wait status in *@status, -ETIMEDOUT after killing and
 * reaping it, or -errno.
 */
static inline int wait_child_timeout(pid_t pid, int timeout_ms, int *status)
{
	struct pollfd pfd = { .events = POLLIN };
	int ret;

	pfd.fd = syscall(__NR_pidfd_open, pid, 0);
	if (pfd.fd < 0)
		return -errno;
	do {
		ret = poll(&pfd, 1, timeout_ms);
	} while (ret < 0 && errno == EINTR);
	close(pfd.fd);
	if (ret < 0)
		return -errno;
	if (!ret)
		kill(pid, SIGKILL);
	if (waitpid(pid, status, 0) != pid)
		return -errno;
	return ret ? 0 : -ETIMEDOUT;
}

/*
 * The kernel log.  kmsg_open() opens /dev/kmsg at its end: kmsg_splat() then
 * reads what the kernel logged since (or since its last call) and returns
 * true at the first record that matches what scripts/results.py fails a
 * run on, copied to @line.  @traces_ok: a bare "Call Trace:" does not count
 * (an OOM report prints one, for instance), a warning or a bug still does.
 */
static inline int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	if (lseek(fd, 0, SEEK_END) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* @line: @len > 0 bytes. */
static inline bool kmsg_splat(int fd, bool traces_ok, char *line, size_t len)
{
	static const char *const splats[] = {
		"WARNING:", "BUG:", "Oops", "KASAN:", "kernel BUG at", "Kernel panic",
		"general protection fault", "UBSAN:", "possible circular locking",
		"possible recursive locking", "inconsistent lock state",
		"suspicious RCU usage", "lockdep is turned off", "detected stall",
		"self-detected stall", "Call Trace:", "blocked for more than",
		"soft lockup", "hard LOCKUP",
	};
	char rec[8192], *msg, *end;
	unsigned int i;
	ssize_t n;

	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && (errno == EPIPE || errno == EINTR))
			continue;	/* overwritten before we read it; go on */
		if (n <= 0)
			return false;	/* EAGAIN: nothing more */
		rec[n] = '\0';
		msg = strchr(rec, ';');
		msg = msg ? msg + 1 : rec;
		end = strchr(msg, '\n');
		if (end)
			*end = '\0';
		for (i = 0; i < ARRAY_SIZE(splats); i++) {
			if (traces_ok && !strcmp(splats[i], "Call Trace:"))
				continue;
			if (strstr(msg, splats[i])) {
				size_t n = strnlen(msg, len - 1);

				memcpy(line, msg, n);
				line[n] = '\0';
				return true;
			}
		}
	}
}

/*
 * Whether task @tid (a process, or a thread of any process: /proc/TID is
 * there for threads too) sleeps in the kernel function @fn, as its
 * /proc/TID/wchan names it.
 */
static inline bool task_sleeps_in(int tid, const char *fn)
{
	char path[64], buf[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/wchan", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return !strcmp(buf, fn);
}

/*
 * Wait up to @timeout_ms for task @tid to sleep in a userfault
 * (handle_userfault() in its wchan), polling every millisecond: the bounded
 * wait of a test that must act on a thread known to be blocked in a fault
 * (the fault's message may be read before the thread is asleep).  0, or
 * -ETIMEDOUT.
 */
static inline int wait_in_userfault(int tid, int timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		if (task_sleeps_in(tid, "handle_userfault"))
			return 0;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

#endif /* GMEM_UTIL_H */
