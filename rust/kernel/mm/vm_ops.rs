// SPDX-License-Identifier: GPL-2.0

//! VMA operations with a page fault handler, and userfaultfd operations for them.
//!
//! A driver whose file can be mapped implements [`VmOperations`] (the `->fault` handler) and,
//! to let userfaultfd fill its memory with `UFFDIO_COPY`, `UFFDIO_ZEROPAGE` and
//! `UFFDIO_CONTINUE`, [`UffdOperations`] (`struct vm_uffd_ops`).  Both receive the data of the
//! file the VMA maps, kept in its inode ([`AnonInode`]).
//!
//! A driver whose file keeps a shared NUMA policy ([`SharedPolicy`]) returns it from
//! [`VmOperations::policy`]; `mbind()` on any mapping then sets the policy of the file's range.
//!
//! A fault handler may ask core mm to raise a userfault on its behalf by returning
//! [`FaultResult::UffdMissing`] or [`FaultResult::UffdMinor`]; core mm then calls
//! `handle_userfault()`, which may drop the mmap or VMA lock and sleep.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/userfaultfd_k.h`](srctree/include/linux/userfaultfd_k.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{code::*, Result, VTABLE_DEFAULT_ERROR},
    fs::anon_file::AnonInode,
    mm::{
        folio::{LockedFolio, NewFolio},
        mempolicy::{Policy, SharedPolicy},
        page_cache::AddressSpace,
        virt::{vm_flags_t, VmaNew, VmaRef},
    },
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
};
use core::{marker::PhantomData, ops::Deref, ptr::NonNull};

/// A page fault being handled by a `->fault` handler.
///
/// # Invariants
///
/// A `&VmFault` only exists during a call to `->fault`, with the mmap or VMA read lock held.
#[repr(transparent)]
pub struct VmFault(Opaque<bindings::vm_fault>);

impl VmFault {
    /// Returns the VMA that faulted.
    #[inline]
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: During `->fault` the VMA is valid and its read lock (or the mmap lock) is held.
        unsafe { VmaRef::from_raw((*self.0.get()).__bindgen_anon_1.vma) }
    }

    /// Returns the offset of the faulting page in the file, in pages.
    #[inline]
    pub fn pgoff(&self) -> usize {
        // SAFETY: The field is constant for the duration of the fault.
        unsafe { (*self.0.get()).__bindgen_anon_1.pgoff }
    }

    /// Returns the faulting address, rounded down to the page.
    #[inline]
    pub fn address(&self) -> usize {
        // SAFETY: The field is constant for the duration of the fault.
        unsafe { (*self.0.get()).__bindgen_anon_1.address }
    }

    /// Returns whether the VMA is registered with userfaultfd for MISSING faults.
    #[inline]
    pub fn uffd_missing(&self) -> bool {
        // SAFETY: The VMA is valid and locked; its uffd flags are stable under the lock.
        unsafe { bindings::userfaultfd_missing(self.vma().as_ptr()) }
    }

    /// Returns whether the VMA is registered with userfaultfd for MINOR faults.
    #[inline]
    pub fn uffd_minor(&self) -> bool {
        // SAFETY: As above.
        unsafe { bindings::userfaultfd_minor(self.vma().as_ptr()) }
    }
}

/// What a fault handler did.
pub enum FaultResult {
    /// Map this folio, which holds the faulting page, at the fault address.
    ///
    /// It must be a folio of the mapped file's page cache that holds the page at
    /// [`VmFault::pgoff`], and be up to date; any other folio is dropped and the access gets
    /// `SIGBUS`.
    Folio(LockedFolio),
    /// Nothing was mapped: retry the access (for example after a race with truncation).
    NoPage,
    /// Raise a userfaultfd MISSING fault; the VMA must be registered for MISSING.
    UffdMissing,
    /// Raise a userfaultfd MINOR fault; the VMA must be registered for MINOR.
    UffdMinor,
    /// Kill the access with `SIGBUS`.
    SigBus,
    /// The page has a hardware memory error: kill the access with `SIGBUS` (`BUS_MCEERR_AR`).
    HwPoison,
    /// Out of memory.
    Oom,
}

/// The operations of the VMAs that map a file.
#[vtable]
pub trait VmOperations: Sized + 'static {
    /// The data of the mapped file, kept in its inode ([`AnonInode`]).
    type Data: Send + Sync + 'static;

    /// Returns whether core mm may map the up-to-date folios of the file's page cache without
    /// calling [`VmOperations::fault`], as it does for page-cache backed files and shmem.
    ///
    /// Asked once per mapping, when it is set up.  If `true`, the mapping's `->map_pages` is
    /// `filemap_map_pages()`: on read faults, before `fault`, core mm maps the up-to-date folios
    /// it finds at and around the faulting page (fault-around, which userfaultfd turns off for
    /// VMAs registered for MINOR faults), and calls `fault` only if the faulting page was not
    /// among them.  Return `true` only if every folio of the page cache that is up to date may
    /// be mapped as it is, for as long as the mapping lives.
    ///
    /// A mapping with `->map_pages` also has `fault` called under the per-VMA lock; without
    /// it (not implemented, or `false`) core mm retries every fault under the mmap lock
    /// (`vmf_can_call_fault()`).
    fn may_map_pages(_data: &Self::Data) -> bool {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a page fault in a VMA mapping the file.
    fn fault(data: &Self::Data, mapping: &AddressSpace, vmf: &VmFault) -> FaultResult;

    /// Returns the file's shared NUMA policy.
    ///
    /// Implementing this makes the policy of the file's pages a property of the file, as for
    /// shmem: `mbind()` on any mapping sets the policy of the range it maps
    /// (`->set_policy`), `get_mempolicy()` and every allocation for a VMA read it
    /// (`->get_policy`), and the driver allocates the pages no VMA asks for with
    /// [`NewFolio::alloc_shared`].  Without it `mbind()` sets a policy of the VMA alone.
    fn policy(_data: &Self::Data) -> &SharedPolicy {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// userfaultfd support for the VMAs of a file (`struct vm_uffd_ops`).
#[vtable]
pub trait UffdOperations: VmOperations {
    /// Returns whether `vma` may be registered with userfaultfd for the modes in `flags`
    /// (`VM_UFFD_MISSING`, `VM_UFFD_MINOR`, `VM_UFFD_WP`).
    ///
    /// Core mm does not ask when the only mode is `VM_UFFD_WP` and the userfaultfd has
    /// `UFFD_FEATURE_WP_ASYNC`: it allows that for every VMA.
    fn can_userfault(data: &Self::Data, vma: &VmaRef, flags: vm_flags_t) -> bool;

    /// Returns the up-to-date folio at `pgoff`, locked, for `UFFDIO_CONTINUE`.
    ///
    /// Any other folio (not of this file's page cache, not holding the page at `pgoff`, or not
    /// up to date) is dropped and `UFFDIO_CONTINUE` fails with `EFAULT`.  Core mm fails it with
    /// `EIO` if the page is poisoned.
    fn get_folio_noalloc(
        data: &Self::Data,
        mapping: &AddressSpace,
        pgoff: usize,
    ) -> Result<LockedFolio>;

    /// Allocates a folio for `addr` in `vma`, to be filled by `UFFDIO_COPY` or
    /// `UFFDIO_ZEROPAGE`.
    fn alloc_folio(data: &Self::Data, vma: &VmaRef, addr: usize) -> Result<NewFolio>;

    /// Adds a folio returned by [`UffdOperations::alloc_folio`], now filled and up to date, to
    /// the page cache `mapping` at the page core mm maps it to ([`UffdNewFolio::index`]), with
    /// [`UffdNewFolio::insert`].
    ///
    /// The folio can only be added by that call, which is what lets core mm map it: returning
    /// `Ok` is only possible with the [`UffdFolioAdded`] it returns.  If core mm then cannot
    /// map it, the folio leaves the page cache again before anything else can see it.
    fn filemap_add<'a>(
        data: &Self::Data,
        mapping: &AddressSpace,
        folio: UffdNewFolio<'a>,
    ) -> Result<UffdFolioAdded<'a>>;
}

/// Where [`UffdOperations::filemap_add`]'s folio is: owned by the caller of the callback
/// throughout, so that the callback cannot drop it or put another in its place.
enum FolioSlot {
    New(NewFolio),
    Added(LockedFolio),
    Taken,
}

/// The folio of a `UFFDIO_COPY` or `UFFDIO_ZEROPAGE`, filled and up to date, to be added to the
/// page cache by [`UffdOperations::filemap_add`].
///
/// # Invariants
///
/// `slot` holds [`FolioSlot::New`] with the folio core mm allocated for this call, which core
/// mm maps at page `index` of the file whose page cache is `mapping`.
pub struct UffdNewFolio<'a> {
    slot: &'a mut FolioSlot,
    mapping: &'a AddressSpace,
    index: usize,
}

/// Proof that the folio of a [`UffdNewFolio`] was added to a page cache.
///
/// # Invariants
///
/// It refers to the locked folio of a slot that holds [`FolioSlot::Added`].
pub struct UffdFolioAdded<'a>(&'a LockedFolio);

impl<'a> UffdNewFolio<'a> {
    /// The index in the file of the page core mm maps the folio to.
    #[inline]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Adds the folio to the file's page cache at [`UffdNewFolio::index`], returning it locked.
    ///
    /// On failure the folio stays here and the error is returned (`EEXIST` if another folio is
    /// at that index).
    pub fn insert(self, gfp: Flags) -> Result<UffdFolioAdded<'a>> {
        let slot = self.slot;
        let FolioSlot::New(new) = core::mem::replace(slot, FolioSlot::Taken) else {
            // Not reached: by the type invariant the slot holds a new folio.
            return Err(EINVAL);
        };
        // Filled, and about to be published: a page cache without a direct map gets it out of
        // the direct map first, as `LockedFolio::mark_uptodate` does.
        let hide = !self.mapping.has_direct_map();
        if hide {
            if let Err(e) = new.zap_direct_map() {
                *slot = FolioSlot::New(new);
                return Err(e);
            }
        }
        *slot = match self.mapping.add_folio(new, self.index, gfp) {
            Ok(locked) => FolioSlot::Added(locked),
            Err((e, new)) => {
                if hide {
                    new.restore_direct_map();
                }
                *slot = FolioSlot::New(new);
                return Err(e);
            }
        };
        match slot {
            // INVARIANT: The slot holds the folio just added.
            FolioSlot::Added(locked) => Ok(UffdFolioAdded(locked)),
            _ => Err(EINVAL),
        }
    }
}

impl Deref for UffdFolioAdded<'_> {
    type Target = LockedFolio;

    #[inline]
    fn deref(&self) -> &LockedFolio {
        self.0
    }
}

/// Borrows the data and the page cache of the file that `vma` maps.
///
/// # Safety
///
/// `vma` must be valid and map a file whose inode is an [`AnonInode<T::Data>`] holding its
/// data.
unsafe fn vma_data<'a, T: VmOperations>(
    vma: *const bindings::vm_area_struct,
) -> (&'a T::Data, &'a AddressSpace) {
    // SAFETY: The VMA holds a reference on its file, so the file, its inode and mapping, and the
    // data outlive the VMA operation in progress.
    unsafe {
        let file = (*vma).vm_file;
        (
            AnonInode::<T::Data>::data((*file).f_inode),
            AddressSpace::from_raw((*file).f_mapping),
        )
    }
}

struct VmOpsTable<T>(PhantomData<T>);

impl<T: VmOperations> VmOpsTable<T> {
    /// # Safety
    ///
    /// Called by core mm as `->fault` of a VMA set up by [`VmaNew::set_vm_ops`].
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: `vmf` is valid for the duration of `->fault`.
        let fault = unsafe { &*vmf.cast::<VmFault>() };
        // SAFETY: The VMA was set up by `set_vm_ops`, whose caller guarantees the file data.
        let (data, mapping) = unsafe { vma_data::<T>(fault.vma().as_ptr()) };
        match T::fault(data, mapping, fault) {
            FaultResult::Folio(folio) => {
                let index = fault.pgoff();
                if !folio.holds(mapping, index) || !folio.is_uptodate() {
                    // Core mm would map a page of another file, or memory never initialised.
                    return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
                }
                let raw = folio.into_raw();
                // SAFETY: The folio holds the faulting page; the lock and the reference pass to
                // core mm, which unlocks and drops them after mapping (`VM_FAULT_LOCKED`).
                unsafe { (*vmf).page = bindings::folio_file_page(raw.as_ptr(), index) };
                bindings::vm_fault_reason_VM_FAULT_LOCKED
            }
            FaultResult::NoPage => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            FaultResult::UffdMissing => bindings::VM_FAULT_UFFD_MISSING,
            FaultResult::UffdMinor => bindings::VM_FAULT_UFFD_MINOR,
            FaultResult::SigBus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
            FaultResult::HwPoison => bindings::vm_fault_reason_VM_FAULT_HWPOISON,
            FaultResult::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
        }
    }

    /// # Safety
    ///
    /// Called by core mm as `->set_policy` of a VMA set up by [`VmaNew::set_vm_ops`], from
    /// `mbind()` with the mmap lock held for writing.
    #[cfg(CONFIG_NUMA)]
    unsafe extern "C" fn set_policy(
        vma: *mut bindings::vm_area_struct,
        new: *mut bindings::mempolicy,
    ) -> c_int {
        // SAFETY: The VMA was set up by `set_vm_ops`, whose caller guarantees the file data.
        let (data, _) = unsafe { vma_data::<T>(vma) };
        // SAFETY: The shared policy is initialised; `vma` is valid and locked, and `new` is
        // NULL or a valid policy, on which the helper takes its own reference.
        unsafe { bindings::mpol_set_shared_policy(T::policy(data).as_ptr(), vma, new) }
    }

    /// # Safety
    ///
    /// Called by core mm as `->get_policy` of a VMA set up by [`VmaNew::set_vm_ops`], with the
    /// VMA or mmap lock held, `addr` in the VMA and `ilx` valid for writes.
    #[cfg(CONFIG_NUMA)]
    unsafe extern "C" fn get_policy(
        vma: *mut bindings::vm_area_struct,
        addr: c_ulong,
        ilx: *mut c_ulong,
    ) -> *mut bindings::mempolicy {
        // SAFETY: The VMA was set up by `set_vm_ops`, whose caller guarantees the file data.
        let (data, _) = unsafe { vma_data::<T>(vma) };
        // SAFETY: `vma` is valid and locked, and `addr` lies in it.
        let index = unsafe { bindings::linear_page_index(vma, addr) };
        // As shmem: the interleave index is biased by the inode number, so that files start
        // interleaving on different nodes; core mm adds the offset.
        // SAFETY: `ilx` is valid for writes; the VMA holds its file and so the inode.
        unsafe { *ilx = (*(*(*vma).vm_file).f_inode).i_ino as c_ulong };
        // The policy of the page if one was set, with the reference core mm drops; NULL (not
        // the task's policy) otherwise, as `->get_policy` must.
        T::policy(data)
            .lookup(index)
            .map_or(core::ptr::null_mut(), Policy::into_raw)
    }

    #[cfg(CONFIG_NUMA)]
    const SET_POLICY: Option<
        unsafe extern "C" fn(*mut bindings::vm_area_struct, *mut bindings::mempolicy) -> c_int,
    > = if T::HAS_POLICY {
        Some(Self::set_policy)
    } else {
        None
    };

    #[cfg(CONFIG_NUMA)]
    #[allow(clippy::type_complexity)]
    const GET_POLICY: Option<
        unsafe extern "C" fn(
            *mut bindings::vm_area_struct,
            c_ulong,
            *mut c_ulong,
        ) -> *mut bindings::mempolicy,
    > = if T::HAS_POLICY {
        Some(Self::get_policy)
    } else {
        None
    };

    /// The operations of a mapping, with `->map_pages` or without.
    const fn vtable(map_pages: bool) -> bindings::vm_operations_struct {
        bindings::vm_operations_struct {
            fault: Some(Self::fault),
            map_pages: if map_pages {
                Some(bindings::filemap_map_pages)
            } else {
                None
            },
            #[cfg(CONFIG_NUMA)]
            set_policy: Self::SET_POLICY,
            #[cfg(CONFIG_NUMA)]
            get_policy: Self::GET_POLICY,
            ..pin_init::zeroed()
        }
    }

    /// The operations of a mapping without `->map_pages`, and with it.
    const TABLES: [bindings::vm_operations_struct; 2] = [Self::vtable(false), Self::vtable(true)];

    /// Whether a new mapping of the file whose data is `data` may map pages without `fault`.
    fn map_pages(data: &T::Data) -> bool {
        T::HAS_MAY_MAP_PAGES && T::may_map_pages(data)
    }
}

struct UffdOpsTable<T>(PhantomData<T>);

impl<T: UffdOperations> UffdOpsTable<T> {
    /// # Safety
    ///
    /// Called by core mm as `vm_uffd_ops->can_userfault` of a VMA set up by
    /// [`VmaNew::set_vm_ops_uffd`], with the VMA valid and locked.
    unsafe extern "C" fn can_userfault(
        vma: *mut bindings::vm_area_struct,
        flags: vm_flags_t,
    ) -> bool {
        // SAFETY: Core mm calls this with the VMA valid and locked.
        let (data, _) = unsafe { vma_data::<T>(vma) };
        // SAFETY: As above.
        T::can_userfault(data, unsafe { VmaRef::from_raw(vma) }, flags)
    }

    /// # Safety
    ///
    /// Called by core mm as `vm_uffd_ops->get_folio_noalloc` for the inode of a file mapped by a
    /// VMA set up by [`VmaNew::set_vm_ops_uffd`], with that VMA locked.
    unsafe extern "C" fn get_folio_noalloc(
        inode: *mut bindings::inode,
        pgoff: c_ulong,
    ) -> *mut bindings::folio {
        // SAFETY: The inode belongs to the file of a locked VMA set up by `set_vm_ops_uffd`, so
        // it is an `AnonInode<T::Data>` holding the data, alive while the VMA is.
        let (data, mapping) = unsafe {
            (
                AnonInode::<T::Data>::data(inode),
                AddressSpace::from_raw((*inode).i_mapping),
            )
        };
        match T::get_folio_noalloc(data, mapping, pgoff) {
            // Core mm unlocks the folio and keeps or drops the reference.
            Ok(folio) if folio.holds(mapping, pgoff) && folio.is_uptodate() => {
                folio.into_raw().as_ptr()
            }
            // Another folio would be mapped in its place.
            Ok(_) => EFAULT.to_ptr(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by core mm as `vm_uffd_ops->alloc_folio` of a VMA set up by
    /// [`VmaNew::set_vm_ops_uffd`], with the VMA valid and locked.
    unsafe extern "C" fn alloc_folio(
        vma: *mut bindings::vm_area_struct,
        addr: usize,
    ) -> *mut bindings::folio {
        // SAFETY: Core mm calls this with the VMA valid and locked.
        let (data, _) = unsafe { vma_data::<T>(vma) };
        // SAFETY: As above.
        match T::alloc_folio(data, unsafe { VmaRef::from_raw(vma) }, addr) {
            // The reference passes to core mm.
            Ok(folio) => folio.into_raw().as_ptr(),
            Err(_) => core::ptr::null_mut(),
        }
    }

    /// # Safety
    ///
    /// Called by core mm as `vm_uffd_ops->filemap_add` with a folio returned by
    /// [`Self::alloc_folio`] and the VMA it was allocated for, valid and locked.
    unsafe extern "C" fn filemap_add(
        folio: *mut bindings::folio,
        vma: *mut bindings::vm_area_struct,
        addr: usize,
    ) -> c_int {
        // SAFETY: Core mm passes the folio `alloc_folio` returned: exclusively owned, unlocked,
        // in no page cache.  Its reference is lent to the callback and given back below.
        let new = unsafe { NewFolio::from_raw(NonNull::new_unchecked(folio)) };
        // SAFETY: Core mm calls this with the VMA valid and locked.
        let (data, mapping) = unsafe { vma_data::<T>(vma) };
        // SAFETY: As above.
        let index = unsafe { VmaRef::from_raw(vma) }.file_pgoff(addr);
        let mut slot = FolioSlot::New(new);
        // INVARIANT: The slot holds the new folio, which core mm maps at `addr`, page `index` of
        // the file of `mapping`.
        let arg = UffdNewFolio {
            slot: &mut slot,
            mapping,
            index,
        };
        let res = T::filemap_add(data, mapping, arg).map(|_| ());
        match (res, slot) {
            // Core mm keeps the reference and unlocks the folio once it is mapped.
            (Ok(()), FolioSlot::Added(locked)) => {
                let _ = locked.into_raw();
                0
            }
            (res, FolioSlot::Added(locked)) => {
                // Added, but the callback failed: undo, so that nothing maps it.
                // SAFETY: `UffdNewFolio::insert` added it to `mapping`, and it has stayed locked.
                unsafe { mapping.remove_new_folio(&locked) };
                let _ = ARef::into_raw(locked.unlock());
                res.err().unwrap_or(EINVAL).to_errno()
            }
            (res, FolioSlot::New(new)) => {
                let _ = new.into_raw();
                res.err().unwrap_or(EINVAL).to_errno()
            }
            // Not reached: `UffdNewFolio::insert` leaves the slot with a folio.
            (_, FolioSlot::Taken) => EINVAL.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by core mm as `vm_uffd_ops->filemap_remove` with a folio [`Self::filemap_add`]
    /// added, still locked, which it could not map, and the VMA, valid and locked.
    unsafe extern "C" fn filemap_remove(
        folio: *mut bindings::folio,
        vma: *mut bindings::vm_area_struct,
    ) {
        // SAFETY: Core mm passes the folio `filemap_add` added, still locked, and holds a
        // reference; both are lent to us, the lock is released below.
        let locked = unsafe { LockedFolio::from_raw(NonNull::new_unchecked(folio)) };
        // SAFETY: Core mm calls this with the VMA valid and locked.
        let (_, mapping) = unsafe { vma_data::<T>(vma) };
        // SAFETY: `filemap_add` added the folio to the page cache of the file `vma` maps, and it
        // has stayed locked since: core mm could not map it.
        unsafe { mapping.remove_new_folio(&locked) };
        // Unlock as the C contract asks; core mm drops its reference itself.
        let _ = ARef::into_raw(locked.unlock());
    }

    const UFFD_VTABLE: bindings::vm_uffd_ops = bindings::vm_uffd_ops {
        can_userfault: Some(Self::can_userfault),
        get_folio_noalloc: Some(Self::get_folio_noalloc),
        alloc_folio: Some(Self::alloc_folio),
        filemap_add: Some(Self::filemap_add),
        filemap_remove: Some(Self::filemap_remove),
    };

    /// The operations of a mapping without `->map_pages`, and with it.
    const TABLES: [bindings::vm_operations_struct; 2] = [
        bindings::vm_operations_struct {
            uffd_ops: &Self::UFFD_VTABLE,
            ..VmOpsTable::<T>::vtable(false)
        },
        bindings::vm_operations_struct {
            uffd_ops: &Self::UFFD_VTABLE,
            ..VmOpsTable::<T>::vtable(true)
        },
    ];
}

impl VmaRef {
    /// Returns the offset in the mapped file of the page at `addr`, in pages.
    #[inline]
    pub fn file_pgoff(&self, addr: usize) -> usize {
        // SAFETY: The VMA is valid and locked (type invariant of `VmaRef`).
        unsafe { bindings::linear_page_index(self.as_ptr(), addr) }
    }
}

impl VmaNew {
    /// Makes `T` the operations of this new VMA.
    ///
    /// # Safety
    ///
    /// The inode of the file this VMA maps must be an [`AnonInode<T::Data>`] holding its data
    /// (a file of a [`PseudoFs`](crate::fs::anon_file::PseudoFs) whose data is `T::Data`).
    pub unsafe fn set_vm_ops<T: VmOperations>(&self) {
        // SAFETY: The caller's guarantee.
        unsafe { self.install::<T>(&VmOpsTable::<T>::TABLES) };
    }

    /// Makes `T` the operations of this new VMA, with userfaultfd support.
    ///
    /// # Safety
    ///
    /// As for [`VmaNew::set_vm_ops`].
    pub unsafe fn set_vm_ops_uffd<T: UffdOperations>(&self) {
        // SAFETY: The caller's guarantee.
        unsafe { self.install::<T>(&UffdOpsTable::<T>::TABLES) };
    }

    /// Installs `tables[1]` (with `->map_pages`) if `T` may map the pages of the VMA's file
    /// without `fault`, `tables[0]` otherwise.
    ///
    /// # Safety
    ///
    /// As for [`VmaNew::set_vm_ops`].
    unsafe fn install<T: VmOperations>(
        &self,
        tables: &'static [bindings::vm_operations_struct; 2],
    ) {
        // SAFETY: The caller guarantees the file data.
        let (data, _) = unsafe { vma_data::<T>(self.as_ptr()) };
        let ops = &tables[usize::from(VmOpsTable::<T>::map_pages(data))];
        // SAFETY: The VMA is being set up by `->mmap`, so it is not shared yet.
        unsafe { (*self.as_ptr()).vm_ops = ops };
    }
}
