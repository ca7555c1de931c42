/*
 * refused_bpf: a bpf array map holding 77 at key 0: refused at dump (refused_kinds.h); then the
 * map still holds 77.
 */
#include "refused_kinds.h"

#include <linux/bpf.h>

static int map_op(int cmd, int fd, uint32_t key, uint64_t *value)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (uintptr_t)&key;
	a.value = (uintptr_t)value;
	return syscall(__NR_bpf, cmd, &a, sizeof(a));
}

int main(int argc, char **argv)
{
	union bpf_attr a;
	uint64_t v = 77;
	int fd;

	test_init(argc, argv);
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_ARRAY;
	a.key_size = 4;
	a.value_size = 8;
	a.max_entries = 4;
	fd = syscall(__NR_bpf, BPF_MAP_CREATE, &a, sizeof(a));
	if (fd < 0 || map_op(BPF_MAP_UPDATE_ELEM, fd, 0, &v))
		test_abort("bpf map: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(fd);
	v = 0;
	if (!fd_is(fd, "bpf-map") || map_op(BPF_MAP_LOOKUP_ELEM, fd, 0, &v) || v != 77)
		fail("the bpf map lost its value (%llu)", (unsigned long long)v);
	return test_finish();
}
