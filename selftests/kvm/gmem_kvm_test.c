// SPDX-License-Identifier: GPL-2.0
/*
 * KVM's guest_memfd served by gmem_uffd: files made by KVM_CREATE_GUEST_MEMFD
 * on a VM, bound to KVM_MEM_GUEST_MEMFD memslots, with vCPU faults on pages
 * the file does not hold delivered to the VMM's userfaultfd.  The fixture
 * vcpu_uffd and kvmclock_hidden run vCPUs on files whose pages are out of
 * the kernel's direct map (GUEST_MEMFD_FLAG_NO_DIRECT_MAP).
 *
 * Built against the kernel's KVM selftests library (kvm_util); see
 * scripts/build-selftests.sh.  Every test needs gmem_uffd loaded with kvm=1.
 */
#include <pthread.h>
#include <asm/kvm_para.h>
#include <asm/pvclock-abi.h>
#include <linux/falloc.h>
#include <sys/syscall.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "kselftest_harness.h"
#include "../gmem_util.h"

#define GMEM_GPA	(1ULL << 32)
#define GMEM_SLOT	10
#define NPAGES		16
#define PG		4096UL

/* What a handler puts at the start of page i. */
static uint64_t pattern(uint64_t i)
{
	return 0x5a5a000000000000ULL | (i + 1);
}

/* Reads the first word of each page and checks the handler's pattern. */
static void guest_read(uint64_t gpa, uint64_t npages)
{
	uint64_t i;

	for (i = 0; i < npages; i++)
		GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)(gpa + i * PG)), pattern(i));
	GUEST_DONE();
}

/* Writes page 0, waits, then expects it to read zero (punched). */
static void guest_write_then_zero(uint64_t gpa)
{
	WRITE_ONCE(*(uint64_t *)gpa, 0xabcdef);
	GUEST_SYNC(1);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)gpa), 0);
	GUEST_DONE();
}

/* One page read, then done. */
static void guest_read_one(uint64_t gpa)
{
	GUEST_SYNC(READ_ONCE(*(uint64_t *)gpa));
	GUEST_DONE();
}

/*
 * Enables kvmclock in the middle of page 0, which the guest never touched:
 * KVM writes it through the slot's userspace mapping.  Then checks that the
 * page is the handler's, and reports the clock's version.
 */
static void guest_kvmclock(uint64_t gpa)
{
	struct pvclock_vcpu_time_info *pvti = (void *)(gpa + PG / 2);

	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (gpa + PG / 2) | KVM_MSR_ENABLED);
	GUEST_SYNC(0);
	GUEST_ASSERT_EQ(READ_ONCE(*(uint64_t *)gpa), pattern(0));
	GUEST_SYNC(READ_ONCE(pvti->version));
	GUEST_DONE();
}

/* Runs the vCPU until GUEST_DONE, failing the test on a guest assert. */
static void run_to_done(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	for (;;) {
		vcpu_run(vcpu);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_DONE:
			return;
		case UCALL_SYNC:
			continue;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		default:
			TEST_FAIL("unexpected exit %d (%s)", vcpu->run->exit_reason,
				  exit_reason_str(vcpu->run->exit_reason));
		}
	}
}

/*
 * A gmem slot at GMEM_GPA of a file with GMEM_SHARED and @flags, mapped at
 * *mem, identity-mapped in the guest.
 */
static int add_gmem_slot_flags(struct kvm_vm *vm, size_t size, __u64 flags, char **mem)
{
	int fd = vm_create_guest_memfd(vm, size, GMEM_SHARED | flags);

	*mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(*mem != MAP_FAILED, "mmap of the KVM gmem file");
	vm_set_user_memory_region2(vm, GMEM_SLOT, KVM_MEM_GUEST_MEMFD, GMEM_GPA,
				   size, *mem, fd, 0);
	virt_map(vm, GMEM_GPA, GMEM_GPA, size / PG);
	return fd;
}

static int add_gmem_slot(struct kvm_vm *vm, size_t size, char **mem)
{
	return add_gmem_slot_flags(vm, size, 0, mem);
}

/* Undoes vm_create*() and add_gmem_slot(): the VM first, then the memory. */
static void free_gmem_vm(struct kvm_vm *vm, char *mem, int fd)
{
	kvm_vm_free(vm);
	munmap(mem, NPAGES * PG);
	close(fd);
}

enum fill_mode { FILL_COPY, FILL_CONTINUE };

struct handler {
	int uffd;
	int fd;
	char *base;
	enum fill_mode mode;
	int expect;		/* events to serve before stopping */
	int events;		/* MISSING events read */
	int copies;		/* UFFDIO_COPY that placed the page */
	int wakes;		/* EEXIST: woken instead */
	int bad;		/* events outside the range, or failed ioctls */
};

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	static char page[PG] __aligned(PG);
	struct uffd_msg msg;

	while (h->events < h->expect) {
		unsigned long addr, i;

		if (uffd_read_msg(h->uffd, &msg, 20000)) {
			h->bad++;
			break;
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT ||
		    (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)) {
			h->bad++;
			continue;
		}
		h->events++;
		addr = msg.arg.pagefault.address & ~(PG - 1);
		i = (addr - (unsigned long)h->base) / PG;
		memset(page, 0, PG);
		*(uint64_t *)page = pattern(i);
		if (h->mode == FILL_COPY) {
			struct uffdio_copy c = {
				.dst = addr, .src = (unsigned long)page, .len = PG,
			};

			if (!ioctl(h->uffd, UFFDIO_COPY, &c)) {
				h->copies++;
				continue;
			}
			if (errno == EEXIST) {
				struct uffdio_range r = { .start = addr, .len = PG };

				h->wakes++;
				if (ioctl(h->uffd, UFFDIO_WAKE, &r))
					h->bad++;
				continue;
			}
			h->bad++;
		} else {
			struct uffdio_continue c = {
				.range = { .start = addr, .len = PG },
			};

			if (pwrite(h->fd, page, PG, i * PG) != PG ||
			    ioctl(h->uffd, UFFDIO_CONTINUE, &c))
				h->bad++;
			else
				h->copies++;
		}
	}
	return NULL;
}

FIXTURE(vcpu_uffd) {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	char *mem;
	int fd;
	int uffd;
};

/* Each case on a file that keeps its pages out of the direct map, and on one that does not. */
FIXTURE_VARIANT(vcpu_uffd) {
	__u64 flags;
};

FIXTURE_VARIANT_ADD(vcpu_uffd, hidden) {
	.flags = GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
};

FIXTURE_VARIANT_ADD(vcpu_uffd, plain) {
	.flags = 0,
};

/* What the module's "direct_map" query answers for a page of the file. */
#define MAPPED(v)	((v)->flags & GUEST_MEMFD_FLAG_NO_DIRECT_MAP ? 0 : 1)

FIXTURE_SETUP(vcpu_uffd)
{
	self->vm = vm_create_with_one_vcpu(&self->vcpu, guest_read);
	self->fd = add_gmem_slot_flags(self->vm, NPAGES * PG, variant->flags, &self->mem);
	self->uffd = uffd_open();
	ASSERT_GE(self->uffd, 0);
}

FIXTURE_TEARDOWN(vcpu_uffd)
{
	long answer;

	direct_map_cmd("drop", &answer);
	close(self->uffd);
	free_gmem_vm(self->vm, self->mem, self->fd);
}

/* The file of KVM_CREATE_GUEST_MEMFD is the module's: its counter rises. */
TEST(kvm_file_served_by_module)
{
	long long before = gmem_counter("kvm_files");
	struct kvm_vm *vm = vm_create_barebones();
	int fd;

	ASSERT_GE(before, 0);
	ASSERT_EQ(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS),
		  GMEM_SHARED | GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
	fd = vm_create_guest_memfd(vm, 4 * PG, GMEM_SHARED);
	EXPECT_EQ(gmem_counter("kvm_files"), before + 1);
	/* What only the module's files do: write() populates. */
	EXPECT_EQ(pwrite(fd, "x", 1, PG), 1);
	/* Flags neither KVM nor the module know, a bad size. */
	EXPECT_EQ(__vm_create_guest_memfd(vm, 4 * PG, 1ULL << 40), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(__vm_create_guest_memfd(vm, PG + 1, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(__vm_create_guest_memfd(vm, 0, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	close(fd);
	kvm_vm_free(vm);
}

/* Every bind error, as 7.2's kvm_gmem_bind() gives it. */
TEST(bind_errors)
{
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_vm *other = vm_create_barebones();
	int fd = vm_create_guest_memfd(vm, 4 * PG, GMEM_SHARED);
	int foreign = vm_create_guest_memfd(other, 4 * PG, GMEM_SHARED);
	int memfd = memfd_create("not_gmem", 0);
	int dev = gmem_open_dev();
	int devfile = dev >= 0 ? create_gmem(dev, 4 * PG, GMEM_SHARED) : -1;
	int closed = dup(fd);
	void *hva = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const u32 f = KVM_MEM_GUEST_MEMFD;

	ASSERT_NE(hva, MAP_FAILED);
	ASSERT_GE(memfd, 0);
	ASSERT_EQ(ftruncate(memfd, 4 * PG), 0);
	ASSERT_GE(devfile, 0);
	close(closed);
#define BIND(slot, gpa, size, gfd, off) \
	__vm_set_user_memory_region2(vm, slot, f, gpa, size, hva, gfd, off)
	/* Unaligned offset, past the end of the file. */
	EXPECT_EQ(BIND(1, GMEM_GPA, PG, fd, 1), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(BIND(1, GMEM_GPA, 2 * PG, fd, 3 * PG), -1);
	EXPECT_EQ(errno, EINVAL);
	/* Another VM's file, a memfd, a module file KVM did not create. */
	EXPECT_EQ(BIND(1, GMEM_GPA, PG, foreign, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(BIND(1, GMEM_GPA, PG, memfd, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	EXPECT_EQ(BIND(1, GMEM_GPA, PG, devfile, 0), -1);
	EXPECT_EQ(errno, EINVAL);
	/* Not a file descriptor. */
	EXPECT_EQ(BIND(1, GMEM_GPA, PG, closed, 0), -1);
	EXPECT_EQ(errno, EBADF);
	/* Overlapping ranges of one file. */
	EXPECT_EQ(BIND(1, GMEM_GPA, 2 * PG, fd, 0), 0);
	EXPECT_EQ(BIND(2, GMEM_GPA + 2 * PG, 2 * PG, fd, PG), -1);
	EXPECT_EQ(errno, EEXIST);
	EXPECT_EQ(BIND(2, GMEM_GPA + 2 * PG, 2 * PG, fd, 2 * PG), 0);
#undef BIND
	close(devfile);
	close(dev);
	close(memfd);
	close(foreign);
	close(fd);
	kvm_vm_free(other);
	kvm_vm_free(vm);
	munmap(hva, 4 * PG);
}

/* Unregistered: a vCPU fault zero-fills a hole, as upstream; write() data is seen. */
TEST(vcpu_no_uffd)
{
	long long folios = gmem_counter("kvm_folios");
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_read);
	char *mem;
	int fd = add_gmem_slot(vm, NPAGES * PG, &mem);
	uint64_t i;

	for (i = 0; i < NPAGES; i++) {
		uint64_t v = pattern(i);

		ASSERT_EQ(pwrite(fd, &v, sizeof(v), i * PG), sizeof(v));
	}
	vcpu_args_set(vcpu, 2, GMEM_GPA, NPAGES);
	run_to_done(vcpu);
	EXPECT_GE(gmem_counter("kvm_folios"), folios + NPAGES);
	free_gmem_vm(vm, mem, fd);
}

/*
 * Registers the slot's mapping for @reg and runs the guest over every page
 * while a handler fills each fault in @mode: every page faults once, and is
 * filled once.
 */
static void serve_vcpu_faults(struct __test_metadata *_metadata, struct kvm_vcpu *vcpu,
			      char *mem, int fd, int uffd, enum fill_mode mode, __u64 reg)
{
	struct handler h = {
		.uffd = uffd, .fd = fd, .base = mem, .mode = mode, .expect = NPAGES,
	};
	pthread_t t;

	ASSERT_EQ(uffd_register(uffd, mem, NPAGES * PG, reg, NULL), 0);
	ASSERT_EQ(pthread_create(&t, NULL, handler_main, &h), 0);
	vcpu_args_set(vcpu, 2, GMEM_GPA, NPAGES);
	run_to_done(vcpu);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	EXPECT_EQ(h.bad, 0);
	EXPECT_EQ(h.events, NPAGES);
	EXPECT_EQ(h.copies, NPAGES);
}

/* A vCPU fault on a hole is a MISSING event, resolved by UFFDIO_COPY. */
TEST_F(vcpu_uffd, missing_copy)
{
	long long missing = gmem_counter("missing_events");

	serve_vcpu_faults(_metadata, self->vcpu, self->mem, self->fd, self->uffd,
			  FILL_COPY, MODE_MISSING);
	EXPECT_GE(gmem_counter("missing_events"), missing + NPAGES);
	/* The host sees what the guest saw; the kernel's direct map does not, if hidden. */
	EXPECT_EQ(*(uint64_t *)(self->mem + 3 * PG), pattern(3));
	EXPECT_EQ(direct_map(self->fd, 3), MAPPED(variant));
}

/* The same, resolved by pwrite() + UFFDIO_CONTINUE. */
TEST_F(vcpu_uffd, missing_continue)
{
	serve_vcpu_faults(_metadata, self->vcpu, self->mem, self->fd, self->uffd,
			  FILL_CONTINUE, MODE_BOTH);
	EXPECT_EQ(direct_map(self->fd, 5), MAPPED(variant));
}

/* A page the file holds is mapped at once: no event. */
TEST_F(vcpu_uffd, present_no_event)
{
	uint64_t i;
	struct uffd_msg msg;

	for (i = 0; i < NPAGES; i++) {
		uint64_t v = pattern(i);

		ASSERT_EQ(pwrite(self->fd, &v, sizeof(v), i * PG), sizeof(v));
	}
	ASSERT_EQ(uffd_register(self->uffd, self->mem, NPAGES * PG, MODE_MISSING, NULL), 0);
	vcpu_args_set(self->vcpu, 2, GMEM_GPA, NPAGES);
	run_to_done(self->vcpu);
	EXPECT_EQ(uffd_read_msg(self->uffd, &msg, 200), -ETIMEDOUT);
}

/* A signal while the vCPU waits: KVM_RUN fails, nothing is zero-filled. */
static void on_signal(int sig) { }

struct vcpu_run_once {
	struct kvm_vcpu *vcpu;
	int r;
	int err;
};

static void *run_once(void *arg)
{
	struct vcpu_run_once *o = arg;

	/* __vcpu_run(): _vcpu_run() would retry on EINTR. */
	o->r = __vcpu_run(o->vcpu);
	o->err = errno;
	return NULL;
}

TEST_F(vcpu_uffd, signal_no_zero_fill)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct vcpu_run_once o = { .vcpu = self->vcpu };
	long long folios = gmem_counter("folios");
	struct uffd_msg msg;
	pthread_t t;

	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	ASSERT_EQ(uffd_register(self->uffd, self->mem, NPAGES * PG, MODE_MISSING, NULL), 0);
	vcpu_args_set(self->vcpu, 2, GMEM_GPA, NPAGES);
	ASSERT_EQ(pthread_create(&t, NULL, run_once, &o), 0);
	/* The vCPU's fault on page 0 is reported, and left unserved. */
	ASSERT_EQ(uffd_read_msg(self->uffd, &msg, 20000), 0);
	EXPECT_EQ(msg.arg.pagefault.address & ~(PG - 1), (unsigned long)self->mem);
	ASSERT_EQ(pthread_kill(t, SIGUSR1), 0);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	EXPECT_EQ(o.r, -1);
	EXPECT_EQ(o.err, EINTR);
	EXPECT_EQ(self->vcpu->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	/* The page is still a hole: no folio was added. */
	EXPECT_EQ(gmem_counter("folios"), folios);
}

/* Several vCPUs faulting on one page: served once, everyone resumes. */
#define NVCPUS 4
static void *vcpu_thread(void *arg)
{
	run_to_done(arg);
	return NULL;
}

TEST(several_vcpus_one_page)
{
	struct kvm_vcpu *vcpus[NVCPUS];
	struct kvm_vm *vm = vm_create_with_vcpus(NVCPUS, guest_read, vcpus);
	char *mem;
	int fd = add_gmem_slot(vm, NPAGES * PG, &mem);
	int uffd = uffd_open();
	struct handler h = {
		.uffd = uffd, .fd = fd, .base = mem, .mode = FILL_COPY,
	};
	pthread_t t[NVCPUS];
	int i;

	ASSERT_GE(uffd, 0);
	ASSERT_EQ(uffd_register(uffd, mem, NPAGES * PG, MODE_MISSING, NULL), 0);
	for (i = 0; i < NVCPUS; i++)
		vcpu_args_set(vcpus[i], 2, GMEM_GPA, 1);
	for (i = 0; i < NVCPUS; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, vcpu_thread, vcpus[i]), 0);
	/* Let every vCPU block on the page before serving any event. */
	usleep(300 * 1000);
	h.expect = 1;
	handler_main(&h);
	/* Events of vCPUs that faulted before the copy: woken, not copied. */
	h.expect = NVCPUS;
	while (h.events < NVCPUS) {
		struct uffd_msg msg;
		struct uffdio_range r = { .start = (unsigned long)mem, .len = PG };

		if (uffd_read_msg(uffd, &msg, 300))
			break;
		h.events++;
		h.wakes++;
		ioctl(uffd, UFFDIO_WAKE, &r);
	}
	for (i = 0; i < NVCPUS; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	EXPECT_EQ(h.bad, 0);
	EXPECT_EQ(h.copies, 1);
	EXPECT_GE(h.events, 1);
	EXPECT_LE(h.events, NVCPUS);
	close(uffd);
	free_gmem_vm(vm, mem, fd);
}

/* A hole punch takes the page out of stage-2: the guest reads zeros. */
TEST(punch_then_zero)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_write_then_zero);
	char *mem;
	int fd = add_gmem_slot(vm, NPAGES * PG, &mem);
	struct ucall uc;

	vcpu_args_set(vcpu, 1, GMEM_GPA);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	EXPECT_EQ(*(uint64_t *)mem, 0xabcdef);
	ASSERT_EQ(fallocate(fd, PUNCH_HOLE, 0, PG), 0);
	run_to_done(vcpu);
	EXPECT_EQ(*(uint64_t *)mem, 0);
	free_gmem_vm(vm, mem, fd);
}

/* The file closed while bound: the slot loses it, the vCPU gets EFAULT. */
TEST(close_while_bound)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_read_one);
	char *mem;
	int fd = add_gmem_slot(vm, NPAGES * PG, &mem);
	long long files = gmem_counter("files");

	ASSERT_EQ(munmap(mem, NPAGES * PG), 0);
	ASSERT_EQ(close(fd), 0);
	EXPECT_EQ(gmem_counter("files"), files - 1);
	vcpu_args_set(vcpu, 1, GMEM_GPA);
	EXPECT_EQ(_vcpu_run(vcpu), -1);
	EXPECT_EQ(errno, EFAULT);
	EXPECT_EQ(vcpu->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	kvm_vm_free(vm);
}

/* The VM gone while the file is open: the file keeps working, then goes. */
TEST(vm_destroyed_file_open)
{
	struct kvm_vm *vm = vm_create_barebones();
	int fd = vm_create_guest_memfd(vm, 4 * PG, GMEM_SHARED);
	long long files = gmem_counter("files");
	uint64_t v = 42, r = 0;
	char *mem;

	kvm_vm_free(vm);
	EXPECT_EQ(pwrite(fd, &v, sizeof(v), PG), sizeof(v));
	EXPECT_EQ(pread(fd, &r, sizeof(r), PG), sizeof(r));
	EXPECT_EQ(r, 42);
	mem = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(mem, MAP_FAILED);
	EXPECT_EQ(*(uint64_t *)(mem + PG), 42);
	munmap(mem, 4 * PG);
	close(fd);
	EXPECT_EQ(gmem_counter("files"), files - 1);
}

static void poison_page(void *addr)
{
	madvise(addr, PG, MADV_HWPOISON);
}

/*
 * A page with a memory error fails the vCPU's fault with EHWPOISON (a memory
 * fault exit); a hole punch removes it, and the guest then reads zeros.
 */
TEST(hwpoison_vcpu)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_read_one);
	char *mem;
	int fd = add_gmem_slot(vm, NPAGES * PG, &mem);
	uint64_t v = 0x1234;
	struct ucall uc;
	siginfo_t si;

	ASSERT_EQ(pwrite(fd, &v, sizeof(v), 0), sizeof(v));
	/* The page is mapped here: memory_failure() may send us SIGBUS for it. */
	sigbus_call(poison_page, mem, &si);
	vcpu_args_set(vcpu, 1, GMEM_GPA);
	EXPECT_EQ(__vcpu_run(vcpu), -1);
	EXPECT_EQ(errno, EHWPOISON);
	EXPECT_EQ(vcpu->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	ASSERT_EQ(fallocate(fd, PUNCH_HOLE, 0, PG), 0);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	EXPECT_EQ(uc.args[1], 0);
	free_gmem_vm(vm, mem, fd);
}

/* The module cannot go while a VM's file exists. */
/*
 * mbind() on the slot's mapping sets the file's policy, and the page KVM
 * allocates for a vCPU fault (no userfaultfd: zero-filled) follows it, not
 * the policy of the task running the vCPU.
 */
TEST(vcpu_fault_follows_file_policy)
{
	int node;

	if (num_nodes() < 2)
		SKIP(return, "needs two NUMA nodes, the system has %d", num_nodes());
	for (node = 0; node < 2; node++) {
		struct kvm_vcpu *vcpu;
		struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_read_one);
		char *mem;
		int fd = add_gmem_slot(vm, NPAGES * PG, &mem);

		ASSERT_EQ(bind_to(mem, NPAGES * PG, node), 0);
		ASSERT_EQ(task_bind(!node), 0);
		vcpu_args_set(vcpu, 1, GMEM_GPA);
		run_to_done(vcpu);
		ASSERT_EQ(task_bind(-1), 0);
		/* Map the page KVM allocated, to ask where it is. */
		ASSERT_EQ(READ_ONCE(*mem), 0);
		EXPECT_EQ(page_node(mem), node);
		free_gmem_vm(vm, mem, fd);
	}
}

/*
 * A KVM-internal access (kvmclock, written by KVM through the slot's
 * userspace address) to a page the file does not hold is a MISSING event on
 * the VMM's userfaultfd like any other, and KVM writes into the page the
 * handler placed: the guest sees both the handler's data and a kvmclock
 * update.
 */
static void kvmclock_case(struct __test_metadata *_metadata, __u64 flags)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_kvmclock);
	char *mem;
	int fd = add_gmem_slot_flags(vm, NPAGES * PG, flags, &mem);
	int uffd = uffd_open();
	struct handler h = {
		.uffd = uffd, .fd = fd, .base = mem, .mode = FILL_COPY, .expect = 1,
	};
	struct ucall uc;
	pthread_t t;
	long answer;

	ASSERT_LE(0, uffd);
	ASSERT_EQ(uffd_register(uffd, mem, NPAGES * PG, MODE_MISSING, NULL), 0);
	ASSERT_EQ(pthread_create(&t, NULL, handler_main, &h), 0);
	vcpu_args_set(vcpu, 1, GMEM_GPA);
	/*
	 * KVM maps the clock page when the guest enables it, before GUEST_SYNC:
	 * through its pfn cache, or if the page is out of the direct map (GUP
	 * refuses it), through the userspace mapping.
	 */
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	EXPECT_EQ(h.bad, 0);
	EXPECT_EQ(h.events, 1);
	EXPECT_EQ(h.copies, 1);
	vcpu_run(vcpu);
	if (get_ucall(vcpu, &uc) == UCALL_ABORT)
		REPORT_GUEST_ASSERT(uc);
	ASSERT_EQ(uc.cmd, UCALL_SYNC);
	/* Updated by KVM: odd while it writes, even and not 0 after. */
	EXPECT_NE(uc.args[1], 0);
	EXPECT_EQ(uc.args[1] % 2, 0);
	run_to_done(vcpu);
	EXPECT_EQ(direct_map(fd, 0), flags & GUEST_MEMFD_FLAG_NO_DIRECT_MAP ? 0 : 1);
	direct_map_cmd("drop", &answer);
	close(uffd);
	free_gmem_vm(vm, mem, fd);
}

TEST(kvmclock_through_mapping)
{
	kvmclock_case(_metadata, 0);
}

/* The same where the pfn cache cannot pin the page: KVM writes through the mapping. */
TEST(kvmclock_hidden)
{
	kvmclock_case(_metadata, GUEST_MEMFD_FLAG_NO_DIRECT_MAP);
}

TEST(rmmod_refused)
{
	struct kvm_vm *vm = vm_create_barebones();
	int fd = vm_create_guest_memfd(vm, 4 * PG, GMEM_SHARED);

	EXPECT_EQ(syscall(__NR_delete_module, GMEM_MODULE, O_NONBLOCK), -1);
	EXPECT_TRUE(errno == EWOULDBLOCK || errno == EBUSY);
	close(fd);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
