// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for the Rust on-demand backend: out-of-line wrappers for the
 * static inline functions and macros that Rust cannot call directly.
 *
 * Each helper does exactly what the wrapped inline function or macro does;
 * their Rust declarations live in one place, rust/abstractions/helpers.rs.
 */
#include <linux/completion.h>
#include <linux/dcache.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "helpers.h"

/* An allocating XArray whose ids start at 0. */
void cfod_xa_init_alloc(struct xarray *xa)
{
	xa_init_flags(xa, XA_FLAGS_ALLOC);
}

void cfod_xa_lock(struct xarray *xa)
{
	xa_lock(xa);
}

void cfod_xa_unlock(struct xarray *xa)
{
	xa_unlock(xa);
}

void cfod_init_completion(struct completion *x)
{
	init_completion(x);
}

void cfod_init_work(struct work_struct *work, work_func_t func)
{
	INIT_WORK(work, func);
}

bool cfod_queue_work(struct workqueue_struct *wq, struct work_struct *work)
{
	return queue_work(wq, work);
}

struct file *cfod_get_file(struct file *file)
{
	return get_file(file);
}

struct dentry *cfod_dget(struct dentry *dentry)
{
	return dget(dentry);
}

void cfod_msleep(unsigned int msecs)
{
	msleep(msecs);
}
