// SPDX-License-Identifier: GPL-2.0
//! The VMM's errors: one type for every step, so that a caller tells what
//! failed by matching on it (the fault-injection steps do), and a message
//! for the TAP comment that reports it.
//!
//! Errors of the crates underneath come in through `From` (`io`,
//! `kvm-ioctls`, `userfaultfd`), usually with the call that failed attached
//! by [`Context`]: `vcpu.get_regs().context("KVM_GET_REGS")?` reads
//! "KVM_GET_REGS: <errno text>".

use std::fmt;
use std::io;

use userfaultfd::IoctlFlags;

use crate::abi::CSUM_ADDR;
use crate::vm::Stop;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of `FromStr` for the names on the command line (modes,
/// backends, injections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName(pub String);

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown name '{}'", self.0)
    }
}

impl std::error::Error for UnknownName {}

/// Why the restored (or recorded) guest did not pass its own check: its
/// verdict and the registers it left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFailure {
    /// A word of the data area differs from the pattern.
    BadWord {
        addr: u64,
        found: u64,
        expected: u64,
    },
    /// Every word was right, but the checksum differs from a saved copy.
    BadChecksum { sum: u64, r15: u64 },
    /// The vCPU stopped without a verdict, or with an unknown one.
    UnexpectedStop { stop: Stop, rip: u64 },
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestFailure::BadWord {
                addr,
                found,
                expected,
            } => write!(
                f,
                "guest: wrong word at {addr:#x}: found {found:#018x}, expected {expected:#018x}"
            ),
            GuestFailure::BadChecksum { sum, r15 } => write!(
                f,
                "guest: checksum {sum:#x} differs from the saved one (memory {CSUM_ADDR:#x}?, r15 {r15:#x})"
            ),
            GuestFailure::UnexpectedStop { stop, rip } => {
                write!(f, "guest: unexpected stop {stop:?} at rip {rip:#x}")
            }
        }
    }
}

impl std::error::Error for GuestFailure {}

#[derive(Debug)]
pub enum Error {
    /// A system call outside KVM and userfaultfd (the message of the
    /// io::Error says which, when it was made with one).
    Io(io::Error),
    /// A KVM ioctl.
    Kvm(kvm_ioctls::Error),
    /// A userfaultfd call.
    Uffd(userfaultfd::Error),
    /// `what` failed because of `source`.
    Context { what: String, source: Box<Error> },

    /// KVM_RUN failed; `at`: the vCPU's registers.
    KvmRun {
        source: kvm_ioctls::Error,
        at: String,
    },
    /// The vCPU exited for something the payload never does.
    UnexpectedExit { exit: String, at: String },
    /// KVM_RUN with `immediate_exit` set failed otherwise than with EINTR.
    ImmediateExit(kvm_ioctls::Error),
    /// KVM_RUN with `immediate_exit` set ran the guest.
    ImmediateExitEntered,
    /// The recorded guest stopped before asking for its snapshot.
    StopBeforeSnapshot(Stop),
    /// KVM_TRANSLATE of the saved RIP is not the identity map.
    Translate { rip: u64, valid: u8, gpa: u64 },

    /// The guest's own check failed.
    Guest(GuestFailure),
    /// Pages the handler populated more than once (`first`: the offset of
    /// the first one).
    ServedTwice { count: u64, first: usize },
    /// A number of pages served that cannot be right.
    ServedCount { served: u64, pages: u64 },

    /// UFFDIO_REGISTER does not offer the ioctls the mode needs.
    RegisterIoctls { have: IoctlFlags, need: IoctlFlags },
    /// poll() reported an error condition on the userfaultfd.
    PollRevents(i16),
    /// UFFDIO_CONTINUE kept finding the page gone from the file (EFAULT)
    /// after the handler had written it there.
    PageGone { page: usize, times: u32 },
    /// A fault outside the registered guest memory.
    FaultOutside { page: usize },
    /// A userfaultfd event the handler cannot follow: an `mremap()` or
    /// `munmap()` of part of guest memory, or a `fork()`.
    UnsupportedEvent {
        event: &'static str,
        start: usize,
        len: usize,
    },
    /// The handler thread panicked.
    HandlerPanicked,

    /// `--inject`: the restore passed although a fault was injected.
    InjectNotDetected { name: String, off: usize },
    /// `--inject`: the restore failed, but not for the reason injected.
    InjectOther { name: String, source: Box<Error> },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Kvm(e) => write!(f, "{e}"),
            // The crate's Display leaves the errno out ("System error"):
            // its Debug form has it ("SystemError(EINVAL)").
            Error::Uffd(e) => write!(f, "{e:?}"),
            Error::Context { what, source } => write!(f, "{what}: {source}"),
            Error::KvmRun { source, at } => write!(f, "KVM_RUN: {source} at {at}"),
            Error::UnexpectedExit { exit, at } => write!(f, "unexpected vCPU exit {exit} at {at}"),
            Error::ImmediateExit(e) => write!(f, "KVM_RUN (immediate_exit): errno {}", e.errno()),
            Error::ImmediateExitEntered => {
                write!(f, "KVM_RUN with immediate_exit entered the guest")
            }
            Error::StopBeforeSnapshot(stop) => {
                write!(f, "guest stopped with {stop:?} before its snapshot")
            }
            Error::Translate { rip, valid, gpa } => write!(
                f,
                "KVM_TRANSLATE({rip:#x}): valid {valid} gpa {gpa:#x}, expected the identity map"
            ),
            Error::Guest(g) => write!(f, "{g}"),
            Error::ServedTwice { count, first } => write!(
                f,
                "{count} page(s) served twice, the first at offset {first:#x}"
            ),
            Error::ServedCount { served, pages } => {
                write!(f, "{served} pages served of {pages}")
            }
            Error::RegisterIoctls { have, need } => {
                write!(f, "UFFDIO_REGISTER: range ioctls {have:?} lack {need:?}")
            }
            Error::PollRevents(revents) => {
                write!(f, "poll on the userfaultfd: revents {revents:#x}")
            }
            Error::PageGone { page, times } => write!(
                f,
                "UFFDIO_CONTINUE at {page:#x}: EFAULT, the page left the file {times} times after pwrite"
            ),
            Error::FaultOutside { page } => write!(f, "fault at {page:#x} outside guest memory"),
            Error::UnsupportedEvent { event, start, len } => write!(
                f,
                "userfaultfd event {event} at {start:#x} (+{len:#x}): the handler cannot follow it"
            ),
            Error::HandlerPanicked => write!(f, "uffd handler panicked"),
            Error::InjectNotDetected { name, off } => {
                write!(f, "restore {name} at {off:#x} passed")
            }
            Error::InjectOther { name, source } => {
                write!(f, "restore {name}: failed otherwise: {source}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Kvm(e) | Error::KvmRun { source: e, .. } | Error::ImmediateExit(e) => Some(e),
            Error::Uffd(e) => Some(e),
            Error::Context { source, .. } | Error::InjectOther { source, .. } => Some(&**source),
            Error::Guest(g) => Some(g),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<kvm_ioctls::Error> for Error {
    fn from(e: kvm_ioctls::Error) -> Error {
        Error::Kvm(e)
    }
}

impl From<userfaultfd::Error> for Error {
    fn from(e: userfaultfd::Error) -> Error {
        Error::Uffd(e)
    }
}

impl From<GuestFailure> for Error {
    fn from(g: GuestFailure) -> Error {
        Error::Guest(g)
    }
}

/// Say which call failed: `r.context("KVM_GET_REGS")?`.
pub trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.with_context(|| what.to_string())
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Context {
            what: what(),
            source: Box::new(e.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_call_colon_cause() {
        let r: std::result::Result<(), io::Error> = Err(io::Error::from_raw_os_error(libc::ENOENT));
        let e = r.context("open /dev/kvm").unwrap_err();
        assert!(e.to_string().starts_with("open /dev/kvm: No such file"));
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn uffd_errors_show_their_debug_form() {
        // The crate's Display of this one is "Unrecognized event in
        // uffd_msg: 42"; of errno errors, "System error" alone.
        let e: Error = userfaultfd::Error::UnrecognizedEvent(42).into();
        assert_eq!(e.to_string(), "UnrecognizedEvent(42)");
    }

    #[test]
    fn messages_unchanged() {
        let e = Error::ServedTwice {
            count: 1,
            first: 0x201000,
        };
        assert_eq!(
            e.to_string(),
            "1 page(s) served twice, the first at offset 0x201000"
        );
        let g = GuestFailure::BadWord {
            addr: 0x201800,
            found: 1,
            expected: 2,
        };
        assert_eq!(
            Error::from(g).to_string(),
            "guest: wrong word at 0x201800: found 0x0000000000000001, expected 0x0000000000000002"
        );
    }
}
