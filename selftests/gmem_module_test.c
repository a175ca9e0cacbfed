// SPDX-License-Identifier: GPL-2.0
/*
 * Unloading the module while the last user of one of its files, or of
 * /dev/guest_memfd, goes away.
 *
 * A guest memory file pins the module twice: its file operations (until
 * __fput() is done with them) and the mount of the module's pseudo file
 * system (until the super block is killed, which runs the module's
 * kill_sb); an open fd of /dev/guest_memfd pins it too (the owner of the
 * device's file operations).  Each iteration leaves a single mapping or fd
 * of a file, or the device fd, holding the module, drops it from another
 * thread or process while this one calls delete_module(O_NONBLOCK) in a
 * loop, and checks that:
 *
 *  - delete_module() refuses (EWOULDBLOCK/EBUSY) while anything of the file
 *    is left, and succeeds once it is gone (within UNLOAD_TIMEOUT_MS);
 *  - the module is really gone (/sys/module/gmem_uffd), and loads again
 *    from /modules/gmem_uffd.ko, and the new instance creates files.
 *
 * A teardown step running after the module text is freed would oops or be
 * reported by KASAN: the kernel log check of the run catches that.  The
 * variants drop the last reference by munmap() (the fput is deferred to
 * the return to user space), by close() of the last fd, by the exit of a
 * child process that held the last mapping, and by close() of the device
 * fd.  The module is left loaded.
 *
 * GMEM_MODULE_ITERS (default 10) iterations per variant.
 */
#include "gmem_util.h"
#include "kselftest_harness.h"

#define MODULE_KO		"/modules/" GMEM_MODULE ".ko"
#define MODULE_SYSFS		"/sys/module/" GMEM_MODULE
#define UNLOAD_TIMEOUT_MS	10000

static long page_size;
static unsigned long iters;

static void __attribute__((constructor)) init_globals(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	iters = env_ulong("GMEM_MODULE_ITERS", 10, 1, 10000);
}

static bool module_loaded(void)
{
	return !access(MODULE_SYSFS, F_OK);
}

static int load_module(void)
{
	int fd = open(MODULE_KO, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "", 0))
		ret = -errno;
	close(fd);
	return ret;
}

static int try_unload(void)
{
	return syscall(SYS_delete_module, GMEM_MODULE, O_NONBLOCK) ? -errno : 0;
}

enum drop { DROP_MUNMAP, DROP_CLOSE, DROP_EXIT, DROP_DEVICE };

struct holder {
	enum drop how;
	int fd;
	char *mem;
	unsigned int delay_us;
	pthread_t thread;
};

static void *drop_fn(void *arg)
{
	struct holder *h = arg;

	usleep(h->delay_us);
	if (h->how == DROP_MUNMAP)
		munmap(h->mem, page_size);
	else
		close(h->fd);
	return NULL;
}

FIXTURE(unload) {
	uint64_t rnd;
};

FIXTURE_VARIANT(unload) {
	enum drop how;
};

FIXTURE_VARIANT_ADD(unload, last_munmap) { .how = DROP_MUNMAP };
FIXTURE_VARIANT_ADD(unload, last_close) { .how = DROP_CLOSE };
FIXTURE_VARIANT_ADD(unload, last_exit) { .how = DROP_EXIT };
FIXTURE_VARIANT_ADD(unload, last_device_close) { .how = DROP_DEVICE };

FIXTURE_SETUP(unload)
{
	self->rnd = getpid();
	if (!module_loaded())
		ASSERT_EQ(0, load_module());
	ASSERT_EQ(0, access(MODULE_KO, R_OK)) TH_LOG("%s: %s", MODULE_KO, strerror(errno));
}

FIXTURE_TEARDOWN(unload)
{
	/* The rest of the suite needs the module. */
	if (!module_loaded())
		load_module();
}

/*
 * A file of one page with one byte written, and what holds it afterwards:
 * a mapping (munmap, exit) or the fd (close); or, for DROP_DEVICE, an open
 * fd of the device and no file.  Nothing else of the module is left.
 */
static void make_holder(struct __test_metadata *_metadata, struct holder *h)
{
	int dev = gmem_open_dev();

	ASSERT_LE(0, dev) TH_LOG("open %s: %s", GMEM_DEV, strerror(-dev));
	h->mem = NULL;
	if (h->how == DROP_DEVICE) {
		h->fd = dev;
		return;
	}
	h->fd = create_gmem(dev, page_size, GMEM_SHARED);
	close(dev);
	ASSERT_LE(0, h->fd) TH_LOG("KVM_CREATE_GUEST_MEMFD: %s", strerror(-h->fd));
	if (h->how == DROP_CLOSE)
		return;
	ASSERT_EQ(0, map_gmem(h->fd, page_size, MAP_SHARED, &h->mem));
	h->mem[0] = 0x5a;
	ASSERT_EQ(0, close(h->fd));
	h->fd = -1;
}

/* delete_module() in a loop until it succeeds: 0, or the last refusal once the time is up. */
static int unload_loop(unsigned long *refusals)
{
	uint64_t deadline = now_ms() + UNLOAD_TIMEOUT_MS;
	int ret;

	for (;;) {
		ret = try_unload();
		if (!ret || (ret != -EWOULDBLOCK && ret != -EBUSY) || now_ms() > deadline)
			return ret;
		(*refusals)++;
	}
}

TEST_F_TIMEOUT(unload, racing_last_reference, 600)
{
	unsigned long i, refusals = 0, early = 0;
	int ret, status;

	for (i = 0; i < iters; i++) {
		struct holder h = { .how = variant->how };
		pid_t child = 0;

		if (!module_loaded())
			ASSERT_EQ(0, load_module()) TH_LOG("iteration %lu: reload failed", i);
		make_holder(_metadata, &h);

		/* Held: the module must stay. */
		ret = try_unload();
		ASSERT_TRUE(ret == -EWOULDBLOCK || ret == -EBUSY)
			TH_LOG("iteration %lu: delete_module with a file held: %d", i, ret);

		h.delay_us = rnd_below(&self->rnd, 2000);
		if (h.how == DROP_EXIT) {
			child = fork();
			ASSERT_LE(0, child);
			if (!child) {
				usleep(h.delay_us);
				_exit(h.mem[0] == 0x5a ? 0 : 1);
			}
			/* Only the child's copy of the mapping is left. */
			ASSERT_EQ(0, munmap(h.mem, page_size));
		} else {
			ASSERT_EQ(0, pthread_create(&h.thread, NULL, drop_fn, &h));
		}

		ret = unload_loop(&refusals);
		if (h.how == DROP_EXIT) {
			ASSERT_EQ(child, waitpid(child, &status, 0));
			EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
				TH_LOG("the child did not see its page");
		} else {
			ASSERT_EQ(0, pthread_join(h.thread, NULL));
		}
		ASSERT_EQ(0, ret) TH_LOG("iteration %lu: delete_module after the last drop: %s",
					 i, strerror(-ret));
		ASSERT_FALSE(module_loaded()) TH_LOG("iteration %lu: %s still there", i,
						    MODULE_SYSFS);
		early += refusals == 0;
		refusals = 0;

		/* A new instance works. */
		ASSERT_EQ(0, load_module()) TH_LOG("iteration %lu: reload failed", i);
		h.how = DROP_CLOSE;
		make_holder(_metadata, &h);
		EXPECT_EQ(1, pwrite(h.fd, "x", 1, 0));
		close(h.fd);
	}
	TH_LOG("%lu iterations, %lu unloaded at the first try after the drop", iters, early);
}

TEST_HARNESS_MAIN
