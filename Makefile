# SPDX-License-Identifier: GPL-2.0
# Top-level targets. The module itself is built by kbuild from ./Kbuild:
#   make KDIR=<kernel build dir>        build cachefiles_ondemand_rs.ko
#   make check [BACKEND=c|rust]         the whole suite from a fresh machine
#   make demo [BACKEND=rust|c]          the main job: odd serving an on-demand mount (rust by default)
#   make lint                           rustfmt --check, clippy, and no panic path in the module
#   make mutants                        break the Rust backend on purpose: tests must fail
#   make fuzz [SEED=N [COUNT=N]] [MINUTES=N] [ZERO_SIZE=1]
#                                       the differential fuzzer, C against Rust (replay: SEED=N)
#   make kernel | kernel-bench          build (or reuse) a kernel
#   make bench                          the benchmarks (Documentation/benchmarks.md)
#   make curves                         per-request cost as the work grows (benchmarks.md, "Cost curves")
CFOD_CACHE ?= /var/cache/cfod
KDIR ?= $(CFOD_CACHE)/build-test
BACKEND ?= c rust

.PHONY: fuzz mutants module check demo bench curves lint fmt-check clippy panic-check kernel kernel-bench setup clean
module:
	scripts/build-module.sh $(KDIR)
check:
	scripts/check.sh $(BACKEND)
demo:
	scripts/demo.sh $(if $(filter command line environment,$(origin BACKEND)),$(firstword $(BACKEND)),rust)
bench:
	scripts/bench.sh
curves:
	scripts/curves.sh
# The panic check inspects the built module: it runs after clippy (which
# rebuilds the module in place) even with -j.
lint: fmt-check clippy
	$(MAKE) --no-print-directory panic-check
mutants:
	scripts/mutants.sh
fuzz:
	SEED=$(SEED) COUNT=$(COUNT) MINUTES=$(MINUTES) ZERO_SIZE=$(ZERO_SIZE) scripts/fuzz.sh
fmt-check:
	scripts/lint.sh fmt
clippy:
	KDIR=$(KDIR) scripts/lint.sh clippy
panic-check: module
	KDIR=$(KDIR) scripts/lint.sh panic
setup:
	scripts/setup.sh
kernel:
	scripts/build-kernel.sh test
kernel-bench:
	scripts/build-kernel.sh bench
clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	rm -rf out
