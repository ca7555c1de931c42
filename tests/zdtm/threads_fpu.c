/*
 * threads_fpu: 8 threads, each spinning in user space with its own values in ymm0-ymm3 and in
 * r12/r13.  After SIGTERM each thread leaves its loop, stores its registers and its tid; the main
 * thread checks every value and that every thread kept its tid.
 */
#include "lib/zdtmtst.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define NTHREADS 8

struct spinner {
	pthread_t th;
	int idx;
	pid_t tid_before, tid_after;
	volatile int started;
	uint64_t in[18], out[18];   /* 4 ymm = 16 words, then r12, r13 */
};

static struct spinner sp[NTHREADS];
static volatile int stop_flag;

static void *spin(void *arg)
{
	struct spinner *s = arg;
	int brk = zdtm_break && s->idx == 3;

	s->tid_before = gettid();
	s->started = 1;
	asm volatile(
		"vmovdqu 0(%[in]), %%ymm0\n\t"
		"vmovdqu 32(%[in]), %%ymm1\n\t"
		"vmovdqu 64(%[in]), %%ymm2\n\t"
		"vmovdqu 96(%[in]), %%ymm3\n\t"
		"movq 128(%[in]), %%r12\n\t"
		"movq 136(%[in]), %%r13\n\t"
		"1: pause\n\t"
		"cmpl $0, (%[stop])\n\t"
		"je 1b\n\t"
		"testl %[brk], %[brk]\n\t"
		"jz 2f\n\t"
		"vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
		"2:\n\t"
		"vmovdqu %%ymm0, 0(%[out])\n\t"
		"vmovdqu %%ymm1, 32(%[out])\n\t"
		"vmovdqu %%ymm2, 64(%[out])\n\t"
		"vmovdqu %%ymm3, 96(%[out])\n\t"
		"movq %%r12, 128(%[out])\n\t"
		"movq %%r13, 136(%[out])\n\t"
		"vzeroupper\n\t"
		:
		: [in] "r"(s->in), [out] "r"(s->out), [stop] "r"(&stop_flag), [brk] "r"(brk)
		: "memory", "cc", "r12", "r13", "xmm0", "xmm1", "xmm2", "xmm3");
	s->tid_after = gettid();
	return NULL;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (!__builtin_cpu_supports("avx"))
		test_abort("this CPU has no AVX: the test cannot hold ymm state");
	for (int i = 0; i < NTHREADS; i++) {
		uint64_t seed = 0x1234567ULL * (uint64_t)(i + 1);
		sp[i].idx = i;
		for (int w = 0; w < 18; w++)
			sp[i].in[w] = xorshift64(&seed);
		if (pthread_create(&sp[i].th, NULL, spin, &sp[i]))
			test_abort("pthread_create failed");
	}
	for (int i = 0; i < NTHREADS; i++)
		while (!sp[i].started)
			usleep(1000);
	usleep(10000);   /* into their loops */
	test_msg("%d threads spinning", NTHREADS);
	test_daemon();

	test_waitsig();
	stop_flag = 1;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(sp[i].th, NULL);
		if (sp[i].tid_before != sp[i].tid_after)
			fail("thread %d: tid %d became %d", i, sp[i].tid_before, sp[i].tid_after);
		for (int w = 0; w < 18; w++)
			if (sp[i].in[w] != sp[i].out[w]) {
				fail("thread %d: %s word %d is %#lx, want %#lx", i, w < 16 ? "ymm" : "r12/r13",
				     w, (unsigned long)sp[i].out[w], (unsigned long)sp[i].in[w]);
				break;
			}
	}
	return test_finish();
}
