/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prototypes of the C helpers in helpers.c. They are called from Rust only
 * (declared there again, in helpers.rs); this header keeps the C side
 * warning-free with -Wmissing-prototypes.
 */
#ifndef CFOD_HELPERS_H
#define CFOD_HELPERS_H

#include <linux/types.h>

struct cachefiles_msg;
struct cachefiles_object;
struct cachefiles_open;
struct cachefiles_read;
struct dentry;
struct file;
struct work_struct;
struct workqueue_struct;
struct xarray;

void cfod_xa_init_alloc(struct xarray *xa);
void cfod_xa_lock(struct xarray *xa);
void cfod_xa_unlock(struct xarray *xa);
void cfod_init_work(struct work_struct *work, void (*func)(struct work_struct *work));
bool cfod_queue_work(struct workqueue_struct *wq, struct work_struct *work);
struct file *cfod_get_file(struct file *file);
struct dentry *cfod_dget(struct dentry *dentry);
void cfod_msleep(unsigned int msecs);
void cfod_trace_ondemand_open(struct cachefiles_object *obj,
			      struct cachefiles_msg *msg,
			      struct cachefiles_open *load);
void cfod_trace_ondemand_read(struct cachefiles_object *obj,
			      struct cachefiles_msg *msg,
			      struct cachefiles_read *load);
void cfod_trace_ondemand_close(struct cachefiles_object *obj,
			       struct cachefiles_msg *msg);
void cfod_trace_ondemand_cread(struct cachefiles_object *obj,
			       unsigned int msg_id);

#endif /* CFOD_HELPERS_H */
