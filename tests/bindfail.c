// SPDX-License-Identifier: GPL-2.0
/*
 * A bind that fails undoes itself. cachefiles refuses a cache directory on
 * tmpfs (no tmpfile with the cache's credentials, EOPNOTSUPP) and a missing
 * one (ENOENT); the patch lets the module backend take a cache only once
 * nothing else can fail, so neither failure calls the module's bind or
 * leaves it a reference, and a bind retried on the same devnode once the
 * directory exists binds normally, calling the module's bind once.
 */
#include "odtest.h"

#define RS "/sys/kernel/debug/cachefiles_ondemand_rs/"

/* A number read from a file, or -1. */
static long read_num(const char *path)
{
	char buf[64];

	if (!read_small(path, buf, sizeof(buf)))
		return -1;
	return strtol(buf, NULL, 10);
}

int main(void)
{
	int rust = !strcmp(backend(), "rust");
	long binds0 = read_num(RS "binds");
	char dir[128];
	int dev, ret;

	ktap_plan(rust ? 14 : 9);
	if (rust)
		diag("module binds so far: %ld", binds0);

	/* tmpfs: refused by cachefiles while it sets the cache up. */
	mkdir("/tmp/bindfail", 0700);
	dev = dev_open();
	check(dev >= 0 && !dev_cmd(dev, "dir /tmp/bindfail"), "devnode open, dir on tmpfs");
	ret = dev_cmd(dev, "bind ondemand");
	check(ret == -EOPNOTSUPP, "bind on tmpfs fails with EOPNOTSUPP (got %d)", ret);
	check(bound_to("none"), "nothing is bound after the failed bind");
	if (rust) {
		check(read_num(RS "binds") == binds0,
		      "the module's bind was not called for it");
		check(read_num("/sys/module/cachefiles_ondemand_rs/refcnt") == 0,
		      "the module holds no reference (devnode still open)");
	}
	close(dev);

	/* A missing directory, then the same devnode binds once it exists. */
	snprintf(dir, sizeof(dir), "/cache/bindfail-%s", backend());
	fresh_dir(dir);
	rmdir(dir);
	dev = dev_open();
	check(dev >= 0 && !dev_cmd(dev, "dir %s", dir), "devnode open, dir on ext4 (missing)");
	ret = dev_cmd(dev, "bind ondemand");
	check(ret == -ENOENT, "bind on a missing directory fails with ENOENT (got %d)", ret);
	if (rust)
		check(read_num(RS "binds") == binds0 && bound_to("none"),
		      "the module's bind was not called; nothing is bound");
	check(!mkdir(dir, 0700), "directory made");
	ret = dev_cmd(dev, "bind ondemand");
	check(ret == 0, "the retried bind succeeds (got %d)", ret);
	check(bound_to(backend()), "the cache is bound to the %s backend", backend());
	if (rust)
		check(read_num(RS "binds") == binds0 + 1,
		      "the module's bind was called once (%ld calls)", read_num(RS "binds") - binds0);
	close(dev);
	/* The devnode's release frees the cache at once (nothing else pins it). */
	check(bound_to("none"), "closing the devnode unbinds the cache");
	if (rust)
		check(read_num("/sys/module/cachefiles_ondemand_rs/refcnt") == 0,
		      "the module is unpinned once the cache is freed");
	return ktap_finish();
}
