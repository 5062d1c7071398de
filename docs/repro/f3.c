/*
 * F3: check_vma() checks vm_start and vm_end but not vm_pgoff. MAP_FIXED at a 2M-aligned address
 * with file offset 4K is accepted on a 2M (or 1G) device, and the huge fault maps the unit that
 * holds the offset rounded down: the mapping shows device offset 0 where offset 4K belongs.
 *   ./f3 dax1.0 2097152      -> "byte at +0: 17 (device offset 4K holds 34)"
 */
#include "common.h"

int main(int argc, char **argv)
{
	unsigned long align;
	char node[64];
	unsigned char *whole, *m;
	uintptr_t base;
	void *res;
	int f;

	if (argc != 3) {
		fprintf(stderr, "usage: %s daxX.Y ALIGN\n", argv[0]);
		return 2;
	}
	align = strtoul(argv[2], NULL, 0);
	snprintf(node, sizeof(node), "/dev/%s", argv[1]);
	f = open(node, O_RDWR);
	if (f < 0)
		die(node);
	whole = mmap(NULL, 2 * align, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (whole == MAP_FAILED)
		die("mmap at offset 0");
	whole[0] = 17;				/* device offset 0 */
	whole[4096] = 34;			/* device offset 4K */
	res = mmap(NULL, 2 * align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (res == MAP_FAILED)
		die("reserve");
	base = ((uintptr_t)res + align - 1) & ~(align - 1);
	m = mmap((void *)base, align, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 4096);
	if (m == MAP_FAILED)
		die("MAP_FIXED at offset 4K");	/* a fixed kernel refuses it with EINVAL */
	printf("byte at +0: %d (device offset 4K holds 34; 17 is device offset 0)\n", m[0]);
	return m[0] == 34 ? 1 : 0;
}
