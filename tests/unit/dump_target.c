/* Target of tests/unit/test_dump.py: sets up memory, fds and signal state of known shape, writes
 * "ready <addresses>" to DIR/ready, then waits in pause().  argv: DIR [socket] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/vm_sockets.h>
#include <unistd.h>

static volatile int usr1;
static void on_usr1(int s) { (void)s; usr1++; }

int main(int argc, char **argv)
{
    const char *dir = argv[1];
    char path[4096];
    size_t big = 8 << 20;
    unsigned char *heap = malloc(big);
    for (size_t i = 0; i < big; i++)
        heap[i] = (unsigned char)((i * 2654435761u) >> 13);
    char *shared = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    strcpy(shared + 4096, "shared page");
    char *g = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(g, 0x5a, 16 * 4096);
    madvise(g + 4 * 4096, 2 * 4096, 102 /* MADV_GUARD_INSTALL */);
    mprotect(g + 8 * 4096, 4096, PROT_NONE);
    volatile char *z = mmap(NULL, 64 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 64; i++)
        (void)z[i * 4096];                       /* the zero page only: nothing to dump */
    snprintf(path, sizeof path, "%s/data.bin", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 1024; i++)           /* 16 KiB: both mapped pages lie inside */
        write(fd, "0123456789abcdef", 16);
    lseek(fd, 100, SEEK_SET);
    dup2(fd, 5);                                 /* fd 5 shares fd 3's open file description */
    int again = open(path, O_RDONLY);            /* fd 6: the same file, opened on its own */
    dup2(again, 6);
    close(again);
    char *fp = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    fp[4096 + 1] = 'X';                          /* one COW'd page of two */
    (void)fp[0];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    int lfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    dup2(lfd, 7);
    fcntl(7, F_SETFD, FD_CLOEXEC);
    close(lfd);
    if (argc > 2 && !strcmp(argv[2], "socket")) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);  /* vsock: not dumped */
        dup2(s, 9);
        close(s);
    }
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    /* written under another name and renamed once closed: the test, which dumps as soon as it
     * sees DIR/ready, must not find this file's fd still open */
    snprintf(path, sizeof path, "%s/ready.new", dir);
    FILE *r = fopen(path, "w");
    fprintf(r, "ready %lx %lx %lx %lx\n", (unsigned long)heap, (unsigned long)g, (unsigned long)fp,
            (unsigned long)shared);
    fclose(r);
    char done[sizeof path];
    snprintf(done, sizeof done, "%s/ready", dir);
    rename(path, done);
    for (;;) {
        pause();
        if (usr1) {                              /* prove the task still works after a dump */
            snprintf(path, sizeof path, "%s/usr1", dir);
            FILE *u = fopen(path, "w");
            fprintf(u, "%d %c %s\n", usr1, fp[4097], shared + 4096);
            fclose(u);
            usr1 = 0;
        }
    }
}
