// SPDX-License-Identifier: GPL-2.0
//! A VM with one vCPU over a guest memory mapping (kvm-ioctls).

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_userspace_memory_region2, KVM_MAX_CPUID_ENTRIES, KVM_MEM_GUEST_MEMFD};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::abi::{PORT_SNAPSHOT, PORT_VERDICT};
use crate::error::{Context, Error, Result};
use crate::memory::{Backend, GuestMemory};
use crate::snapshot::VcpuState;

/// Why the vCPU stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The payload wrote to PORT_SNAPSHOT.
    Snapshot,
    /// The payload wrote its verdict to PORT_VERDICT.
    Verdict(u32),
}

pub struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    pub vcpu: VcpuFd,
}

impl Vm {
    /// KVM_CREATE_VM, `size` bytes of `backend` guest memory as memory
    /// slot 0 at guest-physical 0, and one vCPU with the CPUID KVM supports
    /// (long mode needs CPUID.LM).  The memslot is made with
    /// KVM_SET_USER_MEMORY_REGION2: for `Backend::Gmem{,Secret}` bound to the file
    /// KVM_CREATE_GUEST_MEMFD made on this VM (KVM_MEM_GUEST_MEMFD; KVM
    /// takes vCPU faults from the file, and one on a page it does not hold
    /// through the mapping, raising a userfault there), for the others a
    /// plain user memory region (KVM reaches it with get_user_pages(),
    /// which raises userfaults like any access).  `userspace_addr` is the
    /// mapping either way: KVM's own accesses (KVM_TRANSLATE) go through it.
    ///
    /// The caller drops the VM before the memory.
    pub fn new(backend: Backend, size: usize) -> Result<(Vm, GuestMemory)> {
        let kvm = Kvm::new().context("open /dev/kvm")?;
        let vm = kvm.create_vm().context("KVM_CREATE_VM")?;
        // Needed on Intel only (real-mode TSS); harmless elsewhere.
        vm.set_tss_address(0xfffb_d000)
            .context("KVM_SET_TSS_ADDR")?;
        let mem = GuestMemory::new(backend, size, Some(&vm)).context("guest memory")?;
        let mut region = kvm_userspace_memory_region2 {
            slot: 0,
            guest_phys_addr: 0,
            memory_size: mem.size as u64,
            userspace_addr: mem.addr as u64,
            ..Default::default()
        };
        if backend.bound_to_vm() {
            region.flags = KVM_MEM_GUEST_MEMFD;
            region.guest_memfd = mem.file.as_raw_fd() as u32;
            region.guest_memfd_offset = 0;
        }
        // SAFETY: the mapping outlives the VM (the caller drops the VM first).
        unsafe { vm.set_user_memory_region2(region) }.context("KVM_SET_USER_MEMORY_REGION2")?;
        let vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU")?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .context("KVM_GET_SUPPORTED_CPUID")?;
        vcpu.set_cpuid2(&cpuid).context("KVM_SET_CPUID2")?;
        Ok((
            Vm {
                _kvm: kvm,
                _vm: vm,
                vcpu,
            },
            mem,
        ))
    }

    pub fn set_state(&self, s: &VcpuState) -> Result<()> {
        self.vcpu.set_sregs(&s.sregs).context("KVM_SET_SREGS")?;
        self.vcpu.set_regs(&s.regs).context("KVM_SET_REGS")?;
        self.vcpu.set_fpu(&s.fpu).context("KVM_SET_FPU")
    }

    pub fn get_state(&self) -> Result<VcpuState> {
        Ok(VcpuState {
            regs: self.vcpu.get_regs().context("KVM_GET_REGS")?,
            sregs: self.vcpu.get_sregs().context("KVM_GET_SREGS")?,
            fpu: self.vcpu.get_fpu().context("KVM_GET_FPU")?,
        })
    }

    fn where_(&self) -> String {
        match self.vcpu.get_regs() {
            Ok(r) => format!("rip {:#x} rsp {:#x} r8 {:#x}", r.rip, r.rsp, r.r8),
            Err(e) => format!("(KVM_GET_REGS: {e})"),
        }
    }

    /// KVM_RUN until the payload writes to one of its ports.
    pub fn run(&mut self) -> Result<Stop> {
        loop {
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(source) => {
                    return Err(Error::KvmRun {
                        source,
                        at: self.where_(),
                    })
                }
            };
            let unexpected = match exit {
                VcpuExit::IoOut(PORT_SNAPSHOT, _) => return Ok(Stop::Snapshot),
                VcpuExit::IoOut(PORT_VERDICT, data) => {
                    let mut v = [0u8; 4];
                    let n = data.len().min(4);
                    v[..n].copy_from_slice(&data[..n]);
                    return Ok(Stop::Verdict(u32::from_le_bytes(v)));
                }
                other => format!("{other:?}"),
            };
            return Err(Error::UnexpectedExit {
                exit: unexpected,
                at: self.where_(),
            });
        }
    }

    /// After an exit for port I/O, KVM finishes the instruction on the next
    /// KVM_RUN.  Run once with immediate_exit set, as the KVM API asks before
    /// saving state: the OUT completes (RIP moves past it) and KVM_RUN
    /// returns EINTR without entering the guest.  Then read the state.
    pub fn complete_io_and_save(&mut self) -> Result<VcpuState> {
        self.vcpu.set_kvm_immediate_exit(1);
        let r = self.vcpu.run().map(|_| ());
        self.vcpu.set_kvm_immediate_exit(0);
        match r {
            Err(e) if e.errno() == libc::EINTR => self.get_state(),
            Err(e) => Err(Error::ImmediateExit(e)),
            Ok(()) => Err(Error::ImmediateExitEntered),
        }
    }
}
