// SPDX-License-Identifier: GPL-2.0
/*
 * A deliberate data race, for the race kernel's self-test only: one kernel
 * thread increments a plain counter while another reads it, with nothing
 * ordering them, for a few seconds or until the module is removed. KCSAN
 * must report it; scripts/ktap-summary.py must then fail the run when the
 * report's functions are in its gate and only list it when they are not.
 * Loaded by tests/kcsan_canary.sh in a boot of its own, never with the
 * suite. (Its name must not contain "kcsan_": KCSAN drops the frames of
 * any symbol that does, module names included, as its own runtime's.)
 */
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>

static unsigned long cfod_canary_count;
static struct task_struct *cfod_canary_tasks[2];

static noinline void cfod_canary_racy_write(void)
{
	cfod_canary_count++;
}

static noinline unsigned long cfod_canary_racy_read(void)
{
	return cfod_canary_count;
}

static int cfod_canary_thread(void *writer)
{
	unsigned long end = jiffies + 10 * HZ;
	unsigned long sum = 0;

	while (!kthread_should_stop() && time_before(jiffies, end)) {
		if (writer)
			cfod_canary_racy_write();
		else
			sum += cfod_canary_racy_read();
		cond_resched();
	}
	pr_info("cfod_canary: %s thread done (%lu)\n", writer ? "writer" : "reader", sum);
	while (!kthread_should_stop())
		msleep(20);
	return 0;
}

static int __init cfod_canary_init(void)
{
	for (int i = 0; i < 2; i++) {
		struct task_struct *t;

		t = kthread_run(cfod_canary_thread, i ? (void *)1 : NULL, "cfod_canary/%d", i);
		if (IS_ERR(t)) {
			while (i--)
				kthread_stop(cfod_canary_tasks[i]);
			return PTR_ERR(t);
		}
		cfod_canary_tasks[i] = t;
	}
	return 0;
}

static void __exit cfod_canary_exit(void)
{
	for (int i = 0; i < 2; i++)
		kthread_stop(cfod_canary_tasks[i]);
}

module_init(cfod_canary_init);
module_exit(cfod_canary_exit);
MODULE_DESCRIPTION("A deliberate data race for the KCSAN gate's self-test");
MODULE_LICENSE("GPL");
