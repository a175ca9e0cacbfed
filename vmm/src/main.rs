// SPDX-License-Identifier: GPL-2.0
//! gmem-vmm: a small KVM VMM whose guest memory is a guest_memfd mapping,
//! that records a guest to a snapshot file and restores it lazily through
//! userfaultfd (Documentation/vmm-demo.rst).
//!
//!   gmem-vmm demo    record, then restore in every mode and backend asked
//!   gmem-vmm record  run the guest until it has filled its memory, save
//!   gmem-vmm restore restore from the snapshot file, verify, report
//!
//! The output is TAP: one test per step; a `RESULT key=value ...` line per
//! restore is for scripts, and a `SUMMARY key=value ...` line per restore
//! step, all at the end, for the terminal.  Exit status 0 only if every
//! step passed.

mod abi;
mod cli;
mod error;
mod guest;
mod handler;
mod memory;
mod pages;
mod snapshot;
mod vm;

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use cli::{Command, Opts};
use error::{Context, Error, GuestFailure, Result};
use handler::{Handler, Inject, Mode, Stats};
use memory::{Backend, PAGE_SIZE};
use snapshot::Snapshot;
use vm::{Stop, Vm};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The guest's verdict, explained with the registers it leaves.
fn verdict(stop: Stop, vm: &Vm) -> Result<()> {
    let regs = vm.vcpu.get_regs().context("KVM_GET_REGS")?;
    let failure = match stop {
        Stop::Verdict(abi::VERDICT_PASS) => return Ok(()),
        Stop::Verdict(abi::VERDICT_BAD_WORD) => GuestFailure::BadWord {
            addr: regs.rbx,
            found: regs.rcx,
            expected: regs.r11,
        },
        Stop::Verdict(abi::VERDICT_BAD_CSUM) => GuestFailure::BadChecksum {
            sum: regs.rbx,
            r15: regs.r15,
        },
        stop => GuestFailure::UnexpectedStop {
            stop,
            rip: regs.rip,
        },
    };
    Err(failure.into())
}

/// Record: a new VM over `backend` memory, the payload fills it, the VMM
/// saves memory and vCPU state at the payload's "snapshot now", then lets
/// the guest verify its own memory once (no userfaultfd involved) so that
/// a restore failure is known not to be the payload's.
fn record(o: &Opts, backend: Backend) -> Result<String> {
    let size = (o.mem_mib << 20) as usize;
    let t0 = Instant::now();
    let (mut vm, mut mem) = Vm::new(backend, size)?;
    // SAFETY: the vCPU has not run yet.
    guest::load(unsafe { mem.as_mut_slice() });
    let sregs = vm.vcpu.get_sregs().context("KVM_GET_SREGS")?;
    vm.vcpu
        .set_sregs(&guest::long_mode_sregs(sregs))
        .context("KVM_SET_SREGS")?;
    vm.vcpu
        .set_regs(&guest::entry_regs(size as u64, o.seed))
        .context("KVM_SET_REGS")?;

    let t_fill = Instant::now();
    match vm.run()? {
        Stop::Snapshot => {}
        other => return Err(Error::StopBeforeSnapshot(other)),
    }
    let fill_s = t_fill.elapsed().as_secs_f64();
    let state = vm.complete_io_and_save()?;
    let t_save = Instant::now();
    // SAFETY: the vCPU is stopped.
    snapshot::save(&o.snapshot, o.seed, &state, unsafe { mem.as_slice() })
        .with_context(|| format!("save {}", o.snapshot))?;
    let save_s = t_save.elapsed().as_secs_f64();

    let t_check = Instant::now();
    let stop = vm.run()?;
    verdict(stop, &vm).context("self-check after record")?;
    let check_s = t_check.elapsed().as_secs_f64();
    println!(
        "# record {backend}: {} MiB, guest filled it in {fill_s:.2} s, snapshot {} saved in {save_s:.2} s, \
         guest self-check PASS in {check_s:.2} s",
        o.mem_mib, o.snapshot
    );
    println!(
        "RESULT step=record backend={backend} mem_mib={} fill_s={fill_s:.3} save_s={save_s:.3} \
         check_s={check_s:.3} wall_s={:.3}",
        o.mem_mib,
        t0.elapsed().as_secs_f64()
    );
    Ok(format!(
        "record {} MiB on {backend} (guest self-check passed)",
        o.mem_mib
    ))
}

/// MiB/s of a plain memcpy of the snapshot's memory into a buffer of the
/// same size, in this process: the bound a restore is compared against.
fn memcpy_mib_s(snap: &Snapshot) -> f64 {
    let src = snap.as_slice();
    let mut dst = vec![1u8; src.len()];
    let mut best = f64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        dst.copy_from_slice(src);
        std::hint::black_box(&dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    mib(src.len() as u64) / best.max(1e-9)
}

/// A restore that ran to the guest's verdict: what it measured, not yet
/// judged.
struct Restored {
    name: String,
    mem_mib: u64,
    pages: u64,
    stats: Stats,
    /// MiB served per second of the vCPU's run.
    rate: f64,
    /// MiB/s of a plain memcpy of the same memory.
    memcpy: f64,
    /// The guest's own verdict.
    guest: Result<()>,
}

impl Restored {
    /// The step's result: the guest's verdict, no page served twice, a
    /// plausible number of pages served.
    fn check(self) -> Result<String> {
        self.guest?;
        let st = &self.stats;
        if st.served_twice != 0 {
            return Err(Error::ServedTwice {
                count: st.served_twice,
                first: st.first_twice.unwrap_or(0),
            });
        }
        if st.served + 1 > self.pages || st.served == 0 {
            return Err(Error::ServedCount {
                served: st.served,
                pages: self.pages,
            });
        }
        Ok(format!(
            "restore {}: guest verified {} MiB",
            self.name, self.mem_mib
        ))
    }
}

/// Restore: a new VM and a new memory file, registered with userfaultfd in
/// `mode`; the handler thread serves every fault from the snapshot; the
/// vCPU resumes from the saved state and verifies all of its memory.
/// Prints the report; the verdict is left to `Restored::check`.
fn restore(
    o: &Opts,
    backend: Backend,
    mode: Mode,
    inject: Option<(Inject, usize)>,
) -> Result<Restored> {
    let wall = Instant::now();
    let snap = Arc::new(Snapshot::open(&o.snapshot)?);
    let size = snap.mem_size;
    let (mut vm, mem) = Vm::new(backend, size)?;
    let mem = Arc::new(mem);
    let uffd = Arc::new(handler::register(&mem, backend, mode)?);
    let handler = Handler::spawn(uffd, mem.clone(), snap.clone(), mode, inject)?;
    vm.set_state(&snap.state)?;

    // KVM's own access to guest memory, before the vCPU runs: KVM_TRANSLATE
    // walks the guest's page tables with copy_from_user() in this thread;
    // each page-table page faults and the handler serves it like a vCPU
    // fault.
    let rip = snap.state.regs.rip;
    let before = handler.events();
    let tr = vm.vcpu.translate_gva(rip).context("KVM_TRANSLATE")?;
    let kvm_faults = handler.events() - before;
    if tr.valid == 0 || tr.physical_address != rip {
        return Err(Error::Translate {
            rip,
            valid: tr.valid,
            gpa: tr.physical_address,
        });
    }

    let t0 = Instant::now();
    let before_run = handler.events();
    let stop = vm.run();
    let restore_s = t0.elapsed().as_secs_f64();
    // Faults raised while the vCPU ran: its own (stage-2, and KVM's accesses
    // for it), all served by the handler; the VMM itself touches nothing.
    let vcpu_faults = handler.events() - before_run;
    let stop = stop?;
    let guest = verdict(stop, &vm);
    drop(vm);
    let st = handler.finish()?;
    let wall_s = wall.elapsed().as_secs_f64();
    let memcpy = memcpy_mib_s(&snap);

    let pages = (size / PAGE_SIZE) as u64;
    let served_bytes = st.served * PAGE_SIZE as u64;
    let rate = mib(served_bytes) / restore_s.max(1e-9);
    let name = format!("{backend}/{mode}");
    println!(
        "# restore {name} (seed {:#x}): {pages} pages, {} served ({:.1} MiB), {} never touched",
        snap.seed,
        st.served,
        mib(served_bytes),
        pages - st.served
    );
    println!(
        "#   faults: {} missing, {} minor ({} on write); {} EEXIST (woken); {} served twice; \
         {vcpu_faults} while the vCPU ran, {kvm_faults} from KVM_TRANSLATE's page walk before",
        st.missing_faults, st.minor_faults, st.write_faults, st.eexist, st.served_twice
    );
    if st.removes + st.remaps + st.retried != 0 {
        println!(
            "#   events: {} REMOVE ({} pages), {} faults on removed pages served ({} as zero pages); \
             {} REMAP; {} serves retried after reading the events",
            st.removes, st.removed_pages, st.after_remove, st.zero_pages, st.remaps, st.retried
        );
    }
    println!(
        "#   guest {} after {restore_s:.2} s: restore {rate:.1} MiB/s, handler busy {:.2} s; \
         wall {wall_s:.2} s; memcpy {memcpy:.0} MiB/s",
        if guest.is_ok() { "PASS" } else { "FAIL" },
        st.busy.as_secs_f64()
    );
    println!(
        "RESULT step=restore backend={backend} mode={mode} mem_mib={} pages={pages} served={} untouched={} \
         missing_faults={} minor_faults={} write_faults={} eexist={} served_twice={} \
         vcpu_faults={vcpu_faults} kvm_translate_faults={kvm_faults} restore_s={restore_s:.3} restore_mib_s={rate:.1} handler_busy_s={:.3} wall_s={wall_s:.3} \
         memcpy_mib_s={memcpy:.0} verdict={}",
        size >> 20,
        st.served,
        pages - st.served,
        st.missing_faults,
        st.minor_faults,
        st.write_faults,
        st.eexist,
        st.served_twice,
        st.busy.as_secs_f64(),
        if guest.is_ok() { "pass" } else { "fail" }
    );
    Ok(Restored {
        name,
        mem_mib: (size >> 20) as u64,
        pages,
        stats: st,
        rate,
        memcpy,
        guest,
    })
}

/// A restore with a fault injected: it must fail, for the reason injected.
fn restore_injected(o: &Opts, backend: Backend, mode: Mode, what: Inject) -> Result<String> {
    let snap = Snapshot::open(&o.snapshot)?;
    // A page in the middle of the data area.
    let data = snap.mem_size - abi::DATA_START as usize;
    let off = (abi::DATA_START as usize + data / 2) & !(PAGE_SIZE - 1);
    drop(snap);
    let name = format!("{backend}/{mode} with --inject {what}");
    let detected = |e: &Error| match (what, e) {
        (Inject::Corrupt, Error::Guest(GuestFailure::BadWord { addr, .. })) => {
            *addr == (off + PAGE_SIZE / 2) as u64
        }
        (Inject::Twice, Error::ServedTwice { first, .. }) => *first == off,
        _ => false,
    };
    match restore(o, backend, mode, Some((what, off))).and_then(Restored::check) {
        Ok(_) => Err(Error::InjectNotDetected { name, off }),
        Err(e) if detected(&e) => Ok(format!("restore {name}: detected ({e})")),
        Err(e) => Err(Error::InjectOther {
            name,
            source: Box::new(e),
        }),
    }
}

/// `x` with 3 significant digits, in plain decimal notation.
fn significant3(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return format!("{x}");
    }
    let decimals = (2 - x.log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

/// One `SUMMARY` line: a restore step of a backend and mode, for the
/// terminal at the end of `make run` (Documentation/vmm-demo.rst, "The
/// summary").
struct Summary {
    backend: Backend,
    mode: Mode,
    /// None: the step failed before it measured anything.
    measured: Option<Measured>,
    pass: bool,
}

struct Measured {
    mem_mib: u64,
    pages: u64,
    served: u64,
    rate: f64,
    memcpy: f64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SUMMARY backend={} mode={}", self.backend, self.mode)?;
        match &self.measured {
            Some(m) => write!(
                f,
                " mem_mib={} pages={} served={} untouched={} restore_mib_s={:.1} \
                 memcpy_mib_s={:.0} memcpy_ratio={}",
                m.mem_mib,
                m.pages,
                m.served,
                m.pages - m.served,
                m.rate,
                m.memcpy,
                significant3(m.rate / m.memcpy.max(1e-9))
            )?,
            None => write!(
                f,
                " mem_mib=- pages=- served=- untouched=- restore_mib_s=- memcpy_mib_s=- \
                 memcpy_ratio=-"
            )?,
        }
        write!(f, " result={}", if self.pass { "pass" } else { "fail" })
    }
}

/// One TAP test.
#[derive(Clone, Copy, Debug)]
enum Step {
    Record(Backend),
    Restore(Backend, Mode),
    RestoreInjected(Backend, Mode, Inject),
}

impl Step {
    /// Run the step; a restore adds its line to `summary`.
    fn run(self, o: &Opts, summary: &mut Vec<Summary>) -> Result<String> {
        match self {
            Step::Record(backend) => record(o, backend),
            Step::Restore(backend, mode) => {
                let r = restore(o, backend, mode, None);
                let measured = r.as_ref().ok().map(|r| Measured {
                    mem_mib: r.mem_mib,
                    pages: r.pages,
                    served: r.stats.served,
                    rate: r.rate,
                    memcpy: r.memcpy,
                });
                let r = r.and_then(Restored::check);
                summary.push(Summary {
                    backend,
                    mode,
                    measured,
                    pass: r.is_ok(),
                });
                r
            }
            Step::RestoreInjected(backend, mode, what) => restore_injected(o, backend, mode, what),
        }
    }
}

fn main() {
    let o = match cli::parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gmem-vmm: {e}");
            std::process::exit(2);
        }
    };
    let do_record = o.cmd != Command::Restore;
    let do_restore = o.cmd != Command::Record;
    let backends = o.backends.clone().unwrap_or_else(|| match o.cmd {
        Command::Demo => vec![Backend::Gmem, Backend::Memfd],
        _ => vec![Backend::Gmem],
    });
    let mut steps = Vec::new();
    if do_record {
        // Record on guest_memfd, or on the one backend asked for.
        let b = if backends.len() == 1 {
            backends[0]
        } else {
            Backend::Gmem
        };
        steps.push(Step::Record(b));
    }
    if do_restore {
        for &b in &backends {
            for &m in &o.modes {
                steps.push(match o.inject {
                    None => Step::Restore(b, m),
                    Some(what) => Step::RestoreInjected(b, m, what),
                });
            }
        }
    }
    println!("TAP version 13");
    println!("1..{}", steps.len());
    let mut failed = 0;
    let mut summary = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step.run(&o, &mut summary) {
            Ok(desc) => println!("ok {} {desc}", i + 1),
            Err(e) => {
                failed += 1;
                println!("# {e}");
                println!("not ok {} step {} failed", i + 1, i + 1);
                if do_record && i == 0 {
                    // Nothing to restore from.
                    println!("Bail out! record failed");
                    std::process::exit(1);
                }
            }
        }
    }
    if (o.cmd == Command::Demo && !o.keep) || (o.cmd == Command::Restore && o.rm) {
        let _ = std::fs::remove_file(&o.snapshot);
    }
    for line in &summary {
        println!("{line}");
    }
    println!("# {} passed, {failed} failed", steps.len() - failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits() {
        assert_eq!(significant3(0.000_575_4), "0.000575");
        assert_eq!(significant3(0.8), "0.800");
        assert_eq!(significant3(1.234_5), "1.23");
        assert_eq!(significant3(123.4), "123");
        assert_eq!(significant3(12_345.6), "12346");
        assert_eq!(significant3(0.0), "0");
    }

    #[test]
    fn summary_line() {
        let s = Summary {
            backend: Backend::Gmem,
            mode: Mode::Missing,
            measured: Some(Measured {
                mem_mib: 8,
                pages: 2048,
                served: 2037,
                rate: 0.43,
                memcpy: 696.2,
            }),
            pass: true,
        };
        assert_eq!(
            s.to_string(),
            "SUMMARY backend=gmem mode=missing mem_mib=8 pages=2048 served=2037 untouched=11 \
             restore_mib_s=0.4 memcpy_mib_s=696 memcpy_ratio=0.000618 result=pass"
        );
        let s = Summary {
            backend: Backend::Memfd,
            mode: Mode::Minor,
            measured: None,
            pass: false,
        };
        assert_eq!(
            s.to_string(),
            "SUMMARY backend=memfd mode=minor mem_mib=- pages=- served=- untouched=- \
             restore_mib_s=- memcpy_mib_s=- memcpy_ratio=- result=fail"
        );
    }
}
