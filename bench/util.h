/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the bench tools (cfbench.c, curves.c). Define PROG, the
 * tool's name for its error messages, before including this file.
 */
#ifndef CFOD_BENCH_UTIL_H
#define CFOD_BENCH_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Print "PROG: <message>: <strerror(errno)>" and exit 1. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	fprintf(stderr, PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ": %s\n", strerror(e));
	va_end(ap);
	exit(1);
}

/* The monotonic clock, in ns. */
static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

#endif
