#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Unit tests of ktap-summary.py's KCSAN triage against tests/kcsan-known.txt,
and of its check that each program ran the points it planned.

Each case is a console log cut to one report (the shape KCSAN prints) and
what the host must make of it with the real list and a gate naming the
core's functions: listed as a known finding, or gated (a failed run).
"""

import importlib.util
import os
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "ktap_summary", os.path.join(TOP, "scripts", "ktap-summary.py"))
ks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ks)

RULE = "[  250.570841] " + "=" * 66
GATE = {"cachefiles_has_space", "cachefiles_get_directory",
        "cachefiles_acquire_volume", "cachefiles_add_cache",
        "cachefiles_ondemand_daemon_read", "cachefiles_withdraw_cache",
        "__cachefiles_write", "cachefiles_ondemand_fd_write_iter"}


def report(title, first, frames, second=None):
    """A console log holding one KCSAN report."""
    out = [RULE, f"[  250.573555] BUG: KCSAN: data-race in {title}", "[  250.575850] ",
           f"[  250.576078] {first}"]
    out += [f"[  250.576477]  {f}" for f in frames]
    if second:
        out += ["[  250.576500] ", f"[  250.576501] {second[0]}"]
        out += [f"[  250.576502]  {f}" for f in second[1]]
    out += ["[  250.581234] ", "[  250.581234] value changed: 0xffffffeb -> 0xffffffea",
            "[  250.581400] ", "[  250.581400] Reported by Kernel Concurrency Sanitizer on:", RULE]
    return out


STATFS = ["__percpu_counter_sum+0xaf/0xf0", "ext4_statfs+0x289/0x2f0",
          "vfs_statfs+0x9a/0x160", "cachefiles_has_space+0x6a/0x4a0",
          "cachefiles_get_directory+0xe1/0x790", "cachefiles_acquire_volume+0x2fa/0x590",
          "fscache_create_volume_work+0x7f/0xe0", "kthread+0x194/0x1b0"]
UNKNOWN = "race at unknown origin, with read to 0xffff8880bcc32b74 of 4 bytes by task 32 on cpu 1:"


class KcsanTriage(unittest.TestCase):
    known = ks.read_known(os.path.join(TOP, "tests", "kcsan-known.txt"))

    def triage(self, lines):
        (rep,) = ks.kcsan_reports(lines)
        why = ks.kcsan_known(lines, rep, self.known)
        return why, ks.kcsan_gated(lines, rep, GATE)

    def test_percpu_sum_of_unknown_origin_is_known(self):
        why, gated = self.triage(report("__percpu_counter_sum+0xaf/0xf0", UNKNOWN, STATFS))
        self.assertTrue(gated)
        self.assertIsNotNone(why)
        self.assertIn("ext4_statfs", why)

    def test_percpu_sum_off_the_statfs_path_is_gated(self):
        frames = [f for f in STATFS if not f.startswith("ext4_statfs")]
        why, gated = self.triage(report("__percpu_counter_sum+0xaf/0xf0", UNKNOWN, frames))
        self.assertTrue(gated)
        self.assertIsNone(why)

    def test_offsets_do_not_widen_a_title(self):
        # Only offsets are dropped: another function of unknown origin
        # on the same frames is not the listed finding.
        frames = ["percpu_counter_add_batch+0x1f/0x90"] + STATFS[1:]
        why, gated = self.triage(report("percpu_counter_add_batch+0x1f/0x90", UNKNOWN, frames))
        self.assertTrue(gated)
        self.assertIsNone(why)

    def test_module_race_of_unknown_origin_is_gated(self):
        frames = ["request_take+0x10/0x80 [cachefiles_ondemand_rs]",
                  "cachefiles_ondemand_daemon_read+0x40/0x100", "vfs_read+0x1/0x2"]
        why, gated = self.triage(report("request_take+0x10/0x80 [cachefiles_ondemand_rs]",
                                        UNKNOWN, frames))
        self.assertTrue(gated)
        self.assertIsNone(why)

    IRQ = ["wq_worker_tick+0xcf/0x1f0", "sched_tick+0x203/0x2c0",
           "asm_sysvec_apic_timer_interrupt+0x1a/0x20", "kcsan_setup_watchpoint+0x469/0x4c0",
           "ext4_mkdir+0x3c6/0x520", "vfs_mkdir+0x1f7/0x210",
           "cachefiles_get_directory+0x13b/0x790", "kthread+0x194/0x1b0"]
    BY_IRQ = "race at unknown origin, with read to 0xffff888000b680e0 of 8 bytes by interrupt on cpu 1:"

    def test_interrupt_frames_stop_at_its_entry(self):
        # The timer tick's race (CI of stop 30): the cachefiles frames are
        # the interrupted task's, not the racing access's.
        why, gated = self.triage(report("wq_worker_tick+0xcf/0x1f0", self.BY_IRQ, self.IRQ))
        self.assertFalse(gated)
        self.assertIsNone(why)

    def test_interrupt_in_the_gate_is_gated(self):
        frames = ["cachefiles_ondemand_daemon_read+0x40/0x100"] + self.IRQ[2:]
        _why, gated = self.triage(report("wq_worker_tick+0xcf/0x1f0", self.BY_IRQ, frames))
        self.assertTrue(gated)

    def test_task_frames_are_all_kept(self):
        _why, gated = self.triage(report("wq_worker_tick+0xcf/0x1f0", UNKNOWN, self.IRQ))
        self.assertTrue(gated)

    def test_two_sided_known_finding_still_matches(self):
        a = ["vfs_setpos+0x10/0x40", "ext4_llseek+0x90/0x200", "cachefiles_read+0x100/0x400"]
        lines = report("vfs_setpos / vfs_setpos",
                       "write to 0xffff888 of 8 bytes by task 1 on cpu 0:", a,
                       ("write to 0xffff888 of 8 bytes by task 2 on cpu 1:", a))
        why, _gated = self.triage(lines)
        self.assertIsNotNone(why)


    # The jbd2 commit thread's side of the j_flags races below: its clear
    # of JBD2_FULL_COMMIT_ONGOING under j_state_lock.
    COMMIT = ["jbd2_journal_commit_transaction+0x2904/0x2ce0", "kjournald2+0xf9/0x2b0",
              "kthread+0x194/0x1b0"]

    def assert_jbd2_known_under_core(self, title, reader, core):
        """A j_flags race of the commit thread against `reader` frames, the
        last `core` of them cachefiles': known (is_handle_aborted()), and not
        this entry's once those frames are cut."""
        first = "read-write to 0xffff888004974000 of 8 bytes by task 51 on cpu 0:"
        second = "read to 0xffff888004974000 of 8 bytes by task 382 on cpu 1:"
        why, gated = self.triage(report(title, first, self.COMMIT, (second, reader)))
        self.assertTrue(gated)
        self.assertIsNotNone(why)
        self.assertIn("is_handle_aborted", why)
        why, _ = self.triage(report(title, first, self.COMMIT, (second, reader[:-core])))
        self.assertIsNone(why)

    def test_jbd2_stop_under_the_daemon_write_is_known(self):
        stop = ["jbd2_journal_stop+0x6a/0x580", "__ext4_journal_stop+0x8c/0xd0",
                "ext4_dirty_inode+0x95/0xa0", "__cachefiles_write+0x492/0x690",
                "cachefiles_ondemand_fd_write_iter+0x257/0x300", "vfs_write+0x324/0x3d0"]
        self.assert_jbd2_known_under_core(
            "jbd2_journal_commit_transaction / jbd2_journal_stop", stop, 3)

    def test_jbd2_dirty_metadata_under_the_core_mkdir_is_known(self):
        # CI of stop 43 (race-rust): is_handle_aborted() in
        # __ext4_handle_dirty_metadata(), ext4 allocating a block. The
        # output kept stopped at ext4_getblk; the frames below it are the
        # directory growth of the core's mkdir, one way there.
        dirty = ["__ext4_handle_dirty_metadata+0x1ec/0x3d0", "ext4_mb_mark_context+0x709/0x830",
                 "ext4_mb_mark_diskspace_used+0x1a5/0x2a0", "ext4_mb_new_blocks+0x80a/0x1ab0",
                 "ext4_ext_map_blocks+0xeb6/0x2a50", "ext4_map_blocks+0x403/0x8e0",
                 "ext4_getblk+0xc7/0x3b0", "ext4_bread+0x2a/0x110", "ext4_append+0x10c/0x260",
                 "ext4_init_new_dir+0x16d/0x4b0", "ext4_mkdir+0x2cb/0x5d0", "vfs_mkdir+0x27c/0x3a0",
                 "cachefiles_get_directory+0x1c4/0x790"]
        self.assert_jbd2_known_under_core(
            "__ext4_handle_dirty_metadata / jbd2_journal_commit_transaction", dirty, 1)


class PlanCheck(unittest.TestCase):
    def test_plans_kept_first_or_last(self):
        ktap = "\n".join(["KTAP version 1", "1..2", "# a", "  KTAP version 1", "  1..2",
                          "  ok 1 x", "  ok 2 y", "ok 1 a", "# b", "  ok 1 x", "  1..1",
                          "ok 2 b"])
        self.assertEqual(ks.plan_mismatches(ktap), [])

    def test_a_point_more_or_less_than_planned(self):
        ktap = "\n".join(["  1..3", "  ok 1 x", "  ok 2 y", "ok 1 short", "  1..1",
                          "  ok 1 x", "  ok 2 y", "ok 2 long", "  1..3", "  not ok 1 x",
                          "not ok 3 failed anyway"])
        self.assertEqual(ks.plan_mismatches(ktap), [("short", 3, 2), ("long", 1, 2)])


if __name__ == "__main__":
    unittest.main()
