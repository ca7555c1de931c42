/*
 * amx_inuse: a task frozen with AMX tiles in use (loaded, not released).  Their state is nowhere
 * in CRIU's image format, so the dump refuses the task in one line and leaves it running; its
 * tiles must then hold what it loaded.
 * ZDTM_BREAK: tile 0 is zeroed before it is stored.
 */
#include "lib/zdtmtst.h"

#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XTILEDATA 18

static struct {
	uint8_t palette, start_row, reserved[14];
	uint16_t colsb[16];
	uint8_t rows[16];
} __attribute__((packed, aligned(64))) cfg;

static uint8_t in[1024], out[1024];

__attribute__((target("amx-tile"))) static void load_tiles(void)
{
	cfg.palette = 1;
	cfg.rows[0] = 16;
	cfg.colsb[0] = 64;
	_tile_loadconfig(&cfg);
	_tile_loadd(0, in, 64);
}

__attribute__((target("amx-tile"))) static void store_tiles(void)
{
	if (zdtm_break)
		_tile_zero(0);
	_tile_stored(0, out, 64);
	_tile_release();
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XTILEDATA))
		test_abort("arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) failed: %m");
	for (int i = 0; i < 1024; i++)
		in[i] = (uint8_t)(i * 5 + 3);
	load_tiles();
	test_daemon();
	test_waitsig();
	store_tiles();
	if (memcmp(in, out, sizeof(in)))
		fail("tile 0 does not hold what was loaded before the dump");
	return test_finish();
}
