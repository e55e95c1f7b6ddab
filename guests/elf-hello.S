/* elf-hello: the smallest --elf guest. Every vCPU prints
 * "hello from elf vcpu N" on COM1 (one line per vCPU, under a spin lock);
 * the last vCPU to finish writes 0x10 to the debug-exit port 0xf4, so glide
 * exits with status 33 ((0x10 << 1) | 1). A vCPU that finds a wrong boot
 * contract (EBX is not 'GLDE', or no hvm_start_info) writes 0x11 instead
 * (exit status 35). The rest of the time the vCPUs sit in HLT.
 *
 * Built twice from this file (guests/guests.mk):
 *   elf-hello.elf      64-bit entry (_start): RBX = BOOT_MAGIC, RSI = index, RDI = count
 *   elf-hello-pvh.elf  -DPVH adds a Xen PVH note: 32-bit entry (pvh_start) with paging
 *                      off, EBX = hvm_start_info, ESI = index, EDI = count; prints
 *                      "hello from elf vcpu N (pvh)"
 *
 * Ring-0 code runs in KVM's emulator on nested hosts: kept to a few dozen
 * instructions, no SSE, no stack. Linked at 1 MiB, physical = virtual. */

#define COM1_PORT         0x3f8
#define DEBUG_EXIT_PORT   0xf4
#define STATUS_OK         0x10
#define STATUS_BAD_BOOT   0x11
#define BOOT_MAGIC        0x474C4445
#define PVH_MAGIC         0x336ec578
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Prints one line for the vCPU whose index is in %esi, then counts it done
 * and compares with %edi. Uses only 32-bit registers and absolute addresses,
 * so the same text assembles as 64-bit and as 32-bit code. */
.macro HELLO suffix
	movl	%esi, %ebp			/* vCPU index */
1:	lock btsl $0, print_lock
	jnc	2f
	pause
	jmp	1b
2:	movl	$msg_hello, %esi
	movw	$COM1_PORT, %dx
3:	lodsb
	testb	%al, %al
	jz	4f
	outb	%al, %dx
	jmp	3b
4:	/* decimal digits of the index, written backwards into digits[] */
	movl	%ebp, %eax
	movl	$digits_end, %ecx
5:	xorl	%edx, %edx
	movl	$10, %ebx
	divl	%ebx
	addb	$'0', %dl
	decl	%ecx
	movb	%dl, (%ecx)
	testl	%eax, %eax
	jnz	5b
	movl	%ecx, %esi
	movw	$COM1_PORT, %dx
6:	lodsb
	testb	%al, %al
	jz	7f
	outb	%al, %dx
	jmp	6b
7:	movl	$\suffix, %esi
8:	lodsb
	testb	%al, %al
	jz	9f
	outb	%al, %dx
	jmp	8b
9:	movl	$0, print_lock
	movl	$1, %eax
	lock xaddl %eax, done_count
	incl	%eax
	cmpl	%edi, %eax
	jne	halt_forever\@
	movb	$STATUS_OK, %al
	outb	%al, $DEBUG_EXIT_PORT
halt_forever\@:
	cli
	hlt
	jmp	halt_forever\@
.endm

	.text
	.code64
	.globl	_start
_start:
	cmpl	$BOOT_MAGIC, %ebx
	jne	bad_boot64
	HELLO	msg_newline
bad_boot64:
	movb	$STATUS_BAD_BOOT, %al
	outb	%al, $DEBUG_EXIT_PORT
	cli
	hlt

#ifdef PVH
	.code32
	.globl	pvh_start
pvh_start:
	cmpl	$PVH_MAGIC, (%ebx)
	jne	bad_boot32
	HELLO	msg_pvh_newline
bad_boot32:
	movb	$STATUS_BAD_BOOT, %al
	outb	%al, $DEBUG_EXIT_PORT
	cli
	hlt

	.pushsection .note.Xen, "a", @note
	.balign	4
	.long	4				/* namesz: "Xen\0" */
	.long	4				/* descsz */
	.long	XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.balign	4
	.long	pvh_start
	.balign	4
	.popsection
#endif

	.data
msg_hello:	.asciz "hello from elf vcpu "
msg_newline:	.asciz "\n"
msg_pvh_newline: .asciz " (pvh)\n"
digits:		.fill 12, 1, 0
digits_end:	.byte 0
	.balign	4
print_lock:	.long 0
done_count:	.long 0

	.section .note.GNU-stack, "", @progbits
