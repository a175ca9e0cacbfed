/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The demo guest, 64-bit long mode, loaded at CODE_ADDR with identity page
 * tables made by the VMM (src/guest.rs).  Constants come from src/abi.rs
 * (build.rs passes them to the assembler with --defsym).
 *
 * Entry: %rdi = DATA_START, %rsi = end of guest memory, %rdx = seed.
 *
 *   1. Fill [%rdi, %rsi) with word(a) = (a ^ seed) * K for each 8-byte
 *      word at address a, and keep a running checksum (rotate, add).
 *   2. Store the checksum at CSUM_ADDR and in %r15, and tell the VMM
 *      "snapshot now" by writing to PORT_SNAPSHOT.
 *   3. (Resumed here after a restore.)  Read every word again, compare it
 *      with the pattern, recompute the checksum and compare it with both
 *      copies; report VERDICT_* on PORT_VERDICT and halt.
 */
	.code64
	.text
	.globl _start
_start:
	movabs	$0x9e3779b97f4a7c15, %r10	/* K: odd, so the map is 1:1 */
	mov	%rdi, %r8
	xor	%r9d, %r9d
fill:
	mov	%r8, %rax
	xor	%rdx, %rax
	imul	%r10, %rax
	mov	%rax, (%r8)
	rol	$5, %r9
	add	%rax, %r9
	add	$8, %r8
	cmp	%rsi, %r8
	jb	fill

	mov	%r9, CSUM_ADDR
	mov	%r9, %r15
	out	%al, $PORT_SNAPSHOT

	/* A restored vCPU continues here. */
verify:
	mov	%rdi, %r8
	xor	%r9d, %r9d
check:
	mov	%r8, %r11
	xor	%rdx, %r11
	imul	%r10, %r11
	mov	(%r8), %rcx
	cmp	%r11, %rcx
	jne	bad_word
	rol	$5, %r9
	add	%rcx, %r9
	add	$8, %r8
	cmp	%rsi, %r8
	jb	check

	cmp	CSUM_ADDR, %r9
	jne	bad_csum
	cmp	%r15, %r9
	jne	bad_csum
	mov	$VERDICT_PASS, %eax
	jmp	report
bad_word:
	mov	%r8, %rbx
	mov	$VERDICT_BAD_WORD, %eax
	jmp	report
bad_csum:
	mov	%r9, %rbx
	mov	$VERDICT_BAD_CSUM, %eax
report:
	out	%eax, $PORT_VERDICT
1:	hlt
	jmp	1b
