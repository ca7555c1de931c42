/*
 * filemap_prot: four mappings of one file whose protections differ, as a program gets them from
 * the open mode of its fd: MAP_SHARED PROT_READ from an O_RDONLY fd (mprotect to PROT_WRITE must
 * fail with EACCES), MAP_SHARED PROT_READ from an O_RDWR fd (mprotect to PROT_WRITE must work and
 * the write reach the file), MAP_SHARED PROT_READ|PROT_WRITE, and MAP_PRIVATE PROT_READ from an
 * O_RDONLY fd (a private copy may always become writable).  After SIGTERM each mapping must have
 * the VmFlags it had (mw, "may write", is the open mode's trace), the file's data, and mprotect
 * must succeed or fail on each exactly as before the dump.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NMAPS 4
#define LEN (2 * PAGE_SIZE)
#define SEED 0x5eed0000ULL

static const struct {
	const char *name;
	int open_mode, prot, flags;
	int can_write;          /* mprotect(PROT_READ | PROT_WRITE) works */
} maps[NMAPS] = {
	{"shared r from O_RDONLY", O_RDONLY, PROT_READ, MAP_SHARED, 0},
	{"shared r from O_RDWR", O_RDWR, PROT_READ, MAP_SHARED, 1},
	{"shared rw from O_RDWR", O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED, 1},
	{"private r from O_RDONLY", O_RDONLY, PROT_READ, MAP_PRIVATE, 1},
};

static char *addr[NMAPS], *path;
static char flags_before[NMAPS][256];

static char *map_file(int i, void *at)
{
	int fd = open(path, maps[i].open_mode);
	char *m;

	if (fd < 0)
		test_abort("open %s: %s", path, strerror(errno));
	/* file page 2i..2i+1 each: no two mappings are neighbours in the file, so none merge */
	m = mmap(at, LEN, maps[i].prot, maps[i].flags | (at ? MAP_FIXED : 0), fd, (off_t)i * LEN);
	close(fd);
	if (m == MAP_FAILED)
		test_abort("mmap %s: %s", maps[i].name, strerror(errno));
	return m;
}

int main(int argc, char **argv)
{
	static char buf[NMAPS * LEN];
	char now[256];
	char *area;
	int fd;

	test_init(argc, argv);
	path = test_path(".file");
	fill_pattern(buf, sizeof(buf), SEED);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		test_abort("cannot write %s", path);
	close(fd);
	/* one reservation with a PROT_NONE page between the mappings */
	area = mmap(NULL, NMAPS * (LEN + PAGE_SIZE), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		test_abort("mmap failed");
	for (int i = 0; i < NMAPS; i++) {
		addr[i] = map_file(i, area + i * (LEN + PAGE_SIZE));
		smaps_field(addr[i], "VmFlags", flags_before[i], sizeof(flags_before[i]));
		if (!flags_before[i][0])
			test_abort("no VmFlags for the %s mapping", maps[i].name);
		test_msg("%s: VmFlags %s", maps[i].name, flags_before[i]);
	}
	test_daemon();

	test_waitsig();
	if (zdtm_break) {               /* the O_RDWR PROT_READ mapping, now from an O_RDONLY fd */
		int ro = open(path, O_RDONLY);
		if (ro < 0 || mmap(addr[1], LEN, PROT_READ, MAP_SHARED | MAP_FIXED, ro, LEN) == MAP_FAILED)
			test_abort("break: remap failed");
		close(ro);
	}
	for (int i = 0; i < NMAPS; i++) {
		smaps_field(addr[i], "VmFlags", now, sizeof(now));
		if (strcmp(now, flags_before[i]))
			fail("%s: VmFlags \"%s\", was \"%s\"", maps[i].name, now, flags_before[i]);
		if (memcmp(addr[i], buf + i * LEN, LEN))
			fail("%s: not the file's data", maps[i].name);
		int r = mprotect(addr[i], LEN, PROT_READ | PROT_WRITE);
		if (maps[i].can_write && r)
			fail("%s: mprotect(PROT_READ|PROT_WRITE): %s, worked before the dump", maps[i].name,
			     strerror(errno));
		if (!maps[i].can_write && !(r && errno == EACCES))
			fail("%s: mprotect(PROT_READ|PROT_WRITE) %s, before the dump it failed with EACCES",
			     maps[i].name, r ? strerror(errno) : "worked");
	}
	/* the shared mapping made writable writes the file */
	if (!test_failed()) {
		char byte;
		addr[1][7] ^= 0x55;
		msync(addr[1], LEN, MS_SYNC);
		fd = open(path, O_RDONLY);
		if (fd < 0 || pread(fd, &byte, 1, LEN + 7) != 1 || byte != (char)(buf[LEN + 7] ^ 0x55))
			fail("a write through the re-protected shared mapping did not reach the file");
		close(fd);
	}
	return test_finish();
}
