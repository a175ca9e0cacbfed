// SPDX-License-Identifier: GPL-2.0
//! The snapshot file: one header page (vCPU state), then guest memory.
//!
//! ```text
//! 0       "GMEMVMM1"
//! 8       guest memory size (u64, little-endian)
//! 16      seed of the pattern (u64)
//! 24      sizes of kvm_regs, kvm_sregs, kvm_fpu (u64 each; checked on load)
//! 48      kvm_regs, kvm_sregs, kvm_fpu as the kernel lays them out
//! 4096    guest memory, byte for byte
//! ```
//!
//! The memory starts on a page boundary so that restore can mmap() it and
//! hand its pages straight to UFFDIO_COPY or pwrite().

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::size_of;
use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use crate::memory::PAGE_SIZE;

const MAGIC: &[u8; 8] = b"GMEMVMM1";
pub const MEM_OFFSET: usize = PAGE_SIZE;

/// The state a restore needs besides memory.
#[derive(Clone, Copy)]
pub struct VcpuState {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
}

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is one of the kvm_bindings plain C structures (no padding
    // that matters: the kernel fills and reads them byte for byte).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

fn from_bytes<T: Copy + Default>(b: &[u8]) -> T {
    assert_eq!(b.len(), size_of::<T>());
    let mut v = T::default();
    // SAFETY: same size, and every bit pattern is valid for these structs.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut v as *mut T).cast::<u8>(), b.len()) };
    v
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn save(path: &str, seed: u64, state: &VcpuState, mem: &[u8]) -> io::Result<()> {
    let mut hdr = Vec::with_capacity(MEM_OFFSET);
    hdr.extend_from_slice(MAGIC);
    hdr.extend_from_slice(&(mem.len() as u64).to_le_bytes());
    hdr.extend_from_slice(&seed.to_le_bytes());
    for n in [
        size_of::<kvm_regs>(),
        size_of::<kvm_sregs>(),
        size_of::<kvm_fpu>(),
    ] {
        hdr.extend_from_slice(&(n as u64).to_le_bytes());
    }
    hdr.extend_from_slice(bytes_of(&state.regs));
    hdr.extend_from_slice(bytes_of(&state.sregs));
    hdr.extend_from_slice(bytes_of(&state.fpu));
    assert!(hdr.len() <= MEM_OFFSET);
    hdr.resize(MEM_OFFSET, 0);
    let mut f = File::create(path)?;
    f.write_all(&hdr)?;
    f.write_all(mem)?;
    f.sync_all()
}

/// A snapshot opened for restore: the header parsed, the memory mapped
/// read-only (MAP_PRIVATE, as Firecracker maps its memory file).
pub struct Snapshot {
    pub seed: u64,
    pub state: VcpuState,
    pub mem: *const u8,
    pub mem_size: usize,
    _file: File,
}

unsafe impl Send for Snapshot {}
unsafe impl Sync for Snapshot {}

impl Snapshot {
    // is_multiple_of() is Rust 1.87; Debian trixie's rustc is 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    pub fn open(path: &str) -> io::Result<Snapshot> {
        let mut file = File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open snapshot {path}: {e}")))?;
        let mut hdr = vec![0u8; MEM_OFFSET];
        file.read_exact(&mut hdr)?;
        if &hdr[0..8] != MAGIC {
            return Err(bad(format!("{path}: not a gmem-vmm snapshot")));
        }
        let word = |i: usize| u64::from_le_bytes(hdr[8 * i..8 * i + 8].try_into().unwrap());
        let mem_size = word(1) as usize;
        let seed = word(2);
        let sizes = [word(3) as usize, word(4) as usize, word(5) as usize];
        if sizes
            != [
                size_of::<kvm_regs>(),
                size_of::<kvm_sregs>(),
                size_of::<kvm_fpu>(),
            ]
        {
            return Err(bad(format!(
                "{path}: vCPU state sizes {sizes:?} do not match this VMM"
            )));
        }
        let len = file.metadata()?.len() as usize;
        if mem_size == 0 || mem_size % PAGE_SIZE != 0 || len != MEM_OFFSET + mem_size {
            return Err(bad(format!(
                "{path}: {len} bytes for {mem_size} bytes of memory"
            )));
        }
        let mut at = 48;
        let mut take = |n: usize| {
            let s = &hdr[at..at + n];
            at += n;
            s.to_vec()
        };
        let state = VcpuState {
            regs: from_bytes(&take(sizes[0])),
            sregs: from_bytes(&take(sizes[1])),
            fpu: from_bytes(&take(sizes[2])),
        };
        // SAFETY: a new read-only mapping of the file's memory part.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mem_size,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                MEM_OFFSET as libc::off_t,
            )
        };
        if mem == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Snapshot {
            seed,
            state,
            mem: mem.cast(),
            mem_size,
            _file: file,
        })
    }

    pub fn page(&self, offset: usize) -> *const u8 {
        debug_assert!(offset < self.mem_size);
        // SAFETY: within the mapping.
        unsafe { self.mem.add(offset) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the whole read-only mapping, alive as long as self.
        unsafe { std::slice::from_raw_parts(self.mem, self.mem_size) }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.mem as *mut libc::c_void, self.mem_size) };
    }
}
