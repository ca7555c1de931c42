/*
 * mmap_deleted: mappings of a file deleted after mmap (fd closed): a 1 MiB MAP_SHARED mapping
 * and a 256 KiB MAP_PRIVATE read-only one of another deleted file.  After restore: the data is
 * there, the maps lines still name "(deleted)" files, the shared mapping is still a file mapping
 * (a write lands in the file: a second MAP_SHARED view made by mremap of the same pages sees it).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SH (1UL << 20)
#define PR (256UL << 10)

static char maps[131072];

static int deleted_line(const void *addr)
{
	char want[32], *l, *e;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	if (read_whole("/proc/self/maps", maps, sizeof(maps)) < 0 || !(l = strstr(maps, want)))
		return 0;
	e = strchr(l, '\n');
	if (e)
		*e = 0;
	return strstr(l, "(deleted)") != NULL;
}

static void *map_deleted(const char *suffix, size_t size, int prot, int flags, uint64_t seed)
{
	int fd = open(test_path(suffix), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size))
		test_abort("file: %s", strerror(errno));
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	fill_pattern(p, size, seed);
	munmap(p, size);
	p = mmap(NULL, size, prot, flags, fd, 0);
	if (p == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	close(fd);
	unlink(test_path(suffix));
	return p;
}

int main(int argc, char **argv)
{
	char *sh, *pr;

	test_init(argc, argv);
	sh = map_deleted(".shared", SH, PROT_READ | PROT_WRITE, MAP_SHARED, 0x4444);
	pr = map_deleted(".private", PR, PROT_READ, MAP_PRIVATE, 0x5555);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		sh[4096 * 3] ^= 1;
	long bad;
	if ((bad = check_pattern(sh, SH, 0x4444)) >= 0)
		fail("shared mapping differs at +%ld", bad);
	if ((bad = check_pattern(pr, PR, 0x5555)) >= 0)
		fail("private mapping differs at +%ld", bad);
	if (!deleted_line(sh) || !deleted_line(pr))
		fail("a mapping no longer names a deleted file");
	/* Still the file's pages: the mapping's own file, opened through map_files, sees a write. */
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)sh, (unsigned long)(sh + SH));
	int fd = open(path, O_RDONLY);
	char c = 0;
	sh[100] = 'Z';
	if (fd < 0 || pread(fd, &c, 1, 100) != 1 || c != 'Z')
		fail("a write to the shared mapping is not in its file (%s)", fd < 0 ? strerror(errno) : "other byte");
	if (!probe_write(pr))
		fail("the read-only private mapping can be written");
	return test_finish();
}
