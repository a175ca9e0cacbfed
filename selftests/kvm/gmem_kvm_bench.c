// SPDX-License-Identifier: GPL-2.0
/*
 * gmem_kvm_bench: vCPU first-touch rate on a KVM_MEM_GUEST_MEMFD slot.
 *
 *   gmem_kvm_bench [-s MIB] [-r ROUND]
 *
 * One round: a new VM whose slot is a fresh KVM_CREATE_GUEST_MEMFD file
 * (MMAP | INIT_SHARED) of MIB MiB, no userfaultfd; its vCPU writes one word
 * in every page, each write a stage-2 fault that allocates the page
 * (kvm_gmem_get_pfn()).  The time from the first KVM_RUN to GUEST_DONE is
 * the round's; the VM's creation and teardown are not timed.  The variant
 * is whoever served the file: "gmem" (gmem_uffd, loaded with kvm=1) or
 * "kvm_gmem" (KVM's own guest_memfd).  scripts/guest/kvm-bench.sh runs the
 * rounds, alternating between the two; scripts/bench-report.py reads
 *   BENCH_TEST test=vcpu-touch unit=MiB/s variants=gmem,kvm_gmem ...
 *   BENCH test=vcpu-touch variant=V round=N value=X unit=MiB/s [warmup=1]
 * Round 0 is the warm-up.  Every page's word is read back through the
 * mapping afterwards: a wrong one is an error (BENCH_ERROR, exit 1).
 */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "ucall_common.h"
#include "../gmem_util.h"

#define BENCH_GPA	(1ULL << 32)
#define BENCH_SLOT	10
#define PG		4096UL

static void guest_touch(uint64_t gpa, uint64_t npages)
{
	uint64_t i;

	for (i = 0; i < npages; i++)
		WRITE_ONCE(*(uint64_t *)(gpa + i * PG), i + 1);
	GUEST_DONE();
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t mib = 64, round = 0, npages, i, bad = 0;
	const char *variant;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	double t0, t1;
	char *mem;
	int fd, opt;

	while ((opt = getopt(argc, argv, "s:r:")) != -1) {
		switch (opt) {
		case 's':
			mib = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			round = strtoull(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: %s [-s MIB] [-r ROUND]\n", argv[0]);
			return 2;
		}
	}
	npages = (mib << 20) / PG;
	/* Room in the default slot for the page tables that map the slot. */
	vm = __vm_create_with_one_vcpu(&vcpu, npages / 256 + 64, guest_touch);
	fd = vm_create_guest_memfd(vm, npages * PG, GMEM_SHARED);
	variant = gmem_uffd_file(fd) ? "gmem" : "kvm_gmem";
	mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TEST_ASSERT(mem != MAP_FAILED, "mmap of the guest_memfd file");
	vm_set_user_memory_region2(vm, BENCH_SLOT, KVM_MEM_GUEST_MEMFD, BENCH_GPA,
				   npages * PG, mem, fd, 0);
	virt_map(vm, BENCH_GPA, BENCH_GPA, npages);
	vcpu_args_set(vcpu, 2, BENCH_GPA, npages);

	t0 = now();
	vcpu_run(vcpu);
	t1 = now();
	if (get_ucall(vcpu, &uc) != UCALL_DONE) {
		printf("BENCH_ERROR test=vcpu-touch variant=%s exit %d (%s)\n", variant,
		       vcpu->run->exit_reason, exit_reason_str(vcpu->run->exit_reason));
		return 1;
	}
	for (i = 0; i < npages; i++)
		bad += *(uint64_t *)(mem + i * PG) != i + 1;
	if (bad) {
		printf("BENCH_ERROR test=vcpu-touch variant=%s %" PRIu64 " of %" PRIu64
		       " pages do not hold the guest's word\n", variant, bad, npages);
		return 1;
	}
	printf("BENCH_TEST test=vcpu-touch unit=MiB/s variants=gmem,kvm_gmem size_mib=%" PRIu64
	       " threads=1\n", mib);
	printf("BENCH test=vcpu-touch variant=%s round=%" PRIu64 " value=%.3f unit=MiB/s%s\n",
	       variant, round, mib / (t1 - t0), round ? "" : " warmup=1");
	kvm_vm_free(vm);
	munmap(mem, npages * PG);
	close(fd);
	return 0;
}
