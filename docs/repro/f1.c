/*
 * F1: a file held across unbind lets /dev/daxX.Y open again, with private_data == NULL;
 * mmap through that file dereferences it in check_vma(). Run as root on a scratch device:
 *   ./f1 dax1.0      -> "BUG: kernel NULL pointer dereference ... RIP: check_vma"
 */
#include "common.h"

int main(int argc, char **argv)
{
	char node[64];
	int held, f;

	if (argc != 2) {
		fprintf(stderr, "usage: %s daxX.Y\n", argv[0]);
		return 2;
	}
	snprintf(node, sizeof(node), "/dev/%s", argv[1]);
	held = open(node, O_RDWR);		/* keeps the inode's i_cdev and the cdev kobject */
	if (held < 0)
		die(node);
	driver("unbind", argv[1]);		/* dev_dax_kill, cdev_del: no longer alive */
	f = open(node, O_RDWR);			/* chrdev_open reuses i_cdev; dax_open stores NULL */
	if (f < 0)
		die("open after unbind");
	printf("open after unbind succeeded; mmap now oopses in check_vma\n");
	fflush(stdout);
	mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	die("mmap returned");
}
