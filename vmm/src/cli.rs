// SPDX-License-Identifier: GPL-2.0
//! The command line (Documentation/vmm-demo.rst, "Running it").

use std::fmt;
use std::str::FromStr;

use crate::error::UnknownName;
use crate::guest;
use crate::handler::{Inject, Mode};
use crate::memory::Backend;

pub const USAGE: &str = "\
usage: gmem-vmm demo|record|restore [options]
  demo      record, then restore for every backend and mode (the default)
  record    boot the guest, let it fill its memory, save the snapshot
  restore   restore the snapshot lazily for every backend and mode
options (a later one wins; lists are comma-separated):
  --mem-mib N           guest memory in MiB for record (default 64)
  --mode LIST           restore modes: missing, minor (default: both)
  --backend LIST        guest memory: gmem (KVM_CREATE_GUEST_MEMFD on the VM,
                        a KVM_MEM_GUEST_MEMFD slot), gmem-secret (the same,
                        out of the host's direct map: GUEST_MEMFD_FLAG_NO_DIRECT_MAP),
                        gmem-dev (/dev/guest_memfd, a plain slot), memfd
                        (default: demo gmem and memfd, else gmem)
  --snapshot PATH       snapshot file (default /tmp/gmem-vmm.snap)
  --seed N              seed of the guest's pattern
  --keep                demo: keep the snapshot file
  --rm                  restore: remove the snapshot file at the end
  --inject corrupt|twice  fault injection, to test the checks: serve one page
                        corrupted, or punch it out after serving it so that it
                        is served twice; each restore step then passes only if
                        the failure is detected";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Record, then restore for every backend and mode.
    Demo,
    Record,
    Restore,
}

impl FromStr for Command {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Command, UnknownName> {
        match s {
            "demo" => Ok(Command::Demo),
            "record" => Ok(Command::Record),
            "restore" => Ok(Command::Restore),
            _ => Err(UnknownName(s.into())),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Demo => "demo",
            Command::Record => "record",
            Command::Restore => "restore",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opts {
    pub cmd: Command,
    pub mem_mib: u64,
    pub modes: Vec<Mode>,
    pub backends: Option<Vec<Backend>>,
    pub snapshot: String,
    pub seed: u64,
    pub keep: bool,
    pub rm: bool,
    pub inject: Option<Inject>,
}

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            cmd: Command::Demo,
            mem_mib: 64,
            modes: vec![Mode::Missing, Mode::Minor],
            backends: None,
            snapshot: "/tmp/gmem-vmm.snap".into(),
            seed: 0x6a09_e667_f3bc_c908,
            keep: false,
            rm: false,
            inject: None,
        }
    }
}

/// A command line gmem-vmm cannot run (exit status 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    NeedsValue(String),
    /// `what`: "mode", "backend" or "--inject".
    Unknown {
        what: &'static str,
        value: String,
    },
    NotANumber(String),
    UnknownArgument(String),
    MemMib {
        max: u64,
    },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::NeedsValue(opt) => write!(f, "{opt} needs a value"),
            UsageError::Unknown { what, value } => write!(f, "unknown {what} '{value}'"),
            UsageError::NotANumber(s) => write!(f, "not a number: '{s}'"),
            UsageError::UnknownArgument(a) => write!(f, "unknown argument '{a}'\n{USAGE}"),
            UsageError::MemMib { max } => write!(f, "--mem-mib must be 1..{max}"),
        }
    }
}

impl std::error::Error for UsageError {}

fn parse_list<T: FromStr>(s: &str, what: &'static str) -> Result<Vec<T>, UsageError> {
    s.split(',')
        .map(|x| {
            x.parse().map_err(|_| UsageError::Unknown {
                what,
                value: x.into(),
            })
        })
        .collect()
}

/// A number, decimal or 0x-prefixed hexadecimal.
fn parse_num(s: &str) -> Result<u64, UsageError> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| UsageError::NotANumber(s.into()))
}

/// The options from `args` (without the program name).  `-h`/`--help`
/// prints the usage and exits.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Opts, UsageError> {
    let mut args = args.into_iter();
    let mut o = Opts::default();
    let mut first = true;
    while let Some(a) = args.next() {
        // The command, if any, comes first.
        if std::mem::take(&mut first) {
            if let Ok(cmd) = a.parse() {
                o.cmd = cmd;
                continue;
            }
        }
        let mut val = || args.next().ok_or_else(|| UsageError::NeedsValue(a.clone()));
        match a.as_str() {
            "--mem-mib" => o.mem_mib = parse_num(&val()?)?,
            "--mode" | "--modes" => o.modes = parse_list(&val()?, "mode")?,
            "--backend" | "--backends" => o.backends = Some(parse_list(&val()?, "backend")?),
            "--snapshot" => o.snapshot = val()?,
            "--seed" => o.seed = parse_num(&val()?)?,
            "--keep" => o.keep = true,
            "--rm" => o.rm = true,
            "--inject" => {
                let v = val()?;
                o.inject = Some(v.parse().map_err(|_| UsageError::Unknown {
                    what: "--inject",
                    value: v,
                })?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(UsageError::UnknownArgument(a)),
        }
    }
    let max = guest::MAX_MEM >> 20;
    if o.mem_mib < 1 || o.mem_mib > max {
        return Err(UsageError::MemMib { max });
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Opts, UsageError> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn names_round_trip() {
        for m in [Mode::Missing, Mode::Minor] {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        for b in [
            Backend::Gmem,
            Backend::GmemSecret,
            Backend::GmemDev,
            Backend::Memfd,
        ] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert_eq!("shmem".parse::<Backend>(), Ok(Backend::Memfd));
        for i in [Inject::Corrupt, Inject::Twice] {
            assert_eq!(i.to_string().parse::<Inject>(), Ok(i));
        }
        for c in [Command::Demo, Command::Record, Command::Restore] {
            assert_eq!(c.to_string().parse::<Command>(), Ok(c));
        }
        assert!("Missing".parse::<Mode>().is_err());
    }

    #[test]
    fn the_plans_command_lines() {
        // scripts/plans/run.plan, with and without ARGS.
        let o = parse("record --mem-mib 64").unwrap();
        assert_eq!((o.cmd, o.mem_mib), (Command::Record, 64));
        let o = parse("restore --mem-mib 16 --mode minor --backend memfd --rm").unwrap();
        assert_eq!(o.cmd, Command::Restore);
        assert_eq!(o.modes, vec![Mode::Minor]);
        assert_eq!(o.backends, Some(vec![Backend::Memfd]));
        assert!(o.rm);
        // scripts/plans/check.plan.
        let o = parse("demo --mem-mib 4 --backend gmem --inject twice").unwrap();
        assert_eq!(o.inject, Some(Inject::Twice));
        // A later option wins.
        let o = parse("restore --backend gmem --backend gmem,memfd --seed 0x10").unwrap();
        assert_eq!(o.backends, Some(vec![Backend::Gmem, Backend::Memfd]));
        assert_eq!(o.seed, 16);
        // No command: demo.
        assert_eq!(parse("--keep").unwrap().cmd, Command::Demo);
    }

    #[test]
    fn usage_errors_read_as_before() {
        let msg = |s| parse(s).unwrap_err().to_string();
        assert_eq!(msg("--mode missing,major"), "unknown mode 'major'");
        assert_eq!(msg("--backend gmem,x"), "unknown backend 'x'");
        assert_eq!(msg("--inject both"), "unknown --inject 'both'");
        assert_eq!(msg("--seed 12z"), "not a number: '12z'");
        assert_eq!(msg("--snapshot"), "--snapshot needs a value");
        assert_eq!(msg("--mem-mib 0"), "--mem-mib must be 1..4096");
        assert!(msg("demo record").starts_with("unknown argument 'record'\nusage:"));
    }
}
