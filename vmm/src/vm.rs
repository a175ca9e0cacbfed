// SPDX-License-Identifier: GPL-2.0
//! A VM with one vCPU over a guest memory mapping (kvm-ioctls).

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use crate::abi::{PORT_SNAPSHOT, PORT_VERDICT};
use crate::memory::GuestMemory;
use crate::snapshot::VcpuState;

/// Why the vCPU stopped.
#[derive(Debug, PartialEq, Eq)]
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
    /// KVM_CREATE_VM, the guest memory as memory slot 0 at guest-physical 0
    /// (KVM_SET_USER_MEMORY_REGION: a plain user memory region; KVM reaches
    /// it with get_user_pages(), which raises userfaults like any access),
    /// one vCPU with the CPUID KVM supports (long mode needs CPUID.LM).
    pub fn new(mem: &GuestMemory) -> Result<Vm, String> {
        let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
        let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
        // Needed on Intel only (real-mode TSS); harmless elsewhere.
        vm.set_tss_address(0xfffb_d000)
            .map_err(|e| format!("KVM_SET_TSS_ADDR: {e}"))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem.size as u64,
            userspace_addr: mem.addr as u64,
        };
        // SAFETY: the mapping outlives the VM (the caller drops the VM first).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
        let vcpu = vm
            .create_vcpu(0)
            .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| format!("KVM_GET_SUPPORTED_CPUID: {e}"))?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| format!("KVM_SET_CPUID2: {e}"))?;
        Ok(Vm {
            _kvm: kvm,
            _vm: vm,
            vcpu,
        })
    }

    pub fn set_state(&self, s: &VcpuState) -> Result<(), String> {
        self.vcpu
            .set_sregs(&s.sregs)
            .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
        self.vcpu
            .set_regs(&s.regs)
            .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
        self.vcpu
            .set_fpu(&s.fpu)
            .map_err(|e| format!("KVM_SET_FPU: {e}"))
    }

    pub fn get_state(&self) -> Result<VcpuState, String> {
        Ok(VcpuState {
            regs: self
                .vcpu
                .get_regs()
                .map_err(|e| format!("KVM_GET_REGS: {e}"))?,
            sregs: self
                .vcpu
                .get_sregs()
                .map_err(|e| format!("KVM_GET_SREGS: {e}"))?,
            fpu: self
                .vcpu
                .get_fpu()
                .map_err(|e| format!("KVM_GET_FPU: {e}"))?,
        })
    }

    fn where_(&self) -> String {
        match self.vcpu.get_regs() {
            Ok(r) => format!("rip {:#x} rsp {:#x} r8 {:#x}", r.rip, r.rsp, r.r8),
            Err(e) => format!("(KVM_GET_REGS: {e})"),
        }
    }

    /// KVM_RUN until the payload writes to one of its ports.
    pub fn run(&mut self) -> Result<Stop, String> {
        loop {
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(format!("KVM_RUN: {e} at {}", self.where_())),
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
            return Err(format!(
                "unexpected vCPU exit {unexpected} at {}",
                self.where_()
            ));
        }
    }

    /// After an exit for port I/O, KVM finishes the instruction on the next
    /// KVM_RUN.  Run once with immediate_exit set, as the KVM API asks before
    /// saving state: the OUT completes (RIP moves past it) and KVM_RUN
    /// returns EINTR without entering the guest.  Then read the state.
    pub fn complete_io_and_save(&mut self) -> Result<VcpuState, String> {
        self.vcpu.set_kvm_immediate_exit(1);
        let r = self.vcpu.run().map(|_| ()).map_err(|e| e.errno());
        self.vcpu.set_kvm_immediate_exit(0);
        match r {
            Err(libc::EINTR) => self.get_state(),
            Err(e) => Err(format!("KVM_RUN (immediate_exit): errno {e}")),
            Ok(()) => Err("KVM_RUN with immediate_exit entered the guest".into()),
        }
    }
}
