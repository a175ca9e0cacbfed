// SPDX-License-Identifier: GPL-2.0
//! The userfaultfd side of a restore: register the guest memory, and a
//! thread that serves every fault from the snapshot.
//!
//! The same handler serves faults of the vCPU (KVM faulting the page in
//! through the memory slot's mapping when the guest first touches it) and of
//! KVM's own accesses (the instruction emulator reading guest memory with
//! copy_from_user(), for one): both block in the kernel until the page is
//! there, and both look the same here.
//!
//! Besides faults it follows the events that change guest memory under it
//! (pages.rs keeps the books): REMOVE (`madvise(MADV_DONTNEED/MADV_REMOVE)`,
//! a balloon giving memory back) makes the range's pages due as zero pages;
//! REMAP and UNMAP of the whole of guest memory are followed (new address)
//! or end the handler (nothing left to serve); of part of it, they are an
//! error.  Only REMOVE is asked for (UFFD_FEATURE_EVENT_REMOVE, as
//! Firecracker does): the others come only to a VMM that asks for them.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use userfaultfd::{Error as UffdError, Event, FaultKind, FeatureFlags, IoctlFlags, ReadWrite};
use userfaultfd::{RegisterMode, Uffd, UffdBuilder};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Context, Error, Result, UnknownName};
use crate::memory::{Backend, GuestMemory, PAGE_SIZE};
use crate::pages::{self, Overlap, PageMap, Remap, Service, State};
use crate::snapshot::Snapshot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Register MISSING; serve with UFFDIO_COPY from the snapshot.
    Missing,
    /// Register MISSING | MINOR; serve with pwrite() into the memory file
    /// and UFFDIO_CONTINUE (the Firecracker flow).
    Minor,
}

impl FromStr for Mode {
    type Err = UnknownName;

    fn from_str(s: &str) -> std::result::Result<Mode, UnknownName> {
        match s {
            "missing" => Ok(Mode::Missing),
            "minor" => Ok(Mode::Minor),
            _ => Err(UnknownName(s.into())),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Missing => "missing",
            Mode::Minor => "minor",
        })
    }
}

/// Fault injection, to show that the checks catch what they are meant to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// Serve one page with one byte flipped: the guest must see it.
    Corrupt,
    /// Punch one page out of the file right after serving it (before
    /// waking the vCPU), so that it faults and is served again: the
    /// served-twice check must see it.  (A hole punch is no REMOVE event:
    /// only madvise() raises one.)
    Twice,
}

impl FromStr for Inject {
    type Err = UnknownName;

    fn from_str(s: &str) -> std::result::Result<Inject, UnknownName> {
        match s {
            "corrupt" => Ok(Inject::Corrupt),
            "twice" => Ok(Inject::Twice),
            _ => Err(UnknownName(s.into())),
        }
    }
}

impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inject::Corrupt => "corrupt",
            Inject::Twice => "twice",
        })
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
    /// Faults on a page this handler had already populated, with no REMOVE
    /// since to explain them.
    pub served_twice: u64,
    pub first_twice: Option<usize>,
    /// REMOVE events on guest memory, and the pages in them.
    pub removes: u64,
    pub removed_pages: u64,
    /// Faults on removed pages served: with a zero page (MISSING), or by
    /// mapping what the file holds (MINOR: MADV_DONTNEED of a shared
    /// mapping leaves the page in the file).
    pub after_remove: u64,
    pub zero_pages: u64,
    /// Serves put off and tried again after reading the events: EAGAIN
    /// (the mapping is changing: a non-fault event is pending), or, in
    /// minor mode, the page punched out of the file between the pwrite()
    /// and the UFFDIO_CONTINUE (EFAULT).
    pub retried: u64,
    /// REMAP events that moved all of guest memory.
    pub remaps: u64,
    /// Time spent serving (from reading the event to the ioctl's return).
    pub busy: Duration,
}

/// A userfaultfd for `mem`, registered for `mode` over the whole mapping.
///
/// Non-blocking, because the handler poll()s it (poll() on a blocking
/// userfaultfd reports POLLERR); not user-mode-only, because KVM's own
/// accesses to guest memory are kernel-mode faults.  shmem needs
/// UFFD_FEATURE_MINOR_SHMEM for MINOR; guest_memfd needs no feature.
/// UFFD_FEATURE_EVENT_REMOVE: madvise(MADV_DONTNEED/MADV_REMOVE) on guest
/// memory (a balloon) is reported to the handler.
pub fn register(mem: &GuestMemory, backend: Backend, mode: Mode) -> Result<Uffd> {
    let mut features = FeatureFlags::EVENT_REMOVE;
    if backend == Backend::Memfd && mode == Mode::Minor {
        features |= FeatureFlags::from_bits_retain(userfaultfd_sys::UFFD_FEATURE_MINOR_SHMEM);
    }
    let uffd = UffdBuilder::new()
        .close_on_exec(true)
        .non_blocking(true)
        .user_mode_only(false)
        .require_features(features)
        .create()
        .context("userfaultfd + UFFDIO_API")?;
    let (reg, need) = match mode {
        Mode::Missing => (RegisterMode::MISSING, IoctlFlags::COPY | IoctlFlags::WAKE),
        Mode::Minor => (
            RegisterMode::MISSING | RegisterMode::MINOR,
            // The crate has no name for this bit.
            IoctlFlags::from_bits_retain(1 << userfaultfd_sys::_UFFDIO_CONTINUE) | IoctlFlags::WAKE,
        ),
    };
    let have = uffd
        .register_with_mode(mem.addr.cast(), mem.size, reg)
        .with_context(|| format!("UFFDIO_REGISTER {reg:?}"))?;
    if !have.contains(need) {
        return Err(Error::RegisterIoctls { have, need });
    }
    Ok(uffd)
}

/// What a removed page is served from.
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// A fault read from the userfaultfd, not served yet.
#[derive(Clone, Copy, Debug)]
struct Fault {
    kind: FaultKind,
    addr: usize,
    /// Times UFFDIO_CONTINUE found the page gone from the file (EFAULT).
    gone: u32,
}

/// How often a fault may find its page punched out of the file between
/// the pwrite() and the UFFDIO_CONTINUE before the handler gives up.  Each
/// punch is the MADV_REMOVE of a REMOVE event already read, so a few at
/// most are expected; the retries are paced like EAGAIN's.
const MAX_GONE: u32 = 1000;

/// Retries after EAGAIN that only yield the CPU before the handler polls
/// with a 1 ms timeout: the mapping change usually ends within a few.
const FAST_RETRIES: u32 = 64;

/// How one attempt to serve a fault ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// This call populated the page.
    Populated,
    /// The page was already there (EEXIST); waiters were woken.
    Exists,
    /// EAGAIN: the mapping is changing (a non-fault event is pending or
    /// being processed); try again after reading the events.
    Retry,
    /// Minor mode, EFAULT from UFFDIO_CONTINUE: the page left the file
    /// after the pwrite() (or the MINOR fault) and before the CONTINUE: a
    /// hole punch, the MADV_REMOVE of a REMOVE event we have read.  Serve
    /// it again as a MISSING fault, after reading the events.
    Gone,
}

/// After a non-fault event: go on, or stop serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Server {
    uffd: Arc<Uffd>,
    mem: Arc<GuestMemory>,
    snap: Arc<Snapshot>,
    mode: Mode,
    /// Where guest memory is mapped now (REMAP moves it).
    base: usize,
    pages: PageMap,
    stats: Stats,
    /// The injection and the offset of the page it hits.
    inject: Option<(Inject, usize)>,
    /// Fault events read so far, for the main thread to look at.
    events: Arc<AtomicU64>,
}

fn errno_of(e: &UffdError) -> Option<i32> {
    match e {
        UffdError::CopyFailed(errno)
        | UffdError::SystemError(errno)
        | UffdError::ZeropageFailed(errno) => Some(*errno as i32),
        UffdError::PartiallyCopied(_) => Some(libc::EAGAIN),
        _ => None,
    }
}

impl Server {
    /// pwrite() one whole page at `src` into the memory file: the page
    /// becomes present (guest_memfd publishes it only complete).
    fn pwrite_page(&self, src: *const u8, off: usize) -> Result<()> {
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
                return Err(e).with_context(|| format!("pwrite at {off:#x}"));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// One attempt to serve a fault at `page` (offset `off`), as `service`
    /// says: the snapshot's page, or a zero page for a removed one.
    fn serve(
        &mut self,
        kind: FaultKind,
        page: usize,
        off: usize,
        service: Service,
    ) -> Result<Outcome> {
        let dst: *mut libc::c_void = page as *mut _;
        let mut src = match service {
            Service::First | Service::Twice => self.snap.page(off),
            Service::AfterRemove => ZERO_PAGE.as_ptr(),
        };
        let mut wake = true;
        let mut bad_page;
        let inject = match self.inject {
            Some((what, at))
                if at == off && self.pages.state(off / PAGE_SIZE) == State::Pending =>
            {
                Some(what)
            }
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
            // Already in the file, not mapped here: just map it (a
            // removed page too: MADV_DONTNEED left it in the file).
            (Mode::Minor, FaultKind::Minor) => {
                self.uffd.r#continue(dst, PAGE_SIZE, wake).map(|_| ())
            }
        };
        let populated = match r {
            Ok(()) => true,
            Err(e) => match errno_of(&e) {
                Some(libc::EEXIST) => false,
                // The mapping is changing (or a partial copy of 0 bytes):
                // the uffd man page says try again; but while a REMOVE
                // (or other non-fault) event waits to be read, every
                // attempt fails so: read the events first.
                Some(libc::EAGAIN) => return Ok(Outcome::Retry),
                Some(libc::EFAULT) if self.mode == Mode::Minor => return Ok(Outcome::Gone),
                _ => {
                    let what = match (self.mode, kind) {
                        (Mode::Missing, _) => "UFFDIO_COPY",
                        _ => "UFFDIO_CONTINUE",
                    };
                    return Err(e).with_context(|| format!("{what} at {page:#x}"));
                }
            },
        };
        if populated && inject == Some(Inject::Twice) {
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
                return Err(std::io::Error::last_os_error()).context("inject: punch hole");
            }
        }
        if !populated || !wake {
            // EEXIST: the page is there (a racing fault or write put it
            // there); the faulting thread still waits to be woken.
            self.uffd
                .wake(dst, PAGE_SIZE)
                .with_context(|| format!("UFFDIO_WAKE at {page:#x}"))?;
        }
        Ok(if populated {
            Outcome::Populated
        } else {
            Outcome::Exists
        })
    }

    /// Serve one fault (or find that it must wait: `Outcome::Retry`,
    /// `Outcome::Gone`).
    fn fault(&mut self, f: &mut Fault) -> Result<Outcome> {
        let t = Instant::now();
        let page = f.addr & !(PAGE_SIZE - 1);
        if page < self.base || page >= self.base + self.mem.size {
            return Err(Error::FaultOutside { page });
        }
        let off = page - self.base;
        let idx = off / PAGE_SIZE;
        let service = self.pages.classify(idx);
        let outcome = self.serve(f.kind, page, off, service)?;
        match outcome {
            Outcome::Retry => self.stats.retried += 1,
            Outcome::Gone => {
                f.gone += 1;
                if f.gone > MAX_GONE {
                    return Err(Error::PageGone {
                        page,
                        times: MAX_GONE,
                    });
                }
                self.stats.retried += 1;
                f.kind = FaultKind::Missing;
            }
            Outcome::Populated | Outcome::Exists => {
                if service == Service::Twice {
                    // We populated this page before, nothing removed it,
                    // and it faulted again.
                    self.stats.served_twice += 1;
                    self.stats.first_twice.get_or_insert(off);
                }
                if outcome == Outcome::Exists {
                    self.stats.eexist += 1;
                } else {
                    self.pages.mark_served(idx);
                    self.stats.served = self.pages.served();
                    if service == Service::AfterRemove {
                        self.stats.after_remove += 1;
                        if f.kind == FaultKind::Missing {
                            self.stats.zero_pages += 1;
                        }
                    }
                }
            }
        }
        self.stats.busy += t.elapsed();
        Ok(outcome)
    }

    /// A non-fault event.
    fn event(&mut self, ev: Event) -> Result<Flow> {
        let size = self.mem.size;
        match ev {
            Event::Pagefault { .. } => unreachable!("faults are queued, not handled here"),
            Event::Remove { start, end } => {
                let (start, end) = (start as usize, end as usize);
                let range = match pages::overlap(self.base, size, start, end, PAGE_SIZE) {
                    Overlap::Outside => return Ok(Flow::Continue),
                    Overlap::Whole => 0..size / PAGE_SIZE,
                    Overlap::Part(r) => r,
                };
                self.stats.removes += 1;
                self.stats.removed_pages += self.pages.remove(range);
                Ok(Flow::Continue)
            }
            Event::Unmap { start, end } => {
                let (start, end) = (start as usize, end as usize);
                match pages::overlap(self.base, size, start, end, PAGE_SIZE) {
                    Overlap::Outside => Ok(Flow::Continue),
                    // Guest memory is gone: no fault can come any more.
                    Overlap::Whole => Ok(Flow::Stop),
                    Overlap::Part(_) => Err(Error::UnsupportedEvent {
                        event: "UNMAP",
                        start,
                        len: end - start,
                    }),
                }
            }
            Event::Remap { from, to, len } => {
                match pages::remap(self.base, size, from as usize, to as usize, len) {
                    Remap::Outside => Ok(Flow::Continue),
                    // The same pages, at a new address: faults come from
                    // there now.  (KVM's memory slot is the VMM's business.)
                    Remap::Moved(base) => {
                        self.base = base;
                        self.stats.remaps += 1;
                        Ok(Flow::Continue)
                    }
                    Remap::Split => Err(Error::UnsupportedEvent {
                        event: "REMAP",
                        start: from as usize,
                        len,
                    }),
                }
            }
            // Only with UFFD_FEATURE_EVENT_FORK, never asked for: this
            // handler serves no child.
            Event::Fork { .. } => Err(Error::UnsupportedEvent {
                event: "FORK",
                start: 0,
                len: 0,
            }),
        }
    }

    fn run(mut self, stop: EventFd) -> Result<Stats> {
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
        // Faults read and not served yet, in the order read.
        let mut faults: VecDeque<Fault> = VecDeque::new();
        // Rounds in a row that ended with a fault put off.
        let mut retries = 0;
        loop {
            // With a fault put off (EAGAIN, or its page gone), look again
            // even if no event comes: the mapping change may just be
            // ending.  At once after yielding the CPU (to the thread that
            // makes the change) the first times, then every 1 ms.
            let timeout = if faults.is_empty() {
                -1
            } else if retries < FAST_RETRIES {
                std::thread::yield_now();
                0
            } else {
                1
            };
            // SAFETY: two valid pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e).context("poll");
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(Error::PollRevents(fds[0].revents));
            }
            // Read everything pending.  Non-fault events take effect at
            // once, before any fault of the batch is served: a fault read
            // with a REMOVE of its page is served as a zero page (a fault
            // may reach the queue before the REMOVE it follows: Firecracker's
            // handler describes the race).
            while let Some(ev) = self.uffd.read_event().context("read(userfaultfd)")? {
                match ev {
                    Event::Pagefault { kind, rw, addr, .. } => {
                        self.events.fetch_add(1, Ordering::Relaxed);
                        match kind {
                            FaultKind::Missing => self.stats.missing_faults += 1,
                            FaultKind::Minor => self.stats.minor_faults += 1,
                        }
                        if rw == ReadWrite::Write {
                            self.stats.write_faults += 1;
                        }
                        faults.push_back(Fault {
                            kind,
                            addr: addr as usize,
                            gone: 0,
                        });
                    }
                    other => {
                        if self.event(other)? == Flow::Stop {
                            return Ok(self.stats);
                        }
                    }
                }
            }
            // Then the faults, in order; after an EAGAIN (or a page gone)
            // the rest waits for the next round.
            while let Some(f) = faults.front_mut() {
                match self.fault(f)? {
                    Outcome::Retry | Outcome::Gone => break,
                    Outcome::Populated | Outcome::Exists => {
                        faults.pop_front();
                        retries = 0;
                    }
                }
            }
            if !faults.is_empty() {
                retries = retries.saturating_add(1);
            }
            // Stopped after the vCPU is done: nothing can still wait.
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
    thread: JoinHandle<Result<Stats>>,
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
    ) -> Result<Handler> {
        let stop = EventFd::new(libc::EFD_CLOEXEC).context("eventfd")?;
        let stop2 = stop.try_clone().context("eventfd dup")?;
        let pages = mem.size / PAGE_SIZE;
        let events = Arc::new(AtomicU64::new(0));
        let server = Server {
            uffd,
            base: mem.addr as usize,
            mem,
            snap,
            mode,
            pages: PageMap::new(pages),
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
            .context("spawn handler")?;
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
    pub fn finish(self) -> Result<Stats> {
        self.stop.write(1).context("eventfd write")?;
        self.thread.join().map_err(|_| Error::HandlerPanicked)?
    }
}

/// The handler on a memfd with the host's userfaultfd (no KVM, no
/// guest_memfd): this thread plays the guest, touching pages and giving
/// some back with madvise().  Skipped where userfaultfd is not allowed.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{self, VcpuState};

    const PAGES: usize = 16;

    fn word(off: usize) -> u64 {
        0xa5a5_0000_0000_0000 | off as u64
    }

    /// A restore of a memfd from a snapshot of PAGES patterned pages.
    struct Setup {
        path: std::path::PathBuf,
        mem: Arc<GuestMemory>,
        handler: Option<Handler>,
    }

    impl Setup {
        fn new(name: &str, mode: Mode, inject: Option<(Inject, usize)>) -> Option<Setup> {
            let probe = UffdBuilder::new()
                .user_mode_only(false)
                .require_features(FeatureFlags::EVENT_REMOVE)
                .create();
            if let Err(e) = probe {
                eprintln!("skipped: no userfaultfd here ({e:?})");
                return None;
            }
            let size = PAGES * PAGE_SIZE;
            let mut mem = vec![0u8; size];
            for (i, w) in mem.chunks_exact_mut(8).enumerate() {
                w.copy_from_slice(&word(i * 8).to_le_bytes());
            }
            let path = std::env::temp_dir()
                .join(format!("gmem-vmm-test-{}-{name}.snap", std::process::id()));
            let state = VcpuState {
                regs: Default::default(),
                sregs: Default::default(),
                fpu: Default::default(),
            };
            snapshot::save(path.to_str().unwrap(), 1, &state, &mem).unwrap();
            let snap = Arc::new(Snapshot::open(path.to_str().unwrap()).unwrap());
            let mem = Arc::new(GuestMemory::new(Backend::Memfd, size, None).unwrap());
            let uffd = Arc::new(register(&mem, Backend::Memfd, mode).unwrap());
            let handler = Handler::spawn(uffd, mem.clone(), snap, mode, inject).unwrap();
            Some(Setup {
                path,
                mem,
                handler: Some(handler),
            })
        }

        /// The first word of `page`, read through the registered mapping
        /// (a fault the handler serves, if the page is not mapped).
        fn read(&self, page: usize) -> u64 {
            // SAFETY: inside the mapping.
            unsafe { std::ptr::read_volatile(self.mem.addr.add(page * PAGE_SIZE).cast::<u64>()) }
        }

        fn madvise(&self, pages: Range<usize>, advice: libc::c_int) {
            // SAFETY: a range of our own mapping.
            let r = unsafe {
                libc::madvise(
                    self.mem.addr.add(pages.start * PAGE_SIZE).cast(),
                    pages.len() * PAGE_SIZE,
                    advice,
                )
            };
            assert_eq!(r, 0, "madvise: {}", std::io::Error::last_os_error());
        }

        fn finish(mut self) -> Stats {
            self.handler.take().unwrap().finish().unwrap()
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    use std::ops::Range;

    fn remove_then_refault(mode: Mode) {
        let Some(s) = Setup::new(&format!("remove-{mode}"), mode, None) else {
            return;
        };
        for p in 0..8 {
            assert_eq!(s.read(p), word(p * PAGE_SIZE));
        }
        // A balloon gives pages 2..4 back (served) and 10 (never touched):
        // MADV_REMOVE punches them out of the file, after the handler has
        // read the REMOVE event; the next touch gets a zero page.
        s.madvise(2..4, libc::MADV_REMOVE);
        s.madvise(10..11, libc::MADV_REMOVE);
        assert_eq!(s.read(2), 0);
        assert_eq!(s.read(3), 0);
        assert_eq!(s.read(10), 0);
        // Untouched by the REMOVE: still mapped, no fault.
        assert_eq!(s.read(4), word(4 * PAGE_SIZE));
        // MADV_DONTNEED of a shared mapping drops the mapping only: the
        // file keeps the page.  MISSING mode: no fault at all; MINOR mode:
        // a MINOR fault, served by mapping what the file holds.
        s.madvise(5..6, libc::MADV_DONTNEED);
        assert_eq!(s.read(5), word(5 * PAGE_SIZE));
        let st = s.finish();
        assert_eq!(st.served_twice, 0, "{st:?}");
        assert_eq!(st.removes, 3, "{st:?}");
        assert_eq!(st.removed_pages, 4, "{st:?}");
        assert_eq!(st.zero_pages, 3, "{st:?}");
        assert_eq!(st.served, 9, "pages 0..8 and 10: {st:?}");
        match mode {
            Mode::Missing => {
                assert_eq!(st.after_remove, 3, "{st:?}");
                assert_eq!((st.missing_faults, st.minor_faults), (11, 0), "{st:?}");
            }
            Mode::Minor => {
                assert_eq!(st.after_remove, 4, "{st:?}");
                assert_eq!((st.missing_faults, st.minor_faults), (11, 1), "{st:?}");
            }
        }
    }

    #[test]
    fn missing_mode_serves_removed_pages_as_zero_pages() {
        remove_then_refault(Mode::Missing);
    }

    #[test]
    fn minor_mode_serves_removed_pages_as_zero_pages() {
        remove_then_refault(Mode::Minor);
    }

    /// A balloon removing pages while the guest faults on them: the
    /// handler gets EAGAIN while a REMOVE waits in the queue, must read it
    /// (not retry in place, which never ends), and must not count a page
    /// served again after a REMOVE as served twice.
    #[test]
    fn faults_racing_removes() {
        for mode in [Mode::Missing, Mode::Minor] {
            let Some(s) = Setup::new(&format!("race-{mode}"), mode, None) else {
                return;
            };
            let s = Arc::new(s);
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watchdog = {
                let done = done.clone();
                std::thread::spawn(move || {
                    for _ in 0..600 {
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    eprintln!("faults_racing_removes ({mode}): stuck for 60 s");
                    std::process::abort();
                })
            };
            let balloon = {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let p = 1 + i % (PAGES - 2);
                        s.madvise(p..p + 2, libc::MADV_REMOVE);
                    }
                })
            };
            let mut rounds = 0;
            while !balloon.is_finished() || rounds == 0 {
                for p in 0..PAGES {
                    let w = s.read(p);
                    assert!(w == 0 || w == word(p * PAGE_SIZE), "page {p}: {w:#x}");
                }
                rounds += 1;
            }
            balloon.join().unwrap();
            done.store(true, Ordering::Relaxed);
            watchdog.join().unwrap();
            let st = Arc::into_inner(s).unwrap().finish();
            eprintln!("faults_racing_removes ({mode}): {rounds} rounds, {st:?}");
            assert_eq!(st.served_twice, 0, "{mode}: {st:?}");
            assert_eq!(st.removes, 2000, "{mode}: {st:?}");
            assert_eq!(st.served, PAGES as u64, "{mode}: {st:?}");
        }
    }

    #[test]
    fn a_hole_punch_is_no_remove_served_twice_is_seen() {
        for mode in [Mode::Missing, Mode::Minor] {
            let off = 3 * PAGE_SIZE;
            let Some(s) = Setup::new(&format!("twice-{mode}"), mode, Some((Inject::Twice, off)))
            else {
                return;
            };
            assert_eq!(s.read(3), word(off));
            assert_eq!(s.read(4), word(4 * PAGE_SIZE));
            let st = s.finish();
            assert_eq!(st.served_twice, 1, "{mode}: {st:?}");
            assert_eq!(st.first_twice, Some(off), "{mode}: {st:?}");
            assert_eq!(st.removes, 0, "{mode}: {st:?}");
            assert_eq!(st.served, 2, "{mode}: {st:?}");
        }
    }
}
