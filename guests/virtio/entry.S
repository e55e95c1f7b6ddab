/* entry.S: the boot path of the virtio test guests (netecho, diskab), from
 * the Xen PVH entry to ring 3.
 *
 * The vCPU enters pvh_start in 32-bit protected mode with paging off (glide
 * --elf with a PVH note, QEMU -kernel). That code and the 64-bit ring-0 code
 * after it run in KVM's instruction emulator on nested hosts, so it is kept
 * to about 30 instructions, no SSE and no loops: the page tables are static
 * data (identity map of 0-4 GiB in 2 MiB pages with the user bit, the
 * 3-4 GiB PCI hole uncached), the GDT and TSS too; ring 0 only loads them,
 * enables long mode and `iretq`s to vguest_main at ring 3 with IOPL 3 and
 * interrupts off. Tables, stacks and the IDT live in this image (linked at
 * 1 MiB), away from glide's PVH boot area 0x1000-0x5000.
 *
 * Port I/O from ring 3: IOPL 3 in the iretq frame, and the TSS carries an
 * all-zero I/O permission bitmap. The bitmap is what makes it work on the
 * nested kvm_pvm hosts here: with a TSS loaded, ring 3 runs there with
 * RFLAGS.IOPL 0 whatever iretq set (measured: RFLAGS 0x10046 in a #UD frame
 * after an iretq with 0x3002), and the CPU falls back to the bitmap.
 *
 * Only the bootstrap vCPU goes on (IA32_APIC_BASE.BSP): glide starts every
 * vCPU at the entry, QEMU only the bootstrap one; the others halt with
 * interrupts off. Ring-3 C code fills the IDT (it is ordinary user-writable
 * memory): a CPU exception enters fault_common, which prints the vector,
 * error code, RIP, RFLAGS and CR2 on COM1 and writes VGUEST_EXIT_FAULT to
 * the debug-exit port. */
#include "guest_abi.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define SEL_KCODE   0x08    /* 64-bit code, DPL 0 */
#define SEL_KDATA   0x10    /* flat data, DPL 0 */
#define SEL_UDATA   0x18    /* flat data, DPL 3 (used as 0x1b) */
#define SEL_UCODE   0x20    /* 64-bit code, DPL 3 (used as 0x23) */
#define SEL_TSS     0x28    /* 16-byte 64-bit TSS descriptor */
#define TSS_IOMAP   104        /* I/O permission bitmap offset: right after the TSS proper */
#define TSS_LIMIT   (TSS_IOMAP + 8192) /* 65536 port bits and the 0xff byte that ends the map */
#define CR0_VALUE   0x80010033 /* PG WP NE ET MP PE */
#define CR4_VALUE   0x620      /* OSXMMEXCPT OSFXSR PAE */
#define MSR_EFER    0xc0000080
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_BSP 0x100
#define EFER_LME    0x100
#define RFLAGS_USER 0x3002     /* IOPL 3, IF 0 */
#define PTE_TABLE   0x27       /* P RW US A: points to a table */
#define PDE_2M      0xe7       /* P RW US A D PS */
#define PDE_2M_UC   0xff       /* the same with PWT PCD (the PCI hole) */
#define IDT_VECTORS 32
#define COM1_PORT   0x3f8
#define DEBUG_EXIT_PORT 0xf4

	.section .text.entry, "ax"
	.code32
	.globl	pvh_start
pvh_start:
	cli
	movl	$MSR_APIC_BASE, %ecx
	rdmsr
	testl	$APIC_BASE_BSP, %eax
	jz	park
	movl	%ebx, boot_start_info
	lgdt	gdt_ptr
	movl	$CR4_VALUE, %eax
	movl	%eax, %cr4
	movl	$boot_pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$EFER_LME, %eax
	wrmsr
	movl	$CR0_VALUE, %eax
	movl	%eax, %cr0
	ljmp	$SEL_KCODE, $long_mode
park:
	hlt
	jmp	park

	.code64
long_mode:
	movw	$SEL_KDATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %fs
	movw	%ax, %gs
	movw	%ax, %ss
	/* the TSS base is split over the descriptor: the assembler cannot split a relocated address */
	movl	$boot_tss, %eax
	movw	%ax, gdt_tss + 2
	shrl	$16, %eax
	movb	%al, gdt_tss + 4
	movb	%ah, gdt_tss + 7
	movw	$SEL_TSS, %ax
	ltr	%ax
	lidt	idt_ptr
	movq	$kstack_top, %rsp
	pushq	$(SEL_UDATA | 3)
	pushq	$(ustack_top - 8)	/* as after a call: the ABI's alignment at function entry */
	pushq	$RFLAGS_USER
	pushq	$(SEL_UCODE | 3)
	pushq	$vguest_main
	iretq

/* Exception stubs: each pushes a 0 error code where the CPU pushes none,
 * then its vector. The frame fault_common sees: vector, error, RIP, CS,
 * RFLAGS, RSP, SS. */
.macro FAULT_STUB vec
	.balign	16
fault_stub_\vec:
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq	$0
	.endif
	pushq	$\vec
	jmp	fault_common
.endm

	.irp	v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	FAULT_STUB \v
	.endr

/* Ring 0, emulated: prints "vguest: CPU exception <vector> error <code> rip
 * <rip> rflags <rflags> cr2 <cr2>" and stops the VM through the debug-exit port. */
fault_common:
	movq	$msg_fault, %rsi
	call	fault_puts
	movq	0(%rsp), %rax
	call	fault_puthex
	movq	$msg_error, %rsi
	call	fault_puts
	movq	8(%rsp), %rax
	call	fault_puthex
	movq	$msg_rip, %rsi
	call	fault_puts
	movq	16(%rsp), %rax
	call	fault_puthex
	movq	$msg_rflags, %rsi
	call	fault_puts
	movq	32(%rsp), %rax
	call	fault_puthex
	movq	$msg_cr2, %rsi
	call	fault_puts
	movq	%cr2, %rax
	call	fault_puthex
	movq	$msg_newline, %rsi
	call	fault_puts
	movb	$VGUEST_EXIT_FAULT, %al
	outb	%al, $DEBUG_EXIT_PORT
1:	cli
	hlt
	jmp	1b

fault_puts:				/* %rsi: NUL-terminated string */
	movw	$COM1_PORT, %dx
1:	lodsb
	testb	%al, %al
	jz	2f
	outb	%al, %dx
	jmp	1b
2:	ret

fault_puthex:				/* %rax: printed as 16 hex digits */
	movq	%rax, %r8
	movl	$16, %ecx
	movw	$COM1_PORT, %dx
1:	rolq	$4, %r8
	movl	%r8d, %eax
	andl	$15, %eax
	movb	hex_digits(%rax), %al
	outb	%al, %dx
	decl	%ecx
	jnz	1b
	ret

	.section .rodata
	.balign	8
	.globl	fault_stub_table
fault_stub_table:			/* read by rt.c to fill the IDT */
	.irp	v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad	fault_stub_\v
	.endr
hex_digits:	.ascii "0123456789abcdef"
msg_fault:	.asciz "\nvguest: CPU exception 0x"
msg_error:	.asciz " error 0x"
msg_rip:	.asciz " rip 0x"
msg_rflags:	.asciz " rflags 0x"
msg_cr2:	.asciz " cr2 0x"
msg_newline:	.asciz "\n"

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

	.data
	.balign	4
	.globl	boot_start_info
boot_start_info: .long 0		/* EBX at entry: the hvm_start_info address */

	.balign	16
boot_gdt:
	.quad	0
	.quad	0x00af9a000000ffff	/* SEL_KCODE */
	.quad	0x00cf92000000ffff	/* SEL_KDATA */
	.quad	0x00cff2000000ffff	/* SEL_UDATA */
	.quad	0x00affa000000ffff	/* SEL_UCODE */
gdt_tss:				/* SEL_TSS: available 64-bit TSS; base filled in at boot */
	.word	TSS_LIMIT, 0
	.byte	0, 0x89, 0, 0
	.long	0, 0
boot_gdt_end:

gdt_ptr:				/* lgdt in 32-bit mode: limit, 32-bit base */
	.word	boot_gdt_end - boot_gdt - 1
	.long	boot_gdt
	.balign	8
idt_ptr:				/* lidt in 64-bit mode: limit, 64-bit base */
	.word	IDT_VECTORS * 16 - 1
	.quad	boot_idt

	.balign	16
boot_tss:
	.long	0
	.quad	kstack_top		/* RSP0: the stack of exceptions taken at ring 3 */
	.fill	90, 1, 0
	.word	TSS_IOMAP
	.fill	8192, 1, 0		/* every port allowed */
	.byte	0xff


/* Identity map: PML4[0] -> PDPT, PDPT[0..3] -> four page directories of
 * 2 MiB pages. rt.c adds mappings for BARs above 4 GiB at ring 3 (the tables
 * are user-writable memory like everything else). */
	.balign	4096
	.globl	boot_pml4
boot_pml4:
	.quad	boot_pdpt + PTE_TABLE
	.fill	511, 8, 0
	.globl	boot_pdpt
boot_pdpt:
	.quad	boot_pd + PTE_TABLE
	.quad	boot_pd + 0x1000 + PTE_TABLE
	.quad	boot_pd + 0x2000 + PTE_TABLE
	.quad	boot_pd + 0x3000 + PTE_TABLE
	.fill	508, 8, 0
boot_pd:
	.set	page, 0
	.rept	1536
	.quad	(page << 21) | PDE_2M
	.set	page, page + 1
	.endr
	.rept	512
	.quad	(page << 21) | PDE_2M_UC
	.set	page, page + 1
	.endr

	.bss
	.balign	4096
	.globl	boot_idt
boot_idt:
	.skip	IDT_VECTORS * 16
	.balign	4096
kstack:
	.skip	4096
kstack_top:
ustack:
	.skip	65536
ustack_top:

	.section .note.GNU-stack, "", @progbits
