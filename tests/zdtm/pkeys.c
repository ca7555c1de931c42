/*
 * pkeys: memory protection keys.  Page A is tagged with a key whose writes PKRU disables (reads
 * work, writes fault), page B with a key whose every access is disabled (its data is only
 * readable once the key is allowed again).  After SIGTERM /proc/self/smaps must show the same
 * ProtectionKey for each, PKRU must be the same, the accesses must fault as before, and allowing
 * the keys with pkey_set must show the data intact and let writes through.
 */
#include "lib/zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static char *page_a, *page_b;
static int key_a, key_b;
static unsigned pkru_before;
static char smaps[1 << 20];

static unsigned rdpkru(void)
{
	unsigned eax, edx;
	asm volatile(".byte 0x0f,0x01,0xee" : "=a"(eax), "=d"(edx) : "c"(0));
	return eax;
}

static void wrpkru(unsigned v)
{
	asm volatile(".byte 0x0f,0x01,0xef" : : "a"(v), "c"(0), "d"(0) : "memory");
}

/* A fault's signal delivery resets PKRU and siglongjmp does not restore it: put it back. */
static int probe_keep_pkru(volatile void *addr, int write)
{
	unsigned pkru = rdpkru();
	int r = write ? probe_write(addr) : probe_read(addr);
	wrpkru(pkru);
	return r;
}

static int smaps_key(const void *addr)
{
	char want[32], *l, *k;
	int v = -1;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	if (read_whole("/proc/self/smaps", smaps, sizeof(smaps)) >= 0 && (l = strstr(smaps, want)) &&
	    (k = strstr(l, "ProtectionKey:")))
		sscanf(k + 14, "%d", &v);
	return v;
}

static char *tagged_page(int key, int fill)
{
	char *p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		test_abort("mmap failed");
	memset(p, fill, PAGE_SIZE);
	if (pkey_mprotect(p, PAGE_SIZE, PROT_READ | PROT_WRITE, key))
		test_abort("pkey_mprotect failed");
	return p;
}

static void check_access(const char *when)
{
	if (probe_keep_pkru(page_a, 0) || !probe_keep_pkru(page_a, 1))
		fail("%s: page A (write-disabled key) does not read-but-not-write", when);
	if (!probe_keep_pkru(page_b, 0))
		fail("%s: page B (access-disabled key) can be read", when);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	key_a = pkey_alloc(0, 0);
	key_b = pkey_alloc(0, 0);
	if (key_a < 0 || key_b < 0)
		test_abort("pkey_alloc failed: this CPU or kernel has no protection keys");
	page_a = tagged_page(key_a, 0x5a);
	page_b = tagged_page(key_b, 0xa5);
	pkey_set(key_a, PKEY_DISABLE_WRITE);
	pkey_set(key_b, PKEY_DISABLE_ACCESS);
	check_access("before dump");
	if (test_failed())
		test_abort("protection keys do not work");
	pkru_before = rdpkru();
	test_msg("keys %d (no write) and %d (no access), PKRU %#x", key_a, key_b, pkru_before);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		pkey_set(key_b, 0);
	if (smaps_key(page_a) != key_a || smaps_key(page_b) != key_b)
		fail("smaps ProtectionKey %d and %d, want %d and %d", smaps_key(page_a), smaps_key(page_b),
		     key_a, key_b);
	if (rdpkru() != pkru_before)
		fail("PKRU %#x, was %#x", rdpkru(), pkru_before);
	check_access("after SIGTERM");
	pkey_set(key_a, 0);
	pkey_set(key_b, 0);
	if (page_a[7] != 0x5a || page_b[7] != (char)0xa5)
		fail("data behind the keys changed");
	if (probe_keep_pkru(page_a, 1) || probe_keep_pkru(page_b, 1))
		fail("writes fault even with the keys allowed");
	return test_finish();
}
