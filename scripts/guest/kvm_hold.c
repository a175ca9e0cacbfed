// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_hold: create a KVM VM and keep it until the guest powers off.
 *
 * Not a test: scripts/guest-init.sh starts it before the test plan when
 * /dev/kvm exists.  The first VM of the system enables the preempt-notifier
 * static key in __schedule() and the last one to go disables it again; each
 * switch patches __schedule() with text_poke_bp() while the other CPU may be
 * running it, which under QEMU's multi-threaded TCG occasionally leaves a
 * CPU executing the temporary int3 ("The int3 Oops under multi-threaded
 * TCG" in Documentation/testing.rst).  With one VM held for the whole run
 * the key is switched once, at boot, instead of at every VM a test creates
 * and destroys.
 *
 * Prints "kvm_hold: ready" once the VM exists; exits 1 with a message if
 * it cannot create it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

int main(void)
{
	int kvm, vm;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		fprintf(stderr, "kvm_hold: open /dev/kvm: %s\n", strerror(errno));
		return 1;
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		fprintf(stderr, "kvm_hold: KVM_CREATE_VM: %s\n", strerror(errno));
		return 1;
	}
	printf("kvm_hold: ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
