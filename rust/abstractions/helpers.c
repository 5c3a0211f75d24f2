// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for the Rust on-demand backend: out-of-line wrappers for the
 * static inline functions and macros that Rust cannot call directly.
 *
 * Each helper does exactly what the wrapped inline function or macro does;
 * their Rust declarations live in one place, rust/abstractions/helpers.rs.
 */
#include <linux/cachefiles.h>
#include <linux/dcache.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <linux/tracepoint.h>

#include "helpers.h"

/*
 * The four tracepoints of cachefiles that a backend emits, exported by it,
 * declared as <trace/events/cachefiles.h> declares them: that header cannot
 * be included here, as it needs cachefiles' private one. tests/trace_cmp.sh
 * checks that the events come out as the built-in code's do.
 */
DECLARE_TRACE(cachefiles_ondemand_open,
	      TP_PROTO(struct cachefiles_object *obj, struct cachefiles_msg *msg,
		       struct cachefiles_open *load),
	      TP_ARGS(obj, msg, load));
DECLARE_TRACE(cachefiles_ondemand_read,
	      TP_PROTO(struct cachefiles_object *obj, struct cachefiles_msg *msg,
		       struct cachefiles_read *load),
	      TP_ARGS(obj, msg, load));
DECLARE_TRACE(cachefiles_ondemand_close,
	      TP_PROTO(struct cachefiles_object *obj, struct cachefiles_msg *msg),
	      TP_ARGS(obj, msg));
DECLARE_TRACE(cachefiles_ondemand_cread,
	      TP_PROTO(struct cachefiles_object *obj, unsigned int msg_id),
	      TP_ARGS(obj, msg_id));

#ifdef CONFIG_TRACEPOINTS
/*
 * tracepoint.rs reads whether a tracepoint is on as trace_*() does without
 * jump labels, from the count at the start of its static key.
 */
static_assert(offsetof(struct tracepoint, key) == sizeof(const char *));
static_assert(offsetof(struct static_key, enabled) == 0);
#endif

/* xarray.rs reads a mark's root flag as this, without xa_marked(). */
static_assert(XA_FLAGS_MARK(XA_MARK_1) == (1U << ___GFP_LAST_BIT) << 1);

/* xarray.rs starts its walks (its Cursor) in this state, as XA_STATE() does. */
static_assert((unsigned long)XAS_RESTART == 3);

/* An allocating XArray whose ids start at 0. */
void cfod_xa_init_alloc(struct xarray *xa)
{
	xa_init_flags(xa, XA_FLAGS_ALLOC);
}

#ifdef CONFIG_PREEMPT_RT
/* Elsewhere xarray.rs calls _raw_spin_lock() and _raw_spin_unlock(). */
void cfod_xa_lock(struct xarray *xa)
{
	xa_lock(xa);
}

void cfod_xa_unlock(struct xarray *xa)
{
	xa_unlock(xa);
}
#endif

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

void cfod_trace_ondemand_open(struct cachefiles_object *obj,
			      struct cachefiles_msg *msg,
			      struct cachefiles_open *load)
{
	trace_cachefiles_ondemand_open(obj, msg, load);
}

void cfod_trace_ondemand_read(struct cachefiles_object *obj,
			      struct cachefiles_msg *msg,
			      struct cachefiles_read *load)
{
	trace_cachefiles_ondemand_read(obj, msg, load);
}

void cfod_trace_ondemand_close(struct cachefiles_object *obj,
			       struct cachefiles_msg *msg)
{
	trace_cachefiles_ondemand_close(obj, msg);
}

void cfod_trace_ondemand_cread(struct cachefiles_object *obj,
			       unsigned int msg_id)
{
	trace_cachefiles_ondemand_cread(obj, msg_id);
}
