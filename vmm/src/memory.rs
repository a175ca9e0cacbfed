// SPDX-License-Identifier: GPL-2.0
//! Guest memory: a guest_memfd file made by KVM_CREATE_GUEST_MEMFD on the
//! VM (served by gmem_uffd.ko) or on /dev/guest_memfd, or a memfd (shmem)
//! for comparison, mapped MAP_SHARED.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::str::FromStr;

use kvm_bindings::{kvm_create_guest_memfd, KVMIO};
use kvm_ioctls::VmFd;
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iowr_nr;

use crate::error::UnknownName;

pub const PAGE_SIZE: usize = 4096;

// <linux/kvm.h> of 6.18+ and of the patched kernel; kvm-bindings 0.14 does
// not have them yet.
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
pub const GUEST_MEMFD_FLAG_NO_DIRECT_MAP: u64 = 1 << 2;
/// What every guest_memfd of the VMM needs: a mapping, shared from the start.
const GMEM_SHARED: u64 = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

// KVM's own ioctl, issued on /dev/guest_memfd instead of on a VM.
ioctl_iowr_nr!(KVM_CREATE_GUEST_MEMFD, KVMIO, 0xd4, kvm_create_guest_memfd);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// guest_memfd from KVM_CREATE_GUEST_MEMFD on the VM, bound to the
    /// memslot (KVM_MEM_GUEST_MEMFD): KVM takes vCPU faults from the file.
    Gmem,
    /// The same with GUEST_MEMFD_FLAG_NO_DIRECT_MAP: the guest's pages are
    /// out of the host kernel's direct map (secret hiding).
    GmemSecret,
    /// guest_memfd from /dev/guest_memfd (no VM needed), a plain memslot
    /// over its mapping.
    GmemDev,
    /// memfd_create() (shmem), for comparison.
    Memfd,
}

impl FromStr for Backend {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Backend, UnknownName> {
        match s {
            "gmem" => Ok(Backend::Gmem),
            "gmem-secret" => Ok(Backend::GmemSecret),
            "gmem-dev" => Ok(Backend::GmemDev),
            "memfd" | "shmem" => Ok(Backend::Memfd),
            _ => Err(UnknownName(s.into())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Gmem => "gmem",
            Backend::GmemSecret => "gmem-secret",
            Backend::GmemDev => "gmem-dev",
            Backend::Memfd => "memfd",
        })
    }
}

impl Backend {
    /// Whether the file is KVM_CREATE_GUEST_MEMFD's on the VM, bound to the
    /// memslot with KVM_MEM_GUEST_MEMFD.
    pub fn bound_to_vm(self) -> bool {
        matches!(self, Backend::Gmem | Backend::GmemSecret)
    }
}

/// A file of guest memory and its shared mapping.
pub struct GuestMemory {
    pub file: File,
    pub addr: *mut u8,
    pub size: usize,
}

// The mapping is shared by design: the vCPU thread (through KVM), the uffd
// handler thread and the main thread all use it.
unsafe impl Send for GuestMemory {}
unsafe impl Sync for GuestMemory {}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `ioctl(open("/dev/guest_memfd"), KVM_CREATE_GUEST_MEMFD, {size, MMAP |
/// INIT_SHARED})`: a new guest_memfd file of `size` bytes.
pub fn create_gmem(size: usize) -> io::Result<File> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/guest_memfd")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open /dev/guest_memfd: {e} (is gmem_uffd.ko loaded?)"),
            )
        })?;
    let args = kvm_create_guest_memfd {
        size: size as u64,
        flags: GMEM_SHARED,
        ..Default::default()
    };
    // SAFETY: the ioctl reads `args` and returns a new file descriptor.
    let fd = unsafe { ioctl_with_ref(&dev, KVM_CREATE_GUEST_MEMFD(), &args) };
    if fd < 0 {
        return Err(last_err("KVM_CREATE_GUEST_MEMFD"));
    }
    // SAFETY: a new descriptor we own.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `ioctl(vm, KVM_CREATE_GUEST_MEMFD, {size, MMAP | INIT_SHARED | flags})`:
/// a new guest_memfd file of `size` bytes that KVM can bind to the VM's
/// memslots.
pub fn create_vm_gmem(vm: &VmFd, size: usize, flags: u64) -> io::Result<File> {
    let args = kvm_create_guest_memfd {
        size: size as u64,
        flags: GMEM_SHARED | flags,
        ..Default::default()
    };
    let fd = vm
        .create_guest_memfd(args)
        .map_err(|e| io::Error::other(format!("KVM_CREATE_GUEST_MEMFD on the VM: {e}")))?;
    // SAFETY: a new descriptor we own.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// `memfd_create()` + `ftruncate()`: shmem of `size` bytes.
pub fn create_memfd(size: usize) -> io::Result<File> {
    // SAFETY: a plain system call with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"gmem-vmm".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_err("memfd_create"));
    }
    // SAFETY: a new descriptor we own.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(size as u64)?;
    Ok(file)
}

/// mmap(fd, size, MAP_SHARED).
pub fn map_shared(fd: RawFd, size: usize, prot: i32) -> io::Result<*mut u8> {
    // SAFETY: a new mapping, not aliasing any Rust object.
    let addr = unsafe { libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0) };
    if addr == libc::MAP_FAILED {
        return Err(last_err("mmap"));
    }
    Ok(addr.cast())
}

impl GuestMemory {
    /// New guest memory of `backend`; `vm` is the VM, which
    /// the backends bound to it need (`None` for the others).
    pub fn new(backend: Backend, size: usize, vm: Option<&VmFd>) -> io::Result<GuestMemory> {
        let file = match (backend, vm) {
            (Backend::Gmem, Some(vm)) => create_vm_gmem(vm, size, 0)?,
            (Backend::GmemSecret, Some(vm)) => {
                create_vm_gmem(vm, size, GUEST_MEMFD_FLAG_NO_DIRECT_MAP)?
            }
            (Backend::Gmem | Backend::GmemSecret, None) => {
                return Err(io::Error::other("the gmem backends need the VM"))
            }
            (Backend::GmemDev, _) => create_gmem(size)?,
            (Backend::Memfd, _) => create_memfd(size)?,
        };
        let addr = map_shared(file.as_raw_fd(), size, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(GuestMemory { file, addr, size })
    }

    /// The guest memory, for the VMM to write before the guest runs
    /// (record: no userfaultfd is registered).
    ///
    /// # Safety
    /// No vCPU may run on this memory meanwhile.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        std::slice::from_raw_parts_mut(self.addr, self.size)
    }

    /// The guest memory, for the VMM to read (record: saving it).
    ///
    /// # Safety
    /// No vCPU may run on this memory meanwhile.
    pub unsafe fn as_slice(&self) -> &[u8] {
        std::slice::from_raw_parts(self.addr, self.size)
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it any more.
        unsafe { libc::munmap(self.addr.cast(), self.size) };
    }
}
