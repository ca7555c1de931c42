/*
 * unlinked_subdir: unlinked files whose directory matters.
 *  - an O_TMPFILE file made in a directory of its own (shown as DIR/#INODE (deleted), opened
 *    with O_TMPFILE's O_DIRECTORY bit in its flags), with data at an offset: after restore it
 *    reads its data at its offset, a MAP_SHARED mapping of it is still that file (a write
 *    through one shows in the other), and it is still an O_TMPFILE: linkat() gives it a name.
 *  - a file unlinked and then its directory removed: after restore the fd reads its data, its
 *    link still names the old directory, and that directory does not exist.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TMP 40
#define GONE 41

static unsigned char buf[20000], got[20000];

static void check_data(int fd, uint64_t seed, const char *what)
{
	fill_pattern(buf, sizeof(buf), seed);
	if (pread(fd, got, sizeof(got), 0) != sizeof(got) || memcmp(got, buf, sizeof(got)))
		fail("%s: data differs", what);
}

int main(int argc, char **argv)
{
	char dir[PATH_MAX], gone[PATH_MAX], link[PATH_MAX], fdpath[64];
	struct stat st;
	unsigned char *map;

	test_init(argc, argv);
	snprintf(dir, sizeof(dir), "%s", test_path(".tmpdir"));
	snprintf(gone, sizeof(gone), "%s", test_path(".gone"));
	if (mkdir(dir, 0755) || mkdir(gone, 0755))
		test_abort("mkdir: %s", strerror(errno));
	fill_pattern(buf, sizeof(buf), 0x7e1);
	int fd = open(dir, O_TMPFILE | O_RDWR, 0640);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf) || dup2(fd, TMP) < 0 || lseek(TMP, 333, SEEK_SET) != 333)
		test_abort("O_TMPFILE: %s", strerror(errno));
	close(fd);
	map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, TMP, 0);
	if (map == MAP_FAILED)
		test_abort("mmap: %s", strerror(errno));
	fill_pattern(buf, sizeof(buf), 0x7e2);
	snprintf(link, sizeof(link), "%s/file", gone);
	fd = open(link, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || write(fd, buf, sizeof(buf)) != sizeof(buf) || dup2(fd, GONE) < 0 || unlink(link) || rmdir(gone))
		test_abort("file in a removed directory: %s", strerror(errno));
	close(fd);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		ftruncate(TMP, 100);
	check_data(TMP, 0x7e1, "O_TMPFILE file");
	if (memcmp(map, buf, 4096))
		fail("the mapping of the O_TMPFILE file lost its data");
	map[7] ^= 0xff;
	if (pread(TMP, got, 8, 0) != 8 || got[7] != map[7])
		fail("the mapping is no longer the O_TMPFILE file");
	map[7] ^= 0xff;
	if (lseek(TMP, 0, SEEK_CUR) != 333)
		fail("O_TMPFILE file: offset %ld, want 333", (long)lseek(TMP, 0, SEEK_CUR));
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", TMP);
	snprintf(link, sizeof(link), "%s/named", dir);
	if (linkat(AT_FDCWD, fdpath, AT_FDCWD, link, AT_SYMLINK_FOLLOW))
		fail("the O_TMPFILE file cannot be linked any more: %s", strerror(errno));
	else if (stat(link, &st) || st.st_size != sizeof(buf) || (st.st_mode & 0777) != 0640)
		fail("the O_TMPFILE file, linked, has size %lld mode %o", (long long)st.st_size, st.st_mode & 0777);
	unlink(link);
	check_data(GONE, 0x7e2, "file in a removed directory");
	ssize_t n = readlink((snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", GONE), fdpath), link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strncmp(link, gone, strlen(gone)) || !strstr(link, "/file (deleted)"))
		fail("the file in a removed directory is now \"%s\"", link);
	if (access(gone, F_OK) == 0)
		fail("the removed directory %s exists again", gone);
	rmdir(dir);
	return test_finish();
}
