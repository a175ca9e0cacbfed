// SPDX-License-Identifier: GPL-2.0

//! Folios: physically contiguous, naturally aligned groups of pages.
//!
//! Three types cover the states a driver that owns a page cache meets:
//!
//! - [`Folio`], a reference to a folio that somebody holds a reference count on, used through
//!   [`ARef<Folio>`];
//! - [`LockedFolio`], a folio reference together with the folio lock (`PG_locked`), which is what
//!   lets its contents and page cache state be changed;
//! - [`NewFolio`], a folio just allocated and owned by nobody else: not locked, not in any page
//!   cache, not mapped.
//!
//! # Examples
//!
//! A new folio becomes a shared reference, is locked to be filled, and is read back after it
//! has been marked up to date:
//!
//! ```
//! use kernel::mm::folio::{Folio, NewFolio};
//! use kernel::page::PAGE_SIZE;
//! use kernel::sync::aref::ARef;
//!
//! let new = NewFolio::alloc(GFP_KERNEL)?;
//! assert!(!new.is_charged());
//! new.zero();
//! let folio: ARef<Folio> = new.into();
//! assert_eq!(folio.size(), PAGE_SIZE);
//! assert!(!folio.is_uptodate());
//!
//! let locked = Folio::lock(folio);
//! locked.write_bytes(100, b"gmem")?;
//! locked.mark_uptodate()?;
//! let folio = locked.unlock();
//! assert!(folio.is_uptodate());
//!
//! let mut buf = [0xff_u8; 6];
//! folio.read_bytes(99, &mut buf)?;
//! assert_eq!(&buf, b"\0gmem\0");
//! # Ok::<(), Error>(())
//! ```
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{code::*, to_result, Result},
    iov::{IovIterDest, IovIterSource},
    mm::{mempolicy::SharedPolicy, page_cache::AddressSpace, virt::VmaRef, Mm},
    page::PAGE_SIZE,
    sync::aref::{ARef, AlwaysRefCounted},
    types::Opaque,
};
use core::{cell::Cell, marker::PhantomData, mem::ManuallyDrop, ops::Deref, ptr::NonNull};

/// A folio.
///
/// # Invariants
///
/// A `&Folio` only exists while a reference count on the underlying `struct folio` is held, so
/// the folio is not freed while it is in use.
#[repr(transparent)]
pub struct Folio(Opaque<bindings::folio>);

// SAFETY: The folio refcount is atomic and `folio_put` may be called from any thread.
unsafe impl Send for Folio {}
// SAFETY: All methods of `&Folio` are safe to call concurrently: they read flags atomically or
// read fields that do not change while a reference is held.
unsafe impl Sync for Folio {}

// SAFETY: `folio_get` and `folio_put` keep the folio alive while the count is non-zero.
unsafe impl AlwaysRefCounted for Folio {
    #[inline]
    fn inc_ref(&self) {
        // SAFETY: By the type invariant the refcount is non-zero.
        unsafe { bindings::folio_get(self.as_ptr()) };
    }

    #[inline]
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up one reference count.
        unsafe { bindings::folio_put(obj.cast().as_ptr()) };
    }
}

impl Folio {
    /// Creates a `&Folio` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a folio on which a reference count is held for the duration of `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *const bindings::folio) -> &'a Self {
        // SAFETY: `Folio` is `repr(transparent)` over the C type; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer to the `struct folio`.
    #[inline]
    pub fn as_ptr(&self) -> *mut bindings::folio {
        self.0.get()
    }

    /// Returns the size of the folio in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        // SAFETY: The folio is valid; its order does not change while a reference is held.
        unsafe { bindings::folio_size(self.as_ptr()) }
    }

    /// Returns whether the folio's contents are up to date.
    ///
    /// The flag is read with acquire semantics: contents written before
    /// [`LockedFolio::mark_uptodate`] are visible once this returns `true`.
    #[inline]
    pub fn is_uptodate(&self) -> bool {
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_test_uptodate(self.as_ptr()) }
    }

    /// Returns whether any page of the folio is mapped into a page table.
    #[inline]
    pub fn is_mapped(&self) -> bool {
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_mapped(self.as_ptr()) }
    }

    /// Returns whether the folio holds a page with a hardware memory error.
    #[inline]
    pub fn is_hwpoison(&self) -> bool {
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_test_hwpoison(self.as_ptr()) }
    }

    /// Returns whether the kernel's direct map maps the folio.
    ///
    /// It does not for a published folio of a page cache without a direct map
    /// ([`NewAddressSpace::set_no_direct_map`]).
    ///
    /// [`NewAddressSpace::set_no_direct_map`]: crate::mm::page_cache::NewAddressSpace
    #[inline]
    pub fn direct_map_present(&self) -> bool {
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_direct_map_present(self.as_ptr()) }
    }

    /// Fails with `EFAULT` unless the folio is in the direct map and stays there without its
    /// lock: a folio of a page cache that has one, or that has left a page cache and got its
    /// entry back.  Either stays so: only a holder of the lock of a folio in a page cache without
    /// a direct map takes it out.
    fn check_direct_map_usable(&self) -> Result {
        // SAFETY: The folio is valid.
        if unsafe { bindings::folio_direct_map_usable(self.as_ptr()) } {
            Ok(())
        } else {
            Err(EFAULT)
        }
    }

    /// Takes the folio lock, sleeping until it is available.
    #[inline]
    pub fn lock(this: ARef<Self>) -> LockedFolio {
        crate::task::might_sleep();
        // SAFETY: `this` holds a reference, so the folio is valid; `folio_lock` sleeps until the
        // lock is free, and the `might_sleep()` above checks that this context may sleep.
        unsafe { bindings::folio_lock(this.as_ptr()) };
        // INVARIANT: We just took the lock, and `this` holds a reference.
        LockedFolio {
            folio: ManuallyDrop::new(this),
            _not_sync: PhantomData,
        }
    }

    /// Copies up to `len` bytes at `offset` of the folio to `dst`.
    ///
    /// The folio need not be locked: like a `read()` of any file, the copy may see a
    /// concurrent write through a mapping only in part.  Returns the number of bytes copied,
    /// which is smaller than `len` when `dst` faults.  Fails with `EFAULT` for a folio that
    /// may be out of the direct map (see [`NewAddressSpace::set_no_direct_map`]): those are
    /// read locked, with [`LockedFolio::read_bytes`].
    ///
    /// [`NewAddressSpace::set_no_direct_map`]: crate::mm::page_cache::NewAddressSpace
    pub fn copy_to_iter(
        &self,
        offset: usize,
        len: usize,
        dst: &mut IovIterDest<'_>,
    ) -> Result<usize> {
        check_range(self.size(), offset, len)?;
        self.check_direct_map_usable()?;
        // SAFETY: The range is within the folio, which our reference keeps alive; `folio_page`
        // of index 0 is the head page, from which `copy_page_to_iter` handles any offset
        // within the folio.
        Ok(unsafe {
            bindings::copy_page_to_iter(
                (&raw mut (*self.as_ptr()).__bindgen_anon_1.page),
                offset,
                len,
                dst.as_raw(),
            )
        })
    }
}

impl Folio {
    /// Copies `buf.len()` bytes at `offset` of the folio into `buf`.
    ///
    /// The range must lie within one page of the folio (`EINVAL` otherwise).  Like
    /// [`Folio::copy_to_iter`], the folio need not be locked, and a concurrent write may be
    /// seen in part.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::folio::{Folio, NewFolio};
    /// use kernel::page::PAGE_SIZE;
    /// use kernel::sync::aref::ARef;
    ///
    /// let new = NewFolio::alloc(GFP_KERNEL)?;
    /// new.zero();
    /// let folio: ARef<Folio> = new.into();
    /// let mut buf = [0xff_u8; 8];
    /// folio.read_bytes(PAGE_SIZE - 8, &mut buf)?;
    /// assert_eq!(buf, [0; 8]);
    /// assert_eq!(folio.read_bytes(PAGE_SIZE - 4, &mut buf), Err(EINVAL));
    /// assert_eq!(folio.read_bytes(usize::MAX, &mut buf), Err(EINVAL));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result {
        check_page_range(self.size(), offset, buf.len())?;
        self.check_direct_map_usable()?;
        // SAFETY: The range is within one page of the folio (checked above), which stays in the
        // direct map for as long as the copy takes (checked just above).
        unsafe { self.copy_out(offset, buf) };
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` of the folio into `buf`.
    ///
    /// # Safety
    ///
    /// The range must lie within one page of the folio, and the folio must stay in the direct
    /// map until the call returns.
    unsafe fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        // SAFETY: The range is within one page of the folio, which our reference keeps alive, in
        // the direct map for the copy (both by the caller's contract); `buf` is valid for writes
        // of its length and is not the folio's memory.  The copy is C's `memcpy_from_folio()`,
        // like `copy_to_iter`: a concurrent write to the folio (by the lock owner, or through a
        // user mapping) makes it see old or new bytes, as the C memory model allows for page
        // contents, and never touches Rust-owned memory.
        unsafe {
            bindings::memcpy_from_folio(buf.as_mut_ptr().cast(), self.as_ptr(), offset, buf.len())
        };
    }
}

/// A folio reference together with the folio lock.
///
/// Dropping it unlocks the folio and drops the reference.
///
/// It is [`Send`]: the folio lock is not owned by a task, it may be released by another one.  It
/// is not [`Sync`]: its methods change the folio's contents through `&self`, which only the lock
/// owner may do.
///
/// # Invariants
///
/// The folio lock (`PG_locked`) of the folio is held, and it is owned by this object.
pub struct LockedFolio {
    folio: ManuallyDrop<ARef<Folio>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl LockedFolio {
    /// Takes ownership of a locked folio and of one reference count on it.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a folio that is locked, and the caller must own both that lock and one
    /// reference count, which are transferred to the returned object.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<bindings::folio>) -> Self {
        // SAFETY: The caller transfers one reference count.
        let folio = unsafe { ARef::from_raw(ptr.cast()) };
        // INVARIANT: The caller transfers ownership of the lock.
        Self {
            folio: ManuallyDrop::new(folio),
            _not_sync: PhantomData,
        }
    }

    /// Gives up ownership of the lock and of the reference, returning the raw pointer.
    ///
    /// The caller becomes responsible for unlocking the folio and dropping the reference.
    #[inline]
    pub fn into_raw(self) -> NonNull<bindings::folio> {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again.
        let folio = unsafe { ManuallyDrop::take(&mut me.folio) };
        ARef::into_raw(folio).cast()
    }

    /// Unlocks the folio, keeping the reference.
    #[inline]
    pub fn unlock(self) -> ARef<Folio> {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: By the type invariant we own the lock.
        unsafe { bindings::folio_unlock(me.as_ptr()) };
        // SAFETY: `me` is never used or dropped again.
        unsafe { ManuallyDrop::take(&mut me.folio) }
    }

    /// Returns the index of the folio in its file, in pages.
    #[inline]
    pub fn index(&self) -> usize {
        // SAFETY: The index of a folio does not change while it is locked.
        unsafe {
            (*self.as_ptr())
                .__bindgen_anon_1
                .__bindgen_anon_1
                .__bindgen_anon_2
                .index
        }
    }

    /// Returns whether the folio is still in the page cache of `mapping`.
    ///
    /// A folio found in the page cache may be truncated before its lock is taken; callers check
    /// this after locking.
    #[inline]
    pub fn belongs_to(&self, mapping: &AddressSpace) -> bool {
        // SAFETY: `mapping` is stable while the folio is locked.
        let m = unsafe { (*self.as_ptr()).__bindgen_anon_1.__bindgen_anon_1.mapping };
        core::ptr::eq(m, mapping.as_ptr())
    }

    /// Returns whether the folio is in the page cache of `mapping` and holds the page at `index`.
    #[inline]
    pub fn holds(&self, mapping: &AddressSpace, index: usize) -> bool {
        let first = self.index();
        // `size()` is a whole number of pages.
        self.belongs_to(mapping) && (first..first + self.size() / PAGE_SIZE).contains(&index)
    }

    /// Marks the folio dirty: its contents exist nowhere else.
    ///
    /// A clean folio of a file is one that the kernel may drop and read back later; a driver
    /// whose page cache has no backing store keeps its folios dirty (as shmem does) so that
    /// nothing that frees clean page cache (`drop_caches`, `POSIX_FADV_DONTNEED`, memory-failure
    /// handling) takes them.
    #[inline]
    pub fn mark_dirty(&self) {
        // SAFETY: The folio is locked by us, which keeps it in its mapping while
        // `folio_mark_dirty` calls the mapping's `dirty_folio` operation.
        unsafe { bindings::folio_mark_dirty(self.as_ptr()) };
    }

    /// Marks the folio's contents up to date: publishes it.
    ///
    /// The stores that filled the folio are made visible before the flag, see
    /// [`Folio::is_uptodate`].  A folio of a page cache without a direct map leaves the direct
    /// map first (with a TLB flush); if that fails (`ENOMEM`: a large page of the direct map
    /// could not be split), it stays as it was and not up to date.
    pub fn mark_uptodate(&self) -> Result {
        if self.in_cache_without_direct_map() && self.direct_map_present() {
            // SAFETY: The folio is locked by us and in the page cache of a mapping without a
            // direct map: nothing but holders of its lock accesses it through the direct map,
            // and they check first (`with_direct_map`).
            to_result(unsafe { bindings::folio_zap_direct_map(self.as_ptr()) })?;
        }
        // SAFETY: The folio is locked by us, as `folio_mark_uptodate` requires for a folio that
        // others may see.
        unsafe { bindings::folio_mark_uptodate(self.as_ptr()) };
        Ok(())
    }

    /// Returns whether the folio is in the page cache of a mapping without a direct map.
    fn in_cache_without_direct_map(&self) -> bool {
        // SAFETY: The mapping of a folio is stable while it is locked, and alive while the folio
        // is in its page cache.
        unsafe {
            let m = (*self.as_ptr()).__bindgen_anon_1.__bindgen_anon_1.mapping;
            !m.is_null() && bindings::mapping_no_direct_map(m)
        }
    }

    /// Runs `f`, which accesses the folio through the direct map, with the folio in it.
    ///
    /// A folio out of the direct map gets its entry back for the duration of `f`, and leaves
    /// again after (with a TLB flush).  Fails with `EIO` for a folio with a hardware memory
    /// error, which must not be mapped again.
    fn with_direct_map<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        // The common case, without walking the kernel's page tables: a folio that is not in the
        // page cache of a mapping without a direct map is in it.  Only such a page cache takes
        // folios out, and gives them back (`free_folio`) before the folio lock that removes one
        // is released; a poisoned folio may have lost its entry (and never gets it back).
        if !self.is_hwpoison() && !self.in_cache_without_direct_map() {
            return Ok(f());
        }
        if self.direct_map_present() {
            // It stays in the direct map while we hold the lock: only a holder of the lock
            // takes a folio of a page cache out of it.
            return Ok(f());
        }
        if self.is_hwpoison() {
            return Err(EIO);
        }
        // SAFETY: Out of the direct map, the folio is in the page cache of a mapping without
        // one, where the lock keeps it; nothing but holders of its lock accesses it through the
        // direct map.
        to_result(unsafe { bindings::folio_restore_direct_map(self.as_ptr()) })?;
        let r = f();
        // SAFETY: As above.  Taking the entry away again cannot need a split: the first removal
        // split the large page around it.
        if let Err(e) = to_result(unsafe { bindings::folio_zap_direct_map(self.as_ptr()) }) {
            crate::pr_warn!("folio: could not leave the direct map again: {:?}\n", e);
        }
        Ok(r)
    }

    /// Fills `len` bytes at `offset` with zeros.
    pub fn zero_range(&self, offset: usize, len: usize) -> Result {
        check_range(self.size(), offset, len)?;
        // SAFETY: The range is within the folio, which we hold locked, in the direct map for
        // the call.
        self.with_direct_map(|| unsafe { bindings::folio_zero_range(self.as_ptr(), offset, len) })
    }

    /// Copies `buf.len()` bytes at `offset` of the folio into `buf`, as [`Folio::read_bytes`],
    /// also for a folio out of the direct map.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result {
        check_page_range(self.size(), offset, buf.len())?;
        // SAFETY: The range is within one page of the folio (checked above), which we hold
        // locked, in the direct map for the call.
        self.with_direct_map(|| unsafe { self.copy_out(offset, buf) })
    }

    /// Copies `data` into the folio at `offset`.
    ///
    /// The range must lie within one page of the folio (`EINVAL` otherwise).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::folio::{Folio, NewFolio};
    /// use kernel::page::PAGE_SIZE;
    ///
    /// let locked = Folio::lock(NewFolio::alloc(GFP_KERNEL)?.into());
    /// locked.write_bytes(PAGE_SIZE - 4, b"last")?;
    /// assert_eq!(locked.write_bytes(PAGE_SIZE - 2, b"last"), Err(EINVAL));
    /// locked.zero_range(PAGE_SIZE - 3, 2)?;
    /// assert_eq!(locked.zero_range(PAGE_SIZE, 1), Err(EINVAL));
    /// let mut buf = [0_u8; 4];
    /// locked.read_bytes(PAGE_SIZE - 4, &mut buf)?;
    /// assert_eq!(&buf, b"l\0\0t");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result {
        check_page_range(self.size(), offset, data.len())?;
        // SAFETY: The range is within one page of the folio, which we hold locked, so no other
        // kernel writer changes it, in the direct map for the call; `data` is valid for reads of
        // its length.  A user mapping may write concurrently: the copy is C's
        // `memcpy_to_folio()`, as for `read_bytes`.
        self.with_direct_map(|| unsafe {
            bindings::memcpy_to_folio(self.as_ptr(), offset, data.as_ptr().cast(), data.len())
        })
    }

    /// Copies up to `len` bytes from `src` into the folio at `offset`, taking no page fault.
    ///
    /// This is how a `write()` fills a locked folio from user memory: page faults are disabled
    /// during the copy, since a fault on the source could need this very folio lock (the source
    /// may be a mapping of the same file).  The copy stops at the first source page that is not
    /// present; it returns the number of bytes copied, which may be 0, and advances `src` by
    /// that much.  Make the source present with [`fault_in_readable`] before taking the lock,
    /// and fault it in again and retry when fewer bytes were copied than asked.
    ///
    /// # Examples
    ///
    /// From a kernel buffer (a `write()` passes a user one):
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use kernel::{bindings, iov::IovIterSource, page::PAGE_SIZE};
    /// use kernel::mm::folio::{fault_in_readable, Folio, NewFolio};
    ///
    /// let locked = Folio::lock(NewFolio::alloc(GFP_KERNEL)?.into());
    /// let mut data = *b"guest memory";
    /// let kvec = bindings::kvec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    /// let mut raw = MaybeUninit::<bindings::iov_iter>::uninit();
    /// // SAFETY: `kvec` describes `data`; both outlive the iterator.
    /// unsafe { bindings::iov_iter_kvec(raw.as_mut_ptr(), bindings::ITER_SOURCE, &kvec, 1, 12) };
    /// // SAFETY: Initialised just above, as a source, and only used through `src`.
    /// let src = unsafe { IovIterSource::from_raw(raw.as_mut_ptr()) };
    ///
    /// assert_eq!(fault_in_readable(src, 12), 0);
    /// assert_eq!(locked.copy_from_iter_atomic(PAGE_SIZE - 4, 8, src), Err(EINVAL));
    /// assert_eq!(locked.copy_from_iter_atomic(100, 5, src)?, 5);
    /// assert_eq!(locked.copy_from_iter_atomic(105, 7, src)?, 7);
    /// assert!(src.is_empty());
    /// let mut buf = [0_u8; 12];
    /// locked.read_bytes(100, &mut buf)?;
    /// assert_eq!(&buf, b"guest memory");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn copy_from_iter_atomic(
        &self,
        offset: usize,
        len: usize,
        src: &mut IovIterSource<'_>,
    ) -> Result<usize> {
        check_range(self.size(), offset, len)?;
        // SAFETY: The range is within the folio, which we hold locked, in the direct map for the
        // call; `src` is a source iterator (`data_source` set), and
        // `copy_folio_from_iter_atomic` maps the folio one page at a time and disables page
        // faults around each copy.
        self.with_direct_map(|| unsafe {
            bindings::copy_folio_from_iter_atomic(self.as_ptr(), offset, len, src.as_raw())
        })
    }
}

/// Faults in the next `len` bytes of `src` for reading, as far as they can be.
///
/// Returns how many of them could not be faulted in: 0 when all of them are present, `len` when
/// not even the first page is.  To be called without locks that a fault on the source could
/// need, before [`LockedFolio::copy_from_iter_atomic`].
pub fn fault_in_readable(src: &mut IovIterSource<'_>, len: usize) -> usize {
    // SAFETY: `src.as_raw()` is a valid iterator for the call, which `fault_in_iov_iter_readable`
    // only reads (it faults the user pages in, and does not advance the iterator).
    unsafe { bindings::fault_in_iov_iter_readable(src.as_raw(), len) }
}

impl Deref for LockedFolio {
    type Target = Folio;

    #[inline]
    fn deref(&self) -> &Folio {
        &self.folio
    }
}

impl Drop for LockedFolio {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own the lock.
        unsafe { bindings::folio_unlock(self.as_ptr()) };
        // SAFETY: Not used again.
        unsafe { ManuallyDrop::drop(&mut self.folio) };
    }
}

/// A folio that was just allocated: exclusively owned, unlocked, in no page cache, unmapped.
///
/// # Invariants
///
/// The pointer refers to an order-0 folio on which this object owns the only reference count;
/// the folio is not locked, not in any page cache and not mapped.
pub struct NewFolio(NonNull<bindings::folio>);

// SAFETY: Exclusively owned memory may be sent to another thread.
unsafe impl Send for NewFolio {}

impl NewFolio {
    /// Allocates an order-0 folio, following the current task's NUMA memory policy.
    pub fn alloc(flags: Flags) -> Result<Self> {
        // SAFETY: `folio_alloc` has no memory-safety precondition: any flags are valid (a
        // sleeping allocation in atomic context is a bug `might_sleep` reports, as for
        // `KBox::new`).
        let folio = unsafe { bindings::folio_alloc(flags.as_raw(), 0) };
        // INVARIANT: A successful allocation returns a folio owned only by us.
        NonNull::new(folio).map(Self).ok_or(ENOMEM)
    }

    /// Allocates an order-0 folio for the page at `index` of a file whose NUMA policies are
    /// `policy`: by the policy of that page if one was set, else by the current task's.
    ///
    /// This is the allocation of a file's page that no VMA asks for (`write()`, `fallocate()`,
    /// KVM's stage-2 faults), as `filemap_alloc_folio()` makes it for shmem and KVM's
    /// guest_memfd.
    pub fn alloc_shared(flags: Flags, policy: &SharedPolicy, index: usize) -> Result<Self> {
        let pol = policy.lookup(index);
        let raw = pol.as_ref().map_or(core::ptr::null_mut(), |p| p.as_ptr());
        // SAFETY: `raw` is NULL or a policy we hold a reference on until after the call.
        let folio = unsafe { bindings::filemap_alloc_folio(flags.as_raw(), 0, raw) };
        // INVARIANT: A successful allocation returns a folio owned only by us.
        NonNull::new(folio).map(Self).ok_or(ENOMEM)
    }

    /// Allocates an order-0 folio for `addr` in `vma`, following the VMA's NUMA memory policy.
    pub fn alloc_vma(flags: Flags, vma: &VmaRef, addr: usize) -> Result<Self> {
        if addr < vma.start() || addr >= vma.end() {
            return Err(EINVAL);
        }
        // SAFETY: `vma` is valid and its lock is held (by the type invariant of `VmaRef`).
        let folio = unsafe { bindings::vma_alloc_folio(flags.as_raw(), 0, vma.as_ptr(), addr) };
        // INVARIANT: A successful allocation returns a folio owned only by us.
        NonNull::new(folio).map(Self).ok_or(ENOMEM)
    }

    /// Charges the folio to the memory cgroup of `mm`.
    ///
    /// [`AddressSpace::add_folio`] charges an uncharged folio to the current task's memory
    /// cgroup; a driver charges it here instead when the memory is used by another task, as
    /// userfaultfd's `UFFDIO_COPY` does for the faulting task.  Fails with `EINVAL` if the folio
    /// is charged already.
    ///
    /// [`AddressSpace::add_folio`]: crate::mm::page_cache::AddressSpace::add_folio
    pub fn charge(&self, mm: &Mm, flags: Flags) -> Result {
        if self.is_charged() {
            return Err(EINVAL);
        }
        // SAFETY: The folio is exclusively ours and not charged yet; `mm` is valid.
        crate::error::to_result(unsafe {
            bindings::mem_cgroup_charge(self.0.as_ptr(), mm.as_raw(), flags.as_raw())
        })
    }

    /// Returns whether the folio is charged to a memory cgroup.
    #[inline]
    pub fn is_charged(&self) -> bool {
        // SAFETY: The folio is exclusively ours.
        unsafe { bindings::folio_memcg_charged(self.0.as_ptr()) }
    }

    /// Takes the folio out of the direct map (with a TLB flush), before it is published in a
    /// page cache without one.
    pub(crate) fn zap_direct_map(&self) -> Result {
        // SAFETY: The folio is exclusively ours: nothing else accesses it.
        to_result(unsafe { bindings::folio_zap_direct_map(self.0.as_ptr()) })
    }

    /// Gives the folio its direct map entry back, after [`NewFolio::zap_direct_map`].
    pub(crate) fn restore_direct_map(&self) {
        // SAFETY: The folio is exclusively ours.  Giving back an entry that the removal split out
        // of a large page needs no allocation, so it does not fail.
        let _ = unsafe { bindings::folio_restore_direct_map(self.0.as_ptr()) };
    }

    /// Fills the whole folio with zeros.
    pub fn zero(&self) {
        // SAFETY: The folio is exclusively ours.
        unsafe {
            bindings::folio_zero_range(self.0.as_ptr(), 0, bindings::folio_size(self.0.as_ptr()))
        };
    }

    /// Returns the raw pointer to the `struct folio`.
    #[inline]
    pub fn as_ptr(&self) -> *mut bindings::folio {
        self.0.as_ptr()
    }

    /// Gives up the reference, returning the raw pointer; the caller owns the reference.
    #[inline]
    pub fn into_raw(self) -> NonNull<bindings::folio> {
        ManuallyDrop::new(self).0
    }

    /// Takes ownership of a folio.
    ///
    /// # Safety
    ///
    /// `ptr` must satisfy the type invariants, and the caller transfers its reference.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<bindings::folio>) -> Self {
        Self(ptr)
    }
}

impl From<NewFolio> for ARef<Folio> {
    /// Turns the new folio into a shared reference, for example to lock it with [`Folio::lock`]
    /// and fill it before it is published.
    #[inline]
    fn from(folio: NewFolio) -> Self {
        // SAFETY: `into_raw` gives us the only reference count on a valid folio, which
        // `ARef` takes over.
        unsafe { ARef::from_raw(folio.into_raw().cast()) }
    }
}

impl Drop for NewFolio {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: We own the only reference.
        unsafe { bindings::folio_put(self.0.as_ptr()) };
    }
}

fn check_range(size: usize, offset: usize, len: usize) -> Result {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(EINVAL),
    }
}

/// As [`check_range`], and the range must not cross a page boundary.
fn check_page_range(size: usize, offset: usize, len: usize) -> Result {
    check_range(size, offset, len)?;
    if offset % PAGE_SIZE + len > PAGE_SIZE {
        return Err(EINVAL);
    }
    Ok(())
}

/// A folio that has just left the page cache of a file (`free_folio`).
///
/// This is what an address space's `free_folio` operation is handed: the page cache is about to
/// drop its references.  Other references may remain (whoever removed the folio, a reader that
/// found it earlier), so this is a notice that the folio left the file, not ownership of it.
/// It cannot be turned into an [`ARef`] or have its contents touched.
///
/// # Invariants
///
/// A `&FreeingFolio` only exists during a `free_folio` call for that folio, which holds the page
/// cache's references on it until it returns: the folio is valid for the call.
#[repr(transparent)]
pub struct FreeingFolio(Opaque<bindings::folio>);

impl FreeingFolio {
    /// Creates a `&FreeingFolio` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be the folio of a `free_folio` call in progress, for the duration of `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::folio) -> &'a Self {
        // SAFETY: `FreeingFolio` is `repr(transparent)` over the C type; the caller guarantees
        // validity.
        unsafe { &*ptr.cast() }
    }

    /// Returns the size of the folio in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        // SAFETY: By the type invariant the folio is valid until `free_folio` returns, and its
        // size does not change while it is.
        unsafe { bindings::folio_size(self.0.get()) }
    }

    /// Gives the folio its direct map entry back if it left the direct map, before it is
    /// freed.  A folio with a hardware memory error stays out: it is never used again.
    pub(crate) fn restore_direct_map(&self) {
        let folio = self.0.get();
        // SAFETY: The folio is valid until `free_folio` returns.
        let out = unsafe {
            !bindings::folio_direct_map_present(folio) && !bindings::folio_test_hwpoison(folio)
        };
        if out {
            // SAFETY: The folio has left the page cache, so nothing takes it out of the direct
            // map again, and nothing accesses it through it while it is out.
            let ret = unsafe { bindings::folio_restore_direct_map(folio) };
            if let Err(e) = to_result(ret) {
                crate::pr_err!("folio: freed out of the direct map: {:?}\n", e);
            }
        }
    }
}
