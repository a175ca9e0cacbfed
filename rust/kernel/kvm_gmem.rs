// SPDX-License-Identifier: GPL-2.0

//! Serving KVM's guest_memfd files from a driver.
//!
//! A driver whose anonymous files ([`crate::fs::anon_file`]) implement guest_memfd registers a
//! [`Registration`] of its [`Backend`]; while it lives, `KVM_CREATE_GUEST_MEMFD` on any VM
//! creates the file with [`Backend::create`].  KVM keeps what concerns the VM (the file pins
//! the VM; memslot bindings; stage-2 invalidation) and finds the file's pages with
//! [`Backend::get_folio`].  KVM stays informed:
//!
//! - a file is detached from its VM when it is released, before the driver's
//!   [`AnonFileOperations::release`] runs;
//! - folios that a guest may map leave the page cache (a hole punch) only through an
//!   [`Invalidation`] of their range, which has KVM zap the guest's mappings of them first.
//!
//! C header: [`include/linux/kvm_gmem_backend.h`](srctree/include/linux/kvm_gmem_backend.h)

use crate::{
    bindings,
    error::{code::*, Result},
    fs::{
        anon_file::{AnonFileOperations, AnonInode, PseudoFs, ReleasingFile},
        file::File,
    },
    mm::{
        folio::LockedFolio,
        page_cache::{AddressSpace, InvalidateGuard},
    },
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
    ThisModule,
};
use core::{marker::PhantomData, ops::Range};

/// A VM, lent by KVM for the duration of a call.
///
/// # Invariants
///
/// The VM is valid for the lifetime of the reference.
#[repr(transparent)]
pub struct Kvm(Opaque<bindings::kvm>);

impl Kvm {
    /// The raw VM, for comparisons.
    pub fn as_ptr(&self) -> *mut bindings::kvm {
        self.0.get()
    }
}

/// The guest_memfd operations a driver gives KVM.
///
/// The files are the driver's [`AnonFileOperations`] files; these are the operations KVM adds.
pub trait Backend: AnonFileOperations {
    /// The `GUEST_MEMFD_FLAG_*` the backend implements.  KVM accepts, and reports in
    /// `KVM_CAP_GUEST_MEMFD_FLAGS`, the flags both it (for the VM) and the backend support.
    const FLAGS: u64;

    /// The pseudo file system of the files [`Backend::create`] makes.
    fn fs() -> &'static PseudoFs<Self>;

    /// Creates the file of `KVM_CREATE_GUEST_MEMFD` on `kvm`: `size` bytes, a positive multiple
    /// of the page size, with `flags`, which KVM has checked against [`Backend::FLAGS`].  The
    /// file must be one of [`Backend::fs`], made with [`PseudoFs::new_file`]; KVM refuses any
    /// other.
    fn create(kvm: &Kvm, size: u64, flags: u64) -> Result<ARef<File>>;

    /// Returns the folio at `index` for a stage-2 fault: locked, up to date (a hole filled with
    /// zeros).  A folio with a hardware memory error is returned as it is: KVM fails the fault
    /// with `EHWPOISON`.  Called for stage-2 faults without the invalidate lock, and with it
    /// held for `kvm_gmem_populate()`: it must not take that lock.
    fn get_folio(data: &Self::Data, mapping: &AddressSpace, index: usize) -> Result<LockedFolio>;
}

/// Detaches a file that KVM created from its VM: what KVM's own `release` does.  The memslots
/// bound to the file lose it (their stage-2 mappings are zapped), and the file's reference on
/// the VM is dropped.  Does nothing for a file KVM did not create.
///
/// The `release` of every [`PseudoFs`] file calls it before the driver's.
pub(crate) fn release(file: &ReleasingFile<'_>) {
    // SAFETY: The file is valid and being released (type invariant of `ReleasingFile`): no one
    // can reach it through a memslot any more but KVM itself, which this detaches under its own
    // locks.  The call does nothing for a file whose `private_data` KVM did not set, and clears
    // it, so a second call does nothing either.
    unsafe { bindings::kvm_gmem_backend_release(file.as_ptr()) };
}

/// The removal of the folios of a range of pages of a file from its page cache.
///
/// For a file KVM created, KVM has zapped the guest's mappings of the range while it lives and
/// keeps stage-2 faults on it from completing (`kvm_gmem_backend_invalidate_begin`); dropping
/// it ends that (`kvm_gmem_backend_invalidate_end`).  For any other file there is no guest to
/// tell.  Either way it is what [`Invalidation::truncate`] needs.
///
/// It borrows the exclusive invalidate lock of the file's mapping, which keeps the file's
/// memslot bindings stable from begin to end, as KVM requires.
///
/// # Invariants
///
/// `kvm_gmem_backend_invalidate_begin(file, start, end)` was called with `guard`, the
/// invalidate lock of the file's mapping held for writing, which stays held while `self` lives.
pub struct Invalidation<'a> {
    file: &'a File,
    guard: &'a InvalidateGuard<'a>,
    start: usize,
    end: usize,
}

impl<'a> Invalidation<'a> {
    /// Begins the invalidation of the pages `pages` of `file`, under `guard`, the invalidate
    /// lock of `file`'s mapping.  Fails with `EINVAL` if `guard` locks another mapping, or the
    /// range is empty.
    pub fn begin(
        file: &'a File,
        guard: &'a InvalidateGuard<'a>,
        pages: Range<usize>,
    ) -> Result<Self> {
        // SAFETY: `file` is valid, and so is its `f_mapping`.
        let mapping = unsafe { (*file.as_ptr()).f_mapping };
        if !core::ptr::eq(guard.mapping().as_ptr(), mapping) || pages.start >= pages.end {
            return Err(EINVAL);
        }
        // SAFETY: `file` is valid, and the invalidate lock of its mapping is held for writing by
        // the current task (`guard`) for as long as `self` borrows it.
        unsafe {
            bindings::kvm_gmem_backend_invalidate_begin(file.as_ptr(), pages.start, pages.end)
        };
        // INVARIANT: Begun with the lock held, which `guard` keeps held while we borrow it.
        Ok(Self {
            file,
            guard,
            start: pages.start,
            end: pages.end,
        })
    }

    /// Unmaps the pages of the range from every userspace mapping and removes their folios
    /// from the page cache, which frees them once nothing else holds them.
    pub fn truncate(&self) {
        let page = crate::page::PAGE_SIZE as u64;
        let Some(start) = (self.start as u64).checked_mul(page) else {
            return;
        };
        match (self.end as u64).checked_mul(page) {
            Some(end) => self.guard.truncate_range(start..end),
            None => self.guard.truncate_range(start..),
        }
    }
}

impl Drop for Invalidation<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the invalidation began, and the lock is still held.
        unsafe {
            bindings::kvm_gmem_backend_invalidate_end(self.file.as_ptr(), self.start, self.end)
        };
    }
}

/// A registered [`Backend`]: `KVM_CREATE_GUEST_MEMFD` creates files with it while this lives.
///
/// # Invariants
///
/// `backend` is registered with `kvm_gmem_register_backend` until `self` is dropped, and its
/// operations are the trampolines of `T`, its `fops` those of `T::fs()`.
#[pin_data(PinnedDrop)]
pub struct Registration<T: Backend> {
    #[pin]
    backend: Opaque<bindings::kvm_gmem_backend>,
    _p: PhantomData<T>,
}

// SAFETY: The registration is only read by KVM, through thread-safe calls.
unsafe impl<T: Backend> Send for Registration<T> {}
// SAFETY: As above; `&Registration` allows nothing.
unsafe impl<T: Backend> Sync for Registration<T> {}

impl<T: Backend> Registration<T> {
    /// Registers `T` for `module`.  Fails with `EBUSY` if another backend is registered.
    pub fn register(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            backend <- Opaque::try_ffi_init(move |slot: *mut bindings::kvm_gmem_backend| {
                // SAFETY: `slot` is valid for writing; the value written is complete.
                unsafe {
                    slot.write(bindings::kvm_gmem_backend {
                        owner: module.as_ptr(),
                        fops: T::fs().fops(),
                        flags: T::FLAGS,
                        create: Some(Self::create),
                        get_folio: Some(Self::get_folio),
                    })
                };
                // SAFETY: `slot` is pinned for as long as the registration lives, and
                // `PinnedDrop` unregisters it before it is freed.
                crate::error::to_result(unsafe { bindings::kvm_gmem_register_backend(slot) })
            }),
            _p: PhantomData,
        })
    }

    /// # Safety
    ///
    /// Called by KVM as `create` of the registered backend, with a valid VM.
    unsafe extern "C" fn create(
        kvm: *mut bindings::kvm,
        size: bindings::loff_t,
        flags: u64,
    ) -> *mut bindings::file {
        // SAFETY: KVM passes a valid VM, which it holds for the call.
        let kvm = unsafe { &*kvm.cast::<Kvm>() };
        let Ok(size) = u64::try_from(size) else {
            return EINVAL.to_ptr();
        };
        match T::create(kvm, size, flags) {
            Ok(file) => ARef::into_raw(file).as_ptr().cast(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by KVM as `get_folio` of the registered backend, for a file that `create` made
    /// (KVM checks the file operations), which KVM holds a reference to.
    unsafe extern "C" fn get_folio(
        file: *mut bindings::file,
        index: usize,
    ) -> *mut bindings::folio {
        // SAFETY: The file is one of `T::fs()`'s, held open by KVM, so its inode is alive and an
        // `AnonInode<T::Data>`.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        // SAFETY: The file is valid, and so is its mapping.
        let mapping = unsafe { AddressSpace::from_raw((*file).f_mapping) };
        match T::get_folio(data, mapping, index) {
            // KVM maps the folio's page into the guest and drops its reference, relying on
            // the page cache's reference and on invalidation before removal: only a folio of
            // this file's page cache at `index` may be handed over.
            // Only an up-to-date folio: what is not up to date may leave the page cache without
            // an invalidation (`AddressSpace::remove_folio`).  KVM refuses to map a poisoned one.
            Ok(folio)
                if folio.holds(mapping, index) && (folio.is_uptodate() || folio.is_hwpoison()) =>
            {
                folio.into_raw().as_ptr()
            }
            Ok(_) => EIO.to_ptr(),
            Err(e) => e.to_ptr(),
        }
    }
}

#[pinned_drop]
impl<T: Backend> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the backend is registered.
        unsafe { bindings::kvm_gmem_unregister_backend(self.backend.get()) };
    }
}
