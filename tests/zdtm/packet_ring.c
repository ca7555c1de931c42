/*
 * packet_ring: a packet socket with a TPACKET_V2 rx ring mapped into the task.  crpy does not make
 * packet rings again: the dump must refuse in one line (the mapping of the socket is met first; an
 * unmapped ring is refused by packet_socket.py) and leave the task untouched (desc.py dump_fails).  The check: the ring still has its geometry and its first
 * frame is still the task's (a pattern written into the mapping).
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <linux/if_packet.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct tpacket_req req = {.tp_block_size = 4096, .tp_block_nr = 4, .tp_frame_size = 2048, .tp_frame_nr = 8};
	int s, v2 = TPACKET_V2;
	unsigned char *ring;

	test_init(argc, argv);
	s = socket(AF_PACKET, SOCK_RAW, 0);
	if (s < 0 || setsockopt(s, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2)) ||
	    setsockopt(s, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)))
		test_abort("rx ring: %s", strerror(errno));
	ring = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
	if (ring == MAP_FAILED)
		test_abort("mmap of the ring: %s", strerror(errno));
	fill_pattern(ring + 64, 256, 5);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		ring[64] ^= 1;
	if (check_pattern(ring + 64, 256, 5) != -1)
		fail("the ring's first frame changed");
	if (setsockopt(s, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2)) != -1 || errno != EBUSY)
		fail("the socket no longer has its ring (PACKET_VERSION did not answer EBUSY)");
	return test_finish();
}
