# Guest side of the instruction-count plugin (bench/plugin/icount.c), shared
# by tests/icount_probe.sh, bench/guest.sh and bench/curves.sh.
#
# icount_write_ranges SRC DEST: write the plugin's ranges file DEST:
# vmlinux's ranges (SRC/vmlinux.ranges, from the host, nokaslr), plus the
# module's functions at its current load address when it is loaded (offsets
# in its .text from SRC/rs-text.syms; each insmod may place it anew). The
# file is replaced whole, and the plugin re-reads it at its next mark.
icount_write_ranges() {
	cp "$1/vmlinux.ranges" "$2.new" || return 1
	if [ -e /sys/module/cachefiles_ondemand_rs/sections/.text ]; then
		_ic_base=$(cat /sys/module/cachefiles_ondemand_rs/sections/.text)
		while read -r _ic_off _ic_size _ic_name; do
			echo "$_ic_base+$_ic_off +$_ic_size rs:$_ic_name"
		done <"$1/rs-text.syms" >>"$2.new"
	fi
	mv "$2.new" "$2"
}
