/* elf-stop: two --elf guests that stop the VM the ways a failing kernel
 * does, so that tests can check how glide reports a stopped vCPU
 * (tests/test_linux_boot.sh checks with them that it tells a crash from
 * the emulator limits of nested KVM). Each prints "elf-stop" on COM1 first.
 *
 *   elf-triple-fault.elf  reads an address no page table maps, at CPL 0
 *                         with no IDT: the page fault cannot be delivered,
 *                         nor the double fault: a triple fault.
 *   elf-sse-cpl0.elf      (-DSSE) runs an SSE instruction at CPL 0: KVM's
 *                         instruction emulator on nested hosts cannot
 *                         (KVM_EXIT_INTERNAL_ERROR, suberror 1). Where it
 *                         runs natively the guest writes 0x12 to the
 *                         debug-exit port (glide exits with status 37).
 *   elf-hang.elf          (-DHANG) halts with interrupts off: a guest that
 *                         hangs, making no progress at all.
 *
 * Ring-0 code, kept to a few instructions. Linked at 1 MiB (elf-hello.ld). */

#define COM1_PORT        0x3f8
#define DEBUG_EXIT_PORT  0xf4
#define STATUS_SSE_RAN   0x12
#define UNMAPPED_ADDRESS 0x8000000000 /* 512 GiB: PML4 entry 1 is not present */

	.text
	.code64
	.globl	_start
_start:
	movl	$msg, %esi
	movw	$COM1_PORT, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:
#if defined(SSE)
	xorps	%xmm0, %xmm1
	movb	$STATUS_SSE_RAN, %al
	outb	%al, $DEBUG_EXIT_PORT
#elif defined(HANG)
	/* straight to the halt below */
#else
	movabsq	$UNMAPPED_ADDRESS, %rax
	movq	(%rax), %rax
#endif
3:	cli
	hlt
	jmp	3b

	.data
msg:	.asciz "elf-stop\n"

	.section .note.GNU-stack, "", @progbits
