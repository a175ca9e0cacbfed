// SPDX-License-Identifier: GPL-2.0

//! Shared NUMA memory policies of files.
//!
//! A file that keeps a [`SharedPolicy`], as shmem and KVM's guest_memfd do, lets `mbind()` on
//! any mapping of it set the policy of that range of the file (`->set_policy`), lets
//! `get_mempolicy()` read it back (`->get_policy`), and allocates every folio of the file by
//! it, also where no VMA is involved ([`NewFolio::alloc_shared`]).  A driver exposes its
//! file's policy to core mm through [`VmOperations::policy`].
//!
//! Without `CONFIG_NUMA` a [`SharedPolicy`] holds nothing and every range has no policy.
//!
//! C header: [`include/linux/mempolicy.h`](srctree/include/linux/mempolicy.h)
//!
//! [`NewFolio::alloc_shared`]: crate::mm::folio::NewFolio::alloc_shared
//! [`VmOperations::policy`]: crate::mm::vm_ops::VmOperations::policy

use crate::{bindings, prelude::*, types::Opaque};
use core::ptr::NonNull;

/// The NUMA policies of the ranges of a file, indexed by page offset (`struct shared_policy`).
///
/// # Invariants
///
/// `inner` was initialised by `mpol_shared_policy_init()` and is freed by
/// `mpol_free_shared_policy()` only when this object is dropped.
#[pin_data(PinnedDrop)]
pub struct SharedPolicy {
    #[pin]
    inner: Opaque<bindings::shared_policy>,
}

// SAFETY: The policy tree is protected by its own lock (`shared_policy::lock`), and the
// policies in it are reference counted, so the object may be used from any thread.
unsafe impl Send for SharedPolicy {}
// SAFETY: As above: every access goes through the helpers, which take the lock.
unsafe impl Sync for SharedPolicy {}

impl SharedPolicy {
    /// Creates a shared policy with no policy for any range.
    pub fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // INVARIANT: Initialised here, freed by `drop`.
            inner <- Opaque::ffi_init(|sp: *mut bindings::shared_policy| {
                #[cfg(CONFIG_NUMA)]
                // SAFETY: `sp` is valid for writes and pinned; no initial policy is given.
                unsafe {
                    bindings::mpol_shared_policy_init(sp, core::ptr::null_mut())
                };
                #[cfg(not(CONFIG_NUMA))]
                let _ = sp;
            }),
        })
    }

    /// Returns a raw pointer to the `struct shared_policy`.
    #[inline]
    pub fn as_ptr(&self) -> *mut bindings::shared_policy {
        self.inner.get()
    }

    /// Returns the policy of the page at `index` of the file, if one was set for it.
    pub fn lookup(&self, index: usize) -> Option<Policy> {
        #[cfg(CONFIG_NUMA)]
        {
            // SAFETY: The shared policy is initialised (type invariant); the lookup takes its
            // lock and returns the policy with a reference added for us, or NULL.
            let pol = unsafe { bindings::mpol_shared_policy_lookup(self.as_ptr(), index) };
            // INVARIANT: A non-NULL result is a shared policy with a reference that is ours.
            NonNull::new(pol).map(Policy)
        }
        #[cfg(not(CONFIG_NUMA))]
        {
            let _ = index;
            None
        }
    }
}

#[pinned_drop]
impl PinnedDrop for SharedPolicy {
    fn drop(self: Pin<&mut Self>) {
        #[cfg(CONFIG_NUMA)]
        // SAFETY: The shared policy is initialised (type invariant) and nobody uses it any
        // more; this drops the references it holds on its policies.
        unsafe {
            bindings::mpol_free_shared_policy(self.as_ptr())
        };
    }
}

/// A reference to a memory policy (`struct mempolicy`).
///
/// # Invariants
///
/// The pointer refers to a valid memory policy, on which this object holds the reference that
/// `mpol_cond_put()` drops: one it owns if the policy is shared (`MPOL_F_SHARED`), none
/// otherwise.
pub struct Policy(NonNull<bindings::mempolicy>);

// SAFETY: Memory policies are reference counted atomically and immutable once made, so the
// reference may be dropped on another thread.
unsafe impl Send for Policy {}

impl Policy {
    /// Returns a raw pointer to the policy.
    #[inline]
    pub fn as_ptr(&self) -> *mut bindings::mempolicy {
        self.0.as_ptr()
    }

    /// Gives up the reference, for a caller that passes it on to core mm.
    #[inline]
    pub(crate) fn into_raw(self) -> *mut bindings::mempolicy {
        core::mem::ManuallyDrop::new(self).as_ptr()
    }
}

impl Drop for Policy {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariant this object holds the reference `mpol_cond_put()`
        // drops.
        unsafe { bindings::mpol_cond_put(self.as_ptr()) };
    }
}
