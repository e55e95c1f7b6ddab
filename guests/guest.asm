; guest.asm: glide's test guest, one 512-byte boot sector (docs/guests.md).
;
; Entered in 16-bit real mode at 0:0x7c00 with no BIOS services used. Every
; vCPU runs this same code: it builds identity-mapped page tables (2 MiB
; pages, USER set on every level), loads a GDT, switches straight from real
; mode to long mode and iretq's to ring 3 (IOPL=3, IF=0), where all the work
; runs natively: the A-B page increments, a paced workload, or a pure
; heartbeat, plus the per-vCPU heartbeat record at 0x8000 + 64 * index.
;
; Register contract at entry: EBX = 0x474C4445 ('GLDE', started by glide),
; ESI = vCPU index, EDI = vCPU count. Any other EBX (QEMU/SeaBIOS): index 0,
; count 1.
;
; Race freedom: every write the vCPUs make before ring 3 writes the final
; value of that location (page-table entries carry A and D already, zero
; entries stay zero, the GDT is read-only data in the image, and the iretq
; frame at 0x7bd8 is the same for every vCPU), so vCPUs starting at any time
; may all rebuild the tables while others already run on them.
;
; Ring-0 / real-mode code is emulated on nested hosts (1000-7000x slower):
; it is kept short and free of SSE. Ring 3 uses no stack.

bits 16
org 0x7c00

GLIDE_MAGIC     equ 0x474C4445
PML4            equ 0x10000         ; PML4, then PDPT, then one PD per GiB
PDPT            equ 0x11000
PD0             equ 0x12000
HB_BASE         equ 0x8000          ; heartbeat records, 64 bytes per vCPU
COM1            equ 0x3f8
HB_MAGIC        equ 0x3142484544494c47 ; "GLIDEHB1", u64 at the start of each record
IRET_STACK      equ 0x7c00          ; iretq frame, identical for every vCPU

CFG             equ 0x7c00 + 0x1c0  ; config block (see docs/guests.md)
CFG_MODE        equ 5
CFG_MAP_GIB     equ 6
CFG_RANGE_START equ 8
CFG_RANGE_SIZE  equ 16
CFG_INTERVAL    equ 24
CFG_BANNER      equ 33

MODE_AB         equ 0
MODE_HEARTBEAT  equ 1
MODE_WORKLOAD   equ 2

PTE_TABLE       equ 0x27            ; P RW US A
PTE_2M          equ 0xe7            ; P RW US A D PS

SEL_CODE64      equ 0x08
SEL_USER_DATA   equ 0x13            ; 0x10 | RPL 3
SEL_USER_CODE   equ 0x1b            ; 0x18 | RPL 3

start:
	cli
	cld
	xor ax, ax
	mov ds, ax
	mov ebp, edi                ; EBP = vCPU count (DI is used by stosd)

.tables:                            ; ES:DI walks 0x10000 upwards
	mov ax, PML4 >> 4
	mov es, ax
	xor di, di
	xor edx, edx
	mov eax, PDPT | PTE_TABLE   ; PML4[0] -> PDPT, PML4[1..511] = 0
	stosd
	xor eax, eax
	mov cx, 1023
	rep stosd
	mov eax, PD0 | PTE_TABLE    ; PDPT[i] -> PD i for i < map_gib
	mov cx, [CFG + CFG_MAP_GIB]
	mov fs, cx                  ; FS = map_gib (a spare register)
.pdpt:
	stosd
	xchg eax, edx
	stosd
	xchg eax, edx
	add eax, 0x1000
	loop .pdpt
	mov cx, PD0 - PML4          ; PDPT[map_gib..511] = 0
	sub cx, di
	shr cx, 2
	xor eax, eax
	rep stosd
	mov cx, fs                  ; 512 2-MiB entries per GiB
	shl cx, 9
	mov al, PTE_2M              ; EDX:EAX = entry
.pd:
	stosd
	xchg eax, edx
	stosd
	xchg eax, edx
	add eax, 0x200000
	adc dx, 0
	test di, di
	jnz .pd_next
	mov di, es                  ; DI wrapped to 0: next 64 KiB
	add di, 0x1000
	mov es, di
.pd_next:
	loop .pd

	lgdt [gdtr]
	mov eax, 0x20               ; CR4.PAE
	mov cr4, eax
	mov eax, PML4
	mov cr3, eax
	mov ecx, 0xc0000080         ; EFER.LME
	mov eax, 0x100
	cdq
	wrmsr
	mov eax, 0x80000011         ; CR0 = PG ET PE (caches on)
	mov cr0, eax
	jmp SEL_CODE64:long_mode

bits 64
long_mode:                          ; the same frame from every vCPU: RIP CS RFLAGS RSP SS
	mov esp, IRET_STACK
	push SEL_USER_DATA
	push 0
	push 0x3002                 ; IOPL 3, IF 0
	push SEL_USER_CODE
	push user
	iretq

; ---- ring 3 from here on: runs natively ----
user:
	cmp ebx, GLIDE_MAGIC
	je .index
	xor esi, esi                ; not glide: vCPU 0 of 1
	xor ebp, ebp
	inc ebp
.index:
	mov esi, esi                ; index and count, zero-extended
	mov ebp, ebp
	imul ebx, esi, 64           ; RBX = heartbeat record
	bts ebx, 15                 ; + HB_BASE (0x8000)
	mov [rbx + 48], esi
	mov [rbx + 52], ebp

	mov ecx, CFG
	mov rax, [rcx + CFG_RANGE_SIZE] ; this vCPU's part: size / count, page aligned
	xor edx, edx
	div rbp
	and ax, 0xf000
	mov r15, rax
	imul rax, rsi
	add rax, [rcx + CFG_RANGE_START]
	mov r14, rax                ; R14 = part start
	mov rdi, rax                ; RDI = next page to write
	add r15, rax                ; R15 = part end
	mov r12, [rcx + CFG_INTERVAL] ; R12 = TSC cycles between writes (0: unlimited)
	xor r13d, r13d              ; R13 = TSC when the next write is due
	movzx eax, byte [rcx + CFG_MODE]
	mov [rbx + 56], eax
	cmp al, MODE_HEARTBEAT
	jne .banner
	mov r15, r14                ; heartbeat: an empty part, no writes
.banner:
	test esi, esi
	jnz .record
	lea esi, [rcx + CFG_BANNER] ; vCPU 0 prints the banner held in the config
	movzx ecx, byte [rsi - 1]
	mov dx, COM1
	rep outsb

.record:                            ; the first iteration sets last_tsc and the gap end
	xor ecx, ecx
	mov [rbx + 8], rcx
	mov [rbx + 24], rcx
	rdtsc
	shl rdx, 32
	or rax, rdx
	mov r8, rax                 ; R8 = TSC of the previous iteration
	mov [rbx + 40], rax
	mov rax, HB_MAGIC
	mov [rbx], rax

.loop:
	rdtsc
	shl rdx, 32
	or rax, rdx
	mov rcx, rax
	sub rcx, r8
	mov r8, rax
	mov [rbx + 16], rax
	cmp rcx, [rbx + 24]
	jbe .no_new_gap
	mov [rbx + 24], rcx
	mov [rbx + 32], rax
.no_new_gap:
	test r12, r12               ; workload pacing
	jz .write
	cmp rax, r13
	jb .loop
	lea r13, [rax + r12]
.write:
	cmp r14, r15
	je .count
	inc byte [rdi]
	add rdi, 4096
	cmp rdi, r15
	jb .count
	mov rdi, r14
.count:
	inc qword [rbx + 8]
	jmp .loop

gdt:                                ; the null descriptor holds the GDTR
gdtr:
	dw gdt_end - gdt - 1
	dd gdt
	dw 0
	dq 0x00af9a000000ffff       ; 0x08 64-bit code, DPL 0
	dq 0x00cff2000000ffff       ; 0x10 flat data, DPL 3
	dq 0x00affa000000ffff       ; 0x18 64-bit code, DPL 3
gdt_end:

code_end:
%if code_end - $$ > 0x1c0
%error "code does not fit before the config block at 0x1c0"
%endif
	times 0x1c0 - ($ - $$) db 0

; ---- config block at image offset 0x1c0 (guestcfg patches it) ----
config:
	db "GLCF"                   ; +0x00 magic
	db 1                        ; +0x04 version
	db MODE_AB                  ; +0x05 mode: 0 ab, 1 heartbeat, 2 workload
	dw 4                        ; +0x06 GiB identity-mapped (1..64)
	dq 0x100000                 ; +0x08 range start
	dq 128 << 20                ; +0x10 range size
	dq 0                        ; +0x18 workload: TSC cycles between writes, 0 = unlimited
	db .banner_end - .banner    ; +0x20 banner length (at most 29)
.banner:                            ; +0x21 banner printed on COM1 by vCPU 0
	db "glide-guest ab", 10
.banner_end:
	times 510 - ($ - $$) db 0
	dw 0xaa55
