/* The restore's inline page check (crpy.restore.pagecheck): each task reads its pages into place
 * and hashes the bytes just read while they are still in the CPU's cache, so checking them costs
 * the hash only, not a second read of the page cache.  crpy_crc32c_combine joins the digests of
 * two adjacent byte ranges, for chunks that several reads fill. */
#include <sys/mman.h>
#include <sys/uio.h>

#define CRPY_PIECE_IOVS 64         /* iovecs of one preadv of a piece (a piece is <= one chunk) */
#define CRPY_CRC32C_POLY 0x82f63b78u

/* a * b modulo the CRC-32C polynomial, bit-reflected (x^0 is the top bit) */
static uint32_t crpy_crc32c_mulmod(uint32_t a, uint32_t b)
{
    uint32_t product = 0, bit;

    for (bit = 1u << 31; bit; bit >>= 1) {
        if (a & bit)
            product ^= b;
        b = b & 1 ? (b >> 1) ^ CRPY_CRC32C_POLY : b >> 1;
    }
    return product;
}

/* crc32c of A followed by B from crc32c(A), crc32c(B) and B's length: A's digest moved past
 * len_b zero bytes (times x^(8 len_b)), then B's added; the pre/post inversions cancel out. */
static uint32_t crpy_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    uint32_t shift = 1u << 31, power = 1u << 23;      /* x^0 and x^8 */

    for (; len_b; len_b >>= 1) {
        if (len_b & 1)
            shift = crpy_crc32c_mulmod(shift, power);
        power = crpy_crc32c_mulmod(power, power);
    }
    return crpy_crc32c_mulmod(shift, crc_a) ^ crc_b;
}

/* Read all of one piece (the iovecs of its bytes, from file offset pos); iov[] is consumed. */
static long crpy_read_piece(int fd, struct iovec *iov, int left, uint64_t pos, uint64_t len)
{
    uint64_t done = 0;

    while (done < len) {
        ssize_t got = preadv(fd, iov, left, (off_t)(pos + done));

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -EIO;                 /* the image is shorter than its pagemap says */
        done += (uint64_t)got;
        while (left && (uint64_t)got >= iov->iov_len) {
            got -= (ssize_t)iov->iov_len;
            iov++, left--;
        }
        if (left && got) {                /* stopped inside an iovec: go on from there */
            iov->iov_base = (char *)iov->iov_base + got;
            iov->iov_len -= (size_t)got;
        }
    }
    return 0;
}

#define CRPY_MADV_POPULATE_WRITE 23
/* Bytes populated, read and hashed at a time: the piece's zeroed lines, the page cache it is
 * copied from and the copy the hash reads stay in the core's L2 (2 MiB on the Xeons here).  Two
 * threads filling a GiB (10 alternations): 1 MiB pieces, the hash costs 13.3 ms of wall and 26
 * of CPU; 256 KiB, 3.7 and 7 (128 KiB: 6.6 and 14; unhashed, the size changes nothing). */
#define CRPY_PIECE (256u << 10)

/* Read bytes [offset, offset + sum of the lengths) of fd into the n buffers (addrs[i], lens[i])
 * in order, a piece (at most CRPY_PIECE bytes, within one chunk) at a time.  populate: each
 * piece's memory is allocated (MADV_POPULATE_WRITE) right before its read, so the zeroed lines
 * are still in the CPU's cache when the read overwrites them (a batch populated whole first had
 * them evicted: 2 threads filling a GiB, 255 against 247 ms, 261 against 250 with crcs); a
 * failure only costs time, the read faults them in.  crcs (or NULL): each piece hashed right
 * after its read, crcs[k] = crc32c of the k-th part of the read, the parts being its bytes cut
 * at the multiples of chunk in the file.  Returns the number of parts, or -errno. */
static long crpy_read_pieces(int fd, const uint64_t *addrs, const uint64_t *lens, int n, uint64_t offset,
                             uint32_t chunk, uint32_t *crcs, int populate)
{
    struct iovec piece[CRPY_PIECE_IOVS], hashed[CRPY_PIECE_IOVS];
    uint64_t pos = offset, used = 0;
    uint32_t crc = 0;
    long parts = 0;
    int i = 0;

    pthread_once(&crpy_crc32c_once, crc32c_init);
    while (i < n) {
        uint64_t room = chunk - pos % chunk, len = 0;
        long err;
        int k, j;

        if (room > CRPY_PIECE)
            room = CRPY_PIECE;

        for (k = 0; i < n && room > 0 && k < CRPY_PIECE_IOVS; k++) {
            uint64_t take = lens[i] - used < room ? lens[i] - used : room;

            piece[k].iov_base = (void *)(uintptr_t)(addrs[i] + used);
            piece[k].iov_len = take;
            hashed[k] = piece[k];
            used += take, room -= take, len += take;
            if (used == lens[i])
                i++, used = 0;
        }
        for (j = 0; populate && j < k; j++)
            madvise(piece[j].iov_base, piece[j].iov_len, CRPY_MADV_POPULATE_WRITE);
        err = crpy_read_piece(fd, piece, k, pos, len);
        if (err < 0)
            return err;
        for (j = 0; crcs && j < k; j++)  /* still in the cache: the read just wrote them */
            crc = crc32c_update(crc, hashed[j].iov_base, hashed[j].iov_len);
        pos += len;
        if (pos % chunk == 0 || i == n) {   /* a part ends at a chunk's end or the read's */
            if (crcs)
                crcs[parts] = crc;
            parts++;
            crc = 0;
        }
    }
    return parts;
}

/* crpy_read_pieces hashing every piece, nothing populated (the tree's leaf programs populate
 * in ops of their own) */
static long crpy_pread_crc(int fd, const uint64_t *addrs, const uint64_t *lens, int n, uint64_t offset,
                           uint32_t chunk, uint32_t *crcs)
{
    return crpy_read_pieces(fd, addrs, lens, n, offset, chunk, crcs, 0);
}
