// SPDX-License-Identifier: GPL-2.0
//! The contract between the VMM and the guest payload (guest/payload.s).
//!
//! build.rs reads every `pub const NAME: TYPE = VALUE;` line of this file
//! and hands it to the assembler as `--defsym NAME=VALUE`, so the numbers
//! below are the only copy.

/// Guest-physical layout (all identity-mapped, long mode).
/// 0x0000 is never used: a null pointer in the guest faults on nothing we
/// serve, and the page shows up as "never touched" in the report.
pub const GDT_ADDR: u64 = 0x1000;
/// PML4, then one PDPT, then up to `MAX_PDS` page directories of 2 MiB pages.
pub const PML4_ADDR: u64 = 0x2000;
pub const PDPT_ADDR: u64 = 0x3000;
pub const PD_ADDR: u64 = 0x4000;
/// Where the payload is loaded and starts.
pub const CODE_ADDR: u64 = 0x8000;
/// The checksum the payload computed while filling memory.
pub const CSUM_ADDR: u64 = 0x9000;
/// Initial stack pointer (the payload does not use the stack).
pub const STACK_TOP: u64 = 0xf000;
/// The patterned area: from here to the end of guest memory.
pub const DATA_START: u64 = 0x10000;

/// `out %al, $PORT_SNAPSHOT`: memory is filled, take the snapshot now.
pub const PORT_SNAPSHOT: u16 = 0x10;
/// `out %eax, $PORT_VERDICT`: the result of the verification, one of below.
pub const PORT_VERDICT: u16 = 0x11;

/// Every 8-byte word of the data area and the checksum were right.
pub const VERDICT_PASS: u32 = 0x600d;
/// A word was wrong: %rbx = its address, %rcx = found, %r11 = expected.
pub const VERDICT_BAD_WORD: u32 = 0xbad1;
/// The words were right but the checksum differs from the one saved at
/// `CSUM_ADDR` or kept in %r15 (the saved vCPU state).
pub const VERDICT_BAD_CSUM: u32 = 0xbad2;

/// Page directories reserved at `PD_ADDR` (one per GiB of guest memory).
pub const MAX_PDS: u64 = 4;
