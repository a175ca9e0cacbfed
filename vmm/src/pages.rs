// SPDX-License-Identifier: GPL-2.0
//! What the userfaultfd handler knows about each page of guest memory: has
//! it served it, has a REMOVE event taken it away since; and how the
//! address ranges of non-fault events fall on guest memory.
//!
//! Pure bookkeeping, no system call: the handler (handler.rs) asks
//! [`PageMap::classify`] before it serves a fault and tells
//! [`PageMap::mark_served`] after a successful UFFDIO_COPY or
//! UFFDIO_CONTINUE.
//!
//! A REMOVE event (`madvise(MADV_DONTNEED or MADV_REMOVE)` on guest memory,
//! a balloon's way to give memory back) says that the kernel is about to
//! drop the range's pages: they are no longer the snapshot's, and a later
//! fault on one is served as a zero page, as Firecracker's handler does,
//! and is not a second service.  The kernel drops the pages only after the
//! handler has read the event, so a fault served between the read and the
//! drop is undone by it and comes once more: one more fault per REMOVE is
//! expected of a page served after it ([`State::Refilled`]).  Any other
//! fault on a page already served means it was served twice.

use std::ops::Range;

/// The state of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Never served, not removed: a fault gets the snapshot's page.
    Pending,
    /// Served, no REMOVE since: another fault on it is a second service.
    Served,
    /// In the range of a REMOVE since it was last served (or before it ever
    /// was): a fault gets a zero page.
    Removed { ever_served: bool },
    /// Served after a REMOVE; that REMOVE's own drop of the page may still
    /// come and undo this service once: a fault gets a zero page again.
    Refilled,
}

/// What a fault on a page asks of the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// First service of the page: from the snapshot.
    First,
    /// The page was removed (REMOVE) since it was last served, or before
    /// it ever was: a zero page; not a second service.
    AfterRemove,
    /// The page was served and nothing removed it: served twice.  (The
    /// handler serves it from the snapshot again, so that the guest goes
    /// on, and reports it.)
    Twice,
}

/// One [`State`] per page of guest memory, and the number of distinct pages
/// served so far.
#[derive(Clone, Debug)]
pub struct PageMap {
    states: Vec<State>,
    served: u64,
}

impl PageMap {
    pub fn new(pages: usize) -> PageMap {
        PageMap {
            states: vec![State::Pending; pages],
            served: 0,
        }
    }

    pub fn state(&self, page: usize) -> State {
        self.states[page]
    }

    /// What a fault on `page` asks for (before serving it).
    pub fn classify(&self, page: usize) -> Service {
        match self.states[page] {
            State::Pending => Service::First,
            State::Served => Service::Twice,
            State::Removed { .. } | State::Refilled => Service::AfterRemove,
        }
    }

    /// `page` was populated (the ioctl succeeded; not on EEXIST).  True
    /// the first time this page is ever served.
    pub fn mark_served(&mut self, page: usize) -> bool {
        let (next, first) = match self.states[page] {
            State::Pending => (State::Served, true),
            State::Served => (State::Served, false),
            State::Removed { ever_served } => (State::Refilled, !ever_served),
            State::Refilled => (State::Served, false),
        };
        self.states[page] = next;
        if first {
            self.served += 1;
        }
        first
    }

    /// A REMOVE event over `pages`: each is due as a zero page on its next
    /// fault.  Returns how many pages that is.
    pub fn remove(&mut self, pages: Range<usize>) -> u64 {
        let n = pages.len() as u64;
        for s in &mut self.states[pages] {
            *s = match *s {
                State::Pending => State::Removed { ever_served: false },
                State::Removed { ever_served } => State::Removed { ever_served },
                State::Served | State::Refilled => State::Removed { ever_served: true },
            };
        }
        n
    }

    /// Distinct pages served at least once.
    pub fn served(&self) -> u64 {
        self.served
    }
}

/// Where an event's address range `[start, end)` falls on guest memory
/// mapped at `base`, `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Nowhere: not our memory.
    Outside,
    /// On all of it.
    Whole,
    /// On these pages only (indices from `base`; a page the range touches
    /// at all is in).
    Part(Range<usize>),
}

pub fn overlap(base: usize, size: usize, start: usize, end: usize, page_size: usize) -> Overlap {
    let lo = start.max(base);
    let hi = end.min(base + size);
    if lo >= hi {
        Overlap::Outside
    } else if lo == base && hi == base + size {
        Overlap::Whole
    } else {
        Overlap::Part((lo - base) / page_size..(hi - base).div_ceil(page_size))
    }
}

/// What an `mremap()` of `[from, from + len)` to `to` means for guest memory
/// mapped at `base`, `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remap {
    /// Not our memory.
    Outside,
    /// All of it moved: it is now mapped at this address.
    Moved(usize),
    /// Part of it moved: no longer one mapping.
    Split,
}

pub fn remap(base: usize, size: usize, from: usize, to: usize, len: usize) -> Remap {
    match overlap(base, size, from, from + len, 1) {
        Overlap::Outside => Remap::Outside,
        Overlap::Whole => Remap::Moved(to + (base - from)),
        Overlap::Part(_) => Remap::Split,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_then_twice() {
        let mut m = PageMap::new(4);
        assert_eq!(m.classify(1), Service::First);
        assert!(m.mark_served(1));
        assert_eq!(m.served(), 1);
        // Faulting again with nothing removed: served twice.
        assert_eq!(m.classify(1), Service::Twice);
        assert!(!m.mark_served(1));
        assert_eq!(m.served(), 1, "distinct pages");
        assert_eq!(m.classify(0), Service::First);
    }

    #[test]
    fn removed_page_is_served_again_as_zero_not_twice() {
        let mut m = PageMap::new(8);
        for p in 0..4 {
            m.mark_served(p);
        }
        assert_eq!(m.remove(2..6), 4);
        // Served before, removed: a zero page, not a second service.
        assert_eq!(m.classify(2), Service::AfterRemove);
        assert_eq!(m.state(3), State::Removed { ever_served: true });
        // Never served, removed: a zero page too, and a first service.
        assert_eq!(m.state(5), State::Removed { ever_served: false });
        assert_eq!(m.classify(5), Service::AfterRemove);
        // Outside the range: unchanged.
        assert_eq!(m.classify(1), Service::Twice);
        assert_eq!(m.classify(6), Service::First);

        assert!(!m.mark_served(2), "page 2 was served before");
        assert!(m.mark_served(5), "page 5 never was");
        assert_eq!(m.served(), 5);
    }

    #[test]
    fn one_more_fault_per_remove_then_twice_again() {
        let mut m = PageMap::new(2);
        m.mark_served(0);
        m.remove(0..1);
        // Served after the REMOVE was read...
        assert_eq!(m.classify(0), Service::AfterRemove);
        m.mark_served(0);
        assert_eq!(m.state(0), State::Refilled);
        // ...and the REMOVE's drop came after it: expected, not twice.
        assert_eq!(m.classify(0), Service::AfterRemove);
        m.mark_served(0);
        assert_eq!(m.state(0), State::Served);
        // No REMOVE left to explain a fault: twice.
        assert_eq!(m.classify(0), Service::Twice);
        // A new REMOVE makes it legitimate again.
        m.remove(0..2);
        assert_eq!(m.classify(0), Service::AfterRemove);
        assert_eq!(m.served(), 1);
    }

    #[test]
    fn remove_of_a_refilled_or_removed_page() {
        let mut m = PageMap::new(1);
        m.remove(0..1);
        m.remove(0..1);
        assert_eq!(m.state(0), State::Removed { ever_served: false });
        assert!(m.mark_served(0));
        m.remove(0..1);
        assert_eq!(m.state(0), State::Removed { ever_served: true });
        assert!(!m.mark_served(0));
        assert_eq!(m.served(), 1);
    }

    #[test]
    fn overlap_of_ranges() {
        let (base, size, ps) = (0x10_0000, 0x8000, 0x1000);
        assert_eq!(overlap(base, size, 0, base, ps), Overlap::Outside);
        assert_eq!(
            overlap(base, size, base + size, base + 2 * size, ps),
            Overlap::Outside
        );
        assert_eq!(overlap(base, size, base, base + size, ps), Overlap::Whole);
        assert_eq!(overlap(base, size, 0, usize::MAX, ps), Overlap::Whole);
        assert_eq!(
            overlap(base, size, base + 0x2000, base + 0x4000, ps),
            Overlap::Part(2..4)
        );
        // Clipped at either end.
        assert_eq!(
            overlap(base, size, 0, base + 0x1000, ps),
            Overlap::Part(0..1)
        );
        assert_eq!(
            overlap(base, size, base + 0x7000, base + 0x9000, ps),
            Overlap::Part(7..8)
        );
        // A page the range touches at all is in.
        assert_eq!(
            overlap(base, size, base + 0x1800, base + 0x2001, ps),
            Overlap::Part(1..3)
        );
    }

    #[test]
    fn remap_of_guest_memory() {
        let (base, size) = (0x10_0000, 0x8000);
        assert_eq!(
            remap(base, size, 0x40_0000, 0x80_0000, size),
            Remap::Outside
        );
        assert_eq!(
            remap(base, size, base, 0x80_0000, size),
            Remap::Moved(0x80_0000)
        );
        // A larger mapping around it moved as a whole.
        assert_eq!(
            remap(base, size, base - 0x1000, 0x80_0000, size + 0x2000),
            Remap::Moved(0x80_1000)
        );
        assert_eq!(
            remap(base, size, base + 0x1000, 0x80_0000, 0x1000),
            Remap::Split
        );
    }
}
