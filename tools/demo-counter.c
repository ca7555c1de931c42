/* The demo's sample program: a daemon that counts, printing one line every 100 ms. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec tick = { 0, 100 * 1000 * 1000 };
    unsigned long n = 0;

    /* Like any daemon: drop fds inherited from whoever started us (make, a shell...). */
    syscall(SYS_close_range, 3, ~0U, 0);
    if (setsid() < 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        printf("count %lu\n", n++);
        nanosleep(&tick, NULL);
    }
}
