// SPDX-License-Identifier: GPL-2.0

//! guest_memfd with userfaultfd MISSING and MINOR support.
//!
//! `ioctl(KVM_CREATE_GUEST_MEMFD)` on `/dev/guest_memfd` creates a guest memory file: a file of
//! fixed size with its own page cache, which a VMM maps (`MAP_SHARED`), fills with `pwrite()`,
//! and registers with userfaultfd.  Its fault handler asks core mm to raise a userfault:
//!
//! - no folio at the offset and the VMA registered for MISSING: `VM_FAULT_UFFD_MISSING`;
//! - an up-to-date folio there and the VMA registered for MINOR: `VM_FAULT_UFFD_MINOR`;
//! - otherwise the folio is mapped, allocated and zeroed first if there is none.
//!
//! Writes and faults are atomic with respect to each other per page: a write fills a page
//! under the folio lock and marks it up to date before unlocking, and a fault maps or reports
//! a folio only with that lock held, so it never sees a page being written.  A write to part
//! of a new page fills the rest with zeros first.
//!
//! While the module is loaded (and its `kvm` parameter is not 0), it also serves
//! `KVM_CREATE_GUEST_MEMFD` on every KVM VM: KVM binds those files to memslots
//! (`KVM_MEM_GUEST_MEMFD`) and takes the guest's pages from them (`Backend::get_folio`).
//!
//! See `Documentation/guest_memfd.rst`.

use kernel::{
    debugfs,
    fs::{
        anon_file::{AnonFileOperations, MmapArea, PseudoFs, ReleasingFile},
        file::{File, LocalFile},
    },
    iov::{IovIterDest, IovIterSource},
    kvm_gmem::{self, Backend, Kvm},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::{
        folio::{fault_in_readable, Folio, FreeingFolio, LockedFolio, NewFolio},
        mempolicy::SharedPolicy,
        page_cache::{AddressSpace, NewAddressSpace},
        virt::{flags as vm_flags, vm_flags_t, VmaRef},
        vm_ops::{
            FaultResult, UffdFolioAdded, UffdNewFolio, UffdOperations, VmFault, VmOperations,
        },
    },
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        new_mutex, Mutex,
    },
    uaccess::{UserPtr, UserSlice, UserSliceReader},
    uapi,
};

module! {
    type: GmemUffdModule,
    name: "gmem_uffd",
    authors: ["gmem-uffd developers"],
    description: "guest_memfd with userfaultfd MISSING and MINOR support",
    license: "GPL",
    params: {
        kvm: u8 {
            default: 1,
            description: "Serve KVM_CREATE_GUEST_MEMFD of every VM (0: leave it to KVM)",
        },
    },
}

/// `KVM_CREATE_GUEST_MEMFD`: `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` (a
/// function-like macro, which the bindings cannot carry).
const KVM_CREATE_GUEST_MEMFD: u32 =
    kernel::ioctl::_IOWR::<uapi::kvm_create_guest_memfd>(uapi::KVMIO, 0xd4);
// What `create` reads: `size`, `flags` and six reserved words.
const _: () = assert!(core::mem::size_of::<uapi::kvm_create_guest_memfd>() == 64);
/// The file can be mapped.
const FLAG_MMAP: u64 = uapi::GUEST_MEMFD_FLAG_MMAP as u64;
/// The memory starts shared with the host, so it can be faulted in.
const FLAG_INIT_SHARED: u64 = uapi::GUEST_MEMFD_FLAG_INIT_SHARED as u64;
/// The file's pages leave the kernel's direct map while they hold data (secret hiding).
const FLAG_NO_DIRECT_MAP: u64 = uapi::GUEST_MEMFD_FLAG_NO_DIRECT_MAP as u64;
/// The largest guest memory file: 1 TiB.
const MAX_SIZE: u64 = 1 << 40;
/// The superblock magic of our pseudo file system ("GMUF").
const GMEM_UFFD_MAGIC: usize = 0x474d_5546;
/// The pseudo file system of guest memory files.
static GMEM_FS: PseudoFs<Gmem> = PseudoFs::new(c"gmem_uffd", GMEM_UFFD_MAGIC, &THIS_MODULE);
/// Allocation flags of guest memory, as KVM's guest_memfd uses: not movable (the pages stay
/// where the guest put them, see `init_mapping`), confined to the task's cpuset.
const GMEM_GFP: kernel::alloc::Flags = GFP_HIGHUSER;

const O_CLOEXEC: u32 = kernel::bindings::O_CLOEXEC;

/// Live guest memory files.
static FILES: Atomic<i64> = Atomic::new(0);
/// Folios in the page caches of all guest memory files.
static FOLIOS: Atomic<i64> = Atomic::new(0);
/// `VM_FAULT_UFFD_MISSING` returned by the fault handler.
static MISSING_EVENTS: Atomic<i64> = Atomic::new(0);
/// `VM_FAULT_UFFD_MINOR` returned by the fault handler.
static MINOR_EVENTS: Atomic<i64> = Atomic::new(0);
/// Files created for KVM (`KVM_CREATE_GUEST_MEMFD` on a VM), ever.
static KVM_FILES: Atomic<i64> = Atomic::new(0);
/// Folios given to KVM for stage-2 faults, ever.
static KVM_FOLIOS: Atomic<i64> = Atomic::new(0);

#[pin_data]
struct GmemUffdModule {
    _kvm: Option<Pin<KBox<kvm_gmem::Registration<Gmem>>>>,
    #[pin]
    _device: MiscDeviceRegistration<GmemDevice>,
    _debugfs: debugfs::Dir,
    #[pin]
    _files: debugfs::File<()>,
    #[pin]
    _folios: debugfs::File<()>,
    #[pin]
    _missing: debugfs::File<()>,
    #[pin]
    _minor: debugfs::File<()>,
    #[pin]
    _kvm_files: debugfs::File<()>,
    #[pin]
    _kvm_folios: debugfs::File<()>,
    #[pin]
    _direct_map: debugfs::File<Mutex<DirectMapQuery>>,
}

/// The state of the debugfs file `direct_map`.
struct DirectMapQuery {
    /// The answer to the last query.
    answer: i64,
    /// The folio of the last query: held, so that whether it is in the direct map can be asked
    /// again once it has left its file.
    held: Option<ARef<Folio>>,
}

fn show_files(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", FILES.load(Relaxed))
}

fn show_folios(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", FOLIOS.load(Relaxed))
}

fn show_missing(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", MISSING_EVENTS.load(Relaxed))
}

fn show_minor(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", MINOR_EVENTS.load(Relaxed))
}

/// `direct_map`: the answer to the last query written to it.
fn show_direct_map(
    query: &Mutex<DirectMapQuery>,
    f: &mut core::fmt::Formatter<'_>,
) -> core::fmt::Result {
    writeln!(f, "{}", query.lock().answer)
}

/// `direct_map`, a debugging aid for the tests of `GUEST_MEMFD_FLAG_NO_DIRECT_MAP`.  Writing
/// "FD OFFSET" asks whether the kernel's direct map maps the page at byte OFFSET of the guest
/// memory file FD (of the writer), and holds that page; "held" asks again for the page held,
/// wherever it is now; "drop" lets it go.  Reading gives the answer: 1 if the direct map maps
/// the page, 0 if not, -1 if there is no such page.
fn query_direct_map(query: &Mutex<DirectMapQuery>, reader: &mut UserSliceReader) -> Result {
    let mut buf = [0u8; 48];
    let n = reader.len();
    if n >= buf.len() {
        return Err(EINVAL);
    }
    reader.read_slice(&mut buf[..n])?;
    let text = core::str::from_utf8(&buf[..n]).map_err(|_| EINVAL)?;
    let mut words = text.split_whitespace();
    let mut q = query.lock();
    match (words.next(), words.next(), words.next()) {
        (Some("held"), None, None) => {}
        (Some("drop"), None, None) => q.held = None,
        (Some(fd), Some(offset), None) => {
            let fd: u32 = fd.parse().map_err(|_| EINVAL)?;
            let offset: u64 = offset.parse().map_err(|_| EINVAL)?;
            let file = LocalFile::fget(fd).map_err(|_| EBADF)?;
            let mapping = GMEM_FS.mapping_of(&file).ok_or(EINVAL)?;
            q.held = usize::try_from(offset / PAGE_SIZE as u64)
                .ok()
                .and_then(|index| mapping.get_folio(index));
        }
        _ => return Err(EINVAL),
    }
    q.answer = q
        .held
        .as_ref()
        .map_or(-1, |folio| i64::from(folio.direct_map_present()));
    Ok(())
}

fn show_kvm_files(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", KVM_FILES.load(Relaxed))
}

fn show_kvm_folios(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    writeln!(f, "{}", KVM_FOLIOS.load(Relaxed))
}

impl kernel::InPlaceModule for GmemUffdModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let dir = debugfs::Dir::new(c"gmem_uffd");
        try_pin_init!(Self {
            _kvm: if *module_parameters::kvm.value() != 0 {
                Some(KBox::pin_init(
                    kvm_gmem::Registration::register(module),
                    GFP_KERNEL,
                )?)
            } else {
                None
            },
            _device <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"guest_memfd",
            }),
            _files <- dir.read_callback_file(c"files", (), &show_files),
            _folios <- dir.read_callback_file(c"folios", (), &show_folios),
            _missing <- dir.read_callback_file(c"missing_events", (), &show_missing),
            _minor <- dir.read_callback_file(c"minor_events", (), &show_minor),
            _kvm_files <- dir.read_callback_file(c"kvm_files", (), &show_kvm_files),
            _kvm_folios <- dir.read_callback_file(c"kvm_folios", (), &show_kvm_folios),
            _direct_map <- dir.read_write_callback_file(
                c"direct_map",
                new_mutex!(DirectMapQuery {
                    answer: 0,
                    held: None,
                }),
                &show_direct_map,
                &query_direct_map,
            ),
            _debugfs: dir,
        })
    }
}

/// A guest memory file: what its inode holds besides the VFS inode.  Its size is the inode's
/// (`i_size`), a non-zero multiple of `PAGE_SIZE` of at most `MAX_SIZE`, set at creation and
/// never changed (`setattr` refuses).
#[pin_data]
struct Gmem {
    flags: u64,
    /// The NUMA policies of the file's pages, which `mbind()` on any mapping of it sets, and
    /// by which every page of it is allocated, as for KVM's guest_memfd and shmem.
    #[pin]
    policy: SharedPolicy,
}

/// Splits the byte range `pos..pos + len` into per-page pieces: `(index, offset, length)`.
fn page_pieces(pos: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let end = pos + len as u64;
    let mut at = pos;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let index = (at >> PAGE_SHIFT) as usize;
        let offset = (at as usize) & (PAGE_SIZE - 1);
        let n = core::cmp::min(PAGE_SIZE - offset, (end - at) as usize);
        at += n as u64;
        Some((index, offset, n))
    })
}

/// Accounts a folio just added to a guest memory file's page cache, and marks it dirty: its
/// contents exist nowhere else, so nothing that drops clean page cache may take it.
fn added(folio: &LockedFolio) {
    folio.mark_dirty();
    FOLIOS.add(1, Relaxed);
}

/// Adds `new` to the page cache at `index`, returning it locked.
fn insert(mapping: &AddressSpace, new: NewFolio, index: usize) -> Result<LockedFolio> {
    let folio = mapping
        .add_folio(new, index, GMEM_GFP)
        .map_err(|(e, _)| e)?;
    added(&folio);
    Ok(folio)
}

/// Writes into page `index` of the file with `copy`, which copies into the locked folio at
/// `offset` and returns how many bytes it copied.  A page the write creates is published with
/// the rest zeroed, or, if `copy` copied nothing, removed again: the hole stays a hole.
fn write_page(
    data: &Gmem,
    mapping: &AddressSpace,
    index: usize,
    offset: usize,
    copy: impl FnOnce(&LockedFolio) -> Result<usize>,
) -> Result<usize> {
    let _inval = mapping.invalidate_lock_shared();
    let folio = lock_or_create(data, mapping, index)?;
    let copied = copy(&folio)?;
    if !folio.is_uptodate() {
        if copied == 0 {
            mapping.remove_folio(&folio)?;
            return Ok(0);
        }
        // A new page: the part not written reads as zeros.
        folio.zero_range(0, offset)?;
        folio.zero_range(offset + copied, folio.size() - offset - copied)?;
        // Only now may faults, reads and UFFDIO_CONTINUE see the page.
        if let Err(e) = folio.mark_uptodate() {
            // Could not leave the direct map: leave the hole it was.
            mapping.remove_folio(&folio)?;
            return Err(e);
        }
    }
    Ok(copied)
}

/// Returns the folio at `index`, locked, creating it (not yet up to date) if there is none.
///
/// A page with a hardware memory error fails with `EIO`, as shmem's do.
fn lock_or_create(data: &Gmem, mapping: &AddressSpace, index: usize) -> Result<LockedFolio> {
    let folio = lock_or_create_any(data, mapping, index)?;
    if folio.is_hwpoison() {
        return Err(EIO);
    }
    Ok(folio)
}

/// [`lock_or_create`], but a page with a hardware memory error is returned as it is.
///
/// A new folio follows the file's NUMA policy for `index`, or the current task's if the range
/// has none.
fn lock_or_create_any(data: &Gmem, mapping: &AddressSpace, index: usize) -> Result<LockedFolio> {
    loop {
        if let Some(folio) = mapping.lock_folio(index) {
            return Ok(folio);
        }
        let new = NewFolio::alloc_shared(GMEM_GFP, &data.policy, index)?;
        match insert(mapping, new, index) {
            // Somebody else added one meanwhile: use theirs.
            Err(e) if e == EEXIST => continue,
            result => return result,
        }
    }
}

/// Ends a read or write of `len` bytes that transferred `done`: advances `*pos`, or fails with
/// `EFAULT` if nothing could be transferred (the user buffer faulted).
fn finish_io(pos: &mut i64, done: usize, len: usize) -> Result<usize> {
    if done == 0 && len > 0 {
        return Err(EFAULT);
    }
    *pos += done as i64;
    Ok(done)
}

/// The page-sized bounce buffer of one read or write call, allocated on its first use.
fn bounce_page(bounce: &mut Option<KVec<u8>>) -> Result<&mut KVec<u8>> {
    match bounce {
        Some(page) => Ok(page),
        None => Ok(bounce.insert(KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?)),
    }
}

/// Makes sure a locked folio is up to date, zeroing it if it is not.
fn make_uptodate(folio: &LockedFolio) -> Result {
    if !folio.is_uptodate() {
        folio.zero_range(0, folio.size())?;
        folio.mark_uptodate()?;
    }
    Ok(())
}

impl Gmem {
    /// The data of a new file with `flags`.
    fn new(flags: u64) -> impl PinInit<Self> {
        pin_init!(Gmem {
            flags,
            policy <- SharedPolicy::new(),
        })
    }

    /// `read()` and `write()` reach only memory the host may map (`GUEST_MEMFD_FLAG_MMAP`),
    /// as in KVM's write() population: `ENODEV` otherwise.
    fn host_access(&self) -> Result {
        if self.flags & FLAG_MMAP == 0 {
            return Err(ENODEV);
        }
        Ok(())
    }

    /// `ioctl(KVM_CREATE_GUEST_MEMFD)` on `/dev/guest_memfd`: a new file with the size and
    /// flags of the `struct kvm_create_guest_memfd` at `arg`, as a new descriptor.
    fn create(arg: usize) -> Result<isize> {
        let args: [u64; 8] = UserSlice::new(UserPtr::from_addr(arg), 64)
            .reader()
            .read()?;
        let (size, flags) = (args[0], args[1]);
        if args[2..].iter().any(|&r| r != 0)
            || flags & !(FLAG_MMAP | FLAG_INIT_SHARED | FLAG_NO_DIRECT_MAP) != 0
            || (flags & FLAG_INIT_SHARED != 0 && flags & FLAG_MMAP == 0)
            || size == 0
            || size % PAGE_SIZE as u64 != 0
            || size > MAX_SIZE
        {
            return Err(EINVAL);
        }
        let fd = GMEM_FS.create_file(c"[gmem_uffd]", size as i64, Gmem::new(flags), O_CLOEXEC)?;
        FILES.add(1, Relaxed);
        Ok(fd as isize)
    }
}

/// `/dev/guest_memfd`: its `ioctl(KVM_CREATE_GUEST_MEMFD)` creates guest memory files.  An
/// open descriptor of the device has no state of its own.
struct GmemDevice;

#[vtable]
impl MiscDevice for GmemDevice {
    type Ptr = ();
    const OWNER: &'static ThisModule = &THIS_MODULE;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result {
        Ok(())
    }

    fn ioctl(_device: (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            KVM_CREATE_GUEST_MEMFD => Gmem::create(arg),
            _ => Err(ENOTTY),
        }
    }
}

#[vtable]
impl AnonFileOperations for Gmem {
    type Data = Gmem;

    fn init_mapping(data: &Gmem, mapping: &NewAddressSpace<'_>) {
        // Guest memory has no backing store: reclaim must never take it.  It is not migrated
        // either (as KVM's guest_memfd): the pages stay where the guest put them.
        mapping.set_inaccessible();
        mapping.set_gfp_mask(GMEM_GFP);
        if data.flags & FLAG_NO_DIRECT_MAP != 0 {
            mapping.set_no_direct_map();
        }
    }

    fn release(_data: &Gmem, file: &ReleasingFile<'_>) {
        // Nothing maps the file any more, no VM either: free every folio now.
        file.truncate();
        FILES.add(-1, Relaxed);
    }

    fn mmap(data: &Gmem, area: &MmapArea<'_, Self>) -> Result {
        if data.flags & FLAG_MMAP == 0 {
            return Err(ENODEV);
        }
        let shared = vm_flags::SHARED | vm_flags::MAYSHARE;
        if area.vma().flags() & shared != shared {
            return Err(EINVAL);
        }
        area.set_vm_ops_uffd::<Gmem>();
        Ok(())
    }

    fn read_iter(
        data: &Gmem,
        mapping: &AddressSpace,
        pos: &mut i64,
        iov: &mut IovIterDest<'_>,
    ) -> Result<usize> {
        static ZEROS: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
        data.host_access()?;
        let start = u64::try_from(*pos).map_err(|_| EINVAL)?;
        let size = mapping.size() as u64;
        if start >= size {
            return Ok(0);
        }
        let len = core::cmp::min(iov.len() as u64, size - start) as usize;
        let mut done = 0;
        let mut bounce: Option<KVec<u8>> = None;
        for (index, offset, n) in page_pieces(start, len) {
            let copied = match mapping.get_folio(index) {
                // A page with a hardware memory error: as shmem, a short read, or EIO.
                Some(folio) if folio.is_hwpoison() => {
                    if done == 0 {
                        return Err(EIO);
                    }
                    break;
                }
                Some(folio) if folio.is_uptodate() && mapping.has_direct_map() => {
                    folio.copy_to_iter(offset, n, iov)?
                }
                // Out of the direct map: copied locked, through a bounce page.
                Some(folio) if folio.is_uptodate() => {
                    let page = bounce_page(&mut bounce)?;
                    let buf = &mut page[..n];
                    let locked = Folio::lock(folio);
                    // A page punched meanwhile reads as the hole it now is.
                    if locked.belongs_to(mapping) {
                        locked.read_bytes(offset, buf)?;
                    } else {
                        buf.fill(0);
                    }
                    drop(locked);
                    let copied = iov.copy_to_iter(buf);
                    buf.fill(0);
                    copied
                }
                // A hole, or a page whose first write is still in progress: zeros.
                _ => iov.copy_to_iter(&ZEROS[..n]),
            };
            done += copied;
            if copied < n {
                break;
            }
        }
        finish_io(pos, done, len)
    }

    fn write_iter(
        data: &Gmem,
        mapping: &AddressSpace,
        pos: &mut i64,
        iov: &mut IovIterSource<'_>,
    ) -> Result<usize> {
        data.host_access()?;
        let start = u64::try_from(*pos).map_err(|_| EINVAL)?;
        let size = mapping.size() as u64;
        // The size is fixed: as KVM's write() population, a write at or past the end is invalid.
        if start >= size {
            return Err(EINVAL);
        }
        let len = core::cmp::min(iov.len() as u64, size - start) as usize;
        let mut done = 0;
        let mut bounce: Option<KVec<u8>> = None;
        while done < len {
            let at = start + done as u64;
            let (index, offset) = (
                (at / PAGE_SIZE as u64) as usize,
                (at % PAGE_SIZE as u64) as usize,
            );
            let n = core::cmp::min(PAGE_SIZE - offset, len - done);
            // The source is made present before any lock is taken: it may be a mapping of this
            // very file, whose fault would need the folio lock held below, where the copy takes
            // no fault.
            if fault_in_readable(iov, n) == n {
                break;
            }
            let mut result = write_page(data, mapping, index, offset, |folio| {
                folio.copy_from_iter_atomic(offset, n, iov)
            });
            if let Ok(0) = result {
                // The source went away between the fault-in and the copy (another thread
                // unmapping it, reclaim).  Once more through a bounce page filled with faults
                // allowed and no lock held, so that every pass makes progress.
                result = bounce_page(&mut bounce).and_then(|page| {
                    let got = iov.copy_from_iter(&mut page[..n]);
                    if got == 0 {
                        // Not even a fault brings the source in.
                        return Err(EFAULT);
                    }
                    write_page(data, mapping, index, offset, |folio| {
                        folio.write_bytes(offset, &page[..got]).map(|()| got)
                    })
                });
            }
            match result {
                Ok(copied) => done += copied,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        finish_io(pos, done, len)
    }

    fn fallocate(
        data: &Gmem,
        file: &File,
        mapping: &AddressSpace,
        mode: i32,
        offset: i64,
        len: i64,
    ) -> Result {
        const KEEP_SIZE: i32 = kernel::bindings::FALLOC_FL_KEEP_SIZE as i32;
        const PUNCH_HOLE: i32 = kernel::bindings::FALLOC_FL_PUNCH_HOLE as i32;
        let punch = match mode {
            0 | KEEP_SIZE => false,
            m if m == PUNCH_HOLE | KEEP_SIZE => true,
            _ => return Err(EOPNOTSUPP),
        };
        let page = PAGE_SIZE as i64;
        if offset < 0 || len <= 0 || offset % page != 0 || len % page != 0 {
            return Err(EINVAL);
        }
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        if punch {
            // As KVM's guest_memfd: a hole may be punched anywhere; past the end there is
            // nothing to remove.
            let end = core::cmp::min(end, mapping.size());
            if offset >= end {
                return Ok(());
            }
            let pages = (offset / page) as usize..(end / page) as usize;
            let guard = mapping.invalidate_lock();
            // The guest loses the range first (a file of a VM), then every mapping; the folios
            // are freed.
            kvm_gmem::Invalidation::begin(file, &guard, pages)?.truncate();
            return Ok(());
        }
        if end > mapping.size() {
            return Err(EINVAL);
        }
        for index in (offset / page) as usize..(end / page) as usize {
            if kernel::current!().signal_pending() {
                return Err(EINTR);
            }
            // Page by page: a hole punch waiting for the lock is not kept out for long.
            let _inval = mapping.invalidate_lock_shared();
            make_uptodate(&lock_or_create(data, mapping, index)?)?;
            drop(_inval);
            kernel::task::cond_resched();
        }
        Ok(())
    }

    fn free_folio(_folio: &FreeingFolio) {
        FOLIOS.add(-1, Relaxed);
    }
}

#[vtable]
impl VmOperations for Gmem {
    type Data = Gmem;

    // An up-to-date folio is complete (see `write_iter`), so it may be mapped as it is, unless
    // the memory is private to the guest (no INIT_SHARED: every fault gets SIGBUS).  `fault`
    // needs no mmap lock; without this, core mm would retry every fault under it.
    fn may_map_pages(data: &Gmem) -> bool {
        data.flags & FLAG_INIT_SHARED != 0
    }

    // `mbind()` on a mapping sets the policy of the file's range; the fault handler's
    // `alloc_vma` and UFFDIO_COPY's `alloc_folio` find it through the VMA.
    fn policy(data: &Gmem) -> &SharedPolicy {
        &data.policy
    }

    fn fault(data: &Gmem, mapping: &AddressSpace, vmf: &VmFault) -> FaultResult {
        let index = vmf.pgoff();
        if index >= mapping.nr_pages() || data.flags & FLAG_INIT_SHARED == 0 {
            return FaultResult::SigBus;
        }
        // A MINOR event needs no lock, as in shmem: it only reports that the page is there,
        // and UFFDIO_CONTINUE locks the folio to map it (and fails cleanly if a hole punch
        // removed it meanwhile, which could happen after the locks below are dropped too).  A
        // folio that is not up to date is still being written: the locked path waits for it.
        //
        // A MISSING event needs none either, as in shmem: a page added after the lookup is
        // reported missing all the same, and the handler's UFFDIO_COPY then fails with EEXIST,
        // as it does when two threads fault on one page; the handler wakes the faulting thread
        // with UFFDIO_WAKE (a failed UFFDIO_COPY wakes nobody).
        let folio = mapping.get_folio(index);
        if folio.as_ref().is_some_and(|f| f.is_hwpoison()) {
            return FaultResult::HwPoison;
        }
        if vmf.uffd_minor() && folio.as_ref().is_some_and(|f| f.is_uptodate()) {
            MINOR_EVENTS.add(1, Relaxed);
            return FaultResult::UffdMinor;
        }
        if vmf.uffd_missing() && folio.is_none() {
            MISSING_EVENTS.add(1, Relaxed);
            return FaultResult::UffdMissing;
        }
        drop(folio);
        // Keeps hole punching out until the folio is locked; truncation waits for the lock.
        let _inval = mapping.invalidate_lock_shared();
        if let Some(folio) = mapping.lock_folio(index) {
            if folio.is_hwpoison() {
                return FaultResult::HwPoison;
            }
            if make_uptodate(&folio).is_err() {
                return FaultResult::SigBus;
            }
            if vmf.uffd_minor() {
                MINOR_EVENTS.add(1, Relaxed);
                return FaultResult::UffdMinor;
            }
            return FaultResult::Folio(folio);
        }
        if vmf.uffd_missing() {
            MISSING_EVENTS.add(1, Relaxed);
            return FaultResult::UffdMissing;
        }
        let Ok(new) = NewFolio::alloc_vma(GMEM_GFP, vmf.vma(), vmf.address()) else {
            return FaultResult::Oom;
        };
        // Charged to the memory cgroup of the mm that faults, as shmem does (`fault_mm`), not to
        // the current task's: they differ for a remote access (ptrace, process_vm_writev).
        if new.charge(vmf.vma().mm(), GFP_KERNEL).is_err() {
            return FaultResult::Oom;
        }
        new.zero();
        match insert(mapping, new, index) {
            Ok(folio) => match folio.mark_uptodate() {
                Ok(()) => FaultResult::Folio(folio),
                // Could not leave the direct map: leave the hole it was.
                Err(_) => {
                    let _ = mapping.remove_folio(&folio);
                    FaultResult::Oom
                }
            },
            // Raced with a write, fallocate or another fault: retry the access.
            Err(e) if e == EEXIST => FaultResult::NoPage,
            Err(_) => FaultResult::Oom,
        }
    }
}

#[vtable]
impl UffdOperations for Gmem {
    fn can_userfault(data: &Gmem, _vma: &VmaRef, flags: vm_flags_t) -> bool {
        // MISSING and MINOR; write protection is not supported (yet).  Memory private to the
        // guest (no INIT_SHARED) is never mapped by the host, so userfaultfd cannot fill it.
        flags & kernel::bindings::VM_UFFD_WP as vm_flags_t == 0
            && data.flags & FLAG_INIT_SHARED != 0
    }

    fn get_folio_noalloc(
        _data: &Gmem,
        mapping: &AddressSpace,
        pgoff: usize,
    ) -> Result<LockedFolio> {
        match mapping.lock_folio(pgoff) {
            // Present means written completely (see `write_iter`).
            Some(folio) if folio.is_uptodate() => Ok(folio),
            _ => Err(ENOENT),
        }
    }

    fn alloc_folio(_data: &Gmem, vma: &VmaRef, addr: usize) -> Result<NewFolio> {
        let folio = NewFolio::alloc_vma(GMEM_GFP, vma, addr)?;
        // Charged to the faulting process, whoever issues UFFDIO_COPY.
        folio.charge(vma.mm(), GFP_KERNEL)?;
        Ok(folio)
    }

    fn filemap_add<'a>(
        _data: &Gmem,
        mapping: &AddressSpace,
        folio: UffdNewFolio<'a>,
    ) -> Result<UffdFolioAdded<'a>> {
        if folio.index() >= mapping.nr_pages() {
            return Err(EFAULT);
        }
        let _inval = mapping.invalidate_lock_shared();
        // If core mm cannot map it, it leaves the page cache again; `free_folio` then adjusts
        // the count.
        let folio = folio.insert(GMEM_GFP)?;
        added(&folio);
        Ok(folio)
    }
}

impl Backend for Gmem {
    const FLAGS: u64 = FLAG_MMAP | FLAG_INIT_SHARED | FLAG_NO_DIRECT_MAP;

    fn fs() -> &'static PseudoFs<Gmem> {
        &GMEM_FS
    }

    fn create(_kvm: &Kvm, size: u64, flags: u64) -> Result<ARef<File>> {
        // KVM has checked the flags, and that the size is a positive multiple of the page size.
        if size > MAX_SIZE {
            return Err(EINVAL);
        }
        let file = GMEM_FS.new_file(c"[gmem_uffd]", size as i64, Gmem::new(flags))?;
        FILES.add(1, Relaxed);
        KVM_FILES.add(1, Relaxed);
        Ok(file)
    }

    fn get_folio(data: &Gmem, mapping: &AddressSpace, index: usize) -> Result<LockedFolio> {
        // KVM asks only for pages of a memslot binding, which lies within the file.
        if index >= mapping.nr_pages() {
            return Err(EINVAL);
        }
        // No invalidate lock: KVM may hold it already (`kvm_gmem_populate`).  A hole punch
        // racing with this is bracketed by a KVM invalidation, which makes KVM retry the fault.
        let folio = lock_or_create_any(data, mapping, index)?;
        if !folio.is_hwpoison() {
            make_uptodate(&folio)?;
        }
        KVM_FOLIOS.add(1, Relaxed);
        Ok(folio)
    }
}
