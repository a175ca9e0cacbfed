# SPDX-License-Identifier: GPL-2.0
# gmem_uffd: a Rust guest_memfd with userfaultfd MISSING/MINOR support.
#
#   make run      build everything, boot QEMU, run the demo (smoke run for now)
#   make check    build everything, boot the debug kernel, run every test
#   make bench    the release kernel: gmem against shmem and KVM guest_memfd
#   make profile  the release kernel: where the benchmarked paths spend time
#
# Variables (see README.md): KERNEL_TARBALL, GMEM_CACHE, JOBS, ACCEL,
# QEMU_TIMEOUT, QEMU_MEM, QEMU_SMP, FORCE, TESTS.

# The module itself is built by Kbuild (make -C <kernel build> M=$PWD reads
# ./Kbuild, not this file).

SHELL := /bin/bash
S := scripts

export KERNEL_TARBALL GMEM_CACHE JOBS ACCEL QEMU_TIMEOUT QEMU_MEM QEMU_SMP FORCE FLAVOUR TESTS ARGS

.PHONY: all run check stress bench profile build toolchain kernel-src kernel-tree kernel-config kernel \
	module selftests export-patches check-series lint clean help

all: build

help:
	@sed -n '2,10p' Makefile | sed 's/^# \{0,1\}//'

run:
	@$(S)/pipeline.sh run

check:
	@$(S)/pipeline.sh check

stress:
	@$(S)/pipeline.sh stress

bench:
	@$(S)/pipeline.sh bench

profile:
	@$(S)/pipeline.sh profile

build:
	@$(S)/pipeline.sh build

toolchain: kernel-src
	@$(S)/toolchain.sh

kernel-src:
	@$(S)/kernel-src.sh

# Leave the kernel git tree (pristine + patches/ + rust/) ready to edit.
kernel-tree: toolchain
	@$(S)/kernel-tree.sh
	@. $(S)/lib.sh && echo "kernel tree: $$SRC (commit there, then 'make export-patches')"

kernel-config: kernel-tree
	@$(S)/kernel-config.sh

kernel: kernel-config
	@$(S)/kernel-build.sh

module:
	@$(S)/build-module.sh

selftests:
	@$(S)/build-selftests.sh

export-patches:
	@$(S)/export-patches.sh

check-series: toolchain
	@$(S)/check-series.sh

lint: toolchain
	@$(S)/lint.sh

clean:
	rm -rf logs selftests/build
	find src -name '*.o' -o -name '*.ko' -o -name '*.mod*' -o -name '.*.cmd' \
		-o -name '*.rmeta' -o -name 'modules.order' | xargs rm -f
	rm -f Module.symvers modules.order
