/* Shared by the F1-F3 reproducers: sysfs writes and a die-on-error helper. Build: cc -O2 -o fN fN.c */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, strerror(errno));
	exit(1);
}

/* echo NAME > /sys/bus/dax/drivers/device_dax/{bind,unbind} */
static inline void driver(const char *op, const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/dax/drivers/device_dax/%s", op);
	fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, name, strlen(name)) < 0)
		die(path);
	close(fd);
}
