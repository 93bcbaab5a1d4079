/*
 * bench/pause.S
 *
 * A child that never exits on its own: a static executable without libc that
 * sleeps in a system call forever, until a signal kills it. Built as
 * aspawn-pause; the benchmark starts many of these to measure launches next
 * to a large number of live children. It takes no arguments, so any launcher
 * can start it.
 */

#if defined(__x86_64__)

        .text
        .globl  _start
        .type   _start, @function
_start:
        movl    $34, %eax               /* SYS_pause */
        syscall
        jmp     _start
        .size   _start, . - _start

        .section .note.GNU-stack, "", @progbits

#elif defined(__aarch64__)

        .text
        .globl  _start
        .type   _start, %function
_start:
        mov     x0, #0                  /* ppoll(NULL, 0, NULL, NULL, 0) */
        mov     x1, #0
        mov     x2, #0
        mov     x3, #0
        mov     x4, #0
        mov     x8, #73                 /* SYS_ppoll */
        svc     #0
        b       _start
        .size   _start, . - _start

        .section .note.GNU-stack, "", %progbits

#else
#error "pause.S: unsupported architecture"
#endif
