// SPDX-License-Identifier: GPL-2.0

//! The page cache of a file: `struct address_space`.
//!
//! C header: [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{code::*, from_err_ptr, Error, Result},
    mm::folio::{Folio, LockedFolio, NewFolio},
    sync::aref::ARef,
    types::{NotThreadSafe, Opaque},
};
use core::{
    ops::{Bound, Deref, RangeBounds},
    ptr::NonNull,
};

/// The page cache of an inode.
///
/// # Invariants
///
/// A `&AddressSpace` only exists while the inode that embeds it is alive.
#[repr(transparent)]
pub struct AddressSpace(Opaque<bindings::address_space>);

// SAFETY: The page cache is designed for concurrent use; every method takes the locks it needs.
unsafe impl Send for AddressSpace {}
// SAFETY: As above.
unsafe impl Sync for AddressSpace {}

impl AddressSpace {
    /// Creates a `&AddressSpace` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to the `address_space` of an inode that stays alive for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *const bindings::address_space) -> &'a Self {
        // SAFETY: `AddressSpace` is `repr(transparent)`; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer to the `struct address_space`.
    #[inline]
    pub fn as_ptr(&self) -> *mut bindings::address_space {
        self.0.get()
    }

    /// Returns the size in bytes of the file this page cache belongs to (`i_size_read()` of
    /// its host inode).
    #[inline]
    pub fn size(&self) -> i64 {
        // SAFETY: The mapping is valid, and so is the inode that owns it.
        unsafe { bindings::i_size_read((*self.as_ptr()).host) }
    }

    /// Returns whether the folios of this page cache are in the kernel's direct map (see
    /// [`NewAddressSpace::set_no_direct_map`]).
    #[inline]
    pub fn has_direct_map(&self) -> bool {
        // SAFETY: The mapping is valid; the flag is read atomically.
        !unsafe { bindings::mapping_no_direct_map(self.as_ptr()) }
    }

    /// Returns the size of the file in pages, rounded up.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        (self.size() as u64).div_ceil(crate::page::PAGE_SIZE as u64) as usize
    }

    /// Looks up the folio at `index` and returns it locked, or `None` if there is none.
    ///
    /// A folio that is truncated while its lock is being taken is not returned.
    pub fn lock_folio(&self, index: usize) -> Option<LockedFolio> {
        // SAFETY: The mapping is valid for the life of `self` (type invariant); the lookup
        // takes its own reference on the folio it returns.
        let folio = unsafe { bindings::filemap_lock_folio(self.as_ptr(), index) };
        let folio = NonNull::new(from_err_ptr(folio).ok()?)?;
        // SAFETY: `filemap_lock_folio` returns a folio that is locked, still in this mapping,
        // with a reference count for the caller.
        Some(unsafe { LockedFolio::from_raw(folio) })
    }

    /// Looks up the folio at `index` without locking it.
    pub fn get_folio(&self, index: usize) -> Option<ARef<Folio>> {
        // SAFETY: The mapping is valid.
        let folio = unsafe { bindings::filemap_get_folio(self.as_ptr(), index) };
        let folio = NonNull::new(from_err_ptr(folio).ok()?)?;
        // SAFETY: `filemap_get_folio` returns a folio with a reference count for the caller.
        Some(unsafe { ARef::from_raw(folio.cast()) })
    }

    /// Adds `folio` to the page cache at `index` and returns it locked.
    ///
    /// A folio not yet charged to a memory cgroup is charged to the current task's; one charged
    /// with [`NewFolio::charge`] stays charged where it is.  On failure (`EEXIST` if another
    /// folio is there already) the folio is given back.
    pub fn add_folio(
        &self,
        folio: NewFolio,
        index: usize,
        flags: Flags,
    ) -> Result<LockedFolio, (Error, NewFolio)> {
        let ptr = folio.as_ptr();
        let ret = if folio.is_charged() {
            // SAFETY: The folio is exclusively ours, so the non-atomic flag update is not racy.
            unsafe { bindings::__folio_set_locked(ptr) };
            // SAFETY: The folio is locked, charged and in no page cache, as
            // `__filemap_add_folio` requires; it takes the page cache's own references.
            let ret = unsafe {
                bindings::__filemap_add_folio(
                    self.as_ptr(),
                    ptr,
                    index,
                    flags.as_raw(),
                    core::ptr::null_mut(),
                )
            };
            if ret == 0 {
                // SAFETY: The folio is in the page cache and locked by us.
                unsafe { bindings::folio_add_lru(ptr) };
            } else {
                // SAFETY: Still exclusively ours: the insertion failed.
                unsafe { bindings::__folio_clear_locked(ptr) };
            }
            ret
        } else {
            // SAFETY: `folio` is exclusively owned, unlocked, uncharged and in no page cache; on
            // success `filemap_add_folio` charges and locks it and takes the page cache's own
            // references, on failure it leaves it as it was.
            unsafe { bindings::filemap_add_folio(self.as_ptr(), ptr, index, flags.as_raw()) }
        };
        if ret != 0 {
            return Err((Error::from_errno(ret), folio));
        }
        // SAFETY: The folio is locked by us, and the reference of `folio` passes on.
        Ok(unsafe { LockedFolio::from_raw(folio.into_raw()) })
    }

    /// Removes a locked folio that is not up to date from this page cache: a page that a
    /// `write()` began to fill and gave up on, for example.
    ///
    /// Fails with `EINVAL` if the folio is not in this page cache, and with `EBUSY` if it is up
    /// to date or mapped.  Only up-to-date folios are mapped, by userspace (the fault and
    /// `UFFDIO_CONTINUE` paths check, `filemap_map_pages()` too) or by a guest (KVM's
    /// `get_folio` path checks): such a folio leaves the page cache by truncation, under a
    /// [`kvm_gmem::Invalidation`](crate::kvm_gmem::Invalidation) of its range.
    pub fn remove_folio(&self, folio: &LockedFolio) -> Result {
        if !folio.belongs_to(self) {
            return Err(EINVAL);
        }
        if folio.is_uptodate() || folio.is_mapped() {
            return Err(EBUSY);
        }
        // SAFETY: The folio is locked (so it stays in this page cache, as checked, and is not
        // marked up to date by anyone else).  Not being up to date, it was never mapped into a
        // guest, and it is not mapped by userspace: page tables map folios of a page cache only
        // with the folio locked (`filemap_map_pages` trylocks, faults lock), so none can be
        // added meanwhile.  We hold a reference, so the removal does not free it.
        unsafe { bindings::filemap_remove_folio(folio.as_ptr()) };
        Ok(())
    }

    /// Removes a folio that was added to this page cache and never unlocked since.
    ///
    /// # Safety
    ///
    /// `folio` must have been added to this page cache by [`AddressSpace::add_folio`], and have
    /// stayed locked since: nothing can have mapped it.
    pub(crate) unsafe fn remove_new_folio(&self, folio: &LockedFolio) {
        // SAFETY: The folio is in this page cache and locked; nothing maps it, neither userspace
        // nor a guest, which both need the folio lock to find it (the caller guarantees).  We
        // hold a reference, so the removal does not free it.
        unsafe { bindings::filemap_remove_folio(folio.as_ptr()) };
    }

    /// Takes the invalidate lock for writing; it excludes page cache population by faults,
    /// fallocate and writes (which take it for reading) while folios are removed.  The guard
    /// is what a [`kvm_gmem::Invalidation`](crate::kvm_gmem::Invalidation) requires.
    pub fn invalidate_lock(&self) -> InvalidateGuard<'_> {
        // SAFETY: The mapping is valid.
        unsafe { bindings::down_write(&raw mut (*self.as_ptr()).invalidate_lock) };
        // INVARIANT: Held for writing by the current task.
        InvalidateGuard {
            mapping: self,
            _not_send: NotThreadSafe,
        }
    }

    /// Takes the invalidate lock for reading, as a path that adds folios to the page cache
    /// does.
    pub fn invalidate_lock_shared(&self) -> InvalidateSharedGuard<'_> {
        // SAFETY: The mapping is valid.
        unsafe { bindings::down_read(&raw mut (*self.as_ptr()).invalidate_lock) };
        // INVARIANT: Held for reading by the current task.
        InvalidateSharedGuard {
            mapping: self,
            _not_send: NotThreadSafe,
        }
    }
}

/// The invalidate lock of an [`AddressSpace`] held for writing, released on drop.
///
/// It is neither [`Send`] nor [`Sync`]: the lock is an rwsem, which the task that took it must
/// release.
///
/// # Invariants
///
/// `mapping`'s invalidate lock is held for writing by the current task.
pub struct InvalidateGuard<'a> {
    mapping: &'a AddressSpace,
    _not_send: NotThreadSafe,
}

impl InvalidateGuard<'_> {
    /// The mapping whose invalidate lock this is.
    pub fn mapping(&self) -> &AddressSpace {
        self.mapping
    }

    /// Unmaps and removes the folios covering the byte range `range` of the file from the page
    /// cache; an unbounded end means the end of the file.
    ///
    /// Pages partially covered are zeroed in the covered part.  Holding the invalidate lock
    /// for writing (`self`) keeps faults from bringing pages back in the meantime.
    ///
    /// Drivers truncate through [`kvm_gmem::Invalidation::truncate`] (or release their file),
    /// so that a guest loses the pages first.
    ///
    /// [`kvm_gmem::Invalidation::truncate`]: crate::kvm_gmem::Invalidation::truncate
    pub(crate) fn truncate_range(&self, range: impl RangeBounds<u64>) {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // The last byte, inclusive; `u64::MAX` is "to the end" for the C function.
        let last = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&0) => return,
            Bound::Excluded(&e) => e - 1,
            Bound::Unbounded => u64::MAX,
        };
        if last < start {
            return;
        }
        // Beyond `loff_t`: nothing can be cached there.
        let Ok(start) = i64::try_from(start) else {
            return;
        };
        // SAFETY: The mapping is valid while the guard borrows it.  The invalidate lock, held
        // for writing (type invariant), keeps faults, writes and fallocate from adding folios to
        // the range while it is truncated, as `truncate_inode_pages_range()` requires of its
        // callers; the range is within `loff_t` (checked above).
        unsafe {
            bindings::truncate_inode_pages_range(
                self.mapping.as_ptr(),
                start,
                last as bindings::uoff_t,
            )
        };
    }
}

impl Drop for InvalidateGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold the lock for writing.
        unsafe { bindings::up_write(&raw mut (*self.mapping.as_ptr()).invalidate_lock) };
    }
}

/// The invalidate lock of an [`AddressSpace`] held for reading, released on drop.
///
/// It is neither [`Send`] nor [`Sync`], as [`InvalidateGuard`].
///
/// # Invariants
///
/// `mapping`'s invalidate lock is held for reading by the current task.
pub struct InvalidateSharedGuard<'a> {
    mapping: &'a AddressSpace,
    _not_send: NotThreadSafe,
}

impl Drop for InvalidateSharedGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we hold the lock for reading.
        unsafe { bindings::up_read(&raw mut (*self.mapping.as_ptr()).invalidate_lock) };
    }
}

/// The page cache of an inode that is being set up: nobody else can reach the inode yet.
///
/// This is where the properties of a mapping that must hold from its first folio on are set.
///
/// # Invariants
///
/// The inode that embeds the address space is not visible to any other task.
pub struct NewAddressSpace<'a>(&'a AddressSpace);

impl<'a> NewAddressSpace<'a> {
    /// Creates a `NewAddressSpace` for a mapping nobody else can reach yet.
    ///
    /// # Safety
    ///
    /// The inode that embeds `mapping` must not be visible to any other task for `'a`.
    pub unsafe fn new(mapping: &'a AddressSpace) -> Self {
        // INVARIANT: The caller guarantees it.
        Self(mapping)
    }

    /// Sets the allocation flags of the mapping's folios.
    #[inline]
    pub fn set_gfp_mask(&self, flags: Flags) {
        // SAFETY: By the type invariant nobody else reads the mask yet, so the plain store does
        // not race.
        unsafe { bindings::mapping_set_gfp_mask(self.0.as_ptr(), flags.as_raw()) };
    }

    /// Takes the mapping's folios out of the kernel's direct map while they are in the page
    /// cache, so that the kernel reaches their memory only through userspace and guest mappings:
    /// `GUEST_MEMFD_FLAG_NO_DIRECT_MAP`.
    ///
    /// A folio leaves the direct map when it is published ([`LockedFolio::mark_uptodate`], or
    /// [`UffdNewFolio::insert`](crate::mm::vm_ops::UffdNewFolio::insert) of a filled folio),
    /// with a TLB flush, and gets its entry back when it leaves the page cache.  The folio
    /// accessors of [`LockedFolio`] give it back for the duration of a copy; those of an
    /// unlocked [`Folio`] fail with `EFAULT`.  GUP refuses the mapping's VMAs, as it refuses
    /// secretmem's: `process_vm_readv()`, `/proc/pid/mem`, `O_DIRECT` and the like fail.
    #[inline]
    pub fn set_no_direct_map(&self) {
        // SAFETY: The mapping is valid; the flag is set atomically, before any folio is added.
        unsafe { bindings::mapping_set_no_direct_map(self.0.as_ptr()) };
    }

    /// Makes the mapping's folios unevictable and unmovable, as KVM's guest_memfd does.
    ///
    /// Reclaim never takes them (they live on the unevictable LRU), and neither compaction nor
    /// `move_pages()` nor NUMA balancing migrates them (`mapping_inaccessible()`): the memory
    /// stays where it was allocated until the driver removes it from the page cache.  Core mm
    /// also no longer zeroes the part of a folio that a partial truncation would leave.
    #[inline]
    pub fn set_inaccessible(&self) {
        // SAFETY: The mapping is valid; the flags are set atomically.
        unsafe { bindings::mapping_set_inaccessible(self.0.as_ptr()) };
    }
}

impl Deref for NewAddressSpace<'_> {
    type Target = AddressSpace;

    #[inline]
    fn deref(&self) -> &AddressSpace {
        self.0
    }
}
