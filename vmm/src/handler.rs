// SPDX-License-Identifier: GPL-2.0
//! The userfaultfd side of a restore: register the guest memory, and a
//! thread that serves every fault from the snapshot.
//!
//! The same handler serves faults of the vCPU (KVM's get_user_pages() on
//! the memory slot when the guest touches a page for the first time) and of
//! KVM's own accesses (the instruction emulator reading guest memory with
//! copy_from_user(), for one): both block in the kernel until the page is
//! there, and both look the same here.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use userfaultfd::{Error as UffdError, Event, FaultKind, FeatureFlags, IoctlFlags, ReadWrite};
use userfaultfd::{RegisterMode, Uffd, UffdBuilder};
use vmm_sys_util::eventfd::EventFd;

use crate::memory::{Backend, GuestMemory, PAGE_SIZE};
use crate::snapshot::Snapshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Register MISSING; serve with UFFDIO_COPY from the snapshot.
    Missing,
    /// Register MISSING | MINOR; serve with pwrite() into the memory file
    /// and UFFDIO_CONTINUE (the Firecracker flow).
    Minor,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "missing" => Some(Mode::Missing),
            "minor" => Some(Mode::Minor),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Missing => "missing",
            Mode::Minor => "minor",
        }
    }
}

/// Fault injection, to show that the checks catch what they are meant to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Serve one page with one byte flipped: the guest must see it.
    Corrupt,
    /// Punch one page out of the file right after serving it (before
    /// waking the vCPU), so that it faults and is served again: the
    /// served-twice check must see it.
    Twice,
}

impl Inject {
    pub fn name(self) -> &'static str {
        match self {
            Inject::Corrupt => "corrupt",
            Inject::Twice => "twice",
        }
    }

    pub fn parse(s: &str) -> Option<Inject> {
        match s {
            "corrupt" => Some(Inject::Corrupt),
            "twice" => Some(Inject::Twice),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Fault events read, by kind and access.
    pub missing_faults: u64,
    pub minor_faults: u64,
    pub write_faults: u64,
    /// Distinct pages this handler populated (UFFDIO_COPY, or pwrite +
    /// CONTINUE).
    pub served: u64,
    /// UFFDIO_COPY/CONTINUE found the page already there (a racing fault
    /// resolved it): woken, not counted as served.
    pub eexist: u64,
    /// Faults on a page this handler had already populated.
    pub served_twice: u64,
    pub first_twice: Option<usize>,
    /// Time spent serving (from reading the event to the ioctl's return).
    pub busy: Duration,
}

/// A userfaultfd for `mem`, registered for `mode` over the whole mapping.
///
/// Non-blocking, because the handler poll()s it (poll() on a blocking
/// userfaultfd reports POLLERR); not user-mode-only, because KVM's own
/// accesses to guest memory are kernel-mode faults.  shmem needs
/// UFFD_FEATURE_MINOR_SHMEM for MINOR; guest_memfd needs no feature.
pub fn register(mem: &GuestMemory, backend: Backend, mode: Mode) -> Result<Uffd, String> {
    let mut features = FeatureFlags::empty();
    if backend == Backend::Memfd && mode == Mode::Minor {
        features |= FeatureFlags::from_bits_retain(userfaultfd_sys::UFFD_FEATURE_MINOR_SHMEM);
    }
    let uffd = UffdBuilder::new()
        .close_on_exec(true)
        .non_blocking(true)
        .user_mode_only(false)
        .require_features(features)
        .create()
        .map_err(|e| format!("userfaultfd + UFFDIO_API: {e:?}"))?;
    let (reg, need) = match mode {
        Mode::Missing => (RegisterMode::MISSING, IoctlFlags::COPY | IoctlFlags::WAKE),
        Mode::Minor => (
            RegisterMode::MISSING | RegisterMode::MINOR,
            // The crate has no name for this bit.
            IoctlFlags::from_bits_retain(1 << userfaultfd_sys::_UFFDIO_CONTINUE) | IoctlFlags::WAKE,
        ),
    };
    let ioctls = uffd
        .register_with_mode(mem.addr.cast(), mem.size, reg)
        .map_err(|e| format!("UFFDIO_REGISTER {reg:?}: {e:?}"))?;
    if !ioctls.contains(need) {
        return Err(format!(
            "UFFDIO_REGISTER: range ioctls {ioctls:?} lack {need:?}"
        ));
    }
    Ok(uffd)
}

struct Server {
    uffd: Arc<Uffd>,
    mem: Arc<GuestMemory>,
    snap: Arc<Snapshot>,
    mode: Mode,
    served: Vec<bool>,
    stats: Stats,
    /// The injection and the offset of the page it hits.
    inject: Option<(Inject, usize)>,
    /// Fault events read so far, for the main thread to look at.
    events: Arc<AtomicU64>,
}

fn errno_of(e: &UffdError) -> Option<i32> {
    match e {
        UffdError::CopyFailed(errno) => Some(*errno as i32),
        UffdError::SystemError(errno) => Some(*errno as i32),
        UffdError::PartiallyCopied(_) => Some(libc::EAGAIN),
        _ => None,
    }
}

impl Server {
    /// pwrite() one whole page of the snapshot into the memory file: the
    /// page becomes present (guest_memfd publishes it only complete).
    fn pwrite_page(&self, src: *const u8, off: usize) -> Result<(), String> {
        let fd: RawFd = self.mem.file.as_raw_fd();
        let mut done = 0;
        while done < PAGE_SIZE {
            // SAFETY: reads PAGE_SIZE - done bytes of a page at src.
            let n = unsafe {
                libc::pwrite(
                    fd,
                    src.add(done).cast(),
                    PAGE_SIZE - done,
                    (off + done) as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("pwrite at {off:#x}: {e}"));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Serve one fault.  Ok(true): this call populated the page;
    /// Ok(false): it was already there (EEXIST), waiters were woken.
    fn serve(&mut self, kind: FaultKind, page: usize, off: usize) -> Result<bool, String> {
        let dst: *mut libc::c_void = page as *mut _;
        let mut src = self.snap.page(off);
        let mut wake = true;
        let mut bad_page;
        let inject = match self.inject {
            Some((what, at)) if at == off && !self.served[off / PAGE_SIZE] => Some(what),
            _ => None,
        };
        match inject {
            Some(Inject::Corrupt) => {
                // SAFETY: one page of the snapshot mapping.
                bad_page = unsafe { std::slice::from_raw_parts(src, PAGE_SIZE) }.to_vec();
                bad_page[PAGE_SIZE / 2] ^= 0x40;
                src = bad_page.as_ptr();
            }
            Some(Inject::Twice) => wake = false,
            None => {}
        }
        let done = loop {
            let r = match (self.mode, kind) {
                (Mode::Missing, _) => {
                    // UFFDIO_COPY: allocate the page, copy src into it, map
                    // it at dst and wake the threads waiting on it.
                    // SAFETY: dst is a page of the registered range, src a
                    // readable page.
                    unsafe { self.uffd.copy(src.cast(), dst, PAGE_SIZE, wake) }.map(|_| ())
                }
                (Mode::Minor, FaultKind::Missing) => {
                    // pwrite() makes the page present in the file, then
                    // UFFDIO_CONTINUE maps it at dst and wakes the waiters.
                    self.pwrite_page(src, off)?;
                    self.uffd.r#continue(dst, PAGE_SIZE, wake).map(|_| ())
                }
                // Already in the file, not mapped here: just map it.
                (Mode::Minor, FaultKind::Minor) => {
                    self.uffd.r#continue(dst, PAGE_SIZE, wake).map(|_| ())
                }
            };
            match r {
                Ok(()) => break true,
                Err(e) => match errno_of(&e) {
                    Some(libc::EEXIST) => break false,
                    // The mapping is changing (or a partial copy of 0
                    // bytes): try again, as the uffd man page says.
                    Some(libc::EAGAIN) => continue,
                    _ => {
                        let what = match (self.mode, kind) {
                            (Mode::Missing, _) => "UFFDIO_COPY",
                            _ => "UFFDIO_CONTINUE",
                        };
                        return Err(format!("{what} at {page:#x}: {e:?}"));
                    }
                },
            }
        };
        if done && inject == Some(Inject::Twice) {
            // SAFETY: a plain system call on our file.
            let r = unsafe {
                libc::fallocate(
                    self.mem.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off as libc::off_t,
                    PAGE_SIZE as libc::off_t,
                )
            };
            if r != 0 {
                return Err(format!(
                    "inject: punch hole: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        if !done || !wake {
            // EEXIST: the page is there (a racing fault or write put it
            // there); the faulting thread still waits to be woken.
            self.uffd
                .wake(dst, PAGE_SIZE)
                .map_err(|e| format!("UFFDIO_WAKE at {page:#x}: {e:?}"))?;
        }
        Ok(done)
    }

    fn event(&mut self, ev: Event) -> Result<(), String> {
        let Event::Pagefault { kind, rw, addr, .. } = ev else {
            return Err(format!("unexpected userfaultfd event {ev:?}"));
        };
        let t = Instant::now();
        self.events.fetch_add(1, Ordering::Relaxed);
        match kind {
            FaultKind::Missing => self.stats.missing_faults += 1,
            FaultKind::Minor => self.stats.minor_faults += 1,
        }
        if rw == ReadWrite::Write {
            self.stats.write_faults += 1;
        }
        let base = self.mem.addr as usize;
        let page = addr as usize & !(PAGE_SIZE - 1);
        if page < base || page >= base + self.mem.size {
            return Err(format!("fault at {page:#x} outside guest memory"));
        }
        let off = page - base;
        let idx = off / PAGE_SIZE;
        if self.served[idx] {
            // We populated this page before and it faulted again.
            self.stats.served_twice += 1;
            self.stats.first_twice.get_or_insert(off);
        }
        if self.serve(kind, page, off)? {
            if !self.served[idx] {
                self.served[idx] = true;
                self.stats.served += 1;
            }
        } else {
            self.stats.eexist += 1;
        }
        self.stats.busy += t.elapsed();
        Ok(())
    }

    fn run(mut self, stop: EventFd) -> Result<Stats, String> {
        let mut fds = [
            libc::pollfd {
                fd: self.uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: two valid pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(format!(
                    "poll on the userfaultfd: revents {:#x}",
                    fds[0].revents
                ));
            }
            // Serve everything pending, then look at the stop request.
            while let Some(ev) = self
                .uffd
                .read_event()
                .map_err(|e| format!("read(userfaultfd): {e:?}"))?
            {
                self.event(ev)?;
            }
            if fds[1].revents & libc::POLLIN != 0 {
                return Ok(self.stats);
            }
        }
    }
}

/// The handler thread of one restore.
pub struct Handler {
    stop: EventFd,
    events: Arc<AtomicU64>,
    thread: JoinHandle<Result<Stats, String>>,
}

impl Handler {
    /// Start serving faults of `mem` (already registered on `uffd`) from
    /// `snap`.  A handler that cannot serve a fault ends the process: the
    /// faulting vCPU would otherwise wait for ever.
    pub fn spawn(
        uffd: Arc<Uffd>,
        mem: Arc<GuestMemory>,
        snap: Arc<Snapshot>,
        mode: Mode,
        inject: Option<(Inject, usize)>,
    ) -> Result<Handler, String> {
        let stop = EventFd::new(libc::EFD_CLOEXEC).map_err(|e| format!("eventfd: {e}"))?;
        let stop2 = stop.try_clone().map_err(|e| format!("eventfd dup: {e}"))?;
        let pages = mem.size / PAGE_SIZE;
        let events = Arc::new(AtomicU64::new(0));
        let server = Server {
            uffd,
            mem,
            snap,
            mode,
            served: vec![false; pages],
            stats: Stats::default(),
            inject,
            events: events.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("uffd-handler".into())
            .spawn(move || {
                let r = server.run(stop2);
                if let Err(e) = &r {
                    println!("Bail out! uffd handler: {e}");
                    eprintln!("gmem-vmm: uffd handler: {e}");
                    std::process::exit(1);
                }
                r
            })
            .map_err(|e| format!("spawn handler: {e}"))?;
        Ok(Handler {
            stop,
            events,
            thread,
        })
    }

    /// Fault events served so far.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Stop the thread (after the vCPU is done) and return its counters.
    pub fn finish(self) -> Result<Stats, String> {
        self.stop
            .write(1)
            .map_err(|e| format!("eventfd write: {e}"))?;
        self.thread
            .join()
            .map_err(|_| "uffd handler panicked".to_string())?
    }
}
