// SPDX-License-Identifier: GPL-2.0

//! Files on anonymous inodes of a private pseudo file system.
//!
//! Like KVM's guest_memfd, a driver may give every file it creates an inode of its own, so
//! that the page cache, the size and the memory mappings belong to that one file.  The inodes
//! live on a pseudo file system that the driver mounts internally ([`PseudoFs`]); the files
//! are created with [`PseudoFs::create_file`] and installed as new file descriptors, usually
//! from the `ioctl()` of a misc device (see [`crate::miscdevice`]).  Their behaviour is given
//! by an [`AnonFileOperations`] implementation.  Each file's data lives in its inode
//! ([`AnonInode`], allocated by the pseudo file system as KVM's guest_memfd allocates its
//! `gmem_inode`), and is what every file operation, the fault handler and the userfaultfd
//! operations (see [`crate::mm::vm_ops`]) receive.  The pseudo file system is a `static` of the
//! driver, and every file holds a reference on the driver's module, so no file can outlive it.
//!
//! The size of such a file is set at creation and cannot be changed: `ftruncate()` and other
//! attribute changes fail with `EINVAL`.
//!
//! C headers: [`include/linux/fs.h`](srctree/include/linux/fs.h),
//! [`include/linux/pseudo_fs.h`](srctree/include/linux/pseudo_fs.h)

use crate::{
    bindings,
    error::{code::*, from_err_ptr, Error, Result, VTABLE_DEFAULT_ERROR},
    fs::file::{File, FileDescriptorReservation, LocalFile},
    iov::{IovIterDest, IovIterSource},
    mm::{
        folio::FreeingFolio,
        page_cache::{AddressSpace, NewAddressSpace},
        virt::VmaNew,
        vm_ops::UffdOperations,
    },
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
    ThisModule,
};
use core::{cell::UnsafeCell, marker::PhantomData, mem::MaybeUninit, ptr::NonNull};

/// The inode of a file of a [`PseudoFs`]: the VFS inode and the file's data `D` in one
/// object, as KVM's guest_memfd keeps its `gmem_inode`.  The pseudo file system allocates it
/// (`alloc_inode`), and the data lives exactly as long as the inode: every file, VMA and
/// userfaultfd operation finds it from the inode, the one place it is kept.
///
/// # Invariants
///
/// `data` is initialised exactly while `has_data` is set: from [`PseudoFs::create_file`],
/// before the inode is reachable by anyone else, until `destroy_inode`.  Neither is written in
/// between.  The object was allocated by `alloc_inode` as a `KBox<MaybeUninit<Self>>`.
#[repr(C)]
pub struct AnonInode<D> {
    data: UnsafeCell<MaybeUninit<D>>,
    has_data: UnsafeCell<bool>,
    vfs_inode: Opaque<bindings::inode>,
}

impl<D: Send + Sync + 'static> AnonInode<D> {
    /// The `AnonInode` of `inode`.
    ///
    /// # Safety
    ///
    /// `inode` must have been allocated by `alloc_inode` of a [`PseudoFs`] whose files' data is
    /// `D`.
    unsafe fn of(inode: *const bindings::inode) -> *mut Self {
        // SAFETY: By the safety requirement `inode` is the `vfs_inode` field of a `Self`.
        unsafe {
            crate::container_of!(inode.cast::<Opaque<bindings::inode>>(), Self, vfs_inode)
                .cast_mut()
        }
    }

    /// The data of the file whose inode is `inode`.
    ///
    /// # Safety
    ///
    /// `inode` must be the inode of a file made by [`PseudoFs::create_file`] whose data is `D`,
    /// and stay alive for `'a` (for example, because the caller holds the file, or a VMA that
    /// maps it).
    pub(crate) unsafe fn data<'a>(inode: *const bindings::inode) -> &'a D {
        // SAFETY: `create_file` initialised the data before the inode was reachable, and it is
        // dropped only by `destroy_inode`, after the last reference to the inode (type
        // invariant); nothing writes it in between, so sharing it is sound.
        unsafe { (*(*Self::of(inode)).data.get()).assume_init_ref() }
    }

    /// Initialises the data of the new inode `inode` with `init`, in place: the data is pinned
    /// there for the life of the inode.
    ///
    /// # Safety
    ///
    /// `inode` must have been allocated by `alloc_inode` of a [`PseudoFs`] whose files' data is
    /// `D`, hold no data yet, and be reachable by no one else.
    unsafe fn init_data<E: Into<Error>>(
        inode: *mut bindings::inode,
        init: impl PinInit<D, E>,
    ) -> Result {
        // SAFETY: By the safety requirements we are the only user of the object.
        unsafe {
            let this = Self::of(inode);
            // The slot is valid for writes and is freed only by `free_inode`, after
            // `destroy_inode` dropped the data: it is pinned.  On failure nothing was
            // initialised and `has_data` stays clear.
            init.__pinned_init((*(*this).data.get()).as_mut_ptr())
                .map_err(Into::into)?;
            // INVARIANT: `data` was just initialised.
            *(*this).has_data.get() = true;
        }
        Ok(())
    }

    /// # Safety
    ///
    /// Called by the VFS as `alloc_inode` of a [`PseudoFs`] whose files' data is `D`.
    unsafe extern "C" fn alloc_inode(_sb: *mut bindings::super_block) -> *mut bindings::inode {
        // Charged to the memory cgroup of the task that creates the file, as KVM's
        // `kvm_gmem_inode_cache` (`SLAB_ACCOUNT`).
        let Ok(new) = KBox::<Self>::new_uninit(GFP_KERNEL_ACCOUNT) else {
            return core::ptr::null_mut();
        };
        let this = KBox::into_raw(new).cast::<Self>();
        // SAFETY: `this` is a new allocation of a `Self`, ours alone.
        unsafe {
            // INVARIANT: No data yet.
            core::ptr::addr_of_mut!((*this).has_data).write(UnsafeCell::new(false));
            let inode = Opaque::cast_into(core::ptr::addr_of!((*this).vfs_inode));
            // What the constructor of an inode cache does; `alloc_inode()` initialises the rest.
            bindings::inode_init_once(inode);
            inode
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `destroy_inode` of such an inode, after its last reference.
    unsafe extern "C" fn destroy_inode(inode: *mut bindings::inode) {
        // SAFETY: The inode was allocated by `alloc_inode`, and is ours alone now.
        unsafe {
            let this = Self::of(inode);
            if *(*this).has_data.get() {
                *(*this).has_data.get() = false;
                // INVARIANT: The flag is clear, the data dropped.
                (*(*this).data.get()).assume_init_drop();
            }
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `free_inode` of such an inode, an RCU grace period after
    /// `destroy_inode`.
    unsafe extern "C" fn free_inode(inode: *mut bindings::inode) {
        // SAFETY: The object was allocated by `alloc_inode` as a `KBox<MaybeUninit<Self>>`; its
        // data was dropped by `destroy_inode`, and nothing refers to it any more.
        drop(unsafe { KBox::from_raw(Self::of(inode).cast::<MaybeUninit<Self>>()) });
    }
}

/// A pseudo file system, mounted internally, whose inodes back the anonymous files of one
/// driver, all with the operations `T`.
///
/// It is made with the `const fn` [`PseudoFs::new`] in a `static` of the driver, and every
/// operation takes `&'static self`: a file refers to its file system type and its file
/// operations until its last reference is gone, and to the file system's super block until
/// that is killed, so neither may ever be freed under a file; a `static` of a module is freed
/// only when the module is unloaded.  The file system is mounted while files of it exist
/// (`simple_pin_fs()`: the first file mounts it, the release of the last one drops that mount),
/// and both the file system type and the file operations name the module as their `owner`: a
/// file pins the module through its operations until `__fput()` is done with them, and through
/// its mount until the super block is gone, so no part of a file's teardown runs after the
/// module is unloaded.  A module with no files left holds no mount, and can be unloaded.
///
/// ```ignore
/// static FS: PseudoFs<MyFiles> = PseudoFs::new(c"my_files", MY_MAGIC, &THIS_MODULE);
/// ```
///
/// # Invariants
///
/// `fs_type` and `fops` name `module` of [`PseudoFs::new`] as `owner`; `mnt` and `count` are
/// the mount and the pin count of `simple_pin_fs()`, changed only by it and
/// `simple_release_fs()` under their lock: every file of the file system holds one pin, dropped
/// by its `release`.  A value used through the API is `'static`.
pub struct PseudoFs<T: AnonFileOperations> {
    fs_type: Opaque<bindings::file_system_type>,
    magic: usize,
    fops: Opaque<bindings::file_operations>,
    mnt: Opaque<*mut bindings::vfsmount>,
    count: Opaque<c_int>,
    _p: PhantomData<T>,
}

// SAFETY: The mount and the operations tables are used only through thread-safe VFS calls.
unsafe impl<T: AnonFileOperations> Send for PseudoFs<T> {}
// SAFETY: As above.
unsafe impl<T: AnonFileOperations> Sync for PseudoFs<T> {}

impl<T: AnonFileOperations> PseudoFs<T> {
    /// Creates a pseudo file system named `name`, with superblock magic `magic`, for the files of
    /// `module`.  It is mounted when the first file is created.
    pub const fn new(name: &'static CStr, magic: usize, module: &'static ThisModule) -> Self {
        let mut fs_type: bindings::file_system_type = pin_init::zeroed();
        fs_type.name = crate::str::as_char_ptr_in_const_context(name);
        fs_type.owner = module.as_ptr();
        fs_type.init_fs_context = Some(Self::init_fs_context);
        fs_type.kill_sb = Some(bindings::kill_anon_super);
        let mut fops = FileOpsTable::<T>::FOPS;
        fops.owner = module.as_ptr();
        // INVARIANT: Both tables name `module` as their owner; no file exists yet.
        Self {
            fs_type: Opaque::new(fs_type),
            magic,
            fops: Opaque::new(fops),
            mnt: Opaque::new(core::ptr::null_mut()),
            count: Opaque::new(0),
            _p: PhantomData,
        }
    }

    /// Takes a pin on the mount (mounting the file system if no file exists), returning it.
    fn pin(&self) -> Result<*mut bindings::vfsmount> {
        // SAFETY: `fs_type` is a valid file system type; `mnt` and `count` are only used by
        // `simple_pin_fs` and `simple_release_fs`, under their lock (type invariant).
        crate::error::to_result(unsafe {
            bindings::simple_pin_fs(self.fs_type.get(), self.mnt.get(), self.count.get())
        })?;
        // SAFETY: The pin we hold keeps `*mnt` set and valid.
        Ok(unsafe { *self.mnt.get() })
    }

    /// Drops a pin taken by [`Self::pin`].
    ///
    /// # Safety
    ///
    /// The caller must own a pin, which it gives up.
    unsafe fn unpin(&self) {
        // SAFETY: The caller owns a pin; `simple_release_fs` drops the mount with the last one.
        unsafe { bindings::simple_release_fs(self.mnt.get(), self.count.get()) };
    }

    /// Returns the pseudo file system of a file created by [`Self::create_file`].
    ///
    /// # Safety
    ///
    /// `file` must be a file created by `create_file` of a `PseudoFs<T>`, not yet released.
    unsafe fn of_file(file: *mut bindings::file) -> &'static Self {
        // SAFETY: The file's super block is one of our file system type, which is the `fs_type`
        // field of a `'static` `PseudoFs<T>` (`create_file` takes `&'static self`).
        unsafe {
            let fs_type = (*(*(*file).f_inode).i_sb).s_type;
            &*crate::container_of!(
                fs_type.cast::<Opaque<bindings::file_system_type>>(),
                Self,
                fs_type
            )
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `init_fs_context` of our `fs_type`, when [`Self::pin`] mounts it.
    unsafe extern "C" fn init_fs_context(fc: *mut bindings::fs_context) -> c_int {
        // SAFETY: `fc->fs_type` is the `fs_type` field of a `'static` `PseudoFs<T>`: only
        // `pin` mounts it, for `create_file(&'static self)`.
        let this = unsafe {
            crate::container_of!(
                (*fc).fs_type.cast::<Opaque<bindings::file_system_type>>(),
                Self,
                fs_type
            )
        };
        // SAFETY: `this` is valid; `magic` was written when it was initialised.
        let magic = unsafe { (*this).magic };
        // SAFETY: `fc` is a valid file system context being initialised.
        let ctx = unsafe { bindings::init_pseudo(fc, magic) };
        if ctx.is_null() {
            return ENOMEM.to_errno();
        }
        // Inodes are `AnonInode<T::Data>`.
        // SAFETY: `ctx` is the new pseudo file system context of `fc`.
        unsafe { (*ctx).ops = &FileOpsTable::<T>::SOPS };
        // Files of this file system are never executable, nor device nodes.
        // SAFETY: `fc` is valid, and ours until this returns.
        unsafe { (*fc).s_iflags |= bindings::SB_I_NOEXEC | bindings::SB_I_NODEV };
        0
    }

    /// Creates a file named `name` of `size` bytes on a new inode that holds `data`,
    /// and installs it as a new file descriptor (`O_RDWR`; `fd_flags` may add `O_CLOEXEC`).
    ///
    /// Returns the file descriptor.
    pub fn create_file<E: Into<Error>>(
        &'static self,
        name: &CStr,
        size: i64,
        data: impl PinInit<T::Data, E>,
        fd_flags: u32,
    ) -> Result<u32> {
        let fd = FileDescriptorReservation::get_unused_fd_flags(fd_flags)?;
        let file = self.new_file(name, size, data)?;
        let raw = fd.reserved_fd();
        fd.fd_install(file);
        Ok(raw)
    }

    /// Creates a file named `name` of `size` bytes on a new inode that holds `data`, opened
    /// `O_RDWR`, and returns it without installing it in any file table.
    pub fn new_file<E: Into<Error>>(
        &'static self,
        name: &CStr,
        size: i64,
        data: impl PinInit<T::Data, E>,
    ) -> Result<ARef<File>> {
        let mnt = self.pin()?;
        // Gives up the pin just taken, on the error paths; on success it passes to the file.
        let fail = |e: Error| -> Error {
            // SAFETY: We own the pin taken above, and no file holds it.
            unsafe { self.unpin() };
            e
        };
        let fops = self.fops.get();

        // SAFETY: The pinned mount is valid; the LSM sees a new anonymous inode of class `name`.
        let inode = from_err_ptr(unsafe {
            bindings::anon_inode_make_secure_inode(
                (*mnt).mnt_sb,
                name.as_char_ptr(),
                core::ptr::null(),
            )
        })
        .map_err(fail)?;
        // SAFETY: The inode is new and not visible to anyone else yet; our super block's
        // `alloc_inode` made it an `AnonInode<T::Data>`.  From here on `iput()` drops the data,
        // if there is any.
        if let Err(e) = unsafe { AnonInode::<T::Data>::init_data(inode, data) } {
            // SAFETY: The inode is ours; `iput` frees it.
            unsafe { bindings::iput(inode) };
            return Err(fail(e));
        }
        // SAFETY: As above.
        unsafe {
            (*inode).i_op = &FileOpsTable::<T>::IOPS;
            (*(*inode).i_mapping).a_ops = &FileOpsTable::<T>::AOPS;
            (*inode).i_mode |= bindings::S_IFREG as u16;
            bindings::i_size_write(inode, size);
        }
        // SAFETY: The inode, and so its mapping, is not visible to anyone else yet.
        let mapping = unsafe { NewAddressSpace::new(AddressSpace::from_raw((*inode).i_mapping)) };
        // SAFETY: The data was just initialised; `iput()` alone drops it.
        T::init_mapping(unsafe { AnonInode::<T::Data>::data(inode) }, &mapping);

        // The file holds a reference on the module, dropped by `__fput()` (`fops_put()`).
        // SAFETY: `fops` is valid, its owner is our module.
        if !unsafe { bindings::try_module_get((*fops).owner) } {
            // SAFETY: The inode is ours; `iput` frees it and its data.
            unsafe { bindings::iput(inode) };
            return Err(fail(ENOENT));
        }
        // SAFETY: `inode` and the mount are valid; `fops` lives as long as the module, which the
        // file keeps loaded.
        let file = from_err_ptr(unsafe {
            bindings::alloc_file_pseudo(
                inode,
                mnt,
                name.as_char_ptr(),
                bindings::O_RDWR as c_int,
                fops,
            )
        });
        let file = match file {
            Ok(file) => file,
            Err(e) => {
                // SAFETY: Undo the above; the inode was never shared.
                unsafe {
                    bindings::module_put((*fops).owner);
                    bindings::iput(inode);
                }
                return Err(fail(e));
            }
        };
        // SAFETY: The file is new and not visible to anyone else yet.
        unsafe {
            (*file).f_mode |=
                bindings::FMODE_LSEEK | bindings::FMODE_PREAD | bindings::FMODE_PWRITE;
            (*file).f_flags |= bindings::O_LARGEFILE;
        }
        // SAFETY: `alloc_file_pseudo` returned a new file with one reference, which we own, and
        // which has no `fdget_pos` users.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast::<File>())) })
    }

    /// The file operations of the files of this file system.
    pub fn fops(&'static self) -> *const bindings::file_operations {
        self.fops.get()
    }

    /// Returns the page cache of `file` if it is a file of this file system, `None` otherwise.
    pub fn mapping_of<'a>(&'static self, file: &'a LocalFile) -> Option<&'a AddressSpace> {
        let f = file.as_ptr();
        // SAFETY: `file` is valid for `'a`.
        if !core::ptr::eq(unsafe { (*f).f_op }, self.fops()) {
            return None;
        }
        // SAFETY: The file, and so its inode and page cache, is valid for `'a`.
        Some(unsafe { AddressSpace::from_raw((*f).f_mapping) })
    }
}

/// A file of a [`PseudoFs`] in its `release`: its last reference is gone.
///
/// It cannot be referenced again, which is why the operation gets this and not a
/// [`File`] (whose reference could be taken).
///
/// # Invariants
///
/// `file` is a file created by [`PseudoFs::new_file`], being released by its `release`
/// operation, valid for `'a`, the only file of its inode, and no longer attached to a VM.
pub struct ReleasingFile<'a> {
    file: NonNull<bindings::file>,
    _p: PhantomData<&'a ()>,
}

impl ReleasingFile<'_> {
    /// The file's page cache.
    pub fn mapping(&self) -> &AddressSpace {
        // SAFETY: The file is valid (type invariant), and so is its mapping.
        unsafe { AddressSpace::from_raw((*self.file.as_ptr()).f_mapping) }
    }

    /// The raw file.
    pub fn as_ptr(&self) -> *mut bindings::file {
        self.file.as_ptr()
    }

    /// Removes every folio from the file's page cache, which frees them once nothing else holds
    /// them.
    pub fn truncate(&self) {
        // Nothing maps the file any more: a mapping holds its file, the only one of the inode,
        // and KVM has detached it from its VM (type invariant).
        self.mapping().invalidate_lock().truncate_range(..);
    }
}

/// The operations of an anonymous file.
#[vtable]
pub trait AnonFileOperations: Sized + 'static {
    /// The data of each file, kept in its inode ([`AnonInode`]) and dropped with it.
    type Data: Send + Sync + 'static;

    /// Sets up the page cache of a new file, before anyone can reach it (for example
    /// [`NewAddressSpace::set_inaccessible`]).
    fn init_mapping(data: &Self::Data, mapping: &NewAddressSpace<'_>) {
        let _ = (data, mapping);
    }

    /// Called when the last reference to the file is gone.  The data is dropped when the inode
    /// is, right after.
    fn release(data: &Self::Data, file: &ReleasingFile<'_>) {
        let _ = (data, file);
    }

    /// Maps the file; `area` lets the driver install its VMA operations.
    ///
    /// Without it the file has no `mmap` operation: `mmap()` fails with `ENODEV`.
    fn mmap(_data: &Self::Data, _area: &MmapArea<'_, Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reads from the file at `*pos`, advancing it.
    ///
    /// Without it the file has no `read_iter` operation: `read()` fails with `EINVAL`.
    fn read_iter(
        _data: &Self::Data,
        _mapping: &AddressSpace,
        _pos: &mut i64,
        _iov: &mut IovIterDest<'_>,
    ) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes to the file at `*pos`, advancing it.
    ///
    /// The write has passed `generic_write_checks()` (`O_APPEND`, `RLIMIT_FSIZE`, the largest
    /// file size) and is not empty.  Without it the file has no `write_iter` operation:
    /// `write()` fails with `EINVAL`.
    fn write_iter(
        _data: &Self::Data,
        _mapping: &AddressSpace,
        _pos: &mut i64,
        _iov: &mut IovIterSource<'_>,
    ) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// `fallocate()`: `mode` is the `FALLOC_FL_*` mask.
    ///
    /// Without it the file has no `fallocate` operation: `fallocate()` fails with
    /// `EOPNOTSUPP`.
    fn fallocate(
        _data: &Self::Data,
        _file: &File,
        _mapping: &AddressSpace,
        _mode: i32,
        _offset: i64,
        _len: i64,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when a folio has left the page cache of a file and is about to be freed.
    fn free_folio(folio: &FreeingFolio) {
        let _ = folio;
    }
}

/// A VMA being set up by [`AnonFileOperations::mmap`] for a file with operations `T`.
///
/// # Invariants
///
/// `vma` is being set up by `->mmap` of a file created by [`PseudoFs::<T>::create_file`], so
/// the file's inode is an [`AnonInode<T::Data>`] holding the file's data.
pub struct MmapArea<'a, T> {
    vma: &'a VmaNew,
    _p: PhantomData<T>,
}

impl<T: AnonFileOperations> MmapArea<'_, T> {
    /// Returns the VMA.
    pub fn vma(&self) -> &VmaNew {
        self.vma
    }

    /// Makes `V` the VMA operations, with its userfaultfd operations.
    pub fn set_vm_ops_uffd<V: UffdOperations<Data = T::Data>>(&self) {
        // SAFETY: By the type invariant the file's inode is an `AnonInode<T::Data>` holding the
        // data, and `T::Data` is `V::Data`.
        unsafe { self.vma.set_vm_ops_uffd::<V>() };
    }
}

struct FileOpsTable<T>(PhantomData<T>);

impl<T: AnonFileOperations> FileOpsTable<T> {
    /// # Safety
    ///
    /// `file` must be a file created by `create_file::<T>`.
    unsafe fn mapping<'a>(file: *mut bindings::file) -> &'a AddressSpace {
        // SAFETY: The file is valid, and so is its mapping.
        unsafe { AddressSpace::from_raw((*file).f_mapping) }
    }

    /// # Safety
    ///
    /// Called by the VFS as `release` of a file created by [`PseudoFs::create_file`], on its
    /// last reference.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The file, and so its inode, is valid until this returns.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        let releasing = ReleasingFile {
            // SAFETY: The VFS passes a valid file.
            file: unsafe { NonNull::new_unchecked(file) },
            _p: PhantomData,
        };
        // A file KVM created loses its VM first, as KVM's own files do.
        #[cfg(CONFIG_KVM_GUEST_MEMFD)]
        crate::kvm_gmem::release(&releasing);
        // INVARIANT: The file is being released, and valid until this returns; `new_file` gave
        // it an inode of its own; it is no longer attached to a VM.
        T::release(data, &releasing);
        // SAFETY: The file was created by `create_file`, which gave it a pin; `__fput()` still
        // holds the file's own reference on the mount.
        unsafe { PseudoFs::<T>::of_file(file).unpin() };
        0
    }

    /// # Safety
    ///
    /// Called by the VFS as `mmap` of a file created by [`PseudoFs::create_file`], with a VMA
    /// being set up.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The file is open, so its inode is alive.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        // INVARIANT: The VMA is being set up by `->mmap` of a file of `T`.
        let area = MmapArea::<T> {
            // SAFETY: The VMA is being set up by `->mmap`.
            vma: unsafe { VmaNew::from_raw(vma) },
            _p: PhantomData,
        };
        match T::mmap(data, &area) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `read_iter` of a file created by [`PseudoFs::create_file`].
    unsafe extern "C" fn read_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: `kiocb` is valid and its file is open.
        let file = unsafe { (*kiocb).ki_filp };
        // SAFETY: As above, the file's inode is alive.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        // SAFETY: `iter` is a valid destination iterator.
        let iov = unsafe { IovIterDest::from_raw(iter) };
        // SAFETY: We have exclusive access to `ki_pos` for this call.
        let pos = unsafe { &mut (*kiocb).ki_pos };
        // SAFETY: The file is valid.
        match T::read_iter(data, unsafe { Self::mapping(file) }, pos, iov) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `write_iter` of a file created by [`PseudoFs::create_file`].
    unsafe extern "C" fn write_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: `kiocb` is valid and its file is open.
        let file = unsafe { (*kiocb).ki_filp };
        // SAFETY: As above, the file's inode is alive.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        // SAFETY: `kiocb` and `iter` are valid; this applies `O_APPEND` to `ki_pos` and clamps
        // the iterator to the size limits, sending `SIGXFSZ` as `write()` does.
        let ret = unsafe { bindings::generic_write_checks(kiocb, iter) };
        if ret <= 0 {
            return ret;
        }
        // SAFETY: `iter` is a valid source iterator.
        let iov = unsafe { IovIterSource::from_raw(iter) };
        // SAFETY: We have exclusive access to `ki_pos` for this call.
        let pos = unsafe { &mut (*kiocb).ki_pos };
        // SAFETY: The file is valid.
        match T::write_iter(data, unsafe { Self::mapping(file) }, pos, iov) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `fallocate` of a file created by [`PseudoFs::create_file`].
    unsafe extern "C" fn fallocate(
        file: *mut bindings::file,
        mode: c_int,
        offset: bindings::loff_t,
        len: bindings::loff_t,
    ) -> c_long {
        // SAFETY: The file is open, so its inode is alive.
        let data = unsafe { AnonInode::<T::Data>::data((*file).f_inode) };
        // SAFETY:
        // * The VFS holds a reference to the file for the duration of the call.
        // * `fallocate()` reaches us through `fdget()`, not `fdget_pos()`: there is no active
        //   `fdget_pos` region on the file on this thread (as `miscdevice` argues for its file
        //   operations).
        let f = unsafe { File::from_raw_file(file) };
        // SAFETY: The file is valid.
        match T::fallocate(data, f, unsafe { Self::mapping(file) }, mode, offset, len) {
            Ok(()) => 0,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS as `setattr` of an inode created by [`PseudoFs::create_file`].
    unsafe extern "C" fn setattr(
        _idmap: *mut bindings::mnt_idmap,
        _dentry: *mut bindings::dentry,
        _attr: *mut bindings::iattr,
    ) -> c_int {
        // The size is fixed at creation; nothing else may change either.
        EINVAL.to_errno()
    }

    /// # Safety
    ///
    /// Called by the page cache as `free_folio` of such an inode, for a folio that has left it
    /// and is about to be freed.
    unsafe extern "C" fn free_folio(folio: *mut bindings::folio) {
        // SAFETY: The folio stays valid, and is ours alone, until we return.
        let folio = unsafe { FreeingFolio::from_raw(folio) };
        // A folio of a page cache without a direct map goes back into it before it is freed.
        folio.restore_direct_map();
        T::free_folio(folio);
    }

    /// # Safety
    ///
    /// Called by memory-failure handling as `error_remove_folio` of such an inode.
    unsafe extern "C" fn error_remove_folio(
        _mapping: *mut bindings::address_space,
        _folio: *mut bindings::folio,
    ) -> c_int {
        // The poisoned folio stays in the page cache, as shmem keeps it: its contents exist
        // nowhere else, so dropping it would let the next access read zeros.  Faults, reads and
        // writes of the page fail instead, until a hole punch removes it.
        0
    }

    const SOPS: bindings::super_operations = bindings::super_operations {
        alloc_inode: Some(AnonInode::<T::Data>::alloc_inode),
        destroy_inode: Some(AnonInode::<T::Data>::destroy_inode),
        free_inode: Some(AnonInode::<T::Data>::free_inode),
        statfs: Some(bindings::simple_statfs),
        ..pin_init::zeroed()
    };

    const IOPS: bindings::inode_operations = bindings::inode_operations {
        setattr: Some(Self::setattr),
        ..pin_init::zeroed()
    };

    const AOPS: bindings::address_space_operations = bindings::address_space_operations {
        dirty_folio: Some(bindings::noop_dirty_folio),
        free_folio: Some(Self::free_folio),
        error_remove_folio: Some(Self::error_remove_folio),
        ..pin_init::zeroed()
    };

    const FOPS: bindings::file_operations = bindings::file_operations {
        release: Some(Self::release),
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        read_iter: if T::HAS_READ_ITER {
            Some(Self::read_iter)
        } else {
            None
        },
        write_iter: if T::HAS_WRITE_ITER {
            Some(Self::write_iter)
        } else {
            None
        },
        fallocate: if T::HAS_FALLOCATE {
            Some(Self::fallocate)
        } else {
            None
        },
        llseek: Some(bindings::generic_file_llseek),
        ..pin_init::zeroed()
    };
}
