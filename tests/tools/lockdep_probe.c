// SPDX-License-Identifier: GPL-2.0
/*
 * lockdep_probe: the two user-space halves of the upstream lock cycle that
 * tests/lockdep_upstream.sh provokes (Documentation/tests.md, "Known
 * lockdep report").
 *
 *   lockdep_probe dio FILE     write 1 MiB to FILE with O_DIRECT from an
 *                              anonymous mapping never touched, so that
 *                              pinning its pages takes mmap_lock under the
 *                              file's i_rwsem
 *   lockdep_probe fault FILE   map FILE, advise MADV_RANDOM and read a byte
 *                              of every page: a fault with no readahead
 *                              takes the mapping's invalidate_lock under the
 *                              VMA lock and reads the folio there
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DIO_LEN (1 << 20)

static int dio(const char *path)
{
	char *p = mmap(NULL, DIO_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
	ssize_t n;

	if (p == MAP_FAILED || fd < 0) {
		perror(path);
		return 1;
	}
	n = write(fd, p, DIO_LEN);
	printf("# O_DIRECT write from untouched pages: %zd\n", n);
	return n != DIO_LEN;
}

static int fault(const char *path)
{
	volatile unsigned char *m;
	unsigned long sum = 0;
	off_t size, i;
	int fd = open(path, O_RDONLY);

	size = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
	if (size <= 0) {
		perror(path);
		return 1;
	}
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || madvise((void *)m, size, MADV_RANDOM)) {
		perror("mmap/madvise");
		return 1;
	}
	for (i = 0; i < size; i += 4096)
		sum += m[i];
	printf("# faulted %lld pages (byte sum %lu)\n", (long long)(size + 4095) / 4096, sum);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "dio"))
		return dio(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "fault"))
		return fault(argv[2]);
	fprintf(stderr, "usage: lockdep_probe dio|fault FILE\n");
	return 2;
}
