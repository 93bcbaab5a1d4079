/* Clone trampolines for x86-64.
 *
 * long aspawn_clone3(struct clone_args *args, size_t size,
 *                    int (*fn)(void *), void *arg);
 * long aspawn_clone(unsigned long flags, void *stack_top, int *pidfd,
 *                   int (*fn)(void *), void *arg);
 *
 * Both return the child's pid or -errno in the parent. The child starts on
 * the 16-byte aligned stack top given to the kernel, calls fn(arg) and
 * exits with its result; it never returns into the caller's frames.
 * fn and arg travel in r12/r13, which the kernel copies into the child.
 */
        .text
        .globl  aspawn_clone3
        .type   aspawn_clone3, @function
        .hidden aspawn_clone3
aspawn_clone3:
        .cfi_startproc
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        movq    %rdx, %r12
        movq    %rcx, %r13
        movl    $435, %eax              /* SYS_clone3 */
        syscall
        testq   %rax, %rax
        jz      1f
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        ret
1:
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %r13, %rdi
        call    *%r12
        movl    %eax, %edi
        movl    $231, %eax              /* SYS_exit_group */
        syscall
        hlt
        .cfi_endproc
        .size   aspawn_clone3, .-aspawn_clone3

        .globl  aspawn_clone
        .type   aspawn_clone, @function
        .hidden aspawn_clone
aspawn_clone:
        .cfi_startproc
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        movq    %rcx, %r12              /* fn */
        movq    %r8, %r13               /* arg */
        xorl    %r10d, %r10d            /* child_tid */
        xorl    %r8d, %r8d              /* tls */
        movl    $56, %eax               /* SYS_clone: flags, sp, ptid(pidfd) */
        syscall
        testq   %rax, %rax
        jz      1f
        popq    %r13
        .cfi_adjust_cfa_offset -8
        popq    %r12
        .cfi_adjust_cfa_offset -8
        ret
1:
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %r13, %rdi
        call    *%r12
        movl    %eax, %edi
        movl    $231, %eax
        syscall
        hlt
        .cfi_endproc
        .size   aspawn_clone, .-aspawn_clone

        .section .note.GNU-stack,"",@progbits
