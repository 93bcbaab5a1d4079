/*
 * bench/exit0.S
 *
 * The cheapest program there is to exec: a static executable without libc
 * whose entry point calls exit_group(0). Built as aspawn-exit0 with
 * -nostdlib -static -nostartfiles.
 */

#if defined(__x86_64__)

        .text
        .globl  _start
        .type   _start, @function
_start:
        xorl    %edi, %edi
        movl    $231, %eax              /* SYS_exit_group */
        syscall
        hlt
        .size   _start, . - _start

        .section .note.GNU-stack, "", @progbits

#elif defined(__aarch64__)

        .text
        .globl  _start
        .type   _start, %function
_start:
        mov     x0, #0
        mov     x8, #94                 /* SYS_exit_group */
        svc     #0
        brk     #0
        .size   _start, . - _start

        .section .note.GNU-stack, "", %progbits

#else
#error "exit0.S: unsupported architecture"
#endif
