/*
 * F2: a file held across unbind + bind: dev_dax_probe's cdev_init() resets the kobject the file
 * still holds; after it is closed every open of the node fails with ENXIO, and destroying the
 * namespace afterwards hits "list_del corruption" (cd_forget). Run as root on a scratch device:
 *   ./f2 dax1.0 && ndctl destroy-namespace -f namespace1.0
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
	held = open(node, O_RDWR);
	if (held < 0)
		die(node);
	driver("unbind", argv[1]);
	driver("bind", argv[1]);		/* cdev_init on the referenced cdev */
	close(held);				/* its cdev_put drops the new binding's reference */
	f = open(node, O_RDWR);
	if (f >= 0) {
		printf("open after rebind succeeded: not reproduced\n");
		return 1;
	}
	printf("open after rebind: %s (expected ENXIO); now destroy the namespace\n", strerror(errno));
	return 0;
}
