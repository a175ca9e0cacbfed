// SPDX-License-Identifier: GPL-2.0
//! Assemble the guest payload (guest/payload.s) into a flat binary with the
//! host's binutils, with the constants of src/abi.rs as --defsym.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (binutils installed?)"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=guest/payload.s");
    println!("cargo:rerun-if-changed=src/abi.rs");

    let abi = fs::read_to_string("src/abi.rs").expect("src/abi.rs");
    let mut asm = Command::new(env::var("AS").unwrap_or_else(|_| "as".into()));
    asm.arg("--64");
    for line in abi.lines() {
        // pub const NAME: TYPE = VALUE;
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let (name, rest) = rest.split_once(':').expect("pub const NAME: T = V;");
        let value = rest
            .split_once('=')
            .and_then(|(_, v)| v.trim().strip_suffix(';'))
            .expect("pub const NAME: T = V;");
        asm.arg("--defsym")
            .arg(format!("{}={}", name.trim(), value.trim()));
    }
    let obj = out.join("payload.o");
    run(asm.arg("-o").arg(&obj).arg("guest/payload.s"));
    run(
        Command::new(env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".into()))
            .args(["-O", "binary", "-j", ".text"])
            .arg(&obj)
            .arg(out.join("payload.bin")),
    );
}
