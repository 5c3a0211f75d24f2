#!/usr/bin/env bash
# Deliberate breakage: the suite must notice. Each mutant is one text
# replacement (it must apply exactly once) in the Rust backend (rust/, its
# driver files)
# or in the kernel patch's C code (a file of the patched kernel source).
# A Rust mutant rebuilds the module, a C mutant the kernel (incrementally, in
# a copy of the test kernel's tree); then one VM run of the tests that should
# kill it (Rust mutants on the Rust backend, C mutants on the C backend).
#
# A mutant is KILLED only when a named leaf test point ("not ok N label" in
# a test's own KTAP) fails (a run that did not finish after it is noted). A mutant whose
# tests all pass SURVIVED. One that does not apply or build, whose guest did
# not finish, or whose tests failed only by a timeout or a crash of the test
# program (no failed point) is INCONCLUSIVE. Survivors and inconclusive
# mutants fail the run. Prints per mutant the point that killed it.
#
# Nothing is mutated in the working tree: the mutants are applied to a
# mirror of it ($CFOD_MUTANTS_DIR) and to copies of the kernel tree
# ($CFOD_CACHE/src-mutant, built in $CFOD_CACHE/build-mutant from a copy of
# build-test); each is restored after its run, whatever happens.
#   scripts/mutants.sh [ID...]      (all mutants by default; e.g. "r6 c2")
#   scripts/mutants.sh --list
set -uo pipefail
. "$(dirname "$0")/env.sh"
KDIR=${KDIR:-$(kernel_build_dir test)}
MUT=${CFOD_MUTANTS_DIR:-/var/tmp/cfod-mutants}
KSRC=$CFOD_CACHE/src
MSRC=$CFOD_CACHE/src-mutant
MBUILD=$(kernel_build_dir mutant)
# One VM run at a time for whoever runs mutants (a lock the caller's own
# VM runs can take too).
VMLOCK=${CFOD_MUTANTS_VM_LOCK:-/tmp/cfod-mutants-vm.lock}
# Extra kernel parameters for the mutants' boots, e.g. "acpi=noirq".
VMARGS=()
[ -z "${CFOD_MUTANTS_APPEND:-}" ] || VMARGS=(--append "$CFOD_MUTANTS_APPEND")

# id|file|old text|new text|tests that must kill it|what it breaks
# (\n, \t, \& and \p in the texts are a newline, a tab, & and |)
MUTANTS=(
	# Rust: state transitions
	"r19|rust/object.rs|            (s.id == ID_CLOSED \&\& s.state != ObjState::Dropping)\n                .then_some(s.with_state(ObjState::Close))|            (s.id == ID_CLOSED \&\& s.state != ObjState::Dropping)\n                .then_some(s.with_state(ObjState::Open))|copen|copen_failed leaves an object with a closed fd open"
	"r18|rust/object.rs|        if self.peek().id == ID_CLOSED {\n            return Err(error::ebadfd());\n        }\n        object.set_size(msg_id, size);\n        let old = self.update(reopening, \ps\p {\n            (s.id != ID_CLOSED \&\& s.state != ObjState::Dropping)\n                .then_some(s.with_state(ObjState::Open))\n        });\n        if old.id == ID_CLOSED {\n            return Err(error::ebadfd());\n        }|        object.set_size(msg_id, size);\n        self.update(reopening, \ps\p {\n            (s.state != ObjState::Dropping).then_some(s.with_state(ObjState::Open))\n        });|copen|copen on a closed fd opens the object"
	"r14|rust/cache.rs|            \p_\p object.data().release_id(\&self.reopening),|            \p_\p (),|copen|the object keeps its id (stays open) when its fd is released"
	# Rust: READ_COMPLETE and the anonymous fd
	"r15|rust/anon_fd.rs|r.opcode() == Opcode::Read \&\& r.is_for(object)|r.is_for(object)|copen|READ_COMPLETE accepts an OPEN's id"
	"r17|rust/cache.rs|            move \pr\p r.close_id() == Some(object_id) \&\& r.is_for(target),|            move \p_\p {\n                let _ = (object_id, target);\n                false\n            },|anonfd|releasing an fd does not complete its unread CLOSE"
	"r16|rust/anon_fd.rs|    if cmd != IOC_READ_COMPLETE {|    if false {|anonfd|any ioctl is taken for READ_COMPLETE"
	"r20|rust/daemon.rs|    req.write_open_msg(\&mut w, id, open.object_id(), open.fd())?;\n    open.install();|    let (oid, fd) = (open.object_id(), open.fd());\n    open.install();\n    req.write_open_msg(\&mut w, id, oid, fd)?;|copen|the OPEN's fd is installed before the copy (leaks on EFAULT)"
	# Rust: a request's outcome and stamp (in its SlimArc's header)
	"r31|rust/stats.rs|MARK_MAX) << STAMP_SHIFT\n|MARK_MAX)\n|stats|a round trip is counted in stamp units (1.024 us), not in ns"
	"r32|rust/abstractions/completion.rs|        let word = ((result as u32) << 2) \p DONE \p HANDED;|        let word = DONE \p HANDED;|copen|a request's result is lost: every request succeeds"
	# Rust: wake-ups
	"r10|rust/daemon.rs|            Ok(true) => {\n                cache.wake_daemon();\n|            Ok(true) => {\n|copen|no wake-up after the copen of a reopen"
	"r39|rust/object.rs|        Ok(old.state == ObjState::Reopening)|        Ok(old.state == ObjState::Close)|copen|copen takes a reopening object for a first open (no wake-up)"
	"r11|rust/daemon.rs|    cache.data().restore();\n    cache.wake_daemon();|    cache.data().restore();|copen|no wake-up after restore"
	"r12|rust/object.rs|        object.cache().wake_daemon();\n        wait(\&state, id, waiter)|        wait(\&state, id, waiter)|copen|no wake-up when a request is queued"
	# Rust: fairness
	"r9|rust/cache.rs|q.data_mut().read_next = id.saturating_add(1);|q.data_mut().read_next = 0;|copen|selection restarts from the lowest id (read_next reset)"
	# Rust: boundaries
	"r40|rust/abstractions/cstr.rs|            *at.as_ptr() = 0;\n|            let _ = at.as_ptr();\n|copen|copen's arguments split without ending the id at the comma"
	"r6|rust/daemon.rs|if size < -(MAX_ERRNO as i64) {|if size <= -(MAX_ERRNO as i64) {|copen|copen id,-4095 (the last errno) is refused"
	"r7|rust/cache.rs|if req.msg_len() > buflen {|if req.msg_len() >= buflen {|copen|a buffer of exactly the message's length gets EMSGSIZE"
	"r8|rust/cache.rs|        if req.msg_len() > buflen {\n            return Err(error::emsgsize());\n        }\n        q.clear_new(id);|        q.clear_new(id);\n        if req.msg_len() > buflen {\n            return Err(error::emsgsize());\n        }|copen|EMSGSIZE takes the request's NEW mark"
	# Rust: errnos
	"r1|rust/daemon.rs|        .ok_or(EINVAL)?;\n    // Borrowed|        .ok_or(ENOENT)?;\n    // Borrowed|copen|copen of an unknown or unread id gives ENOENT, not EINVAL"
	"r2|rust/daemon.rs|(EINVAL.to_errno(), Err(EINVAL))|(EINVAL.to_errno(), Ok(()))|copen|copen id,<not an errno> is accepted"
	"r3|rust/anon_fd.rs|        .ok_or(EINVAL)?;|        .ok_or(ENOENT)?;|anonfd|READ_COMPLETE of a bad id gives ENOENT"
	# Rust: tracepoints (the C backend's stream is the reference)
	"r21|rust/object.rs|Payload::Read { off, len } => object.trace_read(0, 0, *off, u64::from(*len))|Payload::Read { off, len } => object.trace_read(0, 1, *off, u64::from(*len))|trace_cmp.sh|a READ is traced with an object id the C code does not show"
	"r22|rust/anon_fd.rs|    object.trace_cread(arg as u32);\n|\n|trace_cmp.sh|READ_COMPLETE is not traced"
	# Rust: statistics
	"r25|rust/stats.rs|        if self.queued.iter().all(|        if true \p\p self.queued.iter().all(|e2e_mount.sh|an unbound cache's counters never reach the totals (the skip for caches that counted nothing taken always)"
	"r26|rust/stats.rs|            self.read_bytes.fetch_add(read_len, Relaxed);|            self.read_bytes.fetch_add(read_len / 2, Relaxed);|e2e_mount.sh|the statistics count half the bytes the READs asked for"
	# Rust: drains
	"r27|rust/cache.rs|            self.drain_from::<ONLY_NEW>(q, at, \&pred, result);|            self.drain_from::<ONLY_NEW>(q, at.saturating_add(1), \&pred, result);|flush|a drain leaves the first request it matched queued"
	"r30|rust/request/queue.rs|            .is_some_and(\pr\p SlimArc::ptr_eq(waiter.0, \&r));|            .is_some_and(\p_\p false);|edge.sh|a killed waiter never takes its request back out: it waits for the daemon"
	"r29|rust/request/queue.rs|                return Some(found.index());|                return None;|lifetime|a drain stops after its first full batch (64), leaving the rest queued"
	"r33|rust/request/queue.rs|            if !pred(\&found.get()) {|            if false \&\& !pred(\&found.get()) {|flush lifetime anonfd edge.sh share churn|a drain takes every queued request, not only those it was asked to fail"
	"r34|rust/request/queue.rs|cursor.next(usize::MAX, ONLY_NEW.then_some(NEW))?;|cursor.next(usize::MAX, Some(NEW))?;|flush lifetime|a drain walks only the requests the daemon has not read"
	"r35|rust/request.rs|            Some(err) if err == EIO.to_errno() => Err(EIO),|            Some(err) if err == EIO.to_errno() => Ok(()),|lifetime flush|a waiter whose request failed with EIO is told it succeeded"
	# Rust: a request's lent object (SlimArc::lend, ObjectLoan)
	"r36|rust/abstractions/cachefiles/object.rs|        self.inc_ref();\n        // INVARIANT: Counted just above. (The loan|        // INVARIANT: Counted just above. (The loan|edge.sh|securing a loan takes no reference (its drop still puts one)"
	"r37|rust/abstractions/slim_arc.rs|            lender.inner().head.loan.secure();\n|\n|edge.sh|a loan ended while another reference holds the value is not secured"
	"r38|rust/abstractions/slim_arc.rs|        if refs.load(Ordering::Relaxed) != ours {|        if true {|edge.sh|every loan is secured, even when the sender's references are the last"
	"r28|rust/abstractions/uaccess.rs|        self.advance(left, len)\n    }\n\n    /// Moves past|        self.advance(0, len)\n    }\n\n    /// Moves past|edge.sh|a copy of the OPEN's keys that faults is taken as written"
	# The differential fuzzer (run with a small count, e.g.
	# CFOD_MUTANTS_APPEND="FUZZ_COUNT=20"): an errno changed in either backend
	"r23|rust/daemon.rs|        .ok_or(EINVAL)?;\n    // Borrowed|        .ok_or(ENOENT)?;\n    // Borrowed|fuzz.sh|copen of an unknown id gives ENOENT, not EINVAL (the fuzzer's copens)"
	"r24|rust/request.rs|        Ok(Payload::Open(SlimBox::new_with_tail(\n            msg,\n            [volume_key, cookie_key],\n        )?))|        Ok(Payload::Open(SlimBox::new_with_tail(msg, [volume_key, cookie_key]).or_else(\n            \p_\p SlimBox::new_with_tail(OpenMsg { open: uapi::Open { volume_key_size: 0, cookie_key_size: 0, fd: 0, flags: 0 }, delivered: AtomicU64::new(0) }, [\&[], \&[]]),\n        )?))|failnth|an OPEN whose message with its keys could not be allocated is sent without them (the allocation failure)"
	"r5|rust/request/queue.rs|        self.guard.mark_new(self.id as usize);\n        self.guard.stats|        self.guard.stats|copen|queued requests are never marked NEW"
	# C: the patch and the code it touches (kernel source files). A test
	# list starting "rust:" runs on the Rust backend (the module as built).
	"c1|fs/cachefiles/ondemand.c|\tint ret;\n\tXA_STATE(xas, \&cache->reqs, 0);\n\n\tif (!test_bit(CACHEFILES_ONDEMAND_MODE, \&cache->flags))\n\t\treturn -EOPNOTSUPP;|\tint ret;\n\tXA_STATE(xas, \&cache->reqs, 0);\n\n\tif (!test_bit(CACHEFILES_ONDEMAND_MODE, \&cache->flags))\n\t\treturn -EINVAL;|devnode|copen on a cache not in on-demand mode gives EINVAL, not EOPNOTSUPP"
	"c2|fs/cachefiles/daemon.c|\t\t} else if (!xa_empty(\&cache->reqs)) {|\t\t} else if (0) {|copen|the built-in poll is never readable"
	"c3|fs/cachefiles/backend.c|\tif (ops \&\& !try_module_get(ops->owner))\n\t\tops = NULL;|\tops = NULL;|backend_select.sh|bind ignores the registered module"
	"c4|fs/cachefiles/backend.c|\tcache->backend_priv = NULL;\n\tmodule_put(ops->owner);|\tcache->backend_priv = NULL;|backend_select.sh|unbind does not unpin the module"
	"c5|fs/cachefiles/ondemand.c|\tif (ret > 0)\n\t\tkiocb->ki_pos += ret;|\tif (0)\n\t\tkiocb->ki_pos += ret;|anonfd|write() on an anonymous fd does not advance the file position"
	"c6|fs/cachefiles/daemon.c|\tif (cachefiles_in_ondemand_mode(cache))\n\t\tcachefiles_flush_reqs(cache);\n\n\t/* clean up the control file interface */|\n\t/* clean up the control file interface */|lifetime|the release of the devnode does not flush the requests"
	"c7|fs/cachefiles/ondemand.c|\t\treturn -ENOBUFS;\n\t}\n\tget_file(file);\n\tspin_unlock(\&object->lock);\n\n\tcachefiles_begin_secure|\t\treturn -EIO;\n\t}\n\tget_file(file);\n\tspin_unlock(\&object->lock);\n\n\tcachefiles_begin_secure|anonfd|pwrite on a withdrawn object gives EIO, not ENOBUFS"
	"c8|fs/cachefiles/backend.c|\tcachefiles_put_object(object, cachefiles_obj_put_ondemand_fd);\n\tcachefiles_put_unbind_pincount(cache);|\tcachefiles_put_object(object, cachefiles_obj_put_ondemand_fd);|rust:e2e_mount.sh|a module's anonymous fd never unpins the cache"
	"c9|fs/cachefiles/daemon.c|\treturn cachefiles_add_cache(cache);\n}|\tif (cachefiles_in_ondemand_mode(cache))\n\t\tcachefiles_ondemand_bind_backend(cache);\n\treturn cachefiles_add_cache(cache);\n}|rust:bindfail|the module is bound before the cache directory is checked"
	"c11|fs/cachefiles/ondemand.c|\t    !req->object->ondemand->ondemand_id) {\n\t\txa_unlock(\&cache->reqs);\n\t\treturn -EINVAL;|\t    !req->object->ondemand->ondemand_id) {\n\t\txa_unlock(\&cache->reqs);\n\t\treturn -ENOENT;|fuzz.sh|the built-in copen of an unknown id gives ENOENT, not EINVAL (the fuzzer's copens)"
	"c10|fs/cachefiles/backend.c|\tspin_unlock(\&cookie->lock);\n\ttrace_cachefiles_ondemand_copen(object, msg_id, size);|\tspin_unlock(\&cookie->lock);|rust:trace_cmp.sh|a module's copen is not traced"
)

if [ "${1:-}" = --list ]; then
	for m in "${MUTANTS[@]}"; do
		IFS='|' read -r id file _ _ tests what <<<"$m"
		printf '%-4s %-26s %-16s %s\n' "$id" "$file" "$tests" "$what"
	done
	exit 0
fi

# Apply "old -> new" to a file, exactly once; the texts come escaped.
apply_once() {
	python3 - "$1" "$2" "$3" <<'PY'
import sys
def unesc(s):
    return s.replace("\\n", "\n").replace("\\t", "\t").replace("\\&", "&").replace("\\p", "|")
path, old, new = sys.argv[1], unesc(sys.argv[2]), unesc(sys.argv[3])
text = open(path).read()
n = text.count(old)
if n != 1:
    sys.exit(f"mutant: the old text occurs {n} times in {path}")
open(path, "w").write(text.replace(old, new))
PY
}

# The mirror of the working tree the Rust mutants are applied to.
sync_mirror() {
	mkdir -p "$MUT/out" || return 1
	tar -C "$CFOD_TOP" --exclude=./.git --exclude=./out --exclude=./daemon/target \
		--exclude='*.ko' --exclude='*.o' -cf - . | tar -C "$MUT" -xf - || return 1
	rm -rf "$MUT/out/bin" "$MUT/out/data"
	cp -a "$CFOD_TOP/out/bin" "$CFOD_TOP/out/data" "$MUT/out/"
}
restore_rust() {	# the mirror's rust/ back to the working tree's
	cp -a "$CFOD_TOP/rust/." "$MUT/rust/"
}
build_module() {	# into the mirror, against $1
	make -s -C "$1" M="$MUT" "${KMAKE_ARGS[@]}" modules
}

# The kernel tree for C mutants: a copy of the patched source and of the
# test build. The build runs in a mount namespace where the copy is at the
# original path, so the commands are the ones build-test recorded and make
# recompiles only what the mutant touched.
prepare_kernel_copy() {
	[ -f "$KDIR/.cfod-key" ] || { echo "# no test kernel at $KDIR" >&2; return 1; }
	# The patches are applied in the working tree (the tree's git holds the
	# pristine source): the copy must carry the same changes.
	if [ "$(cat "$MSRC/.cfod-applied" 2>/dev/null)" != "$(cat "$KSRC/.cfod-applied")" ] ||
		[ "$(git -C "$MSRC" diff | sha256sum)" != "$(git -C "$KSRC" diff | sha256sum)" ]; then
		echo "# copying $KSRC to $MSRC"
		rm -rf "$MSRC" && cp -a "$KSRC" "$MSRC" || return 1
	fi
	if [ "$(cat "$MBUILD/.cfod-key" 2>/dev/null)" != "$(cat "$KDIR/.cfod-key")" ]; then
		echo "# copying $KDIR to $MBUILD"
		rm -rf "$MBUILD" && cp -a "$KDIR" "$MBUILD" || return 1
	fi
}
build_kernel_copy() {
	flock "$CFOD_CACHE/.build.lock" unshare -m bash -c '
		src=$2 && mount --bind "$1" "$src" && shift 2 && make -s -C "$src" "$@"' _ \
		"$MSRC" "$KSRC" O="$MBUILD" "${KMAKE_ARGS[@]}" -j"$(nproc)" all
}
# Undo the last C mutant: its file back from the patched tree (a plain copy,
# so its time is new and make rebuilds it for the next mutant).
mutated=
restore_kernel_copy() {
	[ -z "$mutated" ] || cp "$KSRC/$mutated" "$MSRC/$mutated"
	mutated=
}

# The verdict on one mutant from the KTAP its tests printed: "killed by
# <test>: <point>", "survived" or "inconclusive: <why>".
judge() {
	python3 - "$1" "${2:-/dev/null}" <<'PY'
import re, sys
def norm(label):	# a point's label without the values it reports
    return re.sub(r"\d+", "N", re.sub(r"\([^()]*\)", "", label)).strip()
def lines_of(path):
    try:
        return open(path, errors="replace").read().splitlines()
    except OSError:
        return []
lines = lines_of(sys.argv[1])
# Points that fail with the clean module too cannot kill anything.
clean_fails = {norm(m.group(1)) for l in lines_of(sys.argv[2])
               for m in [re.match(r"^\s+not ok \d+ (.+)$", l)] if m}
test, leaf, bad_rc = None, [], []
for l in lines:
    m = re.match(r"^# (\S+) rc=(\d+)$", l)
    if m:
        if m.group(2) != "0":
            bad_rc.append(f"{m.group(1)} exit {m.group(2)}")
        continue
    m = re.match(r"^# (\S+)$", l)
    if m:
        test = m.group(1)
        continue
    m = re.match(r"^\s+not ok \d+ (.+)$", l)
    if m and "# SKIP" not in m.group(1) and norm(m.group(1)) not in clean_fails:
        leaf.append(f"{test}: {m.group(1).strip()}")
# A named point that failed kills the mutant even when the run did not
# finish afterwards (a mutant that oopses can leave the test stuck once it
# has failed its point); without one, an unfinished run is inconclusive.
if leaf:
    print(f"killed by {leaf[0]}" + (f" (+{len(leaf) - 1} more failed)" if len(leaf) > 1 else "")
          + ("" if "# end" in lines else "; the run did not finish after it"))
elif "# end" not in lines:
    print("inconclusive: its run did not finish")
elif bad_rc:
    print("inconclusive: no point failed, but " + ", ".join(bad_rc))
else:
    print("survived")
PY
}

# One make mutants at a time on a machine: the C mutants' kernel copy is
# shared whatever the mirror.
if [ "${1:-}" != --list ]; then
	exec 7>"$CFOD_CACHE/.mutants.lock"
	flock -n 7 || { echo "not ok - another make mutants is running (the kernel copy is shared)"; exit 1; }
fi
# collect GUESTLOG OUT: a mutant's KTAP, with the output of a test that
# never ended (mutants_guest.sh appends a test's output only when it
# ends; a mutant that hangs the kernel leaves it in GUESTLOG.TEST).
collect() {
	local f
	cp "$1" "$2" 2>/dev/null || : >"$2"
	for f in "$1".*; do
		[ -f "$f" ] || continue
		echo "# ${f##*.}"
		sed 's/^/  /' "$f"
	done >>"$2"
}
want=" ${*:-} "
killed=0 bad=0 kernel_ready=0
# Every test a mutant names must exist (a missing one ran as "exit 127"
# and made c3 and c4 inconclusive).
for m in "${MUTANTS[@]}"; do
	IFS='|' read -r id _ _ _ tests _ <<<"$m"
	for t in ${tests#rust:}; do
		[ -f "$CFOD_TOP/tests/$t" ] || [ -f "$CFOD_TOP/tests/$t.c" ] ||
			{ echo "not ok - mutant $id names no test: $t"; exit 1; }
	done
done
trap 'restore_kernel_copy; restore_rust 2>/dev/null' EXIT
OUT=$CFOD_TOP/out/mutants
mkdir -p "$OUT"
sync_mirror || { echo "not ok - cannot mirror the tree into $MUT"; exit 1; }
rm -rf "$MUT/out/mutants" && mkdir -p "$MUT/out/mutants"
if ! build_module "$KDIR" >"$OUT/clean.build.log" 2>&1; then
	echo "not ok - the clean module does not build (out/mutants/clean.build.log)"; exit 1
fi
cp "$MUT/cachefiles_ondemand_rs.ko" "$MUT/clean.ko"

verdict() {	# id verdict
	case $2 in
	killed*) echo "ok - mutant $1 $2"; killed=$((killed + 1)) ;;
	*) echo "not ok - mutant $1 $2"; bad=$((bad + 1)) ;;
	esac
}

# Rust mutants: every module built first, then one boot runs them all, one
# at a time (tests/mutants_guest.sh), each with its own tests.
# First the clean module through every test the batch uses: a point that
# fails there is reported and cannot count as a kill.
rust=()
clean_tests=$(for m in "${MUTANTS[@]}"; do
	IFS='|' read -r id file _ _ tests _ <<<"$m"
	[[ $file == rust/* ]] || continue
	[ "$want" = "  " ] || [[ "$want" == *" $id "* ]] || continue
	echo $tests; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ -n "$clean_tests" ]; then
	cp "$MUT/clean.ko" "$MUT/out/mutants/clean.ko"
	echo "clean $clean_tests" >"$MUT/out/mutants/plan"
fi
for m in "${MUTANTS[@]}"; do
	IFS='|' read -r id file old new tests what <<<"$m"
	[[ $file == rust/* ]] || continue
	[ "$want" = "  " ] || [[ "$want" == *" $id "* ]] || continue
	echo "# mutant $id ($file): $what"
	restore_rust
	if ! apply_once "$MUT/$file" "$old" "$new" 2>"$OUT/$id.apply.log"; then
		verdict "$id" "inconclusive: $(cat "$OUT/$id.apply.log")"; continue
	fi
	if ! build_module "$KDIR" >"$OUT/$id.build.log" 2>&1; then
		verdict "$id" "inconclusive: does not build (out/mutants/$id.build.log)"; continue
	fi
	cp "$MUT/cachefiles_ondemand_rs.ko" "$MUT/out/mutants/$id.ko"
	echo "$id $tests" >>"$MUT/out/mutants/plan"
	rust+=("$id")
done
restore_rust
cp "$MUT/clean.ko" "$MUT/cachefiles_ondemand_rs.ko"
if [ ${#rust[@]} -gt 0 ]; then
	echo "# booting once for ${#rust[@]} Rust mutants: ${rust[*]}"
	flock "$VMLOCK" "$MUT/scripts/vm-run.sh" "${VMARGS[@]}" --backend rust --tests mutants_guest.sh \
		--name mutants-rust --timeout 7200 --test-timeout 7000 >"$OUT/rust.vm.log" 2>&1
	cp "$MUT/out/mutants-rust/results/mutant-clean.log" "$OUT/clean.ktap.log" 2>/dev/null ||
		: >"$OUT/clean.ktap.log"
	case $(judge "$OUT/clean.ktap.log") in
	survived) echo "# the clean module passes every point of: $clean_tests" ;;
	*) echo "# the clean module fails (these points count for no mutant):"
	   grep '^ *not ok' "$OUT/clean.ktap.log" | sed 's/^ */#   /' ;;
	esac
	for id in "${rust[@]}"; do
		collect "$MUT/out/mutants-rust/results/mutant-$id.log" "$OUT/$id.ktap.log"
		verdict "$id" "$(judge "$OUT/$id.ktap.log" "$OUT/clean.ktap.log")"
	done
fi

# C mutants: a kernel each (incremental), one boot each, on the C backend
# (or the Rust one, for a test list marked "rust:").
for m in "${MUTANTS[@]}"; do
	IFS='|' read -r id file old new tests what <<<"$m"
	[[ $file == rust/* ]] && continue
	[ "$want" = "  " ] || [[ "$want" == *" $id "* ]] || continue
	echo "# mutant $id ($file): $what"
	if [ $kernel_ready = 0 ]; then
		if ! prepare_kernel_copy >"$OUT/kernel-copy.log" 2>&1; then
			verdict "$id" "inconclusive: no kernel copy (out/mutants/kernel-copy.log)"; continue
		fi
		kernel_ready=1
	fi
	restore_kernel_copy
	mutated=$file
	if ! apply_once "$MSRC/$file" "$old" "$new" 2>"$OUT/$id.apply.log"; then
		verdict "$id" "inconclusive: $(cat "$OUT/$id.apply.log")"; continue
	fi
	start=$SECONDS
	if ! build_kernel_copy >"$OUT/$id.build.log" 2>&1; then
		restore_kernel_copy
		verdict "$id" "inconclusive: the kernel does not build (out/mutants/$id.build.log)"
		continue
	fi
	echo "# kernel built in $((SECONDS - start)) s"
	restore_kernel_copy
	# The module as built for the test kernel (backend_select loads it).
	mkdir -p "$MUT/out/modules/mutant"
	cp "$MUT/clean.ko" "$MUT/out/modules/mutant/cachefiles_ondemand_rs.ko"
	be=c
	if [[ $tests == rust:* ]]; then be=rust; tests=${tests#rust:}; fi
	echo "$id $tests" >"$MUT/out/mutants/plan"
	flock "$VMLOCK" "$MUT/scripts/vm-run.sh" "${VMARGS[@]}" --kind mutant --backend $be --tests mutants_guest.sh \
		--name "mutant-$id" --timeout 2400 >"$OUT/$id.vm.log" 2>&1
	collect "$MUT/out/mutant-$id/results/mutant-$id.log" "$OUT/$id.ktap.log"
	verdict "$id" "$(judge "$OUT/$id.ktap.log")"
done
echo "$killed passed, $bad failed"
[ "$bad" -eq 0 ]
