// SPDX-License-Identifier: GPL-2.0
//! The guest: its payload, its page tables and GDT in guest memory, and the
//! vCPU state that starts it in 64-bit long mode.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

use crate::abi::*;

/// guest/payload.s, assembled by build.rs.
pub const PAYLOAD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/payload.bin"));

const PTE_P: u64 = 1 << 0;
const PTE_W: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const SEL_CODE: u16 = 0x08;
const SEL_DATA: u16 = 0x10;
const SEL_TSS: u16 = 0x18;

/// Largest guest memory: what the reserved page directories map.
pub const MAX_MEM: u64 = MAX_PDS << 30;

fn put_u64(mem: &mut [u8], at: u64, v: u64) {
    let at = at as usize;
    mem[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Write the GDT, the identity page tables (2 MiB pages over all of guest
/// memory) and the payload into guest memory.
pub fn load(mem: &mut [u8]) {
    let size = mem.len() as u64;
    assert!(size > DATA_START && size <= MAX_MEM);
    assert!(PAYLOAD.len() as u64 <= CSUM_ADDR - CODE_ADDR);

    // GDT: null, 64-bit code, data, and a TSS descriptor's first half
    // (KVM does not read it; TR's cached state comes from sregs).
    put_u64(mem, GDT_ADDR, 0);
    put_u64(mem, GDT_ADDR + 8, 0x00af_9b00_0000_ffff);
    put_u64(mem, GDT_ADDR + 16, 0x00cf_9300_0000_ffff);
    put_u64(mem, GDT_ADDR + 24, 0x0000_8b00_0000_0067);

    put_u64(mem, PML4_ADDR, PDPT_ADDR | PTE_P | PTE_W);
    let two_mib = 2u64 << 20;
    let pds = size.div_ceil(1 << 30);
    for i in 0..pds {
        put_u64(
            mem,
            PDPT_ADDR + 8 * i,
            (PD_ADDR + 0x1000 * i) | PTE_P | PTE_W,
        );
    }
    let mut addr = 0;
    while addr < size {
        let i = addr / two_mib;
        put_u64(mem, PD_ADDR + 8 * i, addr | PTE_P | PTE_W | PTE_PS);
        addr += two_mib;
    }

    let code = CODE_ADDR as usize;
    mem[code..code + PAYLOAD.len()].copy_from_slice(PAYLOAD);
}

fn segment(selector: u16, type_: u8, l: u8, db: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        ..Default::default()
    }
}

/// Long mode: paging on with CR3 = the PML4, flat 64-bit segments.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    sregs.cs = segment(SEL_CODE, 0xb, 1, 0);
    let data = segment(SEL_DATA, 0x3, 0, 1);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: SEL_TSS,
        type_: 0xb, // 64-bit TSS, busy
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// The payload's entry registers (see guest/payload.s).
pub fn entry_regs(mem_size: u64, seed: u64) -> kvm_regs {
    kvm_regs {
        rip: CODE_ADDR,
        rsp: STACK_TOP,
        rflags: 0x2,
        rdi: DATA_START,
        rsi: mem_size,
        rdx: seed,
        ..Default::default()
    }
}
