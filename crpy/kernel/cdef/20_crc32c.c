/* CRC-32C of crpy-digests: the parasite's code (parasite/crc32c.h), for the restore's check and
 * the dump's chunks the parasite did not hash.  crpy_crc32c_file hashes a range of an image in C
 * with the GIL released (cffi API mode), through a small buffer. */
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>
#include "crc32c.h"

static pthread_once_t crpy_crc32c_once = PTHREAD_ONCE_INIT;

static uint32_t crpy_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crpy_crc32c_once, crc32c_init);
    return crc32c_update(crc, buf, len);
}

static int crpy_crc32c_sse42(void)
{
    pthread_once(&crpy_crc32c_once, crc32c_init);
    return crc32c_sse42;
}

/* the table path whatever the CPU (tests: it must equal the instruction's) */
static uint32_t crpy_crc32c_soft(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crpy_crc32c_once, crc32c_init);
    return crc32c_soft(crc, buf, len);
}

#define CRPY_CRC_BUF (128UL << 10)

/* out[i] = crc32c of bytes [start + i * chunk, ...) up to end (start a multiple of chunk), read
 * through a buffer that stays in the CPU's cache: no mapping (no page tables to build and tear
 * down, no mmap_lock between the check's threads).  Measured alike to mapping windows of 1-64 MiB
 * with MAP_POPULATE; either way reading the page cache is most of the cost, the hash little.
 * Returns the number of chunks, or -errno. */
static long crpy_crc32c_file(int fd, uint64_t start, uint64_t end, uint32_t chunk, uint64_t *out)
{
    static __thread unsigned char buf[CRPY_CRC_BUF] __attribute__((aligned(64)));
    uint64_t pos = start, n = 0;
    uint32_t crc = 0;

    pthread_once(&crpy_crc32c_once, crc32c_init);
    while (pos < end) {
        uint64_t want = end - pos < CRPY_CRC_BUF ? end - pos : CRPY_CRC_BUF;
        ssize_t got = pread(fd, buf, want, (off_t)pos);
        const unsigned char *p = buf;

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -EIO;          /* shorter than it was */
        while (got > 0) {
            uint64_t in_chunk = chunk - (pos - start) % chunk;
            uint64_t take = (uint64_t)got < in_chunk ? (uint64_t)got : in_chunk;
            crc = crc32c_update(crc, p, take);
            p += take;
            got -= (ssize_t)take;
            pos += take;
            if ((pos - start) % chunk == 0 || pos == end) {
                out[n++] = crc;
                crc = 0;
            }
        }
    }
    return (long)n;
}

/* Many small images in one call (the restore's check of a tree's ~7 images per task: one call
 * in Python per file cost more than the hashing).  names[i] under dirfd; sizes[i]: in, the size
 * the dump recorded; out, the file's size, or -errno.  The chunks of a file that has the
 * recorded size go to out[first[i] ...]; one that has not is left for the caller to look at. */
static void crpy_crc32c_files(int dirfd, const char *const *names, int n, uint32_t chunk,
                              int64_t *sizes, const uint64_t *first, uint64_t *out)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        int fd = openat(dirfd, names[i], O_RDONLY | O_CLOEXEC);
        long got;

        if (fd < 0) {
            sizes[i] = -errno;
            continue;
        }
        if (fstat(fd, &st) < 0) {
            sizes[i] = -errno;
        } else if ((int64_t)st.st_size != sizes[i]) {
            sizes[i] = st.st_size;
        } else if (st.st_size) {
            got = crpy_crc32c_file(fd, 0, st.st_size, chunk, out + first[i]);
            if (got < 0)
                sizes[i] = got;
        }
        close(fd);
    }
}
