#!/bin/sh
# Soak: the daemon's seeded random misbehaviour (odd --persona chaos: failed
# and dropped OPENs, READs completed without data, anonymous fds closed
# before copen, delays, random restore) for SOAK_SECONDS (60 by default)
# while readers mount and read in a loop. Readers may fail; each is killed
# by its time limit (the round and the mount or cat under it) and must end:
# at once, or, for a mount in fscache's uninterruptible wait on a dropped
# OPEN, once the daemon answers it; none may wait in the on-demand code
# after its SIGKILL, nobody may be left in an uninterruptible wait.
# Then the chaos daemon is killed and a well-behaved one, on the same cache
# directory with whatever the chaos left in it, must mount and read every
# file byte-identical.
. "$T/lib/ktap.sh"
. "$T/lib/odd.sh"
DATA=/host/out/data
SOAK=${SOAK_SECONDS:-60}
SEED=${SOAK_SEED:-20261125}
ktap_plan 10
# The label's function: d_state_scan overwrites ktap_check's variables.
no_d_state() ( d_state_scan )
backend_setup || exit 1
cache=/cache/soak-$CFOD_BACKEND
rm -rf "$cache" && mkdir -p "$cache" /mnt/soak /mnt/soak-m
"$BIN/odd" serve --dir "$cache" --source "dir:$DATA/blobs" --persona chaos \
	--seed "$SEED" --persona-rate 0.3 2>/tmp/soak-chaos.err &
chaos=$!
ktap_check "chaos daemon bound the cache (seed $SEED)" wait_bound

# One reader round: mount one of the images, read some files, unmount.
# Killed after 15 s whatever it is doing.
round() {
	case $(($1 % 2)) in
	0) opts=fsid=simple.img mnt=/mnt/soak ;;
	1) opts=fsid=meta.img,device=blob.img mnt=/mnt/soak-m ;;
	esac
	timeout -s KILL 15 sh -c "mount -t erofs none -o $opts $mnt &&
		cat $mnt/big/one.bin $mnt/mid/* $mnt/many/f0$(($1 % 4))* >/dev/null;
		umount $mnt" >/dev/null 2>&1
	echo $? >>/tmp/soak.rc
}
# The rounds' mounts and readers still alive.
soak_pids() {
	grep -l -a -e '[m]ount.-t.erofs.none' -e '[c]at./mnt/soak' \
		/proc/[0-9]*/cmdline 2>/dev/null | sed 's|/proc/||; s|/cmdline||'
}
# Where a task waits: its state and the kernel stack's first frames.
where_waits() {
	st=$(sed -n 's/^State:[[:space:]]*//p' /proc/$1/status 2>/dev/null)
	stk=$(head -6 /proc/$1/stack 2>/dev/null | sed 's/^\[<[0-9a-f]*>\] //' | tr '\n' ' ')
	[ -n "$stk" ] || stk="wchan $(cat /proc/$1/wchan 2>/dev/null)"
	echo "$st; $stk"
}
rm -f /tmp/soak.rc
end=$(($(date +%s) + SOAK))
rounds=0 survivors=0 late=0 ondemand=0
while [ "$(date +%s)" -lt $end ]; do
	round $rounds &
	r1=$!
	round $((rounds + 1)) &
	r2=$!
	wait $r1 $r2	# not a bare wait: the chaos daemon is a child too
	# timeout kills the round's shell, not the mount or cat under it,
	# which may wait (killably) on a dropped request: kill them too.
	killmatch KILL "mount -t erofs none -o fsid="
	killmatch KILL "cat /mnt/soak"
	# Every one of them must go. A killable wait ends at the SIGKILL; a
	# mount whose OPEN the chaos dropped waits uninterruptibly in fscache
	# (the cookie is LOOKING_UP until the daemon answers, after a random
	# restore, which chaos also writes after an idle second while a dropped
	# request waits) and ends only then. Those late ones are listed with
	# where they wait; none may wait in the on-demand code, and none may last.
	for i in $(seq 350); do
		alive=$(soak_pids | wc -l)
		[ "$alive" -eq 0 ] && break
		if [ "$i" -eq 50 ]; then
			late=$((late + 1))
			for p in $(soak_pids); do
				w=$(where_waits "$p")
				ktap_diag "round $rounds: pid $p alive 10 s after its SIGKILL: $w"
				case $w in
				*cachefiles_ondemand*) ondemand=$((ondemand + 1)) ;;
				esac
			done
		fi
		sleep 0.2
	done
	[ "$alive" -eq 0 ] || survivors=$((survivors + 1))
	# A round killed mid-mount or mid-read leaves its mount behind.
	umount /mnt/soak /mnt/soak-m 2>/dev/null
	rounds=$((rounds + 2))
done
good=$(grep -cx 0 /tmp/soak.rc)
ktap_diag "$rounds reader rounds, $good read everything; exit codes: $(sort /tmp/soak.rc | uniq -c | tr -s ' \n' ' ')"
ktap_check "reader rounds ran ($rounds), each ended by its deadline" \
	sh -c "[ $rounds -ge 4 ] && [ \$(wc -l </tmp/soak.rc) -eq $rounds ]"
ktap_diag "$late rounds had a mount or reader alive 10 s after its SIGKILL"
ktap_diag "chaos: $(grep -c 'dropping' /tmp/soak-chaos.err) requests dropped, $(grep -c 'devnode idle' /tmp/soak-chaos.err) restores written for them on an idle devnode"
ktap_check "every killed mount and reader ended within 70 s ($survivors rounds left some)" \
	[ "$survivors" -eq 0 ]
ktap_check "none of them waited in the on-demand code past its SIGKILL ($ondemand did)" \
	[ "$ondemand" -eq 0 ]
ktap_check "the chaos daemon survived its own misbehaviour" kill -0 $chaos
ktap_check "the chaos made some rounds fail" \
	[ "$good" -lt "$rounds" ]

kill -KILL $chaos
wait $chaos 2>/dev/null
umount /mnt/soak /mnt/soak-m 2>/dev/null
ktap_check "no task left in D state" no_d_state

"$BIN/odd" serve --dir "$cache" --source "dir:$DATA/blobs" 2>/tmp/soak-good.err &
good_pid=$!
ktap_check "a well-behaved daemon binds the same cache directory" wait_bound
both_same() {
	mount -t erofs none -o fsid=simple.img /mnt/soak &&
		mount -t erofs none -o fsid=meta.img,device=blob.img /mnt/soak-m &&
		same_tree /mnt/soak && same_tree /mnt/soak-m
}
ktap_check "it mounts both images and every file is identical to the tree (names, MD5s)" both_same
umount /mnt/soak /mnt/soak-m
ktap_check "the well-behaved daemon stops cleanly" stop $good_pid
tail -n 5 /tmp/soak-chaos.err | sed 's/^/# chaos: /'
tail -n 5 /tmp/soak-good.err | sed 's/^/# good: /'
ktap_finish
