/*
 * amx: AMX, the dynamic XSAVE feature.  The process asks for it (arch_prctl ARCH_REQ_XCOMP_PERM),
 * loads a tile configuration and a tile, stores it back and releases the tiles (TILERELEASE: a
 * task frozen with tiles in use is amx_inuse's case), then waits.  After SIGTERM it must still
 * have the permission (ARCH_GET_XCOMP_PERM), and AMX must still work: without the permission
 * the first tile instruction would kill it with SIGILL.
 * ZDTM_BREAK: the test re-executes itself (exec drops the permission) and checks there.
 */
#include "lib/zdtmtst.h"

#include <immintrin.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XTILEDATA 18

struct tilecfg {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} __attribute__((packed));

static unsigned long perm(void)
{
	unsigned long bits = 0;
	if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits))
		return 0;
	return bits;
}

/* Tile 0 (16 rows of 64 bytes) loaded from in, stored to out; the tiles released. */
__attribute__((target("amx-tile"))) static void tile_round_trip(const uint8_t *in, uint8_t *out)
{
	static struct tilecfg cfg __attribute__((aligned(64)));
	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	cfg.rows[0] = 16;
	cfg.colsb[0] = 64;
	_tile_loadconfig(&cfg);
	_tile_loadd(0, in, 64);
	_tile_stored(0, out, 64);
	_tile_release();
}

static void tiles_work(const char *when)
{
	static uint8_t in[1024], out[1024];
	for (int i = 0; i < 1024; i++)
		in[i] = (uint8_t)(i * 7 + 1);
	memset(out, 0, sizeof(out));
	tile_round_trip(in, out);
	if (memcmp(in, out, sizeof(in)))
		fail("%s: a tile stored back is not what was loaded", when);
}

static int check(void)
{
	if (!(perm() & 1UL << XTILEDATA))
		fail("AMX permission lost (ARCH_GET_XCOMP_PERM %#lx): a tile instruction would be SIGILL", perm());
	else
		tiles_work("after");
	return test_finish();
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--recheck"))     /* ZDTM_BREAK: after exec */
		return check();
	test_init(argc, argv);
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XTILEDATA))
		test_abort("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed: %m");
	if (!(perm() & 1UL << XTILEDATA))
		test_abort("no AMX permission after asking for it");
	tiles_work("before");
	test_daemon();
	test_waitsig();
	if (zdtm_break) {
		execl("/proc/self/exe", argv[0], "--recheck", (char *)NULL);
		fail("exec: %m");
	}
	return check();
}
