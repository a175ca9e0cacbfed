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
//! restore is for scripts.  Exit status 0 only if every step passed.

mod abi;
mod guest;
mod handler;
mod memory;
mod snapshot;
mod vm;

use std::sync::Arc;
use std::time::Instant;

use handler::{Handler, Inject, Mode};
use memory::{Backend, GuestMemory, PAGE_SIZE};
use snapshot::Snapshot;
use vm::{Stop, Vm};

const USAGE: &str = "\
usage: gmem-vmm demo|record|restore [options]
  demo      record, then restore for every backend and mode (the default)
  record    boot the guest, let it fill its memory, save the snapshot
  restore   restore the snapshot lazily for every backend and mode
options (a later one wins; lists are comma-separated):
  --mem-mib N           guest memory in MiB for record (default 64)
  --mode LIST           restore modes: missing, minor (default: both)
  --backend LIST        guest memory: gmem, memfd (default: demo both, else gmem)
  --snapshot PATH       snapshot file (default /tmp/gmem-vmm.snap)
  --seed N              seed of the guest's pattern
  --keep                demo: keep the snapshot file
  --rm                  restore: remove the snapshot file at the end
  --inject corrupt|twice  fault injection, to test the checks: serve one page
                        corrupted, or punch it out after serving it so that it
                        is served twice; each restore step then passes only if
                        the failure is detected";

struct Opts {
    cmd: String,
    mem_mib: u64,
    modes: Vec<Mode>,
    backends: Option<Vec<Backend>>,
    snapshot: String,
    seed: u64,
    keep: bool,
    rm: bool,
    inject: Option<Inject>,
}

fn parse_list<T>(s: &str, f: fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| f(x).ok_or_else(|| format!("unknown {what} '{x}'")))
        .collect()
}

fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: '{s}'"))
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        cmd: "demo".into(),
        mem_mib: 64,
        modes: vec![Mode::Missing, Mode::Minor],
        backends: None,
        snapshot: "/tmp/gmem-vmm.snap".into(),
        seed: 0x6a09_e667_f3bc_c908,
        keep: false,
        rm: false,
        inject: None,
    };
    let mut first = true;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "demo" | "record" | "restore" if first => o.cmd = a.clone(),
            "--mem-mib" => o.mem_mib = parse_num(&val()?)?,
            "--mode" | "--modes" => o.modes = parse_list(&val()?, Mode::parse, "mode")?,
            "--backend" | "--backends" => {
                o.backends = Some(parse_list(&val()?, Backend::parse, "backend")?)
            }
            "--snapshot" => o.snapshot = val()?,
            "--seed" => o.seed = parse_num(&val()?)?,
            "--keep" => o.keep = true,
            "--rm" => o.rm = true,
            "--inject" => {
                let v = val()?;
                o.inject = Some(Inject::parse(&v).ok_or_else(|| format!("unknown --inject '{v}'"))?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument '{a}'\n{USAGE}")),
        }
        first = false;
    }
    let max = guest::MAX_MEM >> 20;
    if o.mem_mib < 1 || o.mem_mib > max {
        return Err(format!("--mem-mib must be 1..{max}"));
    }
    Ok(o)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The guest's verdict, explained with the registers it leaves.
fn verdict(stop: Stop, vm: &Vm) -> Result<(), String> {
    let regs = vm
        .vcpu
        .get_regs()
        .map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    match stop {
        Stop::Verdict(abi::VERDICT_PASS) => Ok(()),
        Stop::Verdict(abi::VERDICT_BAD_WORD) => Err(format!(
            "guest: wrong word at {:#x}: found {:#018x}, expected {:#018x}",
            regs.rbx, regs.rcx, regs.r11
        )),
        Stop::Verdict(abi::VERDICT_BAD_CSUM) => Err(format!(
            "guest: checksum {:#x} differs from the saved one (memory {:#x}?, r15 {:#x})",
            regs.rbx,
            abi::CSUM_ADDR,
            regs.r15
        )),
        other => Err(format!(
            "guest: unexpected stop {other:?} at rip {:#x}",
            regs.rip
        )),
    }
}

/// Record: a new VM over `backend` memory, the payload fills it, the VMM
/// saves memory and vCPU state at the payload's "snapshot now", then lets
/// the guest verify its own memory once (no userfaultfd involved) so that
/// a restore failure is known not to be the payload's.
fn record(o: &Opts, backend: Backend) -> Result<String, String> {
    let size = (o.mem_mib << 20) as usize;
    let t0 = Instant::now();
    let mut mem = GuestMemory::new(backend, size).map_err(|e| e.to_string())?;
    // SAFETY: no vCPU yet.
    guest::load(unsafe { mem.as_mut_slice() });
    let mut vm = Vm::new(&mem)?;
    let sregs = vm
        .vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    vm.vcpu
        .set_sregs(&guest::long_mode_sregs(sregs))
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    vm.vcpu
        .set_regs(&guest::entry_regs(size as u64, o.seed))
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;

    let t_fill = Instant::now();
    match vm.run()? {
        Stop::Snapshot => {}
        other => return Err(format!("guest stopped with {other:?} before its snapshot")),
    }
    let fill_s = t_fill.elapsed().as_secs_f64();
    let state = vm.complete_io_and_save()?;
    let t_save = Instant::now();
    // SAFETY: the vCPU is stopped.
    snapshot::save(&o.snapshot, o.seed, &state, unsafe { mem.as_slice() })
        .map_err(|e| format!("save {}: {e}", o.snapshot))?;
    let save_s = t_save.elapsed().as_secs_f64();

    let t_check = Instant::now();
    let stop = vm.run()?;
    verdict(stop, &vm).map_err(|e| format!("self-check after record: {e}"))?;
    let check_s = t_check.elapsed().as_secs_f64();
    println!(
        "# record {}: {} MiB, guest filled it in {fill_s:.2} s, snapshot {} saved in {save_s:.2} s, \
         guest self-check PASS in {check_s:.2} s",
        backend.name(),
        o.mem_mib,
        o.snapshot
    );
    println!(
        "RESULT step=record backend={} mem_mib={} fill_s={fill_s:.3} save_s={save_s:.3} \
         check_s={check_s:.3} wall_s={:.3}",
        backend.name(),
        o.mem_mib,
        t0.elapsed().as_secs_f64()
    );
    Ok(format!(
        "record {} MiB on {} (guest self-check passed)",
        o.mem_mib,
        backend.name()
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

/// Restore: a new VM and a new memory file, registered with userfaultfd in
/// `mode`; the handler thread serves every fault from the snapshot; the
/// vCPU resumes from the saved state and verifies all of its memory.
fn restore(
    o: &Opts,
    backend: Backend,
    mode: Mode,
    inject: Option<(Inject, usize)>,
) -> Result<String, String> {
    let wall = Instant::now();
    let snap = Arc::new(Snapshot::open(&o.snapshot).map_err(|e| e.to_string())?);
    let size = snap.mem_size;
    let mem = Arc::new(GuestMemory::new(backend, size).map_err(|e| e.to_string())?);
    let uffd = Arc::new(handler::register(&mem, backend, mode)?);
    let handler = Handler::spawn(uffd, mem.clone(), snap.clone(), mode, inject)?;
    let mut vm = Vm::new(&mem)?;
    vm.set_state(&snap.state)?;

    // KVM's own access to guest memory, before the vCPU runs: KVM_TRANSLATE
    // walks the guest's page tables with copy_from_user() in this thread;
    // each page-table page faults and the handler serves it like a vCPU
    // fault.
    let rip = snap.state.regs.rip;
    let before = handler.events();
    let tr = vm
        .vcpu
        .translate_gva(rip)
        .map_err(|e| format!("KVM_TRANSLATE: {e}"))?;
    let kvm_faults = handler.events() - before;
    if tr.valid == 0 || tr.physical_address != rip {
        return Err(format!(
            "KVM_TRANSLATE({rip:#x}): valid {} gpa {:#x}, expected the identity map",
            tr.valid, tr.physical_address
        ));
    }

    let t0 = Instant::now();
    let stop = vm.run();
    let restore_s = t0.elapsed().as_secs_f64();
    let stop = stop?;
    let guest = verdict(stop, &vm);
    drop(vm);
    let st = handler.finish()?;
    let wall_s = wall.elapsed().as_secs_f64();
    let memcpy = memcpy_mib_s(&snap);

    let pages = (size / PAGE_SIZE) as u64;
    let served_bytes = st.served * PAGE_SIZE as u64;
    let rate = mib(served_bytes) / restore_s.max(1e-9);
    let name = format!("{}/{}", backend.name(), mode.name());
    println!(
        "# restore {name} (seed {:#x}): {pages} pages, {} served ({:.1} MiB), {} never touched",
        snap.seed,
        st.served,
        mib(served_bytes),
        pages - st.served
    );
    println!(
        "#   faults: {} missing, {} minor ({} on write); {} EEXIST (woken); {} served twice; \
         {kvm_faults} from KVM_TRANSLATE's page walk before the vCPU ran",
        st.missing_faults, st.minor_faults, st.write_faults, st.eexist, st.served_twice
    );
    println!(
        "#   guest {} after {restore_s:.2} s: restore {rate:.1} MiB/s, handler busy {:.2} s; \
         wall {wall_s:.2} s; memcpy {memcpy:.0} MiB/s",
        if guest.is_ok() { "PASS" } else { "FAIL" },
        st.busy.as_secs_f64()
    );
    println!(
        "RESULT step=restore backend={} mode={} mem_mib={} pages={pages} served={} untouched={} \
         missing_faults={} minor_faults={} write_faults={} eexist={} served_twice={} \
         kvm_translate_faults={kvm_faults} restore_s={restore_s:.3} restore_mib_s={rate:.1} handler_busy_s={:.3} wall_s={wall_s:.3} \
         memcpy_mib_s={memcpy:.0} verdict={}",
        backend.name(),
        mode.name(),
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
    guest?;
    if st.served_twice != 0 {
        return Err(format!(
            "{} page(s) served twice, the first at offset {:#x}",
            st.served_twice,
            st.first_twice.unwrap_or(0)
        ));
    }
    if st.served + 1 > pages || st.served == 0 {
        return Err(format!("{} pages served of {pages}", st.served));
    }
    Ok(format!("restore {name}: guest verified {} MiB", size >> 20))
}

/// A restore with a fault injected: it must fail, for the reason injected.
fn restore_injected(
    o: &Opts,
    backend: Backend,
    mode: Mode,
    what: Inject,
) -> Result<String, String> {
    let snap = Snapshot::open(&o.snapshot).map_err(|e| e.to_string())?;
    // A page in the middle of the data area.
    let data = snap.mem_size - abi::DATA_START as usize;
    let off = (abi::DATA_START as usize + data / 2) & !(PAGE_SIZE - 1);
    drop(snap);
    let name = format!(
        "{}/{} with --inject {}",
        backend.name(),
        mode.name(),
        what.name()
    );
    let expect = match what {
        Inject::Corrupt => format!("wrong word at {:#x}", off + PAGE_SIZE / 2),
        Inject::Twice => format!("served twice, the first at offset {off:#x}"),
    };
    match restore(o, backend, mode, Some((what, off))) {
        Ok(_) => Err(format!("restore {name} at {off:#x} passed")),
        Err(e) if e.contains(&expect) => Ok(format!("restore {name}: detected ({e})")),
        Err(e) => Err(format!("restore {name}: failed otherwise: {e}")),
    }
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gmem-vmm: {e}");
            std::process::exit(2);
        }
    };
    let do_record = o.cmd != "restore";
    let do_restore = o.cmd != "record";
    let backends = o.backends.clone().unwrap_or_else(|| match o.cmd.as_str() {
        "demo" => vec![Backend::Gmem, Backend::Memfd],
        _ => vec![Backend::Gmem],
    });
    let mut steps: Vec<Box<dyn Fn() -> Result<String, String>>> = Vec::new();
    let o = &o;
    if do_record {
        // Record on guest_memfd, or on the one backend asked for.
        let b = if backends.len() == 1 {
            backends[0]
        } else {
            Backend::Gmem
        };
        steps.push(Box::new(move || record(o, b)));
    }
    if do_restore {
        for &b in &backends {
            for &m in &o.modes {
                steps.push(match o.inject {
                    None => Box::new(move || restore(o, b, m, None)),
                    Some(what) => Box::new(move || restore_injected(o, b, m, what)),
                });
            }
        }
    }
    println!("TAP version 13");
    println!("1..{}", steps.len());
    let mut failed = 0;
    for (i, step) in steps.iter().enumerate() {
        match step() {
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
    if (o.cmd == "demo" && !o.keep) || (o.cmd == "restore" && o.rm) {
        let _ = std::fs::remove_file(&o.snapshot);
    }
    println!("# {} passed, {failed} failed", steps.len() - failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
