# SPDX-License-Identifier: GPL-2.0
# gmem_uffd: a Rust guest_memfd with userfaultfd MISSING/MINOR support.
# "make help" lists the targets and variables; README.md explains them.
#
# The module itself is built by Kbuild (make -C <kernel build> M=$PWD reads
# ./Kbuild, not this file).

SHELL := /bin/bash
S := scripts

## Variables (README.md, "Variables"):
##   KERNEL_TARBALL GMEM_CACHE JOBS ACCEL QEMU_TIMEOUT QEMU_MEM QEMU_SMP
##   QEMU_NUMA LANES KUNIT_GLOB FORCE FORCE_CHROOT TESTS ARGS
export KERNEL_TARBALL GMEM_CACHE JOBS ACCEL QEMU_TIMEOUT QEMU_MEM QEMU_SMP QEMU_NUMA \
	LANES KUNIT_GLOB FORCE FORCE_CHROOT FLAVOUR TESTS ARGS

# The stages of scripts/pipeline.sh, each a target of its own.
PIPELINE := run check controls stress bench profile build

.PHONY: all help $(PIPELINE) toolchain kernel-src kernel-tree kernel-config kernel \
	module selftests export-patches check-series lint clean

all: build

help: ## this list
	@sed -n 's/^\([a-z-]*\):.*## \(.*\)/  make \1\t\2/p; s/^## \{0,1\}//p' $(MAKEFILE_LIST) | expand -t 24

run: ## build everything, boot QEMU, run the VMM demo (scripts/plans/run.plan)
check: ## build everything, boot the debug kernel, run every test (scripts/plans/check.plan)
controls: ## the harness's negative controls in a guest (scripts/tests/negative.plan): each must FAIL
stress: ## the debug kernel, 60 s of gmem_stress (scripts/plans/stress.plan)
bench: ## the release kernel: gmem against shmem and KVM's guest_memfd, table and chart
profile: ## the release kernel: where the benchmarked paths spend their time
build: ## every build stage, no boot
$(PIPELINE):
	@$(S)/pipeline.sh $@

toolchain: kernel-src ## the kernel toolchain (host, or a Debian trixie chroot)
	@$(S)/toolchain.sh

kernel-src: ## the 7.2.13 source, extracted once into the cache as a git tree
	@$(S)/kernel-src.sh

kernel-tree: toolchain ## the kernel tree at pristine + patches/ + rust/, ready to edit
	@$(S)/kernel-tree.sh
	@. $(S)/lib.sh && echo "kernel tree: $$SRC (commit there, then 'make export-patches')"

kernel-config: kernel-tree ## merge and check config/*.config
	@$(S)/kernel-config.sh

kernel: kernel-config ## build the kernel
	@$(S)/kernel-build.sh

module: ## build gmem_uffd.ko against the kernel build
	@$(S)/build-module.sh

selftests: ## build our selftests and the kernel's
	@$(S)/build-selftests.sh

export-patches: ## write the kernel tree's commits back to patches/
	@$(S)/export-patches.sh

check-series: toolchain ## build the kernel after each patch, then the module
	@$(S)/check-series.sh

lint: toolchain ## rustfmt, clippy and checkpatch
	@$(S)/lint.sh

clean: ## remove the module's build products and logs/ (not the cache)
	rm -rf logs selftests/build
	find src -name '*.o' -o -name '*.ko' -o -name '*.mod*' -o -name '.*.cmd' \
		-o -name '*.rmeta' -o -name 'modules.order' | xargs rm -f
	rm -f Module.symvers modules.order
