/* CRC-32C of crpy-digests: the parasite's code (parasite/crc32c.h), for the restore's check and
 * the dump's chunks the parasite did not hash.  crpy_crc32c_file hashes a range of an image in C
 * with the GIL released (cffi API mode), a window of its page cache at a time. */
#include <pthread.h>
#include <sys/mman.h>
#include <errno.h>
#include <unistd.h>
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

#define CRPY_CRC_WINDOW (4UL << 20)
#define CRPY_CRC_BUF (128UL << 10)

/* out[i] = crc32c of bytes [start + i * chunk, ...) up to end (start a multiple of chunk);
 * how 0: mapped a window at a time (MAP_POPULATE), 1: pread into a small cache-resident buffer.
 * Returns the number of chunks, or -errno. */
static long crpy_crc32c_file(int fd, uint64_t start, uint64_t end, uint32_t chunk, uint64_t *out, int how)
{
    static __thread unsigned char buf[CRPY_CRC_BUF] __attribute__((aligned(64)));
    uint64_t pos = start, n = 0;
    uint32_t crc = 0;

    pthread_once(&crpy_crc32c_once, crc32c_init);
    while (pos < end) {
        uint64_t len = how ? CRPY_CRC_BUF : CRPY_CRC_WINDOW;
        const unsigned char *p;
        void *map = MAP_FAILED;

        if (len > end - pos)
            len = end - pos;
        if (how) {
            ssize_t got = pread(fd, buf, len, (off_t)pos);
            if (got < 0)
                return -errno;
            if (got == 0)
                return -EIO;      /* shorter than it was */
            len = (uint64_t)got;
            p = buf;
        } else {
            map = mmap(0, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)pos);
            if (map == MAP_FAILED)
                return -errno;
            p = map;
        }
        while (len) {
            uint64_t in_chunk = chunk - (pos - start) % chunk, take = len < in_chunk ? len : in_chunk;
            crc = crc32c_update(crc, p, take);
            p += take;
            len -= take;
            pos += take;
            if ((pos - start) % chunk == 0 || pos == end) {
                out[n++] = crc;
                crc = 0;
            }
        }
        if (map != MAP_FAILED)
            munmap(map, how ? 0 : (size_t)(p - (const unsigned char *)map));
    }
    return (long)n;
}
