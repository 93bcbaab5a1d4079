/* Clone trampolines for aarch64; same contract as the x86-64 ones.
 * fn and arg travel in x9/x10, which the kernel copies into the child.
 */
        .text
        .globl  aspawn_clone3
        .type   aspawn_clone3, %function
        .hidden aspawn_clone3
aspawn_clone3:
        mov     x9, x2
        mov     x10, x3
        mov     x8, #435                /* SYS_clone3 */
        svc     #0
        cbz     x0, 1f
        ret
1:
        mov     x29, xzr
        mov     x30, xzr
        mov     x0, x10
        blr     x9
        mov     x8, #94                 /* SYS_exit_group */
        svc     #0
        brk     #0
        .size   aspawn_clone3, .-aspawn_clone3

        .globl  aspawn_clone
        .type   aspawn_clone, %function
        .hidden aspawn_clone
aspawn_clone:
        mov     x9, x3                  /* fn */
        mov     x10, x4                 /* arg */
        mov     x3, xzr                 /* tls */
        mov     x4, xzr                 /* child_tid */
        mov     x8, #220                /* SYS_clone: flags, sp, ptid, tls, ctid */
        svc     #0
        cbz     x0, 1f
        ret
1:
        mov     x29, xzr
        mov     x30, xzr
        mov     x0, x10
        blr     x9
        mov     x8, #94
        svc     #0
        brk     #0
        .size   aspawn_clone, .-aspawn_clone

        .section .note.GNU-stack,"",%progbits
